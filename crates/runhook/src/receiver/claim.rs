//! A run claimed for the caller (the inline styles): the claim that keeps duplicates away
//! until it is completed or released.

use std::sync::Arc;
use std::time::Duration;

use runhook_core::payload::RunEvent;
use runhook_core::Verified;
use runhook_store::{IdempotencyStore, StoreError, Token};

use crate::stats::Counters;

/// What the middleware forms ([`tower::WebhookLayer`](crate::tower), `actix::WebhookLayer`)
/// learned about a delivery, in the request's extensions for the service behind them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedRun {
    /// The run, parsed in full ([`RunEvent::payload`] is ready); its `dedup_key` is the
    /// claim's key.
    pub event: Arc<RunEvent>,
    /// What authenticated it: the scheme, which secret matched, the timestamp check.
    pub verified: Verified,
}

/// A genuine, new run handed to the caller (extractor style), with the claim that keeps
/// duplicates away while the caller works. Call [`ClaimedEvent::complete`] when the work is
/// done, or [`ClaimedEvent::release`] to give it up before answering an error. Dropping it
/// without either also releases the claim, but in a background task a moment later: a retry
/// arriving at once may still find the run in flight (and be told to retry later).
#[derive(Debug)]
pub struct ClaimedEvent {
    /// The parsed run.
    pub event: RunEvent,
    /// What authenticated it: the scheme, which secret matched, the timestamp check.
    pub verified: Verified,
    pub(super) claim: ClaimGuard,
}

impl ClaimedEvent {
    /// Marks the run done: later deliveries of it are answered as duplicates.
    pub async fn complete(self) -> Result<(), StoreError> {
        self.claim.complete().await
    }

    /// Gives the run up: the next delivery of it is processed again.
    pub async fn release(self) {
        self.claim.release().await;
    }

    /// What the middleware adapters put in the request's extensions, and the claim they
    /// settle by the inner service's answer.
    #[cfg(any(feature = "tower", feature = "actix"))]
    pub(crate) fn into_verified_run(self) -> (VerifiedRun, ClaimGuard) {
        let run = VerifiedRun {
            event: Arc::new(self.event),
            verified: self.verified,
        };
        (run, self.claim)
    }
}

/// Holds a claim until it is completed or released; dropped unsettled, it is released in a
/// background task.
pub(crate) struct ClaimGuard {
    pub(super) store: Arc<dyn IdempotencyStore>,
    pub(super) key: String,
    pub(super) token: Token,
    pub(super) keep_for: Duration,
    pub(super) counters: Arc<Counters>,
    pub(super) settled: bool,
}

impl std::fmt::Debug for ClaimGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimGuard")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ClaimGuard {
    pub(crate) async fn complete(mut self) -> Result<(), StoreError> {
        self.settled = true;
        self.store
            .complete(&self.key, &self.token, self.keep_for)
            .await?;
        Counters::bump(&self.counters.processed);
        Ok(())
    }

    /// Settles the claim by how the caller's own handler answered (the middleware forms):
    /// completed after a success, released otherwise so that the sender's retry runs it again.
    #[cfg(any(feature = "tower", feature = "actix"))]
    pub(crate) async fn settle(self, answer: HandlerAnswer) {
        match answer {
            HandlerAnswer::Success => {
                if let Err(err) = self.complete().await {
                    // Processed, but not recorded: a retry after the lease may run it again.
                    tracing::warn!(error = %err, "could not record a processed run as done");
                }
            }
            HandlerAnswer::Failure => self.release().await,
        }
    }

    pub(crate) async fn release(mut self) {
        self.settled = true;
        if let Err(err) = self.store.release(&self.key, &self.token).await {
            tracing::warn!(key = %self.key, error = %err, "could not release a claim");
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (store, key, token) = (
            self.store.clone(),
            std::mem::take(&mut self.key),
            self.token,
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = store.release(&key, &token).await {
                    tracing::warn!(%key, error = %err, "could not release an abandoned claim");
                }
            });
        }
    }
}

/// How the handler behind a middleware answered.
#[cfg(any(feature = "tower", feature = "actix"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandlerAnswer {
    /// A 2xx.
    Success,
    /// Any other status, or an error.
    Failure,
}

#[cfg(any(feature = "tower", feature = "actix"))]
impl HandlerAnswer {
    /// The answer a response with the status code `status` gives (a number: actix-web and
    /// axum use different `http` versions).
    pub(crate) fn of(status: u16) -> Self {
        if (200..300).contains(&status) {
            Self::Success
        } else {
            Self::Failure
        }
    }
}
