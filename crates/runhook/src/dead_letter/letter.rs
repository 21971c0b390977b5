//! A dead letter: why it was set aside, the delivery kept whole, and the JSON record the
//! sinks write and the listing and redrive tools read back.

use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use runhook_core::payload::{EventSource, PayloadError, Provider};
use sha2::Digest as _;

/// How much of an unauthenticated delivery's body a dead letter keeps: 4 KiB.
pub const UNAUTHENTICATED_PREFIX: usize = 4096;

/// What a letter keeps of a body nobody authenticated, in place of the body: its length and
/// SHA-256; the letter's body is then only its first [`UNAUTHENTICATED_PREFIX`] bytes, and
/// the letter cannot be redriven (it cannot be replayed faithfully).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Truncated {
    /// The whole body's length in bytes.
    pub len: u64,
    /// The whole body's SHA-256, lowercase hex.
    pub sha256: String,
}

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
    /// The body exactly as received, or its prefix when [`truncated`](DeadLetter::truncated).
    pub body: Bytes,
    /// How the run reached the receiver (a redrive hands it back with the same source).
    pub source: EventSource,
    /// Set when nobody authenticated the delivery: the body is only a prefix, this its
    /// digest ([`DeadLetter::unauthenticated`]).
    pub truncated: Option<Truncated>,
}

impl DeadLetter {
    /// The letter of a delivery nobody authenticated (an `Unsigned` route's unusable body, a
    /// run its platform does not know): its body cut to the first
    /// [`UNAUTHENTICATED_PREFIX`] bytes, with the whole body's length and SHA-256, so that
    /// forged deliveries cannot fill a sink with their bodies.
    pub fn unauthenticated(mut self) -> Self {
        if self.truncated.is_none() {
            self.truncated = Some(Truncated {
                len: self.body.len() as u64,
                sha256: hex::encode(sha2::Sha256::digest(&self.body)),
            });
            self.body = self
                .body
                .slice(..self.body.len().min(UNAUTHENTICATED_PREFIX));
        }
        self
    }

    /// What the letter costs a sink's byte budget: its body and headers.
    pub fn size(&self) -> u64 {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        (self.body.len() + headers) as u64
    }

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
            truncated: self.truncated.clone(),
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
    /// Present when nobody authenticated the delivery: `body` is only its first 4 KiB, this
    /// the whole body's length and SHA-256. Such a letter is never redriven.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
}

impl DeadLetterRecord {
    /// Why the letter cannot be redriven, if it cannot: its body was cut (nobody
    /// authenticated the delivery, see [`Truncated`]).
    pub fn not_redrivable(&self) -> Option<&'static str> {
        self.truncated.as_ref().map(|_| {
            "the letter keeps only a prefix and digest of an unauthenticated body: it cannot be replayed faithfully"
        })
    }

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

    /// How the run reached the receiver, as the letter says ([`EventSource::Webhook`] when it
    /// says nothing runhook knows).
    pub fn source(&self) -> EventSource {
        self.source
            .as_deref()
            .and_then(EventSource::from_name)
            .unwrap_or(EventSource::Webhook)
    }
}

pub(super) fn invalid_data(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::letter;

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
    fn an_unauthenticated_letter_keeps_a_prefix_and_the_digest() {
        let body = vec![b'a'; 10_000];
        let cut = letter(&body).unauthenticated();
        assert_eq!(cut.body.len(), UNAUTHENTICATED_PREFIX);
        let record = cut.record();
        let truncated = record.truncated.clone().unwrap();
        assert_eq!(truncated.len, 10_000);
        assert_eq!(truncated.sha256, hex::encode(sha2::Sha256::digest(&body)),);
        assert!(record.not_redrivable().is_some());
        let line = serde_json::to_string(&record).unwrap();
        let back: DeadLetterRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back.truncated, Some(truncated));
        assert!(letter(b"x").record().not_redrivable().is_none());
    }
}
