//! What `runhook serve` promises about acknowledged deliveries, end to end against the real
//! binary and a real Redis: a full backlog answers 503 with `Retry-After` and never loses or
//! trims anything; run ids up to 256 bytes are processed and longer ones are dead-lettered with
//! their body; `--redis-prefix` keeps two deployments on one Redis apart.
//!
//! Needs Redis on 127.0.0.1:6379 (fails without).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{
    client, delete_matching, json_lines, keys, line_counts, post_json, redis, redis_url,
    require_redis, scratch, skyvern_body, skyvern_post, skyvern_route, start_serve, unique,
    wait_for, xlen, Started as Serve,
};

const SKYVERN_KEY: &str = "sk_test_guarantees_cli";
const TINYFISH_PATH: &str = "tfGuarantees7Qx";

impl Serve {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let env = [
            ("SKYVERN_API_KEY", SKYVERN_KEY),
            ("TINYFISH_PATH_SECRET", TINYFISH_PATH),
        ];
        start_serve(dir, args, &env)
    }
}

fn tinyfish_body(run_id: &str) -> Vec<u8> {
    format!(
        r#"{{"event":"run.completed","run_id":"{run_id}","status":"COMPLETED","data":{{"id":"{run_id}","result":{{"ok":true}}}}}}"#
    )
    .into_bytes()
}

/// Posts a signed Skyvern delivery; the status and the `Retry-After` header, if any.
async fn post_skyvern(client: &reqwest::Client, url: &str, body: &[u8]) -> (u16, Option<String>) {
    let response = skyvern_post(client, url, SKYVERN_KEY, body)
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (response.status().as_u16(), retry_after)
}

/// Waits (at most 20 s) until `done` holds for what `read` returns, and returns that.
async fn read_until<T>(what: &str, read: impl Fn() -> T, done: impl Fn(&T) -> bool) -> T {
    wait_for(Duration::from_secs(20), what, || {
        Some(read()).filter(|v| done(v))
    })
    .await
}

/// Whether `key` exists.
async fn exists(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

/// Sends `runs` (8 at a time) to a route whose one worker is stuck behind a gate file, then
/// opens the gate; every run answered 200 is processed exactly once; every run answered 503
/// (always with a `Retry-After`) is sent again until 200, and is then processed exactly once.
/// Returns how many were accepted before the gate opened.
async fn backlog_scenario(
    serve: &Serve,
    path: &str,
    gate: &Path,
    calls: &Path,
    runs: &[String],
) -> usize {
    let client = client();
    let url = format!("{}{path}", serve.base);
    let answers: Vec<(String, u16, Option<String>)> = {
        let next = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(runs.to_vec());
        let senders: Vec<_> = (0..8)
            .map(|_| {
                let (client, url, next, runs) =
                    (client.clone(), url.clone(), next.clone(), runs.clone());
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    while let Some(run) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let (status, retry_after) =
                            post_skyvern(&client, &url, &skyvern_body(run)).await;
                        answers.push((run.clone(), status, retry_after));
                    }
                    answers
                })
            })
            .collect();
        let mut answers = Vec::new();
        for sender in senders {
            answers.extend(sender.await.unwrap());
        }
        answers
    };
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for (run, status, retry_after) in answers {
        match status {
            200 => accepted.push(run),
            503 => {
                let seconds: u64 = retry_after
                    .unwrap_or_else(|| panic!("503 without Retry-After for {run}"))
                    .parse()
                    .expect("Retry-After in seconds");
                assert!(seconds >= 1, "Retry-After: {seconds}");
                refused.push(run);
            }
            other => panic!("{run}: unexpected answer {other}\n{}", serve.logs()),
        }
    }
    assert!(
        !refused.is_empty(),
        "nothing was refused: the backlog is not bounded"
    );
    assert!(
        line_counts(calls).is_empty(),
        "the handler ran before the gate opened"
    );

    std::fs::write(gate, "").unwrap();
    let counts = read_until(
        "the acknowledged runs",
        || line_counts(calls),
        |c| accepted.iter().all(|r| c.contains_key(r)),
    )
    .await;
    for run in &refused {
        assert!(
            !counts.contains_key(run),
            "{run} was refused, yet processed"
        );
    }

    // The sender's retries; a short pause stands in for Retry-After to keep the test fast.
    for run in &refused {
        let started = Instant::now();
        loop {
            match post_skyvern(&client, &url, &skyvern_body(run)).await {
                (200, _) => break,
                (503, Some(_)) => {}
                other => panic!("{run}: retry answered {other:?}"),
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{run} never accepted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let counts = read_until(
        "every run",
        || line_counts(calls),
        |c| runs.iter().all(|r| c.contains_key(r)),
    )
    .await;
    // A redelivery of a processed run is acknowledged and not run again.
    for run in runs.iter().take(3) {
        assert_eq!(post_skyvern(&client, &url, &skyvern_body(run)).await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts_after = line_counts(calls);
    assert_eq!(counts, counts_after, "a redelivery ran the handler again");
    assert_eq!(
        counts.len(),
        runs.len(),
        "calls for unknown runs: {counts:?}"
    );
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "runs not processed exactly once: {twice:?}"
    );
    accepted.len()
}

/// One backlog test's files and route: a handler stuck behind `gate` until the test opens it,
/// recording each run id in `calls`.
struct Backlog {
    tag: String,
    dir: std::path::PathBuf,
    gate: std::path::PathBuf,
    calls: std::path::PathBuf,
    path: String,
}

impl Backlog {
    fn new(tag: &str) -> Self {
        let tag = unique(tag);
        let dir = scratch(&format!("runhook-guarantees-{tag}"));
        Self {
            gate: dir.join("gate"),
            calls: dir.join("calls"),
            path: format!("/webhooks/{tag}/skyvern"),
            tag,
            dir,
        }
    }

    /// `serve` on the gated route with one worker, `--queue-capacity capacity` and `extra`.
    fn serve(&self, capacity: usize, extra: &[&str]) -> Serve {
        // The handler command: waits for the gate file, then records the run id.
        let command = format!(
            r#"while [ ! -f {} ]; do sleep 0.05; done; echo "$RUNHOOK_RUN_ID" >> {}"#,
            self.gate.display(),
            self.calls.display()
        );
        let capacity = capacity.to_string();
        let mut args = skyvern_route(&self.path);
        args.extend(["--exec", &command, "--workers", "1"]);
        args.extend(["--queue-capacity", &capacity]);
        args.extend_from_slice(extra);
        Serve::start(&self.dir, &args)
    }

    /// [`backlog_scenario`] with `n` runs; the runs and how many were accepted at once.
    async fn run(&self, serve: &Serve, n: usize) -> (Vec<String>, usize) {
        let runs: Vec<String> = (0..n).map(|i| format!("{}_{i}", self.tag)).collect();
        let accepted = backlog_scenario(serve, &self.path, &self.gate, &self.calls, &runs).await;
        (runs, accepted)
    }
}

/// A Redis stream backlog at `--queue-capacity` refuses new deliveries (503, `Retry-After`,
/// claim released) instead of trimming: the stream never holds more than the capacity, and
/// every run, accepted at once or on a retry, is processed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_backlog_past_capacity_answers_503_and_loses_nothing() {
    require_redis();
    const CAPACITY: usize = 20;
    let backlog = Backlog::new("backlog");
    let prefix = backlog.tag.clone();
    let stream = format!("{prefix}:stream:{}", backlog.path);
    let url = redis_url();
    let serve = backlog.serve(
        CAPACITY,
        &[
            "--store",
            &url,
            "--queue",
            "redis-stream",
            "--redis-prefix",
            &prefix,
        ],
    );

    // Watch XLEN for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, stream) = (stop.clone(), stream.clone());
        tokio::spawn(async move {
            let mut conn = redis().await;
            let (mut max, mut samples) = (0, 0usize);
            while !stop.load(Ordering::Relaxed) {
                max = max.max(xlen(&mut conn, &stream).await);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (max, samples)
        })
    };

    let (runs, accepted) = backlog.run(&serve, 100).await;
    stop.store(true, Ordering::Relaxed);
    let (max_len, samples) = watcher.await.unwrap();
    eprintln!(
        "stream backlog: {accepted} of {} accepted while the worker was stuck; \
         max XLEN {max_len} over {samples} samples (capacity {CAPACITY})",
        runs.len()
    );
    // XLEN counts the entry the stuck worker holds: exactly the capacity is accepted.
    assert_eq!(accepted, CAPACITY, "accepted while the worker was stuck");
    assert!(
        max_len <= CAPACITY,
        "the stream held {max_len} > {CAPACITY} entries"
    );
    assert_eq!(max_len, CAPACITY, "the watcher never saw the backlog full");
    let mut conn = redis().await;
    let dead = format!("{stream}:dead");
    assert_eq!(xlen(&mut conn, &dead).await, 0, "dead letters were written");
    serve.stop_ok();
    delete_matching(&mut conn, &format!("{prefix}:*")).await;
    let _ = std::fs::remove_dir_all(&backlog.dir);
}

/// The in-process queue at `--queue-capacity` refuses the same way, and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_queue_past_capacity_answers_503_and_loses_nothing() {
    const CAPACITY: usize = 5;
    let backlog = Backlog::new("membacklog");
    let serve = backlog.serve(CAPACITY, &["--queue", "memory"]);
    let (runs, accepted) = backlog.run(&serve, 40).await;
    eprintln!(
        "memory queue: {accepted} of {} accepted while the worker was stuck (capacity {CAPACITY}, 1 worker)",
        runs.len()
    );
    // The queue holds CAPACITY; the one worker holds one more.
    assert!(
        (CAPACITY..=CAPACITY + 1).contains(&accepted),
        "{accepted} accepted with capacity {CAPACITY} and 1 worker"
    );
    serve.stop_ok();
    let _ = std::fs::remove_dir_all(&backlog.dir);
}

/// A run id of exactly 256 bytes is processed (Skyvern and TinyFish); a 300-byte one is
/// answered 202 and lands in the dead-letter file with its body. Never a 4xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_ids_up_to_256_bytes_are_processed_longer_ones_dead_lettered() {
    require_redis();
    // The store and queue settings of each case.
    let setups = [
        ("memory store", "memory".to_owned(), "memory"),
        ("redis store", redis_url(), "memory"),
        ("redis stream", redis_url(), "redis-stream"),
    ];
    for (name, store, queue) in setups {
        let tag = unique("runid");
        let dir = scratch(&format!("runhook-guarantees-{tag}"));
        let (events, dead) = (dir.join("events.jsonl"), dir.join("dead.jsonl"));
        let config = dir.join("runhook.toml");
        let skyvern_path = format!("/webhooks/{tag}/skyvern");
        let tinyfish_path = format!("/webhooks/{tag}/tinyfish/{{secret}}");
        std::fs::write(
            &config,
            format!(
                r#"
store = "{store}"
queue = "{queue}"
redis_prefix = "{tag}"
dead_letters = "{dead}"

[handler]
jsonl = "{events}"

[[route]]
path = "{skyvern_path}"
provider = "skyvern"
secret_env = "SKYVERN_API_KEY"

[[route]]
path = "{tinyfish_path}"
provider = "tinyfish"
secret_env = "TINYFISH_PATH_SECRET"
"#,
                dead = dead.display(),
                events = events.display(),
            ),
        )
        .unwrap();
        let serve = Serve::start(&dir, &["--config", config.to_str().unwrap()]);
        let client = client();
        let skyvern_url = format!("{}{skyvern_path}", serve.base);
        let tinyfish_url = format!(
            "{}{}",
            serve.base,
            tinyfish_path.replace("{secret}", TINYFISH_PATH)
        );
        // Distinct ids of an exact length: the tag, then padding.
        let id = |kind: &str, len: usize| {
            let mut id = format!("{tag}_{kind}_");
            id.push_str(&"x".repeat(len - id.len()));
            id
        };
        let (sky_ok, sky_long) = (id("s", 256), id("s", 300));
        let (tf_ok, tf_long) = (id("t", 256), id("t", 300));
        assert_eq!((sky_ok.len(), sky_long.len()), (256, 300));

        let deliveries = [
            (&skyvern_url, skyvern_body(&sky_ok), 200),
            (&tinyfish_url, tinyfish_body(&tf_ok), 200),
            (&skyvern_url, skyvern_body(&sky_long), 202),
            (&tinyfish_url, tinyfish_body(&tf_long), 202),
            // A redelivery of a too-long id is answered the same way, not refused.
            (&skyvern_url, skyvern_body(&sky_long), 202),
        ];
        for (url, body, expected) in deliveries {
            let status = if url == &skyvern_url {
                post_skyvern(&client, url, &body).await.0
            } else {
                post_json(&client, url, &body).await
            };
            assert_eq!(
                status,
                expected,
                "{name}: {url}: {:?}",
                std::fs::read_to_string(&dead)
            );
        }

        let processed = read_until(
            "two processed events",
            || json_lines(&events),
            |lines| lines.len() >= 2,
        )
        .await;
        let mut ids: Vec<(&str, &str)> = processed
            .iter()
            .map(|e| {
                (
                    e["provider"].as_str().unwrap(),
                    e["run_id"].as_str().unwrap(),
                )
            })
            .collect();
        ids.sort();
        assert_eq!(
            ids,
            vec![("skyvern", sky_ok.as_str()), ("tinyfish", tf_ok.as_str())],
            "{name}"
        );
        let letters =
            read_until("three dead letters", || json_lines(&dead), |l| l.len() >= 3).await;
        for (letter, (run, body)) in letters.iter().zip([
            (&sky_long, skyvern_body(&sky_long)),
            (&tf_long, tinyfish_body(&tf_long)),
            (&sky_long, skyvern_body(&sky_long)),
        ]) {
            // Genuine but unusable as a key: kept whole, findable by its (whole) run id.
            assert_eq!(letter["reason_code"], "unusable_key", "{name}: {letter}");
            assert!(
                letter["reason"]
                    .as_str()
                    .unwrap()
                    .contains("longer than 256 bytes"),
                "{name}: {letter}"
            );
            assert_eq!(letter["body"], String::from_utf8(body).unwrap(), "{name}");
            assert_eq!(letter["run_id"].as_str(), Some(run.as_str()), "{name}");
        }
        serve.stop_ok();
        assert_eq!(json_lines(&events).len(), 2, "{name}: late events");
        if store != "memory" {
            delete_matching(&mut redis().await, &format!("{tag}:*")).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Two deployments on one Redis and one route path, told apart only by `--redis-prefix`: each
/// processes only what was sent to it, the same run id once in each (separate claims), and
/// every key either writes is under its own prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_prefixes_keep_two_deployments_apart() {
    require_redis();
    let tag = unique("prefix");
    let dir = scratch(&format!("runhook-guarantees-{tag}"));
    let path = format!("/webhooks/{tag}/skyvern");
    let prefixes = [format!("{tag}A"), format!("{tag}B")];
    let events = [dir.join("a.jsonl"), dir.join("b.jsonl")];
    let url = redis_url();
    let serves: Vec<Serve> = (0..2)
        .map(|i| {
            let mut args = skyvern_route(&path);
            args.extend(["--jsonl", events[i].to_str().unwrap(), "--store", &url]);
            args.extend(["--queue", "redis-stream", "--redis-prefix", &prefixes[i]]);
            Serve::start(&dir, &args)
        })
        .collect();
    let client = client();
    let own: [Vec<String>; 2] = [0, 1].map(|i| (0..10).map(|n| format!("{tag}_{i}_{n}")).collect());
    let shared: Vec<String> = (0..5).map(|n| format!("{tag}_both_{n}")).collect();
    for i in 0..2 {
        let url = format!("{}{path}", serves[i].base);
        for run in own[i].iter().chain(&shared) {
            assert_eq!(post_skyvern(&client, &url, &skyvern_body(run)).await.0, 200);
        }
        // A duplicate within one deployment is still suppressed.
        assert_eq!(
            post_skyvern(&client, &url, &skyvern_body(&shared[0]))
                .await
                .0,
            200
        );
    }
    let expected = own[0].len() + shared.len();
    for i in 0..2 {
        let lines = read_until(
            "the events",
            || json_lines(&events[i]),
            |l| l.len() >= expected,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut got: Vec<String> = json_lines(&events[i])
            .iter()
            .map(|e| e["run_id"].as_str().unwrap().to_string())
            .collect();
        got.sort();
        let mut want: Vec<String> = own[i].iter().chain(&shared).cloned().collect();
        want.sort();
        assert_eq!(got, want, "deployment {i} ({} lines)", lines.len());
    }

    let mut conn = redis().await;
    for i in 0..2 {
        let (mine, theirs) = (&prefixes[i], &prefixes[1 - i]);
        let stream = format!("{mine}:stream:{path}");
        let len: usize = xlen(&mut conn, &stream).await;
        assert!(
            exists(&mut conn, &stream).await,
            "no stream {stream} (length {len})"
        );
        for run in own[i].iter().chain(&shared) {
            let claim = format!("{mine}:idem:skyvern:{run}");
            assert!(exists(&mut conn, &claim).await, "no claim {claim}");
        }
        for run in &own[i] {
            let claim = format!("{theirs}:idem:skyvern:{run}");
            let exists = exists(&mut conn, &claim).await;
            assert!(
                !exists,
                "{claim}: a run sent to one deployment claimed in the other"
            );
        }
    }
    // Every key naming this test's path or runs is under one of the two prefixes.
    let all = keys(&mut conn, &format!("*{tag}*")).await;
    assert!(!all.is_empty());
    let stray: Vec<&String> = all
        .iter()
        .filter(|k| !prefixes.iter().any(|p| k.starts_with(&format!("{p}:"))))
        .collect();
    assert!(stray.is_empty(), "keys outside the prefixes: {stray:?}");
    for serve in serves {
        serve.stop_ok();
    }
    for prefix in &prefixes {
        delete_matching(&mut conn, &format!("{prefix}:*")).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
