//! `runhook expect`: record that runs were started, so that the `runhook serve` instances
//! reconciling their provider on the same Redis fetch each one whose webhook does not come in
//! time.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use runhook::payload::Provider;
use runhook::platform::Platform;
use runhook::store::{Expected, Migrations, Window};

use super::serve::store_label;
use crate::serve::app::{open_store, StoreNames};
use crate::serve::config::{ServeConfigError, StoreSpec};

/// Exit status when some runs could not be recorded.
const PARTLY: u8 = 1;
/// Exit status for a usage error or an unreachable Redis.
const USAGE: u8 = 2;

/// Arguments of `runhook expect`.
#[derive(Debug, Args)]
#[command(
    after_help = "runhook expect --store redis://127.0.0.1:6379 --provider tinyfish run_123 run_456 --within 600\n\
A `runhook serve` route for the provider with reconcile_after_secs, on the same Redis and \
--redis-prefix, fetches each run whose webhook has not been processed in time.\n\
Exit status: 0 every run recorded (or already expected), 1 some could not be, 2 usage error or \
unreachable Redis."
)]
pub struct ExpectArgs {
    /// The store shared with the `runhook serve` instances: a Redis URL such as
    /// redis://127.0.0.1:6379, or a PostgreSQL URL such as postgres://app@127.0.0.1:5432/app.
    #[arg(long, value_name = "URL")]
    store: String,
    /// The platform the runs were started on: skyvern, tinyfish or smartbrowse (WebRun
    /// documents no run API).
    #[arg(long, value_parser = crate::names::provider_name)]
    provider: Provider,
    /// How long each webhook may take, in seconds, before the run is fetched [default: the
    /// reconciling route's reconcile_after_secs].
    #[arg(long, value_name = "SECS")]
    within: Option<u64>,
    /// The namespace `runhook serve` was given with --redis-prefix.
    #[arg(long, value_name = "PREFIX", default_value = runhook::stream::DEFAULT_NAMESPACE)]
    redis_prefix: String,
    /// The schema `runhook serve` was given with --postgres-schema (a Postgres store).
    #[arg(long, value_name = "SCHEMA", default_value = runhook::store::DEFAULT_SCHEMA)]
    postgres_schema: String,
    /// The runs' ids, as the platform returned them when they were started.
    #[arg(value_name = "RUN_ID", required = true)]
    run_ids: Vec<String>,
}

/// Runs `runhook expect`.
pub fn run(args: ExpectArgs) -> ExitCode {
    let spec = match check(&args) {
        Ok(spec) => spec,
        Err(error) => return fail(&error.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(expect(args, spec))
}

/// Why runs cannot be expected as asked (exit status 2).
#[derive(Debug, thiserror::Error)]
enum ExpectError {
    /// The platform has no run API.
    #[error("{0} documents no run API: its runs cannot be reconciled")]
    NoRunApi(&'static str),
    /// `--store` names no store.
    #[error(transparent)]
    Store(#[from] ServeConfigError),
    /// `--store memory`.
    #[error(
        "--store memory: expectations must reach the `serve` instances; give their redis:// or postgres:// URL"
    )]
    Memory,
}

/// The shared store `args` names, when the runs can be expected as asked.
fn check(args: &ExpectArgs) -> Result<StoreSpec, ExpectError> {
    let platform = Platform::of(args.provider);
    if platform.run_api.is_none() {
        return Err(ExpectError::NoRunApi(platform.display_name));
    }
    match args.store.parse::<StoreSpec>()? {
        StoreSpec::Memory => Err(ExpectError::Memory),
        shared => Ok(shared),
    }
}

async fn expect(args: ExpectArgs, spec: StoreSpec) -> ExitCode {
    let names = StoreNames {
        redis_prefix: args.redis_prefix.clone(),
        postgres_schema: args.postgres_schema.clone(),
        migrations: Migrations::Check,
    };
    let store = match open_store(&spec, &names).await {
        Ok(store) => store,
        Err(e) => return fail(&format!("{}: {e}", store_label(&args.store))),
    };
    let window = args.within.map_or(Window::RouteDefault, |secs| {
        Window::Within(Duration::from_secs(secs))
    });
    let mut failed = 0usize;
    for run_id in &args.run_ids {
        match runhook::runs::expect(&*store, args.provider, run_id, window).await {
            Ok(Expected::Recorded) => println!("recorded {} {run_id}", args.provider),
            Ok(Expected::AlreadyExpected) => {
                println!("already expected {} {run_id}", args.provider)
            }
            Err(e) => {
                failed += 1;
                eprintln!("runhook expect: {} {run_id}: {e}", args.provider);
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(PARTLY)
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("runhook expect: {message}");
    ExitCode::from(USAGE)
}
