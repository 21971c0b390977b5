//! What the benches share: the signed 7.7 KB Skyvern body with fresh run ids, the servers'
//! listener, and the load generator (reqwest, keep-alive, 32 concurrent requests) with its
//! figures (requests per second, p50 / p99 acknowledgement latency).

// Each bench uses a part of this module.
#![allow(dead_code)]

pub mod hand_written;
pub mod pgbench;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use runhook::canonical::canonicalize;
use runhook::verify::sign_skyvern;
use runhook::Secret;

/// The Skyvern API key every bench signs with.
pub const KEY: &str = "sk_bench_receiver";
/// Requests in flight at once.
pub const CONCURRENCY: usize = 32;

/// Serves `app` on a fresh local port.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The compact (as Skyvern sends it) form of `testdata/skyvern-run-pretty.json`.
pub fn compact_body() -> String {
    let pretty = runhook_testkit::fixture::SKYVERN_RUN_PRETTY;
    String::from_utf8(canonicalize(pretty).unwrap()).unwrap()
}

/// Signed bodies with fresh run ids, made before timing starts.
pub fn deliveries(template: &str, tag: &str, count: usize) -> Vec<(Bytes, String)> {
    let key = Secret::new(KEY).unwrap();
    (0..count)
        .map(|i| {
            let body = template.replacen("\"run_id\":\"", &format!("\"run_id\":\"{tag}-{i}-"), 1);
            let signature = sign_skyvern(&key, body.as_bytes());
            (Bytes::from(body), signature)
        })
        .collect()
}

/// The client [`load`] sends with: keep-alive, [`CONCURRENCY`] idle connections kept.
pub fn load_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap()
}

/// The figures of one round against one server.
pub struct Round {
    /// Requests per second.
    pub rps: f64,
    /// Median acknowledgement latency.
    pub p50: Duration,
    /// 99th percentile acknowledgement latency.
    pub p99: Duration,
}

/// Posts every delivery of `work` to `addr`'s `/webhooks/skyvern`, `CONCURRENCY` at once;
/// every answer must be 200.
pub async fn load(client: &reqwest::Client, addr: SocketAddr, work: Vec<(Bytes, String)>) -> Round {
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

/// Each server's median requests per second, p50 and p99 (in ms) over its `rounds`, printed
/// as a table whose first column is `width` wide; `names` in the order of `rounds`.
pub fn summarize<'a>(
    names: impl Iterator<Item = &'a str>,
    rounds: Vec<Vec<Round>>,
    width: usize,
) -> Vec<(&'a str, f64, f64, f64)> {
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let summary: Vec<(&str, f64, f64, f64)> = names
        .zip(rounds)
        .map(|(name, rounds)| {
            (
                name,
                median(rounds.iter().map(|r| r.rps).collect()),
                median(rounds.iter().map(|r| ms(&r.p50)).collect()),
                median(rounds.iter().map(|r| ms(&r.p99)).collect()),
            )
        })
        .collect();
    println!(
        "{:<width$} {:>10} {:>9} {:>9}",
        "server", "req/s", "p50 ms", "p99 ms"
    );
    for (name, rps, p50, p99) in &summary {
        println!("{name:<width$} {rps:>10.0} {p50:>9.2} {p99:>9.2}");
    }
    summary
}

/// The median of `values`.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A count from the environment variable `var`, or `default`.
pub fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
