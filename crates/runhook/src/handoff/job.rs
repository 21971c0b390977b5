//! One claimed run on its way to a worker: the parsed event, the claim's token, and what is
//! kept of its delivery.

use std::sync::Arc;
use std::time::SystemTime;

use runhook_core::payload::RunEvent;
use runhook_store::Token;
use tokio::time::Instant;

use crate::dead_letter::{DeadLetter, DeadLetterReason};

/// One acknowledged delivery, claimed, waiting for or held by a worker. Its event was read on
/// the receive path (or from the stream entry), so that workers never parse a body again.
#[derive(Clone)]
pub(crate) struct Job {
    /// The run: provider, dedup key, run id, the raw body (and the signed canonical bytes).
    pub event: Arc<RunEvent>,
    pub token: Token,
    /// When the claim was taken or last renewed.
    pub held_since: Instant,
    pub received_at: SystemTime,
    /// The delivery's headers minus credentials (none for a reconciled run).
    pub headers: Arc<[(String, String)]>,
}

impl Job {
    /// A run whose claim (`token`) was just taken, for a delivery received at `received_at`
    /// with `headers` (credentials already dropped).
    pub(crate) fn claimed(
        event: RunEvent,
        token: Token,
        received_at: SystemTime,
        headers: Vec<(String, String)>,
    ) -> Self {
        Self {
            event: Arc::new(event),
            token,
            held_since: Instant::now(),
            received_at,
            headers: headers.into(),
        }
    }

    /// The run's de-duplication key.
    pub(crate) fn key(&self) -> &str {
        &self.event.dedup_key
    }

    /// The dead letter that keeps this job whole, after `attempts` handler attempts.
    pub(crate) fn dead_letter(&self, reason: DeadLetterReason, attempts: u32) -> DeadLetter {
        DeadLetter {
            provider: Some(self.event.provider),
            dedup_key: Some(self.event.dedup_key.clone()),
            run_id: self.event.run_id.clone(),
            reason,
            attempts,
            received_at: self.received_at,
            headers: self.headers.to_vec(),
            body: self.event.raw_body.clone(),
            source: self.event.source,
            truncated: None,
        }
    }
}
