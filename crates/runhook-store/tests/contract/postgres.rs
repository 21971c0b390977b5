//! The contract against `PostgresStore` on a real PostgreSQL (`RUNHOOK_TEST_POSTGRES_URL`,
//! default the local server with trust authentication), each test in a schema of its own; and
//! what only Postgres has: migrations applied only when asked, the user's own pool, a schema
//! name that cannot inject SQL, claims shared by two stores on one database, and an
//! unreachable database answering `Unavailable`.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use runhook_store::sqlx::postgres::PgPoolOptions;
use runhook_store::{Claim, IdempotencyStore, Migrations, PostgresStore, StoreError};
use runhook_testkit::{postgres_url, require_postgres, unique_schema};

use crate::suite::{acquire, fp, Store, KEEP, LONG};

/// A store in a fresh, migrated schema of its own.
async fn fresh_store(test: &str) -> Option<Store> {
    require_postgres();
    let store = PostgresStore::builder()
        .schema(unique_schema(test))
        .migrations(Migrations::Apply)
        .connect(&postgres_url())
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {}: {e}", postgres_url()));
    Some(Arc::new(store))
}

mod contract {
    contract_tests!(super::fresh_store);
}

#[tokio::test]
async fn an_unmigrated_schema_is_refused_with_the_way_to_migrate_it() {
    require_postgres();
    let schema = unique_schema("unmigrated");
    let refused = PostgresStore::builder()
        .schema(&schema)
        .connect(&postgres_url())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::InvalidConfig { reason } if reason.contains("runhook migrate")),
        "{refused}"
    );
    // Nothing was created by the refusal.
    let pool = PgPoolOptions::new().connect(&postgres_url()).await.unwrap();
    let exists: bool = runhook_store::sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)",
    )
    .bind(&schema)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!exists, "a check created the schema");
    // Migrating applies every version once (1: claims and expectations; 2: the queue's jobs
    // and dead letters; 3: the jobs' bodies kept in their rows, lz4-compressed); again,
    // nothing.
    assert_eq!(
        PostgresStore::migrate(&pool, &schema).await.unwrap(),
        [1, 2, 3]
    );
    assert!(PostgresStore::migrate(&pool, &schema)
        .await
        .unwrap()
        .is_empty());
    // The user's own pool now works.
    let store = PostgresStore::builder()
        .schema(&schema)
        .with_pool(pool.clone())
        .await
        .unwrap();
    let Claim::Acquired(_) = store.claim("k", LONG, fp("b")).await.unwrap() else {
        panic!("a fresh key is acquired");
    };
    assert!(store.is_shared());
    store.ping().await.unwrap();
}

#[tokio::test]
async fn migrations_from_many_instances_at_once_apply_each_version_once() {
    require_postgres();
    let schema = unique_schema("concurrent_migrate");
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&postgres_url())
        .await
        .unwrap();
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let (pool, schema) = (pool.clone(), schema.clone());
            tokio::spawn(async move { PostgresStore::migrate(&pool, &schema).await })
        })
        .collect();
    let mut applied = Vec::new();
    for run in runs {
        applied.extend(run.await.unwrap().unwrap());
    }
    applied.sort();
    assert_eq!(applied, [1, 2, 3]);
}

#[tokio::test]
async fn a_schema_name_is_an_identifier_never_sql() {
    for bad in ["runhook; DROP TABLE x", "Runhook", "a\"b", ""] {
        let err = PostgresStore::builder()
            .schema(bad)
            .migrations(Migrations::Apply)
            .connect(&postgres_url())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidConfig { .. }),
            "{bad}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_schema_share_every_claim() {
    require_postgres();
    let schema = unique_schema("shared_schema");
    let url = postgres_url();
    let open = |migrations| {
        PostgresStore::builder()
            .schema(schema.clone())
            .migrations(migrations)
            .connect(&url)
    };
    let first: Store = Arc::new(open(Migrations::Apply).await.unwrap());
    let second = open(Migrations::Check).await.unwrap();
    let token = acquire(&first, "run-1", LONG, "body").await;
    assert!(matches!(
        second.claim("run-1", LONG, fp("body")).await.unwrap(),
        Claim::InFlight { same_payload: true, expires_in: Some(left) } if left > LONG / 2
    ));
    first.complete("run-1", &token, KEEP).await.unwrap();
    assert!(matches!(
        second.claim("run-1", LONG, fp("other")).await.unwrap(),
        Claim::Done {
            same_payload: false
        }
    ));
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_within_the_timeout() {
    let port = runhook_testkit::free_port();
    let started = std::time::Instant::now();
    let err = PostgresStore::builder()
        .timeout(Duration::from_millis(500))
        .connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn sslmode_in_the_url_encrypts_the_connection_with_rustls() {
    require_postgres();
    let url = postgres_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let store = PostgresStore::builder()
        .schema(unique_schema("tls"))
        .migrations(Migrations::Apply)
        .connect(&format!("{url}{separator}sslmode=require"))
        .await
        .unwrap_or_else(|e| panic!("the local PostgreSQL must accept TLS (ssl = on): {e}"));
    let encrypted: bool = runhook_store::sqlx::query_scalar(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(encrypted, "the store's connection is not encrypted");
    let Claim::Acquired(_) = store.claim("k", LONG, fp("b")).await.unwrap() else {
        panic!("a fresh key is acquired");
    };
    // And without TLS the same server reports a plain connection: the check can fail.
    let plain = PostgresStore::builder()
        .schema(unique_schema("plain"))
        .migrations(Migrations::Apply)
        .connect(&format!("{url}{separator}sslmode=disable"))
        .await
        .unwrap();
    let encrypted: bool = runhook_store::sqlx::query_scalar(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .fetch_one(plain.pool())
    .await
    .unwrap();
    assert!(!encrypted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_in_a_transaction_is_the_runs_until_commit_and_gone_on_rollback() {
    require_postgres();
    let store = PostgresStore::builder()
        .schema(unique_schema("claim_in_tx"))
        .migrations(Migrations::Apply)
        .connect(&postgres_url())
        .await
        .unwrap();
    let mut first = store.pool().begin().await.unwrap();
    let claimed = store
        .claim_in(&mut first, "run-1", fp("body"), KEEP)
        .await
        .unwrap();
    assert!(claimed.is_acquired());
    // Invisible to others until the commit: a second transaction is told at once that the
    // run is in flight, without waiting for the first.
    let mut second = store.pool().begin().await.unwrap();
    let started = std::time::Instant::now();
    let raced = store
        .claim_in(&mut second, "run-1", fp("body"), KEEP)
        .await
        .unwrap();
    assert!(matches!(raced, Claim::InFlight { .. }), "{raced:?}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    second.rollback().await.unwrap();
    // Rolled back: the run is claimable at once (no lease to wait out). (A transaction
    // dropped without a rollback is rolled back when sqlx next uses its connection: a test
    // that began the next one at once would race it.)
    first.rollback().await.unwrap();
    let mut third = store.pool().begin().await.unwrap();
    assert!(store
        .claim_in(&mut third, "run-1", fp("body"), KEEP)
        .await
        .unwrap()
        .is_acquired());
    third.commit().await.unwrap();
    // Committed: done for every later claim, in a transaction or not.
    let mut fourth = store.pool().begin().await.unwrap();
    assert!(matches!(
        store
            .claim_in(&mut fourth, "run-1", fp("other"), KEEP)
            .await
            .unwrap(),
        Claim::Done {
            same_payload: false
        }
    ));
    // The transaction's own settings are untouched.
    let timeout: String = runhook_store::sqlx::query_scalar("SHOW lock_timeout")
        .fetch_one(&mut *fourth)
        .await
        .unwrap();
    assert_eq!(timeout, "0");
    // (A claim in a transaction holds the row until that transaction ends.)
    drop(fourth);
    assert!(matches!(
        store.claim("run-1", LONG, fp("body")).await.unwrap(),
        Claim::Done { same_payload: true }
    ));
}
