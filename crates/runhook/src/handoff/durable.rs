//! What the durable hand-offs (the Redis stream, the Postgres queue) do with an entry read
//! back, once it decoded: check its claim (a fresh entry's token renewed, a taken-over one
//! claimed anew), then run it, or dead-letter it as poison when it was handed out too often.

use std::time::SystemTime;

use runhook_core::payload::{Provider, RunEvent};
use runhook_store::{Claim, Fingerprint, StoreError, Token};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::task::{JoinHandle, JoinSet};

use super::arrival::{Arrival, Next};
use super::{DrainEnd, Job, ShutdownReport};
use crate::dead_letter::{DeadLetter, DeadLetterReason};
use crate::stats::Counters;
use crate::worker::{dead_letter_job, run_job, Durable, RecordDone, Settled, Touch, WorkerContext};

/// An entry read back from a durable hand-off, decoded.
pub(crate) struct ReadBack {
    /// The run, parsed as the receive path parsed it.
    pub event: RunEvent,
    /// The claim the entry carries.
    pub claim: Carried,
    pub received_at: SystemTime,
    pub headers: Vec<(String, String)>,
}

/// The claim an entry carries from the receive path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carried {
    /// None: a duplicate's or a redriven letter's copy; the worker claims the run.
    Nothing,
    /// The receive path's token, proven by renewing it before the run starts.
    Token(Token),
    /// The receive path's token, renewed at `at` by the read that handed the entry out (the
    /// Postgres fetch or enqueue, the stream reader's renewal of its read): this worker holds
    /// the run, unless it waited past a third of the lease since (then the token is renewed
    /// again, as any other).
    Renewed {
        token: Token,
        at: tokio::time::Instant,
    },
}

/// How one entry is settled: the hand-off's name for it (for the logs), how it arrived, the
/// deliveries past which it is poison, how to keep it from being taken over while it runs,
/// the worker slot it holds until it is settled, and how its run's done mark is written.
pub(crate) struct Settle<'a> {
    pub id: &'a str,
    pub arrival: Arrival,
    pub max_deliveries: u64,
    pub touch: Touch,
    pub slot: OwnedSemaphorePermit,
    /// How the done mark is written, when not by the store's `complete`.
    pub record: Option<RecordDone>,
}

/// What the claim check decided for one entry.
enum Check {
    /// This worker holds the run with this token: process it.
    Process(Token),
    /// The run was processed already, or the entry is set aside.
    Settled(Next),
}

/// Checks the claim of `entry`, then runs it; what becomes of the entry.
pub(crate) async fn settle(ctx: &WorkerContext, entry: ReadBack, how: Settle<'_>) -> Next {
    let token = match check_claim(ctx, how.id, &entry, how.arrival).await {
        Check::Process(token) => token,
        Check::Settled(next) => return next,
    };
    let id = how.id;
    match process(ctx, entry, token, how).await {
        Settled::Processed | Settled::DeadLettered | Settled::NotOurs => Next::Acknowledge,
        Settled::ProcessedAndRemoved => Next::Removed,
        Settled::Parked(ticket) => Next::AfterParked(ticket),
        Settled::LostLease => {
            tracing::warn!(%id, "the claim was lost; the entry stays pending for whoever holds the run");
            Next::LeavePending
        }
    }
}

/// A fresh entry's token was taken by the receive path and given to no one else: renewing
/// it proves the claim (the read may have renewed it already). A taken-over entry's token may still be renewed by a live worker:
/// never reuse it, claim the run anew.
async fn check_claim(ctx: &WorkerContext, id: &str, entry: &ReadBack, arrival: Arrival) -> Check {
    let key = &entry.event.dedup_key;
    let token = match (arrival, entry.claim) {
        (Arrival::Fresh, Carried::Renewed { token, at }) if at.elapsed() < ctx.lease / 3 => {
            return Check::Process(token)
        }
        (Arrival::Fresh, Carried::Renewed { token, .. } | Carried::Token(token)) => Some(token),
        _ => None,
    };
    if let Some(token) = token {
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
/// more than `max_deliveries` times.
async fn process(ctx: &WorkerContext, entry: ReadBack, token: Token, how: Settle<'_>) -> Settled {
    let job = Job::claimed(entry.event, token, entry.received_at, entry.headers);
    match how.arrival {
        Arrival::TakenOver { deliveries } if deliveries > how.max_deliveries => {
            Counters::bump(&ctx.counters.poison);
            tracing::error!(key = %job.key(), id = %how.id, deliveries, "poison run: handed to workers too many times, each time without finishing; dead-lettering it");
            let reason = DeadLetterReason::Poison { deliveries };
            dead_letter_job(ctx, job, reason, Some(how.touch)).await
        }
        _ => {
            let durable = Durable {
                touch: how.touch,
                slot: how.slot,
                record: how.record,
            };
            run_job(ctx, job, Some(durable)).await
        }
    }
}

/// A consumer name of its own for this process: `<hostname>-<pid>-<random>`.
pub(crate) fn default_consumer() -> String {
    use rand::RngExt as _;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let tag: u32 = rand::rng().random();
    format!("{host}-{}-{tag:08x}", std::process::id())
}

/// What a durable hand-off's shutdown stops: its reader, its entries' tasks, and the flag and
/// signal they watch.
pub(crate) struct Running<'a> {
    pub ctx: &'a WorkerContext,
    pub stop: &'a AtomicBool,
    pub stopped: &'a Notify,
    pub reader: &'a Mutex<Option<JoinHandle<()>>>,
    pub tasks: &'a Mutex<JoinSet<()>>,
}

/// Stops the reader, lets running handlers finish until `end`, then stops them and releases
/// their claims; their entries stay in the hand-off for another instance (`left_pending`).
/// Parked dead letters are written past the sink's budget meanwhile where the sink allows;
/// those it cannot take are released and left pending too.
pub(crate) async fn stop(running: Running<'_>, mut end: DrainEnd<'_>) -> ShutdownReport {
    let ctx = running.ctx;
    ctx.parked.close();
    running.stop.store(true, Ordering::Release);
    running.stopped.notify_one();
    let reader = lock(running.reader).take();
    if let Some(mut reader) = reader {
        if !end.run(&mut reader).await {
            reader.abort();
            let _ = reader.await;
        }
    }
    let mut tasks = std::mem::take(&mut *lock(running.tasks));
    let drained = end
        .run(async { while tasks.join_next().await.is_some() {} })
        .await;
    let mut report = ShutdownReport::default();
    if !drained {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        for job in ctx.stop_busy() {
            ctx.release(&job).await;
            report.left_pending.push(job.key().to_string());
        }
    }
    for job in ctx.parked.stop().await {
        ctx.release(&job).await;
        report.left_pending.push(job.key().to_string());
    }
    report
}

/// What can be read of an entry (or a job) that does not decode: kept in its dead letter.
pub(crate) struct Salvaged {
    pub provider: Option<Provider>,
    pub key: Option<String>,
    pub run_id: Option<String>,
    pub body: bytes::Bytes,
}

impl Salvaged {
    /// The dead letter of the entry `id` runhook cannot read (`malformed_entry`), received now
    /// as far as anyone can tell, with no headers.
    pub(crate) fn letter(self, id: String) -> DeadLetter {
        DeadLetter {
            provider: self.provider,
            dedup_key: self.key,
            run_id: self.run_id,
            reason: DeadLetterReason::MalformedEntry { id },
            attempts: 0,
            received_at: SystemTime::now(),
            headers: Vec::new(),
            body: self.body,
            source: runhook_core::payload::EventSource::Webhook,
            truncated: None,
        }
    }
}

/// A lock that a panicked holder did not spoil (the data is a set or a task list).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
