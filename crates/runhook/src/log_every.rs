//! A log line that anyone on the internet can trigger (a forged delivery, a stalled body) is
//! written at most once per period, with the count of occurrences since the last line: the
//! counters carry the exact numbers, the log only says that it is happening.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The shortest time between two lines of one [`LogEvery`] by default.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

/// Rate limit of one kind of log line.
pub(crate) struct LogEvery {
    period: Duration,
    /// Occurrences not logged yet.
    unlogged: AtomicU64,
    logged_at: Mutex<Option<Instant>>,
}

impl Default for LogEvery {
    fn default() -> Self {
        Self {
            period: LOG_EVERY,
            unlogged: AtomicU64::new(0),
            logged_at: Mutex::new(None),
        }
    }
}

impl LogEvery {
    /// Notes one occurrence: `Some(n)` when it is time to log, `n` occurrences since the last
    /// line (this one included); `None` otherwise.
    pub(crate) fn tick(&self) -> Option<u64> {
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut logged_at = self.logged_at.lock().unwrap_or_else(|p| p.into_inner());
        if logged_at.is_some_and(|at| now.duration_since(at) < self.period) {
            return None;
        }
        *logged_at = Some(now);
        Some(self.unlogged.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_period_with_the_count_since_the_last() {
        let every = LogEvery::default();
        assert_eq!(every.tick(), Some(1));
        for _ in 0..999 {
            assert_eq!(every.tick(), None);
        }
        tokio::time::advance(LOG_EVERY).await;
        assert_eq!(every.tick(), Some(1000));
        assert_eq!(every.tick(), None);
    }
}
