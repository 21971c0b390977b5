//! The Postgres store: each key one row of `<schema>.claims`, each state change one statement,
//! the database's clock for leases and windows (so that every instance agrees on them).
//!
//! | call | statement |
//! |---|---|
//! | claim | `INSERT … ON CONFLICT (key) DO UPDATE`: the row is taken (the caller's token written) only when absent or lapsed, and read back at its latest version either way |
//! | claim in the caller's transaction | the transaction's advisory lock on the key (never waited for), then the same statement, the row written as done |
//! | complete, release, renew | `UPDATE`/`DELETE … WHERE key = $1 AND token = $2 AND NOT done AND expires_at > clock_timestamp()` |
//!
//! A call whose connection failed mid-statement may have been applied: claim and complete read
//! the row back by their token, so that a claim applied without its reply is not held by
//! nobody for a lease, and a completion is not reported lost when it was written.

mod batch;
mod expect;
mod jobs;
mod schema;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{PgPool, Row as _};

use crate::expect::{Expectations, DEFAULT_MAX_EXPECTATIONS};
use crate::{
    check_duration, check_key, Claim, Fingerprint, IdempotencyStore, KeyState, StoreError, Token,
    DEFAULT_MAX_KEY_LEN,
};
pub use batch::Batcher;
use expect::PostgresExpectations;
pub use jobs::{BacklogCheck, ClaimEnqueued, NewJob, Pickup};
pub use schema::DEFAULT_SCHEMA;
use schema::{Schema, CURRENT_VERSION};

/// Every how many claims a claim also deletes expired rows (up to [`PURGE_BATCH`]).
const PURGE_EVERY: u32 = 1024;
/// The most expired rows one purge deletes.
const PURGE_BATCH: i64 = 1000;

/// What a claim does to an existing row. The conflicting row is locked and read at its latest
/// version, whatever the statement's snapshot: a lapsed row is taken (its token replaced by
/// the caller's), a live one written back unchanged, and RETURNING reads what the row holds
/// now.
pub(crate) const CLAIM_UPDATE: &str = "ON CONFLICT (key) DO UPDATE SET \
   done = CASE WHEN c.expires_at <= clock_timestamp() THEN EXCLUDED.done ELSE c.done END, \
   token = CASE WHEN c.expires_at <= clock_timestamp() THEN EXCLUDED.token ELSE c.token END, \
   fingerprint = CASE WHEN c.expires_at <= clock_timestamp() \
     THEN EXCLUDED.fingerprint ELSE c.fingerprint END, \
   expires_at = CASE WHEN c.expires_at <= clock_timestamp() \
     THEN EXCLUDED.expires_at ELSE c.expires_at END";

/// What a claim of one key reads back: the caller's token (`$2`) in the row means the claim
/// was won.
pub(crate) const CLAIM_RETURNING: &str = "RETURNING c.token = $2 AS acquired, c.done, \
   c.fingerprint, (extract(epoch FROM c.expires_at - clock_timestamp()) * 1000)::bigint AS remaining_ms";

/// Whether [`PostgresStoreBuilder::connect`] may change the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// Only check that the schema is at the version this code needs, and refuse to start
    /// otherwise, saying how to migrate (the default: nothing is created by surprise).
    Check,
    /// Apply the migrations not yet applied (creating the schema and its tables).
    Apply,
}

/// How to build a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresStoreBuilder {
    schema: String,
    max_key_len: usize,
    timeout: Duration,
    max_connections: u32,
    migrations: Migrations,
    max_expectations: usize,
}

impl Default for PostgresStoreBuilder {
    fn default() -> Self {
        Self {
            schema: DEFAULT_SCHEMA.to_string(),
            max_key_len: DEFAULT_MAX_KEY_LEN,
            timeout: Duration::from_secs(2),
            max_connections: 16,
            migrations: Migrations::Check,
            max_expectations: DEFAULT_MAX_EXPECTATIONS,
        }
    }
}

impl PostgresStoreBuilder {
    /// The schema holding the tables (default [`DEFAULT_SCHEMA`], `runhook`): lowercase
    /// letters, digits and `_`.
    pub fn schema(mut self, name: impl Into<String>) -> Self {
        self.schema = name.into();
        self
    }

    /// The longest key accepted (default [`DEFAULT_MAX_KEY_LEN`]).
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.max_key_len = bytes;
        self
    }

    /// How long one call may take, connection included, before it is
    /// [`StoreError::Unavailable`] (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most connections of a pool this builder opens (default 16; not used with
    /// [`PostgresStoreBuilder::with_pool`]).
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Whether connecting may apply the migrations (default [`Migrations::Check`]).
    pub fn migrations(mut self, migrations: Migrations) -> Self {
        self.migrations = migrations;
        self
    }

    /// The most runs expected per scope (default [`DEFAULT_MAX_EXPECTATIONS`]).
    pub fn max_expectations(mut self, max: usize) -> Self {
        self.max_expectations = max;
        self
    }

    /// Opens a pool on `url` (`postgres://user@host:port/db`, TLS by its `sslmode`) and
    /// builds the store on it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached,
    /// [`StoreError::InvalidConfig`] for a bad URL or schema name, or a schema not migrated
    /// (with [`Migrations::Check`]).
    pub async fn connect(self, url: &str) -> Result<PostgresStore, StoreError> {
        let options: sqlx::postgres::PgConnectOptions =
            url.parse()
                .map_err(|e: sqlx::Error| StoreError::InvalidConfig {
                    reason: format!("Postgres URL: {e}"),
                })?;
        // sqlx's ping before each use stays: it is also what sends the rollback of a
        // transaction dropped without one (the inbox's), before its connection is used again.
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.timeout)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        self.with_pool(pool).await
    }

    /// Builds the store on your own pool (the one your handlers use).
    ///
    /// # Errors
    /// As [`PostgresStoreBuilder::connect`].
    pub async fn with_pool(self, pool: PgPool) -> Result<PostgresStore, StoreError> {
        let schema = Schema::new(&self.schema)?;
        if self.migrations == Migrations::Apply {
            schema::migrate(&pool, &schema).await.map_err(unavailable)?;
        }
        let version = schema::applied_version(&pool, &schema)
            .await
            .map_err(unavailable)?;
        if version != CURRENT_VERSION {
            return Err(StoreError::InvalidConfig {
                reason: format!(
                    "Postgres schema `{}` is at version {version}, this runhook needs \
                     {CURRENT_VERSION}: run `runhook migrate --store <url>` (or \
                     PostgresStore::migrate, or Migrations::Apply)",
                    schema.name()
                ),
            });
        }
        let statements = Arc::new(Statements::new(&schema));
        Ok(PostgresStore {
            expectations: PostgresExpectations::new(
                pool.clone(),
                &schema,
                self.max_expectations,
                self.timeout,
            ),
            pool,
            schema,
            statements,
            max_key_len: self.max_key_len,
            timeout: self.timeout,
            claims: Arc::new(AtomicU32::new(0)),
            batches: Arc::default(),
        })
    }
}

/// The SQL of each call, written once with the schema's name.
#[derive(Debug)]
struct Statements {
    claim: String,
    claim_enqueue: String,
    claim_enqueue_many: String,
    complete_many: String,
    mark_done: String,
    read_token: String,
    lock_in: String,
    release: String,
    renew: String,
    state: String,
    purge: String,
}

impl Statements {
    fn new(schema: &Schema) -> Self {
        Self {
            // See CLAIM_ON_CONFLICT. `$5` is the state a won claim writes: in flight (a lease), or done (inside the caller's transaction, where
            // nobody sees the row before the commit and a rollback or a crash removes it).
            claim: schema.sql(&format!(
                "INSERT INTO {{schema}}.claims AS c (key, done, token, fingerprint, expires_at) \
                 VALUES ($1, $5, $2, $3, clock_timestamp() + $4::float8 * interval '1 millisecond') \
                 {CLAIM_UPDATE} {CLAIM_RETURNING}"
            )),
            claim_enqueue: schema.sql(&jobs::claim_enqueue_sql()),
            claim_enqueue_many: schema.sql(&jobs::claim_enqueue_many_sql()),
            // The done mark inside a caller's transaction: it waits for the row's lock, so of
            // two transactions marking one run, the second sees the first's mark (or its
            // rollback) and marks only if the run is still not done.
            mark_done: schema.sql(
                "UPDATE {schema}.claims \
                 SET done = true, expires_at = clock_timestamp() + $2::float8 * interval '1 millisecond' \
                 WHERE key = $1 AND NOT done",
            ),
            // A completion applied also deletes its hand-off job, if it names one, in the
            // same transaction.
            complete_many: schema.sql(
                "WITH done AS ( \
                   UPDATE {schema}.claims AS c \
                   SET done = true, \
                     expires_at = clock_timestamp() + t.keep_ms * interval '1 millisecond' \
                   FROM unnest($1::text[], $2::bytea[], $3::float8[], $4::bigint[]) \
                     AS t(key, token, keep_ms, job) \
                   WHERE c.key = t.key AND c.token = t.token AND NOT c.done \
                     AND c.expires_at > clock_timestamp() \
                   RETURNING c.key, c.token, t.job \
                 ), gone AS ( \
                   DELETE FROM {schema}.jobs AS j USING done WHERE j.id = done.job \
                 ) \
                 SELECT key, token FROM done",
            ),
            read_token: schema
                .sql("SELECT done FROM {schema}.claims WHERE key = $1 AND token = $2"),
            // A claim in a transaction first takes the key's advisory lock for the transaction,
            // without waiting: two transactions never claim one key at once, and neither ever
            // waits for the other. The schema is part of the lock's key.
            lock_in: format!(
                "SELECT pg_try_advisory_xact_lock(hashtext('runhook:{}'), hashtext($1))",
                schema.name()
            ),
            release: schema.sql(
                "DELETE FROM {schema}.claims \
                 WHERE key = $1 AND token = $2 AND NOT done AND expires_at > clock_timestamp()",
            ),
            renew: schema.sql(
                "UPDATE {schema}.claims \
                 SET expires_at = clock_timestamp() + $3::float8 * interval '1 millisecond' \
                 WHERE key = $1 AND token = $2 AND NOT done AND expires_at > clock_timestamp()",
            ),
            state: schema.sql(
                "SELECT done FROM {schema}.claims \
                 WHERE key = $1 AND expires_at > clock_timestamp()",
            ),
            purge: schema.sql(
                "DELETE FROM {schema}.claims WHERE key IN ( \
                   SELECT key FROM {schema}.claims \
                   WHERE expires_at < clock_timestamp() - interval '1 minute' LIMIT $1)",
            ),
        }
    }
}

/// An [`IdempotencyStore`] on PostgreSQL, shared by every instance that uses the same
/// database and schema.
///
/// ```no_run
/// use runhook_store::{IdempotencyStore, Migrations, PostgresStore};
///
/// # async fn example() -> Result<(), runhook_store::StoreError> {
/// // Once, at deploy time (or `runhook migrate --store postgres://…`):
/// let store = PostgresStore::builder()
///     .migrations(Migrations::Apply)
///     .connect("postgres://app@127.0.0.1:5432/app")
///     .await?;
/// assert!(store.is_shared());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    schema: Schema,
    statements: Arc<Statements>,
    expectations: PostgresExpectations,
    max_key_len: usize,
    timeout: Duration,
    claims: Arc<AtomicU32>,
    batches: Arc<std::sync::OnceLock<Batches>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema.name())
            .field("max_key_len", &self.max_key_len)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A builder with the defaults: schema `runhook`, 2 s per call, migrations checked.
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder::default()
    }

    /// Applies the migrations the schema lacks on `pool` (creating schema `schema` and its
    /// tables); returns the versions applied (empty when it was up to date). Safe to run from
    /// several instances at once.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database refuses or cannot be reached,
    /// [`StoreError::InvalidConfig`] for a bad schema name.
    pub async fn migrate(pool: &PgPool, schema: &str) -> Result<Vec<i32>, StoreError> {
        let schema = Schema::new(schema)?;
        schema::migrate(pool, &schema).await.map_err(unavailable)
    }

    /// Whether `name` can name the schema of the tables (lowercase letters, digits and `_`,
    /// not first a digit, at most 63 bytes): the check the builder makes, for a configuration
    /// read before any connection.
    ///
    /// # Errors
    /// [`StoreError::InvalidConfig`] saying why not.
    pub fn check_schema_name(name: &str) -> Result<(), StoreError> {
        Schema::new(name).map(|_| ())
    }

    /// Claims `key` **inside the caller's transaction** `conn`, as done for `keep_for` if the
    /// transaction commits (the transactional inbox): the caller's writes and the run's done
    /// mark then commit together, or neither does. [`Claim::Acquired`] means the run is the
    /// caller's to process now (its token is of no further use: commit or roll back);
    /// [`Claim::Done`] a run already processed; [`Claim::InFlight`] a run another delivery
    /// holds: a lease-based claim, or another transaction claiming it now (its `same_payload`
    /// is then `false`: unknown). Roll back after anything but `Acquired`.
    ///
    /// Never waits for another transaction: claims in transactions first take a
    /// transaction-scoped advisory lock on the key (`pg_try_advisory_xact_lock`, keyed by the
    /// schema and the key's hash), and a key whose lock is taken is answered in flight at
    /// once. A lease-based [`IdempotencyStore::claim`] of a key whose transaction is open
    /// waits for it, up to the store's timeout.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when a statement fails (the transaction is then aborted),
    /// and the validation errors for a bad key or duration.
    pub async fn claim_in(
        &self,
        conn: &mut sqlx::PgConnection,
        key: &str,
        fingerprint: Fingerprint,
        keep_for: Duration,
    ) -> Result<Claim, StoreError> {
        check_key(key, self.max_key_len)?;
        check_duration("keep_for", keep_for)?;
        let locked = sqlx::query_scalar::<_, bool>(&self.statements.lock_in)
            .bind(key)
            .fetch_one(&mut *conn);
        if !self.bounded(locked).await.map_err(Failure::into_error)? {
            return Ok(Claim::InFlight {
                same_payload: false,
                expires_in: None,
            });
        }
        let token = Token::random();
        let claimed = self
            .claim_query(key, &token, &fingerprint, keep_for, Won::Done)
            .fetch_one(&mut *conn);
        let row = self.bounded(claimed).await.map_err(Failure::into_error)?;
        claim_answer(&row, token, fingerprint).map_err(unavailable)
    }

    /// Marks `key` done for `keep_for` **inside the caller's transaction** `conn` (the
    /// inbox's background form: the caller's writes and the mark commit together), whoever
    /// holds its claim: [`DoneMark::Marked`] when this transaction marked it (commit);
    /// [`DoneMark::AlreadyDone`] when another transaction marked it first (roll back: the
    /// run's effect is that one's); [`DoneMark::NotClaimed`] when there is no claim of it (roll
    /// back, and claim it again). Waits for another transaction marking the same key, up to the
    /// store's timeout.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when a statement fails (the transaction is then aborted),
    /// and the validation errors for a bad key or duration.
    pub async fn mark_done_in(
        &self,
        conn: &mut sqlx::PgConnection,
        key: &str,
        keep_for: Duration,
    ) -> Result<DoneMark, StoreError> {
        check_key(key, self.max_key_len)?;
        check_duration("keep_for", keep_for)?;
        let marked = sqlx::query(&self.statements.mark_done)
            .bind(key)
            .bind(millis(keep_for) as f64)
            .execute(&mut *conn);
        let marked = self.bounded(marked).await.map_err(Failure::into_error)?;
        if marked.rows_affected() == 1 {
            return Ok(DoneMark::Marked);
        }
        let state = sqlx::query_scalar::<_, bool>(&self.statements.state)
            .bind(key)
            .fetch_optional(&mut *conn);
        match self.bounded(state).await.map_err(Failure::into_error)? {
            Some(true) => Ok(DoneMark::AlreadyDone),
            _ => Ok(DoneMark::NotClaimed),
        }
    }

    /// The claim statement for `key` with `token`, a won claim written as `won` for
    /// `duration` (its lease, or its done window).
    fn claim_query<'q>(
        &'q self,
        key: &'q str,
        token: &'q Token,
        fingerprint: &'q Fingerprint,
        duration: Duration,
        won: Won,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(&self.statements.claim)
            .bind(key)
            .bind(&token.as_bytes()[..])
            .bind(&fingerprint.as_bytes()[..])
            .bind(millis(duration) as f64)
            .bind(won == Won::Done)
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        self.schema.name()
    }

    /// Runs `call` within the store's timeout.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, Failure> {
        bounded(self.timeout, call).await
    }

    /// The store's batchers, started on first use.
    fn batches(&self) -> &Batches {
        self.batches
            .get_or_init(|| Batches::start(&self.pool, &self.statements, self.timeout))
    }

    /// Whether `token` holds `key` now, and done: read back after an ambiguous failure.
    async fn read_token(&self, key: &str, token: &Token) -> Result<Option<bool>, StoreError> {
        let query = sqlx::query_scalar::<_, bool>(&self.statements.read_token)
            .bind(key)
            .bind(&token.as_bytes()[..])
            .fetch_optional(&self.pool);
        self.bounded(query).await.map_err(Failure::into_error)
    }

    /// Deletes up to [`PURGE_BATCH`] rows whose lease or window ended over a minute ago, in
    /// the background.
    /// Completes the claim in the next batch, deleting `job` with it when the claim was
    /// `token`'s ([`IdempotencyStore::complete`], [`PostgresStore::complete_with_job`]).
    pub(crate) async fn complete_batched(
        &self,
        key: &str,
        token: &Token,
        keep_for: Duration,
        job: Option<i64>,
    ) -> Result<(), StoreError> {
        check_key(key, self.max_key_len)?;
        check_duration("keep_for", keep_for)?;
        let call = CompleteCall {
            key: key.to_string(),
            token: *token,
            keep_ms: millis(keep_for) as f64,
            job,
        };
        let batched = self.batches().complete.call(call).await;
        let cas = batched.unwrap_or_else(|| Cas::Unknown("the store's batcher stopped".into()));
        match cas {
            Cas::Applied => Ok(()),
            Cas::Refused => Err(StoreError::NotHolder),
            Cas::Failed(e) => Err(e),
            Cas::Unknown(reason) => match self.read_token(key, token).await? {
                Some(true) => Ok(()),
                Some(false) => Err(StoreError::Unavailable { reason }),
                None => Err(StoreError::NotHolder),
            },
        }
    }

    fn purge_now_and_then(&self) {
        if self.claims.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY != PURGE_EVERY - 1 {
            return;
        }
        let (pool, sql) = (self.pool.clone(), self.statements.clone());
        tokio::spawn(async move {
            let purged = sqlx::query(&sql.purge)
                .bind(PURGE_BATCH)
                .execute(&pool)
                .await;
            if let Err(e) = purged {
                tracing::debug!(error = %e, "purging expired claims failed; the next purge retries");
            }
        });
    }

    /// Releases, in the background, a claim that may have been applied without its reply
    /// and could not be read back: left alone, it would hold the run for a whole lease with a
    /// token nobody has. Tries for about a minute.
    fn release_later(&self, key: &str, token: Token) {
        let (store, key) = (self.clone(), key.to_string());
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(200);
            for _ in 0..10 {
                tokio::time::sleep(pause).await;
                match store.release(&key, &token).await {
                    Ok(()) | Err(StoreError::NotHolder) => return,
                    Err(_) => pause = (pause * 2).min(Duration::from_secs(10)),
                }
            }
        });
    }

    async fn cas(&self, sql: &str, key: &str, token: &Token, millis: Option<u64>) -> Cas {
        let mut query = sqlx::query(sql).bind(key).bind(&token.as_bytes()[..]);
        if let Some(millis) = millis {
            query = query.bind(millis as f64);
        }
        match self.bounded(query.execute(&self.pool)).await {
            Ok(done) if done.rows_affected() == 1 => Cas::Applied,
            Ok(_) => Cas::Refused,
            Err(Failure::Definite(e)) => Cas::Failed(e),
            Err(Failure::Ambiguous(reason)) => Cas::Unknown(reason),
        }
    }
}

/// Runs `call` within `timeout`.
async fn bounded<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Failure::of(e)),
        Err(_) => Err(Failure::Ambiguous(format!(
            "Postgres did not answer within {timeout:?}"
        ))),
    }
}

/// The statements run in batches ([`batch::Batcher`]): the Postgres hand-off's claim and
/// enqueue, and completions.
struct Batches {
    enqueue: batch::Batcher<jobs::EnqueueCall, Result<jobs::ClaimEnqueued, StoreError>>,
    complete: batch::Batcher<CompleteCall, Cas>,
}

/// The most calls one batched statement carries.
const MAX_BATCH: usize = 64;
/// The most batched statements of one kind running at once.
const BATCHES_IN_FLIGHT: usize = 1;

impl Batches {
    fn start(pool: &PgPool, statements: &Arc<Statements>, timeout: Duration) -> Self {
        let (p, sql) = (pool.clone(), statements.clone());
        let enqueue = batch::Batcher::start(MAX_BATCH, BATCHES_IN_FLIGHT, move |calls| {
            let (pool, sql) = (p.clone(), sql.clone());
            async move { jobs::enqueue_many(&pool, &sql.claim_enqueue_many, timeout, calls).await }
        });
        let (p, sql) = (pool.clone(), statements.clone());
        let complete = batch::Batcher::start(MAX_BATCH, BATCHES_IN_FLIGHT, move |calls| {
            let (pool, sql) = (p.clone(), sql.clone());
            async move { complete_many(&pool, &sql.complete_many, timeout, calls).await }
        });
        Self { enqueue, complete }
    }
}

/// One completion waiting for its batch, with the hand-off job it settles, if any.
struct CompleteCall {
    key: String,
    token: Token,
    keep_ms: f64,
    job: Option<i64>,
}

/// Completes `calls` in one statement: each applied when its key and token matched a claim in
/// flight.
async fn complete_many(
    pool: &PgPool,
    sql: &str,
    timeout: Duration,
    calls: Vec<CompleteCall>,
) -> Vec<Cas> {
    let keys: Vec<&str> = calls.iter().map(|c| c.key.as_str()).collect();
    let tokens: Vec<&[u8]> = calls.iter().map(|c| &c.token.as_bytes()[..]).collect();
    let keep: Vec<f64> = calls.iter().map(|c| c.keep_ms).collect();
    let jobs: Vec<Option<i64>> = calls.iter().map(|c| c.job).collect();
    // Planned for each batch: a plan kept from when the claims table was small scans it.
    let query = sqlx::query(sql)
        .bind(keys)
        .bind(tokens)
        .bind(keep)
        .bind(jobs)
        .persistent(false)
        .fetch_all(pool);
    match bounded(timeout, query).await {
        Ok(rows) => {
            let applied: std::collections::HashSet<(String, Vec<u8>)> = rows
                .iter()
                .filter_map(|row| Some((row.try_get("key").ok()?, row.try_get("token").ok()?)))
                .collect();
            calls
                .iter()
                .map(|c| {
                    let key = (c.key.clone(), c.token.as_bytes().to_vec());
                    match applied.contains(&key) {
                        true => Cas::Applied,
                        false => Cas::Refused,
                    }
                })
                .collect()
        }
        Err(Failure::Definite(e)) => calls.iter().map(|_| Cas::Failed(e.clone())).collect(),
        Err(Failure::Ambiguous(reason)) => {
            calls.iter().map(|_| Cas::Unknown(reason.clone())).collect()
        }
    }
}

/// What [`PostgresStore::mark_done_in`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoneMark {
    /// This transaction marked the run done: commit.
    Marked,
    /// Another transaction marked it done first: roll back.
    AlreadyDone,
    /// Nobody claims the run (its claim lapsed and was removed): roll back and claim it again.
    NotClaimed,
}

/// What a won claim writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Won {
    /// In flight, for a lease.
    InFlight,
    /// Done, for the dedup window (inside the caller's transaction).
    Done,
}

/// How a compare-and-set statement ended.
enum Cas {
    Applied,
    Refused,
    Failed(StoreError),
    Unknown(String),
}

/// Why a statement gave no answer: it certainly was not applied, or it may have been.
enum Failure {
    Definite(StoreError),
    Ambiguous(String),
}

impl Failure {
    fn of(e: sqlx::Error) -> Self {
        match &e {
            // Sent, and the connection broke before the reply: it may have been applied.
            sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => {
                Failure::Ambiguous(format!("Postgres connection failed: {e}"))
            }
            _ => Failure::Definite(unavailable(e)),
        }
    }

    fn into_error(self) -> StoreError {
        match self {
            Failure::Definite(e) => e,
            Failure::Ambiguous(reason) => StoreError::Unavailable { reason },
        }
    }
}

/// A database error as the store reports it: a table that is missing is a schema not
/// migrated (misconfiguration); anything else is the database not answering as it should.
fn unavailable(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        // undefined_table, invalid_schema_name
        if matches!(db.code().as_deref(), Some("42P01") | Some("3F000")) {
            return StoreError::InvalidConfig {
                reason: format!("Postgres: {db}: run `runhook migrate --store <url>`"),
            };
        }
    }
    StoreError::Unavailable {
        reason: format!("Postgres: {e}"),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A claim statement's answer.
fn claim_answer(row: &PgRow, token: Token, fingerprint: Fingerprint) -> Result<Claim, sqlx::Error> {
    let holder = Holder::won(row.try_get::<bool, _>("acquired")?);
    claim_of(row, holder, token, fingerprint)
}

/// Whose claim a claim statement's row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// The caller's: it won the claim with its token.
    Caller,
    /// An earlier one's (done, or in flight).
    Earlier,
}

impl Holder {
    /// The caller's when it `won`.
    fn won(won: bool) -> Self {
        match won {
            true => Holder::Caller,
            false => Holder::Earlier,
        }
    }
}

/// The claim a claim statement's row answers, given whose it is (its `done`, `fingerprint`
/// and `remaining_ms` columns read when it is not the caller's).
fn claim_of(
    row: &PgRow,
    holder: Holder,
    token: Token,
    fingerprint: Fingerprint,
) -> Result<Claim, sqlx::Error> {
    if holder == Holder::Caller {
        return Ok(Claim::Acquired(token));
    }
    let stored: Vec<u8> = row.try_get("fingerprint")?;
    let same_payload = stored == fingerprint.as_bytes()[..];
    Ok(match row.try_get::<bool, _>("done")? {
        true => Claim::Done { same_payload },
        false => {
            let remaining: Option<i64> = row.try_get("remaining_ms")?;
            let expires_in = remaining
                .and_then(|ms| u64::try_from(ms).ok())
                .map(Duration::from_millis);
            Claim::InFlight {
                same_payload,
                expires_in,
            }
        }
    })
}

#[async_trait::async_trait]
impl IdempotencyStore for PostgresStore {
    async fn claim(
        &self,
        key: &str,
        lease: Duration,
        fingerprint: Fingerprint,
    ) -> Result<Claim, StoreError> {
        check_key(key, self.max_key_len)?;
        check_duration("lease", lease)?;
        self.purge_now_and_then();
        let token = Token::random();
        let query = self
            .claim_query(key, &token, &fingerprint, lease, Won::InFlight)
            .fetch_one(&self.pool);
        match self.bounded(query).await {
            Ok(row) => claim_answer(&row, token, fingerprint).map_err(unavailable),
            Err(Failure::Ambiguous(reason)) => {
                // Applied without its reply? Then this caller holds it.
                match self.read_token(key, &token).await {
                    Ok(Some(false)) => Ok(Claim::Acquired(token)),
                    Ok(_) => Err(StoreError::Unavailable { reason }),
                    Err(e) => {
                        self.release_later(key, token);
                        Err(e)
                    }
                }
            }
            Err(Failure::Definite(e)) => Err(e),
        }
    }

    async fn complete(
        &self,
        key: &str,
        token: &Token,
        keep_for: Duration,
    ) -> Result<(), StoreError> {
        self.complete_batched(key, token, keep_for, None).await
    }

    async fn release(&self, key: &str, token: &Token) -> Result<(), StoreError> {
        check_key(key, self.max_key_len)?;
        match self.cas(&self.statements.release, key, token, None).await {
            Cas::Applied => Ok(()),
            Cas::Refused => Err(StoreError::NotHolder),
            Cas::Failed(e) => Err(e),
            Cas::Unknown(reason) => match self.read_token(key, token).await? {
                None => Ok(()),
                Some(_) => Err(StoreError::Unavailable { reason }),
            },
        }
    }

    async fn renew(&self, key: &str, token: &Token, lease: Duration) -> Result<(), StoreError> {
        check_key(key, self.max_key_len)?;
        check_duration("lease", lease)?;
        let sql = &self.statements.renew;
        match self.cas(sql, key, token, Some(millis(lease))).await {
            Cas::Applied => Ok(()),
            Cas::Refused => Err(StoreError::NotHolder),
            Cas::Failed(e) => Err(e),
            Cas::Unknown(reason) => Err(StoreError::Unavailable { reason }),
        }
    }

    async fn state(&self, key: &str) -> Result<KeyState, StoreError> {
        check_key(key, self.max_key_len)?;
        let query = sqlx::query_scalar::<_, bool>(&self.statements.state)
            .bind(key)
            .fetch_optional(&self.pool);
        Ok(
            match self.bounded(query).await.map_err(Failure::into_error)? {
                None => KeyState::Absent,
                Some(false) => KeyState::InFlight,
                Some(true) => KeyState::Done,
            },
        )
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let query = sqlx::query("SELECT 1").execute(&self.pool);
        self.bounded(query).await.map_err(Failure::into_error)?;
        Ok(())
    }

    fn expectations(&self) -> Option<&dyn Expectations> {
        Some(&self.expectations)
    }
}
