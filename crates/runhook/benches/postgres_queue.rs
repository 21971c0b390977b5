//! The Postgres hand-off's steady state beside PostgreSQL's own rate, in one run: an axum
//! server with a `Receiver` on `PostgresQueue` (each delivery's claim and job committed in one
//! statement before its 200; workers fetch, run a handler that counts, record the run done and
//! delete the job), loaded with distinct runs each sent once (more per round than the queue's
//! default capacity holds), and `pgbench`'s transactions per second for a single `INSERT` of
//! the same 7.7 KB body with the same 32 clients, on the same server. Only 2xx count, and a
//! round ends when every acknowledged run was processed. Rounds are interleaved; medians and
//! ratios are printed.
//!
//! Run (needs PostgreSQL and `pgbench`; tables go in a fresh schema, dropped after):
//! `cargo bench -p runhook --features axum,postgres --bench postgres_queue`
//! (`RUNHOOK_BENCH_REQUESTS`, default 40000 per round: several seconds of load, as pgbench's
//! 10 s, and four times the queue's capacity; `RUNHOOK_BENCH_ROUNDS`, 3;
//! `RUNHOOK_BENCH_WORKERS`, the receiver's workers, default 256: the handler does nothing, so
//! a worker's time is the wait for its run's done mark to commit, in a batch with the others).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runhook::payload::{Provider, RunEvent};
use runhook::postgres_queue::PostgresQueue;
use runhook::store::sqlx;
use runhook::store::{Migrations, PostgresStore};
use runhook::{Receiver, Secret, SkyvernSignature};

mod support;

use support::pgbench::{bench_schema, pgbench_script, run_pgbench};
use support::{compact_body, deliveries, env_count, load, median, serve, CONCURRENCY, KEY};

/// What the handler saw: runs processed, and when the last one was.
#[derive(Default)]
struct Processed {
    count: AtomicU64,
    last: Mutex<Option<Instant>>,
}

fn main() {
    let requests = env_count("RUNHOOK_BENCH_REQUESTS", 40_000);
    let rounds = env_count("RUNHOOK_BENCH_ROUNDS", 3);
    let workers = env_count("RUNHOOK_BENCH_WORKERS", 256);
    let url = runhook_testkit::postgres_url();
    let compact = compact_body();
    let schema = bench_schema();
    println!(
        "body: {} bytes; {requests} distinct runs per round, {rounds} rounds, {CONCURRENCY} clients, {workers} workers; PostgreSQL at {url}, schema {schema}",
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
            // Deliveries and done marks go in batches; the rest (renewals, fetches, counts)
            // needs few connections.
            .max_connections(CONCURRENCY as u32 + 16)
            .connect(&url)
            .await
            .expect("PostgreSQL for the bench");
        sqlx::query(&format!(
            "CREATE TABLE \"{schema}\".pgbench_ledger (run_id text NOT NULL, body text NOT NULL)"
        ))
        .execute(store.pool())
        .await
        .unwrap();
        let processed = Arc::new(Processed::default());
        let counted = processed.clone();
        let queue = PostgresQueue::builder(Provider::Skyvern)
            .build(store.clone())
            .unwrap();
        let receiver = Receiver::builder(
            Provider::Skyvern,
            SkyvernSignature::new(Secret::new(KEY).unwrap()),
        )
        .store(Arc::new(store.clone()))
        .handler(move |_event: Arc<RunEvent>| {
            let counted = counted.clone();
            async move {
                counted.count.fetch_add(1, Ordering::Relaxed);
                *counted.last.lock().unwrap() = Some(Instant::now());
                Ok::<(), std::io::Error>(())
            }
        })
        .workers(workers)
        .postgres_queue(queue)
        .build()
        .unwrap();
        let app = axum::Router::new().route(
            "/webhooks/skyvern",
            runhook::axum::post(receiver.clone()),
        );
        let addr = serve(app).await;
        let script = pgbench_script(&schema, &compact);
        let client = support::load_client();
        let (mut acked, mut handled, mut pgbench) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let work = deliveries(&compact, &format!("{schema}-{round}"), requests);
            let before = processed.count.load(Ordering::Relaxed);
            let started = Instant::now();
            let measured = load(&client, addr, work).await;
            let deadline = Instant::now() + Duration::from_secs(120);
            while processed.count.load(Ordering::Relaxed) < before + requests as u64 {
                assert!(Instant::now() < deadline, "not every acknowledged run was processed");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let last = processed.last.lock().unwrap().unwrap();
            let processed_rate = requests as f64 / (last - started).as_secs_f64();
            acked.push(measured.rps);
            handled.push(processed_rate);
            pgbench.push(run_pgbench(&url, &script));
            println!(
                "round {round}: acknowledged {:.0} 2xx/s (p50 {:.1} ms, p99 {:.1} ms), processed {processed_rate:.0}/s; pgbench {:.0} tps",
                measured.rps,
                measured.p50.as_secs_f64() * 1e3,
                measured.p99.as_secs_f64() * 1e3,
                pgbench[round]
            );
        }
        assert_eq!(
            processed.count.load(Ordering::Relaxed),
            (requests * rounds) as u64,
            "processed = acknowledged"
        );
        let (acked, handled, pgbench) = (median(acked), median(handled), median(pgbench));
        println!(
            "median: acknowledged {acked:.0} 2xx/s, processed {handled:.0}/s, pgbench {pgbench:.0} tps (single INSERT of the same body)"
        );
        println!(
            "postgres queue / pgbench = {:.2} (acknowledged), {:.2} (processed)",
            acked / pgbench,
            handled / pgbench
        );
        receiver.shutdown(Duration::from_secs(5)).await;
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(store.pool())
            .await
            .unwrap();
    });
}
