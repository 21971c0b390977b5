//! The dead-letter stream: a sink, its listing, and the removal of letters (the redrive back
//! into the stream is [`RedisStreamQueue::redrive`](super::RedisStreamQueue::redrive)).

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use redis::Value;

use super::{bounded, connection, StreamError, DEFAULT_DEAD_LETTER_CAPACITY, DEFAULT_TIMEOUT};
use crate::dead_letter::{DeadLetter, DeadLetterRecord, DeadLetterSink};
use crate::handler::BoxFuture;

/// Appends a letter unless the stream holds `ARGV[1]` letters already.
const PUT_SCRIPT: &str = r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return redis.error_reply('RUNHOOK the dead-letter stream is full')
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
";

/// How many letters one `XRANGE` page asks for.
const PAGE: usize = 500;

/// A dead-letter sink that appends each letter to a Redis stream, bounded by refusing letters
/// once it holds its capacity (never by trimming). Fields: `provider`, `dedup_key`, `run_id`
/// (empty when unknown), `reason`, `reason_code`, `attempts`, `received_at` (RFC 3339),
/// `received_at_ms`, `headers` (a JSON array of `[name, value]` pairs, credentials left out)
/// and `body` (the raw bytes). List them with [`RedisStreamDeadLetters::list`].
#[derive(Clone)]
pub struct RedisStreamDeadLetters {
    conn: ConnectionManager,
    key: String,
    capacity: usize,
    timeout: Duration,
}

/// One letter of a dead-letter stream, with its entry id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedDeadLetter {
    /// The entry's id in the dead-letter stream.
    pub id: String,
    /// The letter.
    pub record: DeadLetterRecord,
}

impl std::fmt::Debug for RedisStreamDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamDeadLetters")
            .field("key", &self.key)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl RedisStreamDeadLetters {
    pub(crate) fn over(
        conn: ConnectionManager,
        key: String,
        capacity: usize,
        timeout: Duration,
    ) -> Self {
        Self {
            conn,
            key,
            capacity,
            timeout,
        }
    }

    /// A sink appending to the stream `key` at `url`, holding at most
    /// [`DEFAULT_DEAD_LETTER_CAPACITY`] letters (see [`RedisStreamDeadLetters::capacity`]).
    ///
    /// # Errors
    /// [`StreamError::InvalidConfig`] for a malformed URL or an empty key,
    /// [`StreamError::Unavailable`] when Redis cannot be reached.
    pub async fn connect(url: &str, key: impl Into<String>) -> Result<Self, StreamError> {
        let key = key.into();
        if key.is_empty() {
            return Err(StreamError::InvalidConfig {
                reason: "the dead-letter stream key must not be empty".into(),
            });
        }
        let client = redis::Client::open(url).map_err(|e| StreamError::InvalidConfig {
            reason: format!("Redis URL: {e}"),
        })?;
        let conn = connection(&client, DEFAULT_TIMEOUT)
            .await
            .map_err(|reason| StreamError::Unavailable { reason })?;
        Ok(Self::over(
            conn,
            key,
            DEFAULT_DEAD_LETTER_CAPACITY,
            DEFAULT_TIMEOUT,
        ))
    }

    /// Holds at most `capacity` letters (at least 1); past it, letters are refused.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The stream's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Every letter, oldest first.
    ///
    /// # Errors
    /// [`StreamError::Unavailable`] when Redis fails.
    pub async fn list(&self) -> Result<Vec<ListedDeadLetter>, StreamError> {
        let mut letters = Vec::new();
        let mut start = "-".to_string();
        loop {
            let mut conn = self.conn.clone();
            let page: StreamRangeReply = bounded(
                self.timeout,
                redis::cmd("XRANGE")
                    .arg(&self.key)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(&mut conn),
            )
            .await
            .map_err(|reason| StreamError::Unavailable { reason })?;
            let full = page.ids.len() == PAGE;
            for entry in page.ids {
                start = format!("({}", entry.id);
                letters.push(ListedDeadLetter {
                    record: record_of(&entry.map),
                    id: entry.id,
                });
            }
            if !full {
                return Ok(letters);
            }
        }
    }

    /// Removes the letters with these entry ids; returns how many were removed.
    ///
    /// # Errors
    /// [`StreamError::Unavailable`] when Redis fails.
    pub async fn remove(&self, ids: &[String]) -> Result<usize, StreamError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        bounded(
            self.timeout,
            redis::cmd("XDEL")
                .arg(&self.key)
                .arg(ids)
                .query_async(&mut conn),
        )
        .await
        .map_err(|reason| StreamError::Unavailable { reason })
    }
}

/// A letter's fields read back into a record (the body as text when it is UTF-8).
fn record_of(map: &HashMap<String, Value>) -> DeadLetterRecord {
    let text = |name: &str| -> Option<String> {
        map.get(name)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .filter(|t| !t.is_empty())
    };
    let body = map
        .get("body")
        .and_then(|v| redis::from_redis_value_ref::<Vec<u8>>(v).ok())
        .unwrap_or_default();
    let (body, body_base64) = match String::from_utf8(body) {
        Ok(text) => (Some(text), None),
        Err(bytes) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes.as_bytes())),
        ),
    };
    DeadLetterRecord {
        provider: text("provider"),
        dedup_key: text("dedup_key"),
        // Written as "" when the run has no id of its own (webrun-ai).
        run_id: text("run_id").filter(|id| !id.is_empty()),
        reason: text("reason").unwrap_or_default(),
        reason_code: text("reason_code").unwrap_or_default(),
        attempts: text("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
        received_at: text("received_at").unwrap_or_default(),
        headers: text("headers")
            .and_then(|h| serde_json::from_str(&h).ok())
            .unwrap_or_default(),
        body,
        body_base64,
    }
}

impl DeadLetterSink for RedisStreamDeadLetters {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        Box::pin(async move {
            let record = letter.record();
            let headers = serde_json::to_string(&letter.headers).map_err(std::io::Error::other)?;
            let at_ms = letter
                .received_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let script = redis::Script::new(PUT_SCRIPT);
            let mut invocation = script.key(&self.key);
            invocation
                .arg(self.capacity)
                .arg("provider")
                .arg(record.provider.unwrap_or_default())
                .arg("dedup_key")
                .arg(record.dedup_key.unwrap_or_default())
                .arg("run_id")
                .arg(record.run_id.unwrap_or_default())
                .arg("reason")
                .arg(record.reason)
                .arg("reason_code")
                .arg(record.reason_code)
                .arg("attempts")
                .arg(record.attempts)
                .arg("received_at")
                .arg(record.received_at)
                .arg("received_at_ms")
                .arg(at_ms)
                .arg("headers")
                .arg(headers)
                .arg("body")
                .arg(&letter.body[..]);
            let mut conn = self.conn.clone();
            bounded(self.timeout, invocation.invoke_async::<Value>(&mut conn))
                .await
                .map(|_| ())
                .map_err(std::io::Error::other)
        })
    }
}
