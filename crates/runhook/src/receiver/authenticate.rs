//! The first stage of a delivery: choosing the scheme that checks it, and checking its raw
//! bytes (the exact check inline; a fallback, such as Skyvern's canonical form, off the async
//! workers).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
#[cfg(feature = "tower")]
use runhook_core::BeforeBody;
use runhook_core::{AuthError, Delivery, HeaderLookup, Verified, Verifier};

use super::outcome::{Outcome, OutcomeKind, Unavailable};
use super::pipeline::{Auth, Pipeline};
use crate::stats::Counters;

impl Pipeline {
    /// Authenticates the delivery on its bytes exactly as received: what proved it genuine,
    /// or the answer (401, or 503 when the keys cannot be looked up).
    pub(super) async fn authenticate(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: &Bytes,
    ) -> Result<Verified, Outcome> {
        let verifier = self.verifier_for(path, body).await?;
        let exact = verifier.verify_exact(&Delivery::new(headers, body).with_path(path));
        let verified = match exact {
            Err(exact) if verifier.has_fallback() => {
                let Some(slot) = FallbackSlot::take() else {
                    tracing::debug!(provider = %self.provider, "every canonical-fallback slot is busy; answering 503");
                    let wait = self.outage_pause.at_least(Duration::from_secs(1));
                    return Err(Outcome::unavailable(Unavailable::FallbackBusy, wait));
                };
                let verified = verify_blocking(verifier, headers, path, body, exact).await;
                drop(slot);
                verified
            }
            verified => verified,
        };
        let verified = verified.map_err(|err| {
            // Anyone can send these: one line per period, the counters have each one.
            match self.rejected_log.tick() {
                Some(rejected) => tracing::info!(provider = %self.provider, reason = %err, rejected, "rejected deliveries not genuine (this one's reason; one line per 10 s at most)"),
                None => tracing::debug!(provider = %self.provider, reason = %err, "rejected a delivery"),
            }
            unauthorized(err)
        })?;
        if verified.signed_body().is_some() {
            Counters::bump(&self.counters.canonical_fallback_matches);
            tracing::info!(provider = %self.provider, "signature matched the body's canonical form only: it was re-serialized on its way");
        }
        Ok(verified)
    }

    /// What the route's scheme can decide from `headers` and `path` alone, before the body is
    /// read ([`Verifier::verify_before_body`]); a key resolver needs the body.
    #[cfg(feature = "tower")]
    pub(crate) fn authenticate_before_body(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
    ) -> BeforeBody {
        match &self.auth {
            Auth::Fixed(verifier) => {
                verifier.verify_before_body(&Delivery::new(headers, b"").with_path(path))
            }
            Auth::Resolved(_) => BeforeBody::NeedsBody,
        }
    }

    /// The answer to a delivery refused before its body was read, counted and logged as a
    /// refusal after it would be.
    #[cfg(feature = "tower")]
    pub(crate) fn refused_before_body(&self, err: AuthError) -> Outcome {
        tracing::info!(provider = %self.provider, reason = %err, "rejected a delivery before reading its body");
        let outcome = unauthorized(err);
        Counters::bump(&self.counters.received);
        self.count(&outcome);
        outcome
    }

    /// The route's scheme, or the one its key resolver picks for this delivery.
    async fn verifier_for(&self, path: &str, body: &[u8]) -> Result<Arc<dyn Verifier>, Outcome> {
        let resolver = match &self.auth {
            Auth::Fixed(verifier) => return Ok(verifier.clone()),
            Auth::Resolved(resolver) => resolver,
        };
        match resolver.resolve(path, body).await {
            Ok(Some(verifier)) => Ok(verifier),
            Ok(None) => Err(unauthorized(AuthError::NoSchemeMatched(Vec::new()))),
            Err(err) => {
                tracing::error!(error = %err, "key resolver failed");
                Err(Outcome::unavailable(
                    Unavailable::KeyResolver(err),
                    Duration::from_secs(1),
                ))
            }
        }
    }
}

/// The answer for a delivery that is not genuine.
fn unauthorized(err: AuthError) -> Outcome {
    Outcome::new(err.status(), OutcomeKind::Unauthorized(err))
}

/// `verifier`'s whole check, fallback included, on tokio's blocking pool: the fallback may
/// canonicalize the whole body. `exact` is the inline check's error, answered if the task
/// cannot run.
async fn verify_blocking(
    verifier: Arc<dyn Verifier>,
    headers: &(dyn HeaderLookup + Sync),
    path: &str,
    body: &Bytes,
    exact: AuthError,
) -> Result<Verified, AuthError> {
    let mut owned: Vec<(String, Vec<u8>)> = Vec::new();
    headers.visit_all(&mut |name, value| owned.push((name.to_string(), value.to_vec())));
    let (path, body) = (path.to_string(), body.clone());
    let check = tokio::task::spawn_blocking(move || {
        verifier.verify(&Delivery::new(&owned, &body).with_path(&path))
    });
    check.await.unwrap_or(Err(exact))
}

/// A place among the fallback checks that may run at once in this process: as many as the
/// machine has cores. Each check may canonicalize a whole body (a few ms of CPU and a key table
/// per object for a 2 MiB body), and bodies whose exact check failed are mostly forged, so
/// past this bound a delivery is asked to come back (503) instead of queueing CPU work or
/// blocking threads without limit.
struct FallbackSlot;

/// The fallback checks running now, in this process.
static FALLBACKS_RUNNING: AtomicUsize = AtomicUsize::new(0);

impl FallbackSlot {
    /// A slot, or `None` when every one is taken.
    fn take() -> Option<Self> {
        static SLOTS: OnceLock<usize> = OnceLock::new();
        let slots =
            *SLOTS.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let taken = FALLBACKS_RUNNING.fetch_add(1, Ordering::AcqRel);
        if taken < slots {
            Some(Self)
        } else {
            FALLBACKS_RUNNING.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }
}

impl Drop for FallbackSlot {
    fn drop(&mut self) {
        FALLBACKS_RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}
