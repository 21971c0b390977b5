//! What runhook's tests, benches and examples share: names no other test uses, the Redis they
//! need (and a loud failure without it), signed Skyvern deliveries, the shared fixtures, free
//! ports, waiting for a condition with a deadline, and Python (the platforms' own code).
//!
//! A dev-dependency only. It depends on `runhook-core` and nothing of `runhook`, so the crate
//! under test is never linked twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub mod fixture;
mod listening;
pub mod postgres;
mod private_redis;
pub mod python;
pub mod redis;
pub mod skyvern;
mod wait;

pub use postgres::{postgres_url, require_postgres, unique_schema};
pub use private_redis::PrivateRedis;
pub use redis::{redis_url, require_redis};
pub use wait::{wait_for, wait_until, wait_until_blocking, POLL};

/// A name no other test, test process or earlier run (against a shared Redis) uses:
/// `{prefix}_{process id}_{nanoseconds since the epoch}_{counter}`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_nanos();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A loopback port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A fresh directory under the system's temporary directory, named after `prefix`.
pub fn temp_dir(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}
