//! How failed handler attempts are retried: the policy ([`RetryPolicy`]), and the handler
//! error that asks for a longer pause before the next attempt ([`RetryAfter`], a
//! `Retry-After` the handler's own upstream answered).

use std::fmt;
use std::time::Duration;

use rand::RngExt as _;

use crate::handler::HandlerError;

/// How failed handler attempts are retried.
///
/// A handler may ask for a longer pause before its next attempt by failing with a
/// [`RetryAfter`]: the worker then waits the longer of
/// [`RetryPolicy::backoff`] and the hint, with the claim held. Attempts still count toward
/// `max_attempts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, including the first (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub initial_backoff: Duration,
    /// The longest delay between attempts.
    pub max_backoff: Duration,
    /// How long one attempt may run before it counts as failed.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 1 s doubling to at most 60 s, with 5 minutes per attempt.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt number `attempt` (1-based): exponential, capped, with
    /// jitter (a random point in the upper half) so that retries of many runs spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let half = full / 2;
        half + full
            .saturating_sub(half)
            .mul_f64(rand::rng().random::<f64>())
    }
}

/// A failed attempt that asks for the next one no sooner than [`RetryAfter::after`].
///
/// Return it (boxed, as any [`HandlerError`]) from a handler whose upstream said when to come
/// back, such as a `429` or `503` with `Retry-After`. The background worker finds it by
/// downcasting the attempt's error and then waits the longer of its own backoff and this
/// hint, keeping the run's claim held meanwhile exactly as it does for its normal backoff.
/// The attempt still counts: after the last one the run is dead-lettered like any other
/// failure, and the dead letter keeps the error's message.
///
/// The worker takes the hint as given: cap it in the handler (an upstream may ask for hours).
/// Only the error the handler returns is looked at, not the errors in its `source()` chain.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use runhook::{payload::RunEvent, Handler, HandlerError};
/// use runhook::retry::RetryAfter;
///
/// async fn call_upstream(_event: &RunEvent) -> Result<(), HandlerError> {
///     // The upstream answered 429 with `Retry-After: 2`.
///     Err(RetryAfter::new(Duration::from_secs(2), "upstream answered 429").into())
/// }
///
/// fn assert_handler<H: Handler>(_: H) {}
/// assert_handler(|event: Arc<RunEvent>| async move { call_upstream(&event).await });
///
/// let error: HandlerError = RetryAfter::new(Duration::from_secs(2), "busy").into();
/// let hint = error.downcast_ref::<RetryAfter>().map(RetryAfter::after);
/// assert_eq!(hint, Some(Duration::from_secs(2)));
/// assert_eq!(error.to_string(), "busy (retry after 2s)");
/// ```
#[derive(Debug)]
pub struct RetryAfter {
    after: Duration,
    error: HandlerError,
}

impl RetryAfter {
    /// A failure described by `error`, whose next attempt should wait at least `after`.
    pub fn new(after: Duration, error: impl Into<HandlerError>) -> Self {
        Self {
            after,
            error: error.into(),
        }
    }

    /// How long the next attempt should wait, at least.
    pub fn after(&self) -> Duration {
        self.after
    }

    /// The failure itself.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }

    /// How long the next attempt should wait if `error` is a [`RetryAfter`].
    pub fn hint_of(error: &HandlerError) -> Option<Duration> {
        error.downcast_ref::<RetryAfter>().map(RetryAfter::after)
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (retry after {})",
            self.error,
            humantime::format_duration(self.after)
        )
    }
}

impl std::error::Error for RetryAfter {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.error)
    }
}
