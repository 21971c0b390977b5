//! Never miss a run: confirm deliveries with the platform's run API, and reconcile the runs
//! whose webhook never came.
//!
//! Every platform's documentation asks receivers to fall back on its run API: SmartBrowse
//! makes one attempt and asks to treat the webhook as a hint; Skyvern asks for a polling
//! fallback; TinyFish asks to confirm a webhook's data before acting on it. Two features of a
//! background [`Receiver`](crate::Receiver) do it, both given a [`RunSource`] (a
//! [`RunApiClient`] with feature `runs`):
//!
//! * **Confirm** ([`ReceiverBuilder::confirm`](crate::ReceiverBuilder::confirm)): before the
//!   handler runs, the worker fetches the run and hands the handler the fetched run, not the
//!   POSTed body ([`Confirmation::Confirmed`](crate::payload::Confirmation)). A run the API
//!   does not know is never processed: it is dead-lettered `not_confirmed`. A run not finished
//!   yet is tried again with the handler's backoff; one whose retry is pending (Skyvern's
//!   `retry_pending: true`, even with a terminal `status`) not before its `next_attempt_at`.
//!   An interim event (an attempt's report) is confirmed by the API's answer for that attempt;
//!   once the run has moved on, the API shows that attempt no more and the delivered interim
//!   event is handed on as it came (unconfirmed). Unsigned TinyFish and SmartBrowse routes
//!   get real authenticity this way.
//! * **Expect and reconcile** ([`ReceiverBuilder::reconcile`](crate::ReceiverBuilder::reconcile),
//!   [`Receiver::expect`](crate::Receiver::expect)): an expected run whose webhook has not been
//!   processed by its deadline is fetched by a background reconciler; once finished it goes
//!   through the same claim, hand-off and handler as a webhook
//!   ([`EventSource::Reconciled`](crate::payload::EventSource)), so that a webhook and a
//!   reconciliation racing for one run are processed once. A run not finished is fetched
//!   again with backoff up to a horizon, then dead-lettered `never_completed`. Expectations
//!   live in the idempotency store's backend ([`Expectations`](crate::store::Expectations)):
//!   with Redis, any instance reconciles, none twice at once.
//!
//! WebRun documents no run API: neither feature exists for it.

use std::time::Duration;

use runhook_core::payload::{Provider, RunEvent};
use runhook_store::{Expectation, Expected, IdempotencyStore, StoreError, Window};

use crate::handler::BoxFuture;

#[cfg(feature = "runs")]
mod client;
#[cfg(feature = "runs")]
mod list;
mod reconcile;
mod sweep;

#[cfg(feature = "runs")]
#[cfg_attr(docsrs, doc(cfg(feature = "runs")))]
pub use client::{RunApiClient, RunApiClientBuilder, RunApiClientError, DEFAULT_MAX_IN_FLIGHT};
pub use reconcile::ReconcilePolicy;
pub(crate) use reconcile::{Reconciler, Submit, Submitted};
pub(crate) use sweep::Sweeper;
pub use sweep::{Listed, ListedPage, RunLister, SweepPolicy};

/// What a run API said about one run.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// It is finished: the run, in its webhook's shape.
    Terminal(Box<RunEvent>),
    /// It is not finished yet.
    Pending {
        /// Its status as the API spells it.
        status: String,
    },
    /// An attempt ended and the platform will run it again (Skyvern's `retry_pending: true`):
    /// not finished. The event is that attempt's interim event; its
    /// [`RunPhase::retry_not_before`](crate::payload::RunPhase::retry_not_before) says when
    /// to look again (confirm and reconcile wait at least until then).
    RetryPending(Box<RunEvent>),
    /// The API does not know it (404).
    Unknown,
}

/// Why a run could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No answer: connection refused, reset, TLS failure, timeout (the reason, never the URL).
    #[error("the run API did not answer: {0}")]
    Network(String),
    /// An answer that is neither the run nor 404, after the retries.
    #[error("the run API answered HTTP {status}")]
    Status {
        /// The status code.
        status: u16,
        /// The answer's `Retry-After`, if it gave one.
        retry_after: Option<Duration>,
    },
    /// The API key was refused (401 or 403): a configuration problem, not retried.
    #[error("the run API refused the API key (HTTP {0})")]
    Unauthorized(u16),
    /// The answer was larger than the client accepts.
    #[error("the run API's answer is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The answer is not a usable run.
    #[error(transparent)]
    Answer(#[from] runhook_core::payload::RunApiError),
}

/// Fetches one run from its platform; [`RunApiClient`] is the real one. Object-safe, so that
/// a receiver holds an `Arc<dyn RunSource>`.
pub trait RunSource: Send + Sync + 'static {
    /// Fetches run `run_id`.
    fn fetch<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Fetched, FetchError>>;
}

/// Records in `store` that `provider`'s run `run_id` was started (its dedup key is the one its
/// webhook will have), for whichever receiver reconciles `provider` on that store. A receiver
/// calls it with [`Receiver::expect`](crate::Receiver::expect); `runhook expect` with a Redis
/// store shared by `serve` instances.
///
/// # Errors
/// [`StoreError::InvalidConfig`] when the store keeps no expectations; an empty run id is
/// [`StoreError::EmptyKey`]; and the store's own errors.
pub async fn expect(
    store: &dyn IdempotencyStore,
    provider: Provider,
    run_id: &str,
    window: Window,
) -> Result<Expected, StoreError> {
    let expectations = store.expectations().ok_or(StoreError::InvalidConfig {
        reason: "this idempotency store keeps no expectations".into(),
    })?;
    if run_id.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    let key = provider.dedup_key(run_id);
    expectations
        .expect(provider.as_str(), &Expectation::new(key, run_id, window))
        .await
}
