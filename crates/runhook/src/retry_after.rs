//! A handler error that tells the worker how long to wait before the next attempt (a
//! `Retry-After` the handler's own upstream answered).

use std::fmt;
use std::time::Duration;

use crate::handler::HandlerError;

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
/// use runhook::{payload::RunEvent, Handler, HandlerError, RetryAfter};
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
