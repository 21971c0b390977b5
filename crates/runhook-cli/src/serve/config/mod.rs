//! What `runhook serve` runs: routes, store, handler, from flags or from a TOML file. The
//! whole configuration and its checks are here; each route, the store and the handler have
//! their own file.

mod error;
mod handler;
mod route;
mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use runhook::receiver::PreAuthBudget;
use runhook::retry::RetryPolicy;
use runhook::server::ConnectionLimits;
use serde::Deserialize;

pub use error::ServeConfigError;
pub use handler::{ExecSpec, HandlerKind, HandlerSpec, JsonlFsync, JsonlSpec};
pub use route::{Confirm, RouteSpec};
pub use store::StoreSpec;

use super::forward::{ForwardSettings, DEFAULT_RETRY_AFTER_CAP_SECS};

/// Everything `runhook serve` needs, as read from `runhook.toml` (or built from flags).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// The address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `memory` or a `redis://` URL.
    #[serde(default)]
    pub store: StoreSpec,
    /// Background workers per route.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Acknowledged deliveries waiting for a worker, per route, before new ones get 503
    /// (default: 1024 for the in-process queue, 10 000 for a Redis stream's backlog).
    #[serde(default)]
    pub queue_capacity: Option<usize>,
    /// Where acknowledged deliveries wait for a worker: `memory` (this process) or
    /// `redis-stream` (a Redis stream per route, shared by every instance; needs a Redis
    /// store).
    #[serde(default)]
    pub queue: QueueKind,
    /// How long a claim is held before another worker or instance may take the run over, in
    /// seconds (renewed every third of it while a handler runs).
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// With a Postgres store: the schema holding runhook's tables (default `runhook`).
    #[serde(default = "default_postgres_schema")]
    pub postgres_schema: String,
    /// With a Postgres store: apply the schema's migrations at start (default: only check
    /// them, and refuse to start on a schema that is not migrated).
    #[serde(default)]
    pub migrate: bool,
    /// The namespace of every Redis key: `<prefix>:idem:` for claims, `<prefix>:stream:<path>`
    /// for a route's stream. Deployments sharing one Redis need different ones.
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    /// With a Redis stream: how many times an entry may be handed to workers (each time its
    /// process died) before it is set aside as poison.
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: u64,
    /// Where processed events go.
    #[serde(deserialize_with = "handler::from_spec")]
    pub handler: HandlerKind,
    /// A JSON-lines file for deliveries that could not be processed. When absent:
    /// [`DEFAULT_DEAD_LETTERS_FILE`] in the working directory with the in-process queue, the
    /// route's dead-letter stream with a Redis stream.
    #[serde(default)]
    pub dead_letters: Option<PathBuf>,
    /// The byte budget of the dead-letter file, in MiB: past it, letters are refused and
    /// their deliveries parked (an alarm: metric, log, `/readyz`) until it has room again
    /// (a redrive empties it); at shutdown they are written past it.
    #[serde(default = "default_dead_letters_max_mib")]
    pub dead_letters_max_mib: u64,
    /// How long a shutdown waits for the queue to drain, in seconds.
    #[serde(default = "default_drain_secs")]
    pub drain_timeout_secs: u64,
    /// Handler attempts per event, the first included, before it is dead-lettered.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Pause after the first failed attempt, in milliseconds; doubled for each further one.
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// How long one handler attempt may run, in seconds.
    #[serde(default = "default_handler_timeout_secs")]
    pub handler_timeout_secs: u64,
    /// `forward` only: the longest `Retry-After` (on a 429 or 503) honoured, in seconds; a
    /// longer one is cut to this (0: `Retry-After` is ignored).
    #[serde(default = "default_forward_retry_after_cap_secs")]
    pub forward_retry_after_cap_secs: u64,
    /// `forward` only: at most this many requests per second toward the target, spaced evenly,
    /// for every route together (absent: no limit).
    #[serde(default)]
    pub forward_rate_per_sec: Option<f64>,
    /// `forward` only: at most this many requests to the target at once, for every route
    /// together (absent: one per worker).
    #[serde(default)]
    pub forward_concurrency: Option<usize>,
    /// The proxy the forward handler and the run API clients go through (absent: none; the
    /// `HTTP_PROXY` family of variables is ignored).
    #[serde(default)]
    pub proxy: Option<String>,
    /// How long a request's head may take to arrive (and a kept-alive connection may wait for
    /// the next one), in seconds.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// How long a connection may stay silent (no byte either way), in seconds.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// At most this many connections at once (absent: derived from the open-files limit).
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// The bytes, in MiB, that the bodies of every route may hold together while they are read
    /// and not yet authenticated; past it a body is answered 503 with `Retry-After`.
    #[serde(default = "default_max_unauthenticated_mib")]
    pub max_unauthenticated_mib: u64,
    /// The routes, at least one.
    #[serde(rename = "route")]
    pub routes: Vec<RouteSpec>,
}

/// Where acknowledged deliveries wait for a worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum QueueKind {
    /// A bounded queue in this process: fast, lost if the process dies.
    #[default]
    Memory,
    /// A Redis stream per route (`<redis_prefix>:stream:<route path>`) read by a consumer group:
    /// acknowledged only once in Redis, taken over by another instance after a crash.
    RedisStream,
    /// A Postgres jobs table (`<postgres_schema>.jobs`, one queue per route path), written with
    /// the run's claim in one statement: acknowledged only once committed, taken over by
    /// another instance after a crash.
    Postgres,
}

impl QueueKind {
    /// The name used on the command line and in `runhook.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueKind::Memory => "memory",
            QueueKind::RedisStream => "redis-stream",
            QueueKind::Postgres => "postgres",
        }
    }
}

impl ServeConfig {
    /// `routes` and `handler` with every other setting at its default.
    pub fn new(routes: Vec<RouteSpec>, handler: HandlerKind) -> Self {
        Self {
            listen: default_listen(),
            store: StoreSpec::Memory,
            workers: default_workers(),
            queue_capacity: None,
            queue: QueueKind::default(),
            lease_secs: default_lease_secs(),
            redis_prefix: default_redis_prefix(),
            postgres_schema: default_postgres_schema(),
            migrate: false,
            max_deliveries: default_max_deliveries(),
            handler,
            dead_letters: None,
            dead_letters_max_mib: default_dead_letters_max_mib(),
            drain_timeout_secs: default_drain_secs(),
            max_attempts: default_max_attempts(),
            retry_backoff_ms: default_retry_backoff_ms(),
            handler_timeout_secs: default_handler_timeout_secs(),
            forward_retry_after_cap_secs: default_forward_retry_after_cap_secs(),
            forward_rate_per_sec: None,
            forward_concurrency: None,
            proxy: None,
            header_read_timeout_secs: default_header_read_timeout_secs(),
            idle_timeout_secs: default_idle_timeout_secs(),
            max_connections: None,
            max_unauthenticated_mib: default_max_unauthenticated_mib(),
            routes,
        }
    }

    /// Reads and checks the `runhook.toml` at `path`.
    pub fn from_file(path: &Path) -> Result<Self, ServeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServeConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ServeConfigError::InFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Reads and checks a `runhook.toml`.
    pub fn from_toml(text: &str) -> Result<Self, ServeConfigError> {
        let config: Self = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    /// Refuses a configuration that cannot run: no routes, a repeated path, no handler, zero
    /// workers.
    pub fn check(&self) -> Result<(), ServeConfigError> {
        self.check_routes()?;
        if self.workers == 0
            || self.queue_capacity == Some(0)
            || self.max_attempts == 0
            || self.max_deliveries == 0
            || self.dead_letters_max_mib == 0
        {
            return Err(ServeConfigError::ZeroCount);
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(char::is_whitespace) {
            return Err(ServeConfigError::RedisPrefix);
        }
        if runhook::store::PostgresStore::check_schema_name(&self.postgres_schema).is_err() {
            return Err(ServeConfigError::PostgresSchema(
                self.postgres_schema.clone(),
            ));
        }
        if self.header_read_timeout_secs == 0
            || self.idle_timeout_secs == 0
            || self.max_connections == Some(0)
            || self.max_unauthenticated_mib == 0
        {
            return Err(ServeConfigError::ZeroConnectionLimit);
        }
        if self.lease_secs == 0 {
            return Err(ServeConfigError::ZeroLease);
        }
        if self.handler_timeout_secs == 0 {
            return Err(ServeConfigError::ZeroHandlerTimeout);
        }
        if self.queue == QueueKind::RedisStream && self.redis_url().is_none() {
            return Err(ServeConfigError::StreamWithoutRedis);
        }
        if self.queue == QueueKind::Postgres && !matches!(self.store, StoreSpec::Postgres(_)) {
            return Err(ServeConfigError::QueueWithoutPostgres);
        }
        Ok(ForwardSettings::check(self)?)
    }

    /// Refuses routes that cannot run together: none, a path given twice or reserved, run API
    /// settings that cannot work, reconciling without Redis or twice for one provider.
    fn check_routes(&self) -> Result<(), ServeConfigError> {
        if self.routes.is_empty() {
            return Err(ServeConfigError::NoRoutes);
        }
        for (i, route) in self.routes.iter().enumerate() {
            let path = || route.path.clone();
            if self.routes[..i].iter().any(|r| r.path == route.path) {
                return Err(ServeConfigError::PathTwice(path()));
            }
            if ["/healthz", "/readyz", "/metrics"].contains(&route.path.as_str()) {
                return Err(ServeConfigError::PathReserved(path()));
            }
            route.check_runs()?;
            if route.reconciles() && !self.store.is_shared() {
                return Err(ServeConfigError::ReconcileWithoutRedis(path()));
            }
            let twice = self.routes[..i]
                .iter()
                .any(|r| r.reconciles() && r.provider == route.provider);
            if route.reconciles() && twice {
                return Err(ServeConfigError::ReconcileTwice {
                    route: path(),
                    provider: route.provider,
                });
            }
        }
        Ok(())
    }

    /// The store's Redis URL, if the store is Redis.
    pub fn redis_url(&self) -> Option<&str> {
        match &self.store {
            StoreSpec::Memory | StoreSpec::Postgres(_) => None,
            StoreSpec::Redis(url) => Some(url),
        }
    }

    /// The dead-letter file: the one configured, else [`DEFAULT_DEAD_LETTERS_FILE`] with the
    /// in-process queue; `None` with a Redis stream or a Postgres queue (they keep their own).
    pub fn dead_letter_file(&self) -> Option<PathBuf> {
        match (&self.dead_letters, self.queue) {
            (Some(path), _) => Some(path.clone()),
            (None, QueueKind::Memory) => Some(PathBuf::from(DEFAULT_DEAD_LETTERS_FILE)),
            (None, QueueKind::RedisStream | QueueKind::Postgres) => None,
        }
    }

    /// The dead-letter file's byte budget.
    pub fn dead_letters_max_bytes(&self) -> u64 {
        self.dead_letters_max_mib.saturating_mul(1024 * 1024)
    }

    /// How long a claim is held.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    /// How long a shutdown waits for the queue to drain.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    /// The limits the server puts on its connections.
    pub fn connection_limits(&self) -> ConnectionLimits {
        let limits = ConnectionLimits::default()
            .header_read_timeout(Duration::from_secs(self.header_read_timeout_secs))
            .idle_timeout(Duration::from_secs(self.idle_timeout_secs));
        match self.max_connections {
            Some(cap) => limits.max_connections(cap),
            None => limits,
        }
    }

    /// The budget every route's unauthenticated bodies share.
    pub fn pre_auth_budget(&self) -> PreAuthBudget {
        PreAuthBudget::new(self.max_unauthenticated_mib.saturating_mul(1024 * 1024))
    }

    /// How long one handler attempt may run, as configured.
    pub fn handler_timeout(&self) -> Duration {
        Duration::from_secs(self.handler_timeout_secs)
    }

    /// How failed handler attempts are retried. A forward with limits gets a longer attempt
    /// timeout, covering its wait for permits ([`ForwardSettings::attempt_timeout`]).
    pub fn retry_policy(&self) -> RetryPolicy {
        let initial_backoff = Duration::from_millis(self.retry_backoff_ms);
        let attempt_timeout = match (&self.handler, ForwardSettings::of(self)) {
            (HandlerKind::Forward(_), Ok(settings)) => settings.attempt_timeout(self),
            _ => self.handler_timeout(),
        };
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff,
            max_backoff: RetryPolicy::default().max_backoff.max(initial_backoff),
            attempt_timeout,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_header_read_timeout_secs() -> u64 {
    runhook::server::DEFAULT_HEADER_READ_TIMEOUT.as_secs()
}

fn default_idle_timeout_secs() -> u64 {
    runhook::server::DEFAULT_IDLE_TIMEOUT.as_secs()
}

fn default_max_unauthenticated_mib() -> u64 {
    runhook::receiver::DEFAULT_PRE_AUTH_BUDGET_BYTES / (1024 * 1024)
}

fn default_workers() -> usize {
    4
}

fn default_lease_secs() -> u64 {
    runhook::receiver::DEFAULT_LEASE.as_secs()
}

fn default_postgres_schema() -> String {
    runhook::store::DEFAULT_SCHEMA.into()
}

fn default_redis_prefix() -> String {
    runhook::stream::DEFAULT_NAMESPACE.into()
}

fn default_max_deliveries() -> u64 {
    runhook::stream::DEFAULT_MAX_DELIVERIES
}

/// The dead-letter file of the in-process queue when none is given, in the working directory.
pub const DEFAULT_DEAD_LETTERS_FILE: &str = "runhook-dead-letters.jsonl";

/// The default byte budget of the dead-letter file: 1 GiB.
pub const DEFAULT_DEAD_LETTERS_MAX_MIB: u64 = 1024;

fn default_dead_letters_max_mib() -> u64 {
    DEFAULT_DEAD_LETTERS_MAX_MIB
}

fn default_drain_secs() -> u64 {
    30
}

fn default_max_attempts() -> u32 {
    RetryPolicy::default().max_attempts
}

fn default_retry_backoff_ms() -> u64 {
    RetryPolicy::default().initial_backoff.as_millis() as u64
}

fn default_handler_timeout_secs() -> u64 {
    RetryPolicy::default().attempt_timeout.as_secs()
}

fn default_forward_retry_after_cap_secs() -> u64 {
    DEFAULT_RETRY_AFTER_CAP_SECS
}

#[cfg(test)]
mod tests {
    use runhook::payload::Provider;

    use super::*;

    const EXAMPLE: &str = r#"
listen = "127.0.0.1:9000"
store = "memory"
workers = 2

[handler]
jsonl = "events.jsonl"

[[route]]
path = "/webhooks/skyvern"
provider = "skyvern"
secret_env = ["SKYVERN_KEY_NEW", "SKYVERN_KEY_OLD"]

[[route]]
path = "/webhooks/tinyfish/{secret}"
provider = "tinyfish"
secret_env = "TINYFISH_PATH_SECRET"
"#;

    #[test]
    fn reads_a_config_file() {
        let config = ServeConfig::from_toml(EXAMPLE).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.workers, 2);
        assert_eq!(config.routes.len(), 2);
        assert_eq!(config.routes[0].secret_env.len(), 2);
        assert_eq!(config.routes[1].provider, Provider::TinyFish);
        assert_eq!(config.routes[1].secret_segment().ok(), Some(Some(2)));
        assert_eq!(
            config.handler,
            HandlerKind::Jsonl(JsonlSpec {
                path: "events.jsonl".into(),
                fsync: JsonlFsync::Auto,
            })
        );
        let limits = config.connection_limits();
        assert_eq!(limits.header_read_timeout_value(), Duration::from_secs(10));
        assert_eq!(limits.idle_timeout_value(), Duration::from_secs(60));
        assert_eq!(
            limits.max_connections_value(),
            runhook::server::MaxConnections::Derived
        );
    }

    #[test]
    fn reads_connection_limits_and_refuses_zero() {
        let set = EXAMPLE.replace(
            "workers = 2",
            "workers = 2\nheader_read_timeout_secs = 3\nidle_timeout_secs = 7\nmax_connections = 500\nmax_unauthenticated_mib = 5",
        );
        let config = ServeConfig::from_toml(&set).unwrap();
        assert_eq!(config.pre_auth_budget().limit(), 5 * 1024 * 1024);
        let limits = config.connection_limits();
        assert_eq!(limits.header_read_timeout_value(), Duration::from_secs(3));
        assert_eq!(limits.idle_timeout_value(), Duration::from_secs(7));
        assert_eq!(
            limits.max_connections_value(),
            runhook::server::MaxConnections::Exactly(500)
        );
        for zero in [
            "header_read_timeout_secs = 0",
            "idle_timeout_secs = 0",
            "max_connections = 0",
            "max_unauthenticated_mib = 0",
        ] {
            let config = EXAMPLE.replace("workers = 2", &format!("workers = 2\n{zero}"));
            let err = ServeConfig::from_toml(&config).unwrap_err().to_string();
            assert!(err.contains("at least 1"), "{zero}: {err}");
        }
    }

    #[test]
    fn refuses_unknown_keys_providers_and_handlers() {
        let cases = [
            // (replace this, with this, and the error names this)
            ("workers = 2", "worker = 2", "worker"),
            ("\"tinyfish\"", "\"tinyfsh\"", "tinyfsh"),
            ("[handler]", "[handler]\nexec = \"cat\"", "exactly one"),
            ("/webhooks/tinyfish/{secret}", "/webhooks/skyvern", "twice"),
        ];
        for (from, to, named) in cases {
            let err = ServeConfig::from_toml(&EXAMPLE.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(err.contains(named), "{to}: {err}");
        }
    }

    #[test]
    fn a_store_spec_is_memory_a_redis_url_or_a_postgres_url() {
        assert_eq!("memory".parse::<StoreSpec>().ok(), Some(StoreSpec::Memory));
        for url in ["redis://127.0.0.1:6379", "rediss://user:pw@host:6380/0"] {
            assert_eq!(
                url.parse::<StoreSpec>().ok(),
                Some(StoreSpec::Redis(url.into()))
            );
        }
        for url in [
            "postgres://app@127.0.0.1:5432/app",
            "postgresql://app:pw@db/app?sslmode=require",
        ] {
            assert_eq!(
                url.parse::<StoreSpec>().ok(),
                Some(StoreSpec::Postgres(url.into()))
            );
        }
        let err = "mysql://admin:hunter2@db/x"
            .parse::<StoreSpec>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected `memory`, a redis:// URL or a postgres:// URL"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "the password leaked: {err}");
        let err = ServeConfig::from_toml(&EXAMPLE.replace("store = \"memory\"", "store = \"mem\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected `memory`"), "{err}");
    }

    #[test]
    fn a_redis_stream_queue_needs_a_redis_store() {
        let stream = EXAMPLE.replace(
            "workers = 2",
            "workers = 2\nqueue = \"redis-stream\"\nlease_secs = 2",
        );
        let err = ServeConfig::from_toml(&stream).unwrap_err().to_string();
        assert!(err.contains("needs a Redis store"), "{err}");
        let redis = stream.replace("store = \"memory\"", "store = \"redis://127.0.0.1:6379\"");
        let config = ServeConfig::from_toml(&redis).unwrap();
        assert_eq!(config.queue, QueueKind::RedisStream);
        assert_eq!(config.lease(), Duration::from_secs(2));
        assert_eq!(
            ServeConfig::from_toml(EXAMPLE).unwrap().queue,
            QueueKind::Memory
        );
        let typo = EXAMPLE.replace("workers = 2", "workers = 2\nqueue = \"kafka\"");
        assert!(ServeConfig::from_toml(&typo)
            .unwrap_err()
            .to_string()
            .contains("kafka"));
    }

    #[test]
    fn a_postgres_queue_needs_a_postgres_store() {
        let queue = EXAMPLE.replace("workers = 2", "workers = 2\nqueue = \"postgres\"");
        let err = ServeConfig::from_toml(&queue).unwrap_err().to_string();
        assert!(err.contains("needs a Postgres store"), "{err}");
        let redis = queue.replace("store = \"memory\"", "store = \"redis://127.0.0.1:6379\"");
        assert!(ServeConfig::from_toml(&redis).is_err());
        let postgres = queue.replace(
            "store = \"memory\"",
            "store = \"postgres://app@127.0.0.1:5432/app\"",
        );
        let config = ServeConfig::from_toml(&postgres).unwrap();
        assert_eq!(config.queue, QueueKind::Postgres);
        assert_eq!(config.dead_letter_file(), None);
    }

    #[test]
    fn reads_run_api_keys_and_reconciles_only_on_a_shared_store_once_per_provider() {
        let route = r#"
[[route]]
path = "/tf-checked"
provider = "tinyfish"
unsigned = true
api_url = "http://127.0.0.1:9"
api_key_env = "TF_API_KEY"
confirm = true
reconcile_after_secs = 60
"#;
        let redis = format!("{EXAMPLE}{route}")
            .replace("store = \"memory\"", "store = \"redis://127.0.0.1:6379\"");
        let config = ServeConfig::from_toml(&redis).unwrap();
        let checked = &config.routes[2];
        assert_eq!(checked.confirm, Confirm::FetchFirst);
        assert_eq!(checked.reconcile_after_secs, Some(60));
        assert_eq!(checked.api_key_env.as_deref(), Some("TF_API_KEY"));
        assert_eq!(config.routes[0].confirm, Confirm::Off);

        let memory = format!("{EXAMPLE}{route}");
        let err = ServeConfig::from_toml(&memory).unwrap_err().to_string();
        assert!(err.contains("needs a shared store"), "{err}");
        let postgres = format!("{EXAMPLE}{route}").replace(
            "store = \"memory\"",
            "store = \"postgres://app@127.0.0.1/app\"",
        );
        assert!(ServeConfig::from_toml(&postgres).is_ok());
        let confirm_only = memory.replace("reconcile_after_secs = 60\n", "");
        assert!(ServeConfig::from_toml(&confirm_only).is_ok());

        let twice = format!("{redis}{}", route.replace("/tf-checked", "/tf-other"));
        let err = ServeConfig::from_toml(&twice).unwrap_err().to_string();
        assert!(err.contains("already reconciles tinyfish"), "{err}");
    }
}
