//! `runhook serve` through Redis outages, against the real binary over loopback and a
//! `redis-server` of each test's own: senders that honour `Retry-After` are asked to wait long
//! enough that their retries outlast the outage, and every run is processed exactly once.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{json_lines, skyvern_route, start_serve, unique, Started as Serve};
use runhook_testkit::PrivateRedis;

const SKYVERN_KEY: &str = "sk_test_outage_cli";
const ROUTE: &str = "/webhooks/skyvern";

/// `serve` with one Skyvern route on `redis`, the stream hand-off, and `extra` (the handler
/// among them).
fn start_on(redis: &PrivateRedis, dir: &Path, extra: &[&str]) -> Serve {
    let prefix = unique("outage");
    let url = redis.url();
    let mut args = skyvern_route(ROUTE);
    args.extend([
        "--store",
        &url,
        "--queue",
        "redis-stream",
        "--redis-prefix",
        &prefix,
    ]);
    args.extend(extra);
    start_serve(dir, &args, &[("SKYVERN_API_KEY", SKYVERN_KEY)])
}

/// How many times each run id was processed, from `events.jsonl` in `dir`.
fn processed(dir: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in json_lines(&dir.join("events.jsonl")) {
        let run = line["run_id"].as_str().expect("a run id").to_string();
        *counts.entry(run).or_insert(0) += 1;
    }
    counts
}

/// A sender with Skyvern's schedule (three attempts, `Retry-After` honoured up to 30 s) during
/// a 20 s outage of Redis: the 503s say to come back in 30 s, so the second attempt lands after
/// the outage; nothing is given up and each run is processed once. With the old one-second
/// `Retry-After`, all three attempts fell inside the outage and every delivery was given up.
#[test]
fn a_skyvern_sender_outlasts_a_20_s_redis_outage() {
    let redis = PrivateRedis::start(&[]);
    let dir = common::scratch("runhook-outage-skyvern");
    let events = dir.join("events.jsonl");
    let serve = start_on(&redis, &dir, &["--jsonl", events.to_str().unwrap()]);
    let template = dir.join("run.json");
    std::fs::write(
        &template,
        runhook_testkit::skyvern::completed_body("tmpl_run"),
    )
    .unwrap();
    const RUNS: usize = 40;

    redis.pause();
    let sender = Command::new(env!("CARGO_BIN_EXE_runhook"))
        .args([
            "send",
            "--provider",
            "skyvern",
            "--secret-env",
            "SKYVERN_API_KEY",
        ])
        .args(["--to", &format!("{}{ROUTE}", serve.base)])
        .args(["--count", &RUNS.to_string(), "--concurrency", "8"])
        .arg(&template)
        .env("SKYVERN_API_KEY", SKYVERN_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(20));
    redis.resume();
    let sent = sender.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&sent.stdout);
    assert!(
        sent.status.success(),
        "some delivery was given up:\n{summary}\n{}",
        serve.logs()
    );
    assert!(
        summary.contains(&format!("2xx              {RUNS}")),
        "{summary}"
    );

    runhook_testkit::wait_until_blocking(
        Duration::from_secs(30),
        format_args!("every run processed\n{}", serve.logs()),
        || processed(&dir).len() == RUNS,
    );
    serve.stop_ok();
    let counts = processed(&dir);
    assert_eq!(counts.len(), RUNS);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

/// One instance, the stream hand-off, a 2 s lease: 16 runs whose handlers finish while Redis is
/// paused (SIGSTOP) for twice the lease. Their completions cannot be recorded and their claims
/// lapse; the workers keep trying to record them, and the takeover of their entries records
/// them instead of running them again: each run is processed once. (Before: 16 of 16 ran
/// twice.)
#[test]
fn runs_finishing_while_redis_stalls_past_the_lease_are_processed_once() {
    let redis = PrivateRedis::start(&[]);
    let dir = common::scratch("runhook-outage-stall");
    let calls = dir.join("calls.txt");
    let exec = format!("sleep 1; echo \"$RUNHOOK_RUN_ID\" >> {}", calls.display());
    let serve = start_on(
        &redis,
        &dir,
        &["--exec", &exec, "--workers", "16", "--lease-secs", "2"],
    );
    const RUNS: usize = 16;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let runs: Vec<String> = runtime.block_on(async {
        let client = common::client();
        let url = format!("{}{ROUTE}", serve.base);
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            let run = unique("stall");
            let body = runhook_testkit::skyvern::completed_body(&run);
            let status = common::skyvern_post(&client, &url, SKYVERN_KEY, &body)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status.as_u16(), 200, "{}", serve.logs());
            runs.push(run);
        }
        runs
    });
    // The handlers are running (each takes a second): pause Redis for twice the lease.
    std::thread::sleep(Duration::from_millis(300));
    redis.pause();
    std::thread::sleep(Duration::from_secs(4));
    redis.resume();

    let counts = || common::line_counts(&calls);
    runhook_testkit::wait_until_blocking(
        Duration::from_secs(30),
        format_args!("every run processed\n{}", serve.logs()),
        || runs.iter().all(|run| counts().contains_key(run)),
    );
    // Long enough for a takeover (min_idle 2.2 s) to run any of them again.
    std::thread::sleep(Duration::from_secs(6));
    let logs = serve.logs();
    serve.stop_ok();
    let counts = counts();
    for run in &runs {
        assert_eq!(counts.get(run), Some(&1), "{run}: {counts:?}\n{logs}");
    }
}
