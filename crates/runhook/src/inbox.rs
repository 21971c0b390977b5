//! The transactional inbox (features `postgres` and `tower`): your handler's database writes
//! and the run's "done" mark commit in **one** PostgreSQL transaction, so the run's effect
//! happens exactly once whatever crashes, stalls or retries in between.
//!
//! [`InboxLayer`] goes in front of your handler like [`WebhookLayer`](crate::tower::WebhookLayer):
//! it authenticates, de-duplicates (the claim in the [`PostgresStore`]) and parses the delivery,
//! opens a transaction on the store's pool and hands it to your handler as an [`Inbox`] in the
//! request's extensions (an axum extractor with feature `axum`). Then, by your handler's
//! answer:
//!
//! * a 2xx: the run is marked done **in your transaction** and it commits: your writes and the
//!   mark together. A commit that fails is answered 503 + `Retry-After` (never your 2xx), and
//!   the sender's retry runs the handler again on a clean slate;
//! * anything else: the transaction rolls back and the claim is released, so the retry runs it;
//! * the process dies mid-handler: PostgreSQL rolls the transaction back; the claim lapses
//!   after its lease and the sender's retry runs the run again, once.
//!
//! A duplicate of a run already done is answered 200 without calling your handler; one of a
//! run in flight is asked to retry (503 + `Retry-After`), never kept waiting on a lock.
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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use runhook_store::sqlx::{PgConnection, Postgres, Transaction};
use runhook_store::{PostgresStore, StoreError};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tower_layer::Layer;
use tower_service::Service;

use crate::receiver::{
    BuildError, InlineReceiver, Outcome, ReceiverBuilder, Unavailable, VerifiedRun,
};
use crate::response::http_response;
use crate::tower::{read_request, request_path};

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
    /// behind the layer), its runs claimed in `store` and completed
    /// in the transaction each delivery gets on `store`'s pool. The builder's own store, if it
    /// was given one, is replaced: claim and completion must be in the same database.
    ///
    /// # Errors
    /// The builder's own configuration errors.
    pub fn new(builder: ReceiverBuilder, store: PostgresStore) -> Result<Self, BuildError> {
        let receiver = builder.store(Arc::new(store.clone())).build_inline()?;
        Ok(Self { receiver, store })
    }
}

impl<S> Layer<S> for InboxLayer {
    type Service = InboxService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InboxService {
            receiver: self.receiver.clone(),
            store: self.store.clone(),
            inner,
        }
    }
}

/// The service [`InboxLayer`] wraps around `S`.
#[derive(Clone)]
pub struct InboxService<S> {
    receiver: InlineReceiver,
    store: PostgresStore,
    inner: S,
}

type ServiceFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

impl<S, B, R> Service<Request<B>> for InboxService<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: http_body::Body<Data = Bytes> + From<Bytes> + Send + 'static,
    B::Error: Send,
    R: From<String> + Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = ServiceFuture<Response<R>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(run_in_transaction(
            self.receiver.clone(),
            self.store.clone(),
            inner,
            request,
        ))
    }
}

/// One delivery: read, claim, open the transaction, call `inner`, then commit the handler's
/// writes with the done mark, or roll everything back and release the claim.
async fn run_in_transaction<S, B, R>(
    receiver: InlineReceiver,
    store: PostgresStore,
    mut inner: S,
    request: Request<B>,
) -> Result<Response<R>, S::Error>
where
    S: Service<Request<B>, Response = Response<R>>,
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    R: From<String>,
{
    let (mut parts, body) = match read_request(receiver.pipeline(), request).await {
        Ok(read) => read,
        Err(outcome) => return Ok(http_response(&outcome)),
    };
    let path = request_path(&parts);
    let claimed = match receiver
        .claim_event(&parts.headers, &path, body.clone())
        .await
    {
        Ok(claimed) => claimed,
        Err(outcome) => return Ok(http_response(&outcome)),
    };
    let (run, claim) = claimed.into_verified_run();
    let transaction = match store.pool().begin().await {
        Ok(transaction) => transaction,
        Err(err) => {
            claim.release().await;
            return Ok(unavailable(format!("could not open a transaction: {err}")));
        }
    };
    let slot = Arc::new(Mutex::new(Some(transaction)));
    parts.extensions.insert(Inbox {
        run: run.clone(),
        slot: slot.clone(),
    });
    parts.extensions.insert(run);
    let answered = inner.call(Request::from_parts(parts, B::from(body))).await;
    let succeeded = matches!(&answered, Ok(response) if response.status().is_success());
    let transaction = slot.lock().await.take();
    let Some(mut transaction) = transaction.filter(|_| succeeded) else {
        // Dropped: rolled back. The sender's retry runs the handler again.
        claim.release().await;
        return answered;
    };
    let (key, token, keep_for) = claim.parts();
    let completed = store
        .complete_in(&mut transaction, key, token, keep_for)
        .await;
    let committed = match completed {
        Ok(()) => transaction.commit().await.map_err(|err| err.to_string()),
        Err(StoreError::NotHolder) => {
            Err("the run's lease lapsed and another delivery took it over".to_string())
        }
        Err(err) => Err(err.to_string()),
    };
    match committed {
        Ok(()) => {
            claim.completed_elsewhere();
            answered
        }
        Err(why) => {
            tracing::warn!(key = %key, reason = %why, "the handler's transaction did not commit; answering 503 so that the sender retries");
            // Only a claim still in flight is released: a commit whose reply was lost may
            // have marked it done, and that stays.
            claim.release().await;
            Ok(unavailable(why))
        }
    }
}

/// 503 + `Retry-After`: the run's transaction did not commit.
fn unavailable<R: From<String>>(why: String) -> Response<R> {
    let err = StoreError::Unavailable { reason: why };
    http_response(&Outcome::unavailable(
        Unavailable::Store(err),
        RETRY_AFTER_FAILED_COMMIT,
    ))
}

/// The run and its transaction, in the request's extensions for the handler behind an
/// [`InboxLayer`] (an axum extractor with feature `axum`).
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

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Inbox {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Inbox>().cloned().ok_or((
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "no inbox: this route is not behind an InboxLayer",
        ))
    }
}
