//! # runhook-store
//!
//! Idempotency stores for webhook receivers: each run's work happens once although senders
//! retry (TinyFish: 4 attempts), get replayed by hand (Skyvern) or deliver twice after a
//! restart.
//!
//! Every dedup key moves through these states:
//!
//! ```text
//! absent --claim--> in flight (token, lease) --complete(token)--> done (kept for a window)
//!                      |  lease lapsed => claimable again (a crashed worker never blocks)
//!                      +--release(token)--> absent
//! ```
//!
//! * [`IdempotencyStore::claim`] is one atomic step: exactly one caller gets
//!   [`Claim::Acquired`] with a fresh random [`Token`]; the others learn that the key is
//!   [`Claim::InFlight`] or [`Claim::Done`], and whether the body they hold has the same
//!   [`Fingerprint`] as the first one.
//! * [`complete`](IdempotencyStore::complete), [`release`](IdempotencyStore::release) and
//!   [`renew`](IdempotencyStore::renew) are compare-and-set on the token: a worker whose lease
//!   lapsed gets [`StoreError::NotHolder`] and cannot clobber its successor.
//! * An in-flight record is never evicted to make room: a full store answers
//!   [`StoreError::Full`] (HTTP 503) instead of letting a second run start.
//!
//! Three backends: [`MemoryStore`] (embedded, sharded, bounded, least recently seen forgotten
//! first), `RedisStore` (feature `redis`; `SET NX PX` to claim, short Lua scripts for the rest)
//! and `PostgresStore` (feature `postgres`; one row per key, one statement per state change).
//!
//! ## Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use runhook_store::{Claim, Fingerprint, IdempotencyStore, MemoryStore};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store: Arc<dyn IdempotencyStore> = Arc::new(MemoryStore::new());
//! let body = br#"{"run_id":"wr_1","status":"completed"}"#;
//! let fp = Fingerprint::of(body);
//! let lease = Duration::from_secs(60);
//!
//! // The first delivery wins the claim and gets a token.
//! let Claim::Acquired(token) = store.claim("skyvern:wr_1", lease, fp).await? else {
//!     panic!("first claim must win");
//! };
//! // A retry arriving meanwhile sees the run in flight, with the same body.
//! assert_eq!(
//!     store.claim("skyvern:wr_1", lease, fp).await?.same_payload(),
//!     Some(true)
//! );
//! // The worker finishes: the key is remembered as done for a day.
//! store.complete("skyvern:wr_1", &token, Duration::from_secs(86_400)).await?;
//! assert!(matches!(
//!     store.claim("skyvern:wr_1", lease, fp).await?,
//!     Claim::Done { same_payload: true }
//! ));
//! // A token can act once: the record is no longer held by it.
//! assert!(store.release("skyvern:wr_1", &token).await.is_err());
//! # Ok::<(), runhook_store::StoreError>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod expect;
mod expect_memory;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis_expect;
#[cfg(feature = "redis")]
mod redis_store;
mod types;

use std::time::Duration;

pub use error::StoreError;
pub use expect::{Expectation, Expectations, Expected, Window, DEFAULT_MAX_EXPECTATIONS};
pub use memory::{MemoryStats, MemoryStore, MemoryStoreBuilder};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{
    BacklogCheck, Batcher, ClaimEnqueued, DoneMark, Migrations, NewJob, Pickup, PostgresStore,
    PostgresStoreBuilder, DEFAULT_SCHEMA,
};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_store::{ClaimAppended, RedisStore, RedisStoreBuilder, StreamAppend, StreamEntry};
/// The sqlx release the Postgres store is built on: hand [`PostgresStoreBuilder::with_pool`] a
/// pool of this version.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use sqlx;
pub use types::{Claim, Fingerprint, KeyState, ParseHexError, Token};

/// The longest key a store accepts unless configured otherwise, in bytes.
///
/// Keys come from delivery payloads (e.g. `skyvern:<run_id>`); bounding them bounds what a
/// sender can make the store hold. 512 leaves room for any provider prefix in front of the
/// longest run id the payload layer accepts (256 bytes), so that no genuine delivery the
/// payload layer took is refused here.
pub const DEFAULT_MAX_KEY_LEN: usize = 512;

/// The longest lease or done window a store accepts (about 30 years).
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// How long a run stays done (its later deliveries answered as duplicates) unless a receiver
/// says otherwise: 7 days, longer than any sender's retries and replays.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// An idempotency store: the state machine of the [crate docs](crate).
///
/// The trait is object-safe (`Arc<dyn IdempotencyStore>` works) and `Send + Sync`. Its async
/// methods are written with [`async_trait`], which returns boxed `Send` futures: native
/// `async fn` in traits cannot be called through `dyn`, and hand-written
/// `Pin<Box<dyn Future + Send + '_>>` signatures would cost the same single allocation per call
/// while being harder to read and implement. For [`MemoryStore`] that allocation is part of
/// the measured figures in the crate's benchmark.
///
/// Keys are compared byte for byte; they must be non-empty and no longer than the store's
/// maximum ([`DEFAULT_MAX_KEY_LEN`] unless configured). Durations must be between 1 ms and
/// [`MAX_DURATION`]; a backend with millisecond resolution rounds them up to whole
/// milliseconds.
#[async_trait::async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Tries to take the key for `lease`.
    ///
    /// Returns [`Claim::Acquired`] with a fresh token when the key was absent, its lease had
    /// lapsed, or its done window had passed; otherwise [`Claim::InFlight`] or [`Claim::Done`],
    /// each saying whether the stored fingerprint equals `fingerprint`.
    ///
    /// # Errors
    /// [`StoreError::Full`] when the store holds as many in-flight claims as it may,
    /// [`StoreError::Unavailable`] when the backend cannot answer, and the validation errors
    /// for a bad key or duration.
    async fn claim(
        &self,
        key: &str,
        lease: Duration,
        fingerprint: Fingerprint,
    ) -> Result<Claim, StoreError>;

    /// Marks the key done, to be remembered for `keep_for`, if `token` still holds it.
    ///
    /// # Errors
    /// [`StoreError::NotHolder`] when the token no longer holds the key (its lease lapsed and
    /// the key was claimed again, completed, released or forgotten); nothing is written then.
    /// [`StoreError::Unavailable`] when the backend cannot answer.
    async fn complete(
        &self,
        key: &str,
        token: &Token,
        keep_for: Duration,
    ) -> Result<(), StoreError>;

    /// Gives the key up (back to absent) if `token` still holds it, so that the next claim
    /// wins: the handler gave up, or the hand-off failed.
    ///
    /// # Errors
    /// [`StoreError::NotHolder`] when the token no longer holds the key; nothing is deleted
    /// then. [`StoreError::Unavailable`] when the backend cannot answer.
    async fn release(&self, key: &str, token: &Token) -> Result<(), StoreError>;

    /// Extends the lease to `lease` from now if `token` still holds the key (for long
    /// handlers; renew well before the lease lapses).
    ///
    /// # Errors
    /// [`StoreError::NotHolder`] when the token no longer holds the key.
    /// [`StoreError::Unavailable`] when the backend cannot answer.
    async fn renew(&self, key: &str, token: &Token, lease: Duration) -> Result<(), StoreError>;

    /// Where the key stands now, without claiming it (a reconciler asks before fetching a
    /// run from its platform).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the backend cannot answer, and the validation errors
    /// for a bad key.
    async fn state(&self, key: &str) -> Result<KeyState, StoreError>;

    /// Whether other processes share this store's records (Redis: `true`; memory: `false`).
    /// A receiver uses it to choose how to answer a duplicate of a run still in flight.
    fn is_shared(&self) -> bool {
        false
    }

    /// Whether the backend answers now (a readiness check). The default, for a store of
    /// this process, is always `Ok`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the backend does not answer in time.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The expected runs kept in this store's backend (see [`Expectations`]), if it keeps
    /// any. Both stores here do; a store of your own may not (reconciliation then cannot be
    /// configured with it).
    fn expectations(&self) -> Option<&dyn Expectations> {
        None
    }
}

/// Checks a key against the length bound.
pub(crate) fn check_key(key: &str, max_len: usize) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if key.len() > max_len {
        return Err(StoreError::KeyTooLong {
            len: key.len(),
            max: max_len,
        });
    }
    Ok(())
}

/// Checks a lease or done window: at least 1 ms, at most [`MAX_DURATION`].
pub(crate) fn check_duration(what: &'static str, d: Duration) -> Result<(), StoreError> {
    if d < Duration::from_millis(1) || d > MAX_DURATION {
        return Err(StoreError::InvalidDuration { what, duration: d });
    }
    Ok(())
}
