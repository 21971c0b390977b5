//! `runhook serve`'s shutdown against the real binary over loopback: slow clients never hold
//! it past `--drain-timeout`, SIGHUP drains like SIGTERM, and a second signal ends the drain
//! at once, dead-lettering what was not processed.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod common;
use common::{client, skyvern_post, skyvern_route, start_serve, unique, Started as Serve};

const SKYVERN_KEY: &str = "sk_test_shutdown_cli";
const ROUTE: &str = "/webhooks/skyvern";

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("runhook-shutdown-{name}"))
}

/// `serve` with one Skyvern route running `exec` per run, dead letters in `dir`, and `extra`.
fn start(dir: &Path, exec: &str, extra: &[&str]) -> Serve {
    let dead = dir.join("dead.jsonl");
    let mut args = skyvern_route(ROUTE);
    args.extend(["--exec", exec, "--dead-letters", dead.to_str().unwrap()]);
    args.extend(extra);
    start_serve(dir, &args, &[("SKYVERN_API_KEY", SKYVERN_KEY)])
}

/// A handler that sleeps `secs`, then appends the run id to `calls`.
fn slow_exec(secs: f64, calls: &Path) -> String {
    format!(
        "sleep {secs}; echo \"$RUNHOOK_RUN_ID\" >> {}",
        calls.display()
    )
}

/// Posts one signed run to the route; asserts it was acknowledged.
async fn acknowledged_run(serve: &Serve, name: &str) -> String {
    let run = unique(name);
    let body = format!(r#"{{"run_id":"{run}","task_id":"{run}","status":"completed"}}"#);
    let url = format!("{}{ROUTE}", serve.base);
    let response = skyvern_post(&client(), &url, SKYVERN_KEY, body.as_bytes())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{}", serve.logs());
    run
}

/// Connections that each sent a request line and then send one header byte a second, never
/// finishing their headers.
struct Tricklers {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Tricklers {
    fn open(base: &str, count: usize) -> Self {
        let address = base.trim_start_matches("http://");
        let mut streams: Vec<TcpStream> = (0..count)
            .map(|_| {
                let mut stream = TcpStream::connect(address).unwrap();
                let start = format!("POST {ROUTE} HTTP/1.1\r\nhost: {address}\r\nx-slow: ");
                stream.write_all(start.as_bytes()).unwrap();
                stream
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                for stream in &mut streams {
                    // The server may have closed it: that is what the tests want.
                    let _ = stream.write_all(b"a");
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Tricklers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits at most `limit` for `serve` to exit after `what`; its status and its logs. Fails the
/// test, with the logs, if it is still running then.
fn exit_within(serve: &mut Serve, limit: Duration, what: &str) -> (ExitStatus, String) {
    let status = serve.wait_exit(limit);
    let logs = serve.logs();
    let status = status.unwrap_or_else(|| panic!("still running {limit:?} after {what}\n{logs}"));
    (status, logs)
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn sigterm_with_50_header_trickling_clients_exits_within_the_drain_deadline() {
    let dir = scratch("trickle");
    let calls = dir.join("calls.log");
    let mut serve = start(&dir, &slow_exec(2.0, &calls), &["--drain-timeout", "5"]);
    let tricklers = Tricklers::open(&serve.base, 50);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Acknowledged and still being handled when the signal arrives.
    let run = acknowledged_run(&serve, "tsk_trickle").await;
    let signalled = Instant::now();
    serve.signal("TERM");
    let (status, logs) = exit_within(&mut serve, Duration::from_secs(7), "SIGTERM");
    let took = signalled.elapsed();
    drop(tricklers);
    assert!(status.success(), "{status:?} after {took:?}\n{logs}");
    assert_eq!(lines(&calls), vec![run], "{logs}");
    eprintln!("exited {took:?} after SIGTERM with 50 trickling clients");
}

#[tokio::test]
async fn sighup_drains_the_queue_and_exits() {
    let dir = scratch("hup");
    let calls = dir.join("calls.log");
    let mut serve = start(&dir, &slow_exec(0.5, &calls), &["--workers", "1"]);
    let mut runs = Vec::new();
    for i in 0..3 {
        runs.push(acknowledged_run(&serve, &format!("tsk_hup{i}")).await);
    }
    serve.signal("HUP");
    let (status, logs) = exit_within(&mut serve, Duration::from_secs(10), "SIGHUP");
    assert!(status.success(), "{status:?}\n{logs}");
    assert_eq!(lines(&calls), runs, "{logs}");
    assert!(logs.contains("SIGHUP"), "{logs}");
}

#[tokio::test]
async fn a_second_signal_ends_the_drain_and_dead_letters_what_is_left() {
    let dir = scratch("second");
    let calls = dir.join("calls.log");
    let mut serve = start(&dir, &slow_exec(20.0, &calls), &["--drain-timeout", "30"]);
    let tricklers = Tricklers::open(&serve.base, 1);
    let run = acknowledged_run(&serve, "tsk_second").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    serve.signal("TERM");
    assert!(
        serve.wait_exit(Duration::from_secs(1)).is_none(),
        "the first signal drains (30 s allowed)\n{}",
        serve.logs()
    );
    let signalled = Instant::now();
    serve.signal("INT");
    let (status, logs) = exit_within(&mut serve, Duration::from_secs(3), "a second signal");
    let took = signalled.elapsed();
    drop(tricklers);
    // Not processed: dead-lettered with its body, and the exit status says so.
    assert_eq!(status.code(), Some(1), "{logs}");
    let dead = std::fs::read_to_string(dir.join("dead.jsonl")).unwrap_or_default();
    assert!(dead.contains(&run), "{dead}\n{logs}");
    assert!(lines(&calls).is_empty(), "{logs}");
    eprintln!("exited {took:?} after the second signal");
}
