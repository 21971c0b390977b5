//! `runhook serve`: a standalone receiver, configured by flags (one route) or by a TOML file
//! (many routes), for teams that do not write Rust.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use runhook::payload::Provider;
use runhook::receiver::{Interim, PreAuthBudget};

use crate::serve::app::{self, AppError, QueueSetup, ServedRoute, Shared, StopSignals};
use crate::serve::config::{
    Confirm, HandlerSpec, JsonlFsync, QueueKind, RouteSpec, ServeConfig, ServeConfigError,
};
use crate::serve::handlers;
use crate::serve::runs::RouteRuns;

/// Exit status for a configuration error (or a listener that cannot bind).
const USAGE: u8 = 2;

/// How long the runtime's own shutdown may take once the drain is over.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// Why `runhook serve` cannot start; each is a configuration error (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration cannot run: from `--config`, from the flags or with the flags
    /// applied; or a route's secrets, run API or handler cannot be used.
    #[error(transparent)]
    Config(#[from] ServeConfigError),
    /// No route from the flags.
    #[error("give --path and --provider (or --config FILE)")]
    NoRoute,
    /// A route or the store cannot be served.
    #[error(transparent)]
    App(#[from] AppError),
}

/// Arguments of `runhook serve`.
#[derive(Debug, Args)]
#[command(after_help = "One route from flags:\n  \
runhook serve --path /webhooks/skyvern --provider skyvern --secret-env SKYVERN_API_KEY --jsonl events.jsonl\n\
Many routes from a file: runhook serve --config runhook.toml (see README.md).\n\
A {secret} segment in a path makes the secret a path secret: --path '/hooks/tinyfish/{secret}'.\n\
Secrets are read from the environment variables named by --secret-env, never from the command line.\n\
GET /healthz answers ok; GET /metrics answers Prometheus text. SIGTERM, SIGINT or SIGHUP stops \
accepting, finishes the requests under way and drains the queue within --drain-timeout (closing \
slower connections), then exits; a second signal ends the drain at once.\n\
Exit status: 0 stopped cleanly, 1 stopped with events not processed, 2 configuration error.")]
pub struct ServeArgs {
    /// A runhook.toml with [[route]] tables (instead of --path/--provider and a handler flag).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["path", "provider", "jsonl", "exec", "forward", "api_url", "api_key_env", "confirm", "reconcile_after_secs"])]
    config: Option<PathBuf>,
    /// The address to listen on [default: 127.0.0.1:8080, or the config file's `listen`].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The route's path.
    #[arg(long, value_name = "PATH", requires = "provider")]
    path: Option<String>,
    /// The platform posting to the route.
    #[arg(long, value_parser = crate::names::provider_name, requires = "path")]
    provider: Option<Provider>,
    /// Environment variable holding an accepted secret; repeat during a key rotation.
    #[arg(long = "secret-env", value_name = "VAR")]
    secret_env: Vec<String>,
    /// For a header token (WebRun, SmartBrowse): the header carrying it (default: the
    /// platform's, `authorization`).
    #[arg(long, value_name = "NAME")]
    header_name: Option<String>,
    /// Accept deliveries without authentication (TinyFish and SmartBrowse sign nothing).
    #[arg(long)]
    unsigned: bool,
    /// Skyvern: also accept a body a proxy re-serialized, when its canonical form matches.
    #[arg(long)]
    canonical_fallback: bool,
    /// The platform's run API base URL, for --confirm and --reconcile-after-secs (runhook
    /// appends the platform's run path) [default: the platform's hosted API].
    #[arg(long, value_name = "URL")]
    api_url: Option<String>,
    /// Environment variable holding the run API key (required by --confirm and
    /// --reconcile-after-secs; never read from the command line).
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
    /// Fetch each run from the platform's run API before the handler runs and hand the
    /// handler the fetched run; a run the API does not know is dead-lettered `not_confirmed`
    /// (Skyvern, TinyFish, SmartBrowse).
    #[arg(long)]
    confirm: bool,
    /// Reconcile the runs registered with `runhook expect` whose webhook has not been
    /// processed this many seconds after registration (the window when `expect` gives no
    /// --within); needs --store redis://...
    #[arg(long, value_name = "SECS")]
    reconcile_after_secs: Option<u64>,
    /// Answer interim events (a Skyvern workflow attempt that will be retried,
    /// `retry_pending: true`) 200 without running the handler; the final event still runs.
    #[arg(long)]
    skip_interim: bool,
    /// `memory`, a Redis URL such as redis://127.0.0.1:6379, or a PostgreSQL URL such as
    /// postgres://app@127.0.0.1:5432/app (TLS by its sslmode), shared by several instances
    /// [default: memory, or the config file's `store`].
    #[arg(long, value_name = "STORE")]
    store: Option<String>,
    /// Background workers per route.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Where acknowledged deliveries wait: `memory` (this process), or `redis-stream` (a Redis
    /// stream per route, runhook:stream:<path>, shared by every instance on the same Redis and
    /// taken over after a crash; needs --store redis://...) [default: memory, or the config
    /// file's `queue`].
    #[arg(long, value_enum, value_name = "QUEUE")]
    queue: Option<QueueKind>,
    /// How long a claim is held before another worker or instance may take the run over, in
    /// seconds; renewed every third of it while a handler runs. A crashed instance's runs are
    /// taken over a little after it [default: 30, or the config file's `lease_secs`].
    #[arg(long, value_name = "SECS")]
    lease_secs: Option<u64>,
    /// With a Postgres store: the schema holding runhook's tables [default: runhook, or the
    /// config file's `postgres_schema`].
    #[arg(long, value_name = "SCHEMA")]
    postgres_schema: Option<String>,
    /// With a Postgres store: apply its migrations at start (creating the schema and tables);
    /// without it, a schema not migrated (`runhook migrate`) stops the start.
    #[arg(long)]
    migrate: bool,
    /// The namespace of every Redis key this deployment uses (`<prefix>:idem:…` for claims,
    /// `<prefix>:stream:<path>` for streams): give staging and production sharing one Redis
    /// different ones [default: runhook, or the config file's `redis_prefix`].
    #[arg(long, value_name = "PREFIX")]
    redis_prefix: Option<String>,
    /// Acknowledged deliveries that may wait per route before new ones get 503 with
    /// Retry-After [default: 1024 in memory, 10000 in a Redis stream, or the config file's
    /// `queue_capacity`].
    #[arg(long, value_name = "N")]
    queue_capacity: Option<usize>,
    /// With --queue redis-stream: how many times one entry may be handed to workers (its
    /// process dying each time) before it is dead-lettered as poison [default: 5, or the
    /// config file's `max_deliveries`].
    #[arg(long, value_name = "N")]
    max_deliveries: Option<u64>,
    /// Append each processed event as a JSON line to this file.
    #[arg(long, value_name = "FILE")]
    jsonl: Option<PathBuf>,
    /// With --jsonl: flush each line to disk (fsync, shared by the lines written meanwhile)
    /// before its run is recorded done: `auto` with a Redis store, whose done runs outlive a
    /// crash (with the memory store a crash forgets them anyway), `always`, or `never`
    /// [default: auto].
    #[arg(long, value_enum, value_name = "WHEN", requires = "jsonl")]
    jsonl_fsync: Option<JsonlFsync>,
    /// Run this shell command per event, the event JSON on standard input; a non-zero exit
    /// is a failure and is retried.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// With --exec: a variable of serve's environment the command also gets (repeat for
    /// more). It gets only PATH, HOME, LANG, TZ and the RUNHOOK_* variables otherwise: never
    /// the secrets or the run API key.
    #[arg(long = "exec-env", value_name = "VAR", requires = "exec")]
    exec_env: Vec<String>,
    /// POST each event as JSON to this URL (http:// or https://, trusting the platform's
    /// certificates, or those in SSL_CERT_FILE / SSL_CERT_DIR instead); an answer other than
    /// 2xx is a failure, a redirect included (never followed). Logs show only its
    /// scheme://host:port.
    #[arg(long, value_name = "URL")]
    forward: Option<String>,
    /// With --forward: the longest Retry-After (on a 429 or 503) honoured before the next
    /// attempt; a longer one is cut to this, 0 ignores it [default: 60, or the config
    /// file's `forward_retry_after_cap_secs`].
    #[arg(long, value_name = "SECS")]
    forward_retry_after_cap_secs: Option<u64>,
    /// With --forward: at most this many requests per second to the target, spaced evenly,
    /// all routes together [default: no limit, or the config file's `forward_rate_per_sec`].
    #[arg(long, value_name = "RATE")]
    forward_rate_per_sec: Option<f64>,
    /// With --forward: at most this many requests to the target at once, all routes together
    /// [default: no limit, or the config file's `forward_concurrency`].
    #[arg(long, value_name = "N")]
    forward_concurrency: Option<usize>,
    /// Send --forward's requests and the run API's through this proxy (http://, https:// or
    /// socks5://). Without it runhook connects directly: HTTP_PROXY, HTTPS_PROXY and
    /// ALL_PROXY are ignored [default: none, or the config file's `proxy`].
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Keep deliveries that could not be processed in this JSON-lines file (mode 0600)
    /// [default: runhook-dead-letters.jsonl in the working directory with the in-process
    /// queue; the route's dead-letter stream, <stream>:dead, with --queue redis-stream].
    #[arg(long, value_name = "FILE")]
    dead_letters: Option<PathBuf>,
    /// The dead-letter file's byte budget, in MiB: past it letters are refused, their
    /// deliveries parked (metric runhook_dead_letters_parked, /readyz answers 503) and tried
    /// again until it has room; at shutdown they are written past it [default: 1024, or the
    /// config file's `dead_letters_max_mib`].
    #[arg(long, value_name = "MIB")]
    dead_letters_max_mib: Option<u64>,
    /// Handler attempts per event before it is dead-lettered.
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    /// Pause after the first failed attempt, in milliseconds (doubling after each).
    #[arg(long, value_name = "MS")]
    retry_backoff_ms: Option<u64>,
    /// How long a shutdown waits for the requests under way and the queue, in seconds; past
    /// it, open connections are closed and what is not processed is dead-lettered.
    #[arg(long, value_name = "SECS")]
    drain_timeout: Option<u64>,
    /// How long a request's head (request line and headers) may take to arrive, in seconds;
    /// it also ends a kept-alive connection idle that long. Slower clients are disconnected
    /// [default: 10, or the config file's `header_read_timeout_secs`].
    #[arg(long, value_name = "SECS")]
    header_read_timeout_secs: Option<u64>,
    /// How long a connection may stay silent (no byte either way: a stalled body, an unread
    /// answer), in seconds [default: 60, or the config file's `idle_timeout_secs`].
    #[arg(long, value_name = "SECS")]
    idle_timeout_secs: Option<u64>,
    /// At most this many connections at once; past it new ones are closed at once and the
    /// others go on being served [default: the open-files limit (its soft limit is raised to
    /// the hard one at start) minus 128, at most 16384; or the config file's `max_connections`].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// The MiB that bodies not yet authenticated may hold at once, every route together; past
    /// it a body is answered 503 with Retry-After and its connection closed [default: 64, or
    /// the config file's `max_unauthenticated_mib`].
    #[arg(long, value_name = "MIB")]
    max_unauthenticated_mib: Option<u64>,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Runs `runhook serve`.
pub fn run(args: ServeArgs) -> ExitCode {
    init_logs(args.log_format);
    let config = match config_from(&args) {
        Ok(config) => config,
        Err(error) => return fail(&error.to_string()),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let code = runtime.block_on(serve(config));
    // Connections still open past the drain deadline are closed here, without waiting for
    // them (nor long for blocking work).
    runtime.shutdown_timeout(EXIT_GRACE);
    code
}

/// Structured logs on standard error; `RUST_LOG` filters (default `info`).
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().try_init(),
    };
}

/// The configuration from `--config`, or from the flags, with flag overrides applied.
fn config_from(args: &ServeArgs) -> Result<ServeConfig, ServeError> {
    let mut config = match &args.config {
        Some(path) => ServeConfig::from_file(path)?,
        None => flags_config(args)?,
    };
    apply_flags(&mut config, args)?;
    config.check()?;
    Ok(config)
}

/// `config` with each setting given by a flag replaced by the flag's value.
fn apply_flags(config: &mut ServeConfig, args: &ServeArgs) -> Result<(), ServeConfigError> {
    if let Some(store) = &args.store {
        config.store = store.parse()?;
    }
    if let Some(prefix) = &args.redis_prefix {
        config.redis_prefix.clone_from(prefix);
    }
    if let Some(schema) = &args.postgres_schema {
        config.postgres_schema.clone_from(schema);
    }
    config.migrate |= args.migrate;
    if let Some(path) = &args.dead_letters {
        config.dead_letters = Some(path.clone());
    }
    config.dead_letters_max_mib = args
        .dead_letters_max_mib
        .unwrap_or(config.dead_letters_max_mib);
    config.listen = args.listen.unwrap_or(config.listen);
    config.workers = args.workers.unwrap_or(config.workers);
    config.queue = args.queue.unwrap_or(config.queue);
    config.lease_secs = args.lease_secs.unwrap_or(config.lease_secs);
    config.queue_capacity = args.queue_capacity.or(config.queue_capacity);
    config.max_deliveries = args.max_deliveries.unwrap_or(config.max_deliveries);
    config.max_attempts = args.max_attempts.unwrap_or(config.max_attempts);
    config.retry_backoff_ms = args.retry_backoff_ms.unwrap_or(config.retry_backoff_ms);
    config.drain_timeout_secs = args.drain_timeout.unwrap_or(config.drain_timeout_secs);
    config.forward_retry_after_cap_secs = args
        .forward_retry_after_cap_secs
        .unwrap_or(config.forward_retry_after_cap_secs);
    config.forward_rate_per_sec = args.forward_rate_per_sec.or(config.forward_rate_per_sec);
    config.forward_concurrency = args.forward_concurrency.or(config.forward_concurrency);
    if let Some(proxy) = &args.proxy {
        config.proxy = Some(proxy.clone());
    }
    config.header_read_timeout_secs = args
        .header_read_timeout_secs
        .unwrap_or(config.header_read_timeout_secs);
    config.idle_timeout_secs = args.idle_timeout_secs.unwrap_or(config.idle_timeout_secs);
    config.max_connections = args.max_connections.or(config.max_connections);
    config.max_unauthenticated_mib = args
        .max_unauthenticated_mib
        .unwrap_or(config.max_unauthenticated_mib);
    Ok(())
}

/// A one-route configuration from `--path`, `--provider` and the handler flag.
fn flags_config(args: &ServeArgs) -> Result<ServeConfig, ServeError> {
    let (Some(path), Some(provider)) = (&args.path, args.provider) else {
        return Err(ServeError::NoRoute);
    };
    let mut route = RouteSpec::new(path.clone(), provider, args.secret_env.clone());
    route.header_name.clone_from(&args.header_name);
    route.unsigned = args.unsigned;
    route.canonical_fallback = args.canonical_fallback;
    route.api_url.clone_from(&args.api_url);
    route.api_key_env.clone_from(&args.api_key_env);
    if args.confirm {
        route.confirm = Confirm::FetchFirst;
    }
    route.reconcile_after_secs = args.reconcile_after_secs;
    if args.skip_interim {
        route.interim = Interim::Skip;
    }
    let handler = HandlerSpec {
        jsonl: args.jsonl.clone(),
        jsonl_fsync: args.jsonl_fsync.unwrap_or_default(),
        exec: args.exec.clone(),
        exec_env: args.exec_env.clone(),
        forward: args.forward.clone(),
    }
    .kind()?;
    Ok(ServeConfig::new(vec![route], handler))
}

/// Builds the routes, binds, serves until SIGTERM, SIGINT or SIGHUP, drains, and reports.
async fn serve(config: ServeConfig) -> ExitCode {
    let (routes, budget) = match build_routes(&config).await {
        Ok(built) => built,
        Err(error) => return fail(&error.to_string()),
    };
    let signals = match listen_for_signals() {
        Ok(signals) => signals,
        Err(e) => return fail(&format!("cannot listen for stop signals: {e}")),
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(e) => return fail(&format!("cannot listen on {}: {e}", config.listen)),
    };
    let address = listener.local_addr().map_or(config.listen, |a| a);
    for route in routes.iter() {
        tracing::info!(route = %route.path, provider = %route.receiver.provider(), "route ready");
    }
    tracing::info!(%address, store = %store_label(config.store.as_str()), queue = config.queue.as_str(), "listening");
    println!("listening on http://{address}");
    crate::serve::trim::after_bursts(budget);
    let served = app::serve_until(
        listener,
        routes,
        signals,
        config.drain_timeout(),
        config.connection_limits(),
    );
    let reports = match served.await {
        Ok(reports) => reports,
        Err(e) => return fail(&format!("server error: {e}")),
    };
    let mut drained = true;
    for (route, report) in reports {
        if !report.dead_lettered.is_empty() {
            tracing::warn!(route = %route, dead_lettered = ?report.dead_lettered, "stopped before processing these; they are in the dead letters with their bodies (runhook dead-letters redrive)");
        }
        if !report.left_pending.is_empty() {
            tracing::warn!(route = %route, left_pending = ?report.left_pending, "stopped before processing these; they stay pending in the stream for another instance");
        }
        if !report.lost.is_empty() {
            tracing::error!(route = %route, lost = ?report.lost, "stopped before processing these, and the dead-letter sink refused them: lost unless their senders retry");
        }
        drained &= report.drained();
    }
    tracing::info!("stopped");
    if drained {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Every configured route, sharing one store, handler and dead-letter sink.
/// Also the pre-authentication budget they share.
async fn build_routes(
    config: &ServeConfig,
) -> Result<(Arc<[ServedRoute]>, PreAuthBudget), ServeError> {
    let handler = handlers::build(config)?;
    let shared = Shared::from_config(config, handler).await?;
    let setup = QueueSetup::from_config(config);
    let mut routes = Vec::with_capacity(config.routes.len());
    for spec in &config.routes {
        routes.push(
            shared
                .route_with(
                    spec,
                    spec.verifier()?,
                    RouteRuns::of(spec, config.proxy.as_deref())?,
                    &setup,
                )
                .await?,
        );
    }
    Ok((routes.into(), shared.pre_auth_budget))
}

/// The store without any credentials a URL may carry.
pub(crate) fn store_label(store: &str) -> String {
    crate::redact::url_label(store)
}

/// Counts SIGTERM, SIGINT and SIGHUP from now on (SIGHUP no longer kills the process): the
/// first begins the shutdown, a second ends the drain at once.
fn listen_for_signals() -> std::io::Result<StopSignals> {
    let (count, signals) = StopSignals::new();
    let mut incoming = Incoming::new()?;
    tokio::spawn(async move {
        while let Some(name) = incoming.next().await {
            count.send_modify(|seen| *seen += 1);
            if *count.borrow() == 1 {
                tracing::info!(signal = name, "stop signal: no longer accepting; draining the queue (a second signal ends the drain)");
            } else {
                tracing::warn!(signal = name, "second stop signal: ending the drain now");
            }
        }
    });
    Ok(signals)
}

/// The stop signals this platform has.
struct Incoming {
    #[cfg(unix)]
    unix: [(tokio::signal::unix::Signal, &'static str); 3],
}

impl Incoming {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                unix: [
                    (signal(SignalKind::terminate())?, "SIGTERM"),
                    (signal(SignalKind::interrupt())?, "SIGINT"),
                    (signal(SignalKind::hangup())?, "SIGHUP"),
                ],
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The name of the next signal (`None`: no more can come).
    async fn next(&mut self) -> Option<&'static str> {
        #[cfg(unix)]
        {
            let [(term, _), (int, _), (hup, _)] = &mut self.unix;
            tokio::select! {
                Some(()) = term.recv() => Some("SIGTERM"),
                Some(()) = int.recv() => Some("SIGINT"),
                Some(()) = hup.recv() => Some("SIGHUP"),
                else => None,
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C")
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("runhook serve: {message}");
    ExitCode::from(USAGE)
}
