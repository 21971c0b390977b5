//! One fetched job, from the reader to its deletion: set it aside when its row cannot be read,
//! or check its claim and run it ([`crate::handoff::durable`]); then delete it, or leave it to
//! whoever takes it next.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::row::{Fetched, Salvaged, Unreadable};
use super::workers::{lock, Shared};
use crate::handler::BoxFuture;
use crate::handoff::arrival::{Arrival, Next};
use crate::handoff::durable::{self, Settle};
use crate::worker::{RecordDone, Touch};

/// Handles `job` on a task of its own, holding a worker's `permit` until it is settled.
pub(super) fn spawn_job(
    sh: &Arc<Shared>,
    job: Fetched,
    arrival: Arrival,
    permit: OwnedSemaphorePermit,
) {
    lock(&sh.running).insert(job.id);
    let task_shared = sh.clone();
    lock(&sh.tasks).spawn(async move {
        let id = job.id;
        handle_job(&task_shared, job, arrival, permit).await;
        lock(&task_shared.running).remove(&id);
    });
}

/// Checks the claim of one job and processes it if this worker may, then deletes it, unless
/// its claim was lost meanwhile (it then stays, locked, for whoever holds the run). A job
/// whose dead letter is parked gives its worker's `permit` back at once and waits for the
/// letter (its lock extended by the parked set).
async fn handle_job(sh: &Shared, job: Fetched, arrival: Arrival, permit: OwnedSemaphorePermit) {
    let id = job.id;
    let next = match job.run {
        Err((why, salvaged)) => {
            let next = unreadable_job(sh, id, why, salvaged).await;
            drop(permit);
            next
        }
        Ok(run) => {
            let name = id.to_string();
            // The permit goes back once the job is settled.
            let how = Settle {
                id: &name,
                arrival,
                max_deliveries: sh.queue.inner.max_deliveries,
                touch: touch(sh, id),
                slot: permit,
                record: Some(record_done(sh, id)),
            };
            durable::settle(&sh.ctx, run, how).await
        }
    };
    let next = next.after_parked().await;
    match next {
        Next::Removed => {
            sh.deleted_since.fetch_add(1, Ordering::Relaxed);
        }
        Next::Acknowledge => {
            sh.queue.ack(id).await;
            sh.deleted_since.fetch_add(1, Ordering::Relaxed);
        }
        Next::LeavePending | Next::AfterParked(_) => {
            tracing::debug!(id, "the job stays in the queue")
        }
    }
}

/// Keeps job `id` locked (with every lease renewal), so that it is not taken over while it
/// runs.
fn touch(sh: &Shared, id: i64) -> Touch {
    let (queue, lock_for) = (sh.queue.clone(), sh.lock);
    Arc::new(move || -> BoxFuture<'static, ()> {
        let queue = queue.clone();
        Box::pin(async move { queue.touch(id, lock_for).await })
    })
}

/// Records the run of job `id` done and deletes the job in one statement
/// ([`PostgresStore::complete_with_job`](runhook_store::PostgresStore::complete_with_job)).
fn record_done(sh: &Shared, id: i64) -> RecordDone {
    let queue = sh.queue.clone();
    Arc::new(move |key, token, keep| -> BoxFuture<'static, _> {
        let queue = queue.clone();
        Box::pin(async move {
            (queue.store())
                .complete_with_job(&key, &token, keep, id)
                .await
        })
    })
}

/// A job runhook cannot read: dead-lettered whole with what can be salvaged, then deleted. If
/// the letter cannot be written, the job stays and is tried again when its lock lapses.
async fn unreadable_job(sh: &Shared, id: i64, why: Unreadable, salvaged: Salvaged) -> Next {
    tracing::error!(queue = %sh.queue.name(), id, %why, "a job runhook cannot read; dead-lettering it");
    let letter = salvaged.letter(id.to_string());
    if sh.ctx.dead_letters.put(letter).await.is_err() {
        return Next::LeavePending;
    }
    Next::Acknowledge
}
