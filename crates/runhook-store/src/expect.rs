//! Expectations: runs a receiver was told were started, so that a run whose webhook never
//! comes is fetched from its platform and processed anyway.
//!
//! They live in the idempotency store's own backend ([`IdempotencyStore::expectations`]):
//! in this process for a [`MemoryStore`](crate::MemoryStore), in Redis for a `RedisStore`,
//! where every instance sharing it sees them. A reconciler takes the due ones with
//! [`Expectations::take_due`], which hides each from other takers for a while (so that two
//! instances do not both check it), then forgets, re-schedules or gives up on each.
//!
//! [`IdempotencyStore::expectations`]: crate::IdempotencyStore::expectations

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::StoreError;

/// The most expectations a store holds per scope unless configured otherwise.
pub const DEFAULT_MAX_EXPECTATIONS: usize = 100_000;

/// One expected run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The run's de-duplication key (`skyvern:<run_id>`), the same as its webhook's.
    pub dedup_key: String,
    /// The platform's run id.
    pub run_id: String,
    /// When it was registered (millisecond resolution).
    pub registered_at: SystemTime,
    /// How long its webhook may take before the run is fetched.
    pub window: Window,
    /// How many times the run has been fetched so far.
    pub checks: u32,
}

/// How long an expected run's webhook may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// This long after registration.
    Within(Duration),
    /// The reconciling route's own window (`reconcile_after`), for expectations registered
    /// by a tool that does not know it.
    RouteDefault,
}

/// What [`Expectations::expect`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// The run is now expected.
    Recorded,
    /// It already was: the first registration stands.
    AlreadyExpected,
}

impl Expectation {
    /// A new expectation of `run_id` under `dedup_key`, registered now.
    pub fn new(dedup_key: impl Into<String>, run_id: impl Into<String>, window: Window) -> Self {
        Self {
            dedup_key: dedup_key.into(),
            run_id: run_id.into(),
            registered_at: SystemTime::now(),
            window,
            checks: 0,
        }
    }

    /// When it is first due: registration plus the window (at registration for
    /// [`Window::RouteDefault`]: the reconciler then sets the route's own).
    pub fn first_due(&self) -> SystemTime {
        match self.window {
            Window::Within(within) => self.registered_at + within,
            Window::RouteDefault => self.registered_at,
        }
    }

    /// The stored form: `<registered ms>|<window ms or ->|<checks>|<run id>` (the Redis
    /// store's).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn encode(&self) -> String {
        let window = match self.window {
            Window::Within(within) => within.as_millis().to_string(),
            Window::RouteDefault => "-".into(),
        };
        format!(
            "{}|{window}|{}|{}",
            unix_ms(self.registered_at),
            self.checks,
            self.run_id
        )
    }

    /// Reads [`Expectation::encode`]'s form back; `None` when it is not one.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn decode(dedup_key: &str, stored: &str) -> Option<Self> {
        let mut parts = stored.splitn(4, '|');
        let registered: u64 = parts.next()?.parse().ok()?;
        let window = match parts.next()? {
            "-" => Window::RouteDefault,
            ms => Window::Within(Duration::from_millis(ms.parse().ok()?)),
        };
        let checks = parts.next()?.parse().ok()?;
        let run_id = parts.next()?.to_string();
        Some(Self {
            dedup_key: dedup_key.to_string(),
            run_id,
            registered_at: UNIX_EPOCH + Duration::from_millis(registered),
            window,
            checks,
        })
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where expectations are kept: runs a receiver was told were started, so that a run whose
/// webhook never comes is fetched from its platform and processed anyway. They live in the
/// idempotency store's own backend ([`IdempotencyStore::expectations`](crate::IdempotencyStore::expectations)): in this process for a
/// [`MemoryStore`](crate::MemoryStore), in Redis for a `RedisStore`, where every instance
/// sharing it sees them. A reconciler takes the due ones with [`Expectations::take_due`], which
/// hides each from other takers for a while (so that two instances do not both check it), then
/// forgets, re-schedules or gives up on each. A `scope` separates the expectations of different
/// platforms (`skyvern`, `tinyfish`): a reconciler takes only its own.
#[async_trait::async_trait]
pub trait Expectations: Send + Sync {
    /// Records `expectation` in `scope`, due at [`Expectation::first_due`]. Registering a
    /// run twice keeps the first record.
    ///
    /// # Errors
    /// [`StoreError::Full`] when the scope holds as many expectations as it may;
    /// [`StoreError::Unavailable`] when the backend cannot answer.
    async fn expect(&self, scope: &str, expectation: &Expectation) -> Result<Expected, StoreError>;

    /// Up to `limit` expectations of `scope` due by `now`, each hidden from other takers
    /// until `now + hold` (if the taker dies, another takes it then). The taker must
    /// [`forget`](Expectations::forget) or [`reschedule`](Expectations::reschedule) each.
    async fn take_due(
        &self,
        scope: &str,
        now: SystemTime,
        hold: Duration,
        limit: usize,
    ) -> Result<Vec<Expectation>, StoreError>;

    /// Stores `expectation` (its `checks` updated by the caller) and makes it due at
    /// `next_check`, unless it was forgotten meanwhile.
    async fn reschedule(
        &self,
        scope: &str,
        expectation: &Expectation,
        next_check: SystemTime,
    ) -> Result<(), StoreError>;

    /// Forgets the expectation of `dedup_key` (absent: nothing to do).
    async fn forget(&self, scope: &str, dedup_key: &str) -> Result<(), StoreError>;

    /// How many expectations `scope` holds.
    async fn waiting(&self, scope: &str) -> Result<usize, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_reads_back_whatever_the_run_id_holds() {
        let mut expectation = Expectation::new(
            "skyvern:wr_1|x",
            "wr_1|x",
            Window::Within(Duration::from_secs(90)),
        );
        expectation.registered_at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        expectation.checks = 3;
        let stored = expectation.encode();
        assert_eq!(
            Expectation::decode("skyvern:wr_1|x", &stored),
            Some(expectation.clone())
        );
        expectation.window = Window::RouteDefault;
        assert_eq!(
            Expectation::decode("skyvern:wr_1|x", &expectation.encode()),
            Some(expectation)
        );
        assert_eq!(Expectation::decode("k", "garbage"), None);
        assert_eq!(Expectation::decode("k", "1|x|0|r"), None);
    }
}
