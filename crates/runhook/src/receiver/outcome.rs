//! What happened to a delivery and what to answer: the response policy's vocabulary.

use std::time::Duration;

use http::StatusCode;
use runhook_core::payload::{DedupProbe, PayloadError, Provider, RunEvent};
use runhook_core::platform::Platform;
use runhook_core::AuthError;
use runhook_store::StoreError;

use crate::handler::HandlerError;
use crate::handoff::Refused;

/// What happened to a delivery, and what to answer: the response policy, written here once.
///
/// Status, `Retry-After` and whether the connection is closed are decided here; the adapters
/// only render an outcome (`IntoResponse` with axum, `Responder` with actix-web, an
/// `http::Response` with tower). `Retry-After` is sent in whole seconds, at least 1.
///
/// | outcome | status | `Retry-After` | closes |
/// |---|---|---|---|
/// | new run, handed off (inline: your handler's own answer) | 200 | | |
/// | duplicate of a run done | 200 | | |
/// | interim event (an attempt to be retried) on a route that skips them ([`Interim::Skip`](crate::receiver::Interim)) | 200 | | |
/// | duplicate of a run in flight, acknowledged ([`InFlightDuplicates`]) | 200 | | |
/// | duplicate of a run in flight, not acknowledged (always inline) | 503 | lease time left, 1–60 s (5 s if unknown) | |
/// | not genuine (any `AuthError`; a resolver that finds no account) | 401 | | |
/// | body over the limit | 413 | | yes |
/// | body not complete within the read timeout | 408 | | yes |
/// | transport failed while reading the body | 400 | | |
/// | body past the pre-authentication budget ([`PreAuthBudget`](crate::receiver::PreAuthBudget)) | 503 | 2 s | yes |
/// | genuine, not the provider's payload (dead-lettered) | 202 | | |
/// | genuine, run id unusable as a key (dead-lettered) | 202 | | |
/// | ... and the dead-letter sink refused it | 503 | 1 s | |
/// | store unavailable (down, timed out) | 503 | 1 s, or the outage pause (*) | |
/// | store full of in-flight claims | 503 | until the earliest lease may lapse | |
/// | store misconfigured (bad duration, corrupt record, config) | 500 | | |
/// | key resolver failed | 503 | 1 s | |
/// | exact signature check failed, every canonical-fallback slot busy | 503 | 1 s, or the outage pause (*) | |
/// | queue or stream backlog full | 503 | 2 s, or the outage pause (*) | |
/// | stream unavailable (Redis failed or timed out on `XADD`) | 503 | 2 s, or the outage pause (*) | |
/// | shutting down (or the queue closed) | 503 | 5 s | |
///
/// (*) Where the route's platform retries on its own schedule and honours `Retry-After`
/// ([`SenderProfile::outage_retry_after`](crate::platform::SenderProfile::outage_retry_after)),
/// an outage of the store or the queue is answered with the pause that makes its retries span
/// a minute ([`OUTAGE_SPAN`](crate::platform::OUTAGE_SPAN)): Skyvern, whose three attempts
/// honour up to 30 s, is asked for 30 s, so that a one-minute outage gives up nothing. A
/// second's wait would spend its three attempts in about two seconds.
///
/// Every rejection body is short plain text ([`Outcome::body_text`]) that never echoes a secret
/// or a store error; those go to the log.
#[derive(Debug)]
#[non_exhaustive]
pub struct Outcome {
    /// The status to answer.
    pub status: StatusCode,
    /// A `Retry-After` to send with a 503.
    pub retry_after: Option<Duration>,
    /// What happened.
    pub kind: OutcomeKind,
    /// The run's de-duplication key and id, when the body was read that far. The receive
    /// path reads the [`RunEvent`](crate::payload::RunEvent)'s summary once and hands it to
    /// the worker; the typed payload is read only if the handler asks for it.
    pub probe: Option<DedupProbe>,
}

/// What happened to a delivery.
#[derive(Debug)]
#[non_exhaustive]
pub enum OutcomeKind {
    /// Genuine and new: acknowledged and handed off; the handler runs later.
    Accepted,
    /// Genuine, already seen: no second handler call.
    Duplicate {
        /// Whether the body equals the first delivery's.
        same_payload: bool,
        /// Whether the first delivery is still being processed.
        in_flight: bool,
    },
    /// Genuine, an interim event (an attempt the platform will retry), on a route that skips
    /// them ([`Interim::Skip`](crate::receiver::Interim)): answered 200, no handler call.
    InterimSkipped,
    /// Not genuine.
    Unauthorized(AuthError),
    /// The body is larger than the limit.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body did not arrive in full within the read timeout (a stalled or trickling
    /// sender): answered 408 and the connection closed, so that it holds nothing.
    BodyTimeout {
        /// The read timeout.
        after: Duration,
    },
    /// The transport failed while the body was read (a malformed chunk, a connection closed
    /// mid-body): answered 400; the sender's retry brings the delivery again.
    BodyUnreadable,
    /// Reading the body would take the pre-authentication budget past its limit (too many
    /// bytes of unauthenticated bodies held at once): answered 503 with `Retry-After`, the
    /// body dropped and the connection closed.
    OverBudget {
        /// The budget's limit, in bytes.
        budget: u64,
    },
    /// Genuine but not the provider's payload: kept whole in the dead-letter sink (202).
    Unparseable(PayloadError),
    /// Genuine, but its run id cannot be a de-duplication key (longer than
    /// [`MAX_RUN_ID_LEN`](crate::payload::MAX_RUN_ID_LEN), or refused by the store, whose error
    /// this carries): kept whole in the dead-letter sink (202).
    UnusableKey(Option<StoreError>),
    /// The store, the key resolver, the queue or the dead-letter sink cannot take the
    /// delivery now (503 with `Retry-After`).
    Unavailable(Unavailable),
    /// The receiver's store is misconfigured (500); the error is logged.
    Misconfigured(StoreError),
    /// The receiver is shutting down.
    ShuttingDown,
}

/// How a duplicate of a run still being processed is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlightDuplicates {
    /// 200: the run is safely handed off, and will be processed.
    Acknowledge,
    /// 503 with a `Retry-After` of the claim's remaining lease (1 to 60 s): a later retry
    /// finds the run done, or claimable if its processing failed.
    AskToRetry,
}

/// Why a delivery was refused for now (503 with `Retry-After`).
#[derive(Debug)]
#[non_exhaustive]
pub enum Unavailable {
    /// The queue, or the stream's backlog, is at its capacity.
    QueueFull,
    /// The hand-off's backend (Redis) failed or timed out.
    QueueUnavailable,
    /// The idempotency store failed, timed out or is full.
    Store(StoreError),
    /// The key resolver could not look the keys up.
    KeyResolver(HandlerError),
    /// The dead-letter sink refused a genuine but unusable delivery.
    DeadLetters(std::io::Error),
    /// The exact signature check failed and every slot for the canonical fallback's check is
    /// busy (as many as the machine has cores).
    FallbackBusy,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::QueueFull => f.write_str("queue full"),
            Unavailable::QueueUnavailable => f.write_str("queue unavailable"),
            Unavailable::Store(err) => write!(f, "{err}"),
            Unavailable::KeyResolver(err) => write!(f, "key resolver: {err}"),
            Unavailable::DeadLetters(err) => write!(f, "dead-letter sink: {err}"),
            Unavailable::FallbackBusy => f.write_str("every canonical-fallback check slot is busy"),
        }
    }
}

impl Outcome {
    pub(super) fn new(status: StatusCode, kind: OutcomeKind) -> Self {
        Self {
            status,
            retry_after: None,
            kind,
            probe: None,
        }
    }

    /// The answer for a body over `limit` bytes.
    pub(super) fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            OutcomeKind::TooLarge { limit },
        )
    }

    /// The answer for a body not received within `after`.
    pub(super) fn body_timeout(after: Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            OutcomeKind::BodyTimeout { after },
        )
    }

    /// The answer for a body past the pre-authentication budget of `budget` bytes.
    pub(super) fn over_budget(budget: u64) -> Self {
        Self {
            retry_after: Some(Duration::from_secs(2)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                OutcomeKind::OverBudget { budget },
            )
        }
    }

    /// The answer for an interim event on a route that skips them.
    pub(super) fn interim_skipped() -> Self {
        Self::new(StatusCode::OK, OutcomeKind::InterimSkipped)
    }

    pub(super) fn shutting_down() -> Self {
        Self {
            retry_after: Some(Duration::from_secs(5)),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, OutcomeKind::ShuttingDown)
        }
    }

    pub(crate) fn unavailable(reason: Unavailable, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                OutcomeKind::Unavailable(reason),
            )
        }
    }

    /// A short plain-text body for the answer. It names the problem without echoing secrets
    /// or internal details (store errors are logged, not sent).
    pub fn body_text(&self) -> String {
        match &self.kind {
            OutcomeKind::Accepted => "accepted".into(),
            OutcomeKind::Duplicate { .. } => "duplicate: already received".into(),
            OutcomeKind::InterimSkipped => "accepted: interim attempt, skipped".into(),
            OutcomeKind::Unauthorized(err) => format!("unauthorized: {err}"),
            OutcomeKind::TooLarge { limit } => format!("body larger than {limit} bytes"),
            OutcomeKind::BodyTimeout { after } => {
                format!("body not received within {} ms", after.as_millis())
            }
            OutcomeKind::BodyUnreadable => "could not read the body".into(),
            OutcomeKind::OverBudget { .. } => "busy, retry later".into(),
            OutcomeKind::Unparseable(_) => "accepted for review: not a recognised payload".into(),
            OutcomeKind::UnusableKey(_) => "accepted for review: the run id cannot be used".into(),
            OutcomeKind::Unavailable(_) => "temporarily unavailable, retry later".into(),
            OutcomeKind::Misconfigured(_) => "receiver misconfigured".into(),
            OutcomeKind::ShuttingDown => "shutting down, retry later".into(),
        }
    }

    /// Whether this delivery was a duplicate of one already received.
    pub fn is_duplicate(&self) -> bool {
        matches!(self.kind, OutcomeKind::Duplicate { .. })
    }

    /// Whether the answer should close the connection: after a body read timeout (a stalled
    /// sender), a body over the limit (its rest may not have been read) or past the
    /// pre-authentication budget (its rest was not read).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self.kind,
            OutcomeKind::BodyTimeout { .. }
                | OutcomeKind::TooLarge { .. }
                | OutcomeKind::OverBudget { .. }
        )
    }
}

/// The key and id of `event`, as outcomes report them.
pub(super) fn probe_of(event: &RunEvent) -> DedupProbe {
    DedupProbe {
        dedup_key: event.dedup_key.clone(),
        run_id: event.run_id.clone(),
    }
}

pub(super) fn with_probe(mut outcome: Outcome, probe: DedupProbe) -> Outcome {
    outcome.probe = Some(probe);
    outcome
}

/// How long one route asks senders to wait while its store or queue is unavailable: at least
/// its platform's outage pause, where the platform's sender honours `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutagePause {
    floor: Option<Duration>,
}

impl OutagePause {
    /// The pause for deliveries from `provider`'s sender.
    pub(crate) fn of(provider: Provider) -> Self {
        Self {
            floor: Platform::of(provider).sender.outage_retry_after(),
        }
    }

    /// `wait`, raised to the platform's pause.
    pub(crate) fn at_least(self, wait: Duration) -> Duration {
        self.floor.map_or(wait, |floor| floor.max(wait))
    }
}

/// The answer for a refused hand-off: 503 and a `Retry-After` (see [`OutagePause`]).
pub(super) fn refused_outcome(refused: Refused, pause: OutagePause) -> Outcome {
    let wait = pause.at_least(Duration::from_secs(2));
    match refused {
        Refused::Full => Outcome::unavailable(Unavailable::QueueFull, wait),
        Refused::Closed => Outcome::shutting_down(),
        Refused::Unavailable => Outcome::unavailable(Unavailable::QueueUnavailable, wait),
    }
}

/// The answer for a store error on the claim: 503 with `Retry-After` for what a retry can
/// cure (an outage's raised to the route's [`OutagePause`]), 500 for a misconfigured store.
pub(super) fn store_unavailable(err: StoreError, pause: OutagePause) -> Outcome {
    tracing::error!(error = %err, "idempotency store refused a claim");
    match (err.retry_after(), &err) {
        (Some(wait), StoreError::Full { .. }) => {
            Outcome::unavailable(Unavailable::Store(err), wait)
        }
        (Some(wait), _) => Outcome::unavailable(Unavailable::Store(err), pause.at_least(wait)),
        (None, _) => Outcome::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            OutcomeKind::Misconfigured(err),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route whose sender ignores `Retry-After` (TinyFish): the plain waits.
    fn plain() -> OutagePause {
        OutagePause::of(Provider::TinyFish)
    }

    /// The policy table in `Outcome`'s docs, row by row, against the constructors that
    /// build each answer: a change to one without the other fails here.
    #[test]
    fn the_documented_policy_is_the_one_answered() {
        let secs = |s| Some(Duration::from_secs(s));
        let store_down = StoreError::Unavailable {
            reason: "down".into(),
        };
        let sink_refused = Unavailable::DeadLetters(std::io::Error::other("full"));
        let full = StoreError::Full {
            capacity: 1,
            retry_after: Duration::from_secs(7),
        };
        let rows: [(Outcome, u16, Option<Duration>, bool); 13] = [
            (Outcome::interim_skipped(), 200, None, false),
            (Outcome::too_large(1024), 413, None, true),
            (Outcome::over_budget(1 << 26), 503, secs(2), true),
            (
                Outcome::body_timeout(Duration::from_secs(10)),
                408,
                None,
                true,
            ),
            (
                Outcome::unavailable(sink_refused, Duration::from_secs(1)),
                503,
                secs(1),
                false,
            ),
            (store_unavailable(store_down, plain()), 503, secs(1), false),
            (
                store_unavailable(
                    StoreError::InvalidConfig {
                        reason: "bad".into(),
                    },
                    plain(),
                ),
                500,
                None,
                false,
            ),
            (store_unavailable(full, plain()), 503, secs(7), false),
            (refused_outcome(Refused::Full, plain()), 503, secs(2), false),
            (
                refused_outcome(Refused::Unavailable, plain()),
                503,
                secs(2),
                false,
            ),
            (
                refused_outcome(Refused::Closed, plain()),
                503,
                secs(5),
                false,
            ),
            (Outcome::shutting_down(), 503, secs(5), false),
            (
                Outcome::unavailable(
                    Unavailable::FallbackBusy,
                    plain().at_least(Duration::from_secs(1)),
                ),
                503,
                secs(1),
                false,
            ),
        ];
        for (outcome, status, retry_after, closes) in rows {
            assert_eq!(outcome.status.as_u16(), status, "{:?}", outcome.kind);
            assert_eq!(outcome.retry_after, retry_after, "{:?}", outcome.kind);
            assert_eq!(outcome.closes_connection(), closes, "{:?}", outcome.kind);
        }
    }

    /// The answers runhook gives, against the set Skyvern's server retries (403, 408, 425, 429,
    /// 5xx): what is final must not be retried, what is passing must be, with a wait.
    #[test]
    fn skyvern_retries_exactly_the_passing_answers() {
        let retried = |outcome: &Outcome| {
            Platform::of(Provider::Skyvern)
                .sender
                .retry_on
                .status(outcome.status.as_u16())
        };
        // A forgery is 401, never 403: Skyvern would resend a 403 twice more.
        let forged = Outcome::new(
            AuthError::NoSchemeMatched(Vec::new()).status(),
            OutcomeKind::Unauthorized(AuthError::NoSchemeMatched(Vec::new())),
        );
        assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
        for last in [forged, Outcome::too_large(1024)] {
            assert!(!retried(&last), "{}", last.status);
        }
        let skyvern = OutagePause::of(Provider::Skyvern);
        let passing = [
            Outcome::over_budget(1 << 26),
            refused_outcome(Refused::Full, skyvern),
            refused_outcome(Refused::Unavailable, skyvern),
            refused_outcome(Refused::Closed, skyvern),
            store_unavailable(
                StoreError::Unavailable {
                    reason: "down".into(),
                },
                skyvern,
            ),
        ];
        for outcome in passing {
            assert_eq!(outcome.status, StatusCode::SERVICE_UNAVAILABLE);
            let wait = outcome.retry_after.expect("a 503 says when to come back");
            assert!(wait <= Duration::from_secs(30), "under Skyvern's cap");
            assert!(retried(&outcome));
        }
        // An outage is answered with Skyvern's outage pause (the (*) rows), so that its three
        // attempts span a minute; a full store keeps its own lease-based wait.
        let outage = [
            refused_outcome(Refused::Full, skyvern),
            refused_outcome(Refused::Unavailable, skyvern),
            store_unavailable(
                StoreError::Unavailable {
                    reason: "down".into(),
                },
                skyvern,
            ),
        ];
        for outcome in outage {
            assert_eq!(outcome.retry_after, Some(Duration::from_secs(30)));
        }
        let full = StoreError::Full {
            capacity: 1,
            retry_after: Duration::from_secs(7),
        };
        assert_eq!(
            store_unavailable(full, skyvern).retry_after,
            Some(Duration::from_secs(7))
        );
        // The body never arrived: a retry is what should happen.
        assert!(retried(&Outcome::body_timeout(Duration::from_secs(10))));
    }
}
