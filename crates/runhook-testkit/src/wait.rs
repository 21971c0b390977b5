//! Waiting for a condition with a deadline: polled, never a bare sleep, failing the test with
//! what it waited for.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How often a wait checks its condition.
pub const POLL: Duration = Duration::from_millis(20);

/// Waits until `done()` holds, checking every [`POLL`]; panics naming `what` after `limit`
/// (`what` is formatted only then, so it may read state such as a process's logs).
pub async fn wait_until(limit: Duration, what: impl Display, mut done: impl FnMut() -> bool) {
    wait_for(limit, what, || done().then_some(())).await;
}

/// Waits until `read()` gives a value and returns it, checking every [`POLL`]; panics naming
/// `what` after `limit`.
pub async fn wait_for<T>(
    limit: Duration,
    what: impl Display,
    mut read: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = read() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until`] for a test without a runtime: the thread sleeps between checks.
pub fn wait_until_blocking(limit: Duration, what: impl Display, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}
