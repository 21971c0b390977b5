//! The transactional inbox's way through the pipeline: everything the middleware does but the
//! claim, which the inbox takes inside the handler's transaction; and the answer to what that
//! claim found, counted as the middleware counts it.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use runhook_core::payload::RunEvent;
use runhook_core::{HeaderLookup, Verified};
use runhook_store::{Claim, StoreError};

use super::outcome::{probe_of, store_unavailable, with_probe, InFlightDuplicates};
use super::pipeline::{in_flight_duplicate, Authentication, Pipeline};
use super::{Outcome, OutcomeKind};
use crate::budget::Charge;
use crate::stats::Counters;

impl Pipeline {
    /// Authenticates and parses the delivery in full, without claiming it (the inbox claims
    /// it in its transaction): what proved it genuine and the run, or the answer, counted. A
    /// genuine body that is not the provider's payload is set aside (202).
    pub(crate) async fn unclaimed_event(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
    ) -> Result<(Verified, RunEvent), Outcome> {
        Counters::bump(&self.counters.received);
        let result = self.unclaimed_inner(headers, path, body).await;
        if let Err(outcome) = &result {
            self.count(outcome);
        }
        result
    }

    async fn unclaimed_inner(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
    ) -> Result<(Verified, RunEvent), Outcome> {
        let pending = Authentication::Pending(Charge::none());
        let (verified, event) = self.verified_event(headers, path, body, pending).await?;
        if let Err(err) = event.payload() {
            let (err, probe) = (err.clone(), probe_of(&event));
            let body = event.raw_body.clone();
            let outcome = self
                .unparseable(headers, body, Some(&probe), err, &verified)
                .await;
            return Err(with_probe(outcome, probe));
        }
        Ok((verified, event))
    }

    /// What the claim of `event` in its transaction found, as the answer when the handler is
    /// not to run (a duplicate of a run done or in flight, the store unavailable), counted;
    /// `Ok` when the claim was won.
    // The answer is moved once, up one frame: boxing it would cost an allocation instead.
    #[allow(clippy::result_large_err)]
    pub(crate) fn claimed_in_transaction(
        &self,
        event: &RunEvent,
        claim: Result<Claim, StoreError>,
    ) -> Result<(), Outcome> {
        let outcome = match claim {
            Ok(Claim::Acquired(_)) => {
                Counters::bump(&self.counters.accepted);
                return Ok(());
            }
            Ok(Claim::Done { same_payload }) => {
                let kind = OutcomeKind::Duplicate {
                    same_payload,
                    in_flight: false,
                };
                Outcome::new(StatusCode::OK, kind)
            }
            Ok(Claim::InFlight {
                same_payload,
                expires_in,
            }) => in_flight_duplicate(same_payload, expires_in, InFlightDuplicates::AskToRetry),
            Err(err) => return Err(self.store_refused(event, err)),
        };
        let outcome = with_probe(outcome, probe_of(event));
        self.count(&outcome);
        Err(outcome)
    }

    /// The answer, counted, when the database could not take `event`'s claim: 503 with the
    /// outage's `Retry-After` (500 for a misconfigured store).
    pub(crate) fn store_refused(&self, event: &RunEvent, err: StoreError) -> Outcome {
        let outcome = with_probe(store_unavailable(err, self.outage_pause), probe_of(event));
        self.count(&outcome);
        outcome
    }

    /// Counts a run whose transaction committed.
    pub(crate) fn count_processed(&self) {
        Counters::bump(&self.counters.processed);
    }

    /// How long a processed run is remembered as done.
    pub(crate) fn keep_for(&self) -> Duration {
        self.keep_for
    }
}
