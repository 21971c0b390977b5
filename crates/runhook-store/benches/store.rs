//! claim + complete per second, through `Arc<dyn IdempotencyStore>` as the pipeline uses it.
//!
//! * `memory/…`: `MemoryStore` in its steady state (full of done records, so every complete
//!   evicts one), on 1 thread (default capacity, and a small store that stays in the CPU
//!   caches) and on 2 threads (default shards, and one shard for comparison). The keys come
//!   from a ring of 2^20 stored strings; `uuid-keys` instead builds each 43-byte key
//!   (`skyvern:wr_<32 hex>`, 2^20 distinct) in a reused buffer, as a receiver has it just
//!   parsed from a request: the figure of the store alone, its cost of building included;
//!   `run-ids` builds `skyvern:wr_<18 digits>` (29 bytes, the shape and length of Skyvern's
//!   run ids, e.g. `wr_490440779503358000`), 2^20 distinct, by counting its digits up in
//!   place: the realistic figure, a key that costs the store's caller what a receiver pays
//!   (it has the run id as text);
//! * `redis/…` (feature `redis`, a Redis at `REDIS_URL` or 127.0.0.1:6379): `RedisStore` with
//!   1 and 32 concurrent tasks, beside plain `SET NX PX` through the same `ConnectionManager`
//!   (the limit).
//!
//! One criterion "element" is one claim + complete (or one plain `SET`). Run with
//! `cargo bench -p runhook-store --all-features`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use runhook_store::{Claim, Fingerprint, IdempotencyStore, MemoryStore};

const LEASE: Duration = Duration::from_secs(60);
const KEEP: Duration = Duration::from_secs(3600);

/// Polls a future that never waits (the memory store's) to its end, without a runtime.
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the memory store never waits"),
    }
}

/// Keys shaped like the pipeline's (`skyvern:<run id>`), more than the store keeps.
fn keys(n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!("skyvern:wr_{tag}{i:016x}"))
        .collect()
}

/// Builds `skyvern:wr_<32 hex digits>` keys, a different one for each number, in one buffer.
struct UuidKey(String);

impl UuidKey {
    const PREFIX: &str = "skyvern:wr_";

    fn new() -> Self {
        UuidKey(String::with_capacity(64))
    }

    fn at(&mut self, n: u64) -> &str {
        // A multiply-xorshift mix beside the number: uuid-like digits, distinct for distinct n.
        let a = (n ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let mixed = (a ^ (a >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let raw = (u128::from(mixed) << 64 | u128::from(n)).to_be_bytes();
        let mut digits = [0u8; 32];
        hex::encode_to_slice(raw, &mut digits).expect("32 digits hold 16 bytes");
        self.0.clear();
        self.0.push_str(Self::PREFIX);
        self.0
            .push_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"));
        &self.0
    }
}

/// Builds `skyvern:wr_<18 decimal digits>` keys, Skyvern's run id shape, in one buffer.
///
/// The digits count up in place, one key per call, as an odometer does: a receiver has the
/// run id as text already, so building its key costs a copy, not an integer formatting (which
/// through `write!` cost more instructions than the store's own claim).
struct RunIdKey {
    /// `skyvern:wr_` and the digits, all ASCII.
    text: Vec<u8>,
    issued: u64,
}

impl RunIdKey {
    /// A real run id (testdata/skyvern-run-pretty.json); snowflake-like ids count up from it.
    const BASE: u64 = 490_440_779_503_358_000;

    fn new() -> Self {
        RunIdKey {
            text: format!("skyvern:wr_{}", Self::BASE).into_bytes(),
            issued: 0,
        }
    }

    /// The next key: `skyvern:wr_<BASE + n>` for the n-th call, starting over after `period`
    /// keys.
    fn next(&mut self, period: u64) -> &str {
        if self.issued == period {
            *self = RunIdKey::new();
        }
        if self.issued > 0 {
            // Add one to the decimal digits (18 digits from BASE never carry into the prefix).
            for digit in self.text.iter_mut().rev() {
                if *digit == b'9' {
                    *digit = b'0';
                } else {
                    *digit += 1;
                    break;
                }
            }
        }
        self.issued += 1;
        std::str::from_utf8(&self.text).expect("the key is ASCII")
    }
}

fn claim_complete(store: &dyn IdempotencyStore, key: &str, fp: Fingerprint) {
    let Claim::Acquired(token) = ready(store.claim(key, LEASE, fp)).unwrap() else {
        panic!("{key} was not acquired");
    };
    ready(store.complete(key, &token, KEEP)).unwrap();
}

/// Benches `step` as `claim+complete/1-thread/label` in `group`, giving it the number of the
/// iteration; how many iterations ran.
fn bench_steps(
    group: &mut BenchmarkGroup<'_, WallTime>,
    label: &str,
    mut step: impl FnMut(u64),
) -> u64 {
    let mut next = 0u64;
    group.bench_function(BenchmarkId::new("claim+complete/1-thread", label), |b| {
        b.iter(|| {
            step(next);
            next += 1;
        })
    });
    next
}

fn memory(c: &mut Criterion) {
    let fp = Fingerprint::of(b"{\"run_id\":\"wr_1\",\"status\":\"completed\"}");
    let mut group = c.benchmark_group("memory");
    group.throughput(Throughput::Elements(1));
    // 2^20 distinct keys cycle through a store keeping 100 000: each key is long evicted when
    // it comes round again, so every claim acquires and every complete evicts.
    let ring = Arc::new(keys(1 << 20, ""));

    // A full default store (100 000 done records): every complete evicts a cold record. And a
    // small one (4 096) whose records stay in the CPU caches.
    for (label, capacity) in [("default-capacity", 100_000), ("capacity-4096", 4096)] {
        let store: Arc<dyn IdempotencyStore> =
            Arc::new(MemoryStore::builder().capacity(capacity).build());
        bench_steps(&mut group, label, |n| {
            claim_complete(&*store, &ring[n as usize & (ring.len() - 1)], fp);
        });
    }

    // The same full default store, with keys built per call (in the CPU caches, as a receiver
    // has them), rather than read from 2^20 strings that stream through the caches.
    let store: Arc<dyn IdempotencyStore> = Arc::new(MemoryStore::new());
    let mut key = UuidKey::new();
    bench_steps(&mut group, "default-capacity-uuid-keys", |n| {
        claim_complete(&*store, key.at(n & ((1 << 20) - 1)), fp);
    });

    // The realistic case: run-id-shaped keys of the real length, built per call.
    let memory = Arc::new(MemoryStore::new());
    let store: Arc<dyn IdempotencyStore> = memory.clone();
    let mut key = RunIdKey::new();
    let next = bench_steps(&mut group, "default-capacity-run-ids", |_| {
        claim_complete(&*store, key.next(1 << 20), fp);
    });
    // It was measured in its steady state: full, so completes evicted records (a full shard
    // forgets up to 16 at once, so it holds within 16 of its share).
    if next > 100_000 {
        let done = memory.stats().done;
        assert!(
            done > 100_000 - 16 * memory.shard_count(),
            "the store filled up: {done}"
        );
    }

    for (label, shards) in [("default-shards", None), ("1-shard", Some(1))] {
        let mut builder = MemoryStore::builder();
        if let Some(n) = shards {
            builder = builder.shards(n);
        }
        let store: Arc<dyn IdempotencyStore> = Arc::new(builder.build());
        let mut offset = 0usize;
        group.bench_function(BenchmarkId::new("claim+complete/2-threads", label), |b| {
            b.iter_custom(|iters| {
                let per_thread = (iters as usize).div_ceil(2);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..2 {
                        let (store, ring) = (store.clone(), ring.clone());
                        s.spawn(move || {
                            // Each thread takes every other key of the ring.
                            for i in 0..per_thread {
                                let k = (offset + 2 * i + t) & (ring.len() - 1);
                                claim_complete(&*store, &ring[k], fp);
                            }
                        });
                    }
                });
                offset = offset.wrapping_add(2 * per_thread);
                start.elapsed()
            })
        });
    }
    group.finish();
}

#[cfg(feature = "redis")]
mod redis_bench {
    use super::*;
    use runhook_store::RedisStore;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    }

    /// Runs `ops` operations spread over `tasks` tasks; each operation gets a fresh number.
    async fn spread<F, Fut>(tasks: usize, ops: u64, op: F) -> Duration
    where
        F: Fn(u64) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let per_task = ops.div_ceil(tasks as u64);
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let op = op.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        op(SEQ.fetch_add(1, Ordering::Relaxed)).await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        start.elapsed()
    }

    pub fn redis(c: &mut Criterion) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let url = url();
        let run = std::process::id();
        // Short-lived records: the shared Redis forgets them within a minute.
        let (lease, keep) = (Duration::from_secs(30), Duration::from_secs(30));
        let store = match rt.block_on(
            RedisStore::builder()
                .prefix(format!("runhook-bench:{run}:"))
                .connect(&url),
        ) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                eprintln!("\n!!!! skipping the Redis benchmarks: {url}: {e} !!!!\n");
                return;
            }
        };
        // The same client, for the plain SET NX PX limit.
        let client = redis::Client::open(url.as_str()).unwrap();
        let conn = rt
            .block_on(redis::aio::ConnectionManager::new(client))
            .unwrap();
        let fp = Fingerprint::of(b"{\"run_id\":\"wr_1\",\"status\":\"completed\"}");
        // As long as the store's in-flight value (state letter, token, fingerprint).
        let plain_value: Arc<str> = format!("i{}", "0".repeat(96)).into();

        let mut group = c.benchmark_group("redis");
        group.throughput(Throughput::Elements(1));
        for tasks in [1usize, 32] {
            let s: Arc<dyn IdempotencyStore> = store.clone();
            group.bench_function(BenchmarkId::new("store-claim+complete", tasks), |b| {
                b.iter_custom(|iters| {
                    let s = s.clone();
                    rt.block_on(spread(tasks, iters, move |n| {
                        let s = s.clone();
                        async move {
                            let key = format!("skyvern:wr_{n:016x}");
                            let Claim::Acquired(t) = s.claim(&key, lease, fp).await.unwrap() else {
                                panic!("{key} was not acquired");
                            };
                            s.complete(&key, &t, keep).await.unwrap();
                        }
                    }))
                })
            });
            let conn = conn.clone();
            let plain_value = plain_value.clone();
            group.bench_function(BenchmarkId::new("plain-SET-NX-PX", tasks), |b| {
                b.iter_custom(|iters| {
                    let (conn, value) = (conn.clone(), plain_value.clone());
                    rt.block_on(spread(tasks, iters, move |n| {
                        let (mut conn, value) = (conn.clone(), value.clone());
                        async move {
                            let key = format!("runhook-bench:{run}:plain:{n:016x}");
                            let set: Option<String> = redis::cmd("SET")
                                .arg(&key)
                                .arg(&*value)
                                .arg("NX")
                                .arg("PX")
                                .arg(30_000)
                                .query_async(&mut conn)
                                .await
                                .unwrap();
                            assert!(set.is_some());
                        }
                    }))
                })
            });
        }
        group.finish();
    }
}

#[cfg(feature = "redis")]
criterion_group!(benches, memory, redis_bench::redis);
#[cfg(not(feature = "redis"))]
criterion_group!(benches, memory);
criterion_main!(benches);
