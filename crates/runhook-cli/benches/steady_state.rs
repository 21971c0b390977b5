//! The background path at steady state: does "ack fast, process in the background" keep up?
//!
//! Three receivers under the same load, side by side in one run:
//! - `hand_written`: axum, hmac-sha256 of `x-skyvern-signature` on the raw body (constant-time
//!   compare with `subtle`), `serde_json::Value`, `run_id` read from it, a
//!   `Mutex<HashSet<String>>`, a bounded (1024) tokio mpsc to a background task that only
//!   counts; 200 when new or duplicate, 503 when the channel is full;
//! - `sdk`: `runhook::Receiver` (Skyvern signature, memory store and queue, the defaults) with a
//!   no-op handler that counts, served by `runhook::axum::post`;
//! - `serve_jsonl`: the real `runhook serve --path /webhooks/skyvern --provider skyvern
//!   --secret-env K --jsonl FILE` (FILE in the temp dir).
//!
//! Load: the 7.7 KB compact Skyvern body of `testdata/skyvern-run-pretty.json`, a distinct run
//! id per request, each signed; 60 000 requests over 32 keep-alive HTTP/1.1 connections. Every
//! request's bytes are built before timing; the client is a minimal tokio TCP client (write
//! the request, read the status line, headers and Content-Length body).
//!
//! Each server runs as its own process pinned to core 0 (`taskset -c 0`; the in-process
//! receivers re-execute this binary); the bench itself, load generator included, re-executes
//! itself under `taskset -c 1`. Per receiver: 2xx/s (only 2xx count: a 503 is shed load), the
//! share of 503s, p50 / p99 latency of the 2xx answers, and processed/s (processed events from
//! the start of the load to the last processed event), and whether processed equals the 2xx
//! count. Receivers run interleaved, `RUNHOOK_STEADY_ROUNDS` times (3); medians are printed.
//!
//! Run: `cargo bench -p runhook-cli --bench steady_state`
//!
//! Knobs (environment): `RUNHOOK_STEADY_REQUESTS` (60000), `RUNHOOK_STEADY_CONNECTIONS` (32),
//! `RUNHOOK_STEADY_ROUNDS` (3), `RUNHOOK_STEADY_ONLY` (comma-separated receiver names, e.g.
//! `sdk,serve_jsonl`; also `ceiling`, a bare axum route that reads the body and answers 200,
//! the client's ceiling, `serve_jsonl_w1`, `runhook serve --jsonl --workers 1`, and the durable
//! hand-offs on the local servers: `serve_redis_stream`, `--store redis://… --queue
//! redis-stream`, and `serve_postgres`, `--store postgres://… --queue postgres`, each round in
//! keys or a schema of its own, removed after),
//! `RUNHOOK_STEADY_SERVE_ARGS` (extra `runhook serve` flags for every serve receiver). Each
//! server's pid is printed before its load, for `perf record -p PID` (raise
//! `RUNHOOK_STEADY_REQUESTS` for a longer load).
//!
//! The closed-loop client sends the next request as soon as an answer arrives, 503s included
//! (no `Retry-After` back-off): shedding is as cheap or as dear as the receiver makes it.
//! Watch the rounds, not only the medians: on one core a receiver whose queue has filled can
//! stay in a shedding regime (most answers 503, its workers starved by the connections), while
//! another round of the same receiver keeps up with no 503 at all.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::StatusCode;
use runhook::canonical::canonicalize;
use runhook::payload::{Provider, RunEvent};
use runhook::verify::sign_skyvern;
use runhook::{Receiver, Secret, SkyvernSignature};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[path = "../../runhook/benches/support/hand_written.rs"]
mod hand_written;

/// The Skyvern API key every request is signed with.
const KEY: &str = "sk_bench_steady_state";
/// The route every receiver serves.
const PATH: &str = "/webhooks/skyvern";
/// The hand-written receiver's channel bound (the SDK's default queue capacity).
const CHANNEL: usize = 1024;
/// Set in the re-executed bench, pinned to the load generator's core.
const PINNED: &str = "RUNHOOK_STEADY_PINNED";
/// The first argument of a re-executed in-process receiver.
const SERVE_ARG: &str = "__steady_serve";

const ALL: [&str; 3] = ["hand_written", "sdk", "serve_jsonl"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(SERVE_ARG) {
        serve_in_process(&args[2]);
        return;
    }
    pin_self(&args);
    orchestrate();
}

fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

// ---------------------------------------------------------------------------------------------
// Pinning

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn have_taskset() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Re-executes the bench under `taskset -c 1` (once), so that the load generator has core 1.
fn pin_self(args: &[String]) {
    if std::env::var_os(PINNED).is_some() {
        return;
    }
    if cpus() < 2 || !have_taskset() {
        eprintln!("warning: fewer than 2 cores or no taskset: server and client are not pinned");
        std::env::set_var(PINNED, "no");
        return;
    }
    use std::os::unix::process::CommandExt as _;
    let err = Command::new("taskset")
        .arg("-c")
        .arg("1")
        .arg(std::env::current_exe().unwrap())
        .args(&args[1..])
        .env(PINNED, "1")
        .exec();
    panic!("cannot re-execute under taskset: {err}");
}

/// `program args` as a command pinned to core 0 when pinning is on.
fn pinned_server(program: &str) -> Command {
    if std::env::var(PINNED).as_deref() == Ok("1") {
        let mut command = Command::new("taskset");
        command.arg("-c").arg("0").arg(program);
        command
    } else {
        Command::new(program)
    }
}

// ---------------------------------------------------------------------------------------------
// The in-process receivers (in a child process)

/// What an in-process receiver's background counted.
#[derive(Default)]
struct Processed {
    count: AtomicU64,
    last_ns: AtomicU64,
}

impl Processed {
    fn bump(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.last_ns.store(unix_ns(), Ordering::Relaxed);
    }

    fn render(&self) -> String {
        format!(
            "processed {} last_ns {}\n",
            self.count.load(Ordering::Relaxed),
            self.last_ns.load(Ordering::Relaxed)
        )
    }
}

/// Serves receiver `kind` on a fresh local port, printing `listening on http://ADDR`, with
/// `GET /stats` answering `processed N last_ns T`. The runtime is `runhook serve`'s
/// (`Runtime::new()`: one worker thread per core this process may use).
fn serve_in_process(kind: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let processed = Arc::new(Processed::default());
        let app = match kind {
            "hand_written" => hand_written(processed.clone()),
            "sdk" => sdk(processed.clone()),
            "ceiling" => axum::Router::new().route(
                PATH,
                axum::routing::post(|_body: Bytes| async { StatusCode::OK }),
            ),
            other => panic!("unknown receiver {other}"),
        };
        let stats = processed.clone();
        let app = app.route(
            "/stats",
            axum::routing::get(move || {
                let stats = stats.clone();
                async move { stats.render() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on http://{}", listener.local_addr().unwrap());
        axum::serve(listener, app).await.unwrap();
    });
}

/// The careful hand-written receiver (see the module docs).
fn hand_written(processed: Arc<Processed>) -> axum::Router {
    let (router, mut rx) = hand_written::route(KEY, PATH, CHANNEL);
    tokio::spawn(async move {
        while let Some(value) = rx.recv().await {
            drop(value);
            processed.bump();
        }
    });
    router
}

/// The SDK with its defaults and a no-op handler that counts.
fn sdk(processed: Arc<Processed>) -> axum::Router {
    let receiver = Receiver::builder(
        Provider::Skyvern,
        SkyvernSignature::new(Secret::new(KEY).unwrap()),
    )
    .handler(move |_event: Arc<RunEvent>| {
        let processed = processed.clone();
        async move {
            processed.bump();
            Ok::<(), std::io::Error>(())
        }
    })
    .build()
    .unwrap();
    axum::Router::new().route(PATH, runhook::axum::post(receiver))
}

// ---------------------------------------------------------------------------------------------
// A running server under test

struct Server {
    kind: &'static str,
    child: Child,
    addr: SocketAddr,
    /// The jsonl file of `runhook serve`.
    jsonl: Option<std::path::PathBuf>,
}

impl Server {
    fn start(kind: &'static str, round: usize) -> Server {
        let (mut command, jsonl) = match kind {
            "serve_jsonl" | "serve_jsonl_w1" | "serve_redis_stream" | "serve_postgres" => {
                let file = std::env::temp_dir().join(format!(
                    "runhook-steady-{}-{round}.jsonl",
                    std::process::id()
                ));
                let _ = std::fs::remove_file(&file);
                let mut command = pinned_server(env!("CARGO_BIN_EXE_runhook"));
                command
                    .args(["serve", "--listen", "127.0.0.1:0", "--path", PATH])
                    .args([
                        "--provider",
                        "skyvern",
                        "--secret-env",
                        "RUNHOOK_STEADY_KEY",
                    ])
                    .arg("--jsonl")
                    .arg(&file)
                    .args(
                        std::env::var("RUNHOOK_STEADY_SERVE_ARGS")
                            .unwrap_or_default()
                            .split_whitespace(),
                    )
                    .args(if kind == "serve_jsonl_w1" {
                        &["--workers", "1"][..]
                    } else {
                        &[]
                    })
                    .args(durable_args(kind, round))
                    .env("RUNHOOK_STEADY_KEY", KEY)
                    .env(
                        "RUST_LOG",
                        std::env::var("RUST_LOG").unwrap_or("info".into()),
                    );
                (command, Some(file))
            }
            _ => {
                let exe = std::env::current_exe().unwrap();
                let mut command = pinned_server(exe.to_str().unwrap());
                command.arg(SERVE_ARG).arg(kind);
                (command, None)
            }
        };
        // The server's logs go to a file (as a deployment's would), never to a full pipe.
        let log = std::env::temp_dir().join(format!(
            "runhook-steady-{}-{kind}-{round}.log",
            std::process::id()
        ));
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot start the server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{kind} exited before listening; see {}", log.display()))
                .unwrap();
            if let Some(addr) = line.strip_prefix("listening on http://") {
                break addr.trim().parse().unwrap();
            }
        };
        // Keep draining its standard output.
        std::thread::spawn(move || for _ in lines {});
        Server {
            kind,
            child,
            addr,
            jsonl,
        }
    }

    /// Processed so far and the time of the last processed event (unix ns).
    async fn processed(&self) -> (u64, u64) {
        if let Some(jsonl) = &self.jsonl {
            let text = http_get(self.addr, "/metrics").await;
            let count = text
                .lines()
                .filter(|l| l.starts_with("runhook_processed_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64;
            let last = std::fs::metadata(jsonl)
                .and_then(|m| m.modified())
                .map_or(0, |t| {
                    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
                });
            (count, last)
        } else {
            let text = http_get(self.addr, "/stats").await;
            let mut words = text.split_whitespace();
            let mut field = |name: &str| {
                assert_eq!(words.next(), Some(name), "/stats: {text}");
                words.next().unwrap().parse::<u64>().unwrap()
            };
            (field("processed"), field("last_ns"))
        }
    }

    /// CPU time the server process has used so far.
    fn cpu(&self) -> Duration {
        proc_cpu(&format!("/proc/{}/stat", self.child.id()))
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(file) = &self.jsonl {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// utime + stime of a `/proc/PID/stat` file.
fn proc_cpu(path: &str) -> Duration {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces), from the state (field 3).
    let rest = &text[text.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Idle and total jiffies of core 0 (`/proc/stat`): how much of the server's core nobody used.
fn core0_idle() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu0 ")) else {
        return (0, 0);
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (idle, fields.iter().take(8).sum())
}

/// A one-off GET (its own connection): the body.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string())
}

// ---------------------------------------------------------------------------------------------
// The load

/// Every request's bytes, made before timing: a distinct run id each, signed.
fn requests(count: usize, addr_placeholder: &str) -> Vec<Bytes> {
    let pretty = runhook_testkit::fixture::SKYVERN_RUN_PRETTY;
    let compact = String::from_utf8(canonicalize(pretty).unwrap()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&compact).unwrap();
    let run_id = value["run_id"].as_str().unwrap().to_owned();
    let key = Secret::new(KEY).unwrap();
    (0..count)
        .map(|i| {
            // Same length for every request: a fixed-width suffix.
            let fresh = format!("{run_id}_{i:08}");
            let body = compact.replacen(
                &format!("\"run_id\":\"{run_id}\""),
                &format!("\"run_id\":\"{fresh}\""),
                1,
            );
            assert_ne!(body, compact, "the run id was not replaced");
            let signature = sign_skyvern(&key, body.as_bytes());
            let head = format!(
                "POST {PATH} HTTP/1.1\r\nhost: {addr_placeholder}\r\ncontent-type: application/json\r\n\
                 x-skyvern-signature: {signature}\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(body.as_bytes());
            Bytes::from(bytes)
        })
        .collect()
}

/// The figures of one load against one server.
struct Load {
    started_ns: u64,
    elapsed: Duration,
    /// (status, latency) of every answer.
    answers: Vec<(u16, Duration)>,
    client_cpu: Duration,
    server_cpu: Duration,
    /// Share of core 0 left idle during the load.
    core0_idle: f64,
}

/// Sends every request of `work` to `server` over `connections` keep-alive connections, each
/// sending its next request when the previous answer is read.
async fn load(server: &Server, work: Arc<Vec<Bytes>>, connections: usize) -> Load {
    let next = Arc::new(AtomicUsize::new(0));
    let client_cpu = proc_cpu("/proc/self/stat");
    let server_cpu = server.cpu();
    let idle = core0_idle();
    let started_ns = unix_ns();
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (work, next, addr) = (work.clone(), next.clone(), server.addr);
            tokio::spawn(async move { connection(addr, &work, &next).await })
        })
        .collect();
    let mut answers = Vec::with_capacity(work.len());
    for task in tasks {
        answers.extend(task.await.unwrap());
    }
    Load {
        started_ns,
        elapsed: started.elapsed(),
        answers,
        client_cpu: proc_cpu("/proc/self/stat") - client_cpu,
        server_cpu: server.cpu() - server_cpu,
        core0_idle: {
            let (idle_now, total_now) = core0_idle();
            (idle_now - idle.0) as f64 / ((total_now - idle.1).max(1)) as f64
        },
    }
}

async fn connection(addr: SocketAddr, work: &[Bytes], next: &AtomicUsize) -> Vec<(u16, Duration)> {
    let mut answers = Vec::new();
    let mut stream: Option<TcpStream> = None;
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(request) = work.get(i) else {
            return answers;
        };
        if stream.is_none() {
            let s = TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).unwrap();
            stream = Some(s);
            buffer.clear();
        }
        let s = stream.as_mut().unwrap();
        let sent = Instant::now();
        s.write_all(request).await.expect("write");
        let (status, close) = read_response(s, &mut buffer).await;
        answers.push((status, sent.elapsed()));
        if close {
            stream = None;
        }
    }
}

/// Reads one response (status line, headers, Content-Length body) from `stream`, keeping what
/// follows it in `buffer`: the status, and whether the server closes the connection.
async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> (u16, bool) {
    let head_end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end + 4;
        }
        fill(stream, buffer).await;
    };
    let head = std::str::from_utf8(&buffer[..head_end]).expect("utf-8 head");
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let mut length = 0usize;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().expect("content-length");
        } else if name.eq_ignore_ascii_case("connection") && value.trim() == "close" {
            close = true;
        }
    }
    while buffer.len() < head_end + length {
        fill(stream, buffer).await;
    }
    buffer.drain(..head_end + length);
    (status, close)
}

async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await.expect("read");
    assert!(n > 0, "the server closed the connection mid-response");
    buffer.extend_from_slice(&chunk[..n]);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// The figures

struct Figures {
    ok_per_s: f64,
    share_503: f64,
    p50: Duration,
    p99: Duration,
    processed_per_s: f64,
    processed: u64,
    ok: u64,
    others: u64,
    client_cpu: f64,
    server_cpu: f64,
    /// Server CPU time per answered request, in microseconds: robust to the CPU that other
    /// processes take from the pinned core.
    server_us_per_request: f64,
    core0_idle: f64,
    drain: Duration,
}

/// Waits until the server's processed count equals the 2xx count, or stops growing for 2 s.
async fn measure(server: &Server, load: Load) -> Figures {
    let total = load.answers.len() as f64;
    let ok = load
        .answers
        .iter()
        .filter(|(s, _)| (200..300).contains(s))
        .count() as u64;
    let shed = load.answers.iter().filter(|(s, _)| *s == 503).count() as u64;
    let others = load.answers.len() as u64 - ok - shed;
    let mut ok_latencies: Vec<Duration> = load
        .answers
        .iter()
        .filter(|(s, _)| (200..300).contains(s))
        .map(|(_, l)| *l)
        .collect();
    ok_latencies.sort();
    let pick = |q: f64| {
        ok_latencies
            .get(((ok_latencies.len() as f64 * q) as usize).min(ok_latencies.len().max(1) - 1))
            .copied()
            .unwrap_or_default()
    };
    let load_end = Instant::now();
    let mut last_change = Instant::now();
    let mut seen = server.processed().await;
    while server.kind != "ceiling" && seen.0 < ok && last_change.elapsed() < Duration::from_secs(2)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = server.processed().await;
        if now.0 != seen.0 {
            last_change = Instant::now();
        }
        seen = now;
    }
    let (processed, last_ns) = seen;
    let span = Duration::from_nanos(last_ns.saturating_sub(load.started_ns));
    Figures {
        ok_per_s: ok as f64 / load.elapsed.as_secs_f64(),
        share_503: shed as f64 / total,
        p50: pick(0.50),
        p99: pick(0.99),
        processed_per_s: if span.is_zero() {
            0.0
        } else {
            processed as f64 / span.as_secs_f64()
        },
        processed,
        ok,
        others,
        client_cpu: load.client_cpu.as_secs_f64() / load.elapsed.as_secs_f64(),
        server_cpu: load.server_cpu.as_secs_f64() / load.elapsed.as_secs_f64(),
        server_us_per_request: load.server_cpu.as_secs_f64() * 1e6 / total,
        core0_idle: load.core0_idle,
        drain: last_change.saturating_duration_since(load_end),
    }
}

/// The `serve` flags of a durable hand-off: a Redis stream, or a Postgres queue (in a schema of
/// the round's own, created at start), on the local servers; none for the other kinds.
fn durable_args(kind: &str, round: usize) -> Vec<String> {
    let tag = format!("{}_{round}", std::process::id());
    let args: Vec<String> = match kind {
        "serve_redis_stream" => vec![
            "--store".into(),
            runhook_testkit::redis_url(),
            "--queue".into(),
            "redis-stream".into(),
            "--redis-prefix".into(),
            format!("rh_steady_{tag}"),
        ],
        "serve_postgres" => vec![
            "--store".into(),
            runhook_testkit::postgres_url(),
            "--postgres-schema".into(),
            format!("rh_steady_{tag}"),
            "--migrate".into(),
            "--queue".into(),
            "postgres".into(),
        ],
        _ => Vec::new(),
    };
    args
}

/// Removes what a durable kind's round left in Redis or PostgreSQL.
async fn clean_up(kind: &str, round: usize) {
    let tag = format!("{}_{round}", std::process::id());
    match kind {
        "serve_redis_stream" => {
            let mut conn = runhook_testkit::redis::connection().await;
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("rh_steady_{tag}:*"))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
            }
        }
        "serve_postgres" => {
            use runhook::store::sqlx;
            if let Ok(pool) = sqlx::PgPool::connect(&runhook_testkit::postgres_url()).await {
                let drop = format!("DROP SCHEMA IF EXISTS rh_steady_{tag} CASCADE");
                let _ = sqlx::query(&drop).execute(&pool).await;
            }
        }
        _ => {}
    }
}

fn median<T>(values: &[T], key: impl Fn(&T) -> f64) -> f64 {
    let mut keys: Vec<f64> = values.iter().map(key).collect();
    keys.sort_by(f64::total_cmp);
    keys[keys.len() / 2]
}

fn orchestrate() {
    let count = env_usize("RUNHOOK_STEADY_REQUESTS", 60_000);
    let connections = env_usize("RUNHOOK_STEADY_CONNECTIONS", 32);
    let rounds = env_usize("RUNHOOK_STEADY_ROUNDS", 3);
    let only = std::env::var("RUNHOOK_STEADY_ONLY").ok();
    let kinds: Vec<&'static str> = match &only {
        Some(list) => list
            .split(',')
            .map(|name| {
                [
                    "ceiling",
                    "hand_written",
                    "sdk",
                    "serve_jsonl",
                    "serve_jsonl_w1",
                    "serve_redis_stream",
                    "serve_postgres",
                ]
                .into_iter()
                .find(|k| *k == name.trim())
                .unwrap_or_else(|| panic!("unknown receiver {name}"))
            })
            .collect(),
        None => ALL.to_vec(),
    };
    let work = Arc::new(requests(count, "127.0.0.1"));
    let body_len = work[0].len() - find(&work[0], b"\r\n\r\n").unwrap() - 4;
    println!(
        "steady state: {count} requests of {body_len} B (distinct run ids, signed), {connections} keep-alive connections, {rounds} rounds interleaved; pinned: {}",
        std::env::var(PINNED).as_deref() == Ok("1")
    );
    if let Ok(extra) = std::env::var("RUNHOOK_STEADY_SERVE_ARGS") {
        println!("runhook serve extra flags: {extra}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results: Vec<Vec<Figures>> = kinds.iter().map(|_| Vec::new()).collect();
    runtime.block_on(async {
        for round in 0..rounds {
            for (k, kind) in kinds.iter().enumerate() {
                let server = Server::start(kind, round);
                println!("{kind}: server pid {}", server.child.id());
                let figures = measure(&server, load(&server, work.clone(), connections).await).await;
                println!(
                    "round {} {kind:<13} 2xx/s {:>7.0}  503 {:>5.1}%  p50 {:>6.2} ms  p99 {:>7.2} ms  processed/s {:>7.0}  processed {} / 2xx {}{}  other {}  cpu server {:.0}% ({:.0} us/req) core0 idle {:.0}% client {:.0}%  drain {:.2} s",
                    round + 1,
                    figures.ok_per_s,
                    figures.share_503 * 100.0,
                    figures.p50.as_secs_f64() * 1e3,
                    figures.p99.as_secs_f64() * 1e3,
                    figures.processed_per_s,
                    figures.processed,
                    figures.ok,
                    if *kind == "ceiling" {
                        " n/a"
                    } else if figures.processed == figures.ok {
                        " ok"
                    } else {
                        " MISMATCH"
                    },
                    figures.others,
                    figures.server_cpu * 100.0,
                    figures.server_us_per_request,
                    figures.core0_idle * 100.0,
                    figures.client_cpu * 100.0,
                    figures.drain.as_secs_f64(),
                );
                results[k].push(figures);
                server.stop();
                clean_up(kind, round).await;
            }
        }
    });
    print_table(&kinds, &results);
}

fn print_table(kinds: &[&str], results: &[Vec<Figures>]) {
    let baseline = kinds
        .iter()
        .position(|k| *k == "hand_written")
        .map(|i| median(&results[i], |f| f.ok_per_s));
    println!();
    println!(
        "medians of {} rounds ({} requests, {} connections)",
        results[0].len(),
        env_usize("RUNHOOK_STEADY_REQUESTS", 60_000),
        env_usize("RUNHOOK_STEADY_CONNECTIONS", 32)
    );
    println!(
        "| receiver | 2xx/s | vs hand-written | 503 share | p50 ack (2xx) | p99 ack (2xx) | processed/s | processed = 2xx | server CPU | server CPU per request | client CPU |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|");
    for (kind, figures) in kinds.iter().zip(results) {
        let ok = median(figures, |f| f.ok_per_s);
        let all_equal = figures.iter().all(|f| f.processed == f.ok && f.others == 0);
        let check = if *kind == "ceiling" {
            "n/a (no background)"
        } else if all_equal {
            "yes, every round"
        } else {
            "NO (see rounds)"
        };
        println!(
            "| {kind} | {ok:.0} | {} | {:.1} % | {:.2} ms | {:.2} ms | {:.0} | {check} | {:.0} % | {:.0} us | {:.0} % |",
            baseline.map_or("-".into(), |b| format!("{:.2}", ok / b)),
            median(figures, |f| f.share_503) * 100.0,
            median(figures, |f| f.p50.as_secs_f64()) * 1e3,
            median(figures, |f| f.p99.as_secs_f64()) * 1e3,
            median(figures, |f| f.processed_per_s),
            median(figures, |f| f.server_cpu) * 100.0,
            median(figures, |f| f.server_us_per_request),
            median(figures, |f| f.client_cpu) * 100.0,
        );
    }
}
