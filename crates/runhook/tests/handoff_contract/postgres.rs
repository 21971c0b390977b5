//! The contract on the Postgres queue, with a Postgres store in a schema of the test's own and
//! the queue's own dead letters (redriven into the queue).

use std::sync::Arc;

use runhook::dead_letter::{DeadLetterRecord, RedriveReport};
use runhook::payload::Provider;
use runhook::postgres_queue::PostgresQueue;
use runhook::receiver::BackgroundBuilder;
use runhook::store::{Migrations, PostgresStore};
use runhook::{Handler, Receiver};
use runhook_testkit::{postgres_url, require_postgres, unique_schema};

use crate::suite::{Backend, Stealing};

pub struct Postgres {
    schema: String,
    raw: PostgresStore,
    store: Arc<Stealing>,
    queue: PostgresQueue,
}

impl Backend for Postgres {
    async fn new(test: &str) -> Self {
        require_postgres();
        let schema = unique_schema(test);
        let raw = PostgresStore::builder()
            .schema(&schema)
            .migrations(Migrations::Apply)
            .max_connections(12)
            .connect(&postgres_url())
            .await
            .unwrap();
        let queue = PostgresQueue::builder(Provider::Skyvern)
            .poll_interval(std::time::Duration::from_millis(200))
            .build(raw.clone())
            .unwrap();
        Self {
            schema,
            store: Stealing::new(Arc::new(raw.clone())),
            raw,
            queue,
        }
    }

    fn store(&self) -> Arc<Stealing> {
        self.store.clone()
    }

    fn configure(&self, builder: BackgroundBuilder) -> BackgroundBuilder {
        builder.postgres_queue(self.queue.clone())
    }

    async fn backlog(&self, _receiver: &Receiver) -> usize {
        self.queue.backlog().await.unwrap() as usize
    }

    async fn settled(&self, _receiver: &Receiver) -> bool {
        self.queue.backlog().await.unwrap() == 0
    }

    async fn kept(&self) -> Vec<String> {
        self.queue.keys().await.unwrap()
    }

    async fn letters(&self) -> Vec<DeadLetterRecord> {
        let listed = self.queue.dead_letters().list().await.unwrap();
        listed.into_iter().map(|letter| letter.record).collect()
    }

    async fn redrive(&self, _handler: Arc<dyn Handler>) -> RedriveReport {
        // Into the queue, where the running receiver processes it.
        self.queue.redrive(&[]).await.unwrap()
    }

    async fn after_lost_lease(&self) {
        // The job stays, locked, for whoever holds the run.
        assert_eq!(self.queue.backlog().await.unwrap(), 1);
    }

    async fn cleanup(&self) {
        let drop = format!("DROP SCHEMA \"{}\" CASCADE", self.schema);
        let _ = runhook::store::sqlx::query(&drop)
            .execute(self.raw.pool())
            .await;
    }
}

handoff_contract_tests!(crate::postgres::Postgres);
