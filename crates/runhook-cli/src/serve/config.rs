//! What `runhook serve` runs: routes, store, handler, from flags or from a TOML file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use runhook::payload::Provider;
use runhook::platform::{DefaultScheme, Platform};
use runhook::retry::RetryPolicy;
use runhook::verify::SegmentPosition;
use runhook::{HeaderToken, PathSecret, Secrets, SkyvernSignature, Unsigned, Verifier};
use serde::Deserialize;

use super::forward::{ForwardUrl, DEFAULT_RETRY_AFTER_CAP_SECS};
use crate::cmd::secrets;

/// The placeholder for a secret path segment in a route path: `/webhooks/tinyfish/{secret}`.
pub const SECRET_SEGMENT: &str = "{secret}";

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
    /// The namespace of every Redis key: `<prefix>:idem:` for claims, `<prefix>:stream:<path>`
    /// for a route's stream. Deployments sharing one Redis need different ones.
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    /// With a Redis stream: how many times an entry may be handed to workers (each time its
    /// process died) before it is set aside as poison.
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: u64,
    /// Where processed events go.
    #[serde(deserialize_with = "handler_from_spec")]
    pub handler: HandlerKind,
    /// A JSON-lines file for deliveries that could not be processed; kept in memory (bounded)
    /// when absent.
    #[serde(default)]
    pub dead_letters: Option<PathBuf>,
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
}

impl QueueKind {
    /// The name used on the command line and in `runhook.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueKind::Memory => "memory",
            QueueKind::RedisStream => "redis-stream",
        }
    }
}

/// One receiving route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The request path; a `{secret}` segment makes the secret a path secret.
    pub path: String,
    /// The platform posting to it.
    #[serde(deserialize_with = "provider_from_name")]
    pub provider: Provider,
    /// Environment variables holding the accepted secrets (several during a key rotation).
    #[serde(default, deserialize_with = "one_or_many")]
    pub secret_env: Vec<String>,
    /// For header tokens (WebRun, SmartBrowse): the header carrying it (default: the
    /// platform's own, from the provider table).
    #[serde(default)]
    pub header_name: Option<String>,
    /// Accept deliveries without any authentication (TinyFish and SmartBrowse sign nothing).
    /// Chosen by name, never a default.
    #[serde(default)]
    pub unsigned: bool,
    /// Skyvern: also accept a body re-serialized by a proxy when its canonical form matches.
    #[serde(default)]
    pub canonical_fallback: bool,
    /// Skyvern: refuse deliveries whose (unsigned) `x-skyvern-timestamp` is further from now
    /// than this many seconds.
    #[serde(default)]
    pub timestamp_tolerance_secs: Option<u64>,
    /// The platform's run API base URL (runhook appends the platform's run path); default its
    /// hosted API. Only with `confirm` or `reconcile_after_secs`.
    #[serde(default)]
    pub api_url: Option<String>,
    /// The environment variable holding the run API key; required by `confirm` and
    /// `reconcile_after_secs`.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Fetch each run from the platform's run API before the handler runs, and hand the
    /// handler the fetched run; a run the API does not know is dead-lettered `not_confirmed`.
    #[serde(default, deserialize_with = "confirm_from_bool")]
    pub confirm: Confirm,
    /// Reconcile this provider's expected runs (`runhook expect`) whose webhook has not been
    /// processed this many seconds after registration (the default window; `--within`
    /// overrides it per run). Needs a Redis store.
    #[serde(default)]
    pub reconcile_after_secs: Option<u64>,
}

/// Whether a route confirms each delivery with the platform's run API (`confirm = true`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Confirm {
    /// The POSTed body is processed as it came (after authentication).
    #[default]
    Off,
    /// The run is fetched from the run API and the fetched run is processed.
    FetchFirst,
}

fn confirm_from_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Confirm, D::Error> {
    Ok(if bool::deserialize(d)? {
        Confirm::FetchFirst
    } else {
        Confirm::Off
    })
}

/// Where claims are kept, as `--store` or `store =` names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StoreSpec {
    /// In this process (`memory`, the default).
    #[default]
    Memory,
    /// Redis at this `redis://` or `rediss://` URL, shared by every instance using it.
    Redis(String),
}

impl StoreSpec {
    /// The spec as given (`memory` or the URL, credentials included: not for logs).
    pub fn as_str(&self) -> &str {
        match self {
            StoreSpec::Memory => "memory",
            StoreSpec::Redis(url) => url,
        }
    }
}

impl std::str::FromStr for StoreSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        if spec == "memory" {
            Ok(StoreSpec::Memory)
        } else if spec.starts_with("redis://") || spec.starts_with("rediss://") {
            Ok(StoreSpec::Redis(spec.to_string()))
        } else {
            // Only the scheme: the rest may hold a password.
            let scheme = spec.split("://").next().unwrap_or_default();
            Err(format!(
                "--store {scheme}://...: expected `memory` or a redis:// URL"
            ))
        }
    }
}

impl TryFrom<String> for StoreSpec {
    type Error = String;

    fn try_from(spec: String) -> Result<Self, String> {
        spec.parse()
    }
}

/// Where processed events go: exactly one of the three.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSpec {
    /// Append each event as one JSON line to this file.
    pub jsonl: Option<PathBuf>,
    /// Run this shell command with the event JSON on standard input.
    pub exec: Option<String>,
    /// POST the event JSON to this URL.
    pub forward: Option<String>,
}

/// Without the forward URL, whose path or query may hold a secret.
impl std::fmt::Debug for HandlerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerSpec")
            .field("jsonl", &self.jsonl)
            .field("exec", &self.exec)
            .field("forward", &self.forward.as_ref().map(|_| "<url>"))
            .finish()
    }
}

/// Reads a `[handler]` table as the one handler it must name.
fn handler_from_spec<'de, D: serde::Deserializer<'de>>(de: D) -> Result<HandlerKind, D::Error> {
    HandlerSpec::deserialize(de)?
        .kind()
        .map_err(serde::de::Error::custom)
}

/// The one handler a [`HandlerSpec`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerKind {
    /// Append JSON lines to a file.
    Jsonl(PathBuf),
    /// Run a shell command per event.
    Exec(String),
    /// POST each event to a URL (shown by its origin only).
    Forward(ForwardUrl),
}

impl HandlerSpec {
    /// The handler named, or why the spec does not name exactly one.
    pub fn kind(&self) -> Result<HandlerKind, String> {
        let named = [
            self.jsonl.clone().map(HandlerKind::Jsonl),
            self.exec.clone().map(HandlerKind::Exec),
            self.forward
                .as_deref()
                .map(ForwardUrl::parse)
                .transpose()?
                .map(HandlerKind::Forward),
        ];
        let mut named = named.into_iter().flatten();
        match (named.next(), named.next()) {
            (Some(kind), None) => Ok(kind),
            (None, _) => Err("no handler: give one of --jsonl FILE, --exec CMD, --forward URL \
                              (in runhook.toml: [handler] jsonl = ..., exec = ... or forward = ...)"
                .into()),
            (Some(_), Some(_)) => Err("give exactly one handler: --jsonl, --exec or --forward".into()),
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
            max_deliveries: default_max_deliveries(),
            handler,
            dead_letters: None,
            drain_timeout_secs: default_drain_secs(),
            max_attempts: default_max_attempts(),
            retry_backoff_ms: default_retry_backoff_ms(),
            handler_timeout_secs: default_handler_timeout_secs(),
            forward_retry_after_cap_secs: default_forward_retry_after_cap_secs(),
            forward_rate_per_sec: None,
            forward_concurrency: None,
            routes,
        }
    }

    /// Reads and checks a `runhook.toml`.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    /// Refuses a configuration that cannot run: no routes, a repeated path, no handler, zero
    /// workers.
    pub fn check(&self) -> Result<(), String> {
        if self.routes.is_empty() {
            return Err("no routes: give --path and --provider, or [[route]] tables".into());
        }
        for (i, route) in self.routes.iter().enumerate() {
            if self.routes[..i].iter().any(|r| r.path == route.path) {
                return Err(format!("route path {} is given twice", route.path));
            }
            if route.path == "/healthz" || route.path == "/metrics" {
                return Err(format!("route path {} is reserved", route.path));
            }
            route.check_runs()?;
            if route.reconciles() {
                if self.redis_url().is_none() {
                    return Err(format!(
                        "{}: reconcile_after_secs needs a Redis store (--store redis://...): \
                         expected runs are registered with `runhook expect`, which reaches \
                         `serve` only through Redis",
                        route.path
                    ));
                }
                let twice = self.routes[..i]
                    .iter()
                    .any(|r| r.reconciles() && r.provider == route.provider);
                if twice {
                    return Err(format!(
                        "{}: another route already reconciles {} runs; give \
                         reconcile_after_secs to one route per provider",
                        route.path, route.provider
                    ));
                }
            }
        }
        if self.workers == 0
            || self.queue_capacity == Some(0)
            || self.max_attempts == 0
            || self.max_deliveries == 0
        {
            return Err(
                "workers, queue capacity, attempts and deliveries must be at least 1".into(),
            );
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(char::is_whitespace) {
            return Err("the Redis prefix must be non-empty, without spaces".into());
        }
        if self.lease_secs == 0 {
            return Err("the lease must be at least 1 second".into());
        }
        if self.queue == QueueKind::RedisStream && self.redis_url().is_none() {
            return Err(
                "--queue redis-stream needs a Redis store: give --store redis://HOST:PORT".into(),
            );
        }
        self.check_forward()
    }

    /// The store's Redis URL, if the store is Redis.
    pub fn redis_url(&self) -> Option<&str> {
        match &self.store {
            StoreSpec::Memory => None,
            StoreSpec::Redis(url) => Some(url),
        }
    }

    /// How long a claim is held.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    /// How long a shutdown waits for the queue to drain.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    /// How long one handler attempt may run, as configured.
    pub fn handler_timeout(&self) -> Duration {
        Duration::from_secs(self.handler_timeout_secs)
    }

    /// How failed handler attempts are retried. A forward with limits gets a longer attempt
    /// timeout, covering its wait for permits ([`ServeConfig::forward_attempt_timeout`]).
    pub fn retry_policy(&self) -> RetryPolicy {
        let initial_backoff = Duration::from_millis(self.retry_backoff_ms);
        let attempt_timeout = match (&self.handler, self.forward_settings()) {
            (HandlerKind::Forward(_), Ok(settings)) => self.forward_attempt_timeout(&settings),
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

impl RouteSpec {
    /// A route for `provider` at `path` with the secrets in `secret_env`, other settings at
    /// their defaults.
    pub fn new(path: impl Into<String>, provider: Provider, secret_env: Vec<String>) -> Self {
        Self {
            path: path.into(),
            provider,
            secret_env,
            header_name: None,
            unsigned: false,
            canonical_fallback: false,
            timestamp_tolerance_secs: None,
            api_url: None,
            api_key_env: None,
            confirm: Confirm::Off,
            reconcile_after_secs: None,
        }
    }

    /// The index of the `{secret}` segment in the path, if it has one.
    fn secret_segment(&self) -> Result<Option<usize>, String> {
        let segments: Vec<&str> = self.path.trim_start_matches('/').split('/').collect();
        let mut found = segments
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == SECRET_SEGMENT);
        match (found.next(), found.next()) {
            (None, _) => Ok(None),
            (Some((index, _)), None) => Ok(Some(index)),
            (Some(_), Some(_)) => Err(format!("{}: more than one {SECRET_SEGMENT}", self.path)),
        }
    }

    /// The scheme that authenticates this route's deliveries, with the secrets read from the
    /// environment:
    /// - `unsigned`: none (no secrets allowed);
    /// - a `{secret}` segment in the path: that segment must equal a secret;
    /// - Skyvern: the `x-skyvern-signature` HMAC keyed by the API key;
    /// - WebRun, SmartBrowse: the header `header_name` must equal a secret;
    /// - TinyFish signs nothing: a `{secret}` path or `unsigned` is required.
    pub fn verifier(&self) -> Result<Box<dyn Verifier>, String> {
        let route = &self.path;
        if !route.starts_with('/') {
            return Err(format!("route path {route} must start with /"));
        }
        let segment = self.secret_segment()?;
        if self.unsigned {
            if !self.secret_env.is_empty() || segment.is_some() {
                return Err(format!(
                    "{route}: an unsigned route takes no secret (drop --secret-env or {SECRET_SEGMENT})"
                ));
            }
            tracing::warn!(route = %route, provider = %self.provider, "route accepts unauthenticated deliveries");
            return Ok(Box::new(Unsigned::accept_without_authentication()));
        }
        if self.secret_env.is_empty() {
            return Err(format!(
                "{route}: no secret; give --secret-env VAR (or unsigned = true, chosen by name)"
            ));
        }
        let keys = secrets::all_from_env(&self.secret_env).map_err(|e| format!("{route}: {e}"))?;
        self.verifier_with(keys)
    }

    /// The scheme as [`RouteSpec::verifier`] chooses it, with `keys` as the accepted secrets
    /// (ignored by an `unsigned` route).
    pub fn verifier_with(&self, keys: Secrets) -> Result<Box<dyn Verifier>, String> {
        let route = &self.path;
        if self.unsigned {
            return Ok(Box::new(Unsigned::accept_without_authentication()));
        }
        if let Some(index) = self.secret_segment()? {
            return Ok(Box::new(PathSecret::at(
                SegmentPosition::Index(index),
                keys,
            )));
        }
        let platform = Platform::of(self.provider);
        match (platform.default_scheme, &self.header_name) {
            (DefaultScheme::HeaderToken { header }, name) => {
                HeaderToken::new(name.as_deref().unwrap_or(header), keys)
                    .map(|scheme| Box::new(scheme) as Box<dyn Verifier>)
                    .map_err(|e| format!("{route}: {e}"))
            }
            (_, Some(_)) => Err(format!(
                "{route}: {} sends no credential header; header_name is for header-token \
                 routes (webrun, smartbrowse)",
                platform.display_name
            )),
            (DefaultScheme::SkyvernSignature, None) => {
                let mut scheme = SkyvernSignature::new(keys);
                if self.canonical_fallback {
                    scheme = scheme.with_canonical_fallback();
                }
                if let Some(secs) = self.timestamp_tolerance_secs {
                    scheme = scheme.with_timestamp_tolerance(Duration::from_secs(secs));
                }
                Ok(Box::new(scheme))
            }
            (DefaultScheme::PathSecret, None) => Err(format!(
                "{route}: {} signs nothing; put a {SECRET_SEGMENT} segment in the path \
                 (a hard-to-guess URL) or set unsigned",
                platform.display_name
            )),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_workers() -> usize {
    4
}

fn default_lease_secs() -> u64 {
    runhook::receiver::DEFAULT_LEASE.as_secs()
}

fn default_redis_prefix() -> String {
    runhook::stream::DEFAULT_NAMESPACE.into()
}

fn default_max_deliveries() -> u64 {
    runhook::stream::DEFAULT_MAX_DELIVERIES
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

fn provider_from_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Provider, D::Error> {
    let name = String::deserialize(d)?;
    crate::cmd::provider_name(&name).map_err(serde::de::Error::custom)
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

#[cfg(test)]
mod tests {
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
        assert_eq!(config.routes[1].secret_segment(), Ok(Some(2)));
        assert_eq!(config.handler, HandlerKind::Jsonl("events.jsonl".into()));
    }

    #[test]
    fn refuses_unknown_keys_providers_and_handlers() {
        let typo = EXAMPLE.replace("workers = 2", "worker = 2");
        assert!(ServeConfig::from_toml(&typo)
            .unwrap_err()
            .contains("worker"));
        let provider = EXAMPLE.replace("\"tinyfish\"", "\"tinyfsh\"");
        assert!(ServeConfig::from_toml(&provider)
            .unwrap_err()
            .contains("tinyfsh"));
        let two = EXAMPLE.replace("[handler]", "[handler]\nexec = \"cat\"");
        assert!(ServeConfig::from_toml(&two)
            .unwrap_err()
            .contains("exactly one"));
        let twice = EXAMPLE.replace("/webhooks/tinyfish/{secret}", "/webhooks/skyvern");
        assert!(ServeConfig::from_toml(&twice)
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn a_store_spec_is_memory_or_a_redis_url() {
        assert_eq!("memory".parse::<StoreSpec>(), Ok(StoreSpec::Memory));
        for url in ["redis://127.0.0.1:6379", "rediss://user:pw@host:6380/0"] {
            assert_eq!(url.parse::<StoreSpec>(), Ok(StoreSpec::Redis(url.into())));
        }
        let err = "postgres://admin:hunter2@db/x"
            .parse::<StoreSpec>()
            .unwrap_err();
        assert!(err.contains("expected `memory` or a redis:// URL"), "{err}");
        assert!(!err.contains("hunter2"), "the password leaked: {err}");
        let err = ServeConfig::from_toml(&EXAMPLE.replace("store = \"memory\"", "store = \"mem\""))
            .unwrap_err();
        assert!(err.contains("expected `memory`"), "{err}");
    }

    #[test]
    fn a_redis_stream_queue_needs_a_redis_store() {
        let stream = EXAMPLE.replace(
            "workers = 2",
            "workers = 2\nqueue = \"redis-stream\"\nlease_secs = 2",
        );
        let err = ServeConfig::from_toml(&stream).unwrap_err();
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
        assert!(ServeConfig::from_toml(&typo).unwrap_err().contains("kafka"));
    }

    #[test]
    fn reads_run_api_keys_and_reconciles_only_on_redis_once_per_provider() {
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
        let err = ServeConfig::from_toml(&memory).unwrap_err();
        assert!(err.contains("needs a Redis store"), "{err}");
        let confirm_only = memory.replace("reconcile_after_secs = 60\n", "");
        assert!(ServeConfig::from_toml(&confirm_only).is_ok());

        let twice = format!("{redis}{}", route.replace("/tf-checked", "/tf-other"));
        let err = ServeConfig::from_toml(&twice).unwrap_err();
        assert!(err.contains("already reconciles tinyfish"), "{err}");
    }

    #[test]
    fn tinyfish_needs_a_path_secret_or_an_explicit_unsigned() {
        let mut route = RouteSpec::new("/tf", Provider::TinyFish, vec!["PATH".into()]);
        assert!(route.verifier().err().unwrap().contains("signs nothing"));
        route.secret_env.clear();
        assert!(route.verifier().err().unwrap().contains("no secret"));
        route.unsigned = true;
        assert!(route.verifier().is_ok());
        route.path = "/tf/{secret}".into();
        assert!(route.verifier().err().unwrap().contains("takes no secret"));
    }
}
