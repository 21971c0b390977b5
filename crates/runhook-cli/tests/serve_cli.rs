//! End-to-end tests of `runhook serve`: the real binary, real HTTP, a real Redis for the
//! shared-store case.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::{
    client, json_lines, redis_url, require_redis, skyvern_post, skyvern_route, start_serve,
    tinyfish_forward_route, unique, wait_for, Started as Serve, WithLogs,
};
use serde_json::Value;

const SKYVERN_KEY: &str = "sk_test_serve_cli";
const WEBRUN_AUTH: &str = "Bearer webrun-serve-cli";
const TINYFISH_PATH: &str = "tf8x4KpzQ7serve";

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("runhook-serve-{name}"))
}

impl Serve {
    /// Starts `runhook serve ARGS` on a free port with the test secrets in its environment.
    fn start(dir: &Path, args: &[&str]) -> Self {
        let env = [
            ("SKYVERN_API_KEY", SKYVERN_KEY),
            ("WEBRUN_AUTH", WEBRUN_AUTH),
            ("TINYFISH_PATH_SECRET", TINYFISH_PATH),
        ];
        start_serve(dir, args, &env)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn skyvern_body(run_id: &str) -> Vec<u8> {
    format!(
        r#"{{"run_id":"{run_id}","task_id":"{run_id}","status":"completed","output":{{"price":"$12.99"}},"failure_reason":null}}"#
    )
    .into_bytes()
}

/// Posts a Skyvern delivery signed with `key`; returns the status.
async fn post_skyvern(serve: &Serve, path: &str, key: &str, body: &[u8]) -> u16 {
    skyvern_post(&client(), &serve.url(path), key, body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn post(serve: &Serve, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    common::post(&client(), &serve.url(path), headers, body).await
}

async fn get_text(serve: &Serve, path: &str) -> (u16, String) {
    let response = client().get(serve.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The JSON lines of `path`, once there are at least `n` (waits up to 15 s).
async fn lines_when(path: &Path, n: usize) -> Vec<Value> {
    let what = format!("{n} lines in {}", path.display());
    wait_for(Duration::from_secs(15), &what, || {
        Some(json_lines(path)).filter(|lines| lines.len() >= n)
    })
    .await
}

/// The value of one metric line (`name{labels} value`) whose text starts with `prefix`.
fn metric(text: &str, prefix: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no metric {prefix} in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn jsonl_handler_processes_each_run_once_and_reports_metrics() {
    let dir = scratch("jsonl");
    let events = dir.join("events.jsonl");
    let serve = Serve::start(
        &dir,
        &[
            skyvern_route("/webhooks/skyvern"),
            vec!["--jsonl", events.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(get_text(&serve, "/healthz").await, (200, "ok\n".into()));

    let run = unique("tsk_jsonl");
    let body = skyvern_body(&run);
    let route = "/webhooks/skyvern";
    assert_eq!(post_skyvern(&serve, route, SKYVERN_KEY, &body).await, 200);
    assert_eq!(post_skyvern(&serve, route, SKYVERN_KEY, &body).await, 200);
    assert_eq!(post_skyvern(&serve, route, "sk_forged", &body).await, 401);
    assert_eq!(post(&serve, route, &[], b"{}").await, 401);

    let lines = lines_when(&events, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let event = &lines[0];
    assert_eq!(event["provider"], "skyvern");
    assert_eq!(event["run_id"], run.as_str());
    assert_eq!(event["dedup_key"], format!("skyvern:{run}"));
    assert_eq!(event["status"], "completed");
    assert_eq!(event["body"]["output"]["price"], "$12.99");

    let (status, text) = get_text(&serve, "/metrics").await;
    assert_eq!(status, 200);
    let labels = r#"{route="/webhooks/skyvern",provider="skyvern""#;
    assert_eq!(metric(&text, &format!("runhook_received_total{labels}")), 4);
    assert_eq!(metric(&text, &format!("runhook_accepted_total{labels}")), 1);
    assert_eq!(
        metric(&text, &format!("runhook_duplicates_total{labels}")),
        1
    );
    assert_eq!(
        metric(&text, &format!("runhook_processed_total{labels}")),
        1
    );
    assert_eq!(
        metric(
            &text,
            &format!("runhook_rejected_total{labels},reason=\"unauthorized\"")
        ),
        2
    );
    assert_eq!(
        metric(&text, &format!("runhook_ack_latency_seconds_count{labels}")),
        4
    );

    let (status, logs) = serve.stop();
    assert!(status.success(), "{status:?}\n{logs}");
    assert!(
        !logs.contains(SKYVERN_KEY),
        "a secret reached the logs:\n{logs}"
    );
    assert!(logs.contains("draining"), "{logs}");
}

#[tokio::test]
async fn exec_handler_retries_a_failing_command_then_succeeds() {
    let dir = scratch("exec");
    let calls = dir.join("calls.log");
    // Fails the first time it runs (no marker yet), succeeds afterwards; logs each call.
    let command = format!(
        r#"cat > /dev/null; echo "$RUNHOOK_DEDUP_KEY $RUNHOOK_STATUS" >> {calls}; if [ -e {marker} ]; then exit 0; fi; touch {marker}; exit 3"#,
        calls = calls.display(),
        marker = dir.join("failed-once").display()
    );
    let serve = Serve::start(
        &dir,
        &[
            "--path",
            "/hooks/webrun",
            "--provider",
            "webrun",
            "--secret-env",
            "WEBRUN_AUTH",
            "--exec",
            &command,
            "--retry-backoff-ms",
            "50",
        ],
    );
    let task = unique("task");
    let body = format!(
        r#"{{"type":"task_completed","sessionId":"s1","taskId":"{task}","data":{{"message":"done"}}}}"#
    );
    let auth = [("authorization", WEBRUN_AUTH)];
    assert_eq!(
        post(&serve, "/hooks/webrun", &auth, body.as_bytes()).await,
        200
    );
    let wrong = [("authorization", "Bearer nope")];
    assert_eq!(
        post(&serve, "/hooks/webrun", &wrong, body.as_bytes()).await,
        401
    );

    let started = std::time::Instant::now();
    let text = loop {
        // Polled until processed, at most 15 s.
        let (_, text) = get_text(&serve, "/metrics").await;
        if metric(&text, "runhook_processed_total") == 1 {
            break text;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{text}");
        tokio::time::sleep(runhook_testkit::POLL).await;
    };
    assert_eq!(metric(&text, "runhook_failed_total"), 1);
    let logged = std::fs::read_to_string(&calls).unwrap();
    let expected = format!("webrun:{task} completed\n");
    assert_eq!(logged, expected.repeat(2), "one failed call, one success");
    let (status, logs) = serve.stop();
    assert!(status.success(), "{logs}");
    assert!(
        !logs.contains("webrun-serve-cli"),
        "a secret reached the logs:\n{logs}"
    );
}

/// A local endpoint that answers 500 to its first POST and 200 afterwards, keeping every
/// body and dedup-key header it got.
async fn flaky_endpoint() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let record = record.clone();
            async move {
                let key = headers["x-runhook-dedup-key"].to_str().unwrap().to_string();
                let mut seen = record.lock().unwrap();
                seen.push((key, serde_json::from_slice(&body).unwrap()));
                if seen.len() == 1 {
                    http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn forward_handler_posts_the_event_and_retries_a_5xx() {
    let dir = scratch("forward");
    let (url, seen) = flaky_endpoint().await;
    let serve = Serve::start(
        &dir,
        &[
            tinyfish_forward_route(&url),
            vec!["--retry-backoff-ms", "50"],
        ]
        .concat(),
    );
    let run = unique("tf_run");
    let body = format!(
        r#"{{"event":"run.completed","run_id":"{run}","status":"COMPLETED","data":{{"id":"{run}","result":{{"ok":true}}}}}}"#
    );
    let good = format!("/hooks/tinyfish/{TINYFISH_PATH}");
    assert_eq!(post(&serve, &good, &[], body.as_bytes()).await, 200);
    assert_eq!(
        post(&serve, "/hooks/tinyfish/guess", &[], body.as_bytes()).await,
        401
    );

    wait_for(
        Duration::from_secs(15),
        WithLogs("two forwards", &serve),
        || (seen.lock().unwrap().len() >= 2).then_some(()),
    )
    .await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one 500, one 200");
    for (key, event) in &seen {
        assert_eq!(key, &format!("tinyfish:{run}"));
        assert_eq!(event["run_id"], run.as_str());
        assert_eq!(event["status"], "completed");
        assert_eq!(event["body"]["data"]["result"]["ok"], true);
    }
    let (status, logs) = serve.stop();
    assert!(status.success(), "{logs}");
    assert!(
        !logs.contains(TINYFISH_PATH),
        "a path secret reached the logs:\n{logs}"
    );
}

#[tokio::test]
async fn config_file_serves_several_routes() {
    let dir = scratch("config");
    let events = dir.join("events.jsonl");
    let config = dir.join("runhook.toml");
    std::fs::write(
        &config,
        format!(
            r#"
workers = 2

[handler]
jsonl = "{}"

[[route]]
path = "/webhooks/skyvern"
provider = "skyvern"
secret_env = "SKYVERN_API_KEY"

[[route]]
path = "/webhooks/webrun"
provider = "webrun"
secret_env = ["WEBRUN_AUTH"]

[[route]]
path = "/webhooks/smartbrowse"
provider = "smartbrowse"
unsigned = true
"#,
            events.display()
        ),
    )
    .unwrap();
    let serve = Serve::start(&dir, &["--config", config.to_str().unwrap()]);

    let sky = unique("tsk_cfg");
    let web = unique("task_cfg");
    let smart = unique("sb_cfg");
    assert_eq!(
        post_skyvern(
            &serve,
            "/webhooks/skyvern",
            SKYVERN_KEY,
            &skyvern_body(&sky)
        )
        .await,
        200
    );
    let webrun = format!(r#"{{"type":"task_completed","taskId":"{web}"}}"#);
    assert_eq!(
        post(
            &serve,
            "/webhooks/webrun",
            &[("authorization", WEBRUN_AUTH)],
            webrun.as_bytes()
        )
        .await,
        200
    );
    let smartbrowse = format!(
        r#"{{"event":"run.completed","timestamp":"2026-11-23T10:00:00Z","run_id":"{smart}","recipe_id":"r1","status":"completed","error":null}}"#
    );
    assert_eq!(
        post(&serve, "/webhooks/smartbrowse", &[], smartbrowse.as_bytes()).await,
        200
    );
    assert_eq!(post(&serve, "/webhooks/other", &[], b"{}").await, 404);

    let mut keys: Vec<String> = lines_when(&events, 3)
        .await
        .iter()
        .map(|e| e["dedup_key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    let mut expected = vec![
        format!("skyvern:{sky}"),
        format!("webrun:{web}"),
        format!("smartbrowse:{smart}"),
    ];
    expected.sort();
    assert_eq!(keys, expected);
    let (status, logs) = serve.stop();
    assert!(status.success(), "{logs}");
    assert!(
        logs.contains("unauthenticated"),
        "the unsigned route is not flagged:\n{logs}"
    );
}

#[test]
fn configuration_errors_exit_2_with_the_reason() {
    // (provider, secret variable, further flags, what the error says)
    let cases: [(&str, &str, &[&str], &str); 4] = [
        (
            "tinyfish",
            "TINYFISH_PATH_SECRET",
            &["--jsonl", "/dev/null"],
            "TinyFish signs nothing",
        ),
        ("skyvern", "SKYVERN_API_KEY", &[], "no handler"),
        (
            "skyvern",
            "UNSET_RUNHOOK_VAR",
            &["--jsonl", "/dev/null"],
            "UNSET_RUNHOOK_VAR is not set",
        ),
        (
            "skyvern",
            "SKYVERN_API_KEY",
            &["--jsonl", "/dev/null", "--store", "mysql://x"],
            "expected `memory`, a redis:// URL or a postgres:// URL",
        ),
    ];
    for (provider, secret, extra, reason) in cases {
        let args = [
            &[
                "--path",
                "/s",
                "--provider",
                provider,
                "--secret-env",
                secret,
            ],
            extra,
        ]
        .concat();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_runhook"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .env("SKYVERN_API_KEY", SKYVERN_KEY)
            .env("TINYFISH_PATH_SECRET", TINYFISH_PATH)
            .env_remove("UNSET_RUNHOOK_VAR")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn sigterm_drains_the_queue_before_exiting() {
    let dir = scratch("drain");
    let calls = dir.join("calls.log");
    let command = format!("sleep 0.3; echo \"$RUNHOOK_RUN_ID\" >> {}", calls.display());
    let serve = Serve::start(
        &dir,
        &[
            skyvern_route("/webhooks/skyvern"),
            vec!["--exec", &command, "--workers", "1"],
        ]
        .concat(),
    );
    let runs: Vec<String> = (0..4).map(|i| unique(&format!("tsk_drain{i}"))).collect();
    for run in &runs {
        let status =
            post_skyvern(&serve, "/webhooks/skyvern", SKYVERN_KEY, &skyvern_body(run)).await;
        assert_eq!(status, 200);
    }
    // Four 0.3 s jobs on one worker: most are still queued when the signal arrives.
    let (status, logs) = serve.stop();
    assert!(status.success(), "{status:?}\n{logs}");
    let done = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(done.lines().collect::<Vec<_>>(), runs, "{logs}");
}

#[tokio::test]
async fn two_instances_sharing_redis_process_a_run_once() {
    require_redis();
    let dir = scratch("redis");
    let events = dir.join("events.jsonl");
    let store = redis_url();
    let mut args = skyvern_route("/webhooks/skyvern");
    args.extend(["--jsonl", events.to_str().unwrap(), "--store", &store]);
    let first = Serve::start(&dir, &args);
    let second = Serve::start(&dir, &args);
    let runs: Vec<String> = (0..10).map(|i| unique(&format!("tsk_shared{i}"))).collect();
    for run in &runs {
        let body = skyvern_body(run);
        let route = "/webhooks/skyvern";
        let a = post_skyvern(&first, route, SKYVERN_KEY, &body).await;
        let b = post_skyvern(&second, route, SKYVERN_KEY, &body).await;
        // The second delivery is a duplicate: 200 when the first is done, 503 (retry later)
        // while it is in flight on the other instance.
        assert_eq!(a, 200);
        assert!(b == 200 || b == 503, "{b}");
    }
    let lines = lines_when(&events, runs.len()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines_after = lines_when(&events, runs.len()).await;
    assert_eq!(lines.len(), lines_after.len());
    let mut processed: Vec<&str> = lines_after
        .iter()
        .map(|e| e["run_id"].as_str().unwrap())
        .collect();
    processed.sort();
    let mut expected: Vec<&str> = runs.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(
        processed, expected,
        "each run exactly once across both instances"
    );
    for serve in [first, second] {
        let (status, logs) = serve.stop();
        assert!(status.success(), "{logs}");
    }
}
