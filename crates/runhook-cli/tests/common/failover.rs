//! The kill test every durable `serve --queue` shares: two instances on one queue, 2000
//! deliveries (30% duplicates) from retrying senders spread over both, one instance killed
//! with SIGKILL while its workers are busy and restarted: every run is processed, none is
//! lost, and a run is handled twice only if it was in the killed instance's hands.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runhook_testkit::skyvern::signed_headers;

use super::{line_counts, scratch, skyvern_body, skyvern_route, start_serve, Started as Serve};

pub const SKYVERN_KEY: &str = "sk_test_failover_cli";
pub const WORKERS: usize = 4;
const DELIVERIES: usize = 2000;
const UNIQUE: usize = 1400;
const CONCURRENCY: usize = 16;

/// The queue under test: how `serve` is pointed at it, and what it holds.
#[allow(async_fn_in_trait)]
pub trait Queue {
    /// The `serve` arguments that select the queue and its store.
    fn args(&self) -> Vec<String>;
    /// The most runs one instance holds beyond its workers (a read batch).
    fn read_batch(&self) -> usize;
    /// The run ids of the deliveries `consumer` had taken and not settled.
    async fn in_hands(&self, consumer: &str) -> HashSet<String>;
    /// Deliveries left in the queue (waiting, running or unsettled).
    async fn backlog(&self) -> usize;
}

impl Serve {
    /// Starts it with JSON logs.
    fn start_logging_json(dir: &Path, args: &[&str]) -> Self {
        let mut args = args.to_vec();
        args.extend(["--log-format", "json"]);
        start_serve(dir, &args, &[("SKYVERN_API_KEY", SKYVERN_KEY)])
    }

    /// The consumer name this instance logged at start.
    fn logged_consumer(&self) -> String {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|l| l["fields"]["consumer"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no consumer in the logs:\n{}", self.logs()))
    }

    fn kill_9_now(&mut self) {
        let status = Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap();
    }
}

/// The order of deliveries: every run once, and for 3 runs in 7 a duplicate a few
/// deliveries later (often while the first is still in flight): 1400 + 600 = 2000.
fn schedule() -> Vec<usize> {
    let mut order = Vec::with_capacity(DELIVERIES);
    let mut later: Vec<(usize, usize)> = Vec::new();
    for run in 0..UNIQUE {
        order.push(run);
        if run % 7 < 3 {
            later.push((order.len() + 2 + run % 40, run));
        }
        later.retain(|&(at, dup)| {
            if at <= order.len() {
                order.push(dup);
                false
            } else {
                true
            }
        });
    }
    order.extend(later.into_iter().map(|(_, dup)| dup));
    assert_eq!(order.len(), DELIVERIES);
    order
}

#[derive(Default)]
struct Tally {
    sent: AtomicUsize,
    retried_503: AtomicUsize,
    retried_connection: AtomicUsize,
}

/// Posts `body` like TinyFish would: a 5xx or a network error is retried (here a few more
/// times than TinyFish's 4 attempts, switching instance as a load balancer would).
async fn deliver(
    client: &reqwest::Client,
    instances: &Mutex<[Option<String>; 2]>,
    prefer: usize,
    path: &str,
    body: Vec<u8>,
    tally: &Tally,
) {
    let headers = signed_headers(SKYVERN_KEY, &body);
    for attempt in 0..20u64 {
        let base = {
            let up = instances.lock().unwrap();
            up[prefer].clone().or_else(|| up[1 - prefer].clone())
        };
        let Some(base) = base else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let sent = headers
            .iter()
            .fold(client.post(format!("{base}{path}")), |r, (name, value)| {
                r.header(*name, value)
            })
            .body(body.clone())
            .send()
            .await;
        match sent.map(|r| r.status().as_u16()) {
            Ok(200) => return,
            Ok(503) => {
                tally.retried_503.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
            }
            Ok(status) => panic!("unexpected answer {status}"),
            Err(_) => {
                tally.retried_connection.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    panic!("a delivery was never acknowledged");
}

/// Two instances sharing `queue` (`--lease-secs LEASE` if given), 2000 deliveries over both
/// to the route at `path`, the first SIGKILLed halfway and restarted 0.3 s later; every
/// acknowledged run must be processed within `within` of the restart. Run ids start with
/// `tag`. Returns the time from the restart until the last run was processed.
pub async fn kill_9_scenario(
    queue: &impl Queue,
    tag: &str,
    path: &str,
    lease_secs: Option<&str>,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    let dir = scratch(&format!("runhook-failover-cli-{tag}"));
    let calls_file = dir.join("calls.log");
    let path = path.to_string();
    let command = format!(
        r#"echo "$RUNHOOK_RUN_ID" >> {}; sleep 0.02"#,
        calls_file.display()
    );
    let workers = WORKERS.to_string();
    let queue_args = queue.args();
    let mut args = skyvern_route(&path);
    args.extend(["--exec", &command, "--workers", &workers]);
    args.extend(queue_args.iter().map(String::as_str));
    if let Some(lease) = lease_secs {
        args.extend(["--lease-secs", lease]);
    }
    let mut first = Serve::start_logging_json(&dir, &args);
    let second = Serve::start_logging_json(&dir, &args);
    let first_consumer = first.logged_consumer();
    let instances = Arc::new(Mutex::new([
        Some(first.base.clone()),
        Some(second.base.clone()),
    ]));

    let runs: Vec<String> = (0..UNIQUE).map(|i| format!("{tag}_{i}")).collect();
    let order = Arc::new(schedule());
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Tally::default());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let senders: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, instances, order, next, tally, runs, path) = (
                client.clone(),
                instances.clone(),
                order.clone(),
                next.clone(),
                tally.clone(),
                runs.clone(),
                path.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&run) = order.get(k) else { return };
                    let body = skyvern_body(&runs[run]);
                    deliver(&client, &instances, k % 2, &path, body, &tally).await;
                    tally.sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // Halfway, with a backlog in the queue and every worker busy: SIGKILL the first.
    while tally.sent.load(Ordering::Relaxed) < DELIVERIES / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    instances.lock().unwrap()[0] = None;
    first.kill_9_now();
    let killed_at = started.elapsed();
    let in_flight = queue.in_hands(&first_consumer).await;
    let processed_before_kill = line_counts(&calls_file).len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = Serve::start_logging_json(&dir, &args);
    let restarted_at = Instant::now();
    instances.lock().unwrap()[0] = Some(restarted.base.clone());
    for sender in senders {
        sender.await.unwrap();
    }
    let all_sent = started.elapsed();

    // Every run processed within `within` of the restart, then the queue settles (what the
    // dead consumer held taken over and settled).
    let deadline = restarted_at + within;
    // When everything the killed consumer held was taken over.
    let mut taken_over_at = None;
    loop {
        if taken_over_at.is_none() && queue.in_hands(&first_consumer).await.is_empty() {
            taken_over_at = Some(started.elapsed());
        }
        let calls = line_counts(&calls_file);
        if runs.iter().all(|r| calls.contains_key(r)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {UNIQUE} runs processed {within:?} after the restart\n{}",
            calls.len(),
            second.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_processed = started.elapsed();
    let failover = restarted_at.elapsed();
    // The queue settles after the runs are processed: the last duplicates of runs already
    // done are acknowledged by the next takeover scan (every min_idle / 10). The promise
    // checked above is the processing; settling gets its own, later bound.
    let deadline = Instant::now().max(deadline) + Duration::from_secs(30);
    loop {
        let len = queue.backlog().await;
        if len == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{len} deliveries left in the queue"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = started.elapsed();
    eprintln!("queue settled at {settled:.1?}");
    // Let a late extra call, if any, show.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let calls = line_counts(&calls_file);
    let total: usize = calls.values().sum();
    let extra = total - UNIQUE;
    let twice: Vec<&String> = calls
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(r, _)| r)
        .collect();
    let foreign: Vec<&String> = calls.keys().filter(|r| !r.starts_with(tag)).collect();
    let tally = &*tally;
    println!(
        "e2e: {DELIVERIES} deliveries ({UNIQUE} runs, {} duplicates) over 2 instances; \
         SIGKILL at {killed_at:.1?} after {processed_before_kill} runs processed; \
         {} deliveries in the killed instance's hands (bound: \
         {WORKERS} workers + {} read batch); handler calls {total}, extra {extra} \
         (runs handled twice: {}); 503 retries {}, connection retries {}; \
         all acknowledged at {all_sent:.1?}, all processed at {all_processed:.1?} \
         ({failover:.1?} after the restart); what the killed consumer held all taken over by \
         {taken_over_at:.1?}",
        DELIVERIES - UNIQUE,
        in_flight.len(),
        queue.read_batch(),
        twice.len(),
        tally.retried_503.load(Ordering::Relaxed),
        tally.retried_connection.load(Ordering::Relaxed),
    );
    assert!(foreign.is_empty(), "calls for unknown runs: {foreign:?}");
    assert!(!in_flight.is_empty(), "the killed instance was not busy");
    assert!(
        in_flight.len() <= WORKERS + queue.read_batch(),
        "{in_flight:?}"
    );
    for run in &twice {
        assert!(
            in_flight.contains(*run),
            "{run} was handled twice but was not in the killed instance's hands"
        );
    }
    // Handler calls run only on workers: at most one per worker was cut short by the kill.
    assert!(extra <= WORKERS, "{extra} extra handler calls");

    for serve in [second, restarted] {
        serve.stop_ok();
    }
    eprintln!("stopped at {:.1?}", started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
    failover
}
