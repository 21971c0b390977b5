//! The transactional inbox (feature `postgres` with `tower` or `actix`): your handler's database writes
//! and the run's "done" mark commit in **one** PostgreSQL transaction, so the run's effect
//! happens exactly once whatever crashes, stalls or retries in between.
//!
//! [`InboxLayer`] goes in front of your handler like `WebhookLayer` (a tower `Layer`; an
//! actix-web `Transform` for `wrap`): it authenticates and parses the delivery, opens a
//! transaction on the [`PostgresStore`]'s pool, claims the run **in that transaction** (its
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

use std::sync::Arc;
use std::time::Duration;

use runhook_store::sqlx::{PgConnection, Postgres, Transaction};
use runhook_store::{PostgresStore, StoreError};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

#[cfg(feature = "actix")]
mod actix;
#[cfg(feature = "tower")]
mod tower;

#[cfg(feature = "tower")]
pub use self::tower::InboxService;
#[cfg(feature = "actix")]
pub use actix::ActixInboxService;

use bytes::Bytes;
use runhook_core::HeaderLookup;
use runhook_store::Fingerprint;

use crate::receiver::{
    BuildError, HandlerAnswer, InlineReceiver, Outcome, ReceiverBuilder, Unavailable, VerifiedRun,
};

/// How long a sender is asked to wait after the database failed the transaction.
const RETRY_AFTER_FAILED_COMMIT: Duration = Duration::from_secs(5);

/// The transactional inbox in front of your handler (see the [module docs](self)).
#[derive(Clone)]
pub struct InboxLayer {
    receiver: InlineReceiver,
    store: PostgresStore,
}

impl InboxLayer {
    /// The inbox for the route `builder` describes (a builder without a handler: yours is
    /// behind the layer), its runs claimed in `store` and completed in the transaction each
    /// delivery gets on `store`'s pool. The builder's own store, if it was given one, is
    /// replaced: claim and completion must be in the same database.
    ///
    /// # Errors
    /// The builder's own configuration errors.
    pub fn new(builder: ReceiverBuilder, store: PostgresStore) -> Result<Self, BuildError> {
        let receiver = builder.store(Arc::new(store.clone())).build_inline()?;
        Ok(Self { receiver, store })
    }
}

/// A delivery whose run is claimed in its transaction, open while the handler runs.
struct Opened {
    slot: Arc<Mutex<Option<Transaction<'static, Postgres>>>>,
    receiver: InlineReceiver,
}

/// Authenticates and parses the delivery, opens its transaction and claims the run in it (as
/// done, if the transaction commits): what goes in the request's extensions (the [`Inbox`]
/// and the [`VerifiedRun`]) and what settles it; or the answer, when the handler is not to
/// run (rejected, a duplicate, the database unavailable).
async fn open(
    receiver: &InlineReceiver,
    store: &PostgresStore,
    headers: &(dyn HeaderLookup + Sync),
    path: &str,
    body: Bytes,
) -> Result<(Inbox, VerifiedRun, Opened), Outcome> {
    let pipeline = receiver.pipeline();
    let (verified, event) = pipeline.unclaimed_event(headers, path, body).await?;
    let mut transaction = match store.pool().begin().await {
        Ok(transaction) => transaction,
        Err(err) => {
            let reason = format!("Postgres: could not open a transaction: {err}");
            return Err(pipeline.store_refused(&event, StoreError::Unavailable { reason }));
        }
    };
    let fingerprint = Fingerprint::of(&event.raw_body);
    let claim = store
        .claim_in(
            &mut transaction,
            &event.dedup_key,
            fingerprint,
            pipeline.keep_for(),
        )
        .await;
    // Anything but a won claim: the transaction rolls back as it is dropped.
    pipeline.claimed_in_transaction(&event, claim)?;
    let run = VerifiedRun {
        event: Arc::new(event),
        verified,
    };
    let slot = Arc::new(Mutex::new(Some(transaction)));
    let inbox = Inbox {
        run: run.clone(),
        slot: slot.clone(),
    };
    let opened = Opened {
        slot,
        receiver: receiver.clone(),
    };
    Ok((inbox, run, opened))
}

impl Opened {
    /// Settles the run by the handler's answer: after a success the transaction, which holds
    /// the handler's writes and the run's done mark, commits (`Ok`: the handler's answer
    /// stands); otherwise it rolls back. `Err` is the 503 to answer instead of the
    /// handler's 2xx: the commit failed, or its reply was lost (a retry then finds the run done,
    /// or claims it again).
    async fn settle(self, answer: HandlerAnswer) -> Result<(), Outcome> {
        let transaction = self.slot.lock().await.take();
        let Some(transaction) = transaction.filter(|_| answer == HandlerAnswer::Success) else {
            // Dropped: rolled back, and the run with it. The sender's retry runs it again.
            return Ok(());
        };
        let pipeline = self.receiver.pipeline();
        match transaction.commit().await {
            Ok(()) => {
                pipeline.count_processed();
                Ok(())
            }
            Err(err) => {
                tracing::warn!(error = %err, "the handler's transaction did not commit; answering 503 so that the sender retries");
                let outcome = failed(format!("the transaction did not commit: {err}"));
                pipeline.count(&outcome);
                Err(outcome)
            }
        }
    }
}

/// 503 + `Retry-After`: the run's transaction could not be opened or did not commit.
fn failed(why: String) -> Outcome {
    let err = StoreError::Unavailable { reason: why };
    Outcome::unavailable(Unavailable::Store(err), RETRY_AFTER_FAILED_COMMIT)
}

/// The run and its transaction, in the request's extensions for the handler behind an
/// [`InboxLayer`] (an extractor in axum, feature `axum`, and in actix-web, feature `actix`).
#[derive(Clone)]
pub struct Inbox {
    run: VerifiedRun,
    slot: Arc<Mutex<Option<Transaction<'static, Postgres>>>>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("run", &self.run.event.dedup_key)
            .finish_non_exhaustive()
    }
}

/// The transaction is no longer the handler's: the handler answered, and it was committed or
/// rolled back (a task the handler spawned outlived it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the inbox transaction was already committed or rolled back: the handler had answered")]
pub struct InboxClosed;

impl Inbox {
    /// The run being handled.
    pub fn run(&self) -> &VerifiedRun {
        &self.run
    }

    /// The run's transaction, for your writes (`&mut *tx` is a `&mut PgConnection`). Held
    /// until the returned guard is dropped; the layer commits it after your handler answers
    /// 2xx.
    ///
    /// # Errors
    /// [`InboxClosed`] once the handler has answered.
    pub async fn transaction(&self) -> Result<InboxTransaction<'_>, InboxClosed> {
        let guard = MutexGuard::try_map(self.slot.lock().await, Option::as_mut);
        match guard {
            Ok(guard) => Ok(InboxTransaction { guard }),
            Err(_) => Err(InboxClosed),
        }
    }
}

/// The run's transaction, borrowed from the [`Inbox`]: it dereferences to the connection
/// the transaction runs on.
pub struct InboxTransaction<'a> {
    guard: MappedMutexGuard<'a, Transaction<'static, Postgres>>,
}

impl std::ops::Deref for InboxTransaction<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.guard
    }
}

impl std::ops::DerefMut for InboxTransaction<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.guard
    }
}
