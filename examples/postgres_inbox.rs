//! Exactly-once effects with the transactional inbox: an axum endpoint whose ledger row and
//! the run's "done" mark commit in one PostgreSQL transaction. `POST /webhooks/skyvern`,
//! signed with `SKYVERN_API_KEY`; the database from `DATABASE_URL`.
//!
//! For each run the endpoint inserts one row into `runhook_example_ledger(run_id, status, at)`
//! (created if missing, with **no unique constraint**: a run written twice would show) through
//! the inbox's transaction, sleeps `INBOX_EXAMPLE_DELAY_MS` (default 0; a window for a crash
//! to hit) and answers 200; the layer then commits the row with the done mark, and the
//! example prints `processed skyvern <run_id>`. A run whose id starts with `fail_once_` inserts
//! its row and answers 500 the first time this process sees it: the row rolls back with the
//! rest, and the sender's retry writes it once. Killed at any moment, nothing of an
//! unfinished run is kept, and the retry runs it again.
//!
//! Run: `SKYVERN_API_KEY=sk_... DATABASE_URL=postgres://app@127.0.0.1:5432/app cargo run -p
//! runhook-examples --example postgres_inbox` (`PORT`, default 3000). Also: `RUNHOOK_SCHEMA`
//! (runhook's tables; default `runhook`), `LEASE_SECS` (how long a crashed delivery's run
//! waits before a retry may take it; default 30), and `INBOX_EXAMPLE_WRITE_OUTSIDE=1`, which
//! writes the row on its own connection instead of in the inbox transaction: what the inbox
//! prevents (a crash or a 500 after the write leaves a row, and the retry writes another).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{routing::post, Router};
use runhook::inbox::{Inbox, InboxLayer};
use runhook::store::sqlx::{self, PgPool};
use runhook::store::{Migrations, PostgresStore};
use runhook::Receiver;
use runhook_examples::{secret_from_env, serve_axum, FailOnce};

const LEDGER: &str = "CREATE TABLE IF NOT EXISTS runhook_example_ledger (\
    run_id text NOT NULL, status text NOT NULL, at timestamptz NOT NULL DEFAULT now())";
const INSERT: &str = "INSERT INTO runhook_example_ledger (run_id, status) VALUES ($1, $2)";

/// Where the endpoint writes its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// In the inbox transaction: committed with the done mark, or not at all.
    InTheInbox,
    /// On its own connection, committed at once (`INBOX_EXAMPLE_WRITE_OUTSIDE=1`).
    Outside,
}

#[derive(Clone)]
struct App {
    pool: PgPool,
    write: Write,
    delay: Duration,
    fail_once: Arc<FailOnce>,
}

/// The run the endpoint answered 200 for, on its response: printed once the layer committed.
#[derive(Debug, Clone)]
struct Answered(String);

async fn endpoint(State(app): State<App>, inbox: Inbox) -> Response {
    let event = &inbox.run().event;
    let run_id = event.run_id.clone().unwrap_or_default();
    let written = match app.write {
        Write::InTheInbox => match inbox.transaction().await {
            Ok(mut tx) => {
                sqlx::query(INSERT)
                    .bind(&run_id)
                    .bind(event.status.as_str())
                    .execute(&mut *tx)
                    .await
            }
            Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        },
        Write::Outside => {
            sqlx::query(INSERT)
                .bind(&run_id)
                .bind(event.status.as_str())
                .execute(&app.pool)
                .await
        }
    };
    if written.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    tokio::time::sleep(app.delay).await;
    if app.fail_once.first_failure(&run_id) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = StatusCode::OK.into_response();
    response.extensions_mut().insert(Answered(run_id));
    response
}

/// Outside the inbox: prints the run once its 200 stands (the transaction committed).
async fn print_answered(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let (StatusCode::OK, Some(Answered(run_id))) =
        (response.status(), response.extensions().get::<Answered>())
    {
        println!("processed skyvern {run_id}");
    }
    response
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let schema = std::env::var("RUNHOOK_SCHEMA").unwrap_or_else(|_| "runhook".into());
    let lease = Duration::from_secs(env_number("LEASE_SECS", 30)?);
    let delay = Duration::from_millis(env_number("INBOX_EXAMPLE_DELAY_MS", 0)?);
    let write = match std::env::var("INBOX_EXAMPLE_WRITE_OUTSIDE").as_deref() {
        Ok("1") => Write::Outside,
        _ => Write::InTheInbox,
    };
    let store = PostgresStore::builder()
        .schema(schema)
        .migrations(Migrations::Apply)
        .max_connections(32)
        .connect(&url)
        .await?;
    sqlx::query(LEDGER).execute(store.pool()).await?;
    let app = App {
        pool: store.pool().clone(),
        write,
        delay,
        fail_once: Arc::default(),
    };
    let receiver = Receiver::skyvern(secret_from_env("SKYVERN_API_KEY")?).lease(lease);
    let router = Router::new()
        .route("/webhooks/skyvern", post(endpoint))
        .with_state(app)
        .layer(InboxLayer::new(receiver, store)?)
        .layer(middleware::from_fn(print_answered));
    serve_axum(router).await
}

/// The whole number in environment variable `var`, or `default` when it is unset.
fn env_number(var: &str, default: u64) -> Result<u64, Box<dyn std::error::Error>> {
    match std::env::var(var) {
        Ok(text) => Ok(text
            .parse()
            .map_err(|_| format!("{var}: not a whole number"))?),
        Err(_) => Ok(default),
    }
}
