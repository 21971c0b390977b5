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

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac as _};
use runhook::canonical::canonicalize;
use runhook::payload::{Provider, RunEvent};
use runhook::{sign_skyvern, Receiver, Secret, SkyvernSignature};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

const KEY: &str = "sk_bench_receiver";
const CONCURRENCY: usize = 32;

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

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
    let receiver = Receiver::builder(Provider::Skyvern)
        .verifier(SkyvernSignature::new(Secret::new(KEY).unwrap()))
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
    let seen = Arc::new(Mutex::new(HashSet::<String>::new()));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<serde_json::Value>(1 << 20);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let handler = move |headers: HeaderMap, body: Bytes| {
        let seen = seen.clone();
        let tx = tx.clone();
        async move {
            let Some(sig) = headers.get("x-skyvern-signature") else {
                return StatusCode::UNAUTHORIZED;
            };
            let Ok(sig) = hex::decode(sig.as_bytes()) else {
                return StatusCode::UNAUTHORIZED;
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
            mac.update(&body);
            if !bool::from(mac.finalize().into_bytes().as_slice().ct_eq(&sig)) {
                return StatusCode::UNAUTHORIZED;
            }
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
                return StatusCode::BAD_REQUEST;
            };
            let Some(run_id) = value["run_id"].as_str().map(str::to_owned) else {
                return StatusCode::BAD_REQUEST;
            };
            if !seen.lock().unwrap().insert(run_id) {
                return StatusCode::OK;
            }
            match tx.try_send(value) {
                Ok(()) => StatusCode::OK,
                Err(_) => StatusCode::SERVICE_UNAVAILABLE,
            }
        }
    };
    serve(axum::Router::new().route("/webhooks/skyvern", axum::routing::post(handler))).await
}

/// Signed bodies with fresh run ids, made before timing starts.
fn deliveries(template: &str, tag: &str, count: usize) -> Vec<(Bytes, String)> {
    let key = Secret::new(KEY).unwrap();
    (0..count)
        .map(|i| {
            let body = template.replacen("\"run_id\":\"", &format!("\"run_id\":\"{tag}-{i}-"), 1);
            let signature = sign_skyvern(&key, body.as_bytes());
            (Bytes::from(body), signature)
        })
        .collect()
}

struct Round {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

async fn load(client: &reqwest::Client, addr: SocketAddr, work: Vec<(Bytes, String)>) -> Round {
    let url = format!("http://{addr}/webhooks/skyvern");
    let total = work.len();
    let work = Arc::new(Mutex::new(work));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, url, work) = (client.clone(), url.clone(), work.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let Some((body, signature)) = work.lock().unwrap().pop() else {
                        return latencies;
                    };
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("x-skyvern-signature", signature)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    let _ = response.bytes().await.unwrap();
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Round {
        rps: total as f64 / elapsed.as_secs_f64(),
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let requests = env_count("RUNHOOK_BENCH_REQUESTS", 4000);
    let rounds = env_count("RUNHOOK_BENCH_ROUNDS", 3);
    let pretty = include_bytes!("../../../testdata/skyvern-run-pretty.json");
    let compact = String::from_utf8(canonicalize(pretty).unwrap()).unwrap();
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
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY)
            .build()
            .unwrap();
        let mut results: Vec<Vec<Round>> = servers.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            for (i, (name, addr)) in servers.iter().enumerate() {
                let work = deliveries(&compact, &format!("{name}-{round}"), requests);
                results[i].push(load(&client, *addr, work).await);
            }
        }
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        let summary: Vec<(&str, f64, f64, f64)> = servers
            .iter()
            .zip(results)
            .map(|((name, _), rounds)| {
                (
                    *name,
                    median(rounds.iter().map(|r| r.rps).collect()),
                    median(rounds.iter().map(|r| ms(&r.p50)).collect()),
                    median(rounds.iter().map(|r| ms(&r.p99)).collect()),
                )
            })
            .collect();
        println!("{:<20} {:>10} {:>9} {:>9}", "server", "req/s", "p50 ms", "p99 ms");
        for (name, rps, p50, p99) in &summary {
            println!("{name:<20} {rps:>10.0} {p50:>9.2} {p99:>9.2}");
        }
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
