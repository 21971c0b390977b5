//! Measures what a `MemoryStore` record costs: resident memory (VmRSS, Linux) grown by filling
//! a store, divided by the records it holds; then floods it with three times as many unique
//! keys to show that memory stays where it was.
//!
//! `cargo run --release -p runhook-store --example bytes_per_entry [RECORDS]` (default 1 000 000).
//! Hash tables grow by doubling, so the figure depends on where RECORDS falls: just below a
//! table's limit (e.g. 900 000) is the best case, just above (e.g. 1 000 000) the worst.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use runhook_store::{Claim, Fingerprint, IdempotencyStore, MemoryStore};

const LONG: Duration = Duration::from_secs(3600);

fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the memory store never waits"),
    }
}

/// Resident set size in bytes, from /proc/self/status.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kb: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

/// A key like the pipeline's: provider, then a UUID-shaped run id (44 bytes).
fn key(i: usize) -> String {
    format!("skyvern:{:08x}-0000-4000-8000-{:012x}", i >> 16, i)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("RECORDS is a number"));
    #[allow(non_snake_case)]
    let N = n;
    let fp = Fingerprint::of(b"{\"run_id\":\"x\"}");

    let before = rss();
    let store = MemoryStore::builder().capacity(N).max_in_flight(16).build();
    let reserved = rss() - before;
    for i in 0..N {
        let k = key(i);
        let Claim::Acquired(t) = ready(store.claim(&k, LONG, fp)).unwrap() else {
            panic!("not acquired")
        };
        ready(store.complete(&k, &t, LONG)).unwrap();
    }
    let full = rss() - before;
    assert_eq!(store.stats().done, N);
    println!(
        "done records:      {:>6.1} bytes each ({} records, {:.1} MB; index reserved at build: {:.1} MB)",
        full as f64 / N as f64,
        N,
        full as f64 / 1e6,
        reserved as f64 / 1e6
    );

    for i in N..4 * N {
        let k = key(i);
        let Claim::Acquired(t) = ready(store.claim(&k, LONG, fp)).unwrap() else {
            panic!("not acquired")
        };
        ready(store.complete(&k, &t, LONG)).unwrap();
    }
    let flooded = rss() - before;
    println!(
        "after {} more unique keys: {:.1} MB (was {:.1} MB), {} records kept",
        3 * N,
        flooded as f64 / 1e6,
        full as f64 / 1e6,
        store.stats().done
    );
    drop(store);

    let before = rss();
    let store = MemoryStore::builder()
        .capacity(1)
        .max_in_flight(N)
        .shards(1)
        .build();
    for i in 0..N {
        assert!(ready(store.claim(&key(i), LONG, fp)).unwrap().is_acquired());
    }
    let in_flight = rss() - before;
    println!(
        "in-flight claims:  {:>6.1} bytes each ({} claims, {:.1} MB)",
        in_flight as f64 / N as f64,
        N,
        in_flight as f64 / 1e6
    );
    assert!(ready(store.claim("one-more", LONG, fp)).is_err(), "bounded");
}
