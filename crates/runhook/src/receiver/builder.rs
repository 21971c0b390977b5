//! Configuring a route: [`ReceiverBuilder`], its defaults, and what it refuses to build.
//!
//! The builder's type says which receiver it makes. [`ReceiverBuilder<Inline>`] (from
//! [`Receiver::builder`] and the platform constructors) holds the settings every route has and
//! builds an [`InlineReceiver`]; [`ReceiverBuilder::handler`] turns it into a
//! [`BackgroundBuilder`], which alone has the settings of the background workers and builds a
//! [`Receiver`]. A background-only setting cannot be called on the inline builder:
//!
//! ```compile_fail
//! use runhook::Receiver;
//! # fn demo(key: runhook::Secret) {
//! // `workers` belongs to the background workers: an inline receiver has none.
//! let _ = Receiver::skyvern(key).workers(8).build_inline();
//! # }
//! ```
//!
//! Nor can a background receiver be built without a handler, an inline one with a handler
//! (the inline styles never call it), or any receiver without a verifier:
//!
//! ```compile_fail
//! # fn demo(key: runhook::Secret) {
//! let _ = runhook::Receiver::skyvern(key).build(); // no handler
//! # }
//! ```
//!
//! ```compile_fail
//! # fn demo(key: runhook::Secret) {
//! let handler = |_| async { Ok::<(), std::io::Error>(()) };
//! let _ = runhook::Receiver::skyvern(key).handler(handler).build_inline();
//! # }
//! ```
//!
//! ```compile_fail
//! use runhook::{payload::Provider, Receiver};
//! let _ = Receiver::builder(Provider::Skyvern).build_inline(); // no verifier
//! ```

use crate::budget::PreAuthBudget;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use runhook_core::payload::Provider;
use runhook_core::platform::Platform;
use runhook_core::{SchemeKind, Verifier};
use runhook_store::{IdempotencyStore, MemoryStore};

use super::outcome::{InFlightDuplicates, OutagePause};
use super::pipeline::{Auth, Interim, Pipeline};
use super::{BackgroundRoute, InlineReceiver, Receiver};
use crate::dead_letter::DeadLetters;
use crate::dead_letter::{DeadLetterSink, MemoryDeadLetters};
use crate::handler::Handler;
use crate::handoff::{HandOff, MemoryQueue};
use crate::log_every::LogEvery;
use crate::parked::{Parked, Settings as ParkedSettings};
#[cfg(feature = "postgres")]
use crate::postgres_queue::{PostgresQueue, PostgresWorkers};
use crate::retry::RetryPolicy;
use crate::runs::{
    ReconcilePolicy, Reconciler, RunLister, RunSource, Submit, SweepPolicy, Sweeper,
};
use crate::stats::Counters;
#[cfg(feature = "redis")]
use crate::stream::{RedisStreamQueue, StreamWorkers};
use crate::worker::WorkerContext;
use runhook_store::DEFAULT_DEDUP_WINDOW;

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

/// Configures a route; see [`Receiver::builder`]. `Style` is [`Inline`] until a handler is
/// given ([`ReceiverBuilder::handler`]), then [`WithHandler`].
#[must_use = "a builder does nothing until it is built"]
pub struct ReceiverBuilder<Style = Inline> {
    route: RouteSettings,
    style: Style,
}

/// The builder of a [`Receiver`]: a route with a handler and its background workers.
pub type BackgroundBuilder = ReceiverBuilder<WithHandler>;

/// A builder without a handler: it builds an [`InlineReceiver`] (your code is the handler), or
/// becomes a [`BackgroundBuilder`] with [`ReceiverBuilder::handler`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Inline;

/// A builder with a handler, and the settings of the workers that run it.
pub struct WithHandler {
    handler: Arc<dyn Handler>,
    queue_capacity: Option<usize>,
    workers: usize,
    retry: RetryPolicy,
    in_flight_duplicates: Option<InFlightDuplicates>,
    confirm: Option<Arc<dyn RunSource>>,
    reconcile: Option<(Arc<dyn RunSource>, ReconcilePolicy)>,
    sweep: Option<(Arc<dyn RunLister>, SweepPolicy)>,
    /// Where claimed runs wait for the workers.
    queue: QueueChoice,
}

/// Where a background receiver's claimed runs wait.
enum QueueChoice {
    /// The in-process queue (the default).
    InProcess,
    /// A Redis stream, which survives this process.
    #[cfg(feature = "redis")]
    Stream(RedisStreamQueue),
    /// A Postgres jobs table, which survives this process.
    #[cfg(feature = "postgres")]
    Postgres(PostgresQueue),
}

/// What every route has, whichever receiver it becomes.
struct RouteSettings {
    provider: Provider,
    auth: Auth,
    store: Option<Arc<dyn IdempotencyStore>>,
    dead_letters: Option<Arc<dyn DeadLetterSink>>,
    body_limit: usize,
    body_read_timeout: Duration,
    pre_auth_budget: PreAuthBudget,
    lease: Duration,
    keep_for: Duration,
    interim: Interim,
}

/// A receiver that cannot be built as configured: what only the values, not the types, can
/// tell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Not called inside a tokio runtime (the workers are tokio tasks).
    #[error("a receiver must be built inside a tokio runtime")]
    NoRuntime,
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
}

impl ReceiverBuilder<Inline> {
    /// A builder with the defaults, for [`Receiver::builder`].
    pub(super) fn new(provider: Provider, auth: Auth) -> Self {
        Self {
            route: RouteSettings {
                provider,
                auth,
                store: None,
                dead_letters: None,
                body_limit: DEFAULT_BODY_LIMIT,
                body_read_timeout: Platform::of(provider).answer_within(),
                pre_auth_budget: PreAuthBudget::process(),
                lease: DEFAULT_LEASE,
                keep_for: DEFAULT_DEDUP_WINDOW,
                interim: Interim::Process,
            },
            style: Inline,
        }
    }

    /// The code that processes each run, in the background: the builder becomes a
    /// [`BackgroundBuilder`], with the workers' settings, that builds a [`Receiver`].
    pub fn handler(self, handler: impl Handler) -> BackgroundBuilder {
        ReceiverBuilder {
            route: self.route,
            style: WithHandler {
                handler: Arc::new(handler),
                queue_capacity: None,
                workers: 4,
                retry: RetryPolicy::default(),
                in_flight_duplicates: None,
                confirm: None,
                reconcile: None,
                sweep: None,
                queue: QueueChoice::InProcess,
            },
        }
    }

    /// Builds a receiver for the inline styles (the extractor, the middleware): the caller's
    /// own code is the handler, and a duplicate of a run in flight is always asked to retry.
    pub fn build_inline(self) -> Result<InlineReceiver, BuildError> {
        let pipeline = self.route.pipeline()?;
        Ok(InlineReceiver {
            pipeline: Arc::new(pipeline),
        })
    }
}

impl<Style> ReceiverBuilder<Style> {
    /// The idempotency store (default: a [`MemoryStore`] of this process).
    pub fn store(mut self, store: Arc<dyn IdempotencyStore>) -> Self {
        self.route.store = Some(store);
        self
    }

    /// Where unprocessable deliveries go (default: the last 1000 kept in memory).
    pub fn dead_letters(mut self, sink: Arc<dyn DeadLetterSink>) -> Self {
        self.route.dead_letters = Some(sink);
        self
    }

    /// The largest body accepted, in bytes (default 2 MiB); larger ones get 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.route.body_limit = bytes;
        self
    }

    /// The budget this route's bodies charge while they are read and not yet authenticated
    /// (default: [`PreAuthBudget::process`], 64 MiB shared by every receiver of the process
    /// not given another). Give one budget to several receivers to bound them together. A body
    /// that would take it past its limit is answered 503 with `Retry-After` and its connection
    /// closed; see [`PreAuthBudget`].
    pub fn pre_auth_budget(mut self, budget: PreAuthBudget) -> Self {
        self.route.pre_auth_budget = budget;
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
        self.route.body_read_timeout = timeout;
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
        self.route.lease = lease;
        self
    }

    /// How long a processed run is remembered as done (default
    /// [`DEFAULT_DEDUP_WINDOW`](crate::receiver::DEFAULT_DEDUP_WINDOW), 7 days).
    pub fn dedup_window(mut self, keep_for: Duration) -> Self {
        self.route.keep_for = keep_for;
        self
    }

    /// What to do with interim events, the reports of attempts the platform will retry
    /// (default [`Interim::Process`]: each processed once, under its attempt's key; the final
    /// event is processed either way). [`Interim::Skip`] answers them 200 without a handler
    /// call.
    pub fn interim(mut self, interim: Interim) -> Self {
        self.route.interim = interim;
        self
    }
}

impl ReceiverBuilder<WithHandler> {
    /// How many acknowledged deliveries may wait for a worker: the in-process queue's size
    /// (default [`DEFAULT_QUEUE_CAPACITY`], 1024), or the bound of a Redis stream's backlog
    /// (default [`DEFAULT_STREAM_CAPACITY`](crate::stream::DEFAULT_STREAM_CAPACITY)). Past it,
    /// deliveries get 503 with `Retry-After` and their claims are released; nothing
    /// acknowledged is ever dropped to make room.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.style.queue_capacity = Some(capacity.max(1));
        self
    }

    /// How many handler calls run at once (default 4).
    pub fn workers(mut self, workers: usize) -> Self {
        self.style.workers = workers;
        self
    }

    /// How failed handler attempts are retried.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.style.retry = retry;
        self
    }

    /// Hands claimed deliveries to a Redis stream instead of the in-process queue (feature
    /// `redis`): a delivery is answered 200 only once it is in the stream, and any instance
    /// sharing the stream may process it, also after this one crashed (see
    /// [`RedisStreamQueue`]). The workers ([`ReceiverBuilder::workers`]) read the stream;
    /// [`ReceiverBuilder::queue_capacity`] bounds its backlog. Unless
    /// [`ReceiverBuilder::dead_letters`] says otherwise, dead letters go to the queue's
    /// dead-letter stream. Use a shared store ([`RedisStore`](crate::store::RedisStore)) with
    /// it, so that instances see each other's claims.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_stream(mut self, queue: RedisStreamQueue) -> Self {
        self.style.queue = QueueChoice::Stream(queue);
        self
    }

    /// Hands claimed deliveries to a PostgreSQL jobs table instead of the in-process queue
    /// (feature `postgres`): each delivery's claim and job are written in one statement, and
    /// it is answered 200 only once they committed; any instance sharing the database may
    /// process it, also after this one crashed (see [`PostgresQueue`]). The workers
    /// ([`ReceiverBuilder::workers`]) fetch its jobs; [`ReceiverBuilder::queue_capacity`]
    /// bounds its backlog. Unless set otherwise, the store is the queue's
    /// ([`ReceiverBuilder::store`]: give it the same database and schema) and dead letters go
    /// to the queue's table.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres_queue(mut self, queue: PostgresQueue) -> Self {
        self.style.queue = QueueChoice::Postgres(queue);
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
        self.style.in_flight_duplicates = Some(answer);
        self
    }

    /// Confirms every run with its platform's run API before its handler runs (see
    /// [`crate::runs`]): the handler gets the fetched run, a run the API does not know is
    /// dead-lettered `not_confirmed`, one not finished yet is tried again with the retry
    /// policy's backoff. `source` is usually a
    /// [`RunApiClient`](crate::runs::RunApiClient) (feature `runs`).
    pub fn confirm(mut self, source: Arc<dyn RunSource>) -> Self {
        self.style.confirm = Some(source);
        self
    }

    /// Reconciles the runs registered with [`Receiver::expect`] (or `runhook expect`) whose
    /// webhook has not been processed in time, fetching them from `source` (see
    /// [`crate::runs`]). The expectations live in the store, which must keep them
    /// ([`BuildError::StoreKeepsNoExpectations`]).
    pub fn reconcile(mut self, source: Arc<dyn RunSource>, policy: ReconcilePolicy) -> Self {
        self.style.reconcile = Some((source, policy));
        self
    }

    /// Sweeps the platform's recent runs every `policy.every` (see
    /// [`runs::sweep`](crate::runs::SweepPolicy)): the finished runs created within
    /// `policy.window` whose webhook was never processed are handed to the handler
    /// ([`EventSource::Swept`](crate::payload::EventSource::Swept)), with nothing registered
    /// beforehand. Runs done in the store cost no API call. Instances sharing the store take
    /// turns: one sweep per period. `lister` is usually a
    /// [`RunApiClient`](crate::runs::RunApiClient) (feature `runs`; TinyFish and Skyvern list
    /// their runs).
    pub fn sweep(mut self, lister: Arc<dyn RunLister>, policy: SweepPolicy) -> Self {
        self.style.sweep = Some((lister, policy));
        self
    }

    /// Builds the receiver and starts its workers (and its reconciler and sweeper), inside a
    /// tokio runtime.
    pub fn build(self) -> Result<Receiver, BuildError> {
        let ReceiverBuilder { route, mut style } = self;
        let route = style.durable_defaults(route);
        let pipeline = route.pipeline()?;
        style.check_runs(&pipeline)?;
        let (reconcile, in_flight) = (style.reconcile.take(), style.in_flight_duplicates);
        let sweep = style.sweep.take();
        let hand_off = style.start_hand_off(&pipeline);
        // Unless set: acknowledged when the run's hand-off is as safe as the store (a store of
        // this process) or survives this process (a Redis stream).
        let in_flight_duplicates =
            in_flight.unwrap_or(if !pipeline.store.is_shared() || hand_off.is_durable() {
                InFlightDuplicates::Acknowledge
            } else {
                InFlightDuplicates::AskToRetry
            });
        let reconciler = reconcile.map(|(source, policy)| Reconciler {
            provider: pipeline.provider,
            source,
            store: pipeline.store.clone(),
            dead_letters: pipeline.dead_letters.clone(),
            counters: pipeline.counters.clone(),
            policy,
        });
        let sweeper = sweep.map(|(lister, policy)| Sweeper {
            provider: pipeline.provider,
            lister,
            store: pipeline.store.clone(),
            counters: pipeline.counters.clone(),
            policy,
        });
        let inner = Arc::new(BackgroundRoute {
            pipeline,
            hand_off,
            in_flight_duplicates,
        });
        let submit: Arc<dyn Submit> = inner.clone();
        if let Some(reconciler) = reconciler {
            tokio::spawn(reconciler.run(Arc::downgrade(&submit)));
        }
        if let Some(sweeper) = sweeper {
            tokio::spawn(sweeper.run(Arc::downgrade(&submit)));
        }
        Ok(Receiver { inner })
    }
}

impl WithHandler {
    /// A durable route keeps its dead letters in its hand-off's own (and a Postgres route, or
    /// a stream given a claim store, claims in that store), unless told otherwise.
    fn durable_defaults(&self, route: RouteSettings) -> RouteSettings {
        match &self.queue {
            #[cfg(feature = "redis")]
            QueueChoice::Stream(queue) => RouteSettings {
                dead_letters: (route.dead_letters).or_else(|| Some(Arc::new(queue.dead_letters()))),
                store: (route.store).or_else(|| {
                    let store = queue.claim_store()?.clone();
                    Some(Arc::new(store) as Arc<dyn IdempotencyStore>)
                }),
                ..route
            },
            #[cfg(feature = "postgres")]
            QueueChoice::Postgres(queue) => RouteSettings {
                dead_letters: (route.dead_letters).or_else(|| Some(Arc::new(queue.dead_letters()))),
                store: (route.store).or_else(|| Some(Arc::new(queue.store().clone()))),
                ..route
            },
            QueueChoice::InProcess => route,
        }
    }

    /// Refuses confirmation or reconciliation that cannot work on this route.
    fn check_runs(&self, pipeline: &Pipeline) -> Result<(), BuildError> {
        let runs = self.confirm.is_some() || self.reconcile.is_some() || self.sweep.is_some();
        if runs && Platform::of(pipeline.provider).run_api.is_none() {
            return Err(BuildError::NoRunApi(pipeline.provider));
        }
        if self.reconcile.is_some() && pipeline.store.expectations().is_none() {
            return Err(BuildError::StoreKeepsNoExpectations);
        }
        Ok(())
    }

    /// Starts the workers on the in-process queue, or on the durable hand-off.
    fn start_hand_off(self, pipeline: &Pipeline) -> HandOff {
        let default_capacity = match &self.queue {
            #[cfg(feature = "redis")]
            QueueChoice::Stream(_) => crate::stream::DEFAULT_STREAM_CAPACITY,
            #[cfg(feature = "postgres")]
            QueueChoice::Postgres(_) => crate::postgres_queue::DEFAULT_QUEUE_CAPACITY,
            QueueChoice::InProcess => DEFAULT_QUEUE_CAPACITY,
        };
        let capacity = self.queue_capacity.unwrap_or(default_capacity);
        // Parked dead letters have their own bound, the hand-off's capacity.
        let parked = Parked::start(ParkedSettings {
            store: pipeline.store.clone(),
            dead_letters: pipeline.dead_letters.clone(),
            lease: pipeline.lease,
            bound: capacity,
        });
        let context = WorkerContext {
            store: pipeline.store.clone(),
            handler: self.handler,
            dead_letters: pipeline.dead_letters.clone(),
            retry: self.retry,
            lease: pipeline.lease,
            keep_for: pipeline.keep_for,
            counters: pipeline.counters.clone(),
            confirm: self.confirm,
            busy: Default::default(),
            unrecorded: Default::default(),
            workers: self.workers.max(1),
            parked,
        };
        match self.queue {
            #[cfg(feature = "redis")]
            QueueChoice::Stream(queue) => {
                HandOff::Stream(StreamWorkers::start(queue, context, self.workers, capacity))
            }
            #[cfg(feature = "postgres")]
            QueueChoice::Postgres(queue) => HandOff::Postgres(PostgresWorkers::start(
                queue,
                context,
                self.workers,
                capacity,
            )),
            QueueChoice::InProcess => {
                HandOff::Memory(MemoryQueue::start(context, capacity, self.workers))
            }
        }
    }
}

impl RouteSettings {
    /// The part both receivers share.
    fn pipeline(self) -> Result<Pipeline, BuildError> {
        let credential_headers = match &self.auth {
            Auth::Fixed(verifier) => {
                check_schemes(self.provider, &verifier.schemes())?;
                verifier
                    .credential_headers()
                    .into_iter()
                    .map(str::to_ascii_lowercase)
                    .collect()
            }
            Auth::Resolved(resolver) => resolver.credential_headers(),
        };
        tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn IdempotencyStore>);
        let sink = self
            .dead_letters
            .unwrap_or_else(|| Arc::new(MemoryDeadLetters::default()) as Arc<dyn DeadLetterSink>);
        let counters = Arc::new(Counters::default());
        Ok(Pipeline {
            provider: self.provider,
            auth: self.auth,
            store,
            dead_letters: DeadLetters::new(sink, counters.clone()),
            body_limit: self.body_limit,
            body_read_timeout: self.body_read_timeout,
            pre_auth_budget: self.pre_auth_budget,
            lease: self.lease,
            shutting_down: AtomicBool::new(false),
            keep_for: self.keep_for,
            outage_pause: OutagePause::of(self.provider),
            rejected_log: LogEvery::default(),
            counters,
            credential_headers,
            interim: self.interim,
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
        Receiver::builder(
            Provider::Skyvern,
            SkyvernSignature::new(Secret::new("sk_builder_test").unwrap()),
        )
    }

    /// What each style would not use is refused by the types (the `compile_fail` examples in
    /// the module docs); what is left builds.
    #[tokio::test]
    async fn each_style_builds_with_what_it_uses() {
        assert!(skyvern().build_inline().is_ok());
        let with_handler = skyvern().handler(|_| async { Ok::<(), std::io::Error>(()) });
        assert!(with_handler.workers(2).build().is_ok());
    }

    #[test]
    fn outside_a_runtime_nothing_is_built() {
        assert_eq!(skyvern().build_inline().err(), Some(BuildError::NoRuntime));
    }

    #[tokio::test]
    async fn a_route_refuses_a_scheme_its_platform_never_sends() {
        let token = || crate::HeaderToken::authorization(Secret::new("tok").unwrap());
        let refused = Receiver::builder(Provider::Skyvern, token())
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
        let refused = Receiver::builder(Provider::TinyFish, any)
            .build_inline()
            .err();
        assert!(matches!(refused, Some(BuildError::SchemeNotSent { .. })));
        assert!(Receiver::builder(Provider::WebRun, token())
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
            crate::verify::sign_skyvern(&key, body).parse().unwrap(),
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
