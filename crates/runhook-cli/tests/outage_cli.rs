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

/// `serve` with one Skyvern route on `redis`, the stream hand-off, processed runs appended to
/// `events.jsonl` in `dir`, and `extra`.
fn start_on(redis: &PrivateRedis, dir: &Path, extra: &[&str]) -> Serve {
    let events = dir.join("events.jsonl");
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
    args.extend(["--jsonl", events.to_str().unwrap()]);
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
    let serve = start_on(&redis, &dir, &[]);
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
