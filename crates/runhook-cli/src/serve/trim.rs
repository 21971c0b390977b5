//! Giving memory back after a burst of unauthenticated bodies.
//!
//! glibc's allocator keeps freed memory in its arenas for reuse: after a thousand bodies of a
//! megabyte were read and dropped, the process's RSS stays high. When the pre-authentication
//! budget, having held much, drains again, `malloc_trim(0)` returns the free pages of every
//! arena to the system (measured: 58 MB left after such a burst without it; see the README).
//! Elsewhere (another libc or platform) nothing is done.

use std::time::Duration;

use runhook::receiver::PreAuthBudget;

/// How often the budget is looked at.
const EVERY: Duration = Duration::from_secs(1);

/// A budget that held at least this much since the last trim is a burst worth trimming after.
const BURST_BYTES: u64 = 8 * 1024 * 1024;

/// Once the budget holds less than this, the burst is over.
const DRAINED_BYTES: u64 = 1024 * 1024;

/// Watches `budget` in the background; trims after each burst has drained (twice, a second
/// apart, for the connections that close just after their bodies were dropped).
pub fn after_bursts(budget: PreAuthBudget) {
    tokio::spawn(async move {
        let mut peak = 0u64;
        let mut pending = 0u8;
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            let held = budget.held();
            peak = peak.max(held);
            if peak >= BURST_BYTES && held < DRAINED_BYTES {
                peak = 0;
                pending = 2;
            }
            if pending > 0 {
                pending -= 1;
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointers and only returns free memory of the allocator's
    // own arenas to the system; glibc makes it safe to call from any thread at any time.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        "trimmed the allocator after a burst"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
