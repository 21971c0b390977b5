//! The demo's stand-in for a store outage: a memory store that is unreachable for the first
//! claim of one provider's runs, so that `runhook demo` can show a receiver answering 503 and
//! the platform's retry schedule delivering the run again. A fault injected on purpose, kept
//! out of the command code; nothing but the demo uses it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use runhook::payload::Provider;
use runhook::store::{
    Claim, Expectations, Fingerprint, IdempotencyStore, KeyState, MemoryStore, StoreError, Token,
};

/// A [`MemoryStore`] whose first claim of one provider's runs fails as
/// [`StoreError::Unavailable`]; every other call, that claim's retry included, goes to the
/// memory store.
pub struct OutageOnce {
    inner: MemoryStore,
    /// The de-duplication key prefix of the provider's runs (`tinyfish:`).
    prefix: String,
    /// Whether the outage has happened.
    tripped: AtomicBool,
}

impl OutageOnce {
    /// A store down for the first claim of a `provider` run.
    pub fn for_provider(provider: Provider) -> Self {
        Self {
            inner: MemoryStore::new(),
            prefix: format!("{provider}:"),
            tripped: AtomicBool::new(false),
        }
    }
}

/// What every store call answers.
type Answer<T> = Result<T, StoreError>;

#[async_trait]
impl IdempotencyStore for OutageOnce {
    async fn claim(&self, key: &str, lease: Duration, fingerprint: Fingerprint) -> Answer<Claim> {
        if key.starts_with(&self.prefix) && !self.tripped.swap(true, Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                reason: "demo: the store is briefly unreachable".into(),
            });
        }
        self.inner.claim(key, lease, fingerprint).await
    }

    async fn complete(&self, key: &str, token: &Token, keep_for: Duration) -> Answer<()> {
        self.inner.complete(key, token, keep_for).await
    }

    async fn release(&self, key: &str, token: &Token) -> Answer<()> {
        self.inner.release(key, token).await
    }

    async fn renew(&self, key: &str, token: &Token, lease: Duration) -> Answer<()> {
        self.inner.renew(key, token, lease).await
    }

    async fn state(&self, key: &str) -> Answer<KeyState> {
        self.inner.state(key).await
    }

    fn expectations(&self) -> Option<&dyn Expectations> {
        self.inner.expectations()
    }
}
