//! The Postgres store's expectations: one row per expected run in `<schema>.expectations`,
//! due times in Unix milliseconds of the caller's clock (as the other stores keep them). Taking
//! due runs moves their due time past the hold in the same statement (`FOR UPDATE SKIP
//! LOCKED`), so that instances sharing the table each get different runs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row as _};

use super::schema::Schema;
use super::{unavailable, Failure};
use crate::expect::{unix_ms, Expectation, Expectations, Expected, Window};
use crate::StoreError;

#[derive(Debug, Clone)]
pub(super) struct PostgresExpectations {
    pool: PgPool,
    capacity: usize,
    timeout: Duration,
    expect: String,
    take_due: String,
    reschedule: String,
    forget: String,
    waiting: String,
    known: String,
}

impl PostgresExpectations {
    pub(super) fn new(pool: PgPool, schema: &Schema, capacity: usize, timeout: Duration) -> Self {
        Self {
            pool,
            capacity,
            timeout,
            // Inserted only while the scope holds fewer than $8 (the count and the insert in
            // one statement; a race can pass the bound by the number of racers, no more).
            expect: schema.sql(
                "INSERT INTO {schema}.expectations \
                   (scope, dedup_key, run_id, registered_ms, window_ms, checks, due_ms) \
                 SELECT $1, $2, $3, $4, $5, $6, $7 \
                 WHERE (SELECT count(*) FROM {schema}.expectations WHERE scope = $1) < $8 \
                 ON CONFLICT (scope, dedup_key) DO NOTHING \
                 RETURNING 1",
            ),
            take_due: schema.sql(
                "UPDATE {schema}.expectations e SET due_ms = $3 \
                 FROM (SELECT dedup_key, due_ms AS was_due FROM {schema}.expectations \
                       WHERE scope = $1 AND due_ms <= $2 \
                       ORDER BY due_ms, dedup_key LIMIT $4 FOR UPDATE SKIP LOCKED) due \
                 WHERE e.scope = $1 AND e.dedup_key = due.dedup_key \
                 RETURNING e.dedup_key, e.run_id, e.registered_ms, e.window_ms, e.checks, \
                   due.was_due",
            ),
            reschedule: schema.sql(
                "UPDATE {schema}.expectations \
                 SET run_id = $3, registered_ms = $4, window_ms = $5, checks = $6, due_ms = $7 \
                 WHERE scope = $1 AND dedup_key = $2",
            ),
            forget: schema
                .sql("DELETE FROM {schema}.expectations WHERE scope = $1 AND dedup_key = $2"),
            waiting: schema.sql("SELECT count(*) FROM {schema}.expectations WHERE scope = $1"),
            known: schema.sql(
                "SELECT count(*) FROM {schema}.expectations WHERE scope = $1 AND dedup_key = $2",
            ),
        }
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Failure::of(e).into_error()),
            Err(_) => Err(StoreError::Unavailable {
                reason: format!("Postgres did not answer within {:?}", self.timeout),
            }),
        }
    }
}

fn ms(at: SystemTime) -> i64 {
    i64::try_from(unix_ms(at)).unwrap_or(i64::MAX)
}

fn window_ms(window: Window) -> Option<i64> {
    match window {
        Window::Within(within) => Some(i64::try_from(within.as_millis()).unwrap_or(i64::MAX)),
        Window::RouteDefault => None,
    }
}

fn read(row: &PgRow) -> Result<Expectation, sqlx::Error> {
    let registered: i64 = row.try_get("registered_ms")?;
    let window: Option<i64> = row.try_get("window_ms")?;
    let checks: i32 = row.try_get("checks")?;
    Ok(Expectation {
        dedup_key: row.try_get("dedup_key")?,
        run_id: row.try_get("run_id")?,
        registered_at: UNIX_EPOCH + Duration::from_millis(registered.max(0) as u64),
        window: match window {
            Some(ms) => Window::Within(Duration::from_millis(ms.max(0) as u64)),
            None => Window::RouteDefault,
        },
        checks: checks.max(0) as u32,
    })
}

#[async_trait::async_trait]
impl Expectations for PostgresExpectations {
    async fn expect(&self, scope: &str, expectation: &Expectation) -> Result<Expected, StoreError> {
        let capacity = i64::try_from(self.capacity).unwrap_or(i64::MAX);
        let inserted = sqlx::query(&self.expect)
            .bind(scope)
            .bind(&expectation.dedup_key)
            .bind(&expectation.run_id)
            .bind(ms(expectation.registered_at))
            .bind(window_ms(expectation.window))
            .bind(i32::try_from(expectation.checks).unwrap_or(i32::MAX))
            .bind(ms(expectation.first_due()))
            .bind(capacity)
            .fetch_optional(&self.pool);
        if self.bounded(inserted).await?.is_some() {
            return Ok(Expected::Recorded);
        }
        // Not inserted: already there, or the scope is full.
        let exists = sqlx::query_scalar::<_, i64>(&self.waiting)
            .bind(scope)
            .fetch_one(&self.pool);
        let waiting = self.bounded(exists).await?;
        if usize::try_from(waiting).unwrap_or(usize::MAX) >= self.capacity {
            let known = sqlx::query_scalar::<_, i64>(&self.known)
                .bind(scope)
                .bind(&expectation.dedup_key)
                .fetch_one(&self.pool);
            if self.bounded(known).await? == 0 {
                return Err(StoreError::Full {
                    capacity: self.capacity,
                    retry_after: Duration::from_secs(60),
                });
            }
        }
        Ok(Expected::AlreadyExpected)
    }

    async fn take_due(
        &self,
        scope: &str,
        now: SystemTime,
        hold: Duration,
        limit: usize,
    ) -> Result<Vec<Expectation>, StoreError> {
        let hidden_until = ms(now).saturating_add(i64::try_from(hold.as_millis()).unwrap_or(0));
        let rows = sqlx::query(&self.take_due)
            .bind(scope)
            .bind(ms(now))
            .bind(hidden_until)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool);
        let rows = self.bounded(rows).await?;
        // UPDATE … RETURNING keeps no order: put them back in due order.
        let mut taken = rows
            .iter()
            .map(|row| Ok((row.try_get::<i64, _>("was_due")?, read(row)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(unavailable)?;
        taken.sort_by(|(a, x), (b, y)| (a, &x.dedup_key).cmp(&(b, &y.dedup_key)));
        Ok(taken
            .into_iter()
            .map(|(_, expectation)| expectation)
            .collect())
    }

    async fn reschedule(
        &self,
        scope: &str,
        expectation: &Expectation,
        next_check: SystemTime,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(&self.reschedule)
            .bind(scope)
            .bind(&expectation.dedup_key)
            .bind(&expectation.run_id)
            .bind(ms(expectation.registered_at))
            .bind(window_ms(expectation.window))
            .bind(i32::try_from(expectation.checks).unwrap_or(i32::MAX))
            .bind(ms(next_check))
            .execute(&self.pool);
        self.bounded(query).await?;
        Ok(())
    }

    async fn forget(&self, scope: &str, dedup_key: &str) -> Result<(), StoreError> {
        let query = sqlx::query(&self.forget)
            .bind(scope)
            .bind(dedup_key)
            .execute(&self.pool);
        self.bounded(query).await?;
        Ok(())
    }

    async fn waiting(&self, scope: &str) -> Result<usize, StoreError> {
        let query = sqlx::query_scalar::<_, i64>(&self.waiting)
            .bind(scope)
            .fetch_one(&self.pool);
        let waiting = self.bounded(query).await?;
        Ok(usize::try_from(waiting).unwrap_or(0))
    }
}
