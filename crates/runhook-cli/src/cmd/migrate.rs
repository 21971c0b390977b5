//! `runhook migrate`: create or bring up to date the tables a Postgres store keeps, before
//! `runhook serve` (or your SDK receiver) starts on them. Nothing else ever changes the
//! database's schema, unless `serve --migrate` is given.

use std::process::ExitCode;

use clap::Args;
use runhook::store::sqlx::postgres::PgPoolOptions;
use runhook::store::PostgresStore;

use super::serve::store_label;
use crate::serve::config::StoreSpec;

/// Exit status for a usage error or a database that refused.
const FAILED: u8 = 2;

/// Arguments of `runhook migrate`.
#[derive(Debug, Args)]
#[command(
    after_help = "runhook migrate --store postgres://app@127.0.0.1:5432/app\n\
Applies, in one transaction and once however many instances run it at the same time, the \
migrations the schema lacks; prints each version applied, or that it was up to date.\n\
Exit status: 0 up to date, 2 usage error or the database refused."
)]
pub struct MigrateArgs {
    /// The PostgreSQL database, e.g. postgres://app@127.0.0.1:5432/app (TLS by its sslmode).
    #[arg(long, value_name = "URL")]
    store: String,
    /// The schema to hold runhook's tables.
    #[arg(long, value_name = "SCHEMA", default_value = runhook::store::DEFAULT_SCHEMA)]
    postgres_schema: String,
}

/// Runs `runhook migrate`.
pub fn run(args: MigrateArgs) -> ExitCode {
    let url = match args.store.parse::<StoreSpec>() {
        Ok(StoreSpec::Postgres(url)) => url,
        Ok(_) => return fail("--store: migrate applies to a postgres:// store only"),
        Err(e) => return fail(&e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async {
        let label = store_label(&url);
        let pool = match PgPoolOptions::new().max_connections(1).connect(&url).await {
            Ok(pool) => pool,
            Err(e) => return fail(&format!("{label}: {e}")),
        };
        match PostgresStore::migrate(&pool, &args.postgres_schema).await {
            Ok(applied) if applied.is_empty() => {
                println!("schema {} is up to date", args.postgres_schema);
                ExitCode::SUCCESS
            }
            Ok(applied) => {
                for version in applied {
                    println!(
                        "applied migration {version} to schema {}",
                        args.postgres_schema
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("{label}: {e}")),
        }
    })
}

fn fail(message: &str) -> ExitCode {
    eprintln!("runhook migrate: {message}");
    ExitCode::from(FAILED)
}
