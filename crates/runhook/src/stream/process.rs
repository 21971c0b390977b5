//! One entry, from the reader to its acknowledgement: decode it, set it aside when it cannot
//! be read ([`super::foreign`]), or check its claim and run it ([`super::claimed`]); then
//! acknowledge it, or leave it pending.

use std::sync::Arc;

use redis::streams::StreamId;
use tokio::sync::OwnedSemaphorePermit;

use super::claimed::settle;
use super::entry::Entry;
use super::foreign::foreign_entry;
use super::shared::{lock, Shared};
use crate::handoff::arrival::{Arrival, Next};
use crate::handoff::durable::Carried;
use tokio::time::Instant;

/// Handles `entry` on a task of its own, holding a worker's `permit` until it is settled;
/// `renewed_at`: when the reader renewed the claim with the entry's token, if it did.
pub(crate) fn spawn_entry(
    sh: &Arc<Shared>,
    entry: StreamId,
    arrival: Arrival,
    permit: OwnedSemaphorePermit,
    renewed_at: Option<Instant>,
) {
    lock(&sh.running).insert(entry.id.clone());
    let task_shared = sh.clone();
    lock(&sh.tasks).spawn(async move {
        let id = entry.id.clone();
        handle_entry(&task_shared, entry, arrival, permit, renewed_at).await;
        lock(&task_shared.running).remove(&id);
    });
}

/// Checks the claim of one entry and processes it if this worker may (see the module docs),
/// then acknowledges it, unless its claim was lost meanwhile (it then stays pending for
/// whoever holds the run). An entry whose dead letter is parked gives its worker's `permit`
/// back at once and waits for the letter (the entry stays in `running`, its idle time reset
/// by the parked set).
async fn handle_entry(
    sh: &Shared,
    entry: StreamId,
    arrival: Arrival,
    permit: OwnedSemaphorePermit,
    renewed_at: Option<Instant>,
) {
    let next = match Entry::decode(&entry.map) {
        Err(malformed) => {
            let next = foreign_entry(sh, &entry.id, &entry.map, malformed).await;
            drop(permit);
            next
        }
        // The permit goes back once the entry is settled.
        Ok(mut decoded) => {
            if let (Some(at), Carried::Token(token)) = (renewed_at, decoded.claim) {
                decoded.claim = Carried::Renewed { token, at };
            }
            settle(sh, &entry.id, decoded, arrival, permit).await
        }
    };
    let next = next.after_parked().await;
    match next {
        Next::Acknowledge => sh.queue.ack(&entry.id).await,
        Next::Removed => {}
        Next::LeavePending | Next::AfterParked(_) => {
            tracing::debug!(id = %entry.id, "the entry stays pending")
        }
    }
}
