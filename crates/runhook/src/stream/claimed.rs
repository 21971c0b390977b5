//! An entry that decoded: its claim checked (a fresh token renewed, a taken-over entry claimed
//! anew), then its run processed (or dead-lettered as poison), its idle time reset with each
//! lease renewal.

use std::sync::Arc;

use redis::Value;
use runhook_store::{Claim, Fingerprint, StoreError, Token};

use super::arrival::{Arrival, Next};
use super::call::bounded;
use super::entry::Entry;
use super::queue::RedisStreamQueue;
use super::shared::Shared;
use crate::dead_letter::DeadLetterReason;
use crate::handler::BoxFuture;
use crate::handoff::Job;
use crate::stats::Counters;
use crate::worker::{dead_letter_job, run_job, Settled, Touch};

/// What the claim check decided for one entry.
enum Check {
    /// This worker holds the run with this token: process it.
    Process(Token),
    /// The run was processed already, or the entry is set aside: acknowledge it.
    Settled(Next),
}

/// Checks the claim of a decoded entry, then runs it.
pub(super) async fn settle(sh: &Shared, id: &str, entry: Entry, arrival: Arrival) -> Next {
    let token = match check_claim(sh, id, &entry, arrival).await {
        Check::Process(token) => token,
        Check::Settled(next) => return next,
    };
    match process(sh, id, entry, token, arrival).await {
        Settled::Processed | Settled::DeadLettered | Settled::NotOurs => Next::Acknowledge,
        Settled::Parked(ticket) => Next::AfterParked(ticket),
        Settled::LostLease => {
            tracing::warn!(%id, "the claim was lost; the entry stays pending for whoever holds the run");
            Next::LeavePending
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
                return Check::Settled(Next::LeavePending);
            }
        }
    }
    let fingerprint = Fingerprint::of(&entry.event.raw_body);
    match ctx.store.claim(key, ctx.lease, fingerprint).await {
        Ok(Claim::Acquired(token)) => Check::Process(token),
        Ok(Claim::Done { .. }) => {
            tracing::debug!(%key, %id, "run already processed; acknowledging the entry");
            Check::Settled(Next::Acknowledge)
        }
        Ok(Claim::InFlight { .. }) => {
            tracing::debug!(%key, %id, "run in flight elsewhere; the entry stays pending");
            Check::Settled(Next::LeavePending)
        }
        Err(err) => {
            tracing::warn!(%key, %id, error = %err, "could not claim the run; the entry stays pending");
            Check::Settled(Next::LeavePending)
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
