//! `runhook serve`'s dead letters against the real binary over loopback: the default sink is
//! a file, a sink at its byte budget parks its deliveries without wedging the workers (and
//! `/readyz` says so), every acknowledged run is processed or in the file after SIGTERM, and
//! an unsigned route's unusable bodies are kept as a prefix and a digest only.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::Digest as _;

mod common;
use common::{client, json_lines, skyvern_post, skyvern_route, start_serve, unique, Started};

const SKYVERN_KEY: &str = "sk_test_sinks_cli";
const ROUTE: &str = "/webhooks/skyvern";
/// The file `serve` keeps dead letters in when not told otherwise.
const DEFAULT_FILE: &str = "runhook-dead-letters.jsonl";

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("runhook-sinks-{name}"))
}

/// A handler that fails every run whose id starts with `bad`, and appends the others' ids to
/// `calls`.
fn failing_bad(calls: &Path) -> String {
    format!(
        "case \"$RUNHOOK_RUN_ID\" in bad*) exit 1;; esac; echo \"$RUNHOOK_RUN_ID\" >> {}",
        calls.display()
    )
}

/// `serve` in `dir` with the Skyvern route, `--exec failing_bad`, one attempt, and `extra`.
fn start(dir: &Path, calls: &Path, extra: &[&str]) -> Started {
    let exec = failing_bad(calls);
    let mut args = skyvern_route(ROUTE);
    args.extend(["--exec", exec.as_str(), "--max-attempts", "1"]);
    args.extend(extra);
    start_serve(dir, &args, &[("SKYVERN_API_KEY", SKYVERN_KEY)])
}

/// A Skyvern body for `run`, padded with `pad` bytes.
fn body(run: &str, pad: usize) -> String {
    let padding = "p".repeat(pad);
    format!(r#"{{"run_id":"{run}","task_id":"{run}","status":"completed","padding":"{padding}"}}"#)
}

/// Posts each run (with `pad` bytes of padding), 32 at a time, retrying a 503 for up to 30 s
/// as a sender would; the bodies of the runs answered 200.
async fn deliver(serve: &Started, runs: &[String], pad: usize) -> HashMap<String, String> {
    let url = format!("{}{ROUTE}", serve.base);
    let mut acked = HashMap::new();
    for chunk in runs.chunks(32) {
        let mut posts = tokio::task::JoinSet::new();
        for run in chunk {
            let (url, run, body) = (url.clone(), run.clone(), body(run, pad));
            posts.spawn(async move {
                let client = client();
                let until = Instant::now() + Duration::from_secs(30);
                loop {
                    let status = skyvern_post(&client, &url, SKYVERN_KEY, body.as_bytes())
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16();
                    if status != 503 || Instant::now() >= until {
                        return (run, body, status);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        while let Some(done) = posts.join_next().await {
            let (run, body, status) = done.unwrap();
            if status == 200 {
                acked.insert(run, body);
            }
        }
    }
    acked
}

/// The run ids in the `calls` file.
fn called(calls: &Path) -> HashSet<String> {
    std::fs::read_to_string(calls)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Each dead letter's run id and body, from the file at `path`.
fn letters(path: &Path) -> HashMap<String, String> {
    json_lines(path)
        .into_iter()
        .map(|l| {
            (
                l["run_id"].as_str().unwrap_or_default().to_string(),
                l["body"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `/readyz`: the status and the body.
async fn readyz(serve: &Started) -> (u16, String) {
    let response = client()
        .get(format!("{}/readyz", serve.base))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Waits until every one of `runs` is in `calls`.
fn wait_called(serve: &Started, calls: &Path, runs: &HashSet<String>, within: Duration) {
    let until = Instant::now() + within;
    loop {
        let seen = called(calls);
        let missing = runs.difference(&seen).count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < until,
            "{missing} acknowledged good runs never processed\n{}",
            serve.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// After the exit: every acknowledged run is processed (good ones) or in the dead-letter
/// file with its body (bad ones).
fn assert_accounted(acked: &HashMap<String, String>, calls: &Path, dead: &Path) {
    let (seen, kept) = (called(calls), letters(dead));
    for (run, body) in acked {
        if run.starts_with("good") {
            assert!(seen.contains(run), "{run} acknowledged, never processed");
        } else {
            assert_eq!(
                kept.get(run),
                Some(body),
                "{run} acknowledged, not in the dead letters"
            );
        }
    }
}

fn runs(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|_| unique(prefix)).collect()
}

/// Default `serve` (no `--dead-letters`): 1 100 failing runs then 100 good ones. The letters
/// go to `runhook-dead-letters.jsonl` in the working directory; every good run answered 200
/// is processed, and after SIGTERM every acknowledged run is processed or in that file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn default_serve_keeps_every_dead_letter_in_a_file_and_never_wedges() {
    let dir = scratch("default");
    let calls = dir.join("calls.txt");
    let serve = start(&dir, &calls, &[]);
    assert!(serve.logs().contains(DEFAULT_FILE), "{}", serve.logs());
    let mut acked = deliver(&serve, &runs("bad", 1100), 0).await;
    let good = deliver(&serve, &runs("good", 100), 0).await;
    assert_eq!(good.len(), 100, "{}", serve.logs());
    let good_runs: HashSet<String> = good.keys().cloned().collect();
    wait_called(&serve, &calls, &good_runs, Duration::from_secs(120));
    acked.extend(good);
    let (status, logs) = serve.stop();
    assert!(status.success(), "{status:?}\n{logs}");
    let dead = dir.join(DEFAULT_FILE);
    assert_accounted(&acked, &calls, &dead);
    let kept = letters(&dead).len();
    println!(
        "default sink: {} acknowledged, {kept} dead letters in {}, {} bytes",
        acked.len(),
        dead.display(),
        std::fs::metadata(&dead).unwrap().len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A dead-letter file at its budget (1 MiB; letters of about 8 KiB): its deliveries are
/// parked, `/readyz` answers 503 naming the sink, the metric counts them, good runs keep
/// being processed, and after SIGTERM the parked letters are written past the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sink_at_its_budget_parks_its_deliveries_and_the_workers_go_on() {
    let dir = scratch("budget");
    let calls = dir.join("calls.txt");
    let dead = dir.join("dead.jsonl");
    let extra = [
        "--dead-letters",
        dead.to_str().unwrap(),
        "--dead-letters-max-mib",
        "1",
    ];
    let serve = start(&dir, &calls, &extra);
    let (status, body) = readyz(&serve).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let mut acked = deliver(&serve, &runs("bad", 1100), 8 * 1024).await;
    // Refusing: said by /readyz and the metrics while the good runs go through.
    let until = Instant::now() + Duration::from_secs(60);
    let (status, reason) = loop {
        let (status, reason) = readyz(&serve).await;
        if status == 503 || Instant::now() >= until {
            break (status, reason);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 503, "{reason}\n{}", serve.logs());
    assert!(
        reason.contains(&format!("{ROUTE}: dead-letter sink refusing letters")),
        "{reason}"
    );
    let good = deliver(&serve, &runs("good", 100), 0).await;
    assert_eq!(good.len(), 100, "{}", serve.logs());
    let good_runs: HashSet<String> = good.keys().cloned().collect();
    wait_called(&serve, &calls, &good_runs, Duration::from_secs(60));
    let (status, reason) = readyz(&serve).await;
    assert_eq!(status, 503, "the sink still refuses: {reason}");
    let metrics = client()
        .get(format!("{}/metrics", serve.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let parked: u64 = metrics
        .lines()
        .find(|l| l.starts_with("runhook_dead_letters_parked{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(parked > 0, "{metrics}");
    let before = std::fs::metadata(&dead).unwrap().len();
    assert!(before <= 1024 * 1024, "the budget held: {before} bytes");
    acked.extend(good);
    let (status, logs) = serve.stop();
    assert!(status.success(), "{status:?}\n{logs}");
    assert_accounted(&acked, &calls, &dead);
    let after = std::fs::metadata(&dead).unwrap().len();
    println!(
        "budget 1 MiB: {} acknowledged, {parked} parked while refusing (/readyz: {}), file {before} bytes before SIGTERM, {after} after ({} letters)",
        acked.len(),
        reason.trim(),
        letters(&dead).len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An unsigned route: 50 unparseable 1 MiB bodies are answered 202 and kept as a 4 KiB prefix
/// with the body's length and SHA-256; a redrive refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthenticated_letters_keep_a_prefix_and_a_digest() {
    let dir = scratch("unsigned");
    let dead = dir.join("dead.jsonl");
    let calls = dir.join("calls.txt");
    let exec = format!("cat >> {}", calls.display());
    let args = [
        "--path",
        "/hooks/tinyfish",
        "--provider",
        "tinyfish",
        "--unsigned",
        "--exec",
        exec.as_str(),
        "--dead-letters",
        dead.to_str().unwrap(),
    ];
    let serve = start_serve(&dir, &args, &[]);
    let url = format!("{}/hooks/tinyfish", serve.base);
    let mut digests = HashSet::new();
    for i in 0..50 {
        let body: Vec<u8> = format!("not json {i} ")
            .into_bytes()
            .into_iter()
            .chain(std::iter::repeat_n(b'x', 1024 * 1024))
            .collect();
        digests.insert(hex::encode(sha2::Sha256::digest(&body)));
        let status = common::post(&client(), &url, &[], &body).await;
        assert_eq!(status, 202, "{}", serve.logs());
    }
    serve.stop_ok();
    let written = std::fs::metadata(&dead).unwrap().len();
    let lines = json_lines(&dead);
    assert_eq!(lines.len(), 50);
    for line in &lines {
        assert_eq!(line["reason_code"], "unparseable");
        assert_eq!(line["body"].as_str().unwrap().len(), 4096);
        let prefix = line["body"].as_str().unwrap();
        let head = prefix.find('x').unwrap();
        assert_eq!(line["truncated"]["len"], (1024 * 1024 + head) as u64);
        assert!(digests.contains(line["truncated"]["sha256"].as_str().unwrap()));
    }
    assert!(written < 512 * 1024, "{written} bytes for 50 letters");
    let config = dir.join("runhook.toml");
    let toml = format!(
        "[handler]\nexec = {exec:?}\n\n[[route]]\npath = \"/hooks/tinyfish\"\nprovider = \"tinyfish\"\nunsigned = true\n"
    );
    std::fs::write(&config, toml).unwrap();
    let redrive = common::runhook(&[
        "dead-letters",
        "redrive",
        "--file",
        dead.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&redrive.stdout),
        String::from_utf8_lossy(&redrive.stderr)
    );
    assert!(said.contains("cannot be replayed faithfully"), "{said}");
    assert_eq!(json_lines(&dead).len(), 50, "nothing redriven: {said}");
    assert!(!calls.exists(), "the handler never ran");
    println!("unsigned route: 50 unparseable 1 MiB bodies -> {written} bytes of dead letters");
    std::fs::remove_dir_all(&dir).unwrap();
}
