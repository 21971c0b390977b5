//! The receiving pipeline of one route: body limit, authentication on the raw bytes, the
//! de-duplication claim, the hand-off, and the answer (docs/ARCHITECTURE.md, "Response
//! policy").
//!
//! Two kinds of receiver come out of [`ReceiverBuilder`]: a [`Receiver`] (built with a
//! handler) acknowledges fast and runs the handler in the background; an [`InlineReceiver`]
//! (built with [`ReceiverBuilder::build_inline`]) hands each claimed run to the caller, for
//! the extractor and middleware styles. Neither can be used as the other.

mod builder;
mod claim;
mod outcome;
mod pipeline;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use runhook_core::payload::Provider;
use runhook_core::platform::Platform;
use runhook_core::{HeaderLookup, Secrets};

pub use builder::{
    BuildError, ReceiverBuilder, DEFAULT_BODY_LIMIT, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_LEASE,
    DEFAULT_QUEUE_CAPACITY,
};
#[cfg(any(feature = "tower", feature = "actix"))]
pub(crate) use claim::HandlerAnswer;
pub use claim::{ClaimedEvent, VerifiedRun};
pub use outcome::{InFlightDuplicates, Outcome, OutcomeKind, Unavailable};
pub use pipeline::KeyResolver;

use outcome::{probe_of, refused_outcome, with_probe};
pub(crate) use pipeline::Pipeline;
use pipeline::{kept_headers, Admission, Admitted};

use crate::handler::BoxFuture;
use crate::handoff::{Duplicate, HandOff};
use crate::runs::{Submit, Submitted};
use crate::stats::{Counters, Stats};
use crate::worker::Job;
use runhook_core::payload::RunEvent;
use runhook_store::{Claim, Expected, Fingerprint, StoreError, Window};

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

/// One route's receiving pipeline with its background workers: each delivery is acknowledged
/// as soon as it is safely handed off, and the handler runs later. Cheap to clone (an `Arc`
/// inside).
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Background>,
}

struct Background {
    pipeline: Pipeline,
    hand_off: HandOff,
    /// How a duplicate of a run in flight is answered.
    in_flight_duplicates: InFlightDuplicates,
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
    ///         println!("processed {} {}", event.provider, event.dedup_key);
    ///         Ok::<(), std::io::Error>(())
    ///     })
    ///     .build()?;
    /// // In a handler: receiver.receive(&headers, path, body).await gives the answer.
    /// # let _ = receiver; Ok(()) }
    /// ```
    pub fn builder(provider: Provider) -> ReceiverBuilder {
        ReceiverBuilder::new(provider)
    }

    /// A builder for `provider` that authenticates with the platform's default scheme
    /// ([`Platform::default_scheme`]) and `secrets` as its keys: Skyvern's signature, TinyFish's
    /// secret last path segment, WebRun's and SmartBrowse's `Authorization` token.
    ///
    /// ```
    /// use runhook::payload::Provider;
    /// use runhook::{Receiver, Secret};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let skyvern = Receiver::for_platform(Provider::Skyvern, Secret::new("sk_live_example")?)
    ///     .build_inline()?;
    /// # let _ = skyvern; Ok(()) }
    /// ```
    pub fn for_platform(provider: Provider, secrets: impl Into<Secrets>) -> ReceiverBuilder {
        let scheme = Platform::of(provider).default_scheme;
        Self::builder(provider).verifier(scheme.verifier(secrets))
    }

    /// A Skyvern route: `x-skyvern-signature` checked against `api_keys` (the account's API
    /// key; several while rotating).
    pub fn skyvern(api_keys: impl Into<Secrets>) -> ReceiverBuilder {
        Self::for_platform(Provider::Skyvern, api_keys)
    }

    /// A TinyFish route: TinyFish signs nothing, so the webhook URL's last path segment must be
    /// one of `path_secrets` (register `https://…/webhooks/tinyfish/<secret>`).
    pub fn tinyfish(path_secrets: impl Into<Secrets>) -> ReceiverBuilder {
        Self::for_platform(Provider::TinyFish, path_secrets)
    }

    /// A WebRun route (`full_response` and `just_ping`): the webhook's `auth` value, sent as
    /// `Authorization`, must be one of `tokens` (the whole value, e.g. `Bearer …`).
    pub fn webrun(tokens: impl Into<Secrets>) -> ReceiverBuilder {
        Self::for_platform(Provider::WebRun, tokens)
    }

    /// A SmartBrowse route: the recipe's custom `Authorization` header must be one of
    /// `tokens`. For another header name, use [`Receiver::builder`] with a
    /// [`HeaderToken`](crate::HeaderToken).
    pub fn smartbrowse(tokens: impl Into<Secrets>) -> ReceiverBuilder {
        Self::for_platform(Provider::SmartBrowse, tokens)
    }

    /// The provider this route receives.
    pub fn provider(&self) -> Provider {
        self.inner.pipeline.provider
    }

    /// The body limit in bytes; adapters stop reading past it and answer 413.
    pub fn body_limit(&self) -> usize {
        self.inner.pipeline.body_limit
    }

    /// How long the adapters wait for the whole body; past it they answer 408 and close the
    /// connection.
    pub fn body_read_timeout(&self) -> Duration {
        self.inner.pipeline.body_read_timeout
    }

    /// Reads a request body whole under this receiver's rules, for any framework: at most
    /// [`Receiver::body_limit`] bytes, within [`Receiver::body_read_timeout`]. A body over the
    /// limit is drained first (a bounded amount, so that the sender reads the 413 rather than a
    /// reset). `content_length` is the request's declared length, if it has a valid one
    /// ([`content_length`](crate::content_length) reads it). `Err` is the answer to send,
    /// already counted; what is left of `chunks` then is unread.
    pub async fn read_body<S, E>(
        &self,
        chunks: &mut S,
        content_length: Option<u64>,
    ) -> Result<Bytes, Outcome>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    {
        self.inner.pipeline.read_body(chunks, content_length).await
    }

    /// The steps this receiver's deliveries go through, for the adapters.
    #[cfg(any(feature = "tower", feature = "actix"))]
    pub(crate) fn pipeline(&self) -> &Pipeline {
        &self.inner.pipeline
    }

    /// Counters so far and the current queue depth.
    pub fn stats(&self) -> Stats {
        let depth = self.inner.hand_off.depth();
        self.inner.pipeline.counters.snapshot(depth)
    }

    /// Answers one delivery: `headers`, the request `path` and the `body` exactly as
    /// received. Never waits for the handler.
    pub async fn receive(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
    ) -> Outcome {
        let pipeline = &self.inner.pipeline;
        Counters::bump(&pipeline.counters.received);
        let outcome = self.decide(headers, path, body).await;
        pipeline.count(&outcome);
        outcome
    }

    async fn decide(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
    ) -> Outcome {
        let (inner, hand_off) = (&self.inner.pipeline, &self.inner.hand_off);
        let received_at = SystemTime::now();
        let in_flight = self.inner.in_flight_duplicates;
        let admission = inner.admit(headers, path, body.clone(), in_flight).await;
        let Admitted { event, token, .. } = match admission {
            Admission::New(admitted) => admitted,
            Admission::InFlight(outcome)
                if in_flight == InFlightDuplicates::Acknowledge && hand_off.is_durable() =>
            {
                return self
                    .append_in_flight_duplicate(hand_off, headers, body, received_at, outcome)
                    .await
            }
            Admission::InFlight(outcome) | Admission::Answered(outcome) => return outcome,
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
    /// holding the run may die before its own hand-off. If that fails, the answer is the 503
    /// of the refusal.
    async fn append_in_flight_duplicate(
        &self,
        hand_off: &HandOff,
        headers: &(dyn HeaderLookup + Sync),
        body: Bytes,
        received_at: SystemTime,
        outcome: Outcome,
    ) -> Outcome {
        let Some(probe) = outcome.probe.clone() else {
            return outcome;
        };
        let duplicate = Duplicate {
            provider: self.inner.pipeline.provider,
            key: &probe.dedup_key,
            run_id: probe.run_id.as_deref(),
            received_at,
            body: &body,
            headers: &kept_headers(headers, &self.inner.pipeline.credential_headers),
        };
        match hand_off.guard_in_flight_duplicate(duplicate).await {
            Ok(()) => outcome,
            Err(refused) => with_probe(refused_outcome(refused), probe),
        }
    }

    /// Records that run `run_id` was started: if no webhook for it has been processed
    /// `within` from now, the receiver's reconciler fetches it (see [`crate::runs`] and
    /// [`ReceiverBuilder::reconcile`]). Registering a run twice keeps the first deadline.
    ///
    /// # Errors
    /// [`StoreError::InvalidConfig`](crate::store::StoreError) when the store keeps no
    /// expectations, [`StoreError::Full`](crate::store::StoreError) when it holds as many as
    /// it may, and the store's own errors.
    pub async fn expect(&self, run_id: &str, within: Duration) -> Result<Expected, StoreError> {
        let pipeline = &self.inner.pipeline;
        crate::runs::expect(
            &*pipeline.store,
            pipeline.provider,
            run_id,
            Window::Within(within),
        )
        .await
    }

    /// Stops accepting (new deliveries get 503), lets the workers drain the queue for at most
    /// `deadline`, and reports what was not processed.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let pipeline = &self.inner.pipeline;
        pipeline.shutting_down.store(true, Ordering::Release);
        self.inner.hand_off.shutdown(deadline).await
    }
}

impl Submit for Background {
    fn submit(&self, event: RunEvent) -> BoxFuture<'_, Submitted> {
        Box::pin(async move {
            let pipeline = &self.pipeline;
            let fingerprint = Fingerprint::of(&event.raw_body);
            let claim = pipeline
                .store
                .claim(&event.dedup_key, pipeline.lease, fingerprint)
                .await;
            let token = match claim {
                Ok(Claim::Acquired(token)) => token,
                Ok(_) => return Submitted::Taken,
                Err(err) => return Submitted::Refused(err.to_string()),
            };
            let job = Job {
                event: Arc::new(event),
                token,
                held_since: tokio::time::Instant::now(),
                received_at: SystemTime::now(),
                headers: Arc::from(Vec::new()),
            };
            match self.hand_off.send(job).await {
                Ok(()) => Submitted::HandedOff,
                Err(given_back) => {
                    let (refused, job) = *given_back;
                    if let Err(err) = pipeline.store.release(job.key(), &job.token).await {
                        tracing::warn!(key = %job.key(), error = %err, "could not release the claim of a reconciled run");
                    }
                    Submitted::Refused(format!("the hand-off refused it ({refused:?})"))
                }
            }
        })
    }

    fn shutting_down(&self) -> bool {
        self.pipeline.shutting_down.load(Ordering::Acquire)
    }
}

/// One route's receiving pipeline for the inline styles (the extractor, the middleware): each
/// genuine, new run is claimed and handed to the caller, whose own handler runs before the
/// answer. Built with [`ReceiverBuilder::build_inline`]. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct InlineReceiver {
    pipeline: Arc<Pipeline>,
}

impl InlineReceiver {
    /// The provider this route receives.
    pub fn provider(&self) -> Provider {
        self.pipeline.provider
    }

    /// The body limit in bytes.
    pub fn body_limit(&self) -> usize {
        self.pipeline.body_limit
    }

    /// How long a whole body may take to arrive.
    pub fn body_read_timeout(&self) -> Duration {
        self.pipeline.body_read_timeout
    }

    /// Reads a request body whole under this receiver's rules; see [`Receiver::read_body`].
    pub async fn read_body<S, E>(
        &self,
        chunks: &mut S,
        content_length: Option<u64>,
    ) -> Result<Bytes, Outcome>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    {
        self.pipeline.read_body(chunks, content_length).await
    }

    /// The steps this receiver's deliveries go through, for the adapters.
    #[cfg(any(feature = "tower", feature = "actix"))]
    pub(crate) fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Counters so far (the queue depth is always 0: nothing is queued).
    pub fn stats(&self) -> Stats {
        self.pipeline.counters.snapshot(0)
    }

    /// Authenticates, de-duplicates and parses the delivery, and hands the claimed run to the
    /// caller. `Err` is the answer to send when there is nothing for the caller to do
    /// (rejected, duplicate, ...); a duplicate of a run still in flight is asked to retry
    /// (503), since the caller's handler may still fail.
    pub async fn claim_event(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
    ) -> Result<ClaimedEvent, Outcome> {
        self.pipeline.claim_event(headers, path, body).await
    }

    /// Stops accepting: new deliveries are answered 503 with `Retry-After`.
    pub fn shutdown(&self) {
        self.pipeline.shutting_down.store(true, Ordering::Release);
    }
}
