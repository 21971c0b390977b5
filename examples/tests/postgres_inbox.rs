//! The `postgres_inbox` example as a user runs it, `kill -9`ed at random moments while
//! retrying senders deliver 2 000 distinct runs (a tenth of them `fail_once_`), and started
//! again each time: the ledger holds exactly one row for every run, 0 missing, 0 twice. The
//! same load with the row written outside the inbox transaction
//! (`INBOX_EXAMPLE_WRITE_OUTSIDE=1`) leaves runs written twice: the mechanism is what holds.
//!
//! Real PostgreSQL (`RUNHOOK_TEST_POSTGRES_URL`, default the local server); each test in a
//! schema of its own (the example's tables land there through the URL's `search_path`).

mod support;

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use runhook::store::sqlx::{self, postgres::PgPoolOptions, PgPool};
use runhook_testkit::skyvern::{completed_body, signed_post};
use runhook_testkit::{free_port, postgres_url, require_postgres, unique, unique_schema};
use support::{example_binary, spawn_listening};

const KEY: &str = "sk_test_postgres_inbox";
/// Senders delivering at once: few enough that the burst outlasts the kills.
const SENDERS: usize = 16;

/// The database URL with `schema` first on the search path (where the example's ledger goes).
fn url_in(schema: &str) -> String {
    let base = postgres_url();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// How the example is run.
#[derive(Clone)]
struct Setup {
    schema: String,
    port: u16,
    outside: bool,
    printed: Arc<Mutex<Vec<String>>>,
}

impl Setup {
    fn start(&self) -> Child {
        let mut command = Command::new(example_binary("postgres_inbox"));
        command
            .env("SKYVERN_API_KEY", KEY)
            .env("DATABASE_URL", url_in(&self.schema))
            .env("RUNHOOK_SCHEMA", &self.schema)
            .env("LEASE_SECS", "2")
            .env("INBOX_EXAMPLE_DELAY_MS", "20")
            .env(
                "INBOX_EXAMPLE_WRITE_OUTSIDE",
                if self.outside { "1" } else { "0" },
            );
        let wait = Duration::from_secs(30);
        spawn_listening(
            command,
            "postgres_inbox",
            self.port,
            wait,
            self.printed.clone(),
        )
    }
}

/// Delivers every run of `queue` as a retrying sender does: again after any error or 5xx,
/// until a 2xx.
async fn sender(url: String, queue: Arc<Mutex<Vec<String>>>, cut: Arc<AtomicUsize>) {
    let client = reqwest::Client::new();
    loop {
        let Some(run) = queue.lock().unwrap().pop() else {
            return;
        };
        let body = completed_body(&run);
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{run} never acknowledged"
            );
            let answer = signed_post(&client, &url, KEY, &body).send().await;
            match answer.map(|response| response.status().as_u16()) {
                Ok(status) if (200..300).contains(&status) => break,
                Ok(status) => assert!(status >= 500, "{run}: {status}, which no sender retries"),
                Err(_) => {
                    // Killed mid-request, or starting again.
                    cut.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A pseudo-random number in `range` (milliseconds), from the clock.
fn random_ms(range: std::ops::Range<u64>) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    range.start + nanos.wrapping_mul(6_364_136_223_846_793_005) % (range.end - range.start)
}

/// Runs `runs` through the example, killed with SIGKILL and restarted `kills` times at random
/// moments meanwhile; the ledger's rows per run.
async fn deliver_through_kills(
    setup: Setup,
    runs: &[String],
    kills: usize,
) -> (HashMap<String, i64>, PgPool) {
    let mut child = setup.start();
    let url = format!("http://127.0.0.1:{}/webhooks/skyvern", setup.port);
    let queue = Arc::new(Mutex::new(runs.to_vec()));
    let cut = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| tokio::spawn(sender(url.clone(), queue.clone(), cut.clone())))
        .collect();
    for kill in 0..kills {
        tokio::time::sleep(Duration::from_millis(random_ms(100..400))).await;
        let waiting = queue.lock().unwrap().len();
        assert!(
            waiting > 0,
            "kill {kill} came after the burst: raise the load"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        child = setup.start();
    }
    for sender in senders {
        sender.await.unwrap();
    }
    assert!(
        cut.load(Ordering::Relaxed) > 0,
        "no request was cut by a kill"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&postgres_url())
        .await
        .unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT run_id, count(*) FROM \"{}\".runhook_example_ledger GROUP BY run_id",
        setup.schema
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    (rows.into_iter().collect(), pool)
}

/// `n` distinct run ids, a tenth of them `fail_once_`.
fn runs(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 10 {
            0 => unique("fail_once_run"),
            _ => unique("wr_ledger"),
        })
        .collect()
}

fn setup(test: &str, outside: bool) -> Setup {
    require_postgres();
    Setup {
        schema: unique_schema(test),
        port: free_port(),
        outside,
        printed: Arc::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_runs_through_five_kills_leave_exactly_one_row_each() {
    let setup = setup("ledger_inbox", false);
    let runs = runs(2_000);
    let (ledger, _) = deliver_through_kills(setup.clone(), &runs, 5).await;
    let missing: Vec<&String> = runs.iter().filter(|r| !ledger.contains_key(*r)).collect();
    let twice: Vec<(&String, &i64)> = ledger.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        missing.is_empty(),
        "{} runs have no row: {missing:?}",
        missing.len()
    );
    assert!(
        twice.is_empty(),
        "{} runs have several rows: {twice:?}",
        twice.len()
    );
    assert_eq!(ledger.len(), runs.len());
    // Each run was printed by the process whose commit stood (a kill can cut a print short,
    // so only the count is bounded: never more prints than runs).
    let printed = setup.printed.lock().unwrap().len();
    assert!(
        printed <= runs.len(),
        "{printed} prints for {} runs",
        runs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_inbox_transaction_runs_are_written_twice() {
    let setup = setup("ledger_outside", true);
    let runs = runs(300);
    let (ledger, _) = deliver_through_kills(setup, &runs, 2).await;
    let twice = ledger.values().filter(|n| **n > 1).count();
    // Every `fail_once_` run wrote its row, failed, and wrote it again on the retry.
    assert!(
        twice >= runs.len() / 10,
        "only {twice} runs written twice: {ledger:?}"
    );
}
