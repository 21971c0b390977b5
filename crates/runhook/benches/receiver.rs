//! Requests per second and p50 / p99 acknowledgement latency of the ready axum handler (memory
//! store, in-process queue), side by side in one run with:
//! - `ceiling`: a bare axum handler that reads the whole body and answers 200;
//! - `hand_written`: what a careful user writes by hand today (hmac + sha2 + subtle on the raw
//!   body, `serde_json::Value`, a `Mutex<HashSet>`, a tokio mpsc to a background task);
//! - `runhook_slow_handler`: the same ready handler whose handler sleeps 30 s per run.
//!
//! Every request carries the 7.7 KB compact Skyvern body of `testdata/` with a fresh run id,
//! correctly signed. Servers and the load generator (reqwest, keep-alive, 32 concurrent
//! requests) share this process; rounds are interleaved and medians reported.
//!
//! Run: `cargo bench -p runhook --features axum --bench receiver`
//! (`RUNHOOK_BENCH_REQUESTS`, default 4000 per server per round; `RUNHOOK_BENCH_ROUNDS`, 3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use runhook::payload::{Provider, RunEvent};
use runhook::{Receiver, Secret, SkyvernSignature};

mod support;

use support::{
    compact_body, deliveries, env_count, load, serve, summarize, Round, CONCURRENCY, KEY,
};

async fn ceiling() -> SocketAddr {
    serve(axum::Router::new().route(
        "/webhooks/skyvern",
        axum::routing::post(|_body: Bytes| async { StatusCode::OK }),
    ))
    .await
}

/// The ready handler; with `handler_sleeps`, every handler call sleeps 30 s (the ack must not
/// notice: it never waits on the handler).
async fn runhook_ready(handler_sleeps: bool) -> SocketAddr {
    let receiver = Receiver::builder(
        Provider::Skyvern,
        SkyvernSignature::new(Secret::new(KEY).unwrap()),
    )
    .handler(move |_event: Arc<RunEvent>| async move {
        if handler_sleeps {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Ok::<(), std::io::Error>(())
    })
    .queue_capacity(1 << 20)
    .build()
    .unwrap();
    serve(axum::Router::new().route("/webhooks/skyvern", runhook::axum::post(receiver))).await
}

/// The careful hand-written receiver.
async fn hand_written() -> SocketAddr {
    let (router, mut rx) = support::hand_written::route(KEY, "/webhooks/skyvern", 1 << 20);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    serve(router).await
}

fn main() {
    let requests = env_count("RUNHOOK_BENCH_REQUESTS", 4000);
    let rounds = env_count("RUNHOOK_BENCH_ROUNDS", 3);
    let compact = compact_body();
    println!(
        "body: {} bytes compact; {requests} requests per server per round, {rounds} rounds, {CONCURRENCY} concurrent",
        compact.len()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let servers = [
            ("ceiling", ceiling().await),
            ("hand_written", hand_written().await),
            ("runhook_ready", runhook_ready(false).await),
            ("runhook_slow_handler", runhook_ready(true).await),
        ];
        let client = support::load_client();
        let mut results: Vec<Vec<Round>> = servers.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            for (i, (name, addr)) in servers.iter().enumerate() {
                let work = deliveries(&compact, &format!("{name}-{round}"), requests);
                results[i].push(load(&client, *addr, work).await);
            }
        }
        let summary = summarize(servers.iter().map(|(name, _)| *name), results, 20);
        let rps = |name: &str| summary.iter().find(|s| s.0 == name).map_or(0.0, |s| s.1);
        let p99 = |name: &str| summary.iter().find(|s| s.0 == name).map_or(0.0, |s| s.3);
        println!(
            "p99 ack with a 30 s handler / with a no-op handler = {:.2} (the ack must not wait on the handler)",
            p99("runhook_slow_handler") / p99("runhook_ready")
        );
        println!(
            "runhook / hand_written = {:.2} (target >= 1.5); runhook / ceiling = {:.2} (target >= 0.5)",
            rps("runhook_ready") / rps("hand_written"),
            rps("runhook_ready") / rps("ceiling")
        );
    });
}
