//! Peak memory of a receiving server under each adversarial case of `tests/adversarial.rs`.
//!
//! ```text
//! cargo run --release -p runhook-tests --example adversarial_memory [CASE...]
//! ```
//!
//! For each case and framework (axum, actix-web) this program starts itself again as a server
//! process (`--serve CASE FRAMEWORK`): a runhook receiver on loopback whose handler reads each
//! run's whole payload, as a real handler would. This process then sends the case's requests
//! over real HTTP, tells the server it is done, and the server waits for its workers to finish
//! before reading its own peak resident set size (`VmHWM` in `/proc/self/status`). So each
//! figure is one server process from start to finish, client excluded.

#[path = "../support/adversarial.rs"]
mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runhook::payload::{Provider, RunEvent};
use runhook::store::{IdempotencyStore, MemoryStore};
use runhook::{Receiver, Secret, SkyvernSignature};
use support::*;

/// The cases, in the order printed.
const CASES: [&str; 8] = [
    "baseline",
    "deep_nesting",
    "string_10mb",
    "million_keys",
    "repeated_key_1m",
    "slow_body",
    "run_id_flood",
    "header_flood",
];

/// Distinct runs in the flood, and the store's bounds.
const FLOOD: usize = 20_000;
const FLOOD_CAPACITY: usize = 1_000;
const FLOOD_IN_FLIGHT: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        return serve_case(&args[1], framework(&args[2]));
    }
    let cases: Vec<&str> = if args.is_empty() {
        CASES.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "{:<16} {:<6} {:>10}  {:>8}  answers",
        "case", "server", "peak RSS", "time"
    );
    for case in cases {
        assert!(
            CASES.contains(&case),
            "unknown case {case}; cases: {CASES:?}"
        );
        for framework in ["axum", "actix"] {
            let (peak_kib, elapsed, answers) = runtime.block_on(measure(case, framework));
            println!(
                "{case:<16} {framework:<6} {:>6.1} MiB  {:>6.2} s  {answers}",
                peak_kib as f64 / 1024.0,
                elapsed.as_secs_f64()
            );
        }
    }
}

fn framework(name: &str) -> Framework {
    match name {
        "axum" => Framework::Axum,
        "actix" => Framework::Actix,
        other => panic!("unknown framework {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The server process.

fn serve_case(case: &str, framework: Framework) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let handled = Arc::new(AtomicU64::new(0));
        let counter = handled.clone();
        let mut builder = Receiver::builder(
            Provider::Skyvern,
            SkyvernSignature::new(Secret::new(SKYVERN_KEY).unwrap()).with_canonical_fallback(),
        )
        .handler(move |event: Arc<RunEvent>| {
            let counter = counter.clone();
            async move {
                // The whole typed payload, as a handler that uses the result reads it.
                let _ = event.payload();
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<(), std::io::Error>(())
            }
        });
        builder = match case {
            "string_10mb" | "million_keys" | "repeated_key_1m" => {
                builder.body_limit(32 * 1024 * 1024)
            }
            "slow_body" => builder.body_read_timeout(Duration::from_secs(1)),
            "run_id_flood" => builder.store(Arc::new(
                MemoryStore::builder()
                    .capacity(FLOOD_CAPACITY)
                    .max_in_flight(FLOOD_IN_FLIGHT)
                    .shards(1)
                    .build(),
            ) as Arc<dyn IdempotencyStore>),
            _ => builder,
        };
        let receiver = builder.build().unwrap();
        let server = serve(framework, receiver.clone()).await;
        println!("LISTENING {}", server.addr);
        std::io::stdout().flush().unwrap();

        // Wait for the client's "done", then for the workers.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
        })
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while handled.load(Ordering::SeqCst) < receiver.stats().accepted {
            assert!(Instant::now() < deadline, "the workers did not finish");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stats = receiver.stats();
        println!(
            "PEAK {} received={} accepted={} rejected={}",
            peak_rss_kib().unwrap_or(0),
            stats.received,
            stats.accepted,
            stats.rejected
        );
        drop(server);
    });
}

// ---------------------------------------------------------------------------------------------
// The client side.

/// Runs one case against a fresh server process: its peak RSS in KiB, how long the case took,
/// and a summary of the answers.
async fn measure(case: &str, framework: &str) -> (u64, Duration, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve", case, framework])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("unexpected: {first}"))
        .parse()
        .unwrap();
    let started = Instant::now();
    let answers = run_case(case, addr).await;
    let elapsed = started.elapsed();
    writeln!(child.stdin.take().unwrap(), "done").unwrap();
    let last = lines.next().unwrap().unwrap();
    let mut words = last.strip_prefix("PEAK ").unwrap().split(' ');
    let peak = words.next().unwrap().parse().unwrap();
    let counts: Vec<&str> = words.collect();
    assert!(child.wait().unwrap().success());
    (peak, elapsed, format!("{answers} ({})", counts.join(" ")))
}

/// Counts of each answer: `status x count`, or `closed` for a connection closed unanswered.
#[derive(Default)]
struct Answers(std::collections::BTreeMap<String, usize>);

impl Answers {
    fn add(&mut self, status: Option<u16>) {
        let key = status.map_or("closed".to_string(), |s| s.to_string());
        *self.0.entry(key).or_default() += 1;
    }
}

impl std::fmt::Display for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{k}x{n}")).collect();
        f.write_str(&parts.join(" "))
    }
}

async fn run_case(case: &str, addr: std::net::SocketAddr) -> Answers {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let url = format!("http://{addr}{ROUTE}");
    let send = |body: Vec<u8>, signature: String| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let reply = support::post(&client, &url, &[(SIGNATURE, &signature)], body).await;
            Some(reply.status)
        }
    };
    let genuine = |body: Vec<u8>| {
        let signature = skyvern_signature(&body);
        send(body, signature)
    };
    let mut answers = Answers::default();
    match case {
        "baseline" => answers.add(genuine(skyvern_body("tsk_baseline")).await),
        "deep_nesting" => {
            for (run_id, deep) in [
                ("tsk_deep_arrays", nested_arrays(DEEP)),
                ("tsk_deep_objects", nested_objects(DEEP)),
            ] {
                answers.add(genuine(skyvern_body_with_output(run_id, &deep)).await);
                answers.add(genuine(deep.clone()).await);
                answers.add(send(deep, "0".repeat(64)).await);
            }
        }
        "string_10mb" => {
            let mut output = br#"{"text":"#.to_vec();
            output.extend_from_slice(&long_string(LONG_STRING));
            output.push(b'}');
            answers.add(genuine(skyvern_body_with_output("tsk_long", &output)).await);
        }
        "million_keys" => answers.add(genuine(many_keys_body("tsk_wide", MANY_KEYS)).await),
        "repeated_key_1m" => {
            answers.add(genuine(repeated_key_body("tsk_repeated", MANY_KEYS)).await)
        }
        "slow_body" => {
            let slow: Vec<_> = (0..20)
                .map(|_| tokio::spawn(trickle(addr, 2_000, Duration::from_millis(20))))
                .collect();
            for reply in slow {
                answers.add(reply.await.unwrap().status);
            }
        }
        "run_id_flood" => {
            for batch in 0..FLOOD / 32 {
                let sends: Vec<_> = (0..32)
                    .map(|i| tokio::spawn(genuine(skyvern_body(&format!("tsk_{batch}_{i}")))))
                    .collect();
                for send in sends {
                    answers.add(send.await.unwrap());
                }
            }
        }
        "header_flood" => {
            let body = skyvern_body("tsk_headers");
            for round in 0..20 {
                let mut headers: Vec<(String, String)> = if round % 2 == 0 {
                    (0..5_000)
                        .map(|i| (format!("x-flood-{i}"), "v".to_string()))
                        .collect()
                } else {
                    vec![("x-huge".to_string(), "h".repeat(1024 * 1024))]
                };
                headers.push((SIGNATURE.into(), skyvern_signature(&body)));
                headers.push(("content-length".into(), body.len().to_string()));
                let mut request = request_head(addr, &headers);
                request.extend_from_slice(&body);
                answers.add(
                    raw_request(addr, request, Duration::from_secs(2))
                        .await
                        .status,
                );
            }
        }
        other => unreachable!("{other}"),
    }
    answers
}
