//! The receiving pipeline of one route: body limit, authentication on the raw bytes, the
//! de-duplication claim, the hand-off, and the answer (docs/ARCHITECTURE.md, "Response
//! policy").
//!
//! Two kinds of receiver come out of [`ReceiverBuilder`]: a [`Receiver`] (built with a
//! handler) acknowledges fast and runs the handler in the background; an [`InlineReceiver`]
//! (built with [`ReceiverBuilder::build_inline`]) hands each claimed run to the caller, for
//! the extractor and middleware styles. Neither can be used as the other.

mod authenticate;
mod builder;
mod claim;
#[cfg(all(feature = "postgres", any(feature = "tower", feature = "actix")))]
mod inbox_admit;
mod outcome;
mod pipeline;
mod readiness;
mod summary;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use runhook_core::payload::Provider;
use runhook_core::platform::Platform;
#[cfg(any(feature = "postgres", feature = "redis"))]
use runhook_core::Verified;
use runhook_core::{HeaderLookup, Secrets, Verifier};

pub use crate::body::content_length;
pub use crate::budget::{PreAuthBudget, DEFAULT_PRE_AUTH_BUDGET_BYTES, UNCHARGED_BYTES};
pub use crate::handoff::ShutdownReport;
pub use builder::{
    BackgroundBuilder, BuildError, Inline, ReceiverBuilder, WithHandler, DEFAULT_BODY_LIMIT,
    DEFAULT_BODY_READ_TIMEOUT, DEFAULT_LEASE, DEFAULT_QUEUE_CAPACITY,
};
#[cfg(any(feature = "tower", feature = "actix"))]
pub(crate) use claim::HandlerAnswer;
pub use claim::{ClaimedEvent, VerifiedRun};
pub use outcome::{InFlightDuplicates, Outcome, OutcomeKind, Unavailable};
pub use pipeline::{Interim, KeyResolver};
pub use readiness::{NotReady, Readiness};
pub use runhook_store::DEFAULT_DEDUP_WINDOW;

use outcome::{probe_of, refused_outcome, with_probe};
pub(crate) use pipeline::Authentication;
pub(crate) use pipeline::Pipeline;
use pipeline::{Admitted, Auth, Stop};

use crate::budget::Charge;
use crate::dead_letter::kept_headers;
use crate::handler::BoxFuture;
use crate::handoff::{DrainEnd, Duplicate, HandOff, Job};
#[cfg(any(feature = "postgres", feature = "redis"))]
use crate::handoff::{Refused, WithJob, Written};
use crate::runs::{Submit, Submitted};
use crate::stats::{Counters, Stats};
use runhook_core::payload::RunEvent;
use runhook_store::{Claim, Expected, Fingerprint, StoreError, Window};

/// The accessors both receivers share, written once: `$receiver`'s pipeline is at
/// `self.$($field).+`.
macro_rules! route_accessors {
    ($receiver:ident, $($field:ident).+) => {
        impl $receiver {
            /// The provider this route receives.
            pub fn provider(&self) -> Provider {
                self.$($field).+.provider
            }

            /// The body limit in bytes; the adapters stop reading past it and answer 413.
            pub fn body_limit(&self) -> usize {
                self.$($field).+.body_limit
            }

            /// How long the adapters wait for the whole body; past it they answer 408 and
            /// close the connection.
            pub fn body_read_timeout(&self) -> Duration {
                self.$($field).+.body_read_timeout
            }

            /// Reads a request body whole under this receiver's rules, for any framework: at
            /// most [`body_limit`](Self::body_limit) bytes, within
            /// [`body_read_timeout`](Self::body_read_timeout). A body over the limit is
            /// drained first (a bounded amount, so that the sender reads the 413 rather than
            /// a reset). `content_length` is the request's declared length, if it has a valid
            /// one ([`content_length`](crate::receiver::content_length) reads it). `Err` is
            /// the answer to send, already counted; what is left of `chunks` then is unread.
            /// While it reads, the body charges the receiver's
            /// [`PreAuthBudget`](crate::receiver::PreAuthBudget) (503 past it); the charge is
            /// given back when this returns.
            pub async fn read_body<E>(
                &self,
                chunks: &mut (impl futures_util::Stream<Item = Result<Bytes, E>> + Unpin),
                content_length: Option<u64>,
            ) -> Result<Bytes, Outcome> {
                self.$($field).+.read_body(chunks, content_length).await
            }

            /// The steps this receiver's deliveries go through, for the adapters.
            #[cfg(any(feature = "tower", feature = "actix"))]
            pub(crate) fn pipeline(&self) -> &Pipeline {
                &self.$($field).+
            }
        }
    };
}

route_accessors!(Receiver, inner.pipeline);
route_accessors!(InlineReceiver, pipeline);

/// One route's receiving pipeline with its background workers: each delivery is acknowledged
/// as soon as it is safely handed off, and the handler runs later. Cheap to clone (an `Arc`
/// inside).
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<BackgroundRoute>,
}

/// A background route's state: its pipeline, its hand-off with the workers behind it, and how
/// it answers duplicates of runs in flight.
struct BackgroundRoute {
    pipeline: Pipeline,
    hand_off: HandOff,
    /// How a duplicate of a run in flight is answered.
    in_flight_duplicates: InFlightDuplicates,
}

impl Receiver {
    /// Starts configuring the route that receives `provider`'s deliveries, each authenticated
    /// by `verifier` (a scheme, or an [`AnyOf`](crate::AnyOf); [`Unsigned`](crate::Unsigned)
    /// by name for none). Give it a handler for a background [`Receiver`], or build an
    /// [`InlineReceiver`] for the extractor and middleware styles.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use runhook::{payload::{Provider, RunEvent}, Receiver, Secret, SkyvernSignature};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = SkyvernSignature::new(Secret::new("sk_live_example")?);
    /// let receiver = Receiver::builder(Provider::Skyvern, verifier)
    ///     .handler(|event: Arc<RunEvent>| async move {
    ///         println!("processed {} {}", event.provider, event.dedup_key);
    ///         Ok::<(), std::io::Error>(())
    ///     })
    ///     .workers(8)
    ///     .build()?;
    /// // In a handler: receiver.receive(&headers, path, body).await gives the answer.
    /// # let _ = receiver; Ok(()) }
    /// ```
    pub fn builder(provider: Provider, verifier: impl Verifier + 'static) -> ReceiverBuilder {
        ReceiverBuilder::new(provider, Auth::Fixed(Arc::new(verifier)))
    }

    /// Like [`Receiver::builder`], with the scheme chosen per delivery by `resolver` (one
    /// endpoint, many accounts).
    pub fn builder_with_resolver(
        provider: Provider,
        resolver: impl KeyResolver,
    ) -> ReceiverBuilder {
        ReceiverBuilder::new(provider, Auth::Resolved(Arc::new(resolver)))
    }

    /// A builder for `provider` that authenticates with the platform's default scheme
    /// ([`Platform::default_scheme`]) and `secrets` as its keys: Skyvern's signature, TinyFish's
    /// secret last path segment, WebRun's and SmartBrowse's `Authorization` token,
    /// Browserbase's Standard Webhooks signature, Firecrawl's `x-firecrawl-signature`, Browser
    /// Use's `x-browser-use-signature`.
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
        Self::builder(provider, scheme.verifier(secrets))
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

    /// A Browserbase route: Standard Webhooks (`webhook-*` or `svix-*` headers) signed with
    /// one of `keys`, the decoded `whsec_` signing secrets
    /// ([`Secret::from_standard_webhooks`](crate::Secret::from_standard_webhooks)).
    pub fn browserbase(keys: impl Into<Secrets>) -> ReceiverBuilder {
        Self::for_platform(Provider::Browserbase, keys)
    }

    /// A Firecrawl route: `x-firecrawl-signature` (`sha256=<hex>`, the HMAC of the raw body)
    /// checked against `secrets` (the account's webhook secret; several while rotating).
    pub fn firecrawl(secrets: impl Into<Secrets>) -> ReceiverBuilder {
        Self::for_platform(Provider::Firecrawl, secrets)
    }

    /// A Browser Use route: `x-browser-use-signature` (the HMAC of the signed timestamp and
    /// the sorted-key payload, within 5 minutes) or the older `x-webhook-signature` (the HMAC
    /// of the raw body), checked against `secrets` (the webhook secret; several while
    /// rotating). For other options build a [`BrowserUseSignature`](crate::BrowserUseSignature)
    /// and pass it to [`Receiver::builder`].
    pub fn browser_use(secrets: impl Into<Secrets>) -> ReceiverBuilder {
        Self::for_platform(Provider::BrowserUse, secrets)
    }

    /// Counters so far and the current queue depth.
    pub fn stats(&self) -> Stats {
        let depth = self.inner.hand_off.depth();
        self.inner.pipeline.counters.snapshot(depth)
    }

    /// Whether the receiver can take and process deliveries now, and if not why (see
    /// [`NotReady`]): it pings the store and the stream (bounded by their timeouts), and
    /// looks at the dead-letter sink and the workers. Workers count as stuck when every one
    /// of them has held the same job for longer than the attempt timeout while deliveries
    /// wait.
    pub async fn readiness(&self) -> Readiness {
        let route = &*self.inner;
        let pipeline = &route.pipeline;
        let mut problems = Vec::new();
        if pipeline.shutting_down.load(Ordering::Acquire) {
            problems.push(NotReady::ShuttingDown);
        }
        if let Err(err) = pipeline.store.ping().await {
            tracing::warn!(error = %err, "readiness: the store does not answer");
            problems.push(NotReady::StoreUnreachable);
        }
        if !route.hand_off.reachable().await {
            problems.push(NotReady::StreamUnreachable);
        }
        let ctx = route.hand_off.context();
        let parked = ctx.parked.len();
        if parked > 0 || pipeline.dead_letters.alarm.refusing() {
            problems.push(NotReady::SinkRefusing { parked });
        }
        let waiting = route.hand_off.depth();
        if let Some(stuck) = ctx.stuck(waiting) {
            problems.push(NotReady::WorkersStuck {
                workers: stuck.workers,
                for_at_least: stuck.for_at_least,
                waiting,
            });
        }
        Readiness { problems }
    }

    /// Answers one delivery: `headers`, the request `path` and the `body` exactly as
    /// received. Never waits for the handler.
    pub async fn receive(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
    ) -> Outcome {
        let pending = Authentication::Pending(Charge::none());
        self.receive_read(headers, path, body, pending).await
    }

    /// [`receive`](Self::receive) for a body read by [`Pipeline::read_charged`]: its charge on
    /// the pre-authentication budget is held until authentication has finished, or it was
    /// authenticated before it was read.
    pub(crate) async fn receive_read(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
        authentication: Authentication,
    ) -> Outcome {
        let pipeline = &self.inner.pipeline;
        Counters::bump(&pipeline.counters.received);
        let outcome = self.decide(headers, path, body, authentication).await;
        pipeline.count(&outcome);
        outcome
    }

    async fn decide(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
        authentication: Authentication,
    ) -> Outcome {
        let BackgroundRoute {
            pipeline,
            hand_off,
            in_flight_duplicates,
        } = &*self.inner;
        let received_at = SystemTime::now();
        #[cfg(any(feature = "postgres", feature = "redis"))]
        if let Some(queue) = hand_off.claims_with_its_job() {
            let authenticated =
                (pipeline.verified_event(headers, path, body, authentication)).await;
            return match authenticated {
                Ok((verified, event)) => {
                    let enqueue = ClaimAndEnqueue {
                        headers,
                        verified: &verified,
                        received_at,
                    };
                    self.claim_and_enqueue(&queue, event, enqueue).await
                }
                Err(outcome) => outcome,
            };
        }
        let admission = pipeline.admit(
            headers,
            path,
            body.clone(),
            *in_flight_duplicates,
            authentication,
        );
        let admission = admission.await;
        let stored = match admission {
            Ok(admitted) => Ok(admitted),
            Err(Stop::InFlight(outcome))
                if *in_flight_duplicates == InFlightDuplicates::Acknowledge
                    && hand_off.is_durable() =>
            {
                Err(outcome)
            }
            Err(stop) => return stop.into_outcome(),
        };
        // Either way the delivery is stored now: with its headers, minus credentials.
        let kept = kept_headers(headers, &pipeline.credential_headers);
        match stored {
            Ok(admitted) => self.hand_off(admitted, kept, received_at).await,
            Err(in_flight) => {
                (self.append_in_flight_duplicate(in_flight, &body, &kept, received_at)).await
            }
        }
    }

    /// Hands a claimed run off: 200 once the hand-off took it, else the 503 of its refusal
    /// (with the claim released).
    async fn hand_off(
        &self,
        admitted: Admitted,
        kept: Vec<(String, String)>,
        received_at: SystemTime,
    ) -> Outcome {
        let Admitted { event, token, .. } = admitted;
        let probe = probe_of(&event);
        let job = Job::claimed(event, token, received_at, kept);
        let store = &*self.inner.pipeline.store;
        let outcome = match self.inner.hand_off.send_or_release(store, job).await {
            Ok(()) => Outcome::new(StatusCode::OK, OutcomeKind::Accepted),
            Err(refused) => refused_outcome(refused, self.inner.pipeline.outage_pause),
        };
        with_probe(outcome, probe)
    }

    /// Claims the run and writes its job in one step (the Postgres statement, the stream's
    /// script): 200 once both are written, else the answer to the claim (a duplicate, the
    /// store's refusal) or the 503 of a full hand-off.
    #[cfg(any(feature = "postgres", feature = "redis"))]
    async fn claim_and_enqueue(
        &self,
        queue: &WithJob<'_>,
        event: RunEvent,
        delivery: ClaimAndEnqueue<'_>,
    ) -> Outcome {
        let BackgroundRoute {
            pipeline,
            in_flight_duplicates,
            ..
        } = &*self.inner;
        let kept = kept_headers(delivery.headers, &pipeline.credential_headers);
        let lease = pipeline.lease;
        let claim = match queue
            .claim_and_enqueue(&event, lease, &kept, delivery.received_at)
            .await
        {
            Ok(Written::Enqueued) => {
                let outcome = Outcome::new(StatusCode::OK, OutcomeKind::Accepted);
                return with_probe(outcome, probe_of(&event));
            }
            Ok(Written::Full) => {
                let outcome = refused_outcome(Refused::Full, pipeline.outage_pause);
                return with_probe(outcome, probe_of(&event));
            }
            Ok(Written::Taken(claim)) => Ok(claim),
            Err(err) => Err(err),
        };
        let (headers, verified) = (delivery.headers, delivery.verified);
        let answer = pipeline.answer_claim(&event, claim, *in_flight_duplicates, headers, verified);
        match answer.await {
            // The run in flight committed its job with its claim: its duplicate is as safe.
            Err(Stop::InFlight(outcome))
                if *in_flight_duplicates == InFlightDuplicates::Acknowledge =>
            {
                outcome
            }
            Err(stop) => stop.into_outcome(),
            // `Taken` never holds the run.
            Ok(_) => {
                let reason = "the claim was won without its job".to_string();
                let err = StoreError::Unavailable { reason };
                outcome::store_unavailable(err, pipeline.outage_pause)
            }
        }
    }

    /// With a durable hand-off (a Redis stream), a duplicate of a run in flight is answered
    /// 200 only once it is appended too ([`HandOff::guard_in_flight_duplicate`]), with its
    /// `body` and `kept` headers: the instance holding the run may die before its own
    /// hand-off. If that fails, the answer is the 503 of the refusal.
    async fn append_in_flight_duplicate(
        &self,
        outcome: Outcome,
        body: &[u8],
        kept: &[(String, String)],
        received_at: SystemTime,
    ) -> Outcome {
        let Some(probe) = outcome.probe.clone() else {
            return outcome;
        };
        let duplicate = Duplicate {
            provider: self.inner.pipeline.provider,
            key: &probe.dedup_key,
            run_id: probe.run_id.as_deref(),
            received_at,
            body,
            headers: kept,
        };
        match self
            .inner
            .hand_off
            .guard_in_flight_duplicate(duplicate)
            .await
        {
            Ok(()) => outcome,
            Err(refused) => {
                let pause = self.inner.pipeline.outage_pause;
                with_probe(refused_outcome(refused, pause), probe)
            }
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
        self.shutdown_or(deadline, std::future::pending()).await
    }

    /// [`Receiver::shutdown`], whose drain also ends as soon as `cut` completes (a second
    /// stop signal, say): what was not processed then is reported, dead-lettered or left
    /// pending, exactly as past the deadline.
    pub async fn shutdown_or(
        &self,
        deadline: Duration,
        cut: impl Future<Output = ()> + Send,
    ) -> ShutdownReport {
        let pipeline = &self.inner.pipeline;
        pipeline.shutting_down.store(true, Ordering::Release);
        let end = DrainEnd::new(deadline, cut);
        self.inner.hand_off.shutdown(end).await
    }
}

/// What a hand-off that claims with its job needs of a delivery besides its run.
#[cfg(any(feature = "postgres", feature = "redis"))]
struct ClaimAndEnqueue<'a> {
    headers: &'a (dyn HeaderLookup + Sync),
    verified: &'a Verified,
    received_at: SystemTime,
}

impl Submit for BackgroundRoute {
    fn submit(&self, event: RunEvent) -> BoxFuture<'_, Submitted> {
        Box::pin(async move {
            let pipeline = &self.pipeline;
            #[cfg(any(feature = "postgres", feature = "redis"))]
            if let Some(queue) = self.hand_off.claims_with_its_job() {
                let now = SystemTime::now();
                return match queue
                    .claim_and_enqueue(&event, pipeline.lease, &[], now)
                    .await
                {
                    Ok(Written::Enqueued) => Submitted::HandedOff,
                    Ok(Written::Taken(_)) => Submitted::Taken,
                    Ok(Written::Full) => {
                        Submitted::Refused(format!("the hand-off refused it ({:?})", Refused::Full))
                    }
                    Err(err) => Submitted::Refused(err.to_string()),
                };
            }
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
            let job = Job::claimed(event, token, SystemTime::now(), Vec::new());
            match self.hand_off.send_or_release(&*pipeline.store, job).await {
                Ok(()) => Submitted::HandedOff,
                Err(refused) => {
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
