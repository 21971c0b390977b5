//! Where deliveries go that cannot be processed: kept whole for a person, never dropped.
//!
//! A sink that cannot take a letter returns an error, and the delivery is then kept where it
//! was (the worker holds its claim and tries again later; a stream entry stays pending): a
//! failing sink never costs a delivery. Letters are written as [`DeadLetterRecord`]s, which
//! the listing and redrive tools read back ([`JsonLinesDeadLetters::read`],
//! [`redrive_file`], and the Redis stream's own).

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use runhook_core::payload::{EventSource, PayloadError, Provider};
use runhook_core::HeaderLookup;

use crate::handler::BoxFuture;
pub use crate::redrive::{redrive_file, RedriveReport};

/// Why a delivery was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// Genuine, but not the provider's payload (answered 202).
    Unparseable(PayloadError),
    /// Genuine, but its run id cannot be used as a de-duplication key (answered 202).
    UnusableKey {
        /// What is wrong with it.
        reason: String,
    },
    /// The handler failed on every attempt; the last error.
    HandlerFailed {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        last_error: String,
    },
    /// A stream entry handed to workers this many times without ever finishing: each time
    /// the process running it died (a handler that crashes its process, runs out of memory or
    /// aborts). Set aside so that it stops costing restarts.
    Poison {
        /// How many times the entry was handed to a worker.
        deliveries: u64,
    },
    /// Acknowledged, but the receiver shut down past its drain deadline before processing it.
    NotDrained,
    /// Its claim lapsed (or was taken) again and again in this process, and could not be
    /// won back for certain.
    ClaimLost,
    /// A stream entry without the fields runhook writes.
    MalformedEntry {
        /// The entry's id.
        id: String,
    },
    /// Confirmation was on and the platform's run API did not confirm the run: it does not
    /// know it (404, perhaps a forged delivery), or it never answered with the run finished.
    NotConfirmed {
        /// What the run API said.
        reason: String,
    },
    /// An expected run whose webhook never came, and which its run API never reported
    /// finished within the reconciler's horizon.
    NeverCompleted {
        /// How many times the run was fetched.
        checks: u32,
        /// What the run API said last.
        last_answer: String,
    },
}

impl DeadLetterReason {
    /// A stable, machine-readable name of the reason (`unparseable`, `unusable_key`,
    /// `handler_failed`, `poison`, `not_drained`, `claim_lost`, `malformed_entry`,
    /// `not_confirmed`, `never_completed`).
    pub fn code(&self) -> &'static str {
        match self {
            DeadLetterReason::Unparseable(_) => "unparseable",
            DeadLetterReason::UnusableKey { .. } => "unusable_key",
            DeadLetterReason::HandlerFailed { .. } => "handler_failed",
            DeadLetterReason::Poison { .. } => "poison",
            DeadLetterReason::NotDrained => "not_drained",
            DeadLetterReason::ClaimLost => "claim_lost",
            DeadLetterReason::MalformedEntry { .. } => "malformed_entry",
            DeadLetterReason::NotConfirmed { .. } => "not_confirmed",
            DeadLetterReason::NeverCompleted { .. } => "never_completed",
        }
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeadLetterReason::Unparseable(reason) => write!(f, "unparseable: {reason}"),
            DeadLetterReason::UnusableKey { reason } => write!(f, "unusable run id: {reason}"),
            DeadLetterReason::HandlerFailed {
                attempts,
                last_error,
            } => write!(f, "handler failed {attempts} times: {last_error}"),
            DeadLetterReason::Poison { deliveries } => write!(
                f,
                "poison: handed to a worker {deliveries} times, and its process died each time"
            ),
            DeadLetterReason::NotDrained => {
                f.write_str("not drained: the receiver shut down before processing it")
            }
            DeadLetterReason::ClaimLost => {
                f.write_str("claim lost: its claim kept lapsing before it could be processed")
            }
            DeadLetterReason::MalformedEntry { id } => {
                write!(f, "malformed stream entry {id}")
            }
            DeadLetterReason::NotConfirmed { reason } => write!(f, "not confirmed: {reason}"),
            DeadLetterReason::NeverCompleted {
                checks,
                last_answer,
            } => write!(
                f,
                "never completed: fetched {checks} times, last answer: {last_answer}"
            ),
        }
    }
}

/// A delivery that could not be processed, with everything needed to replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The route's provider, when known (a malformed stream entry may not say).
    pub provider: Option<Provider>,
    /// The de-duplication key, when one could be read.
    pub dedup_key: Option<String>,
    /// The platform's run id, when one could be read.
    pub run_id: Option<String>,
    /// Why it is here.
    pub reason: DeadLetterReason,
    /// Handler attempts made before it was set aside (0 when it never reached the handler).
    pub attempts: u32,
    /// When the delivery was received.
    pub received_at: SystemTime,
    /// The request headers, minus those that carry credentials.
    pub headers: Vec<(String, String)>,
    /// The body exactly as received.
    pub body: Bytes,
    /// How the run reached the receiver (a redrive hands it back with the same source).
    pub source: EventSource,
}

impl DeadLetter {
    /// The letter as written by the sinks: one JSON object ([`DeadLetterRecord`]).
    pub fn record(&self) -> DeadLetterRecord {
        let (body, body_base64) = match std::str::from_utf8(&self.body) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&self.body)),
            ),
        };
        DeadLetterRecord {
            provider: self.provider.map(|p| p.as_str().to_string()),
            dedup_key: self.dedup_key.clone(),
            run_id: self.run_id.clone(),
            reason: self.reason.to_string(),
            reason_code: self.reason.code().to_string(),
            attempts: self.attempts,
            received_at: humantime::format_rfc3339_millis(self.received_at).to_string(),
            headers: self.headers.clone(),
            body,
            body_base64,
            source: Some(self.source.as_str().to_string()),
        }
    }

    /// The letter as one JSON object ([`DeadLetter::record`]).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.record()).unwrap_or_default()
    }
}

/// A dead letter as stored and listed: JSON-friendly, with the reason as text. The body is
/// `body` (the raw bytes as text) when it is UTF-8, else `body_base64`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetterRecord {
    /// The provider's name (`skyvern`, ...), when known.
    pub provider: Option<String>,
    /// The de-duplication key, when known.
    pub dedup_key: Option<String>,
    /// The run id, when known.
    #[serde(default)]
    pub run_id: Option<String>,
    /// Why it was set aside, for a person.
    pub reason: String,
    /// Why it was set aside, for a program ([`DeadLetterReason::code`]).
    #[serde(default)]
    pub reason_code: String,
    /// Handler attempts made.
    #[serde(default)]
    pub attempts: u32,
    /// When the delivery was received (RFC 3339, UTC).
    #[serde(default)]
    pub received_at: String,
    /// The headers kept (no credentials).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body in base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// How the run reached the receiver (`webhook` or `reconciled`); absent in letters
    /// written before it was recorded, which are read as webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl DeadLetterRecord {
    /// The body's bytes exactly as received.
    ///
    /// # Errors
    /// When neither `body` nor a valid `body_base64` is present.
    pub fn body_bytes(&self) -> Result<Bytes, std::io::Error> {
        match (&self.body, &self.body_base64) {
            (Some(text), _) => Ok(Bytes::from(text.clone().into_bytes())),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map(Bytes::from)
                .map_err(|e| invalid_data(format!("body_base64: {e}"))),
            (None, None) => Err(invalid_data("the letter has no body".into())),
        }
    }

    /// The provider, when it is one runhook knows.
    pub fn provider(&self) -> Option<Provider> {
        self.provider.as_deref().and_then(Provider::from_name)
    }

    /// How the run reached the receiver: [`EventSource::Reconciled`] when the letter says so,
    /// else a webhook.
    pub fn source(&self) -> EventSource {
        match self.source.as_deref() {
            Some(name) if name == EventSource::Reconciled.as_str() => EventSource::Reconciled,
            _ => EventSource::Webhook,
        }
    }
}

fn invalid_data(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// Headers whose values are credentials and are never written to a dead letter or a stream
/// entry, whatever the route's scheme (the scheme adds its own header names).
pub(crate) fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "authorization"
        || name == "cookie"
        || name == "set-cookie"
        || name == "proxy-authorization"
        || name.contains("signature")
        || name.contains("token")
        || name.contains("secret")
        || name.contains("api-key")
}

/// The headers worth keeping with a dead letter or a queued delivery: all but credentials
/// (the fixed list above and the route's own `credential_headers`, lowercase).
pub(crate) fn kept_headers(
    headers: &dyn HeaderLookup,
    credential_headers: &[String],
) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    headers.visit_all(&mut |name, value| {
        let credential = is_credential_header(name)
            || credential_headers
                .iter()
                .any(|c| c.eq_ignore_ascii_case(name));
        if !credential {
            kept.push((
                name.to_string(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        }
    });
    kept
}

/// Somewhere to keep dead letters.
pub trait DeadLetterSink: Send + Sync + 'static {
    /// Stores `letter`. An error means it was not stored: the caller keeps the delivery (its
    /// claim, its stream entry) and tries again later.
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>>;
}

/// Keeps dead letters in memory, at most `capacity` of them. A full sink refuses new letters
/// (the deliveries wait with their workers) rather than dropping old ones: take them out with
/// [`MemoryDeadLetters::take`].
#[derive(Debug)]
pub struct MemoryDeadLetters {
    capacity: usize,
    letters: Mutex<VecDeque<DeadLetter>>,
}

impl MemoryDeadLetters {
    /// A sink holding at most `capacity` letters (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            letters: Mutex::new(VecDeque::new()),
        }
    }

    /// A copy of the letters held, oldest first.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.lock().iter().cloned().collect()
    }

    /// Removes and returns every letter held, oldest first.
    pub fn take(&self) -> Vec<DeadLetter> {
        self.lock().drain(..).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<DeadLetter>> {
        self.letters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for MemoryDeadLetters {
    fn default() -> Self {
        Self::new(1000)
    }
}

impl DeadLetterSink for MemoryDeadLetters {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        let mut letters = self.lock();
        let result = if letters.len() >= self.capacity {
            Err(std::io::Error::other(format!(
                "the in-memory dead-letter sink is full ({} letters)",
                self.capacity
            )))
        } else {
            letters.push_back(letter);
            Ok(())
        };
        Box::pin(async move { result })
    }
}

/// Appends each dead letter to a file as one JSON line ([`DeadLetterRecord`]), creating it
/// with mode 0600. Writers and [`redrive_file`] lock the file, so that a
/// redrive rewriting it never loses a letter appended meanwhile.
#[derive(Debug)]
pub struct JsonLinesDeadLetters {
    path: PathBuf,
}

impl JsonLinesDeadLetters {
    /// Appends to `path`, creating it when absent (on unix with mode `0600`: readable and
    /// writable by the owner only; an existing file keeps its mode).
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every letter in the file at `path`, oldest first (an absent file holds none).
    ///
    /// # Errors
    /// I/O errors, and a line that is not a [`DeadLetterRecord`] (with its line number).
    pub fn read(path: impl AsRef<Path>) -> Result<Vec<DeadLetterRecord>, std::io::Error> {
        let text = match std::fs::read_to_string(path.as_ref()) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        parse_lines(&text)
    }
}

pub(crate) fn parse_lines(text: &str) -> Result<Vec<DeadLetterRecord>, std::io::Error> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| invalid_data(format!("line {}: {e}", n + 1)))
        })
        .collect()
}

/// Opens `path` for appending (mode 0600 when created) and locks it exclusively. If a
/// redrive replaced the file between the open and the lock, opens the new one.
pub(crate) fn open_locked(path: &Path) -> Result<std::fs::File, std::io::Error> {
    loop {
        let mut options = std::fs::OpenOptions::new();
        // Readable too: a redrive reads the file through this handle, under the lock.
        options.create(true).append(true).read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        file.lock()?;
        if same_file(&file, path)? {
            return Ok(file);
        }
    }
}

#[cfg(unix)]
fn same_file(file: &std::fs::File, path: &Path) -> Result<bool, std::io::Error> {
    use std::os::unix::fs::MetadataExt as _;
    let (open, named) = (file.metadata()?, std::fs::metadata(path));
    Ok(match named {
        Ok(named) => open.ino() == named.ino() && open.dev() == named.dev(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    })
}

#[cfg(not(unix))]
fn same_file(_file: &std::fs::File, _path: &Path) -> Result<bool, std::io::Error> {
    Ok(true)
}

impl DeadLetterSink for JsonLinesDeadLetters {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        let path = self.path.clone();
        Box::pin(async move {
            let mut line = serde_json::to_vec(&letter.record()).map_err(std::io::Error::other)?;
            line.push(b'\n');
            tokio::task::spawn_blocking(move || {
                let mut file = open_locked(&path)?;
                file.write_all(&line)?;
                file.sync_data()
            })
            .await
            .map_err(std::io::Error::other)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(body: &[u8]) -> DeadLetter {
        DeadLetter {
            provider: Some(Provider::TinyFish),
            dedup_key: Some("tinyfish:r1".into()),
            run_id: Some("r1".into()),
            reason: DeadLetterReason::HandlerFailed {
                attempts: 3,
                last_error: "boom".into(),
            },
            attempts: 3,
            received_at: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_500),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::copy_from_slice(body),
            source: EventSource::Webhook,
        }
    }

    #[test]
    fn a_record_round_trips_text_and_binary_bodies() {
        for body in [&b"{\"run_id\":\"r1\"}"[..], &[0xff, 0x00, 0x80][..]] {
            let record = letter(body).record();
            assert_eq!(record.body.is_some(), std::str::from_utf8(body).is_ok());
            assert_eq!(record.received_at, "1970-01-01T00:00:01.500Z");
            assert_eq!(record.reason_code, "handler_failed");
            let line = serde_json::to_string(&record).unwrap();
            let back: DeadLetterRecord = serde_json::from_str(&line).unwrap();
            assert_eq!(back.body_bytes().unwrap(), body);
            assert_eq!(back.provider(), Some(Provider::TinyFish));
        }
    }

    #[test]
    fn a_full_memory_sink_refuses_rather_than_drops() {
        let sink = MemoryDeadLetters::new(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            sink.put(letter(b"a")).await.unwrap();
            assert!(sink.put(letter(b"b")).await.is_err());
            assert_eq!(sink.letters()[0].body, &b"a"[..]);
            assert_eq!(sink.take().len(), 1);
            sink.put(letter(b"c")).await.unwrap();
        });
    }

    #[test]
    fn credential_headers_are_recognised() {
        for name in [
            "Authorization",
            "cookie",
            "Set-Cookie",
            "x-skyvern-signature",
            "webhook-signature",
            "x-api-key",
        ] {
            assert!(is_credential_header(name), "{name}");
        }
        assert!(!is_credential_header("content-type"));
    }
}
