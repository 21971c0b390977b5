//! The transactional inbox: an axum endpoint whose database write and the run's "done" mark
//! commit in one PostgreSQL transaction, so each run's order is written exactly once whatever
//! crashes in between. `POST /webhooks/skyvern`, signed with `SKYVERN_API_KEY`.
//!
//! For each run the endpoint inserts a row into `<schema>.orders` through the inbox's
//! transaction, waits `HANDLER_DELAY_MS` (default 0: a stand-in for slow work, so that a crash
//! can land mid-handler), prints `processed skyvern <run_id>` and answers 200; the layer then
//! commits the row with the done mark. Killed before that commit, nothing of the run is
//! written, and the sender's retry runs it again.
//!
//! Run: `SKYVERN_API_KEY=sk_... DATABASE_URL=postgres://app@127.0.0.1:5432/app cargo run -p
//! runhook-examples --example axum_inbox` (`PORT`, default 3000; `RUNHOOK_SCHEMA`, default
//! `runhook`; `LEASE_SECS`, default 30: how long a crashed delivery's run waits before a retry
//! may take it).

use std::time::Duration;

use axum::http::StatusCode;
use axum::{routing::post, Router};
use runhook::inbox::{Inbox, InboxLayer};
use runhook::store::sqlx;
use runhook::store::{Migrations, PostgresStore};
use runhook::Receiver;
use runhook_examples::{secret_from_env, serve_axum};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let schema = std::env::var("RUNHOOK_SCHEMA").unwrap_or_else(|_| "runhook".into());
    let lease = Duration::from_secs(env_number("LEASE_SECS", 30)?);
    let delay = Duration::from_millis(env_number("HANDLER_DELAY_MS", 0)?);
    let store = PostgresStore::builder()
        .schema(schema.clone())
        .migrations(Migrations::Apply)
        .connect(&url)
        .await?;
    let orders = format!("\"{schema}\".orders");
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {orders} (run_id text NOT NULL, status text NOT NULL)"
    ))
    .execute(store.pool())
    .await?;
    let insert = format!("INSERT INTO {orders} (run_id, status) VALUES ($1, $2)");
    let endpoint = move |inbox: Inbox| {
        let insert = insert.clone();
        async move {
            let event = &inbox.run().event;
            let run_id = event.run_id.clone().unwrap_or_default();
            let Ok(mut tx) = inbox.transaction().await else {
                return StatusCode::SERVICE_UNAVAILABLE;
            };
            let written = sqlx::query(&insert)
                .bind(&run_id)
                .bind(event.status.as_str())
                .execute(&mut *tx)
                .await;
            if written.is_err() {
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
            drop(tx);
            tokio::time::sleep(delay).await;
            println!("processed skyvern {run_id}");
            StatusCode::OK
        }
    };
    let receiver = Receiver::skyvern(secret_from_env("SKYVERN_API_KEY")?).lease(lease);
    let app = Router::new()
        .route("/webhooks/skyvern", post(endpoint))
        .layer(InboxLayer::new(receiver, store)?);
    serve_axum(app).await
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
