//! An entry that decoded: settled as every durable hand-off settles its entries
//! ([`crate::handoff::durable`]), its idle time reset with each lease renewal.

use std::sync::Arc;

use redis::Value;
use tokio::sync::OwnedSemaphorePermit;

use super::call::bounded;
use super::entry::Entry;
use super::queue::RedisStreamQueue;
use super::shared::Shared;
use crate::handler::BoxFuture;
use crate::handoff::arrival::{Arrival, Next};
use crate::handoff::durable::{self, Settle};
use crate::worker::{RecordDone, Touch};
use runhook_store::{RedisStore, StreamEntry};

/// Checks the claim of a decoded entry, then runs it. With a claim store, its run's done mark
/// also acknowledges and deletes it ([`Next::Removed`]).
pub(super) async fn settle(
    sh: &Shared,
    id: &str,
    entry: Entry,
    arrival: Arrival,
    slot: OwnedSemaphorePermit,
) -> Next {
    let record = (sh.queue.inner.claims.clone()).map(|store| record_done(store, &sh.queue, id));
    let how = Settle {
        id,
        arrival,
        max_deliveries: sh.queue.inner.max_deliveries,
        touch: touch(&sh.queue, id),
        slot,
        record,
    };
    durable::settle(&sh.ctx, entry, how).await
}

/// Records the run of entry `id` done and removes the entry in one script
/// ([`RedisStore::complete_and_remove`]).
fn record_done(store: RedisStore, queue: &RedisStreamQueue, id: &str) -> RecordDone {
    let (queue, id) = (queue.clone(), id.to_string());
    Arc::new(move |key, token, keep| -> BoxFuture<'static, _> {
        let (store, queue, id) = (store.clone(), queue.clone(), id.clone());
        Box::pin(async move {
            let entry = StreamEntry {
                stream: queue.stream_key(),
                group: queue.group(),
                id: &id,
            };
            store.complete_and_remove(&key, &token, keep, &entry).await
        })
    })
}

/// Resets the idle time of entry `id` (with every lease renewal), so that it is not taken
/// over while it runs: `XCLAIM` to this consumer with no minimum idle time, `JUSTID`.
fn touch(queue: &RedisStreamQueue, id: &str) -> Touch {
    let (queue, id) = (queue.clone(), id.to_string());
    Arc::new(move || -> BoxFuture<'static, ()> {
        let (queue, id) = (queue.clone(), id.clone());
        Box::pin(async move { reset_idle(&queue, &id).await })
    })
}

async fn reset_idle(queue: &RedisStreamQueue, id: &str) {
    let q = &*queue.inner;
    let mut cmd = redis::cmd("XCLAIM");
    cmd.arg(&q.key)
        .arg(&q.group)
        .arg(&q.consumer)
        .arg(0)
        .arg(id)
        .arg("JUSTID");
    let mut conn = q.conn.clone();
    if let Err(err) = bounded(q.timeout, cmd.query_async::<Value>(&mut conn)).await {
        tracing::warn!(stream = %q.key, id, error = %err, "could not reset the idle time of a running entry");
    }
}
