//! The transactional inbox against the real PostgreSQL, behind a real axum server on
//! loopback, fed by a real HTTP client that retries as Skyvern does: every run's effect (a row
//! the handler inserts, with no unique constraint to hide a double) exists exactly once,
//! although the handler fails after writing, its database connection is killed after writing,
//! and every run is delivered twice at once. The same scenario without the inbox (the plain
//! middleware, the effect written outside the claim's transaction) doubles effects: the test
//! that shows the mechanism is what holds.

#![cfg(all(feature = "postgres", feature = "axum", feature = "actix"))]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Router};
use runhook::inbox::{Inbox, InboxLayer};
use runhook::store::sqlx::{self, PgPool};
use runhook::store::{IdempotencyStore, KeyState, Migrations, PostgresStore};
use runhook::tower::{VerifiedRun, WebhookLayer};
use runhook::{Receiver, Secret};
use runhook_testkit::skyvern::{completed_body, signed_post};
use runhook_testkit::{postgres_url, require_postgres, unique, unique_schema};

const KEY: &str = "sk_test_inbox";

/// What the handler does with a run the first time it sees it (every later time: write the
/// effect and answer 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstTime {
    /// Write the effect, answer 200.
    Succeed,
    /// Write the effect, then answer 500.
    FailAfterWriting,
    /// Write the effect, then lose the database connection (its backend terminated), then
    /// answer 200.
    LoseTheConnection,
}

#[derive(Clone)]
struct Scenario {
    /// The application's pool (the plain handler writes its effects with it).
    pool: PgPool,
    /// A pool of its own for terminating a backend, so that it never waits behind the
    /// deliveries' transactions.
    killer: PgPool,
    schema: String,
    plan: Arc<HashMap<String, FirstTime>>,
    seen: Arc<Mutex<HashMap<String, u32>>>,
}

impl Scenario {
    /// How many times the handler has now been called for `run` (1 the first time).
    fn call(&self, run: &str) -> u32 {
        let mut seen = self.seen.lock().unwrap();
        let calls = seen.entry(run.to_string()).or_default();
        *calls += 1;
        *calls
    }

    fn first_time(&self, run: &str, calls: u32) -> FirstTime {
        match calls {
            1 => self.plan.get(run).copied().unwrap_or(FirstTime::Succeed),
            _ => FirstTime::Succeed,
        }
    }

    fn insert_effect(&self) -> String {
        format!(
            "INSERT INTO \"{}\".effects (run_id) VALUES ($1)",
            self.schema
        )
    }
}

async fn inbox_handler(State(scenario): State<Scenario>, inbox: Inbox) -> StatusCode {
    let run = inbox.run().event.run_id.clone().unwrap();
    let calls = scenario.call(&run);
    let mut tx = inbox.transaction().await.unwrap();
    sqlx::query(&scenario.insert_effect())
        .bind(&run)
        .execute(&mut *tx)
        .await
        .unwrap();
    match scenario.first_time(&run, calls) {
        FirstTime::Succeed => StatusCode::OK,
        FirstTime::FailAfterWriting => StatusCode::INTERNAL_SERVER_ERROR,
        FirstTime::LoseTheConnection => {
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            let _: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(&scenario.killer)
                .await
                .unwrap();
            StatusCode::OK
        }
    }
}

/// The same handler without the inbox: the effect is written on its own connection.
async fn plain_handler(
    State(scenario): State<Scenario>,
    Extension(run): Extension<VerifiedRun>,
) -> StatusCode {
    let run = run.event.run_id.clone().unwrap();
    let calls = scenario.call(&run);
    sqlx::query(&scenario.insert_effect())
        .bind(&run)
        .execute(&scenario.pool)
        .await
        .unwrap();
    match scenario.first_time(&run, calls) {
        FirstTime::FailAfterWriting => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::OK,
    }
}

/// A fresh schema with runhook's tables and the effects table; the store on it.
async fn killer() -> PgPool {
    runhook::store::sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&postgres_url())
        .await
        .unwrap()
}

async fn setup(test: &str) -> (PostgresStore, String) {
    require_postgres();
    let schema = unique_schema(test);
    // Each delivery in its handler holds a connection for its transaction: 24 at a time here
    // (PostgreSQL's 100 connections are shared by every test running); the others wait for
    // one, or are answered 503 and retried.
    let store = PostgresStore::builder()
        .schema(schema.clone())
        .migrations(Migrations::Apply)
        .max_connections(24)
        .timeout(Duration::from_secs(5))
        .connect(&postgres_url())
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE TABLE \"{schema}\".effects (run_id text NOT NULL)"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    (store, schema)
}

/// 60 runs: a third succeed at once, a third fail after writing, a third lose the
/// connection after writing.
fn plan() -> (Vec<String>, HashMap<String, FirstTime>) {
    let runs: Vec<String> = (0..60).map(|_| unique("wr_inbox")).collect();
    let plan = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let first = match i % 3 {
                0 => FirstTime::Succeed,
                1 => FirstTime::FailAfterWriting,
                _ => FirstTime::LoseTheConnection,
            };
            (run.clone(), first)
        })
        .collect();
    (runs, plan)
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Delivers `run` as Skyvern's sender would, retrying what it retries (5xx) until a 2xx;
/// the statuses it got.
async fn deliver(client: &reqwest::Client, url: &str, run: &str) -> Vec<u16> {
    let body = completed_body(run);
    let mut statuses = Vec::new();
    for _ in 0..50 {
        let status = signed_post(client, url, KEY, &body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        statuses.push(status);
        if (200..300).contains(&status) {
            return statuses;
        }
        assert!(
            status >= 500,
            "{run}: answered {status}, which no sender retries"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{run} was never acknowledged: {statuses:?}");
}

/// Every run delivered twice at once, each copy retried until acknowledged.
async fn deliver_all(base: &str, runs: &[String]) {
    let client = reqwest::Client::new();
    let url = format!("{base}/hook");
    let mut sends = Vec::new();
    for run in runs {
        for _ in 0..2 {
            let (client, url, run) = (client.clone(), url.clone(), run.clone());
            sends.push(tokio::spawn(
                async move { deliver(&client, &url, &run).await },
            ));
        }
    }
    for send in sends {
        send.await.unwrap();
    }
}

async fn effects(pool: &PgPool, schema: &str) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT run_id, count(*) FROM \"{schema}\".effects GROUP BY run_id"
    ))
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_runs_effect_commits_once_through_failures_lost_connections_and_duplicates() {
    let (store, schema) = setup("inbox_once").await;
    let (runs, plan) = plan();
    let scenario = Scenario {
        pool: store.pool().clone(),
        killer: killer().await,
        schema: schema.clone(),
        plan: Arc::new(plan),
        seen: Arc::default(),
    };
    // A short lease: a copy that lost its connection is taken over soon.
    let builder = Receiver::skyvern(Secret::new(KEY).unwrap()).lease(Duration::from_secs(2));
    let layer = InboxLayer::new(builder, store.clone()).unwrap();
    let app = Router::new()
        .route("/hook", post(inbox_handler))
        .with_state(scenario.clone())
        .layer(layer);
    let base = serve(app).await;
    deliver_all(&base, &runs).await;

    let effects = effects(store.pool(), &schema).await;
    for run in &runs {
        assert_eq!(
            effects.get(run),
            Some(&1),
            "{run}: {:?}",
            scenario.plan.get(run)
        );
        assert_eq!(
            store.state(&format!("skyvern:{run}")).await.unwrap(),
            KeyState::Done
        );
    }
    assert_eq!(effects.len(), runs.len());
    // The failures happened: the runs that failed or lost their connection were handled
    // again, and their first effect was rolled back.
    let seen = scenario.seen.lock().unwrap().clone();
    for (run, first) in scenario.plan.iter() {
        if *first != FirstTime::Succeed {
            assert!(
                seen[run] >= 2,
                "{run} ({first:?}) was handled {} times",
                seen[run]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_inbox_an_effect_written_before_a_failure_is_written_again() {
    let (store, schema) = setup("inbox_control").await;
    let (runs, plan) = plan();
    let scenario = Scenario {
        pool: store.pool().clone(),
        killer: killer().await,
        schema: schema.clone(),
        plan: Arc::new(plan),
        seen: Arc::default(),
    };
    let receiver = Receiver::skyvern(Secret::new(KEY).unwrap())
        .store(Arc::new(store.clone()))
        .build_inline()
        .unwrap();
    let app = Router::new()
        .route("/hook", post(plain_handler))
        .with_state(scenario.clone())
        .layer(WebhookLayer::new(receiver));
    let base = serve(app).await;
    deliver_all(&base, &runs).await;

    let effects = effects(store.pool(), &schema).await;
    let doubled = runs
        .iter()
        .filter(|run| effects.get(*run).copied().unwrap_or(0) > 1)
        .count();
    // Every run that failed after writing wrote its effect twice.
    assert_eq!(doubled, runs.len() / 3, "{effects:?}");
}

/// The handler of the actix-web test, as `inbox_handler` is axum's.
async fn actix_handler(
    scenario: actix_web::web::Data<Scenario>,
    inbox: Inbox,
) -> actix_web::HttpResponse {
    let status = inbox_handler(State(scenario.get_ref().clone()), inbox).await;
    actix_web::HttpResponse::build(actix_web::http::StatusCode::from_u16(status.as_u16()).unwrap())
        .finish()
}

/// An actix-web server on its own thread and system, its store, pools and layer made there
/// (sqlx's connections belong to the runtime that opened them); its base URL.
fn spawn_actix_inbox(schema: String, plan: Arc<HashMap<String, FirstTime>>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let store = PostgresStore::builder()
                .schema(schema.clone())
                .max_connections(24)
                .timeout(Duration::from_secs(5))
                .connect(&postgres_url())
                .await
                .unwrap();
            let scenario = Scenario {
                pool: store.pool().clone(),
                killer: killer().await,
                schema,
                plan,
                seen: Arc::default(),
            };
            let builder =
                Receiver::skyvern(Secret::new(KEY).unwrap()).lease(Duration::from_secs(2));
            let layer = InboxLayer::new(builder, store).unwrap();
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new()
                    .app_data(actix_web::web::Data::new(scenario.clone()))
                    .service(
                        actix_web::web::resource("/hook")
                            .wrap(layer.clone())
                            .route(actix_web::web::post().to(actix_handler)),
                    )
            })
            .workers(2)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
            let base = format!("http://{}", server.addrs()[0]);
            let server = server.run();
            tx.send(base).unwrap();
            let _ = server.await;
        });
    });
    rx.recv().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_every_runs_effect_commits_once_through_failures_lost_connections_and_duplicates() {
    let (store, schema) = setup("inbox_actix").await;
    let (runs, plan) = plan();
    let plan = Arc::new(plan);
    let base = spawn_actix_inbox(schema.clone(), plan.clone());
    deliver_all(&base, &runs).await;
    let effects = effects(store.pool(), &schema).await;
    for run in &runs {
        assert_eq!(effects.get(run), Some(&1), "{run}: {:?}", plan.get(run));
        assert_eq!(
            store.state(&format!("skyvern:{run}")).await.unwrap(),
            KeyState::Done
        );
    }
    assert_eq!(effects.len(), runs.len());
}
