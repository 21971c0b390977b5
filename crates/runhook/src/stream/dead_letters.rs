//! The dead-letter stream: a sink, its listing, and the removal of letters (the redrive back
//! into the stream is [`RedisStreamQueue::redrive`](super::RedisStreamQueue::redrive)).

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use redis::Value;

use super::call::{bounded, connection};
use super::defaults::{DEFAULT_DEAD_LETTER_CAPACITY, DEFAULT_TIMEOUT};
use super::entry::{epoch_millis, letter, Fields};
use super::error::StreamError;
use crate::dead_letter::{DeadLetter, DeadLetterRecord, DeadLetterSink, Truncated};
use crate::handler::BoxFuture;

/// Appends a letter unless the stream holds `ARGV[1]` letters already. Returns the new id, or
/// `false` when full.
const PUT_SCRIPT: &str = r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
";

/// A letter the dead-letter stream refused: it holds its capacity.
#[derive(Debug, thiserror::Error)]
#[error("the dead-letter stream {key} is full ({capacity} letters)")]
struct Full {
    key: String,
    capacity: usize,
}

/// How many letters one `XRANGE` page asks for.
const PAGE: usize = 500;

/// A dead-letter sink that appends each letter to a Redis stream, bounded by refusing letters
/// once it holds its capacity (never by trimming). Its fields are listed in the
/// [module documentation](super#entries-and-dead-letters). List the letters with
/// [`RedisStreamDeadLetters::list`].
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
        let conn = connection(&client, DEFAULT_TIMEOUT).await?;
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
            .await?;
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
        .map_err(StreamError::from)
    }
}

/// A letter's fields read back into a record (the body as text when it is UTF-8).
fn record_of(map: &HashMap<String, Value>) -> DeadLetterRecord {
    let fields = Fields(map);
    let text = |name| fields.text(name).ok().filter(|t| !t.is_empty());
    let body = fields.bytes(letter::BODY).unwrap_or_default();
    let (body, body_base64) = match String::from_utf8(body.to_vec()) {
        Ok(text) => (Some(text), None),
        Err(bytes) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes.as_bytes())),
        ),
    };
    DeadLetterRecord {
        provider: text(letter::PROVIDER),
        dedup_key: text(letter::DEDUP_KEY),
        // Written as "" when the run has no id of its own (webrun-ai).
        run_id: text(letter::RUN_ID),
        reason: text(letter::REASON).unwrap_or_default(),
        reason_code: text(letter::REASON_CODE).unwrap_or_default(),
        attempts: text(letter::ATTEMPTS)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
        received_at: text(letter::RECEIVED_AT).unwrap_or_default(),
        headers: text(letter::HEADERS)
            .and_then(|h| serde_json::from_str(&h).ok())
            .unwrap_or_default(),
        body,
        body_base64,
        source: text(letter::SOURCE),
        truncated: match (text(letter::BODY_LEN), text(letter::BODY_SHA256)) {
            (Some(len), Some(sha256)) => len.parse().ok().map(|len| Truncated { len, sha256 }),
            _ => None,
        },
    }
}

impl DeadLetterSink for RedisStreamDeadLetters {
    fn put(&self, dead: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        Box::pin(async move {
            let record = dead.record();
            let headers = serde_json::to_string(&dead.headers).map_err(std::io::Error::other)?;
            let script = redis::Script::new(PUT_SCRIPT);
            let mut invocation = script.key(&self.key);
            invocation
                .arg(self.capacity)
                .arg(letter::PROVIDER)
                .arg(record.provider.unwrap_or_default())
                .arg(letter::DEDUP_KEY)
                .arg(record.dedup_key.unwrap_or_default())
                .arg(letter::RUN_ID)
                .arg(record.run_id.unwrap_or_default())
                .arg(letter::REASON)
                .arg(record.reason)
                .arg(letter::REASON_CODE)
                .arg(record.reason_code)
                .arg(letter::ATTEMPTS)
                .arg(record.attempts)
                .arg(letter::RECEIVED_AT)
                .arg(record.received_at)
                .arg(letter::RECEIVED_AT_MS)
                .arg(epoch_millis(dead.received_at))
                .arg(letter::HEADERS)
                .arg(headers)
                .arg(letter::BODY)
                .arg(&dead.body[..])
                .arg(letter::SOURCE)
                .arg(dead.source.as_str());
            if let Some(truncated) = &dead.truncated {
                invocation
                    .arg(letter::BODY_LEN)
                    .arg(truncated.len)
                    .arg(letter::BODY_SHA256)
                    .arg(&truncated.sha256);
            }
            let mut conn = self.conn.clone();
            match bounded(
                self.timeout,
                invocation.invoke_async::<Option<String>>(&mut conn),
            )
            .await
            {
                Ok(Some(_id)) => Ok(()),
                Ok(None) => Err(std::io::Error::other(Full {
                    key: self.key.clone(),
                    capacity: self.capacity,
                })),
                Err(err) => Err(std::io::Error::other(err)),
            }
        })
    }
}
