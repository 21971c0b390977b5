//! The queue's dead letters, rows of `<schema>.dead_letters`: a sink, their listing, and the
//! redrive that moves each back into the queue in one transaction.

use runhook_store::sqlx::{self, Row as _};

use super::error::PostgresQueueError;
use super::queue::PostgresQueue;
use super::row::epoch_millis;
use crate::dead_letter::{DeadLetter, DeadLetterRecord, DeadLetterSink, RedriveReport};
use crate::handler::BoxFuture;

/// A dead-letter sink writing to the queue's rows of `<schema>.dead_letters` (one row per
/// letter: the [`DeadLetterRecord`] as JSON, with its dedup key, provider and reason code as
/// columns), bounded by refusing letters once the queue holds its capacity of them (never by
/// deleting any). List them with [`PostgresDeadLetters::list`]; move them back with
/// [`PostgresQueue::redrive`].
#[derive(Debug, Clone)]
pub struct PostgresDeadLetters {
    queue: PostgresQueue,
}

/// One letter of the queue's dead letters, with its row id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPostgresLetter {
    /// The row's id in `<schema>.dead_letters`.
    pub id: i64,
    /// The letter.
    pub record: DeadLetterRecord,
}

impl PostgresDeadLetters {
    pub(crate) fn new(queue: PostgresQueue) -> Self {
        Self { queue }
    }

    /// Every letter of the queue, oldest first.
    ///
    /// # Errors
    /// [`PostgresQueueError::Unavailable`] when Postgres fails; a row whose letter is not a
    /// record is reported [`PostgresQueueError::InvalidConfig`].
    pub async fn list(&self) -> Result<Vec<ListedPostgresLetter>, PostgresQueueError> {
        let q = &*self.queue.inner;
        let query = sqlx::query(&q.sql.dead_list)
            .bind(&q.name)
            .fetch_all(q.store.pool());
        let rows = self.queue.bounded(query).await?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.try_get("id").map_err(PostgresQueueError::unavailable)?;
                let letter: serde_json::Value = row
                    .try_get("letter")
                    .map_err(PostgresQueueError::unavailable)?;
                let record = serde_json::from_value(letter).map_err(|e| {
                    PostgresQueueError::InvalidConfig {
                        reason: format!("dead letter {id} is not a letter runhook wrote: {e}"),
                    }
                })?;
                Ok(ListedPostgresLetter { id, record })
            })
            .collect()
    }

    /// How many letters the queue holds.
    ///
    /// # Errors
    /// [`PostgresQueueError::Unavailable`] when Postgres fails.
    pub async fn count(&self) -> Result<u64, PostgresQueueError> {
        let q = &*self.queue.inner;
        let query = sqlx::query_scalar::<_, i64>(&q.sql.dead_count)
            .bind(&q.name)
            .fetch_one(q.store.pool());
        Ok(self.queue.bounded(query).await?.max(0) as u64)
    }

    async fn insert(&self, letter: &DeadLetter) -> Result<(), std::io::Error> {
        let q = &*self.queue.inner;
        let record = letter.to_json();
        let query = sqlx::query(&q.sql.dead_put)
            .bind(&q.name)
            .bind(letter.dedup_key.as_deref())
            .bind(letter.provider.map(|p| p.as_str()))
            .bind(letter.reason.code())
            .bind(epoch_millis(letter.received_at))
            .bind(record)
            .bind(q.dead_capacity as i64)
            .execute(q.store.pool());
        match self.queue.bounded(query).await {
            Ok(done) if done.rows_affected() == 1 => Ok(()),
            Ok(_) => Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!(
                    "the dead letters of queue {} are full ({} letters)",
                    q.name, q.dead_capacity
                ),
            )),
            Err(err) => Err(std::io::Error::other(err)),
        }
    }
}

impl DeadLetterSink for PostgresDeadLetters {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        Box::pin(async move { self.insert(&letter).await })
    }
}

/// What became of one letter's move.
enum Moved {
    Redriven,
    /// Someone else moved or removed it meanwhile.
    Gone,
}

/// See [`PostgresQueue::redrive`].
pub(super) async fn redrive(
    queue: &PostgresQueue,
    keys: &[String],
) -> Result<RedriveReport, PostgresQueueError> {
    let letters = queue.dead_letters().list().await?;
    let mut report = RedriveReport::default();
    let mut moved_any = false;
    for letter in letters {
        if !report.takes(&letter.record, keys) {
            continue;
        }
        let key = letter.record.dedup_key.clone();
        let (Some(provider), Some(dedup_key), Ok(body)) = (
            letter.record.provider.as_deref(),
            key.as_deref(),
            letter.record.body_bytes(),
        ) else {
            report
                .kept
                .push((key, "the letter has no provider, key or body".into()));
            continue;
        };
        let job = LetterJob {
            provider,
            dedup_key,
            record: &letter.record,
            body: &body,
        };
        match queue.bounded(move_back(queue, letter.id, &job)).await? {
            Moved::Redriven => {
                moved_any = true;
                report.redriven.push(dedup_key.to_string());
            }
            Moved::Gone => {}
        }
    }
    if moved_any {
        queue.announce().await;
    }
    Ok(report)
}

/// A letter's fields as a job.
struct LetterJob<'a> {
    provider: &'a str,
    dedup_key: &'a str,
    record: &'a DeadLetterRecord,
    body: &'a [u8],
}

/// Deletes letter `id` and inserts it as a job without a token, in one transaction.
async fn move_back(
    queue: &PostgresQueue,
    id: i64,
    job: &LetterJob<'_>,
) -> Result<Moved, sqlx::Error> {
    let q = &*queue.inner;
    let mut tx = q.store.pool().begin().await?;
    let taken = sqlx::query(&q.sql.dead_take)
        .bind(id)
        .bind(&q.name)
        .fetch_optional(&mut *tx)
        .await?;
    if taken.is_none() {
        return Ok(Moved::Gone);
    }
    let received_at_ms = humantime::parse_rfc3339(&job.record.received_at)
        .map(epoch_millis)
        .unwrap_or_else(|_| epoch_millis(std::time::SystemTime::now()));
    let headers = serde_json::to_string(&job.record.headers).unwrap_or_else(|_| "[]".into());
    sqlx::query(&q.sql.redriven_job)
        .bind(&q.name)
        .bind(job.dedup_key)
        .bind(job.provider)
        .bind(job.record.run_id.as_deref())
        .bind(received_at_ms)
        .bind(job.body)
        .bind(headers)
        .bind(job.record.source().as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Moved::Redriven)
}
