//! The transactional inbox (feature `postgres`): your handler's database writes and the run's
//! "done" mark commit in **one** PostgreSQL transaction, so the run's effect happens exactly
//! once whatever crashes, stalls or retries in between. Two forms: the middleware (with
//! `tower` or `actix`), which answers the sender after your handler committed, and the
//! background handler [`InTransaction`], which runs after the 200 on any hand-off.
//!
//! [`InboxLayer`] goes in front of your handler like `WebhookLayer` (a tower `Layer`; an
//! actix-web `Transform` for `wrap`): it authenticates and parses the delivery, opens a
//! transaction on the [`PostgresStore`](crate::store::PostgresStore)'s pool, claims the run **in that transaction** (its
//! row written as done, invisible to others until the commit), and hands the transaction to
//! your handler as an [`Inbox`] in the request's extensions (an extractor in axum and in
//! actix-web). Then, by your handler's answer:
//!
//! * a 2xx: the transaction commits: your writes and the run's done mark together. A commit
//!   that fails is answered 503 + `Retry-After` (never your 2xx), and the sender's retry runs
//!   the handler again on a clean slate;
//! * anything else: the transaction rolls back, the claim with it, so the retry runs it;
//! * the process dies mid-handler: PostgreSQL rolls the transaction back, the claim with it:
//!   the sender's next retry runs the run again at once (no lease to wait out), once.
//!
//! A duplicate of a run already done is answered 200 without calling your handler; one of a
//! run in flight (its transaction still open) is asked to retry (503 + `Retry-After`) at once,
//! never kept waiting on a lock.
//!
//! ```no_run
//! # #[cfg(feature = "axum")] {
//! use axum::routing::post;
//! use axum::{http::StatusCode, Router};
//! use runhook::inbox::{Inbox, InboxLayer};
//! use runhook::store::{Migrations, PostgresStore};
//! use runhook::{Receiver, Secret};
//!
//! async fn on_run(inbox: Inbox) -> Result<StatusCode, StatusCode> {
//!     let run_id = inbox.run().event.run_id.clone();
//!     let mut tx = inbox.transaction().await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
//!     runhook::store::sqlx::query("INSERT INTO orders (run_id) VALUES ($1)")
//!         .bind(run_id)
//!         .execute(&mut *tx)
//!         .await
//!         .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
//!     Ok(StatusCode::OK) // commits the order and the run's done mark together
//! }
//!
//! # async fn app() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::builder()
//!     .migrations(Migrations::Apply)
//!     .connect("postgres://app@127.0.0.1:5432/app")
//!     .await?;
//! let key = Secret::new(std::env::var("SKYVERN_API_KEY")?)?;
//! let layer = InboxLayer::new(Receiver::skyvern(key), store)?;
//! let app: Router = Router::new().route("/webhooks/skyvern", post(on_run)).layer(layer);
//! # let _ = app; Ok(()) }
//! # }
//! ```
//!
//! # The background form
//!
//! [`InTransaction`] wraps your [`InboxHandler`] (it gets the run and the open transaction) as
//! a background [`Handler`](crate::Handler): each attempt opens a transaction, runs your
//! handler, marks the run done in the same transaction ([`PostgresStore::mark_done_in`]) and
//! commits. A failed attempt rolls back, and the retry starts clean; a worker that dies
//! mid-attempt leaves nothing; two workers holding one run at once (one stalled past its
//! lease, one that took it over) cannot both commit: the second mark finds the run done and
//! rolls its writes back.
//!
//! [`PostgresStore::mark_done_in`]: crate::store::PostgresStore::mark_done_in

#[cfg(feature = "actix")]
mod actix;
mod background;
#[cfg(any(feature = "tower", feature = "actix"))]
mod layer;
#[cfg(feature = "tower")]
mod tower;

pub use background::{ClaimGone, InTransaction, InboxHandler};
#[cfg(any(feature = "tower", feature = "actix"))]
pub use layer::{Inbox, InboxClosed, InboxLayer, InboxTransaction};

#[cfg(feature = "tower")]
pub use self::tower::InboxService;
#[cfg(feature = "actix")]
pub use actix::ActixInboxService;
#[cfg(any(feature = "tower", feature = "actix"))]
use layer::open;
