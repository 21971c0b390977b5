//! The one statement of the Postgres hand-off that touches the claims: a delivery's claim and
//! its job, written together (the hand-off's workers live in the `runhook` crate, and read and
//! delete the jobs themselves).

use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row as _};

use super::{
    bounded, claim_of, millis, unavailable, Failure, Holder, PostgresStore, CLAIM_RETURNING,
    CLAIM_UPDATE,
};
use crate::{check_duration, check_key, Claim, Fingerprint, StoreError, Token};

/// A claimed delivery as the Postgres hand-off writes it into `<schema>.jobs`.
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    /// The queue (one per route) the job belongs to.
    pub queue: &'a str,
    /// The provider's name (`skyvern`, ...).
    pub provider: &'a str,
    /// The run id, when the run has one.
    pub run_id: Option<&'a str>,
    /// When the delivery was received, in ms since the epoch.
    pub received_at_ms: i64,
    /// The raw body.
    pub body: &'a [u8],
    /// The headers kept (credentials left out), as a JSON array of `[name, value]` pairs.
    pub headers_json: &'a str,
    /// How the run reached the receiver (`webhook`, `reconciled`, ...).
    pub source: &'a str,
    /// Who may take the job: any instance's fetch, or the enqueuing instance at once.
    pub pickup: Pickup<'a>,
}

/// Who takes a new job from the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pickup<'a> {
    /// It waits, unlocked, for the next fetch of any instance.
    Queued,
    /// It is written locked for `lock` by `consumer`, handed out once, as a fetch would leave
    /// it: the enqueuing instance runs it at once, without fetching it back, and if that
    /// instance dies, another takes it over when the lock lapses.
    HeldBy {
        /// The enqueuing instance's consumer name (the job's `locked_by`).
        consumer: &'a str,
        /// How long the lock lasts without a sign of life.
        lock: Duration,
    },
}

impl Pickup<'_> {
    /// The lock in ms (none for a queued job).
    fn lock_ms(&self) -> Option<f64> {
        match self {
            Pickup::Queued => None,
            Pickup::HeldBy { lock, .. } => Some(millis(*lock) as f64),
        }
    }

    /// The consumer holding it (none for a queued job).
    fn consumer(&self) -> Option<&str> {
        match self {
            Pickup::Queued => None,
            Pickup::HeldBy { consumer, .. } => Some(consumer),
        }
    }
}

/// What [`PostgresStore::claim_and_enqueue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimEnqueued {
    /// The run was claimed with this token and its job written, in one transaction.
    Enqueued {
        /// The claim's token.
        token: Token,
        /// The job's id (its row in `<schema>.jobs`).
        job: i64,
    },
    /// Nothing was written: the run is done, or another delivery holds it
    /// ([`Claim::Done`] or [`Claim::InFlight`], never [`Claim::Acquired`]).
    Taken(Claim),
    /// Nothing was written: the queue holds its capacity.
    Full,
}

/// How full the queue may be before a delivery is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BacklogCheck {
    /// Count the queue's jobs (up to `capacity`) in the statement, and refuse at `capacity`.
    AtMost(u32),
    /// Do not count (the caller knows the backlog is far below its bound).
    Unchecked,
}

/// The claim of `$1` (as [`PostgresStore`]'s lease claim: token `$2`, fingerprint `$3`, lease
/// `$4` ms), made only when the queue `$6` holds fewer than `$5` jobs (`$5` null: not
/// counted), and when won, the job's insert: `$6`..`$12` are the job's queue, provider, run
/// id, receipt time, body, headers and source, `$13` the lock in ms of a job held by the
/// consumer `$14` ([`Pickup::HeldBy`]; both null for a queued job). One row when anything was
/// claimed or read, none when the queue was full.
pub(crate) fn claim_enqueue_sql() -> String {
    format!(
        "WITH room AS ( \
           SELECT CASE WHEN $5::bigint IS NULL THEN true ELSE ( \
             SELECT count(*) FROM (SELECT 1 FROM {{schema}}.jobs WHERE queue = $6 LIMIT $5::bigint) AS q \
           ) < $5::bigint END AS ok \
         ), claimed AS ( \
           INSERT INTO {{schema}}.claims AS c (key, done, token, fingerprint, expires_at) \
           SELECT $1, false, $2, $3, clock_timestamp() + $4::float8 * interval '1 millisecond' \
           FROM room WHERE room.ok \
           {CLAIM_UPDATE} {CLAIM_RETURNING} \
         ), job AS ( \
           INSERT INTO {{schema}}.jobs \
             (queue, dedup_key, provider, run_id, token, received_at_ms, body, headers, source, \
              locked_until, locked_by, deliveries) \
           SELECT $6, $1, $7, $8, $2, $9, $10, $11, $12, \
             clock_timestamp() + $13::float8 * interval '1 millisecond', $14::text, \
             CASE WHEN $14::text IS NULL THEN 0 ELSE 1 END \
           FROM claimed WHERE claimed.acquired \
           RETURNING id \
         ) \
         SELECT claimed.*, (SELECT id FROM job) AS job_id FROM claimed"
    )
}

/// [`claim_enqueue_sql`] for many deliveries at once, their fields in arrays (`$1`..`$13`:
/// key, token, fingerprint, lease ms, queue, provider, run id, receipt time, body, headers,
/// source, lock ms and consumer; no capacity check). The keys must differ. Claims are taken in
/// key order, so that two batches never wait on each other's rows in a cycle. One row per key,
/// with the claim's token (the caller's when it won) and the job's id when one was written.
///
/// The claims and the jobs each read their own `unnest`: a shared one would be materialized
/// and joined with the bodies in it, copying each body into a hash table.
pub(crate) fn claim_enqueue_many_sql() -> String {
    format!(
        "WITH claimed AS ( \
           INSERT INTO {{schema}}.claims AS c (key, done, token, fingerprint, expires_at) \
           SELECT key, false, token, fingerprint, \
             clock_timestamp() + lease_ms * interval '1 millisecond' \
           FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::float8[]) \
             AS t(key, token, fingerprint, lease_ms) \
           ORDER BY key \
           {CLAIM_UPDATE} \
           RETURNING c.key, c.token, c.done, c.fingerprint, \
             (extract(epoch FROM c.expires_at - clock_timestamp()) * 1000)::bigint AS remaining_ms \
         ), job AS ( \
           INSERT INTO {{schema}}.jobs \
             (queue, dedup_key, provider, run_id, token, received_at_ms, body, headers, source, \
              locked_until, locked_by, deliveries) \
           SELECT i.queue, i.key, i.provider, i.run_id, i.token, i.received_at_ms, i.body, \
             i.headers, i.source, clock_timestamp() + i.lock_ms * interval '1 millisecond', \
             i.locked_by, CASE WHEN i.locked_by IS NULL THEN 0 ELSE 1 END \
           FROM unnest($1::text[], $2::bytea[], $5::text[], $6::text[], $7::text[], \
             $8::bigint[], $9::bytea[], $10::text[], $11::text[], $12::float8[], $13::text[]) \
             AS i(key, token, queue, provider, run_id, received_at_ms, body, headers, source, \
               lock_ms, locked_by) \
           WHERE EXISTS (SELECT 1 FROM claimed c WHERE c.key = i.key AND c.token = i.token) \
           RETURNING id, dedup_key \
         ) \
         SELECT c.key, c.token, c.done, c.fingerprint, c.remaining_ms, j.id AS job_id \
         FROM claimed c LEFT JOIN job j ON j.dedup_key = c.key"
    )
}

/// One delivery waiting for its batch: [`NewJob`] owned, with its claim.
pub(crate) struct EnqueueCall {
    key: String,
    token: Token,
    fingerprint: Fingerprint,
    lease_ms: f64,
    queue: String,
    provider: String,
    run_id: Option<String>,
    received_at_ms: i64,
    body: Vec<u8>,
    headers: String,
    source: String,
    lock_ms: Option<f64>,
    locked_by: Option<String>,
}

/// Claims and enqueues `calls` in as few statements as their keys allow (a key twice in one
/// batch goes in the next statement).
pub(crate) async fn enqueue_many(
    pool: &PgPool,
    sql: &str,
    timeout: Duration,
    calls: Vec<EnqueueCall>,
) -> Vec<Result<ClaimEnqueued, StoreError>> {
    let mut answers: Vec<Option<Result<ClaimEnqueued, StoreError>>> = vec![None; calls.len()];
    let mut left: Vec<usize> = (0..calls.len()).collect();
    while !left.is_empty() {
        let mut seen = std::collections::HashSet::new();
        let (now, later): (Vec<usize>, Vec<usize>) = left
            .into_iter()
            .partition(|&i| seen.insert(calls[i].key.as_str()));
        let batch: Vec<&EnqueueCall> = now.iter().map(|&i| &calls[i]).collect();
        for (i, answer) in now
            .iter()
            .zip(enqueue_once(pool, sql, timeout, &batch).await)
        {
            answers[*i] = Some(answer);
        }
        left = later;
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(unanswered())))
        .collect()
}

fn unanswered() -> StoreError {
    StoreError::Unavailable {
        reason: "Postgres gave no answer for this delivery".into(),
    }
}

/// One statement for `calls`, whose keys differ.
async fn enqueue_once(
    pool: &PgPool,
    sql: &str,
    timeout: Duration,
    calls: &[&EnqueueCall],
) -> Vec<Result<ClaimEnqueued, StoreError>> {
    let column = |f: fn(&EnqueueCall) -> &str| calls.iter().map(|c| f(c)).collect::<Vec<&str>>();
    let query = sqlx::query(sql)
        .bind(column(|c| &c.key))
        .bind(
            calls
                .iter()
                .map(|c| &c.token.as_bytes()[..])
                .collect::<Vec<_>>(),
        )
        .bind(
            calls
                .iter()
                .map(|c| &c.fingerprint.as_bytes()[..])
                .collect::<Vec<_>>(),
        )
        .bind(calls.iter().map(|c| c.lease_ms).collect::<Vec<f64>>())
        .bind(column(|c| &c.queue))
        .bind(column(|c| &c.provider))
        .bind(
            calls
                .iter()
                .map(|c| c.run_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(calls.iter().map(|c| c.received_at_ms).collect::<Vec<i64>>())
        .bind(
            calls
                .iter()
                .map(|c| c.body.as_slice())
                .collect::<Vec<&[u8]>>(),
        )
        .bind(column(|c| &c.headers))
        .bind(column(|c| &c.source))
        .bind(calls.iter().map(|c| c.lock_ms).collect::<Vec<_>>())
        .bind(
            calls
                .iter()
                .map(|c| c.locked_by.as_deref())
                .collect::<Vec<_>>(),
        )
        .fetch_all(pool);
    let rows = match bounded(timeout, query).await {
        Ok(rows) => rows,
        Err(failure) => {
            let err = failure.into_error();
            return calls.iter().map(|_| Err(err.clone())).collect();
        }
    };
    let mut by_key = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        if let Ok(key) = row.try_get::<String, _>("key") {
            by_key.insert(key, row);
        }
    }
    calls
        .iter()
        .map(|call| {
            let row = by_key.get(&call.key).ok_or_else(unanswered)?;
            let holder: Vec<u8> = row.try_get("token").map_err(unavailable)?;
            let holder = Holder::won(holder == call.token.as_bytes()[..]);
            enqueued(row, holder, call.token, call.fingerprint)
        })
        .collect()
}

impl PostgresStore {
    /// [`IdempotencyStore::complete`](crate::IdempotencyStore::complete), and when it applies,
    /// the deletion of the Postgres hand-off's job `job` **in the same transaction**: a
    /// settled job is gone exactly when its run is recorded done.
    ///
    /// # Errors
    /// As `complete`: [`StoreError::NotHolder`] when the claim is not `token`'s (the job is
    /// kept).
    pub async fn complete_with_job(
        &self,
        key: &str,
        token: &Token,
        keep_for: Duration,
        job: i64,
    ) -> Result<(), StoreError> {
        self.complete_batched(key, token, keep_for, Some(job)).await
    }

    /// Claims `key` for `lease` and, when the claim is won, writes `job` into the schema's
    /// jobs table **in the same statement**: the claim and the job commit together, or
    /// neither does (the Postgres hand-off of the `runhook` crate; its workers take the job).
    /// Unless `backlog` is [`BacklogCheck::Unchecked`], nothing is written when the queue holds
    /// its capacity already (counted in the statement: concurrent deliveries can each see
    /// the last free place).
    ///
    /// A call whose connection broke mid-statement may have been applied: then the job is in
    /// the queue with its claim, and its workers process it; the caller should answer as
    /// for an unavailable store (the sender's retry finds the run).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the statement fails or times out, and the validation
    /// errors for a bad key or duration.
    pub async fn claim_and_enqueue(
        &self,
        key: &str,
        lease: Duration,
        fingerprint: Fingerprint,
        job: &NewJob<'_>,
        backlog: BacklogCheck,
    ) -> Result<ClaimEnqueued, StoreError> {
        check_key(key, self.max_key_len)?;
        check_duration("lease", lease)?;
        self.purge_now_and_then();
        let token = Token::random();
        let capacity = match backlog {
            BacklogCheck::AtMost(capacity) => i64::from(capacity),
            BacklogCheck::Unchecked => {
                let call = EnqueueCall {
                    key: key.to_string(),
                    token,
                    fingerprint,
                    lease_ms: millis(lease) as f64,
                    queue: job.queue.to_string(),
                    provider: job.provider.to_string(),
                    run_id: job.run_id.map(str::to_string),
                    received_at_ms: job.received_at_ms,
                    body: job.body.to_vec(),
                    headers: job.headers_json.to_string(),
                    source: job.source.to_string(),
                    lock_ms: job.pickup.lock_ms(),
                    locked_by: job.pickup.consumer().map(str::to_string),
                };
                let batched = self.batches().enqueue.call(call).await;
                return batched.unwrap_or_else(|| Err(unanswered()));
            }
        };
        let query = sqlx::query(&self.statements.claim_enqueue)
            .bind(key)
            .bind(&token.as_bytes()[..])
            .bind(&fingerprint.as_bytes()[..])
            .bind(millis(lease) as f64)
            .bind(Some(capacity))
            .bind(job.queue)
            .bind(job.provider)
            .bind(job.run_id)
            .bind(job.received_at_ms)
            .bind(job.body)
            .bind(job.headers_json)
            .bind(job.source)
            .bind(job.pickup.lock_ms())
            .bind(job.pickup.consumer())
            .fetch_optional(&self.pool);
        match self.bounded(query).await.map_err(Failure::into_error)? {
            Some(row) => {
                let holder = Holder::won(row.try_get("acquired").map_err(unavailable)?);
                enqueued(&row, holder, token, fingerprint)
            }
            None => Ok(ClaimEnqueued::Full),
        }
    }
}

/// What one row of the enqueue statements says (`holder`: whose claim it holds):
/// the claim's answer, with the job's id when the claim was won.
fn enqueued(
    row: &PgRow,
    holder: Holder,
    token: Token,
    fingerprint: Fingerprint,
) -> Result<ClaimEnqueued, StoreError> {
    let job: Option<i64> = row.try_get("job_id").map_err(unavailable)?;
    match (
        claim_of(row, holder, token, fingerprint).map_err(unavailable)?,
        job,
    ) {
        (Claim::Acquired(token), Some(job)) => Ok(ClaimEnqueued::Enqueued { token, job }),
        (Claim::Acquired(_), None) => Err(StoreError::Unavailable {
            reason: "Postgres claimed the run without writing its job".into(),
        }),
        (taken, _) => Ok(ClaimEnqueued::Taken(taken)),
    }
}
