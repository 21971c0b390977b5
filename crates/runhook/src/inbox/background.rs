//! The inbox's background form: a [`Handler`] that runs your [`InboxHandler`] inside a
//! transaction and marks the run done in that same transaction, so that its writes and the
//! mark commit together, whichever hand-off delivered the run.

use std::sync::Arc;
use std::time::Duration;

use runhook_core::payload::RunEvent;
use runhook_store::sqlx::PgConnection;
use runhook_store::{DoneMark, PostgresStore, DEFAULT_DEDUP_WINDOW};

use crate::handler::{BoxFuture, Handler, HandlerError};

/// Your handler for [`InTransaction`]: it gets the run and the open transaction, and writes
/// through it. `Ok` commits its writes with the run's done mark; `Err` rolls them back and asks
/// for a retry.
pub trait InboxHandler: Send + Sync + 'static {
    /// Processes `run`, writing through `tx` (an open transaction; do not commit it).
    fn handle<'a>(
        &'a self,
        run: Arc<RunEvent>,
        tx: &'a mut PgConnection,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;
}

/// A background handler whose writes commit with the run's done mark: for each attempt it
/// opens a transaction on the store's pool, runs your [`InboxHandler`] in it, then marks the
/// run done in the same transaction and commits. Give it to
/// [`ReceiverBuilder::handler`](crate::ReceiverBuilder::handler) with that store (and, for a
/// durable hand-off, the [`PostgresQueue`](crate::postgres_queue::PostgresQueue)).
///
/// ```no_run
/// use std::sync::Arc;
/// use runhook::handler::{BoxFuture, HandlerError};
/// use runhook::inbox::{InTransaction, InboxHandler};
/// use runhook::payload::RunEvent;
/// use runhook::postgres_queue::PostgresQueue;
/// use runhook::store::sqlx::{self, PgConnection};
/// use runhook::store::PostgresStore;
/// use runhook::{Receiver, Secret};
///
/// struct Orders;
///
/// impl InboxHandler for Orders {
///     fn handle<'a>(
///         &'a self,
///         run: Arc<RunEvent>,
///         tx: &'a mut PgConnection,
///     ) -> BoxFuture<'a, Result<(), HandlerError>> {
///         Box::pin(async move {
///             sqlx::query("INSERT INTO orders (run_id) VALUES ($1)")
///                 .bind(run.run_id.as_deref())
///                 .execute(&mut *tx)
///                 .await?;
///             Ok(())
///         })
///     }
/// }
///
/// # async fn app(store: PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
/// let queue = PostgresQueue::builder(runhook::payload::Provider::Skyvern).build(store.clone())?;
/// let receiver = Receiver::skyvern(Secret::new("sk_live_example")?)
///     .handler(InTransaction::new(store, Orders))
///     .postgres_queue(queue)
///     .build()?;
/// # let _ = receiver; Ok(()) }
/// ```
///
/// Two workers can hold one run at once (a worker stalled past its lease, and the one that
/// took the run over): both may run your handler, but only one transaction can mark the run
/// done (the mark waits for the row's lock and requires the run not done), so only one
/// commits its writes; the other's are rolled back. The run's own claim and completion go on
/// as with any handler.
pub struct InTransaction<H> {
    store: PostgresStore,
    handler: Arc<H>,
    keep_for: Duration,
}

impl<H: InboxHandler> InTransaction<H> {
    /// `handler`, run in a transaction on `store`'s pool, the run marked done for
    /// [`DEFAULT_DEDUP_WINDOW`] (use the receiver's store and its `keep_for`).
    pub fn new(store: PostgresStore, handler: H) -> Self {
        Self {
            store,
            handler: Arc::new(handler),
            keep_for: DEFAULT_DEDUP_WINDOW,
        }
    }

    /// How long the done mark keeps the run's duplicates away (the receiver's `keep_for`).
    pub fn keep_for(mut self, keep_for: Duration) -> Self {
        self.keep_for = keep_for;
        self
    }
}

/// The error of an attempt whose writes were rolled back because the run is claimed by
/// nobody (its claim lapsed and was removed): it is retried, and claimed again.
#[derive(Debug, thiserror::Error)]
#[error("the run's claim is gone: its writes were rolled back, and it is tried again")]
pub struct ClaimGone;

impl<H: InboxHandler> Handler for InTransaction<H> {
    fn handle(&self, event: Arc<RunEvent>) -> BoxFuture<'static, Result<(), HandlerError>> {
        let (store, handler, keep_for) = (self.store.clone(), self.handler.clone(), self.keep_for);
        Box::pin(async move {
            let mut tx = store.pool().begin().await?;
            // An error rolls everything back at once (so that the retry does not wait on the
            // attempt's locks); a panic drops the transaction, rolled back as sqlx reuses its
            // connection.
            if let Err(err) = handler.handle(event.clone(), &mut tx).await {
                if let Err(rollback) = tx.rollback().await {
                    tracing::debug!(error = %rollback, "rolling back a failed attempt failed; the connection is dropped with it");
                }
                return Err(err);
            }
            match store
                .mark_done_in(&mut tx, &event.dedup_key, keep_for)
                .await?
            {
                DoneMark::Marked => tx.commit().await?,
                DoneMark::AlreadyDone => {
                    tracing::info!(key = %event.dedup_key, "the run was done by another worker meanwhile: its writes here are rolled back");
                    tx.rollback().await?;
                }
                DoneMark::NotClaimed => return Err(ClaimGone.into()),
            }
            Ok(())
        })
    }
}
