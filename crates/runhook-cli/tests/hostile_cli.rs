//! `runhook serve` attacked over loopback, the real binary under the file limits it gets in
//! production: slow headers (H1), huge unfinished headers, accept errors, and unauthenticated
//! bodies that stall (H2). Genuine signed deliveries sent meanwhile must keep their 200 within
//! a second, and the server's memory must stay bounded and come back.
//!
//! The tests run one at a time (each holds a thousand sockets and measures the server).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod common;
use common::{skyvern_post, skyvern_route, start_serve_under_ulimit, unique, Started as Serve};

const SKYVERN_KEY: &str = "sk_test_hostile_cli";
const ROUTE: &str = "/webhooks/skyvern";

/// One attack at a time: each measures the server while holding a thousand sockets.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("runhook-hostile-{name}"))
}

/// Raises this test process's soft open-files limit to its hard one, to hold the attackers'
/// sockets; fails loudly if that is still too few for `needed`.
fn enough_fds(needed: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(
        soft >= needed,
        "this test needs {needed} open files, the limit is {soft}"
    );
}

/// `serve` with one Skyvern route writing runs to a JSON-lines file, under `ulimit`, with
/// `extra` flags.
fn start(dir: &Path, ulimit: &str, extra: &[&str]) -> Serve {
    let jsonl = dir.join("events.jsonl");
    let mut args = skyvern_route(ROUTE);
    args.extend(["--jsonl", jsonl.to_str().unwrap(), "--log-format", "json"]);
    args.extend(extra);
    start_serve_under_ulimit(dir, ulimit, &args, &[("SKYVERN_API_KEY", SKYVERN_KEY)])
}

/// A client that opens a new connection for each request.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Posts one signed run on a new connection: its status (`None`: no answer) and how long the
/// answer took.
async fn genuine(serve: &Serve, name: &str) -> (Option<u16>, Duration) {
    let run = unique(name);
    let body = runhook_testkit::skyvern::completed_body(&run);
    let url = format!("{}{ROUTE}", serve.base);
    let started = Instant::now();
    let answer = skyvern_post(&fresh_client(), &url, SKYVERN_KEY, &body)
        .send()
        .await;
    (answer.ok().map(|r| r.status().as_u16()), started.elapsed())
}

/// `count` genuine deliveries, one every `every`: each must be answered 200 within 1 s.
/// Returns the slowest answer.
async fn genuine_all_fast(serve: &Serve, count: usize, every: Duration) -> Duration {
    let mut slowest = Duration::ZERO;
    for i in 0..count {
        let (status, took) = genuine(serve, &format!("tsk_genuine_{i}")).await;
        assert_eq!(
            status,
            Some(200),
            "delivery {i} after {took:?}\n{}",
            serve.logs()
        );
        assert!(took < Duration::from_secs(1), "delivery {i} took {took:?}");
        slowest = slowest.max(took);
        tokio::time::sleep(every).await;
    }
    slowest
}

/// A field of `/proc/PID/status` in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The CPU time `pid` has used (user and system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Per trickling connection: when it was opened, and when the server closed it.
type Held = Arc<Mutex<Vec<(Instant, Option<Instant>)>>>;

/// Connections that each sent a request line and then send one header byte a second, never
/// finishing their headers; each notes when the server closed it.
struct Tricklers {
    stop: Arc<AtomicBool>,
    times: Held,
    thread: Option<JoinHandle<()>>,
}

impl Tricklers {
    fn open(base: &str, count: usize) -> Self {
        let address = base.trim_start_matches("http://").to_owned();
        let mut streams = Vec::with_capacity(count);
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            let mut stream = TcpStream::connect(&address).unwrap();
            let start = format!("POST {ROUTE} HTTP/1.1\r\nhost: {address}\r\nx-slow: ");
            // The server may close it at once (past its connection cap): then the write fails.
            let _ = stream.write_all(start.as_bytes());
            stream.set_nonblocking(true).unwrap();
            times.push((Instant::now(), None));
            streams.push(stream);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let times = Arc::new(Mutex::new(times));
        let (stopped, noted) = (stop.clone(), times.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while !stopped.load(Ordering::Relaxed) {
                for (i, stream) in streams.iter_mut().enumerate() {
                    let closed = match stream.read(&mut buf) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    };
                    let mut times = noted.lock().unwrap();
                    if closed {
                        times[i].1.get_or_insert_with(Instant::now);
                    } else if times[i].1.is_none() {
                        let _ = stream.write(b"a");
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Self {
            stop,
            times,
            thread: Some(thread),
        }
    }

    /// How many the server has closed.
    fn closed(&self) -> usize {
        let times = self.times.lock().unwrap();
        times.iter().filter(|(_, closed)| closed.is_some()).count()
    }

    /// The longest any was held open (those still open: until now).
    fn longest_held(&self) -> Duration {
        let times = self.times.lock().unwrap();
        times
            .iter()
            .map(|(opened, closed)| closed.unwrap_or_else(Instant::now) - *opened)
            .max()
            .unwrap_or_default()
    }

    /// Waits at most `limit` for the server to have closed every one.
    fn wait_all_closed(&self, limit: Duration) {
        let count = self.times.lock().unwrap().len();
        let started = Instant::now();
        while self.closed() < count && started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(200));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_tricklers_under_a_soft_fd_limit_are_closed_and_others_answered() {
    let _one = ONE_AT_A_TIME.lock().await;
    enough_fds(1_300);
    let dir = scratch("soft");
    // The default header-read timeout (10 s).
    let serve = start(&dir, "-Sn 1024", &[]);
    let tricklers = tokio::task::block_in_place(|| Tricklers::open(&serve.base, 1_100));
    assert_eq!(tricklers.closed(), 0, "{}", serve.logs());
    // Deliveries spread over the tricklers' life: each answered 200 within 1 s.
    let slowest = genuine_all_fast(&serve, 8, Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| tricklers.wait_all_closed(Duration::from_secs(30)));
    let held = tricklers.longest_held();
    assert_eq!(tricklers.closed(), 1_100, "{}", serve.logs());
    assert!(held <= Duration::from_secs(30), "held {held:?}");
    let logs = serve.logs();
    assert!(logs.contains(r#""max_connections":16384"#), "{logs}");
    eprintln!("soft limit 1024, 1100 tricklers: slowest genuine answer {slowest:?}, longest trickler held {held:?}");
    drop(tricklers);
    serve.stop_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_hard_fd_limit_serve_refuses_past_its_cap_and_recovers() {
    let _one = ONE_AT_A_TIME.lock().await;
    enough_fds(1_300);
    let dir = scratch("hard");
    // The default header-read timeout (10 s).
    let serve = start(&dir, "-n 1024", &[]);
    let tricklers = tokio::task::block_in_place(|| Tricklers::open(&serve.base, 1_100));
    // Past the cap (1024 - 128 = 896) the rest were accepted and closed at once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refused_at_once = tricklers.closed();
    assert_eq!(refused_at_once, 1_100 - 896, "{}", serve.logs());
    // So is a genuine delivery while the cap is full: refused fast, never left hanging (its
    // sender retries).
    let (during, took) = genuine(&serve, "tsk_during_full").await;
    assert_eq!(during, None, "{}", serve.logs());
    assert!(took < Duration::from_secs(1), "{took:?}");
    tokio::task::block_in_place(|| tricklers.wait_all_closed(Duration::from_secs(30)));
    assert_eq!(tricklers.closed(), 1_100, "{}", serve.logs());
    // Recovered by itself: every delivery answered again.
    let slowest = genuine_all_fast(&serve, 3, Duration::from_millis(200)).await;
    let logs = serve.logs();
    assert!(logs.contains(r#""max_connections":896"#), "{logs}");
    assert!(logs.contains("connection cap reached"), "{logs}");
    eprintln!("hard limit 1024, 1100 tricklers: {refused_at_once} closed at once; a delivery while full: {during:?} after {took:?}; after the header timeout: slowest {slowest:?}");
    drop(tricklers);
    serve.stop_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_pause_without_spinning_and_serve_recovers() {
    let _one = ONE_AT_A_TIME.lock().await;
    enough_fds(400);
    let dir = scratch("emfile");
    // A cap above what the fd limit allows: accept itself fails with EMFILE.
    let serve = start(
        &dir,
        "-n 64",
        &[
            "--max-connections",
            "1000",
            "--header-read-timeout-secs",
            "3",
        ],
    );
    let pid = serve.child.id();
    let tricklers = tokio::task::block_in_place(|| Tricklers::open(&serve.base, 120));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ticks = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // 100 ticks a second per core: a spinning accept loop would use about 200.
    let used = cpu_ticks(pid) - ticks;
    assert!(used < 40, "{used} ticks in 2 s\n{}", serve.logs());
    tokio::task::block_in_place(|| tricklers.wait_all_closed(Duration::from_secs(30)));
    assert_eq!(tricklers.closed(), 120, "{}", serve.logs());
    let slowest = genuine_all_fast(&serve, 3, Duration::from_millis(200)).await;
    let logs = serve.logs();
    assert!(
        logs.contains("cannot accept connections; pausing"),
        "{logs}"
    );
    eprintln!(
        "fd limit 64, 120 tricklers: {used} CPU ticks in 2 s of EMFILE; after: slowest {slowest:?}"
    );
    drop(tricklers);
    serve.stop_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_unfinished_headers_are_refused_at_64_kib() {
    let _one = ONE_AT_A_TIME.lock().await;
    enough_fds(1_300);
    let dir = scratch("headers");
    let serve = start(&dir, "-Sn 1024", &[]);
    let pid = serve.child.id();
    let before = status_kb(pid, "VmRSS");
    let address = serve.base.trim_start_matches("http://").to_owned();
    let header = format!("x-big: {}\r\n", "h".repeat(4_000));
    let streams: Vec<TcpStream> = tokio::task::block_in_place(|| {
        (0..1_000)
            .map(|_| {
                let mut stream = TcpStream::connect(&address).unwrap();
                stream
                    .set_write_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let _ = stream.write_all(format!("POST {ROUTE} HTTP/1.1\r\n").as_bytes());
                for _ in 0..95 {
                    // Refused (431) and closed past 64 KiB: the rest cannot be written.
                    if stream.write_all(header.as_bytes()).is_err() {
                        break;
                    }
                }
                stream
            })
            .collect()
    });
    let slowest = genuine_all_fast(&serve, 3, Duration::from_millis(200)).await;
    let peak = status_kb(pid, "VmHWM");
    drop(streams);
    let grew_mb = peak.saturating_sub(before) / 1024;
    assert!(grew_mb < 100, "RSS {before} kB before, peak {peak} kB");
    eprintln!("1000 x 95 x 4 KB unfinished headers: RSS {before} kB before, peak {peak} kB (+{grew_mb} MB); slowest genuine {slowest:?}");
    serve.stop_ok();
}

/// Opens `count` connections that each declare a `declared`-byte body, send `sent` bytes of
/// it and stall; returns them (still open unless the server closed them) and how many the
/// server answered 503 before they were done writing.
fn stalled_bodies(address: &str, count: usize, declared: usize, sent: usize) -> Vec<TcpStream> {
    let head = format!(
        "POST {ROUTE} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\nx-skyvern-signature: forged\r\ncontent-length: {declared}\r\n\r\n"
    );
    let body = vec![b'['; sent];
    (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(address).unwrap();
            stream
                .set_write_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            // Refused past the budget (503, closed): the rest cannot be written.
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(&body));
            stream
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_unauthenticated_bodies_stay_within_the_budget_and_memory_comes_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    enough_fds(1_300);
    let dir = scratch("bodies");
    let serve = start(&dir, "-Sn 1024", &[]);
    let pid = serve.child.id();
    let before = status_kb(pid, "VmRSS");
    let address = serve.base.trim_start_matches("http://").to_owned();
    // 1 000 connections, each half of a 2 MiB body, then stalling.
    let attack = tokio::task::spawn_blocking(move || {
        stalled_bodies(&address, 1_000, 2 * 1024 * 1024, 1024 * 1024)
    });
    let mut slowest = Duration::ZERO;
    let mut sent = 0;
    while !attack.is_finished() {
        let (status, took) = genuine(&serve, &format!("tsk_during_{sent}")).await;
        assert_eq!(status, Some(200), "after {took:?}\n{}", serve.logs());
        assert!(took < Duration::from_secs(1), "took {took:?}");
        slowest = slowest.max(took);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let streams = attack.await.unwrap();
    slowest = slowest.max(genuine_all_fast(&serve, 3, Duration::from_millis(300)).await);
    let peak = status_kb(pid, "VmHWM");
    // The server closes the stalled ones at its body read timeout (10 s); then they are gone.
    tokio::time::sleep(Duration::from_secs(11)).await;
    drop(streams);
    let closed = Instant::now();
    let mut after = status_kb(pid, "VmRSS");
    while after >= 100 * 1024 && closed.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = status_kb(pid, "VmRSS");
    }
    let back_in = closed.elapsed();
    eprintln!("1000 stalled half bodies of 2 MiB: RSS {before} kB before, peak {peak} kB, {after} kB {back_in:?} after they closed; {} genuine deliveries meanwhile, slowest {slowest:?}", sent + 3);
    assert!(peak < 300 * 1024, "peak RSS {peak} kB");
    assert!(after < 100 * 1024, "RSS {after} kB {back_in:?} after");
    assert!(sent >= 1, "no delivery was sent during the attack");
    serve.stop_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_path_secret_is_refused_before_its_body_is_read() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = scratch("path-secret");
    let jsonl = dir.join("events.jsonl");
    let args = [
        "--path",
        "/hooks/tinyfish/{secret}",
        "--provider",
        "tinyfish",
        "--secret-env",
        "TINYFISH_PATH_SECRET",
        "--jsonl",
        jsonl.to_str().unwrap(),
    ];
    let secret = unique("tf-secret");
    let env = [("TINYFISH_PATH_SECRET", secret.as_str())];
    let serve = start_serve_under_ulimit(&dir, "-Sn 1024", &args, &env);
    let address = serve.base.trim_start_matches("http://").to_owned();
    // A forged delivery declaring 2 MiB and sending none of it: answered 401 at once, not
    // after the body read timeout (10 s).
    let answer = tokio::task::block_in_place(|| {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let head = format!("POST /hooks/tinyfish/wrong HTTP/1.1\r\nhost: {address}\r\ncontent-length: 2097152\r\n\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap_or(0);
        (
            String::from_utf8_lossy(&buf[..n]).into_owned(),
            started.elapsed(),
        )
    });
    assert!(answer.0.starts_with("HTTP/1.1 401"), "{answer:?}");
    assert!(answer.1 < Duration::from_secs(1), "{answer:?}");
    // The right secret: read, processed, 200.
    let run = unique("tf_run");
    let body = format!(
        r#"{{"event":"run.completed","run_id":"{run}","status":"COMPLETED","data":{{"id":"{run}","result":{{"ok":true}}}}}}"#
    );
    let url = format!("{}/hooks/tinyfish/{secret}", serve.base);
    let status = fresh_client()
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200, "{}", serve.logs());
    eprintln!(
        "forged path secret with 2 MiB declared, no body sent: 401 after {:?}",
        answer.1
    );
    serve.stop_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_kept_alive_connection_is_closed_at_the_idle_timeout() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = scratch("idle");
    let serve = start(&dir, "-Sn 1024", &["--idle-timeout-secs", "2"]);
    let address = serve.base.trim_start_matches("http://").to_owned();
    let closed_after = tokio::task::block_in_place(|| {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let request = format!("GET /healthz HTTP/1.1\r\nhost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        // Kept alive, and then silent: closed by the idle timeout (2 s), well before the
        // header-read timeout (10 s) would.
        let answered = Instant::now();
        while stream.read(&mut buf).unwrap_or(0) > 0 {}
        answered.elapsed()
    });
    assert!(
        closed_after >= Duration::from_millis(1500) && closed_after < Duration::from_secs(5),
        "closed {closed_after:?} after the answer"
    );
    eprintln!(
        "idle timeout 2 s: a silent kept-alive connection closed {closed_after:?} after its answer"
    );
    serve.stop_ok();
}
