//! The HTTP side of `runhook serve` (and of `runhook demo`): one POST route per receiver,
//! `GET /healthz` (liveness), `GET /readyz` (readiness), `GET /metrics`, and an orderly
//! shutdown.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::routing::{get, post};
use runhook::dead_letter::{DeadLetterSink, JsonLinesDeadLetters, MemoryDeadLetters};
use runhook::postgres_queue::{PostgresQueue, PostgresQueueError};
use runhook::receiver::{BackgroundBuilder, PreAuthBudget};
use runhook::retry::RetryPolicy;
use runhook::server::{ConnectionLimits, Server};
use runhook::store::{
    IdempotencyStore, MemoryStore, Migrations, PostgresStore, RedisStore, StoreError,
};
use runhook::stream::{RedisStreamQueue, StreamError};
use runhook::{BuildError, Handler, Receiver, ShutdownReport, Verifier};
use tokio::sync::watch;

use super::config::{QueueKind, RouteSpec, ServeConfig, StoreSpec};
use super::metrics::{self, LatencyHistogram, RouteMetrics};
use super::runs::RouteRuns;

/// Why a route, or the store every route shares, cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store cannot be used.
    #[error("cannot use the store: {0}")]
    Store(StoreError),
    /// A `postgres` queue without a Postgres store.
    #[error("--queue postgres needs a Postgres store (--store postgres://...)")]
    QueueWithoutPostgres,
    /// A route's Postgres queue cannot be used.
    #[error("{route}: cannot use the Postgres queue: {source}")]
    PostgresQueue {
        /// The route's path.
        route: String,
        /// Why not.
        source: PostgresQueueError,
    },
    /// A route's Redis stream cannot be used.
    #[error("{route}: cannot use the Redis stream: {source}")]
    Stream {
        /// The route's path.
        route: String,
        /// Why not.
        source: StreamError,
    },
    /// A route's receiver refused its settings.
    #[error("{route}: {source}")]
    Build {
        /// The route's path.
        route: String,
        /// Why.
        source: BuildError,
    },
}

/// One receiving route as served.
pub struct ServedRoute {
    /// The configured path (with `{secret}` where a path secret goes).
    pub path: String,
    /// Its pipeline.
    pub receiver: Receiver,
    /// Time from request to response on this route.
    pub latency: Arc<LatencyHistogram>,
}

/// What every route of one server shares: store, handler, dead letters and worker settings.
#[derive(Clone)]
pub struct Shared {
    /// The idempotency store.
    pub store: Arc<dyn IdempotencyStore>,
    /// The same store when it is Postgres (a `postgres` queue's jobs live beside its claims).
    pub postgres: Option<PostgresStore>,
    /// The same store when it is Redis (a `redis-stream` route claims each run with its entry
    /// in one script, on the store's Redis).
    pub redis: Option<RedisStore>,
    /// The handler for processed events.
    pub handler: Arc<dyn Handler>,
    /// Where deliveries that cannot be processed are kept.
    pub dead_letters: Arc<dyn DeadLetterSink>,
    /// Background workers per route.
    pub workers: usize,
    /// Queue capacity per route (`None`: the SDK's default for the hand-off).
    pub queue_capacity: Option<usize>,
    /// How failed handler attempts are retried.
    pub retry: RetryPolicy,
    /// The bytes every route's unauthenticated bodies may hold together.
    pub pre_auth_budget: PreAuthBudget,
}

impl Shared {
    /// The store, dead-letter sink and settings `config` names, around `handler`.
    pub async fn from_config(
        config: &ServeConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<Self, AppError> {
        // Never a write-only sink in memory: a file, or each route's dead-letter stream.
        let dead_letters: Arc<dyn DeadLetterSink> = match config.dead_letter_file() {
            Some(path) => {
                let max_bytes = config.dead_letters_max_bytes();
                tracing::info!(file = %path.display(), max_mib = config.dead_letters_max_mib, "dead letters go to a JSON-lines file");
                Arc::new(JsonLinesDeadLetters::new(path).max_bytes(max_bytes))
            }
            // Replaced per route by the route's dead-letter stream (see `route_with`).
            None => Arc::new(MemoryDeadLetters::new(1)),
        };
        let names = StoreNames::of(config);
        let (store, postgres, redis): (Arc<dyn IdempotencyStore>, _, _) = match &config.store {
            StoreSpec::Postgres(url) => {
                let store = open_postgres(url, &names).await?;
                (Arc::new(store.clone()), Some(store), None)
            }
            StoreSpec::Redis(url) => {
                let store = open_redis(url, &names).await?;
                (Arc::new(store.clone()), None, Some(store))
            }
            StoreSpec::Memory => (Arc::new(MemoryStore::new()), None, None),
        };
        Ok(Self {
            store,
            postgres,
            redis,
            handler,
            dead_letters,
            workers: config.workers,
            queue_capacity: config.queue_capacity,
            retry: config.retry_policy(),
            pre_auth_budget: config.pre_auth_budget(),
        })
    }

    /// The route `spec` authenticated by `verifier`, with the in-process queue, confirming
    /// and reconciling as `runs` says.
    pub fn route(
        &self,
        spec: &RouteSpec,
        verifier: Box<dyn Verifier>,
        runs: RouteRuns,
    ) -> Result<ServedRoute, AppError> {
        served(spec, self.builder(spec, verifier, runs))
    }

    /// The route `spec` authenticated by `verifier`, handing off and holding claims as
    /// `setup` says (a Redis stream per route for `redis-stream`), confirming and reconciling
    /// as `runs` says.
    pub async fn route_with(
        &self,
        spec: &RouteSpec,
        verifier: Box<dyn Verifier>,
        runs: RouteRuns,
        setup: &QueueSetup,
    ) -> Result<ServedRoute, AppError> {
        let mut builder = self.builder(spec, verifier, runs).lease(setup.lease);
        match &setup.hand_off {
            HandOffSetup::Memory => {}
            HandOffSetup::RedisStream(url) => {
                let mut queue = RedisStreamQueue::builder(spec.provider)
                    .stream_key(stream_key(&setup.redis_prefix, &spec.path))
                    .max_deliveries(setup.max_deliveries);
                // The stream lives on the store's Redis: one script claims and appends.
                if let Some(store) = &self.redis {
                    queue = queue.claim_in(store.clone());
                }
                let queue = queue
                    .connect(url)
                    .await
                    .map_err(|source| AppError::Stream {
                        route: spec.path.clone(),
                        source,
                    })?;
                tracing::info!(route = %spec.path, stream = %queue.stream_key(), group = %queue.group(), consumer = %queue.consumer(), "hand-off on a Redis stream");
                if !setup.dead_letter_file {
                    builder = builder.dead_letters(Arc::new(queue.dead_letters()));
                }
                builder = builder.redis_stream(queue);
            }
            HandOffSetup::Postgres => {
                let Some(store) = &self.postgres else {
                    return Err(AppError::QueueWithoutPostgres);
                };
                let queue = PostgresQueue::builder(spec.provider)
                    .name(spec.path.clone())
                    .max_deliveries(setup.max_deliveries)
                    .build(store.clone())
                    .map_err(|source| AppError::PostgresQueue {
                        route: spec.path.clone(),
                        source,
                    })?;
                tracing::info!(route = %spec.path, schema = %store.schema(), queue = %queue.name(), consumer = %queue.consumer(), "hand-off on a Postgres queue");
                if !setup.dead_letter_file {
                    builder = builder.dead_letters(Arc::new(queue.dead_letters()));
                }
                builder = builder.postgres_queue(queue);
            }
        }
        served(spec, builder)
    }

    /// The route's receiver as every route has it, confirming and reconciling as `runs` says.
    fn builder(
        &self,
        spec: &RouteSpec,
        verifier: Box<dyn Verifier>,
        runs: RouteRuns,
    ) -> BackgroundBuilder {
        let handler = self.handler.clone();
        let mut builder = Receiver::builder(spec.provider, verifier)
            .store(self.store.clone())
            .handler(move |event| handler.handle(event))
            .dead_letters(self.dead_letters.clone())
            .workers(self.workers)
            .retry(self.retry)
            .pre_auth_budget(self.pre_auth_budget.clone())
            .interim(spec.interim);
        if let Some(capacity) = self.queue_capacity {
            builder = builder.queue_capacity(capacity);
        }
        if let Some(source) = runs.confirm {
            builder = builder.confirm(source);
        }
        if let Some((source, policy)) = runs.reconcile {
            builder = builder.reconcile(source, policy);
        }
        if let Some((lister, policy)) = runs.sweep {
            builder = builder.sweep(lister, policy);
        }
        builder
    }
}

fn served(spec: &RouteSpec, builder: BackgroundBuilder) -> Result<ServedRoute, AppError> {
    let receiver = builder.build().map_err(|source| AppError::Build {
        route: spec.path.clone(),
        source,
    })?;
    Ok(ServedRoute {
        path: spec.path.clone(),
        receiver,
        latency: Arc::default(),
    })
}

/// How `runhook serve` hands deliveries off and how long it holds claims (settings
/// `runhook demo` leaves at their defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSetup {
    /// Where claimed deliveries wait.
    pub hand_off: HandOffSetup,
    /// How long a claim is held (renewed while a handler runs).
    pub lease: Duration,
    /// Whether dead letters go to a file (`--dead-letters`); otherwise a stream route keeps
    /// them in its dead-letter stream, `<stream>:dead`.
    pub dead_letter_file: bool,
    /// The namespace of the Redis keys.
    pub redis_prefix: String,
    /// Deliveries of one stream entry before it is set aside as poison.
    pub max_deliveries: u64,
}

impl QueueSetup {
    /// The setup `config` asks for.
    pub fn from_config(config: &ServeConfig) -> Self {
        Self {
            hand_off: match (config.queue, config.redis_url()) {
                (QueueKind::RedisStream, Some(url)) => HandOffSetup::RedisStream(url.to_owned()),
                (QueueKind::Postgres, _) => HandOffSetup::Postgres,
                _ => HandOffSetup::Memory,
            },
            lease: config.lease(),
            dead_letter_file: config.dead_letters.is_some(),
            redis_prefix: config.redis_prefix.clone(),
            max_deliveries: config.max_deliveries,
        }
    }
}

/// Where `runhook serve` hands claimed deliveries off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandOffSetup {
    /// The in-process queue.
    Memory,
    /// A Redis stream per route, on the Redis at this URL.
    RedisStream(String),
    /// A Postgres queue per route, beside the Postgres store's claims.
    Postgres,
}

/// The stream of the route at `path`: `<prefix>:stream:<path>` (the path as configured, with
/// `{secret}` and not the secret itself). Every instance serving the route shares it.
pub fn stream_key(prefix: &str, path: &str) -> String {
    runhook::stream::stream_key(prefix, path)
}

/// Where a shared store keeps its records: a Redis store's keys are
/// `<redis_prefix>:idem:<dedup key>`; a Postgres store's rows are in `postgres_schema`.
#[derive(Debug, Clone)]
pub struct StoreNames {
    /// The namespace of Redis keys.
    pub redis_prefix: String,
    /// The schema of the Postgres tables.
    pub postgres_schema: String,
    /// Whether opening a Postgres store may apply its migrations.
    pub migrations: Migrations,
}

impl StoreNames {
    /// The names `config` gives.
    pub fn of(config: &ServeConfig) -> Self {
        Self {
            redis_prefix: config.redis_prefix.clone(),
            postgres_schema: config.postgres_schema.clone(),
            migrations: match config.migrate {
                true => Migrations::Apply,
                false => Migrations::Check,
            },
        }
    }
}

/// The store `spec` names, its records where `names` says.
pub async fn open_store(
    spec: &StoreSpec,
    names: &StoreNames,
) -> Result<Arc<dyn IdempotencyStore>, AppError> {
    match spec {
        StoreSpec::Memory => Ok(Arc::new(MemoryStore::new())),
        StoreSpec::Redis(url) => Ok(Arc::new(open_redis(url, names).await?)),
        StoreSpec::Postgres(url) => Ok(Arc::new(open_postgres(url, names).await?)),
    }
}

/// The Redis store at `url`, its keys under the prefix `names` gives.
pub async fn open_redis(url: &str, names: &StoreNames) -> Result<RedisStore, AppError> {
    RedisStore::builder()
        .prefix(format!("{}:idem:", names.redis_prefix))
        .connect(url)
        .await
        .map_err(AppError::Store)
}

/// The Postgres store at `url`, its tables in the schema `names` gives.
pub async fn open_postgres(url: &str, names: &StoreNames) -> Result<PostgresStore, AppError> {
    PostgresStore::builder()
        .schema(names.postgres_schema.clone())
        .migrations(names.migrations)
        .connect(url)
        .await
        .map_err(AppError::Store)
}

/// Every route's readiness ([`Receiver::readiness`]): `200 ready`, or `503` with one line
/// per problem, `<route>: <reason>`.
pub async fn readiness(routes: &[ServedRoute]) -> (http::StatusCode, String) {
    let mut problems = String::new();
    for route in routes {
        for problem in route.receiver.readiness().await.problems {
            problems.push_str(&format!("{}: {problem}\n", route.path));
        }
    }
    if problems.is_empty() {
        (http::StatusCode::OK, "ready\n".to_string())
    } else {
        (http::StatusCode::SERVICE_UNAVAILABLE, problems)
    }
}

/// The router: each route's POST, `GET /healthz`, `GET /readyz` and `GET /metrics`.
pub fn router(routes: Arc<[ServedRoute]>) -> axum::Router {
    let mut app = axum::Router::new();
    for route in routes.iter() {
        let receiver = route.receiver.clone();
        let latency = route.latency.clone();
        app = app.route(
            &route.path,
            post(move |request: Request| {
                let receiver = receiver.clone();
                let latency = latency.clone();
                async move {
                    let started = Instant::now();
                    let response = runhook::axum::handle(&receiver, request).await;
                    latency.observe(started.elapsed());
                    response
                }
            }),
        );
    }
    let ready = routes.clone();
    app.route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let routes = ready.clone();
                async move { readiness(&routes).await }
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                let body = render_metrics(&routes);
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    body,
                )
            }),
        )
}

/// Every route's numbers in the Prometheus text format.
pub fn render_metrics(routes: &[ServedRoute]) -> String {
    let numbers: Vec<RouteMetrics<'_>> = routes
        .iter()
        .map(|route| RouteMetrics {
            route: &route.path,
            provider: route.receiver.provider().as_str(),
            stats: route.receiver.stats(),
            latency: &route.latency,
        })
        .collect();
    metrics::render(&numbers)
}

/// How a server is told to stop: each stop signal counts one. The first begins the shutdown
/// (stop accepting, finish the requests under way, drain the queues); a second ends it at once.
/// Cheap to clone; a server whose [`StopSender`] is dropped stops as if signalled twice.
#[derive(Clone)]
pub struct StopSignals(watch::Receiver<u32>);

/// Counts the stop signals of one [`StopSignals`].
pub type StopSender = watch::Sender<u32>;

impl StopSignals {
    /// No signal yet, and the sender that counts them.
    pub fn new() -> (StopSender, Self) {
        let (sender, receiver) = watch::channel(0);
        (sender, Self(receiver))
    }

    /// Completes once `count` signals have come (or the sender is gone).
    async fn reached(&self, count: u32) {
        let mut receiver = self.0.clone();
        let _ = receiver.wait_for(|seen| *seen >= count).await;
    }

    /// Completes at the first signal.
    pub async fn first(&self) {
        self.reached(1).await;
    }

    /// Completes at the second signal: stop waiting, the drain is over.
    pub async fn second(&self) {
        self.reached(2).await;
    }
}

/// Serves `routes` on `listener` (through [`runhook::server`], with `limits`) until the first
/// of `signals`, then stops accepting, lets the requests under way finish and each route drain
/// its queue, all within `drain` of the signal. Connections still open at that deadline (slow
/// or stalled clients) are closed; what a route has not processed by then is dead-lettered or
/// left pending (see [`Receiver::shutdown`]). A second signal brings that deadline forward to
/// now.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    routes: Arc<[ServedRoute]>,
    signals: StopSignals,
    drain: Duration,
    limits: ConnectionLimits,
) -> std::io::Result<Vec<(String, ShutdownReport)>> {
    // When the first signal came; set before `close` is first polled.
    let began = Arc::new(OnceLock::new());
    let first = signals.clone();
    let stop = {
        let began = began.clone();
        async move {
            first.first().await;
            let _ = began.set(tokio::time::Instant::now());
        }
    };
    let ends = move || {
        began
            .get()
            .copied()
            .unwrap_or_else(tokio::time::Instant::now)
            + drain
    };
    let second = signals.clone();
    let close = async {
        tokio::select! {
            () = tokio::time::sleep_until(ends()) => {
                tracing::warn!("drain deadline reached with connections still open");
            }
            () = second.second() => {
                tracing::warn!("second stop signal: closing the connections still open");
            }
        }
    };
    Server::new(listener, router(routes.clone()))
        .limits(limits)
        .run_until(stop, close)
        .await?;
    let ends = ends();
    Ok(drain_routes(&routes, ends, &signals).await)
}

/// Each route's queue drained until `ends` (or the second signal), one route after another
/// (their workers all run meanwhile).
async fn drain_routes(
    routes: &[ServedRoute],
    ends: tokio::time::Instant,
    signals: &StopSignals,
) -> Vec<(String, ShutdownReport)> {
    let mut reports = Vec::with_capacity(routes.len());
    for route in routes {
        let left = ends.saturating_duration_since(tokio::time::Instant::now());
        let report = route.receiver.shutdown_or(left, signals.second()).await;
        reports.push((route.path.clone(), report));
    }
    reports
}
