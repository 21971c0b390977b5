//! The optional limits toward the forward target, shared by every worker of every route: at
//! most N requests at once (tokio's fair `Semaphore`), and requests spaced evenly at a rate.
//!
//! The rate is a small reservation scheduler rather than a token-bucket crate: each request
//! books the next free slot (`interval` after the previous one) under a lock and sleeps until
//! it. That keeps waiters first come, first served, so a run's wait for its turn is bounded by
//! the workers ahead of it (a bucket polled by many waiters can pass over one of them again
//! and again), and that bound is what the attempt timeout is sized from (see `settings.rs`).
//! It allows no burst: a rate of 5/s lets one request through every 200 ms.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The limits one forward handler applies.
#[derive(Debug, Default)]
pub struct Limits {
    concurrency: Option<Arc<Semaphore>>,
    spacing: Option<Spacing>,
}

/// Held while a request is in flight: frees its concurrency slot when dropped.
#[derive(Debug)]
pub struct Permit {
    _slot: Option<OwnedSemaphorePermit>,
}

impl Limits {
    /// At most `concurrency` requests at once, one every `interval` (each optional).
    pub fn new(concurrency: Option<NonZeroUsize>, interval: Option<Duration>) -> Self {
        Self {
            concurrency: concurrency.map(|n| Arc::new(Semaphore::new(n.get()))),
            spacing: interval.map(Spacing::new),
        }
    }

    /// Waits for a concurrency slot, then for the next rate slot (so that requests leave
    /// spaced even after waiting for a slot), and returns the permit to hold while sending.
    pub async fn acquire(&self) -> Permit {
        let slot = match &self.concurrency {
            // The semaphore is never closed: an error cannot happen; without it, go on.
            Some(semaphore) => semaphore.clone().acquire_owned().await.ok(),
            None => None,
        };
        if let Some(spacing) = &self.spacing {
            spacing.wait_turn().await;
        }
        Permit { _slot: slot }
    }
}

/// One request every `interval`, in the order they asked.
#[derive(Debug)]
struct Spacing {
    interval: Duration,
    next_free: Mutex<Option<Instant>>,
}

impl Spacing {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            next_free: Mutex::new(None),
        }
    }

    async fn wait_turn(&self) {
        let turn = {
            let mut next_free = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let turn = next_free.map_or(now, |free| free.max(now));
            *next_free = Some(turn.checked_add(self.interval).unwrap_or(turn));
            turn
        };
        tokio::time::sleep_until(turn).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn turns_are_spaced_and_first_come_first_served() {
        let limits = Arc::new(Limits::new(None, Some(Duration::from_millis(200))));
        let start = Instant::now();
        let mut waiters = Vec::new();
        for i in 0..5u32 {
            let limits = limits.clone();
            waiters.push(tokio::spawn(async move {
                let _permit = limits.acquire().await;
                (i, start.elapsed())
            }));
            tokio::task::yield_now().await;
        }
        for (n, waiter) in waiters.into_iter().enumerate() {
            let (i, at) = waiter.await.unwrap();
            assert_eq!(i as usize, n);
            assert_eq!(at, Duration::from_millis(200) * i, "request {i}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_concurrency_at_once() {
        let limits = Arc::new(Limits::new(NonZeroUsize::new(2), None));
        let a = limits.acquire().await;
        let _b = limits.acquire().await;
        let third = tokio::spawn({
            let limits = limits.clone();
            async move {
                let _c = limits.acquire().await;
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !third.is_finished(),
            "a third request went out with two in flight"
        );
        drop(a);
        tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .unwrap()
            .unwrap();
    }
}
