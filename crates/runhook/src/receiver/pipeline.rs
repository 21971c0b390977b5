//! The steps every delivery goes through, whichever style serves it: reading the body under
//! the limits, authenticating it on its raw bytes, reading its summary, claiming its run, and
//! setting aside what is genuine but cannot be processed. [`super::Receiver`] hands the claimed
//! run off to the background workers; [`super::InlineReceiver`] hands it to the caller.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use runhook_core::payload::{Provider, RunEvent};
use runhook_core::platform::{Duplicates, Platform};
use runhook_core::{HeaderLookup, Verified, Verifier};
use runhook_store::{Claim, Fingerprint, IdempotencyStore, StoreError, Token};

use super::claim::{ClaimGuard, ClaimedEvent};
use super::outcome::{
    probe_of, store_unavailable, with_probe, InFlightDuplicates, OutagePause, Outcome, OutcomeKind,
};
use crate::body::ReadError;
use crate::budget::{Charge, PreAuthBudget};
use crate::dead_letter::DeadLetters;
use crate::handler::{BoxFuture, HandlerError};
use crate::log_every::LogEvery;
use crate::stats::Counters;

/// Chooses the scheme for one delivery when one endpoint serves many accounts (secrets picked
/// by a path segment, or by the account id in the body).
pub trait KeyResolver: Send + Sync + 'static {
    /// The scheme that authenticates a delivery on `path` with `body`, or `None` when no
    /// account matches (answered 401). An error means the keys cannot be looked up now
    /// (answered 503).
    fn resolve<'a>(
        &'a self,
        path: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<Arc<dyn Verifier>>, HandlerError>>;

    /// The names of the headers that carry the credentials of the schemes this resolver
    /// returns ([`Verifier::credential_headers`]), never stored with a delivery. Empty by
    /// default: name your custom token headers here.
    fn credential_headers(&self) -> Vec<String> {
        Vec::new()
    }
}

pub(super) enum Auth {
    Fixed(Arc<dyn Verifier>),
    Resolved(Arc<dyn KeyResolver>),
}

/// One route's settings and the state every style shares.
pub(crate) struct Pipeline {
    pub(super) provider: Provider,
    pub(super) auth: Auth,
    pub(super) store: Arc<dyn IdempotencyStore>,
    pub(super) dead_letters: DeadLetters,
    pub(super) body_limit: usize,
    pub(super) body_read_timeout: Duration,
    pub(super) pre_auth_budget: PreAuthBudget,
    pub(super) lease: Duration,
    pub(super) shutting_down: AtomicBool,
    pub(super) keep_for: Duration,
    /// The `Retry-After` floor for an outage of the store or the queue.
    pub(super) outage_pause: OutagePause,
    /// Rate limit of the log lines of deliveries anyone can send: rejected or stalled.
    pub(super) rejected_log: LogEvery,
    pub(super) counters: Arc<Counters>,
    /// The verifier's credential headers, dropped from stored headers with the fixed list.
    pub(super) credential_headers: Vec<String>,
    /// Whether interim events (attempts to be retried) are processed or answered and skipped.
    pub(super) interim: Interim,
}

/// What a route does with an interim event: the report of a run's attempt that the platform
/// will retry (Skyvern's `retry_pending: true`, sent with `webhook_on_retry: "every_attempt"`).
/// Either way the run's final event is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interim {
    /// Process it like any run, once, under its attempt's own key (the default).
    #[default]
    Process,
    /// Answer it 200 without a handler call (counted as `interim_skipped`).
    Skip,
}

impl Pipeline {
    /// Reads a request body under the limits; see [`super::Receiver::read_body`]. The body's
    /// charge on the pre-authentication budget is given back when this returns.
    pub(crate) async fn read_body<S, E>(
        &self,
        chunks: &mut S,
        content_length: Option<u64>,
    ) -> Result<Bytes, Outcome>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    {
        let charge = self.pre_auth_budget.charge();
        let (body, _charge) = self.read_charged(chunks, content_length, charge).await?;
        Ok(body)
    }

    /// A new charge on the route's pre-authentication budget, for one body.
    #[cfg(feature = "tower")]
    pub(crate) fn new_charge(&self) -> Charge {
        self.pre_auth_budget.charge()
    }

    /// [`read_body`](Self::read_body) charging `charge` (a [`new_charge`](Self::new_charge),
    /// or [`Charge::none`] for a delivery already authenticated); the charge is returned with
    /// the body: hold it until authentication has finished.
    pub(crate) async fn read_charged<S, E>(
        &self,
        chunks: &mut S,
        content_length: Option<u64>,
        mut charge: Charge,
    ) -> Result<(Bytes, Charge), Outcome>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    {
        let read = crate::body::read_limited(
            chunks,
            content_length,
            self.body_limit,
            self.body_read_timeout,
            &mut charge,
        );
        let outcome = match read.await {
            Ok(body) => return Ok((body, charge)),
            Err(ReadError::OverBudget) => {
                tracing::debug!(
                    provider = %self.provider,
                    budget = self.pre_auth_budget.limit(),
                    "the pre-authentication budget is spent; refusing a body"
                );
                Outcome::over_budget(self.pre_auth_budget.limit())
            }
            Err(ReadError::TooLarge) => Outcome::too_large(self.body_limit),
            Err(ReadError::TimedOut) => {
                if let Some(stalled) = self.rejected_log.tick() {
                    tracing::info!(
                        provider = %self.provider,
                        timeout_ms = self.body_read_timeout.as_millis() as u64,
                        stalled,
                        "a body did not arrive in time; closing the connection (one line per 10 s at most)"
                    );
                }
                Outcome::body_timeout(self.body_read_timeout)
            }
            Err(ReadError::Broken) => {
                Outcome::new(StatusCode::BAD_REQUEST, OutcomeKind::BodyUnreadable)
            }
        };
        Counters::bump(&self.counters.received);
        self.count(&outcome);
        Err(outcome)
    }

    /// Logs a duplicate whose body differs from the first: expected, at debug level, from a
    /// platform whose replays are rebuilt (Skyvern); else a warning.
    fn log_other_body(&self, outcome: &Outcome) {
        let key = outcome.probe.as_ref().map(|p| p.dedup_key.as_str());
        let message = "duplicate delivery with a different body than the first";
        match Platform::of(self.provider).duplicates {
            Duplicates::Rebuilt { why } => {
                tracing::debug!(provider = %self.provider, key, reason = why, "{message}")
            }
            Duplicates::SameBody => tracing::warn!(provider = %self.provider, key, "{message}"),
        }
    }

    pub(crate) fn count(&self, outcome: &Outcome) {
        match outcome.kind {
            OutcomeKind::Accepted => Counters::bump(&self.counters.accepted),
            OutcomeKind::InterimSkipped => Counters::bump(&self.counters.interim_skipped),
            OutcomeKind::Duplicate { same_payload, .. } => {
                Counters::bump(&self.counters.duplicates);
                if !same_payload {
                    Counters::bump(&self.counters.duplicates_with_other_body);
                    self.log_other_body(outcome);
                }
            }
            ref rejection => {
                Counters::bump(&self.counters.rejected);
                let reason = match rejection {
                    OutcomeKind::Unauthorized(_) => &self.counters.rejected_unauthorized,
                    OutcomeKind::TooLarge { .. } => &self.counters.rejected_too_large,
                    OutcomeKind::Unparseable(_) | OutcomeKind::UnusableKey(_) => {
                        &self.counters.rejected_unparseable
                    }
                    OutcomeKind::Unavailable(_)
                    | OutcomeKind::ShuttingDown
                    | OutcomeKind::OverBudget { .. } => &self.counters.rejected_unavailable,
                    _ => return,
                };
                Counters::bump(reason);
            }
        }
    }

    /// Everything up to and including the claim, in stages: open and within the limit →
    /// [`authenticate`](Self::authenticate) → [`summarize`](Self::summarize) →
    /// [`claim`](Self::claim). Each stage either hands the next what it needs or answers.
    pub(super) async fn admit(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
        in_flight: InFlightDuplicates,
        authentication: Authentication,
    ) -> Result<Admitted, Stop> {
        let (verified, event) = self
            .verified_event(headers, path, body, authentication)
            .await
            .map_err(Stop::Answered)?;
        let token = self.claim(&event, in_flight, headers, &verified).await?;
        Ok(Admitted {
            verified,
            event,
            token,
        })
    }

    /// Every stage before the claim: open and within the limit, authenticated, summarized,
    /// not an interim event to skip. What proved it genuine and the run; or the answer.
    // The answer is moved once, up one frame: boxing it would cost an allocation instead.
    #[allow(clippy::result_large_err)]
    pub(super) async fn verified_event(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
        authentication: Authentication,
    ) -> Result<(Verified, RunEvent), Outcome> {
        self.check_open(&body)?;
        let verified = match authentication {
            Authentication::Pending(charge) => {
                let verified = self.authenticate(headers, path, &body).await;
                // Authenticated or not, the body no longer counts against the budget.
                drop(charge);
                verified?
            }
            Authentication::Done(verified) => verified,
        };
        let event = self.summarize(headers, body, &verified).await?;
        if self.interim == Interim::Skip && !event.phase.is_final() {
            tracing::debug!(provider = %self.provider, key = %event.dedup_key, "interim event skipped");
            return Err(with_probe(Outcome::interim_skipped(), probe_of(&event)));
        }
        Ok((verified, event))
    }

    /// Refuses a delivery while shutting down, and a body over the limit that an adapter let
    /// through.
    // The answer is moved once, up one frame: boxing it would cost an allocation instead.
    #[allow(clippy::result_large_err)]
    fn check_open(&self, body: &Bytes) -> Result<(), Outcome> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(Outcome::shutting_down());
        }
        if body.len() > self.body_limit {
            return Err(Outcome::too_large(self.body_limit));
        }
        Ok(())
    }

    /// Claims `event`'s run in the store: the token when this delivery holds it now, or how
    /// the delivery is answered (a duplicate, an unusable key set aside, the store's refusal).
    async fn claim(
        &self,
        event: &RunEvent,
        in_flight: InFlightDuplicates,
        headers: &(dyn HeaderLookup + Sync),
        verified: &Verified,
    ) -> Result<Token, Stop> {
        let fingerprint = Fingerprint::of(&event.raw_body);
        let claim = self
            .store
            .claim(&event.dedup_key, self.lease, fingerprint)
            .await;
        self.answer_claim(event, claim, in_flight, headers, verified)
            .await
    }

    /// What `claim` of `event`'s run means for the delivery: the token when it holds the run
    /// now, or how it is answered (a duplicate, an unusable key set aside, the store's
    /// refusal).
    pub(super) async fn answer_claim(
        &self,
        event: &RunEvent,
        claim: Result<Claim, StoreError>,
        in_flight: InFlightDuplicates,
        headers: &(dyn HeaderLookup + Sync),
        verified: &Verified,
    ) -> Result<Token, Stop> {
        let probe = probe_of(event);
        let outcome = match claim {
            Ok(Claim::Acquired(token)) => return Ok(token),
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
            }) => {
                let outcome = in_flight_duplicate(same_payload, expires_in, in_flight);
                return Err(Stop::InFlight(with_probe(outcome, probe)));
            }
            Err(err @ (StoreError::KeyTooLong { .. } | StoreError::EmptyKey)) => {
                // Genuine, but its key cannot be stored: a retry cannot cure it, so it is
                // kept whole and answered 202, never a 4xx.
                let (body, why) = (event.raw_body.clone(), err.to_string());
                let outcome = self.unusable_key(headers, body, probe, why, Some(err), verified);
                return Err(Stop::Answered(outcome.await));
            }
            Err(err) => store_unavailable(err, self.outage_pause),
        };
        Err(Stop::Answered(with_probe(outcome, probe)))
    }

    /// For the extractor style: authenticates, de-duplicates and parses the delivery, and
    /// hands the claimed run to the caller instead of the background workers. `Err` is the
    /// answer to send when there is nothing for the caller to do (rejected, duplicate, ...).
    pub(super) async fn claim_event(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
    ) -> Result<ClaimedEvent, Outcome> {
        Counters::bump(&self.counters.received);
        let result = self.claim_event_inner(headers, path, body).await;
        match &result {
            Ok(_) => Counters::bump(&self.counters.accepted),
            Err(outcome) => self.count(outcome),
        }
        result
    }

    async fn claim_event_inner(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
    ) -> Result<ClaimedEvent, Outcome> {
        let Admitted {
            verified,
            event,
            token,
        } = (self
            .admit(
                headers,
                path,
                body,
                InFlightDuplicates::AskToRetry,
                Authentication::Pending(Charge::none()),
            )
            .await)
            .map_err(Stop::into_outcome)?;
        let guard = ClaimGuard {
            store: self.store.clone(),
            key: event.dedup_key.clone(),
            token,
            keep_for: self.keep_for,
            counters: self.counters.clone(),
            settled: false,
        };
        // The caller's handler runs now, on the typed payload: read it in full first.
        match event.payload() {
            Ok(_) => Ok(ClaimedEvent {
                event,
                verified,
                claim: guard,
            }),
            Err(err) => {
                let (err, probe) = (err.clone(), probe_of(&event));
                let outcome = self
                    .unparseable(
                        headers,
                        event.raw_body.clone(),
                        Some(&probe),
                        err,
                        &verified,
                    )
                    .await;
                guard.release().await;
                Err(with_probe(outcome, probe))
            }
        }
    }
}

/// The answer to a duplicate of a run another delivery holds: 200 when `in_flight` says
/// acknowledge, else 503 with a `Retry-After` of the lease time left (1 to 60 s, 5 s unknown).
pub(super) fn in_flight_duplicate(
    same_payload: bool,
    expires_in: Option<Duration>,
    in_flight: InFlightDuplicates,
) -> Outcome {
    let kind = OutcomeKind::Duplicate {
        same_payload,
        in_flight: true,
    };
    if in_flight == InFlightDuplicates::Acknowledge {
        return Outcome::new(StatusCode::OK, kind);
    }
    // Shared store with an in-process queue (the instance holding the run may die), or no
    // hand-off at all (inline styles): a retry later finds the run done or claimable.
    let wait = expires_in
        .unwrap_or(Duration::from_secs(5))
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    Outcome {
        retry_after: Some(wait),
        ..Outcome::new(StatusCode::SERVICE_UNAVAILABLE, kind)
    }
}

/// Why [`Pipeline::admit`] stopped short of a claimed run.
pub(super) enum Stop {
    /// Genuine, a duplicate of a run another delivery holds: answered 200 or 503 as the
    /// caller's [`InFlightDuplicates`] said. An acknowledged one may still need the durable
    /// hand-off's append ([`super::Receiver`]).
    InFlight(Outcome),
    /// The delivery stops here with this answer: rejected, a duplicate of a run done, set
    /// aside, or refused for now.
    Answered(Outcome),
}

impl Stop {
    /// The answer, whatever stopped the delivery.
    pub(super) fn into_outcome(self) -> Outcome {
        match self {
            Stop::InFlight(outcome) | Stop::Answered(outcome) => outcome,
        }
    }
}

/// Where a delivery's authentication stands when its body reaches [`Pipeline::admit`].
pub(crate) enum Authentication {
    /// Still to do, on the body; the body's charge on the pre-authentication budget is held
    /// until it is done.
    Pending(Charge),
    /// Done from the headers and path alone, before the body was read
    /// (`Pipeline::authenticate_before_body`, the tower and axum adapters).
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    Done(Verified),
}

/// A genuine, new run, claimed: what authenticated it, its summary read, its claim's token.
pub(super) struct Admitted {
    pub(super) verified: Verified,
    pub(super) event: RunEvent,
    pub(super) token: Token,
}
