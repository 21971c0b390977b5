//! The one statement of the Postgres hand-off that touches the claims: a delivery's claim and
//! its job, written together (the hand-off's workers live in the `runhook` crate, and read and
//! delete the jobs themselves).

use std::time::Duration;

use sqlx::Row as _;

use super::{claim_answer, millis, unavailable, Failure, PostgresStore, CLAIM_ON_CONFLICT};
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
}

/// What [`PostgresStore::claim_and_enqueue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimEnqueued {
    /// The run was claimed with this token and its job written, in one transaction.
    Enqueued(Token),
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
/// id, receipt time, body, headers and source. One row when anything was claimed or read,
/// none when the queue was full.
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
           {CLAIM_ON_CONFLICT} \
         ), job AS ( \
           INSERT INTO {{schema}}.jobs \
             (queue, dedup_key, provider, run_id, token, received_at_ms, body, headers, source) \
           SELECT $6, $1, $7, $8, $2, $9, $10, $11, $12 FROM claimed WHERE claimed.acquired \
           RETURNING id \
         ) \
         SELECT claimed.*, (SELECT count(*) FROM job) AS enqueued FROM claimed"
    )
}

impl PostgresStore {
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
            BacklogCheck::AtMost(capacity) => Some(i64::from(capacity)),
            BacklogCheck::Unchecked => None,
        };
        let query = sqlx::query(&self.statements.claim_enqueue)
            .bind(key)
            .bind(&token.as_bytes()[..])
            .bind(&fingerprint.as_bytes()[..])
            .bind(millis(lease) as f64)
            .bind(capacity)
            .bind(job.queue)
            .bind(job.provider)
            .bind(job.run_id)
            .bind(job.received_at_ms)
            .bind(job.body)
            .bind(job.headers_json)
            .bind(job.source)
            .fetch_optional(&self.pool);
        let row = match self.bounded(query).await.map_err(Failure::into_error)? {
            Some(row) => row,
            None => return Ok(ClaimEnqueued::Full),
        };
        let enqueued: i64 = row.try_get("enqueued").map_err(unavailable)?;
        match claim_answer(&row, token, fingerprint).map_err(unavailable)? {
            Claim::Acquired(token) if enqueued == 1 => Ok(ClaimEnqueued::Enqueued(token)),
            Claim::Acquired(_) => Err(StoreError::Unavailable {
                reason: "Postgres claimed the run without writing its job".into(),
            }),
            taken => Ok(ClaimEnqueued::Taken(taken)),
        }
    }
}
