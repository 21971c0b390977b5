//! The user's code that processes a finished run, called in the background after the ack.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use runhook_core::payload::RunEvent;

/// A boxed, sendable future, as handlers return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a handler attempt failed: any error, kept for the logs and the dead letter.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Processes one run. Called at most once per successful attempt; a failed attempt (an error,
/// a panic or a time-out) is retried with backoff by the dispatcher, then dead-lettered.
///
/// Any `Fn(Arc<RunEvent>) -> impl Future<Output = Result<(), E>>` is a handler:
///
/// ```
/// use std::sync::Arc;
/// use runhook::{Handler, payload::RunEvent};
///
/// fn assert_handler<H: Handler>(_: H) {}
/// assert_handler(|event: Arc<RunEvent>| async move {
///     println!("{} finished: {}", event.dedup_key, event.status);
///     Ok::<(), std::io::Error>(())
/// });
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Processes `event`; `Err` asks for a retry.
    fn handle(&self, event: Arc<RunEvent>) -> BoxFuture<'static, Result<(), HandlerError>>;
}

impl<F, Fut, E> Handler for F
where
    F: Fn(Arc<RunEvent>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<HandlerError>,
{
    fn handle(&self, event: Arc<RunEvent>) -> BoxFuture<'static, Result<(), HandlerError>> {
        let fut = self(event);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}
