//! Where deliveries go that cannot be processed: kept whole for a person, never dropped.
//!
//! A sink that cannot take a letter returns an error, and the delivery is then kept where it
//! was (the worker holds its claim and tries again later; a stream entry stays pending): a
//! failing sink never costs a delivery. Letters are written as [`DeadLetterRecord`]s, which
//! the listing and redrive tools read back ([`JsonLinesDeadLetters::read`],
//! [`redrive_file`], and the Redis stream's own).

mod credentials;
mod json_lines;
mod letter;
mod redrive;
mod sink;
mod writer;

pub(crate) use credentials::kept_headers;
pub use json_lines::JsonLinesDeadLetters;
pub(crate) use json_lines::{open_locked, parse_lines};
pub use letter::{
    DeadLetter, DeadLetterReason, DeadLetterRecord, Truncated, UNAUTHENTICATED_PREFIX,
};
pub use redrive::{redrive_file, RedriveReport};
pub use sink::{DeadLetterSink, MemoryDeadLetters};
pub(crate) use writer::DeadLetters;

/// A letter for the unit tests of this module's files.
#[cfg(test)]
pub(crate) fn letter(body: &[u8]) -> DeadLetter {
    use runhook_core::payload::{EventSource, Provider};
    use std::time::{Duration, SystemTime};

    DeadLetter {
        provider: Some(Provider::TinyFish),
        dedup_key: Some("tinyfish:r1".into()),
        run_id: Some("r1".into()),
        reason: DeadLetterReason::HandlerFailed {
            attempts: 3,
            last_error: "boom".into(),
        },
        attempts: 3,
        received_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_500),
        headers: vec![("content-type".into(), "application/json".into())],
        body: bytes::Bytes::copy_from_slice(body),
        source: EventSource::Webhook,
        truncated: None,
    }
}
