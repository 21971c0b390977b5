//! The inbox's background form ([`InTransaction`]) against the real PostgreSQL: the handler's
//! writes commit with the run's done mark, so that two workers holding one run at once (one
//! stalled past its lease, one that took the run over) commit its effect once, a failed attempt
//! leaves nothing, and a run whose claim is gone is tried again rather than written. The same
//! double run with a plain handler writes the effect twice: the control that shows the
//! mechanism is what holds. Then a whole receiver on the Postgres queue, each run delivered
//! twice and a third of them failing after writing on their first attempt: one row per run.

#![cfg(feature = "postgres")]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runhook::handler::{BoxFuture, Handler, HandlerError};
use runhook::inbox::{ClaimGone, InTransaction, InboxHandler};
use runhook::payload::{Provider, RunEvent};
use runhook::postgres_queue::PostgresQueue;
use runhook::store::sqlx::{self, PgConnection, PgPool};
use runhook::store::{Claim, Fingerprint, IdempotencyStore, Migrations, PostgresStore};
use runhook::{Receiver, Secret, SkyvernSignature};
use runhook_testkit::skyvern::completed_body;
use runhook_testkit::{postgres_url, require_postgres, unique, unique_schema};

const KEY: &str = "sk_test_inbox_background";

/// A schema of the test's own with runhook's tables and a ledger (no unique constraint).
async fn setup(test: &str) -> (PostgresStore, String) {
    require_postgres();
    let schema = unique_schema(test);
    let store = PostgresStore::builder()
        .schema(&schema)
        .migrations(Migrations::Apply)
        .max_connections(24)
        .connect(&postgres_url())
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE TABLE \"{schema}\".ledger (run_id text NOT NULL)"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    (store, schema)
}

async fn rows(pool: &PgPool, schema: &str, run: &str) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{schema}\".ledger WHERE run_id = $1"
    ))
    .bind(run)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn drop_schema(store: &PostgresStore, schema: &str) {
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(store.pool())
        .await
        .unwrap();
}

fn event(run: &str) -> Arc<RunEvent> {
    let body = bytes::Bytes::from(completed_body(run));
    Arc::new(RunEvent::parse_summary(Provider::Skyvern, body).unwrap())
}

/// Writes the run's row through the transaction, then waits until `together` attempts have
/// written theirs (so that they are all open at once), and fails the first attempt of each
/// run in `fail_first`.
struct Ledger {
    insert: String,
    together: Option<Arc<tokio::sync::Barrier>>,
    fail_first: HashSet<String>,
    failed: Mutex<HashSet<String>>,
}

impl Ledger {
    fn new(schema: &str) -> Self {
        Self {
            insert: format!("INSERT INTO \"{schema}\".ledger (run_id) VALUES ($1)"),
            together: None,
            fail_first: HashSet::new(),
            failed: Mutex::default(),
        }
    }

    async fn write(&self, run: &RunEvent, conn: &mut PgConnection) -> Result<(), HandlerError> {
        sqlx::query(&self.insert)
            .bind(run.run_id.as_deref())
            .execute(conn)
            .await?;
        if let Some(together) = &self.together {
            together.wait().await;
        }
        let run_id = run.run_id.clone().unwrap_or_default();
        if self.fail_first.contains(&run_id) && self.failed.lock().unwrap().insert(run_id) {
            return Err("failed after writing".into());
        }
        Ok(())
    }
}

impl InboxHandler for Ledger {
    fn handle<'a>(
        &'a self,
        run: Arc<RunEvent>,
        tx: &'a mut PgConnection,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move { self.write(&run, tx).await })
    }
}

/// The same writes on a connection of their own: what a handler outside the inbox does.
struct Plain {
    ledger: Ledger,
    pool: PgPool,
}

impl Handler for Plain {
    fn handle(&self, event: Arc<RunEvent>) -> BoxFuture<'static, Result<(), HandlerError>> {
        let (pool, insert, together) = (
            self.pool.clone(),
            self.ledger.insert.clone(),
            self.ledger.together.clone(),
        );
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            let ledger = Ledger {
                insert,
                together,
                fail_first: HashSet::new(),
                failed: Mutex::default(),
            };
            ledger.write(&event, &mut conn).await
        })
    }
}

/// Runs `handler` on `run` twice at once, as two workers that both hold the run would.
async fn twice_at_once(handler: Arc<dyn Handler>, run: &str) -> Vec<Result<(), String>> {
    let attempts: Vec<_> = (0..2)
        .map(|_| {
            let (handler, event) = (handler.clone(), event(run));
            tokio::spawn(async move { handler.handle(event).await.map_err(|e| e.to_string()) })
        })
        .collect();
    let mut results = Vec::new();
    for attempt in attempts {
        results.push(attempt.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_holding_one_run_commit_its_effect_once_and_a_plain_handler_twice() {
    let (store, schema) = setup("inbox_bg_twice").await;
    let together = Arc::new(tokio::sync::Barrier::new(2));

    // In the inbox: both write, both try to mark the run done; one commits.
    let run = unique("twice");
    let fp = Fingerprint::of(&completed_body(&run));
    let key = format!("skyvern:{run}");
    assert!(store
        .claim(&key, Duration::from_secs(30), fp)
        .await
        .unwrap()
        .is_acquired());
    let ledger = Ledger {
        together: Some(together.clone()),
        ..Ledger::new(&schema)
    };
    let inbox: Arc<dyn Handler> = Arc::new(InTransaction::new(store.clone(), ledger));
    let results = twice_at_once(inbox, &run).await;
    assert_eq!(results, vec![Ok(()), Ok(())]);
    assert_eq!(rows(store.pool(), &schema, &run).await, 1, "one effect");
    let claim = store.claim(&key, Duration::from_secs(1), fp).await.unwrap();
    assert!(matches!(claim, Claim::Done { .. }), "{claim:?}");

    // The control: the same two workers with the writes outside the transaction.
    let run = unique("plain");
    let plain: Arc<dyn Handler> = Arc::new(Plain {
        ledger: Ledger {
            together: Some(together),
            ..Ledger::new(&schema)
        },
        pool: store.pool().clone(),
    });
    let results = twice_at_once(plain, &run).await;
    assert_eq!(results, vec![Ok(()), Ok(())]);
    assert_eq!(
        rows(store.pool(), &schema, &run).await,
        2,
        "the plain handler doubles"
    );
    drop_schema(&store, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_and_a_run_nobody_claims_leave_nothing() {
    let (store, schema) = setup("inbox_bg_fail").await;
    let run = unique("fails");
    let ledger = Ledger {
        fail_first: HashSet::from([run.clone()]),
        ..Ledger::new(&schema)
    };
    let inbox = InTransaction::new(store.clone(), ledger);
    // Nobody claims this one: the writes roll back, and the attempt fails to be tried again.
    let unclaimed = unique("unclaimed");
    let gone = inbox.handle(event(&unclaimed)).await.unwrap_err();
    assert!(gone.downcast_ref::<ClaimGone>().is_some(), "{gone}");
    assert_eq!(rows(store.pool(), &schema, &unclaimed).await, 0);
    let key = format!("skyvern:{run}");
    let fp = Fingerprint::of(&completed_body(&run));
    assert!(store
        .claim(&key, Duration::from_secs(30), fp)
        .await
        .unwrap()
        .is_acquired());
    // Claimed now; the first attempt fails after writing: rolled back. The second commits.
    let failed = inbox.handle(event(&run)).await.unwrap_err();
    assert_eq!(failed.to_string(), "failed after writing");
    assert_eq!(rows(store.pool(), &schema, &run).await, 0);
    inbox.handle(event(&run)).await.unwrap();
    assert_eq!(rows(store.pool(), &schema, &run).await, 1);
    drop_schema(&store, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_on_the_postgres_queue_writes_each_run_once() {
    let (store, schema) = setup("inbox_bg_receiver").await;
    let runs: Vec<String> = (0..30).map(|i| unique(&format!("r{i}"))).collect();
    let ledger = Ledger {
        fail_first: runs.iter().step_by(3).cloned().collect(),
        ..Ledger::new(&schema)
    };
    let queue = PostgresQueue::builder(Provider::Skyvern)
        .build(store.clone())
        .unwrap();
    let receiver = Receiver::builder(
        Provider::Skyvern,
        SkyvernSignature::new(Secret::new(KEY).unwrap()),
    )
    .handler(InTransaction::new(store.clone(), ledger))
    .retry(runhook::retry::RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        attempt_timeout: Duration::from_secs(30),
    })
    .workers(8)
    .postgres_queue(queue.clone())
    .build()
    .unwrap();
    for run in runs.iter().chain(&runs) {
        let body = completed_body(run);
        let mut headers = http::HeaderMap::new();
        let signature = runhook::verify::sign_skyvern(&Secret::new(KEY).unwrap(), &body);
        headers.insert("x-skyvern-signature", signature.parse().unwrap());
        let outcome = receiver.receive(&headers, "/h", body.into()).await;
        assert_eq!(outcome.status, 200, "{outcome:?}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while queue.backlog().await.unwrap() > 0 || receiver.stats().processed < runs.len() as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            receiver.stats()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for run in &runs {
        assert_eq!(rows(store.pool(), &schema, run).await, 1, "{run}");
    }
    assert_eq!(receiver.stats().dead_lettered, 0);
    assert!(receiver.shutdown(Duration::from_secs(5)).await.drained());
    drop_schema(&store, &schema).await;
}
