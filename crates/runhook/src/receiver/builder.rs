//! Configuring a route: [`ReceiverBuilder`], its defaults, and what it refuses to build.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use runhook_core::payload::Provider;
use runhook_core::platform::Platform;
use runhook_core::{SchemeKind, Verifier};
use runhook_store::{IdempotencyStore, MemoryStore};

use super::outcome::InFlightDuplicates;
use super::pipeline::{Auth, KeyResolver, Pipeline};
use super::{Background, InlineReceiver, Receiver};
use crate::dead_letter::{DeadLetterSink, MemoryDeadLetters};
use crate::handler::Handler;
use crate::handoff::HandOff;
use crate::memory_queue::MemoryQueue;
use crate::runs::{ReconcilePolicy, Reconciler, RunSource, Submit};
use crate::stats::Counters;
#[cfg(feature = "redis")]
use crate::stream::{RedisStreamQueue, StreamWorkers};
use crate::worker::{RetryPolicy, WorkerContext};

/// The largest body accepted unless [`ReceiverBuilder::body_limit`] says otherwise: 2 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// How long the adapters wait for a whole body on a Skyvern, TinyFish or SmartBrowse route
/// unless [`ReceiverBuilder::body_read_timeout`] says otherwise: 10 s, the senders' own
/// timeout. Each route's default is its platform's [`Platform::answer_within`] (WebRun's is
/// 30 s); a sender still sending by then has given up on its side anyway.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a claim is held unless [`ReceiverBuilder::lease`] says otherwise: 30 s, renewed
/// every 10 s while a handler runs or backs off. It bounds how long a crashed instance's runs
/// wait before another instance takes them over (see [`ReceiverBuilder::lease`]).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// How many acknowledged deliveries may wait unless [`ReceiverBuilder::queue_capacity`] says
/// otherwise: 1024 in the in-process queue; a Redis stream's default is
/// [`DEFAULT_STREAM_CAPACITY`](crate::stream::DEFAULT_STREAM_CAPACITY).
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

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
    in_flight_duplicates: Option<InFlightDuplicates>,
    confirm: Option<Arc<dyn RunSource>>,
    reconcile: Option<(Arc<dyn RunSource>, ReconcilePolicy)>,
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
    /// [`ReceiverBuilder::build`] without a handler: nothing would process the runs.
    #[error(
        "no handler: call .handler(...), or .build_inline() for the extractor or middleware style"
    )]
    NoHandler,
    /// [`ReceiverBuilder::build_inline`] with a handler: the inline styles never call it.
    #[error("an inline receiver (extractor, middleware) runs your code, not a handler: drop .handler(...) or call .build()")]
    HandlerNotUsedInline,
    /// The verifier checks a credential the route's platform never sends (a Skyvern route
    /// checking a header token would refuse every genuine delivery); see
    /// [`Platform::schemes`].
    #[error("{provider} deliveries cannot carry a `{scheme}` credential; it can send: {sendable}")]
    SchemeNotSent {
        /// The route's platform.
        provider: Provider,
        /// The scheme it cannot satisfy.
        scheme: SchemeKind,
        /// What it can satisfy, for the message.
        sendable: String,
    },
    /// Confirmation or reconciliation for a platform without a run API (WebRun).
    #[error("{0} documents no run API: it can be neither confirmed nor reconciled")]
    NoRunApi(Provider),
    /// Reconciliation with a store that keeps no expectations.
    #[error("reconciliation keeps its expected runs in the idempotency store, and this store keeps none")]
    StoreKeepsNoExpectations,
    /// Confirmation or reconciliation on an inline receiver: both run in the background.
    #[error("confirm and reconcile run with the background workers: use .build() with a handler")]
    RunsNeedBackground,
}

impl ReceiverBuilder {
    /// A builder with the defaults, for [`Receiver::builder`].
    pub(super) fn new(provider: Provider) -> Self {
        Self {
            provider,
            auth: None,
            store: None,
            handler: None,
            dead_letters: None,
            body_limit: DEFAULT_BODY_LIMIT,
            body_read_timeout: Platform::of(provider).answer_within(),
            queue_capacity: None,
            workers: 4,
            lease: DEFAULT_LEASE,
            keep_for: Duration::from_secs(7 * 24 * 3600),
            retry: RetryPolicy::default(),
            in_flight_duplicates: None,
            confirm: None,
            reconcile: None,
            #[cfg(feature = "redis")]
            stream: None,
        }
    }

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

    /// How long the framework adapters wait for the whole body (default: the platform's
    /// [`Platform::answer_within`], 10 s or WebRun's 30 s), counted from the moment they start
    /// reading it.
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

    /// How a duplicate of a run still in flight is answered by [`Receiver::receive`]. The
    /// default: [`InFlightDuplicates::Acknowledge`] when the store lives in this process (the
    /// run's hand-off is as safe as the store) and with a Redis stream (the duplicate is
    /// appended to the stream before the answer, so it survives a crash of the instance
    /// holding the run); [`InFlightDuplicates::AskToRetry`] for a shared store with the
    /// in-process queue (the instance holding the run may die; a later retry finds it done or
    /// claimable). The inline styles (extractor, middleware) always ask to retry: their
    /// handler may still fail.
    pub fn in_flight_duplicates(mut self, answer: InFlightDuplicates) -> Self {
        self.in_flight_duplicates = Some(answer);
        self
    }

    /// Confirms every run with its platform's run API before its handler runs (see
    /// [`crate::runs`]): the handler gets the fetched run, a run the API does not know is
    /// dead-lettered `not_confirmed`, one not finished yet is tried again with the retry
    /// policy's backoff. `source` is usually a
    /// [`RunApiClient`](crate::runs::RunApiClient) (feature `runs`).
    pub fn confirm(mut self, source: Arc<dyn RunSource>) -> Self {
        self.confirm = Some(source);
        self
    }

    /// Reconciles the runs registered with [`Receiver::expect`] (or `runhook expect`) whose
    /// webhook has not been processed in time, fetching them from `source` (see
    /// [`crate::runs`]). The expectations live in the store, which must keep them
    /// ([`BuildError::StoreKeepsNoExpectations`]).
    pub fn reconcile(mut self, source: Arc<dyn RunSource>, policy: ReconcilePolicy) -> Self {
        self.reconcile = Some((source, policy));
        self
    }

    /// Builds the receiver and starts its workers (inside a tokio runtime). A handler is
    /// required ([`BuildError::NoHandler`]); for the extractor or middleware styles, whose
    /// handler is yours, use [`ReceiverBuilder::build_inline`].
    pub fn build(mut self) -> Result<Receiver, BuildError> {
        let handler = self.handler.take().ok_or(BuildError::NoHandler)?;
        #[cfg(feature = "redis")]
        let stream = self.stream.take();
        #[cfg(not(feature = "redis"))]
        let stream: Option<std::convert::Infallible> = None;
        // A stream route keeps its dead letters in the stream's own, unless told otherwise.
        #[cfg(feature = "redis")]
        if let (Some(queue), None) = (&stream, &self.dead_letters) {
            self.dead_letters = Some(Arc::new(queue.dead_letters()));
        }
        let pipeline = self.pipeline()?;
        let runs = self.confirm.is_some() || self.reconcile.is_some();
        if runs && Platform::of(self.provider).run_api.is_none() {
            return Err(BuildError::NoRunApi(self.provider));
        }
        if self.reconcile.is_some() && pipeline.store.expectations().is_none() {
            return Err(BuildError::StoreKeepsNoExpectations);
        }
        let in_flight_duplicates = self.in_flight_duplicates.unwrap_or(
            if !pipeline.store.is_shared() || stream.is_some() {
                InFlightDuplicates::Acknowledge
            } else {
                InFlightDuplicates::AskToRetry
            },
        );
        let context = WorkerContext {
            store: pipeline.store.clone(),
            handler,
            dead_letters: pipeline.dead_letters.clone(),
            retry: self.retry,
            lease: self.lease,
            keep_for: self.keep_for,
            counters: pipeline.counters.clone(),
            confirm: self.confirm.take(),
            busy: Default::default(),
        };
        let hand_off = match stream {
            #[cfg(feature = "redis")]
            Some(queue) => {
                let capacity = self
                    .queue_capacity
                    .unwrap_or(crate::stream::DEFAULT_STREAM_CAPACITY);
                HandOff::Stream(StreamWorkers::start(queue, context, self.workers, capacity))
            }
            _ => HandOff::Memory(MemoryQueue::start(
                context,
                self.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY),
                self.workers,
            )),
        };
        let reconciler = self.reconcile.take().map(|(source, policy)| Reconciler {
            provider: pipeline.provider,
            source,
            store: pipeline.store.clone(),
            dead_letters: pipeline.dead_letters.clone(),
            counters: pipeline.counters.clone(),
            policy,
        });
        let inner = Arc::new(Background {
            pipeline,
            hand_off,
            in_flight_duplicates,
        });
        if let Some(reconciler) = reconciler {
            let submit: Arc<dyn Submit> = inner.clone();
            tokio::spawn(reconciler.run(Arc::downgrade(&submit)));
        }
        Ok(Receiver { inner })
    }

    /// Builds a receiver for the inline styles (the extractor, the middleware): the caller's
    /// own code is the handler, so none may be given ([`BuildError::HandlerNotUsedInline`]),
    /// nor a Redis stream; a duplicate of a run in flight is always asked to retry.
    pub fn build_inline(mut self) -> Result<InlineReceiver, BuildError> {
        if self.handler.is_some() {
            return Err(BuildError::HandlerNotUsedInline);
        }
        if self.confirm.is_some() || self.reconcile.is_some() {
            return Err(BuildError::RunsNeedBackground);
        }
        #[cfg(feature = "redis")]
        if self.stream.is_some() {
            return Err(BuildError::StreamWithoutHandler);
        }
        let pipeline = self.pipeline()?;
        Ok(InlineReceiver {
            pipeline: Arc::new(pipeline),
        })
    }

    /// The part both receivers share.
    fn pipeline(&mut self) -> Result<Pipeline, BuildError> {
        let auth = self.auth.take().ok_or(BuildError::NoAuth)?;
        if let Auth::Fixed(verifier) = &auth {
            check_schemes(self.provider, &verifier.schemes())?;
        }
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
            .take()
            .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn IdempotencyStore>);
        let dead_letters = self
            .dead_letters
            .take()
            .unwrap_or_else(|| Arc::new(MemoryDeadLetters::default()) as Arc<dyn DeadLetterSink>);
        Ok(Pipeline {
            provider: self.provider,
            auth,
            store,
            dead_letters,
            body_limit: self.body_limit,
            body_read_timeout: self.body_read_timeout,
            lease: self.lease,
            shutting_down: AtomicBool::new(false),
            keep_for: self.keep_for,
            counters: Arc::new(Counters::default()),
            credential_headers,
        })
    }
}

/// Refuses a scheme the platform cannot satisfy (an unknown, user-written scheme reports none
/// and is not checked).
fn check_schemes(provider: Provider, schemes: &[SchemeKind]) -> Result<(), BuildError> {
    let platform = Platform::of(provider);
    match schemes.iter().find(|scheme| !platform.sends(**scheme)) {
        None => Ok(()),
        Some(&scheme) => Err(BuildError::SchemeNotSent {
            provider,
            scheme,
            sendable: platform
                .schemes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Secret, SkyvernSignature};

    fn skyvern() -> ReceiverBuilder {
        Receiver::builder(Provider::Skyvern).verifier(SkyvernSignature::new(
            Secret::new("sk_builder_test").unwrap(),
        ))
    }

    #[tokio::test]
    async fn each_style_refuses_what_it_would_not_use() {
        assert_eq!(skyvern().build().err(), Some(BuildError::NoHandler));
        let with_handler = skyvern().handler(|_| async { Ok::<(), std::io::Error>(()) });
        assert_eq!(
            with_handler.build_inline().err(),
            Some(BuildError::HandlerNotUsedInline)
        );
        assert!(skyvern().build_inline().is_ok());
        assert_eq!(
            Receiver::builder(Provider::Skyvern).build_inline().err(),
            Some(BuildError::NoAuth)
        );
    }

    #[tokio::test]
    async fn a_route_refuses_a_scheme_its_platform_never_sends() {
        let token = || crate::HeaderToken::authorization(Secret::new("tok").unwrap());
        let refused = Receiver::builder(Provider::Skyvern)
            .verifier(token())
            .build_inline()
            .err();
        assert!(
            matches!(
                refused,
                Some(BuildError::SchemeNotSent {
                    provider: Provider::Skyvern,
                    scheme: SchemeKind::HeaderToken,
                    ..
                })
            ),
            "{refused:?}"
        );
        // Inside an AnyOf too.
        let any = crate::AnyOf::new(vec![
            Box::new(crate::PathSecret::last_segment(Secret::new("p").unwrap())),
            Box::new(token()),
        ])
        .unwrap();
        let refused = Receiver::builder(Provider::TinyFish)
            .verifier(any)
            .build_inline()
            .err();
        assert!(matches!(refused, Some(BuildError::SchemeNotSent { .. })));
        assert!(Receiver::builder(Provider::WebRun)
            .verifier(token())
            .build_inline()
            .is_ok());
    }

    #[tokio::test]
    async fn platform_constructors_use_the_default_scheme() {
        use http::HeaderMap;
        let key = Secret::new("k_platform").unwrap();
        let body = br#"{"run_id":"r1","status":"completed"}"#;
        let signed: HeaderMap = HeaderMap::from_iter([(
            http::HeaderName::from_static("x-skyvern-signature"),
            crate::sign_skyvern(&key, body).parse().unwrap(),
        )]);
        let authorization: HeaderMap =
            HeaderMap::from_iter([(http::header::AUTHORIZATION, "k_platform".parse().unwrap())]);
        let none = HeaderMap::new();
        let cases = [
            (
                Receiver::skyvern(key.clone()),
                &signed,
                "/hook",
                &authorization,
            ),
            (
                Receiver::tinyfish(key.clone()),
                &none,
                "/hook/k_platform",
                &signed,
            ),
            (
                Receiver::webrun(key.clone()),
                &authorization,
                "/hook",
                &signed,
            ),
            (
                Receiver::smartbrowse(key.clone()),
                &authorization,
                "/hook",
                &none,
            ),
        ];
        for (builder, accepted, path, refused) in cases {
            let receiver = builder.build_inline().unwrap();
            let provider = receiver.provider();
            assert_eq!(
                receiver.body_read_timeout(),
                Platform::of(provider).answer_within()
            );
            let body = bytes::Bytes::from_static(body);
            // Genuine: claimed, or (not this platform's payload) accepted for review; never 401.
            let genuine = receiver
                .claim_event(accepted, path, body.clone())
                .await
                .err()
                .map(|outcome| outcome.status);
            assert_ne!(genuine, Some(http::StatusCode::UNAUTHORIZED), "{provider}");
            let answer = receiver
                .claim_event(refused, "/hook/other", body)
                .await
                .err()
                .map(|outcome| outcome.status);
            assert_eq!(answer, Some(http::StatusCode::UNAUTHORIZED), "{provider}");
        }
    }
}
