//! The second stage of a genuine delivery: reading its summary (provider, key, run id,
//! status) once, and setting aside, whole, what is genuine but cannot be processed.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use runhook_core::payload::{DedupProbe, PayloadError, RunEvent, MAX_RUN_ID_LEN};
use runhook_core::{HeaderLookup, Verified};
use runhook_store::StoreError;

use super::outcome::{with_probe, Outcome, OutcomeKind, Unavailable};
use super::pipeline::Pipeline;
use crate::dead_letter::{kept_headers, DeadLetter, DeadLetterReason};

impl Pipeline {
    /// The run `body` reports, read once here (the worker is handed the parsed event), with
    /// the bytes `verified` says were signed. A genuine body that is not the provider's
    /// payload, or whose run id cannot be a key, is kept whole and answered 202.
    pub(super) async fn summarize(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        body: Bytes,
        verified: &Verified,
    ) -> Result<RunEvent, Outcome> {
        match RunEvent::parse_summary(self.provider, body.clone()) {
            Ok(mut event) => {
                event.signed_body = verified.signed_body().cloned();
                Ok(event)
            }
            Err(PayloadError::RunIdTooLong { field, run_id }) => {
                // Genuine, but its id cannot be a key: kept whole, findable by its id.
                let probe = DedupProbe {
                    dedup_key: self.provider.dedup_key(&run_id),
                    run_id: Some(run_id),
                };
                let why = format!("field `{field}` is longer than {MAX_RUN_ID_LEN} bytes");
                Err(self
                    .unusable_key(headers, body, probe, why, None, verified)
                    .await)
            }
            Err(err) => {
                // Keep the run's key with the letter when at least the id reads.
                let probe = DedupProbe::read(self.provider, &body).ok();
                let outcome = self
                    .unparseable(headers, body, probe.as_ref(), err, verified)
                    .await;
                Err(match probe {
                    Some(probe) => with_probe(outcome, probe),
                    None => outcome,
                })
            }
        }
    }

    /// A genuine run whose id cannot be a de-duplication key (`why`; the store's refusal when
    /// it was the store): kept whole with its key and id, answered 202.
    pub(super) async fn unusable_key(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        body: Bytes,
        probe: DedupProbe,
        why: String,
        store_error: Option<StoreError>,
        verified: &Verified,
    ) -> Outcome {
        let reason = DeadLetterReason::UnusableKey { reason: why };
        let kind = OutcomeKind::UnusableKey(store_error);
        let aside = Aside { reason, kind };
        let outcome = self
            .set_aside(headers, body, Some(&probe), aside, verified)
            .await;
        with_probe(outcome, probe)
    }

    /// A genuine body that is not the provider's payload: kept whole, answered 202.
    pub(super) async fn unparseable(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        body: Bytes,
        probe: Option<&DedupProbe>,
        err: PayloadError,
        verified: &Verified,
    ) -> Outcome {
        let aside = Aside {
            reason: DeadLetterReason::Unparseable(err.clone()),
            kind: OutcomeKind::Unparseable(err),
        };
        self.set_aside(headers, body, probe, aside, verified).await
    }

    /// Keeps a genuine but unusable delivery in the dead letters and answers 202 with its
    /// kind; 503 if the sink refuses it (the sender's retry brings it back). Kept whole when
    /// it was authenticated; else only a prefix and the digest of its body
    /// ([`DeadLetter::unauthenticated`]), so that forged bodies cannot fill the sink.
    async fn set_aside(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        body: Bytes,
        probe: Option<&DedupProbe>,
        aside: Aside,
        verified: &Verified,
    ) -> Outcome {
        let Aside { reason, kind } = aside;
        tracing::warn!(provider = %self.provider, %reason, authenticated = verified.authenticated, "delivery cannot be processed; dead-lettering it");
        let letter = DeadLetter {
            provider: Some(self.provider),
            dedup_key: probe.map(|p| p.dedup_key.clone()),
            run_id: probe.and_then(|p| p.run_id.clone()),
            reason,
            attempts: 0,
            received_at: SystemTime::now(),
            headers: kept_headers(headers, &self.credential_headers),
            body,
            source: runhook_core::payload::EventSource::Webhook,
            truncated: None,
        };
        let letter = match verified.authenticated {
            true => letter,
            false => letter.unauthenticated(),
        };
        match self.dead_letters.put(letter).await {
            Ok(()) => Outcome::new(StatusCode::ACCEPTED, kind),
            Err(io) => Outcome::unavailable(Unavailable::DeadLetters(io), Duration::from_secs(1)),
        }
    }
}

/// Why a delivery is set aside, and how it is answered.
struct Aside {
    reason: DeadLetterReason,
    kind: OutcomeKind,
}
