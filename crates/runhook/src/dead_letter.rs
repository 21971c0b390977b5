//! Where deliveries go that cannot be processed: kept whole for a person, never dropped.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::json;

use crate::handler::BoxFuture;

/// Why a delivery was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// Genuine, but not the provider's payload (answered 202).
    Unparseable(String),
    /// The handler failed on every attempt; the last error.
    HandlerFailed {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        last_error: String,
    },
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeadLetterReason::Unparseable(reason) => write!(f, "unparseable: {reason}"),
            DeadLetterReason::HandlerFailed {
                attempts,
                last_error,
            } => write!(f, "handler failed {attempts} times: {last_error}"),
        }
    }
}

/// A delivery that could not be processed, with everything needed to replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The route's provider name (`skyvern`, ...).
    pub provider: &'static str,
    /// The de-duplication key, when one could be read.
    pub dedup_key: Option<String>,
    /// Why it is here.
    pub reason: DeadLetterReason,
    /// The request headers, minus those that carry credentials.
    pub headers: Vec<(String, String)>,
    /// The body exactly as received.
    pub body: Bytes,
}

impl DeadLetter {
    /// The letter as one JSON object (body as UTF-8 text when it is, else base64-free hex).
    pub fn to_json(&self) -> serde_json::Value {
        let (body, encoding) = match std::str::from_utf8(&self.body) {
            Ok(text) => (text.to_string(), "utf-8"),
            Err(_) => (hex::encode(&self.body), "hex"),
        };
        json!({
            "provider": self.provider,
            "dedup_key": self.dedup_key,
            "reason": self.reason.to_string(),
            "headers": self.headers,
            "body": body,
            "body_encoding": encoding,
        })
    }
}

/// Headers whose values are credentials and are never written to a dead letter.
pub(crate) fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "authorization"
        || name == "cookie"
        || name == "proxy-authorization"
        || name.contains("token")
        || name.contains("secret")
        || name.contains("api-key")
}

/// Somewhere to keep dead letters.
pub trait DeadLetterSink: Send + Sync + 'static {
    /// Stores `letter`; an error is logged (the delivery has been acknowledged already).
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>>;
}

/// Keeps the most recent dead letters in memory, at most `capacity` of them (the oldest are
/// dropped first, and counted).
#[derive(Debug)]
pub struct MemoryDeadLetters {
    capacity: usize,
    inner: Mutex<(VecDeque<DeadLetter>, u64)>,
}

impl MemoryDeadLetters {
    /// A sink holding at most `capacity` letters (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new((VecDeque::new(), 0)),
        }
    }

    /// A copy of the letters held, oldest first.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.lock().0.iter().cloned().collect()
    }

    /// How many letters were dropped to stay within the capacity.
    pub fn dropped(&self) -> u64 {
        self.lock().1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<DeadLetter>, u64)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for MemoryDeadLetters {
    fn default() -> Self {
        Self::new(1000)
    }
}

impl DeadLetterSink for MemoryDeadLetters {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        let mut inner = self.lock();
        if inner.0.len() == self.capacity {
            inner.0.pop_front();
            inner.1 += 1;
        }
        inner.0.push_back(letter);
        Box::pin(async { Ok(()) })
    }
}

/// Appends each dead letter to a file as one JSON line ([`DeadLetter::to_json`]).
#[derive(Debug)]
pub struct JsonLinesDeadLetters {
    path: PathBuf,
    write: tokio::sync::Mutex<()>,
}

impl JsonLinesDeadLetters {
    /// Appends to `path`, creating it when absent (on unix with mode `0600`: readable and
    /// writable by the owner only; an existing file keeps its mode).
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            write: tokio::sync::Mutex::new(()),
        }
    }
}

impl DeadLetterSink for JsonLinesDeadLetters {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        Box::pin(async move {
            use tokio::io::AsyncWriteExt as _;
            let mut line = serde_json::to_vec(&letter.to_json()).map_err(std::io::Error::other)?;
            line.push(b'\n');
            let _one_writer = self.write.lock().await;
            let mut options = tokio::fs::OpenOptions::new();
            options.create(true).append(true);
            // Letters hold whole bodies: readable by the owner only (when created here).
            #[cfg(unix)]
            options.mode(0o600);
            let mut file = options.open(&self.path).await?;
            file.write_all(&line).await?;
            file.flush().await
        })
    }
}
