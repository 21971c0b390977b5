//! The transactional inbox's throughput beside PostgreSQL's own, in one run: deliveries per
//! second acknowledged by an axum server with `InboxLayer` whose handler inserts the run's
//! 7.7 KB body into a table through the inbox transaction (claim, begin, insert, done mark,
//! commit: every 200 is a committed effect), and `pgbench`'s transactions per second for a
//! single `INSERT` of the same body with the same 32 clients, on the same server. Rounds are
//! interleaved; medians and their ratio are printed.
//!
//! Run (needs PostgreSQL and `pgbench`; tables go in a fresh schema, dropped after):
//! `cargo bench -p runhook --features axum,postgres --bench inbox`
//! (`RUNHOOK_BENCH_REQUESTS`, default 4000 per round; `RUNHOOK_BENCH_ROUNDS`, 3;
//! `RUNHOOK_TEST_POSTGRES_URL`, default the local server).

use axum::http::StatusCode;
use axum::routing::post;
use runhook::inbox::{Inbox, InboxLayer};
use runhook::store::sqlx;
use runhook::store::{Migrations, PostgresStore};
use runhook::{Receiver, Secret};

mod support;

use support::pgbench::{bench_schema, pgbench_script, run_pgbench};
use support::{compact_body, deliveries, env_count, load, median, serve, CONCURRENCY, KEY};

fn main() {
    let requests = env_count("RUNHOOK_BENCH_REQUESTS", 4000);
    let rounds = env_count("RUNHOOK_BENCH_ROUNDS", 3);
    let url = runhook_testkit::postgres_url();
    let compact = compact_body();
    let schema = bench_schema();
    println!(
        "body: {} bytes; {requests} deliveries per round, {rounds} rounds, {CONCURRENCY} clients; PostgreSQL at {url}, schema {schema}",
        compact.len()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = PostgresStore::builder()
            .schema(schema.clone())
            .migrations(Migrations::Apply)
            .max_connections(CONCURRENCY as u32 + 8)
            .connect(&url)
            .await
            .expect("PostgreSQL for the bench");
        for table in ["ledger", "pgbench_ledger"] {
            sqlx::query(&format!(
                "CREATE TABLE \"{schema}\".{table} (run_id text NOT NULL, body text NOT NULL)"
            ))
            .execute(store.pool())
            .await
            .unwrap();
        }
        let insert = format!("INSERT INTO \"{schema}\".ledger (run_id, body) VALUES ($1, $2)");
        let handler = move |inbox: Inbox| {
            let insert = insert.clone();
            async move {
                let event = &inbox.run().event;
                let body = String::from_utf8_lossy(&event.raw_body).into_owned();
                let mut tx = inbox.transaction().await.unwrap();
                sqlx::query(&insert)
                    .bind(event.run_id.as_deref())
                    .bind(body)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                StatusCode::OK
            }
        };
        let layer = InboxLayer::new(Receiver::skyvern(Secret::new(KEY).unwrap()), store.clone())
            .unwrap();
        let app = axum::Router::new()
            .route("/webhooks/skyvern", post(handler))
            .layer(layer);
        let addr = serve(app).await;
        let script = pgbench_script(&schema, &compact);
        let client = support::load_client();
        let (mut inbox, mut pgbench) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let work = deliveries(&compact, &format!("{schema}-{round}"), requests);
            let measured = load(&client, addr, work).await;
            inbox.push(measured.rps);
            pgbench.push(run_pgbench(&url, &script));
            println!(
                "round {round}: inbox {:.0} 2xx/s (p99 {:.1} ms), pgbench {:.0} tps",
                measured.rps,
                measured.p99.as_secs_f64() * 1e3,
                pgbench[round]
            );
        }
        let committed: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".ledger"))
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(committed as usize, requests * rounds, "every 200 is a committed row");
        let (inbox, pgbench) = (median(inbox), median(pgbench));
        println!("median: inbox {inbox:.0} 2xx/s, pgbench {pgbench:.0} tps (single INSERT of the same body)");
        println!("inbox / pgbench = {:.2}", inbox / pgbench);
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(store.pool())
            .await
            .unwrap();
    });
}
