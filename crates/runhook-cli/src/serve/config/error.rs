//! Why `runhook serve`'s configuration cannot run: one error for the file, the store, the
//! handler, each route and the settings, each message as the user reads it.

use std::path::PathBuf;

use runhook::payload::Provider;
use runhook::runs::RunApiClientError;
use runhook::verify::ConfigError;

use super::route::SECRET_SEGMENT;
use crate::env::EnvError;
use crate::serve::forward::{ForwardSettingsError, ForwardUrlError, HttpClientError};

/// Why a configuration cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ServeConfigError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The file's configuration cannot run.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: Box<ServeConfigError>,
    },
    /// `runhook.toml` does not parse, or names an unknown key or value.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// A Postgres schema name that is not a plain identifier.
    #[error("postgres_schema `{0}`: use lowercase letters, digits and `_` (not first a digit), at most 63 bytes")]
    PostgresSchema(String),
    /// A store spec that is neither `memory` nor a Redis URL; it shows only the scheme (the
    /// rest may hold a password).
    #[error("--store {scheme}://...: expected `memory`, a redis:// URL or a postgres:// URL")]
    Store {
        /// The spec's scheme.
        scheme: String,
    },
    /// No handler is named.
    #[error(
        "no handler: give one of --jsonl FILE, --exec CMD, --forward URL \
         (in runhook.toml: [handler] jsonl = ..., exec = ... or forward = ...)"
    )]
    NoHandler,
    /// More than one handler is named.
    #[error("give exactly one handler: --jsonl, --exec or --forward")]
    MoreThanOne,
    /// The forward URL cannot be used.
    #[error(transparent)]
    ForwardUrl(#[from] ForwardUrlError),
    /// The JSON-lines file cannot be opened for appending.
    #[error("cannot open {} for appending: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The forward handler's client cannot be built.
    #[error(transparent)]
    HttpClient(#[from] HttpClientError),
    /// No route.
    #[error("no routes: give --path and --provider, or [[route]] tables")]
    NoRoutes,
    /// Two routes with one path.
    #[error("route path {0} is given twice")]
    PathTwice(String),
    /// A route on `/healthz`, `/readyz` or `/metrics`.
    #[error("route path {0} is reserved")]
    PathReserved(String),
    /// A route reconciling without a shared store.
    #[error(
        "{0}: reconcile_after_secs needs a shared store (--store redis://... or \
         postgres://...): expected runs are registered with `runhook expect`, which reaches \
         `serve` only through it"
    )]
    ReconcileWithoutRedis(String),
    /// Two routes reconciling one provider's runs.
    #[error(
        "{route}: another route already reconciles {provider} runs; give \
         reconcile_after_secs to one route per provider"
    )]
    ReconcileTwice {
        /// The second route's path.
        route: String,
        /// The provider.
        provider: Provider,
    },
    /// Zero workers, queue capacity, attempts, deliveries or dead-letter MiB.
    #[error("workers, queue capacity, attempts, deliveries and the dead-letter budget must be at least 1")]
    ZeroCount,
    /// An empty Redis prefix, or one with spaces.
    #[error("the Redis prefix must be non-empty, without spaces")]
    RedisPrefix,
    /// A zero header-read timeout, idle timeout, connection cap or unauthenticated budget.
    #[error("the header-read timeout, the idle timeout, the connection cap and the unauthenticated budget must be at least 1")]
    ZeroConnectionLimit,
    /// A zero lease.
    #[error("the lease must be at least 1 second")]
    ZeroLease,
    /// A zero handler timeout: every attempt would fail at once.
    #[error("handler_timeout_secs must be at least 1")]
    ZeroHandlerTimeout,
    /// A variable named for `--exec`'s environment that is not a variable name.
    #[error("--exec-env `{0}`: not an environment variable name (letters, digits and `_`)")]
    ExecEnvName(String),
    /// A Redis stream queue on the memory store.
    #[error("--queue redis-stream needs a Redis store: give --store redis://HOST:PORT")]
    StreamWithoutRedis,
    /// A Postgres queue without a Postgres store.
    #[error("--queue postgres needs a Postgres store: give --store postgres://USER@HOST:PORT/DB")]
    QueueWithoutPostgres,
    /// Forward settings that cannot be used.
    #[error(transparent)]
    Forward(#[from] ForwardSettingsError),
    /// The path is not absolute.
    #[error("route path {route} must start with /")]
    NotAbsolute {
        /// The route's path.
        route: String,
    },
    /// The path has two `{secret}` segments.
    #[error("{route}: more than one {SECRET_SEGMENT}")]
    TwoSecretSegments {
        /// The route's path.
        route: String,
    },
    /// An unsigned route names a secret.
    #[error("{route}: an unsigned route takes no secret (drop --secret-env or {SECRET_SEGMENT})")]
    UnsignedWithSecret {
        /// The route's path.
        route: String,
    },
    /// A signed route names no secret.
    #[error("{route}: no secret; give --secret-env VAR (or unsigned = true, chosen by name)")]
    NoSecret {
        /// The route's path.
        route: String,
    },
    /// A secret or the run API key could not be read from the environment.
    #[error("{route}: {source}")]
    Env {
        /// The route's path.
        route: String,
        /// Why not.
        source: EnvError,
    },
    /// A Standard Webhooks route's secret is not `whsec_` and base64.
    #[error("{route}: {source}")]
    StandardWebhooksSecret {
        /// The route's path.
        route: String,
        /// Why.
        source: ConfigError,
    },
    /// The header token scheme refused its settings.
    #[error("{route}: {source}")]
    HeaderToken {
        /// The route's path.
        route: String,
        /// Why.
        source: ConfigError,
    },
    /// `header_name` on a platform that sends no credential header.
    #[error(
        "{route}: {platform} sends no credential header; header_name is for header-token \
         routes (webrun, smartbrowse)"
    )]
    NoCredentialHeader {
        /// The route's path.
        route: String,
        /// The platform's name.
        platform: &'static str,
    },
    /// A platform that signs nothing, without a `{secret}` path or `unsigned`.
    #[error(
        "{route}: {platform} signs nothing; put a {SECRET_SEGMENT} segment in the path \
         (a hard-to-guess URL) or set unsigned"
    )]
    SignsNothing {
        /// The route's path.
        route: String,
        /// The platform's name.
        platform: &'static str,
    },
    /// Run API settings with neither `confirm` nor `reconcile_after_secs`.
    #[error(
        "{route}: api_url and api_key_env are for confirm = true or reconcile_after_secs; \
         neither is set"
    )]
    RunApiUnused {
        /// The route's path.
        route: String,
    },
    /// `confirm` or `reconcile_after_secs` on a platform without a run API.
    #[error("{route}: {platform} documents no run API, so it can neither confirm nor reconcile")]
    NoRunApi {
        /// The route's path.
        route: String,
        /// The platform's name.
        platform: &'static str,
    },
    /// `confirm` or `reconcile_after_secs` without `api_key_env`.
    #[error(
        "{route}: confirm and reconcile_after_secs call the run API: give api_key_env \
         (--api-key-env VAR), the environment variable holding the API key"
    )]
    NoApiKeyEnv {
        /// The route's path.
        route: String,
    },
    /// `reconcile_after_secs = 0`.
    #[error("{route}: reconcile_after_secs must be at least 1")]
    ZeroWindow {
        /// The route's path.
        route: String,
    },
    /// `sweep_every_secs` on a platform that documents no list of runs.
    #[error("{route}: {platform} documents no list of runs to sweep (TinyFish and Skyvern do)")]
    NoRunList {
        /// The route's path.
        route: String,
        /// The platform's name.
        platform: &'static str,
    },
    /// A zero sweep period or window, or a window without a period.
    #[error("{route}: sweep_every_secs and sweep_window_secs must be at least 1, and the window needs the period")]
    ZeroSweep {
        /// The route's path.
        route: String,
    },
    /// The run API client refused the platform or the key.
    #[error("{route}: {source}")]
    Client {
        /// The route's path.
        route: String,
        /// Why.
        source: RunApiClientError,
    },
    /// The run API client refused `api_url` (never repeated: it may carry credentials).
    #[error("{route}: api_url: {source}")]
    ApiUrl {
        /// The route's path.
        route: String,
        /// Why.
        source: RunApiClientError,
    },
}
