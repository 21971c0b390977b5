//! The price of durability: deliveries per second acknowledged by one instance, and p50 / p99
//! acknowledgement latency, side by side in one run for
//! - `hand_written`: the careful hand-written axum receiver of the `receiver` bench (its
//!   in-memory set and channel), the yardstick;
//! - `memory_inproc`: memory store, in-process queue (nothing survives a crash);
//! - `redis_inproc`: Redis store, in-process queue (claims shared, queue not);
//! - `redis_stream`: Redis store and Redis stream, the claim and the `XADD` two calls (an ack
//!   means the delivery is in Redis);
//! - `redis_stream_1script`: the same with `claim_in`: one script claims and appends, one
//!   records the run done and removes its entry (what `runhook serve` does).
//!
//! Same load for each: the 7.7 KB compact Skyvern body of `testdata/` with a fresh run id,
//! correctly signed, from reqwest with keep-alive and 32 concurrent requests; servers and load
//! generator share this process; rounds are interleaved and medians reported. The handler is a
//! no-op, and the workers run during the measurement (for the stream they read, claim-check,
//! acknowledge and delete entries on the same Redis: that load is part of the price); each
//! server's backlog is drained before the next server is measured.
//!
//! Run (needs Redis; keys go under a fresh `runhook-bench-…` prefix and are deleted after):
//! `cargo bench -p runhook --features axum,redis --bench durability`
//! (`RUNHOOK_BENCH_REQUESTS`, default 4000 per server per round; `RUNHOOK_BENCH_ROUNDS`, 3;
//! `RUNHOOK_BENCH_REDIS`, default `redis://127.0.0.1:6379`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use runhook::payload::{Provider, RunEvent};
use runhook::store::{IdempotencyStore, MemoryStore, RedisStore};
use runhook::stream::RedisStreamQueue;
use runhook::{Receiver, Secret, SkyvernSignature};

mod support;

use support::{
    compact_body, deliveries, env_count, load, serve, summarize, Round, CONCURRENCY, KEY,
};

/// The careful hand-written receiver.
async fn hand_written() -> SocketAddr {
    let (router, mut rx) = support::hand_written::route(KEY, "/webhooks/skyvern", 1 << 20);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    serve(router).await
}

/// One configuration's receiver on its own server.
async fn server(
    store: Arc<dyn IdempotencyStore>,
    stream: Option<RedisStreamQueue>,
) -> (SocketAddr, Receiver) {
    let mut builder = Receiver::builder(
        Provider::Skyvern,
        SkyvernSignature::new(Secret::new(KEY).unwrap()),
    )
    .store(store)
    .handler(|_event: Arc<RunEvent>| async { Ok::<(), std::io::Error>(()) })
    .queue_capacity(1 << 20)
    // Short, so that a bench run leaves nothing behind for a week.
    .dedup_window(Duration::from_secs(600));
    if let Some(queue) = stream {
        builder = builder.redis_stream(queue);
    }
    let receiver = builder.build().unwrap();
    let app = axum::Router::new().route("/webhooks/skyvern", runhook::axum::post(receiver.clone()));
    (serve(app).await, receiver)
}

fn main() {
    let requests = env_count("RUNHOOK_BENCH_REQUESTS", 4000);
    let rounds = env_count("RUNHOOK_BENCH_ROUNDS", 3);
    let url = std::env::var("RUNHOOK_BENCH_REDIS").unwrap_or("redis://127.0.0.1:6379".into());
    let compact = compact_body();
    println!(
        "body: {} bytes compact; {requests} requests per server per round, {rounds} rounds, {CONCURRENCY} concurrent; Redis at {url}",
        compact.len()
    );
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("runhook-bench-{}-{nanos}:", std::process::id());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let redis_store = || async {
            RedisStore::builder()
                .prefix(format!("{prefix}idem:"))
                .connect(&url)
                .await
                .expect("Redis for the bench")
        };
        let shared = |store: RedisStore| Arc::new(store) as Arc<dyn IdempotencyStore>;
        let stream = |name: &str| {
            RedisStreamQueue::builder(Provider::Skyvern).stream_key(format!("{prefix}{name}"))
        };
        let queue = stream("stream")
            .connect(&url)
            .await
            .expect("Redis for the bench");
        let one_script_store = redis_store().await;
        let one_script = stream("stream1")
            .claim_in(one_script_store.clone())
            .connect(&url)
            .await
            .expect("Redis for the bench");
        let servers = [
            ("hand_written", (hand_written().await, None)),
            (
                "memory_inproc",
                on(server(Arc::new(MemoryStore::new()), None).await),
            ),
            (
                "redis_inproc",
                on(server(shared(redis_store().await), None).await),
            ),
            (
                "redis_stream",
                on(server(shared(redis_store().await), Some(queue)).await),
            ),
            (
                "redis_stream_1script",
                on(server(shared(one_script_store), Some(one_script)).await),
            ),
        ];
        let client = support::load_client();
        let mut results: Vec<Vec<Round>> = servers.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            for (i, (name, (addr, receiver))) in servers.iter().enumerate() {
                let work = deliveries(&compact, &format!("{prefix}{name}-{round}"), requests);
                results[i].push(load(&client, *addr, work).await);
                // The next server is measured without this one's workers still busy.
                if let Some(receiver) = receiver {
                    drain(receiver).await;
                }
            }
        }
        let summary = summarize(servers.iter().map(|(name, _)| *name), results, 20);
        let get = |name: &str| *summary.iter().find(|s| s.0 == name).unwrap();
        let yardstick = get("hand_written");
        for (name, rps, _, _) in &summary {
            println!("req/s {name} / hand_written = {:.2}", rps / yardstick.1);
        }
        let (a, b, c) = (
            get("memory_inproc"),
            get("redis_inproc"),
            get("redis_stream"),
        );
        println!(
            "req/s redis_stream / memory_inproc = {:.2}; redis_stream / redis_inproc = {:.2}",
            c.1 / a.1,
            c.1 / b.1
        );
        println!(
            "p99 ms redis_stream / memory_inproc = {:.2}; redis_stream / redis_inproc = {:.2}",
            c.3 / a.3,
            c.3 / b.3
        );

        for (name, (_, receiver)) in &servers {
            let Some(receiver) = receiver else {
                continue;
            };
            let report = receiver.shutdown(Duration::from_secs(30)).await;
            let stats = receiver.stats();
            println!(
                "{name}: accepted {}, processed {}, not drained {}",
                stats.accepted,
                stats.processed,
                report.not_drained().len()
            );
        }
        cleanup(&url, &prefix).await;
    });
}

/// A server with its receiver, to drain between rounds.
fn on((addr, receiver): (SocketAddr, Receiver)) -> (SocketAddr, Option<Receiver>) {
    (addr, Some(receiver))
}

/// Waits (at most 60 s) until the receiver's workers processed all it accepted.
async fn drain(receiver: &Receiver) {
    let waited = std::time::Instant::now();
    while receiver.stats().processed < receiver.stats().accepted
        && waited.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deletes every key under the bench's prefix.
async fn cleanup(url: &str, prefix: &str) {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}
