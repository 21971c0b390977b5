//! One entry, from the reader to its acknowledgement: decode, check the claim, run, ack.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use redis::streams::StreamId;
use redis::Value;
use runhook_store::{Claim, Fingerprint, StoreError, Token};
use tokio::sync::OwnedSemaphorePermit;

use super::entry::{Entry, Malformed, Salvaged};
use super::queue::RedisStreamQueue;
use super::shared::{lock, Shared};
use crate::dead_letter::{DeadLetter, DeadLetterReason};
use crate::handler::BoxFuture;
use crate::handoff::Job;
use crate::stats::Counters;
use crate::worker::{dead_letter_job, run_job, Settled, Touch};

/// How an entry reached this reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// Read as new (`XREADGROUP … >`): its token was given to no one else.
    Fresh,
    /// Taken over from a consumer that let it idle (`XAUTOCLAIM`), handed out this many
    /// times in all.
    TakenOver { deliveries: u64 },
}

/// What the claim check decided for one entry.
enum Check {
    /// This worker holds the run with this token: process it.
    Process(Token),
    /// The run was processed already: acknowledge the entry without a handler call.
    Acknowledge,
    /// Someone else holds the run, or the store did not answer: the entry stays pending.
    Leave,
}

/// Handles `entry` on a task of its own, holding a worker's `permit` until it is settled.
pub(crate) fn spawn_entry(
    sh: &Arc<Shared>,
    entry: StreamId,
    arrival: Arrival,
    permit: OwnedSemaphorePermit,
) {
    lock(&sh.running).insert(entry.id.clone());
    let task_shared = sh.clone();
    lock(&sh.tasks).spawn(async move {
        let id = entry.id.clone();
        handle_entry(&task_shared, entry, arrival).await;
        lock(&task_shared.running).remove(&id);
        drop(permit);
    });
}

/// Checks the claim of one entry and processes it if this worker may (see the module docs),
/// then acknowledges it, unless its claim was lost meanwhile (it then stays pending for
/// whoever holds the run).
async fn handle_entry(sh: &Shared, entry: StreamId, arrival: Arrival) {
    let id = entry.id;
    let decoded = match Entry::decode(&entry.map) {
        Ok(decoded) => decoded,
        Err(malformed) => return foreign_entry(sh, &id, &entry.map, malformed).await,
    };
    let token = match check_claim(sh, &id, &decoded, arrival).await {
        Check::Process(token) => token,
        Check::Acknowledge => return sh.queue.ack(&id).await,
        Check::Leave => return,
    };
    let settled = process(sh, &id, decoded, token, arrival).await;
    match settled {
        Settled::Processed | Settled::DeadLettered | Settled::NotOurs => sh.queue.ack(&id).await,
        Settled::LostLease => {
            tracing::warn!(%id, "the claim was lost; the entry stays pending for whoever holds the run")
        }
    }
}

/// A fresh entry's token was taken by the receive path and given to no one else: renewing
/// it proves the claim. A taken-over entry's token may still be renewed by a live worker:
/// never reuse it, claim the run anew.
async fn check_claim(sh: &Shared, id: &str, entry: &Entry, arrival: Arrival) -> Check {
    let ctx = &*sh.ctx;
    let key = &entry.event.dedup_key;
    if let (Arrival::Fresh, Some(token)) = (arrival, entry.token) {
        match ctx.store.renew(key, &token, ctx.lease).await {
            Ok(()) => return Check::Process(token),
            Err(StoreError::NotHolder) => {}
            Err(err) => {
                tracing::warn!(%key, %id, error = %err, "could not check the claim; the entry stays pending");
                return Check::Leave;
            }
        }
    }
    let fingerprint = Fingerprint::of(&entry.event.raw_body);
    match ctx.store.claim(key, ctx.lease, fingerprint).await {
        Ok(Claim::Acquired(token)) => Check::Process(token),
        Ok(Claim::Done { .. }) => {
            tracing::debug!(%key, %id, "run already processed; acknowledging the entry");
            Check::Acknowledge
        }
        Ok(Claim::InFlight { .. }) => {
            tracing::debug!(%key, %id, "run in flight elsewhere; the entry stays pending");
            Check::Leave
        }
        Err(err) => {
            tracing::warn!(%key, %id, error = %err, "could not claim the run; the entry stays pending");
            Check::Leave
        }
    }
}

/// Runs the handler on a claimed entry, or dead-letters it as poison when it was handed out
/// too many times.
async fn process(sh: &Shared, id: &str, entry: Entry, token: Token, arrival: Arrival) -> Settled {
    let ctx = &*sh.ctx;
    let touch = touch(&sh.queue, id);
    let job = Job::claimed(entry.event, token, entry.received_at, entry.headers);
    match arrival {
        Arrival::TakenOver { deliveries } if deliveries > sh.queue.inner.max_deliveries => {
            Counters::bump(&ctx.counters.poison);
            tracing::error!(key = %job.key(), %id, deliveries, "poison run: handed to workers too many times, each time without finishing; dead-lettering it");
            let reason = DeadLetterReason::Poison { deliveries };
            dead_letter_job(ctx, job, reason, Some(touch)).await
        }
        _ => run_job(ctx, job, Some(touch)).await,
    }
}

/// Resets the idle time of entry `id` (with every lease renewal), so that it is not taken
/// over while it runs.
fn touch(queue: &RedisStreamQueue, id: &str) -> Touch {
    let (queue, id) = (queue.clone(), id.to_string());
    Arc::new(move || -> BoxFuture<'static, ()> {
        let (queue, id) = (queue.clone(), id.clone());
        Box::pin(async move { queue.touch(&id).await })
    })
}

/// An entry runhook did not write (or cannot read): dead-lettered whole, then acknowledged.
/// If the letter cannot be written, the entry stays pending and is tried again later.
async fn foreign_entry(sh: &Shared, id: &str, map: &HashMap<String, Value>, why: Malformed) {
    tracing::error!(stream = %sh.queue.stream_key(), %id, %why, "a stream entry runhook cannot read; dead-lettering it");
    let salvaged = Salvaged::from(map);
    let letter = DeadLetter {
        provider: salvaged.provider,
        dedup_key: salvaged.key,
        run_id: salvaged.run_id,
        reason: DeadLetterReason::MalformedEntry { id: id.to_string() },
        attempts: 0,
        received_at: SystemTime::now(),
        headers: Vec::new(),
        body: salvaged.body,
        source: runhook_core::payload::EventSource::Webhook,
    };
    if sh.ctx.dead_letters.put(letter).await.is_err() {
        // Logged by the writer; the entry stays pending and is tried again later.
        Counters::bump(&sh.ctx.counters.dead_letter_write_failures);
        return;
    }
    sh.queue.ack(id).await;
}
