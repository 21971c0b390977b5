//! The queue itself: its builder, and the statements the receive path and the workers send.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use runhook_core::payload::Provider;
use runhook_store::sqlx::{self, postgres::PgRow};
use runhook_store::{Batcher, PostgresStore, StoreError};

use super::dead_letters::PostgresDeadLetters;
use super::error::PostgresQueueError;
use crate::dead_letter::RedriveReport;

/// How many times a job may be handed to workers before it is set aside as poison.
pub const DEFAULT_MAX_DELIVERIES: u64 = 5;
/// The default bound of a queue's backlog when the receiver sets no
/// [`queue_capacity`](crate::ReceiverBuilder::queue_capacity): past it, deliveries get 503.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;
/// The default bound of a queue's dead letters: past it, letters are refused (and their jobs
/// kept) until some are redriven or removed.
pub const DEFAULT_DEAD_LETTER_CAPACITY: usize = 10_000;

const DEFAULT_READ_BATCH: usize = 16;
const DEFAULT_POLL: Duration = Duration::from_secs(1);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// The most settled jobs one delete removes.
const MAX_ACK_BATCH: usize = 128;
/// The `LISTEN` channel every queue's new jobs are announced on; the payload names the queue.
pub(crate) const CHANNEL: &str = "runhook_jobs";

/// Configures a [`PostgresQueue`]; see [`PostgresQueue::builder`].
#[derive(Debug, Clone)]
pub struct PostgresQueueBuilder {
    name: String,
    consumer: Option<String>,
    read_batch: usize,
    poll: Duration,
    min_idle: Option<Duration>,
    max_deliveries: u64,
    dead_letter_capacity: usize,
}

/// The durable hand-off of one receiver on PostgreSQL: a delivery's claim and its job commit
/// in one statement before its 200, workers on every instance take jobs with
/// `FOR UPDATE SKIP LOCKED` (see the [module documentation](super)). Give it to
/// [`ReceiverBuilder::postgres_queue`](crate::ReceiverBuilder::postgres_queue). Cheap to
/// clone.
#[derive(Clone)]
pub struct PostgresQueue {
    pub(crate) inner: Arc<QueueInner>,
}

pub(crate) struct QueueInner {
    pub(crate) store: PostgresStore,
    pub(crate) name: String,
    pub(crate) consumer: String,
    pub(crate) read_batch: usize,
    pub(crate) poll: Duration,
    pub(crate) min_idle: Option<Duration>,
    pub(crate) max_deliveries: u64,
    pub(crate) dead_capacity: usize,
    pub(crate) sql: Statements,
    /// Deletes settled jobs in batches (started on first use).
    acks: OnceLock<Batcher<i64, ()>>,
}

impl std::fmt::Debug for PostgresQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = &self.inner;
        f.debug_struct("PostgresQueue")
            .field("schema", &q.store.schema())
            .field("name", &q.name)
            .field("consumer", &q.consumer)
            .finish_non_exhaustive()
    }
}

/// The SQL of each call, written once with the schema's name.
pub(crate) struct Statements {
    pub fetch_fresh: String,
    pub fetch_lapsed: String,
    pub touch: String,
    pub lapse: String,
    pub ack: String,
    pub backlog: String,
    pub jobs_of: String,
    pub dead_put: String,
    pub dead_list: String,
    pub dead_take: String,
    pub dead_count: String,
    pub redriven_job: String,
}

impl Statements {
    fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        // Jobs handed out: locked for `$3` ms by consumer `$4`, their delivery counts raised.
        let fetch = |which: &str, order: &str| {
            format!(
                "UPDATE {s}.jobs AS j SET \
                   locked_until = clock_timestamp() + $3::float8 * interval '1 millisecond', \
                   locked_by = $4, deliveries = j.deliveries + 1 \
                 FROM (SELECT id FROM {s}.jobs WHERE queue = $1 AND {which} \
                       ORDER BY {order} LIMIT $2 FOR UPDATE SKIP LOCKED) AS due \
                 WHERE j.id = due.id \
                 RETURNING j.id, j.provider, j.dedup_key, j.run_id, j.token, j.received_at_ms, \
                   j.body, j.headers, j.source, j.deliveries"
            )
        };
        Self {
            // Fresh jobs also renew their claims for the lease (`$5` ms) in the same statement:
            // `held` says the job's token holds its run, so its worker need not renew it.
            fetch_fresh: format!(
                "WITH fetched AS ({}), renewed AS ( \
                   UPDATE {s}.claims AS c \
                   SET expires_at = clock_timestamp() + $5::float8 * interval '1 millisecond' \
                   FROM fetched f \
                   WHERE c.key = f.dedup_key AND c.token = f.token AND NOT c.done \
                     AND c.expires_at > clock_timestamp() \
                   RETURNING c.key \
                 ) \
                 SELECT f.*, EXISTS (SELECT 1 FROM renewed r WHERE r.key = f.dedup_key) AS held \
                 FROM fetched f",
                fetch("locked_until IS NULL", "id")
            ),
            fetch_lapsed: fetch(
                "locked_until IS NOT NULL AND locked_until < clock_timestamp()",
                "locked_until",
            ),
            touch: format!(
                "UPDATE {s}.jobs SET locked_until = clock_timestamp() + $2::float8 * interval '1 millisecond' \
                 WHERE id = $1 AND locked_by = $3"
            ),
            lapse: format!(
                "UPDATE {s}.jobs SET locked_until = clock_timestamp() WHERE id = ANY($1) AND locked_by = $2"
            ),
            // Committed without waiting for the WAL flush (`synchronous_commit` off for this
            // statement's own transaction): a delete lost in a database crash only brings back
            // a job whose run is done, which its takeover finds done and deletes again. Every
            // statement that a 200 or a run's single execution rests on stays synchronous.
            ack: format!(
                "DELETE FROM {s}.jobs \
                 WHERE id = ANY($1) AND set_config('synchronous_commit', 'off', true) IS NOT NULL"
            ),
            backlog: format!("SELECT count(*) FROM {s}.jobs WHERE queue = $1"),
            jobs_of: format!("SELECT dedup_key FROM {s}.jobs WHERE queue = $1 ORDER BY id"),
            dead_put: format!(
                "INSERT INTO {s}.dead_letters (queue, dedup_key, provider, reason_code, received_at_ms, letter) \
                 SELECT $1, $2, $3, $4, $5, $6 \
                 WHERE (SELECT count(*) FROM (SELECT 1 FROM {s}.dead_letters WHERE queue = $1 LIMIT $7) AS d) < $7"
            ),
            dead_list: format!(
                "SELECT id, letter FROM {s}.dead_letters WHERE queue = $1 ORDER BY id"
            ),
            dead_take: format!("DELETE FROM {s}.dead_letters WHERE id = $1 AND queue = $2 RETURNING letter"),
            dead_count: format!("SELECT count(*) FROM {s}.dead_letters WHERE queue = $1"),
            // A letter back as a job, without a token: its worker claims the run anew.
            redriven_job: format!(
                "INSERT INTO {s}.jobs \
                   (queue, dedup_key, provider, run_id, token, received_at_ms, body, headers, source) \
                 VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8)"
            ),
        }
    }
}

impl PostgresQueue {
    /// Starts configuring the queue of a receiver for `provider` (its default name is the
    /// provider's, `skyvern`).
    pub fn builder(provider: Provider) -> PostgresQueueBuilder {
        PostgresQueueBuilder {
            name: provider.as_str().to_string(),
            consumer: None,
            read_batch: DEFAULT_READ_BATCH,
            poll: DEFAULT_POLL,
            min_idle: None,
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            dead_letter_capacity: DEFAULT_DEAD_LETTER_CAPACITY,
        }
    }

    /// The queue's name: its jobs and dead letters are the rows with this `queue`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This instance's name in the jobs' `locked_by`.
    pub fn consumer(&self) -> &str {
        &self.inner.consumer
    }

    /// The store the queue's claims and jobs live in.
    pub fn store(&self) -> &PostgresStore {
        &self.inner.store
    }

    /// The queue's dead letters, in `<schema>.dead_letters` (the default sink of a receiver
    /// with this queue).
    pub fn dead_letters(&self) -> PostgresDeadLetters {
        PostgresDeadLetters::new(self.clone())
    }

    /// The dedup keys of the jobs in the queue (waiting or running), oldest first.
    ///
    /// # Errors
    /// [`PostgresQueueError::Unavailable`] when Postgres fails.
    pub async fn keys(&self) -> Result<Vec<String>, PostgresQueueError> {
        let q = &*self.inner;
        let query = sqlx::query_scalar(&q.sql.jobs_of)
            .bind(&q.name)
            .fetch_all(q.store.pool());
        self.bounded(query).await
    }

    /// How many jobs the queue holds (waiting or running, on any instance).
    ///
    /// # Errors
    /// [`PostgresQueueError::Unavailable`] when Postgres fails.
    pub async fn backlog(&self) -> Result<u64, PostgresQueueError> {
        let q = &*self.inner;
        let query = sqlx::query_scalar::<_, i64>(&q.sql.backlog)
            .bind(&q.name)
            .fetch_one(q.store.pool());
        Ok(self.bounded(query).await?.max(0) as u64)
    }

    /// Hands dead letters back to the queue, where the running instances process them once,
    /// under a fresh claim (each letter moved in one transaction: deleted from the dead
    /// letters and inserted as a job). Only the letters whose dedup key is in `keys` are
    /// moved, or all of them when `keys` is empty. A letter without a provider, key or body,
    /// or with a truncated body, is kept.
    ///
    /// # Errors
    /// [`PostgresQueueError::Unavailable`] when Postgres fails; the letters moved before are
    /// moved.
    pub async fn redrive(&self, keys: &[String]) -> Result<RedriveReport, PostgresQueueError> {
        super::dead_letters::redrive(self, keys).await
    }

    /// Runs `call` within the store's timeout.
    pub(crate) async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, PostgresQueueError> {
        match tokio::time::timeout(DEFAULT_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(PostgresQueueError::unavailable(e)),
            Err(_) => Err(PostgresQueueError::Unavailable {
                reason: format!("Postgres did not answer within {DEFAULT_TIMEOUT:?}"),
            }),
        }
    }

    /// Hands out up to `count` jobs to this consumer, locked for `lock`: fresh ones (never
    /// handed out, their claims renewed), or those whose lock lapsed.
    pub(crate) async fn fetch(
        &self,
        which: Due,
        count: usize,
        lock: Duration,
    ) -> Result<Vec<PgRow>, PostgresQueueError> {
        let q = &*self.inner;
        let query = match which {
            Due::Fresh(_) => sqlx::query(&q.sql.fetch_fresh),
            Due::Lapsed => sqlx::query(&q.sql.fetch_lapsed),
        };
        let query = query
            .bind(&q.name)
            .bind(count as i64)
            .bind(lock.as_millis() as f64)
            .bind(&q.consumer);
        let query = match which {
            Due::Fresh(lease) => query.bind(lease.as_millis() as f64),
            Due::Lapsed => query,
        };
        let query = query.persistent(false).fetch_all(q.store.pool());
        self.bounded(query).await
    }

    /// Keeps job `id` locked for `lock` more (while its handler runs).
    pub(crate) async fn touch(&self, id: i64, lock: Duration) {
        let q = &*self.inner;
        let query = sqlx::query(&q.sql.touch)
            .bind(id)
            .bind(lock.as_millis() as f64)
            .bind(&q.consumer)
            .execute(q.store.pool());
        if let Err(err) = self.bounded(query).await {
            tracing::warn!(queue = %q.name, id, error = %err, "could not extend the lock of a running job");
        }
    }

    /// Ends this consumer's locks on `ids` now, so that another instance takes them over at
    /// its next scan (a shutdown that did not finish them).
    pub(crate) async fn lapse(&self, ids: &[i64]) {
        if ids.is_empty() {
            return;
        }
        let q = &*self.inner;
        let query = sqlx::query(&q.sql.lapse)
            .bind(ids)
            .bind(&q.consumer)
            .execute(q.store.pool());
        if let Err(err) = self.bounded(query).await {
            tracing::warn!(queue = %q.name, error = %err, "could not hand back unfinished jobs; they are taken over when their locks lapse");
        }
    }

    /// Deletes a settled job, in a batch with those settled at the same time. A failure
    /// leaves it: a takeover finds its run done.
    pub(crate) async fn ack(&self, id: i64) {
        let q = &*self.inner;
        let acks = q.acks.get_or_init(|| {
            let (pool, sql, name) = (q.store.pool().clone(), q.sql.ack.clone(), q.name.clone());
            Batcher::start(MAX_ACK_BATCH, 2, move |ids: Vec<i64>| {
                let (pool, sql, name) = (pool.clone(), sql.clone(), name.clone());
                async move {
                    let query = sqlx::query(&sql).bind(&ids).persistent(false).execute(&pool);
                    match tokio::time::timeout(DEFAULT_TIMEOUT, query).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(err)) => tracing::warn!(queue = %name, error = %err, "could not delete settled jobs; a takeover will find them done"),
                        Err(_) => tracing::warn!(queue = %name, "deleting settled jobs timed out; a takeover will find them done"),
                    }
                    vec![(); ids.len()]
                }
            })
        });
        acks.call(id).await;
    }

    /// Whether Postgres answers on the queue's pool (a readiness check).
    pub(crate) async fn ping(&self) -> Result<(), PostgresQueueError> {
        let query = sqlx::query("SELECT 1").execute(self.inner.store.pool());
        self.bounded(query).await.map(drop)
    }

    /// Tells every instance listening that the queue has new jobs.
    pub(crate) async fn announce(&self) {
        let q = &*self.inner;
        let query = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(announcement(q.store.schema(), &q.name))
            .execute(q.store.pool());
        if let Err(err) = self.bounded(query).await {
            tracing::debug!(queue = %q.name, error = %err, "could not announce new jobs; the others find them at their next poll");
        }
    }
}

/// The payload announcing new jobs in `queue` of `schema`.
pub(crate) fn announcement(schema: &str, queue: &str) -> String {
    format!("{schema}.{queue}")
}

/// Which jobs a fetch hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Never handed out; their claims renewed for this lease.
    Fresh(Duration),
    /// Handed out, and their lock lapsed (their consumer died, or let them go).
    Lapsed,
}

impl PostgresQueueBuilder {
    /// The queue's name (default: the provider's). Every instance serving the same route
    /// must use the same name; two routes of one provider need two names.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// This instance's name in the jobs it locks (default `<hostname>-<pid>-<random>`).
    pub fn consumer(mut self, consumer: impl Into<String>) -> Self {
        self.consumer = Some(consumer.into());
        self
    }

    /// The most jobs one fetch hands out (default 16); never more than the receiver's free
    /// workers.
    pub fn read_batch(mut self, batch: usize) -> Self {
        self.read_batch = batch.max(1);
        self
    }

    /// How often an idle reader looks for jobs when no announcement woke it (default 1 s):
    /// the bound on how late a job is seen when `NOTIFY` is lost (a listener reconnecting).
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll.max(Duration::from_millis(10));
        self
    }

    /// How long a handed-out job stays locked without a sign of life from its worker before
    /// another instance takes it over (default: the receiver's lease plus a tenth of it, at
    /// least one second more). The worker extends it with each lease renewal.
    pub fn min_idle(mut self, min_idle: Duration) -> Self {
        self.min_idle = Some(min_idle);
        self
    }

    /// How many times a job may be handed to workers before a takeover sets it aside as
    /// poison (default [`DEFAULT_MAX_DELIVERIES`], at least 1).
    pub fn max_deliveries(mut self, deliveries: u64) -> Self {
        self.max_deliveries = deliveries.max(1);
        self
    }

    /// The most dead letters the queue keeps (default [`DEFAULT_DEAD_LETTER_CAPACITY`]);
    /// past it, letters are refused and their jobs kept until some are redriven.
    pub fn dead_letter_capacity(mut self, capacity: usize) -> Self {
        self.dead_letter_capacity = capacity.max(1);
        self
    }

    /// Builds the queue on `store`, whose schema holds the jobs and dead letters (migration
    /// 2, applied with the store's). Use the same store as the receiver's.
    ///
    /// # Errors
    /// [`PostgresQueueError::InvalidConfig`] for an empty name.
    pub fn build(self, store: PostgresStore) -> Result<PostgresQueue, PostgresQueueError> {
        if self.name.is_empty() {
            return Err(PostgresQueueError::InvalidConfig {
                reason: "the queue's name must not be empty".into(),
            });
        }
        let sql = Statements::new(store.schema());
        Ok(PostgresQueue {
            inner: Arc::new(QueueInner {
                store,
                name: self.name,
                consumer: self
                    .consumer
                    .unwrap_or_else(crate::handoff::durable::default_consumer),
                read_batch: self.read_batch,
                poll: self.poll,
                min_idle: self.min_idle,
                max_deliveries: self.max_deliveries,
                dead_capacity: self.dead_letter_capacity,
                sql,
                acks: OnceLock::new(),
            }),
        })
    }
}

impl From<StoreError> for PostgresQueueError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::InvalidConfig { reason } => PostgresQueueError::InvalidConfig { reason },
            other => PostgresQueueError::Unavailable {
                reason: other.to_string(),
            },
        }
    }
}
