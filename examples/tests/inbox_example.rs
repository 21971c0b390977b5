//! The `axum_inbox` example as a user runs it, killed with SIGKILL while its handlers are
//! mid-transaction, then started again: every run's order row exists exactly once, written by
//! the run that committed after the restart, although each handler had written its row before
//! the kill and the senders kept retrying throughout.
//!
//! Real PostgreSQL (`RUNHOOK_TEST_POSTGRES_URL`, default the local server), a schema of the
//! test's own; the example binary is the one `cargo test` builds for this package.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runhook::store::sqlx::{self, postgres::PgPoolOptions};
use runhook_testkit::skyvern::{completed_body, signed_post};
use runhook_testkit::{
    free_port, postgres_url, require_postgres, unique, unique_schema, wait_until_blocking,
};

const KEY: &str = "sk_test_inbox_example";
const RUNS: usize = 12;

/// The example's binary, built by `cargo test` beside this test's own executable.
fn example_binary(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().unwrap();
    let profile_dir = test_exe.parent().unwrap().parent().unwrap();
    let binary = profile_dir.join("examples").join(name);
    if !binary.exists() {
        let built = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "runhook-examples", "--example", name])
            .status()
            .unwrap();
        assert!(built.success(), "cargo build --example {name} failed");
    }
    binary
}

/// The example on `port` with `schema`, its handlers taking `delay_ms`; what it printed.
fn start(port: u16, schema: &str, delay_ms: u64) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(example_binary("axum_inbox"))
        .env("SKYVERN_API_KEY", KEY)
        .env("DATABASE_URL", postgres_url())
        .env("RUNHOOK_SCHEMA", schema)
        .env("PORT", port.to_string())
        .env("LEASE_SECS", "2")
        .env("HANDLER_DELAY_MS", delay_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let printed = Arc::new(Mutex::new(Vec::new()));
    let lines = printed.clone();
    let pipe = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
    wait_until_blocking(Duration::from_secs(30), "the example to listen", || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the example exited early"
        );
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (child, printed)
}

/// Delivers `run` as a retrying sender: again after any error or 5xx, until a 2xx.
async fn deliver(url: String, run: String) -> usize {
    let client = reqwest::Client::new();
    let body = completed_body(&run);
    let started = Instant::now();
    let mut attempts = 0;
    while started.elapsed() < Duration::from_secs(60) {
        attempts += 1;
        let answer = signed_post(&client, &url, KEY, &body).send().await;
        match answer.map(|response| response.status().as_u16()) {
            Ok(status) if (200..300).contains(&status) => return attempts,
            Ok(status) => assert!(status >= 500, "{run}: {status}, which no sender retries"),
            Err(_) => {} // the process was killed mid-request, or is starting again
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{run} was never acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_leaves_no_order_and_the_retries_write_each_once() {
    require_postgres();
    let schema = unique_schema("inbox_example");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/webhooks/skyvern");
    // Slow handlers: every delivery is mid-transaction when the kill comes.
    let (mut first, first_printed) = start(port, &schema, 3_000);
    let runs: Vec<String> = (0..RUNS).map(|_| unique("wr_killed")).collect();
    let senders: Vec<_> = runs
        .iter()
        .map(|run| tokio::spawn(deliver(url.clone(), run.clone())))
        .collect();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&postgres_url())
        .await
        .unwrap();
    let orders = format!("SELECT run_id, count(*) FROM \"{schema}\".orders GROUP BY run_id");
    // Every handler has written its row (uncommitted) and waits: kill the process.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let committed: Vec<(String, i64)> = sqlx::query_as(&orders).fetch_all(&pool).await.unwrap();
    assert!(
        committed.is_empty(),
        "rows committed before the kill: {committed:?}"
    );
    assert!(first_printed.lock().unwrap().is_empty());

    // Started again, fast this time; the senders' retries get each run processed.
    let (mut second, second_printed) = start(port, &schema, 0);
    for sender in senders {
        let attempts = sender.await.unwrap();
        assert!(attempts >= 2, "a delivery acknowledged before the kill");
    }
    let committed: Vec<(String, i64)> = sqlx::query_as(&orders).fetch_all(&pool).await.unwrap();
    assert_eq!(committed.len(), RUNS, "{committed:?}");
    for (run, count) in &committed {
        assert!(runs.contains(run), "{run}");
        assert_eq!(*count, 1, "{run} has {count} orders");
    }
    let printed = second_printed.lock().unwrap().clone();
    for run in &runs {
        assert!(
            printed.contains(&format!("processed skyvern {run}")),
            "{printed:?}"
        );
    }
    second.kill().unwrap();
    second.wait().unwrap();
}
