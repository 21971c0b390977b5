//! The inbox as middleware: the layer, the transaction each delivery gets, and the extractor
//! that hands it to your handler (served by [`super::tower`] and [`super::actix`]).

use std::sync::Arc;
use std::time::Duration;

use runhook_store::sqlx::{PgConnection, Postgres, Transaction};
use runhook_store::{PostgresStore, StoreError};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use bytes::Bytes;
use runhook_core::HeaderLookup;
use runhook_store::Fingerprint;

use crate::receiver::{
    BuildError, HandlerAnswer, InlineReceiver, Outcome, ReceiverBuilder, Unavailable, VerifiedRun,
};

/// How long a sender is asked to wait after the database failed the transaction.
const RETRY_AFTER_FAILED_COMMIT: Duration = Duration::from_secs(5);

/// The transactional inbox in front of your handler (see the [module docs](super)).
#[derive(Clone)]
pub struct InboxLayer {
    pub(super) receiver: InlineReceiver,
    pub(super) store: PostgresStore,
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
pub(super) struct Opened {
    slot: Arc<Mutex<Option<Transaction<'static, Postgres>>>>,
    receiver: InlineReceiver,
}

/// Authenticates and parses the delivery, opens its transaction and claims the run in it (as
/// done, if the transaction commits): what goes in the request's extensions (the [`Inbox`]
/// and the [`VerifiedRun`]) and what settles it; or the answer, when the handler is not to
/// run (rejected, a duplicate, the database unavailable).
pub(super) async fn open(
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
    pub(super) async fn settle(self, answer: HandlerAnswer) -> Result<(), Outcome> {
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
