//! The receiving pipeline of one route: body limit, authentication on the raw bytes, the
//! de-duplication claim, the hand-off to the background workers, and the answer (the
//! response policy of docs/ARCHITECTURE.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use runhook_core::payload::{DedupProbe, PayloadError, Provider, RunEvent, MAX_RUN_ID_LEN};
use runhook_core::{AuthError, BodyMatch, Delivery, HeaderLookup, Verified, Verifier};
use runhook_store::{Claim, Fingerprint, IdempotencyStore, MemoryStore, StoreError, Token};

use crate::dead_letter::{
    is_credential_header, DeadLetter, DeadLetterReason, DeadLetterSink, MemoryDeadLetters,
};
use crate::handler::{BoxFuture, Handler, HandlerError};
use crate::handoff::{Duplicate, HandOff};
use crate::memory_queue::{MemoryQueue, Refused};
use crate::stats::{Counters, Stats};
#[cfg(feature = "redis")]
use crate::stream::{RedisStreamQueue, StreamWorkers};
use crate::worker::{Job, RetryPolicy, WorkerContext};

/// The largest body accepted unless [`ReceiverBuilder::body_limit`] says otherwise: 2 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// How long the adapters wait for a whole body unless [`ReceiverBuilder::body_read_timeout`]
/// says otherwise: 10 s, the senders' own timeout (WebRun's is 30 s: raise it for WebRun
/// routes). A sender still sending by then has given up on its side anyway.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a claim is held unless [`ReceiverBuilder::lease`] says otherwise: 30 s, renewed
/// every 10 s while a handler runs or backs off. It bounds how long a crashed instance's runs
/// wait before another instance takes them over (see [`ReceiverBuilder::lease`]).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// How many acknowledged deliveries may wait unless [`ReceiverBuilder::queue_capacity`] says
/// otherwise: 1024 in the in-process queue; a Redis stream's default is
/// [`DEFAULT_STREAM_CAPACITY`](crate::stream::DEFAULT_STREAM_CAPACITY).
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

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

enum Auth {
    Fixed(Arc<dyn Verifier>),
    Resolved(Arc<dyn KeyResolver>),
}

/// What happened to a delivery, and what to answer.
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
    /// [`Receiver::receive`] was called on a receiver built without a handler (one meant for
    /// [`Receiver::claim_event`]).
    NoHandler,
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
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::QueueFull => f.write_str("queue full"),
            Unavailable::QueueUnavailable => f.write_str("queue unavailable"),
            Unavailable::Store(err) => write!(f, "{err}"),
            Unavailable::KeyResolver(err) => write!(f, "key resolver: {err}"),
            Unavailable::DeadLetters(err) => write!(f, "dead-letter sink: {err}"),
        }
    }
}

impl Outcome {
    fn new(status: StatusCode, kind: OutcomeKind) -> Self {
        Self {
            status,
            retry_after: None,
            kind,
            probe: None,
        }
    }

    /// The answer for a body over `limit` bytes.
    fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            OutcomeKind::TooLarge { limit },
        )
    }

    /// The answer for a body not received within `after`.
    fn body_timeout(after: Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            OutcomeKind::BodyTimeout { after },
        )
    }

    fn shutting_down() -> Self {
        Self {
            retry_after: Some(Duration::from_secs(5)),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, OutcomeKind::ShuttingDown)
        }
    }

    fn unavailable(reason: Unavailable, retry_after: Duration) -> Self {
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
            OutcomeKind::Unauthorized(err) => format!("unauthorized: {err}"),
            OutcomeKind::TooLarge { limit } => format!("body larger than {limit} bytes"),
            OutcomeKind::BodyTimeout { after } => {
                format!("body not received within {} ms", after.as_millis())
            }
            OutcomeKind::Unparseable(_) => "accepted for review: not a recognised payload".into(),
            OutcomeKind::UnusableKey(_) => "accepted for review: the run id cannot be used".into(),
            OutcomeKind::Unavailable(_) => "temporarily unavailable, retry later".into(),
            OutcomeKind::Misconfigured(_) => "receiver misconfigured".into(),
            OutcomeKind::ShuttingDown => "shutting down, retry later".into(),
            OutcomeKind::NoHandler => "receiver misconfigured".into(),
        }
    }

    /// Whether this delivery was a duplicate of one already received.
    pub fn is_duplicate(&self) -> bool {
        matches!(self.kind, OutcomeKind::Duplicate { .. })
    }

    /// Whether the answer should close the connection: after a body read timeout (a stalled
    /// sender) or a body over the limit (its rest may not have been read).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self.kind,
            OutcomeKind::BodyTimeout { .. } | OutcomeKind::TooLarge { .. }
        )
    }
}

/// What [`Receiver::shutdown`] could not finish before its deadline, by de-duplication key.
/// Every key's claim was released, so that a retry, a redrive or a takeover can win at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// In-process queue: acknowledged but not processed, and now in the dead letters with
    /// their bodies (reason `not_drained`).
    pub dead_lettered: Vec<String>,
    /// Redis stream: not processed here, and still pending in the stream, where another
    /// instance takes them over.
    pub left_pending: Vec<String>,
    /// In-process queue: not processed, and the dead-letter sink refused them too. These are
    /// lost unless their senders retry; they are logged at error level.
    pub lost: Vec<String>,
}

impl ShutdownReport {
    /// Whether everything acknowledged was processed before the deadline.
    pub fn drained(&self) -> bool {
        self.dead_lettered.is_empty() && self.left_pending.is_empty() && self.lost.is_empty()
    }

    /// Every key not processed here, whatever became of it.
    pub fn not_drained(&self) -> Vec<String> {
        let mut keys = self.dead_lettered.clone();
        keys.extend(self.left_pending.iter().cloned());
        keys.extend(self.lost.iter().cloned());
        keys
    }
}

/// One route's receiving pipeline. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Inner>,
}

struct Inner {
    provider: Provider,
    auth: Auth,
    store: Arc<dyn IdempotencyStore>,
    dead_letters: Arc<dyn DeadLetterSink>,
    body_limit: usize,
    body_read_timeout: Duration,
    lease: Duration,
    ack_in_flight_duplicates: bool,
    shutting_down: AtomicBool,
    keep_for: Duration,
    /// `None` for a receiver built without a handler (extractor style).
    dispatcher: Option<HandOff>,
    counters: Arc<Counters>,
    /// The verifier's credential headers, dropped from stored headers with the fixed list.
    credential_headers: Vec<String>,
}

/// Configures a [`Receiver`]; see [`Receiver::builder`].
pub struct ReceiverBuilder {
    provider: Provider,
    auth: Option<Auth>,
    store: Option<Arc<dyn IdempotencyStore>>,
    handler: Option<Arc<dyn Handler>>,
    dead_letters: Option<Arc<dyn DeadLetterSink>>,
    body_limit: usize,
    body_read_timeout: Duration,
    queue_capacity: Option<usize>,
    workers: usize,
    lease: Duration,
    keep_for: Duration,
    retry: RetryPolicy,
    ack_in_flight_duplicates: Option<bool>,
    #[cfg(feature = "redis")]
    stream: Option<RedisStreamQueue>,
}

/// A receiver that cannot be built as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No authentication was configured (use `Unsigned` explicitly for none).
    #[error("no authentication configured: call .verifier(...) or .key_resolver(...)")]
    NoAuth,
    /// Not called inside a tokio runtime (the workers are tokio tasks).
    #[error("a receiver must be built inside a tokio runtime")]
    NoRuntime,
    /// A Redis stream was given to a receiver without a handler: nothing would read it.
    #[error("a Redis stream hand-off needs a handler: call .handler(...)")]
    StreamWithoutHandler,
}

impl Receiver {
    /// Starts configuring the route that receives `provider`'s deliveries.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use runhook::{payload::{Provider, RunEvent}, Receiver, Secret, SkyvernSignature};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let receiver = Receiver::builder(Provider::Skyvern)
    ///     .verifier(SkyvernSignature::new(Secret::new("sk_live_example")?))
    ///     .handler(|event: Arc<RunEvent>| async move {
    ///         println!("processed {} {}", event.provider, event.run_id);
    ///         Ok::<(), std::io::Error>(())
    ///     })
    ///     .build()?;
    /// // In a handler: receiver.receive(&headers, path, body).await gives the answer.
    /// # let _ = receiver; Ok(()) }
    /// ```
    pub fn builder(provider: Provider) -> ReceiverBuilder {
        ReceiverBuilder {
            provider,
            auth: None,
            store: None,
            handler: None,
            dead_letters: None,
            body_limit: DEFAULT_BODY_LIMIT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            queue_capacity: None,
            workers: 4,
            lease: DEFAULT_LEASE,
            keep_for: Duration::from_secs(7 * 24 * 3600),
            retry: RetryPolicy::default(),
            ack_in_flight_duplicates: None,
            #[cfg(feature = "redis")]
            stream: None,
        }
    }

    /// The provider this route receives.
    pub fn provider(&self) -> Provider {
        self.inner.provider
    }

    /// The body limit in bytes; adapters stop reading past it and answer 413.
    pub fn body_limit(&self) -> usize {
        self.inner.body_limit
    }

    /// Counts and answers a body refused while reading, for adapters that stop reading past
    /// [`Receiver::body_limit`].
    pub fn too_large(&self) -> Outcome {
        let outcome = Outcome::too_large(self.inner.body_limit);
        Counters::bump(&self.inner.counters.received);
        self.count(&outcome);
        outcome
    }

    /// How long the adapters wait for the whole body; past it they answer 408
    /// ([`Receiver::body_timed_out`]) and close the connection.
    pub fn body_read_timeout(&self) -> Duration {
        self.inner.body_read_timeout
    }

    /// Counts and answers a body that did not arrive within [`Receiver::body_read_timeout`],
    /// for adapters that stop waiting then. Counted as received and rejected.
    pub fn body_timed_out(&self) -> Outcome {
        let outcome = Outcome::body_timeout(self.inner.body_read_timeout);
        tracing::info!(
            provider = %self.inner.provider,
            timeout_ms = self.inner.body_read_timeout.as_millis() as u64,
            "the body did not arrive in time; closing the connection"
        );
        Counters::bump(&self.inner.counters.received);
        self.count(&outcome);
        outcome
    }

    /// Counters so far and the current queue depth.
    pub fn stats(&self) -> Stats {
        let depth = self.inner.dispatcher.as_ref().map_or(0, HandOff::depth);
        self.inner.counters.snapshot(depth)
    }

    /// Answers one delivery: `headers`, the request `path` and the `body` exactly as
    /// received. Never waits for the handler.
    pub async fn receive(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
    ) -> Outcome {
        let inner = &*self.inner;
        Counters::bump(&inner.counters.received);
        let outcome = self.decide(headers, path, body).await;
        self.count(&outcome);
        outcome
    }

    fn count(&self, outcome: &Outcome) {
        let inner = &*self.inner;
        match outcome.kind {
            OutcomeKind::Accepted => Counters::bump(&inner.counters.accepted),
            OutcomeKind::Duplicate { same_payload, .. } => {
                Counters::bump(&inner.counters.duplicates);
                if !same_payload {
                    Counters::bump(&inner.counters.duplicates_with_other_body);
                    tracing::warn!(
                        provider = %inner.provider,
                        key = outcome.probe.as_ref().map(|p| p.dedup_key.as_str()),
                        "duplicate delivery with a different body than the first"
                    );
                }
            }
            ref rejection => {
                Counters::bump(&inner.counters.rejected);
                let reason = match rejection {
                    OutcomeKind::Unauthorized(_) => &inner.counters.rejected_unauthorized,
                    OutcomeKind::TooLarge { .. } => &inner.counters.rejected_too_large,
                    OutcomeKind::Unparseable(_) | OutcomeKind::UnusableKey(_) => {
                        &inner.counters.rejected_unparseable
                    }
                    OutcomeKind::Unavailable(_) | OutcomeKind::ShuttingDown => {
                        &inner.counters.rejected_unavailable
                    }
                    _ => return,
                };
                Counters::bump(reason);
            }
        }
    }

    async fn decide(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
    ) -> Outcome {
        let inner = &*self.inner;
        let Some(hand_off) = &inner.dispatcher else {
            tracing::error!("receive() called on a receiver built without a handler");
            return Outcome::new(StatusCode::INTERNAL_SERVER_ERROR, OutcomeKind::NoHandler);
        };
        let received_at = SystemTime::now();
        let Admitted { event, token } = match self.admit(headers, path, body.clone()).await {
            Ok(admitted) => admitted,
            Err(outcome) => {
                return self
                    .guard_in_flight_duplicate(hand_off, headers, body, received_at, outcome)
                    .await
            }
        };
        let probe = probe_of(&event);
        let job = Job {
            event: Arc::new(event),
            token,
            held_since: tokio::time::Instant::now(),
            received_at,
            headers: kept_headers(headers, &inner.credential_headers).into(),
        };
        let outcome = match hand_off.send(job).await {
            Ok(()) => Outcome::new(StatusCode::OK, OutcomeKind::Accepted),
            Err(given_back) => {
                let (refused, job) = *given_back;
                // Give the claim back so that the sender's retry can win.
                if let Err(err) = inner.store.release(job.key(), &job.token).await {
                    tracing::warn!(key = %job.key(), error = %err, "could not release a claim after a refused hand-off");
                }
                refused_outcome(refused)
            }
        };
        with_probe(outcome, probe)
    }

    /// With a durable hand-off (a Redis stream), a duplicate of a run in flight is answered
    /// 200 only once it is appended too ([`HandOff::guard_in_flight_duplicate`]): the instance
    /// holding the run may die before its own hand-off. If that fails, the answer is 503.
    /// Any other outcome is returned as it is.
    async fn guard_in_flight_duplicate(
        &self,
        hand_off: &HandOff,
        headers: &(dyn HeaderLookup + Sync),
        body: Bytes,
        received_at: SystemTime,
        outcome: Outcome,
    ) -> Outcome {
        let acked_in_flight = outcome.status == StatusCode::OK
            && matches!(
                outcome.kind,
                OutcomeKind::Duplicate {
                    in_flight: true,
                    ..
                }
            );
        let Some(probe) = outcome
            .probe
            .clone()
            .filter(|_| acked_in_flight && hand_off.is_durable())
        else {
            return outcome;
        };
        let duplicate = Duplicate {
            provider: self.inner.provider,
            key: &probe.dedup_key,
            run_id: &probe.run_id,
            received_at,
            body: &body,
            headers: &kept_headers(headers, &self.inner.credential_headers),
        };
        match hand_off.guard_in_flight_duplicate(duplicate).await {
            Ok(()) => outcome,
            Err(refused) => with_probe(refused_outcome(refused), probe),
        }
    }

    /// Everything up to and including the claim: the answer if the delivery stops here, or
    /// the claimed run.
    async fn admit(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
    ) -> Result<Admitted, Outcome> {
        let inner = &*self.inner;
        if inner.shutting_down.load(Ordering::Acquire) {
            return Err(Outcome::shutting_down());
        }
        if body.len() > inner.body_limit {
            return Err(Outcome::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                OutcomeKind::TooLarge {
                    limit: inner.body_limit,
                },
            ));
        }
        let verifier: Arc<dyn Verifier> = match &inner.auth {
            Auth::Fixed(verifier) => verifier.clone(),
            Auth::Resolved(resolver) => match resolver.resolve(path, &body).await {
                Ok(Some(verifier)) => verifier,
                Ok(None) => {
                    let err = AuthError::NoSchemeMatched(Vec::new());
                    return Err(Outcome::new(err.status(), OutcomeKind::Unauthorized(err)));
                }
                Err(err) => {
                    tracing::error!(error = %err, "key resolver failed");
                    return Err(Outcome::unavailable(
                        Unavailable::KeyResolver(err),
                        Duration::from_secs(1),
                    ));
                }
            },
        };
        // The exact check inline; a fallback (canonical form) off the async workers.
        let exact = verifier.verify_exact(&Delivery::new(headers, &body).with_path(path));
        let verified = match exact {
            Err(exact) if verifier.has_fallback() => {
                verify_blocking(verifier, headers, path, &body, exact).await
            }
            verified => verified,
        };
        let signed_body = match verified {
            Ok(verified) => verified
                .signed_body
                .filter(|_| verified.body == BodyMatch::Canonical),
            Err(err) => {
                tracing::info!(provider = %inner.provider, reason = %err, "rejected a delivery");
                return Err(Outcome::new(err.status(), OutcomeKind::Unauthorized(err)));
            }
        };
        if signed_body.is_some() {
            Counters::bump(&inner.counters.canonical_fallback_matches);
            tracing::info!(provider = %inner.provider, "signature matched the body's canonical form only: it was re-serialized on its way");
        }
        // The summary, read once, here: the worker is handed the parsed event. A body that
        // is genuine but not the provider's payload is kept whole and answered 202.
        let mut event = match RunEvent::parse_summary(inner.provider, body.clone()) {
            Ok(event) => event,
            Err(PayloadError::RunIdTooLong { field, run_id }) => {
                // Genuine, but its id cannot be a key: kept whole, findable by its id.
                let probe = DedupProbe {
                    dedup_key: format!("{}:{run_id}", inner.provider.as_str()),
                    run_id,
                };
                let why = format!("field `{field}` is longer than {MAX_RUN_ID_LEN} bytes");
                return Err(self.unusable_key(headers, body, probe, why, None).await);
            }
            Err(err) => {
                // Keep the run's key with the letter when at least the id reads.
                let probe = DedupProbe::read(inner.provider, &body).ok();
                let outcome = self.unparseable(headers, body, probe.as_ref(), err).await;
                return Err(match probe {
                    Some(probe) => with_probe(outcome, probe),
                    None => outcome,
                });
            }
        };
        event.signed_body = signed_body;
        let probe = probe_of(&event);
        let fingerprint = Fingerprint::of(&body);
        let claim = match inner
            .store
            .claim(&probe.dedup_key, inner.lease, fingerprint)
            .await
        {
            Ok(claim) => claim,
            Err(err @ (StoreError::KeyTooLong { .. } | StoreError::EmptyKey)) => {
                // Genuine, but its key cannot be stored: a retry cannot cure it, so it is
                // kept whole and answered 202, never a 4xx.
                let why = err.to_string();
                return Err(self
                    .unusable_key(headers, body, probe, why, Some(err))
                    .await);
            }
            Err(err) => return Err(with_probe(store_unavailable(err), probe)),
        };
        let outcome = match claim {
            Claim::Acquired(token) => return Ok(Admitted { event, token }),
            Claim::Done { same_payload } => Outcome::new(
                StatusCode::OK,
                OutcomeKind::Duplicate {
                    same_payload,
                    in_flight: false,
                },
            ),
            Claim::InFlight {
                same_payload,
                expires_in,
            } => {
                let kind = OutcomeKind::Duplicate {
                    same_payload,
                    in_flight: true,
                };
                if inner.ack_in_flight_duplicates {
                    Outcome::new(StatusCode::OK, kind)
                } else {
                    // Shared store with an in-process queue (the instance holding the run may
                    // die), or no hand-off at all (extractor style): a retry later finds the
                    // run done or claimable.
                    let wait = expires_in
                        .unwrap_or(Duration::from_secs(5))
                        .clamp(Duration::from_secs(1), Duration::from_secs(60));
                    Outcome {
                        retry_after: Some(wait),
                        ..Outcome::new(StatusCode::SERVICE_UNAVAILABLE, kind)
                    }
                }
            }
        };
        Err(with_probe(outcome, probe))
    }

    /// For the extractor style: authenticates, de-duplicates and parses the delivery, and
    /// hands the claimed run to the caller instead of the background workers. `Err` is the
    /// answer to send when there is nothing for the caller to do (rejected, duplicate, ...).
    pub async fn claim_event(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
    ) -> Result<ClaimedEvent, Outcome> {
        let inner = &*self.inner;
        Counters::bump(&inner.counters.received);
        let result = self.claim_event_inner(headers, path, body).await;
        match &result {
            Ok(_) => Counters::bump(&inner.counters.accepted),
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
        let inner = &*self.inner;
        let Admitted { event, token } = self.admit(headers, path, body).await?;
        let guard = ClaimGuard {
            store: inner.store.clone(),
            key: event.dedup_key.clone(),
            token,
            keep_for: inner.keep_for,
            counters: inner.counters.clone(),
            settled: false,
        };
        // The caller's handler runs now, on the typed payload: read it in full first.
        match event.payload() {
            Ok(_) => Ok(ClaimedEvent {
                event,
                claim: guard,
            }),
            Err(err) => {
                let (err, probe) = (err.clone(), probe_of(&event));
                let outcome = self
                    .unparseable(headers, event.raw_body.clone(), Some(&probe), err)
                    .await;
                guard.release().await;
                Err(with_probe(outcome, probe))
            }
        }
    }

    /// Keeps a genuine but unusable delivery whole in the dead letters and answers 202 with
    /// `kind`; 503 if the sink refuses it (the sender's retry brings it back).
    async fn set_aside(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        body: Bytes,
        probe: Option<&DedupProbe>,
        reason: DeadLetterReason,
        kind: OutcomeKind,
    ) -> Outcome {
        let inner = &*self.inner;
        tracing::warn!(provider = %inner.provider, %reason, "genuine delivery cannot be processed; dead-lettering it");
        let letter = DeadLetter {
            provider: Some(inner.provider),
            dedup_key: probe.map(|p| p.dedup_key.clone()),
            run_id: probe.map(|p| p.run_id.clone()),
            reason,
            attempts: 0,
            received_at: SystemTime::now(),
            headers: kept_headers(headers, &inner.credential_headers),
            body,
        };
        if let Err(io) = inner.dead_letters.put(letter).await {
            tracing::error!(error = %io, "could not write a dead letter");
            return Outcome::unavailable(Unavailable::DeadLetters(io), Duration::from_secs(1));
        }
        Counters::bump(&inner.counters.dead_lettered);
        Outcome::new(StatusCode::ACCEPTED, kind)
    }

    /// A genuine run whose id cannot be a de-duplication key (`why`; the store's refusal when
    /// it was the store): kept whole with its key and id, answered 202.
    async fn unusable_key(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        body: Bytes,
        probe: DedupProbe,
        why: String,
        store_error: Option<StoreError>,
    ) -> Outcome {
        let reason = DeadLetterReason::UnusableKey { reason: why };
        let kind = OutcomeKind::UnusableKey(store_error);
        let outcome = self
            .set_aside(headers, body, Some(&probe), reason, kind)
            .await;
        with_probe(outcome, probe)
    }

    async fn unparseable(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        body: Bytes,
        probe: Option<&DedupProbe>,
        err: PayloadError,
    ) -> Outcome {
        let reason = DeadLetterReason::Unparseable(err.clone());
        self.set_aside(headers, body, probe, reason, OutcomeKind::Unparseable(err))
            .await
    }

    /// Stops accepting (new deliveries get 503), lets the workers drain the queue for at most
    /// `deadline`, and reports what was not processed.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.inner.shutting_down.store(true, Ordering::Release);
        match &self.inner.dispatcher {
            Some(hand_off) => hand_off.shutdown(deadline).await,
            None => ShutdownReport::default(),
        }
    }
}

/// `verifier`'s whole check, fallback included, on tokio's blocking pool: the fallback may
/// canonicalize the whole body. `exact` is the inline check's error, answered if the task
/// cannot run.
async fn verify_blocking(
    verifier: Arc<dyn Verifier>,
    headers: &(dyn HeaderLookup + Sync),
    path: &str,
    body: &Bytes,
    exact: AuthError,
) -> Result<Verified, AuthError> {
    let mut owned: Vec<(String, Vec<u8>)> = Vec::new();
    headers.visit_all(&mut |name, value| owned.push((name.to_string(), value.to_vec())));
    let (path, body) = (path.to_string(), body.clone());
    let check = tokio::task::spawn_blocking(move || {
        verifier.verify(&Delivery::new(&owned, &body).with_path(&path))
    });
    check.await.unwrap_or(Err(exact))
}

/// A genuine, new run, claimed: its summary read, its claim's token.
struct Admitted {
    event: RunEvent,
    token: Token,
}

/// The key and id of `event`, as outcomes report them.
fn probe_of(event: &RunEvent) -> DedupProbe {
    DedupProbe {
        dedup_key: event.dedup_key.clone(),
        run_id: event.run_id.clone(),
    }
}

fn with_probe(mut outcome: Outcome, probe: DedupProbe) -> Outcome {
    outcome.probe = Some(probe);
    outcome
}

/// The answer for a refused hand-off: 503 and a `Retry-After`.
fn refused_outcome(refused: Refused) -> Outcome {
    match refused {
        Refused::Full => Outcome::unavailable(Unavailable::QueueFull, Duration::from_secs(2)),
        Refused::Closed => Outcome::shutting_down(),
        Refused::Unavailable => {
            Outcome::unavailable(Unavailable::QueueUnavailable, Duration::from_secs(2))
        }
    }
}

/// The answer for a store error on the claim: 503 with `Retry-After` for what a retry can
/// cure, 500 for a misconfigured store.
fn store_unavailable(err: StoreError) -> Outcome {
    tracing::error!(error = %err, "idempotency store refused a claim");
    match err.retry_after() {
        Some(wait) => Outcome::unavailable(Unavailable::Store(err), wait),
        None => Outcome::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            OutcomeKind::Misconfigured(err),
        ),
    }
}

/// The headers worth keeping with a dead letter or a queued delivery: all but credentials
/// (the fixed list, `set-cookie`, and the verifier's own `credential_headers`).
fn kept_headers(
    headers: &dyn HeaderLookup,
    credential_headers: &[String],
) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    headers.visit_all(&mut |name, value| {
        let credential = is_credential_header(name)
            || name.eq_ignore_ascii_case("set-cookie")
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

impl ReceiverBuilder {
    /// Authenticates every delivery with `verifier` (a scheme or an [`AnyOf`](crate::AnyOf)).
    pub fn verifier(mut self, verifier: impl Verifier + 'static) -> Self {
        self.auth = Some(Auth::Fixed(Arc::new(verifier)));
        self
    }

    /// Chooses the scheme per delivery (one endpoint, many accounts).
    pub fn key_resolver(mut self, resolver: impl KeyResolver) -> Self {
        self.auth = Some(Auth::Resolved(Arc::new(resolver)));
        self
    }

    /// The idempotency store (default: a [`MemoryStore`] of this process).
    pub fn store(mut self, store: Arc<dyn IdempotencyStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The code that processes each run, in the background.
    pub fn handler(mut self, handler: impl Handler) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// Where unprocessable deliveries go (default: the last 1000 kept in memory).
    pub fn dead_letters(mut self, sink: Arc<dyn DeadLetterSink>) -> Self {
        self.dead_letters = Some(sink);
        self
    }

    /// The largest body accepted, in bytes (default 2 MiB); larger ones get 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How long the framework adapters wait for the whole body (default
    /// [`DEFAULT_BODY_READ_TIMEOUT`], 10 s), counted from the moment they start reading it.
    /// A sender that stalls or trickles the body is answered 408 and its connection closed
    /// when the time is up, so that slow senders cannot hold connections and memory forever.
    /// It bounds the whole body, not the pause between two pieces of it: a byte every second
    /// would otherwise keep a request open indefinitely.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// How many acknowledged deliveries may wait for a worker: the in-process queue's size
    /// (default [`DEFAULT_QUEUE_CAPACITY`], 1024), or the bound of a Redis stream's backlog
    /// (default [`DEFAULT_STREAM_CAPACITY`](crate::stream::DEFAULT_STREAM_CAPACITY)). Past it,
    /// deliveries get 503 with `Retry-After` and their claims are released; nothing
    /// acknowledged is ever dropped to make room.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = Some(capacity.max(1));
        self
    }

    /// How many handler calls run at once (default 4).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// How long a claim is held before another delivery or instance may take the run over
    /// (default [`DEFAULT_LEASE`], 30 s). It is renewed every third of it while a handler runs
    /// or backs off, so a long handler keeps its run with any lease; what the lease decides is
    /// how soon a crashed instance's runs are taken over (with a Redis stream: a little after
    /// the lease, see [`crate::stream`]). Shorter fails over sooner but renews more often and
    /// gives a stalled process (a long GC-like pause, a blocked runtime) less time before its
    /// run is taken over (then the stalled attempt is stopped at its next renewal, never
    /// counted as processed).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a processed run is remembered as done (default 7 days).
    pub fn dedup_window(mut self, keep_for: Duration) -> Self {
        self.keep_for = keep_for;
        self
    }

    /// How failed handler attempts are retried.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Hands claimed deliveries to a Redis stream instead of the in-process queue (feature
    /// `redis`): a delivery is answered 200 only once it is in the stream, and any instance
    /// sharing the stream may process it, also after this one crashed (see
    /// [`RedisStreamQueue`]). The workers ([`ReceiverBuilder::workers`]) read the stream;
    /// [`ReceiverBuilder::queue_capacity`] bounds its backlog. Unless
    /// [`ReceiverBuilder::dead_letters`] says otherwise, dead letters go to the queue's
    /// dead-letter stream. Use a shared store ([`RedisStore`](crate::store::RedisStore)) with
    /// it, so that instances see each other's claims. It needs a handler:
    /// [`ReceiverBuilder::build`] refuses a stream without one.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_stream(mut self, queue: RedisStreamQueue) -> Self {
        self.stream = Some(queue);
        self
    }

    /// Whether a duplicate of a run still in flight is answered 200 (`true`) or 503 with
    /// `Retry-After` (`false`). The default: 200 when the store lives in this
    /// process (the run's hand-off is as safe as the store), 200 with a Redis stream (the
    /// duplicate is appended to the stream before the answer, so it survives a crash of the
    /// instance holding the run), 503 for a shared store with this
    /// in-process queue (the instance holding the run may die; a later retry finds it done or
    /// claimable), and 503 for a receiver without a handler (extractor style: your handler may
    /// still fail).
    pub fn ack_in_flight_duplicates(mut self, ack: bool) -> Self {
        self.ack_in_flight_duplicates = Some(ack);
        self
    }

    /// Builds the receiver and starts its workers (inside a tokio runtime). Without a
    /// handler the receiver serves [`Receiver::claim_event`] (extractor style) only.
    pub fn build(self) -> Result<Receiver, BuildError> {
        let auth = self.auth.ok_or(BuildError::NoAuth)?;
        let credential_headers = match &auth {
            Auth::Fixed(verifier) => verifier
                .credential_headers()
                .into_iter()
                .map(str::to_ascii_lowercase)
                .collect(),
            Auth::Resolved(resolver) => resolver.credential_headers(),
        };
        tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn IdempotencyStore>);
        // Without a handler (extractor style) there is no hand-off: the caller's own handler
        // may still fail, so a duplicate of a run in flight is never acknowledged by default.
        #[cfg(feature = "redis")]
        if self.stream.is_some() && self.handler.is_none() {
            return Err(BuildError::StreamWithoutHandler);
        }
        #[cfg(feature = "redis")]
        let stream = self.stream;
        #[cfg(not(feature = "redis"))]
        let stream: Option<std::convert::Infallible> = None;
        let ack_in_flight_duplicates = self
            .ack_in_flight_duplicates
            .unwrap_or(self.handler.is_some() && (!store.is_shared() || stream.is_some()));
        #[cfg(feature = "redis")]
        let default_sink = stream
            .as_ref()
            .map(|queue| Arc::new(queue.dead_letters()) as Arc<dyn DeadLetterSink>);
        #[cfg(not(feature = "redis"))]
        let default_sink: Option<Arc<dyn DeadLetterSink>> = None;
        let dead_letters = self
            .dead_letters
            .or(default_sink)
            .unwrap_or_else(|| Arc::new(MemoryDeadLetters::default()) as Arc<dyn DeadLetterSink>);
        let counters = Arc::new(Counters::default());
        let dispatcher = self.handler.map(|handler| {
            let context = WorkerContext {
                store: store.clone(),
                handler,
                dead_letters: dead_letters.clone(),
                retry: self.retry,
                lease: self.lease,
                keep_for: self.keep_for,
                counters: counters.clone(),
                busy: Default::default(),
            };
            #[cfg(feature = "redis")]
            if let Some(queue) = stream {
                let capacity = self
                    .queue_capacity
                    .unwrap_or(crate::stream::DEFAULT_STREAM_CAPACITY);
                return HandOff::Stream(StreamWorkers::start(
                    queue,
                    context,
                    self.workers,
                    capacity,
                ));
            }
            HandOff::Memory(MemoryQueue::start(
                context,
                self.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY),
                self.workers,
            ))
        });
        Ok(Receiver {
            inner: Arc::new(Inner {
                provider: self.provider,
                auth,
                store,
                dead_letters,
                body_limit: self.body_limit,
                body_read_timeout: self.body_read_timeout,
                lease: self.lease,
                ack_in_flight_duplicates,
                shutting_down: AtomicBool::new(false),
                keep_for: self.keep_for,
                dispatcher,
                counters,
                credential_headers,
            }),
        })
    }
}

/// A genuine, new run handed to the caller (extractor style), with the claim that keeps
/// duplicates away while the caller works. Call [`ClaimedEvent::complete`] when the work is
/// done, or [`ClaimedEvent::release`] to give it up before answering an error. Dropping it
/// without either also releases the claim, but in a background task a moment later: a retry
/// arriving at once may still find the run in flight (and be told to retry later).
#[derive(Debug)]
pub struct ClaimedEvent {
    /// The parsed run.
    pub event: RunEvent,
    claim: ClaimGuard,
}

impl ClaimedEvent {
    /// Marks the run done: later deliveries of it are answered as duplicates.
    pub async fn complete(self) -> Result<(), StoreError> {
        self.claim.complete().await
    }

    /// Gives the run up: the next delivery of it is processed again.
    pub async fn release(self) {
        self.claim.release().await;
    }
}

struct ClaimGuard {
    store: Arc<dyn IdempotencyStore>,
    key: String,
    token: Token,
    keep_for: Duration,
    counters: Arc<Counters>,
    settled: bool,
}

impl std::fmt::Debug for ClaimGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimGuard")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ClaimGuard {
    async fn complete(mut self) -> Result<(), StoreError> {
        self.settled = true;
        self.store
            .complete(&self.key, &self.token, self.keep_for)
            .await?;
        Counters::bump(&self.counters.processed);
        Ok(())
    }

    async fn release(mut self) {
        self.settled = true;
        if let Err(err) = self.store.release(&self.key, &self.token).await {
            tracing::warn!(key = %self.key, error = %err, "could not release a claim");
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (store, key, token) = (
            self.store.clone(),
            std::mem::take(&mut self.key),
            self.token,
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = store.release(&key, &token).await {
                    tracing::warn!(%key, error = %err, "could not release an abandoned claim");
                }
            });
        }
    }
}
