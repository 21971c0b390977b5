//! `runhook send` run as a real process against a local HTTP server scripted to fail: the
//! number of attempts, their spacing, and the headers and bodies the receiver sees.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use runhook::canonical::canonicalize;
use runhook::payload::{DedupProbe, Provider};
use runhook::verify::Delivery;
use runhook::{Secret, SkyvernSignature, Verifier};

const SKYVERN_KEY: &str = "sk_test_send_cli_7Qm2";
const WEBRUN_AUTH: &str = "Bearer wr_token_send_cli_9Zx4";

fn fixture(name: &str) -> String {
    format!(
        "{}/../../testdata/payloads/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A request as the server received it.
struct Received {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
}

/// How the server answers the `n`th request (counted from 0).
#[derive(Clone, Copy)]
struct Reply {
    status: u16,
    delay: Duration,
    retry_after: Option<&'static str>,
}

fn answer(status: u16) -> Reply {
    Reply {
        status,
        delay: Duration::ZERO,
        retry_after: None,
    }
}

/// A script answering `first` to the first request and 200 to the others.
fn first_then_ok(first: Reply) -> impl Fn(usize) -> Reply + Send + Sync + 'static {
    move |n| if n == 0 { first } else { answer(200) }
}

/// An answer with `Retry-After: {retry_after}`.
fn answer_after(status: u16, retry_after: &'static str) -> Reply {
    Reply {
        retry_after: Some(retry_after),
        ..answer(status)
    }
}

type Script = Box<dyn Fn(usize) -> Reply + Send + Sync>;

struct ServerState {
    script: Script,
    log: Mutex<Vec<Received>>,
}

/// A local receiver that records every request and answers as its script says.
struct Server {
    addr: SocketAddr,
    state: Arc<ServerState>,
}

impl Server {
    async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let state = Arc::new(ServerState {
            script: Box::new(script),
            log: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    fn received(&self) -> std::sync::MutexGuard<'_, Vec<Received>> {
        self.state.log.lock().unwrap()
    }

    /// The gaps between consecutive arrivals.
    fn gaps(&self) -> Vec<Duration> {
        let log = self.received();
        log.windows(2).map(|w| w[1].at - w[0].at).collect()
    }
}

async fn receive(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let at = Instant::now();
    let reply = {
        let mut log = state.log.lock().unwrap();
        log.push(Received { at, headers, body });
        (state.script)(log.len() - 1)
    };
    tokio::time::sleep(reply.delay).await;
    let status = StatusCode::from_u16(reply.status).unwrap();
    match reply.retry_after {
        Some(after) => (status, [("retry-after", after)]).into_response(),
        None => status.into_response(),
    }
}

/// The outcome of one `runhook send`.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn attempt_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|line| line.contains(": attempt "))
            .collect()
    }

    /// The value printed after `label` in the load summary.
    fn summary(&self, label: &str) -> &str {
        self.stdout
            .lines()
            .find_map(|line| {
                let rest = line.strip_prefix(label)?;
                rest.starts_with(' ').then(|| rest.trim())
            })
            .unwrap_or_else(|| panic!("no `{label}` in the summary:\n{}", self.stdout))
    }

    fn summary_count(&self, label: &str) -> usize {
        let value = self.summary(label);
        let first = value.split_whitespace().next().unwrap_or_default();
        first
            .parse()
            .unwrap_or_else(|_| panic!("`{label}` is `{value}`"))
    }

    fn assert_exit(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }

    /// Asserts the standard output says `text`.
    fn assert_says(&self, text: &str) {
        assert!(self.stdout.contains(text), "{}", self.stdout);
    }

    fn assert_no_secret(&self) {
        for secret in [SKYVERN_KEY, WEBRUN_AUTH, "wr_token_send_cli_9Zx4"] {
            assert!(!self.stdout.contains(secret), "{}", self.stdout);
            assert!(!self.stderr.contains(secret), "{}", self.stderr);
        }
    }
}

async fn send(args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_runhook"))
        .arg("send")
        .args(args)
        .env("SKYVERN_KEY", SKYVERN_KEY)
        .env("WEBRUN_AUTH", WEBRUN_AUTH)
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// `runhook send --provider PROVIDER --to URL ARGS`.
async fn send_to(provider: &str, url: &str, args: &[&str]) -> Run {
    send(&[&["--provider", provider, "--to", url], args].concat()).await
}

/// A server answering as `script` says, and `runhook send` of the TinyFish fixture `file` to it.
async fn tinyfish_to(
    script: impl Fn(usize) -> Reply + Send + Sync + 'static,
    file: &str,
) -> (Server, Run) {
    send_to_new(script, "tinyfish", &[&fixture(file)]).await
}

/// A server answering as `script` says, and `runhook send --provider PROVIDER ARGS` to it.
async fn send_to_new(
    script: impl Fn(usize) -> Reply + Send + Sync + 'static,
    provider: &str,
    args: &[&str],
) -> (Server, Run) {
    let server = Server::start(script).await;
    let run = send_to(provider, &server.url(), args).await;
    (server, run)
}

/// Asserts `actual` is `expected` give or take the generous tolerance of a behaviour check.
fn assert_about(actual: Duration, expected: Duration, what: &str) {
    let low = expected.saturating_sub(Duration::from_millis(300));
    let high = expected + Duration::from_secs(1);
    assert!(
        (low..=high).contains(&actual),
        "{what}: {actual:?}, expected about {expected:?}"
    );
}

/// The offsets (`+1.002 s`) printed on the attempt lines.
fn printed_offsets(run: &Run) -> Vec<Duration> {
    run.attempt_lines()
        .iter()
        .map(|line| {
            let offset = line.split(" at +").nth(1).unwrap();
            let seconds: f64 = offset.split(' ').next().unwrap().parse().unwrap();
            Duration::from_secs_f64(seconds)
        })
        .collect()
}

fn schedule(seconds: &[u64]) -> Vec<Duration> {
    seconds.iter().copied().map(Duration::from_secs).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tinyfish_retries_a_5xx_four_times_after_1_2_and_4_seconds() {
    let (server, run) = tinyfish_to(|_| answer(503), "tinyfish-completed.json").await;
    run.assert_exit(1);
    assert_eq!(server.received().len(), 4);
    for (gap, expected) in server.gaps().into_iter().zip(schedule(&[1, 2, 4])) {
        assert_about(gap, expected, "gap between attempts");
    }
    assert_eq!(run.attempt_lines().len(), 4, "{}", run.stdout);
    run.assert_says("attempt 4/4");
    run.assert_says("not delivered: HTTP 503 Service Unavailable after 4 attempts; no retry left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tinyfish_stops_once_answered_2xx() {
    let (server, run) = tinyfish_to(first_then_ok(answer(503)), "tinyfish-failed.json").await;
    run.assert_exit(0);
    assert_eq!(server.received().len(), 2);
    assert_about(server.gaps()[0], Duration::from_secs(1), "gap");
    run.assert_says("delivered (HTTP 200 OK) after 2 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tinyfish_never_retries_a_4xx() {
    let (server, run) = tinyfish_to(|_| answer(400), "tinyfish-completed.json").await;
    run.assert_exit(1);
    assert_eq!(server.received().len(), 1);
    run.assert_says("tinyfish never retries HTTP 400");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tinyfish_retries_network_errors() {
    // A port that was just free: connections to it are refused.
    let closed = format!("127.0.0.1:{}", runhook_testkit::free_port());
    let run = send_to(
        "tinyfish",
        &format!("http://{closed}/hooks"),
        &[&fixture("tinyfish-completed.json")],
    )
    .await;
    run.assert_exit(1);
    let lines = run.attempt_lines();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    assert!(
        lines.iter().all(|line| line.contains("network error")),
        "{}",
        run.stdout
    );
    let offsets = printed_offsets(&run);
    for (offset, expected) in offsets.into_iter().zip(schedule(&[0, 1, 3, 7])) {
        assert_about(offset, expected, "attempt offset");
    }
}

/// `runhook send --provider skyvern` to `server`, with `extra` arguments before the file.
async fn send_skyvern(server: &Server, extra: &[&str]) -> Run {
    let url = server.url();
    let file = fixture("skyvern-task-failed.json");
    let mut args = vec![
        "--provider",
        "skyvern",
        "--secret-env",
        "SKYVERN_KEY",
        "--to",
        &url,
    ];
    args.extend_from_slice(extra);
    args.push(&file);
    let run = send(&args).await;
    run.assert_no_secret();
    run
}

/// Asserts `gap` is in `[low, high)` seconds.
fn assert_between(gap: Duration, low: f64, high: f64, what: &str) {
    let seconds = gap.as_secs_f64();
    assert!(
        (low..high).contains(&seconds),
        "{what}: {seconds:.3} s, expected in [{low}, {high})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skyvern_retries_a_5xx_three_times_after_jittered_doubling_pauses() {
    let server = Server::start(|_| answer(503)).await;
    let run = send_skyvern(&server, &[]).await;
    run.assert_exit(1);
    let gaps = server.gaps();
    assert_eq!(gaps.len(), 2, "{}", run.stdout);
    // 1 s × 2ⁿ plus 0–1 s of jitter: 1–2 s, then 2–3 s (upper bounds loose for a busy host).
    assert_between(gaps[0], 1.0, 2.5, "first pause");
    assert_between(gaps[1], 2.0, 3.5, "second pause");
    run.assert_says("attempt 3/3");
    run.assert_says("not delivered: HTTP 503 Service Unavailable after 3 attempts; no retry left");
    // Every attempt is the same signed request, signature and timestamp included.
    let log = server.received();
    for received in log.iter() {
        assert_genuine_skyvern(received);
        assert_same_request(received, &log[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skyvern_waits_what_retry_after_asks() {
    let server = Server::start(first_then_ok(answer_after(503, "3"))).await;
    let run = send_skyvern(&server, &[]).await;
    run.assert_exit(0);
    let gaps = server.gaps();
    assert_eq!(gaps.len(), 1, "{}", run.stdout);
    assert_between(gaps[0], 3.0, 4.0, "pause asked by Retry-After");
    run.assert_says("retrying in 3.000 s, as Retry-After asks");
    run.assert_says("delivered (HTTP 200 OK) after 2 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skyvern_retries_403_and_429() {
    for status in [403, 429] {
        let server = Server::start(first_then_ok(answer(status))).await;
        let run = send_skyvern(&server, &[]).await;
        run.assert_exit(0);
        assert_eq!(server.received().len(), 2, "{status}: {}", run.stdout);
        assert_between(server.gaps()[0], 1.0, 2.5, "pause");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skyvern_never_retries_400_or_401() {
    for status in [400, 401] {
        let server = Server::start(move |_| answer(status)).await;
        let run = send_skyvern(&server, &[]).await;
        run.assert_exit(1);
        assert_eq!(server.received().len(), 1, "{status}: {}", run.stdout);
        run.assert_says(&format!("skyvern never retries HTTP {status}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skyvern_as_documented_makes_one_attempt() {
    let server = Server::start(|_| answer(503)).await;
    let run = send_skyvern(&server, &["--sender", "documented"]).await;
    run.assert_exit(1);
    assert_eq!(server.received().len(), 1);
    run.assert_says("attempt 1/1");
    run.assert_says("skyvern as documented does not retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tinyfish_ignores_retry_after() {
    let (server, run) = tinyfish_to(
        first_then_ok(answer_after(503, "5")),
        "tinyfish-completed.json",
    )
    .await;
    run.assert_exit(0);
    assert_eq!(server.received().len(), 2);
    assert_about(server.gaps()[0], Duration::from_secs(1), "gap");
}

/// Asserts `copy` is `first` again: the same body, signature and timestamp.
fn assert_same_request(copy: &Received, first: &Received) {
    assert_eq!(copy.body, first.body);
    for header in ["x-skyvern-signature", "x-skyvern-timestamp"] {
        assert_eq!(copy.headers[header], first.headers[header]);
    }
}

fn assert_genuine_skyvern(received: &Received) {
    let key = Secret::new(SKYVERN_KEY).unwrap();
    SkyvernSignature::new(key)
        .verify(&Delivery::new(&received.headers, &received.body))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skyvern_sends_the_canonical_body_signed() {
    let server = Server::start(|_| answer(200)).await;
    let file = format!(
        "{}/../../testdata/skyvern-run-pretty.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let run = send_to(
        "skyvern",
        &server.url(),
        &["--secret-env", "SKYVERN_KEY", &file],
    )
    .await;
    run.assert_exit(0);
    run.assert_no_secret();
    let log = server.received();
    let [received] = log.as_slice() else {
        panic!("{} requests", log.len());
    };
    let pretty = std::fs::read(&file).unwrap();
    assert_eq!(received.body, canonicalize(&pretty).unwrap());
    assert_genuine_skyvern(received);
    let timestamp: u64 = received.headers["x-skyvern-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(timestamp) < 60, "{timestamp} vs {now}");
    assert_eq!(received.headers["content-type"], "application/json");
    let agent = received.headers["user-agent"].to_str().unwrap();
    assert!(agent.contains("skyvern"), "{agent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skyvern_raw_sends_the_file_as_it_is_signed() {
    let server = Server::start(|_| answer(200)).await;
    let file = fixture("skyvern-nonfinite-and-bigint.json");
    let mut args = vec![
        "--provider",
        "skyvern",
        "--secret-env",
        "SKYVERN_KEY",
        "--raw",
    ];
    let url = server.url();
    args.extend(["--to", &url, &file]);
    send(&args).await.assert_exit(0);
    let log = server.received();
    assert_eq!(log[0].body, std::fs::read(&file).unwrap());
    assert_genuine_skyvern(&log[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrun_and_smartbrowse_carry_their_header_and_the_file_as_it_is() {
    let server = Server::start(|_| answer(200)).await;
    let url = server.url();
    let webrun = fixture("webrun-full-response.json");
    let smartbrowse = fixture("smartbrowse-completed.json");
    let run = send_to("webrun", &url, &["--secret-env", "WEBRUN_AUTH", &webrun]).await;
    run.assert_exit(0);
    run.assert_no_secret();
    let run = send_to(
        "smartbrowse",
        &url,
        &[
            "--secret-env",
            "WEBRUN_AUTH",
            "--header-name",
            "X-Webhook-Token",
            &smartbrowse,
        ],
    )
    .await;
    run.assert_exit(0);
    run.assert_no_secret();
    let log = server.received();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].headers["authorization"], WEBRUN_AUTH);
    assert_eq!(log[0].body, std::fs::read(&webrun).unwrap());
    assert_eq!(log[1].headers["x-webhook-token"], WEBRUN_AUTH);
    assert!(!log[1].headers.contains_key("authorization"));
    assert_eq!(log[1].body, std::fs::read(&smartbrowse).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_file_is_one_delivery_and_the_exit_status_reports_any_failure() {
    let (server, run) = send_to_new(
        |n| answer(if n == 1 { 500 } else { 200 }),
        "smartbrowse",
        &[
            &fixture("smartbrowse-completed.json"),
            &fixture("smartbrowse-failed.json"),
            &fixture("smartbrowse-cancelled.json"),
        ],
    )
    .await;
    run.assert_exit(1);
    assert_eq!(server.received().len(), 3);
    assert_eq!(run.attempt_lines().len(), 3, "{}", run.stdout);
    assert_eq!(
        run.stdout.matches(": delivered").count(),
        2,
        "{}",
        run.stdout
    );
    assert!(!server.received()[0].headers.contains_key("authorization"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_times_out() {
    let server = Server::start(|_| Reply {
        delay: Duration::from_secs(3),
        ..answer(200)
    })
    .await;
    let started = Instant::now();
    let run = send_to(
        "webrun",
        &server.url(),
        &["--timeout", "0.3", &fixture("webrun-just-ping.json")],
    )
    .await;
    run.assert_exit(1);
    assert!(started.elapsed() < Duration::from_secs(2));
    run.assert_says("not delivered: timed out after 1 attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_send_nothing() {
    let (tinyfish, skyvern) = (
        fixture("tinyfish-completed.json"),
        fixture("skyvern-canceled.json"),
    );
    let server = Server::start(|_| answer(200)).await;
    let url = server.url();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--provider", "skyvern", &skyvern], "--secret-env"),
        (
            vec![
                "--provider",
                "skyvern",
                "--secret-env",
                "UNSET_VAR_9",
                &skyvern,
            ],
            "UNSET_VAR_9 is not set",
        ),
        (
            vec![
                "--provider",
                "tinyfish",
                "--secret-env",
                "WEBRUN_AUTH",
                &tinyfish,
            ],
            "tinyfish sends no credential",
        ),
        (
            vec![
                "--provider",
                "tinyfish",
                "--count",
                "3",
                &tinyfish,
                &tinyfish,
            ],
            "exactly one template",
        ),
        (
            vec!["--provider", "tinyfish", "--duplicates", "0.5", &tinyfish],
            "--count",
        ),
        (
            vec![
                "--provider",
                "tinyfish",
                "--count",
                "2",
                "--duplicates",
                "1.5",
                &tinyfish,
            ],
            "ratio",
        ),
        (
            vec!["--provider", "webrun", "--count", "2", &tinyfish],
            "not a webrun payload",
        ),
        (
            vec!["--provider", "tinyfish", "/no/such/file"],
            "cannot read",
        ),
        (vec!["--provider", "nope", &tinyfish], "unknown provider"),
    ];
    for (mut args, expected) in cases {
        args.extend(["--to", &url]);
        let run = send(&args).await;
        run.assert_exit(2);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        run.assert_no_secret();
    }
    let https = send_to("tinyfish", "https://127.0.0.1:1/", &[&tinyfish]).await;
    https.assert_exit(2);
    assert!(
        https.stderr.starts_with("runhook send: "),
        "{}",
        https.stderr
    );
    assert!(https.stderr.contains("plain HTTP"), "{}", https.stderr);
    // Skyvern could never send text that is not JSON: without --raw it is refused.
    let garbage = std::env::temp_dir().join(format!("runhook-send-{}.txt", std::process::id()));
    std::fs::write(&garbage, b"not JSON").unwrap();
    let run = send_to(
        "skyvern",
        &url,
        &["--secret-env", "SKYVERN_KEY", garbage.to_str().unwrap()],
    )
    .await;
    let _ = std::fs::remove_file(&garbage);
    run.assert_exit(2);
    assert!(run.stderr.contains("--raw"), "{}", run.stderr);
    assert_eq!(server.received().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_sends_fresh_run_ids_and_the_asked_share_of_duplicates() {
    let (server, run) = send_to_new(
        |_| answer(200),
        "tinyfish",
        &[
            "--count",
            "50",
            "--duplicates",
            "0.3",
            "--concurrency",
            "8",
            &fixture("tinyfish-completed.json"),
        ],
    )
    .await;
    run.assert_exit(0);
    let log = server.received();
    assert_eq!(log.len(), 50);
    let ids: HashSet<String> = log
        .iter()
        .map(|r| {
            DedupProbe::read(Provider::TinyFish, &r.body)
                .unwrap()
                .run_id
                .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), run.summary_count("unique run ids"));
    assert_eq!(ids.len(), 35);
    assert!(!ids.contains("7f1c2e94-0d1a-4b7e-9c55-2d6a8f3b1e01"));
    assert_eq!(run.summary_count("duplicates sent"), 15);
    assert_eq!(run.summary("sent"), "50 deliveries in 50 attempts");
    assert_eq!(run.summary_count("2xx"), 50);
    for label in ["4xx", "5xx", "network errors", "timed out"] {
        assert_eq!(run.summary_count(label), 0, "{label}");
    }
    for label in ["latency p50", "latency p99"] {
        assert!(run.summary(label).ends_with("ms per attempt"), "{label}");
    }
    assert!(run.summary("rate").ends_with("deliveries/s"));
    // TinyFish repeats the run id inside `data`: it follows.
    let body: serde_json::Value = serde_json::from_slice(&log[0].body).unwrap();
    assert_eq!(body["run_id"], body["data"]["run_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_duplicates_resend_the_exact_signed_request() {
    let server = Server::start(|n| answer(if n % 4 == 3 { 503 } else { 200 })).await;
    let run = send(&[
        "--provider",
        "skyvern",
        "--secret-env",
        "SKYVERN_KEY",
        "--to",
        &server.url(),
        "--count",
        "20",
        "--duplicates",
        "0.5",
        // One attempt each, so that every request is one delivery.
        "--sender",
        "documented",
        &fixture("skyvern-task-completed.json"),
    ])
    .await;
    run.assert_exit(1);
    run.assert_no_secret();
    let log = server.received();
    assert_eq!(log.len(), 20, "Skyvern as documented never retries");
    assert_eq!(run.summary_count("5xx"), 5);
    assert_eq!(run.summary_count("2xx"), 15);
    let mut by_id: HashMap<String, Vec<&Received>> = HashMap::new();
    for received in log.iter() {
        assert_genuine_skyvern(received);
        let id = DedupProbe::read(Provider::Skyvern, &received.body)
            .unwrap()
            .run_id
            .unwrap();
        by_id.entry(id).or_default().push(received);
    }
    assert_eq!(by_id.len(), 10);
    for copies in by_id.values() {
        let first = copies[0];
        let body: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
        assert_eq!(body["task_id"], body["run_id"]);
        for copy in copies {
            assert_same_request(copy, first);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_for_webrun_ai_varies_the_body_hash() {
    let (server, run) = send_to_new(
        |_| answer(200),
        "webrun-ai",
        &["--count", "10", &fixture("webrun-ai-response.json")],
    )
    .await;
    run.assert_exit(0);
    let keys: HashSet<String> = server
        .received()
        .iter()
        .map(|r| {
            DedupProbe::read(Provider::WebRunAi, &r.body)
                .unwrap()
                .dedup_key
        })
        .collect();
    assert_eq!(keys.len(), 10);
    assert_eq!(run.summary_count("unique run ids"), 10);
}
