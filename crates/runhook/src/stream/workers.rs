//! The reader and workers of one receiver on its stream: new entries, takeovers, poison
//! runs, and the claim check before each entry is processed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::streams::StreamId;
use redis::Value;
use runhook_core::payload::{Confirmation, EventSource, Provider, RunEvent};
use runhook_store::{Claim, Fingerprint, StoreError, Token};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::queue::{AddRefused, NewEntry, RedisStreamQueue};
use super::{DEPTH_EVERY, ERROR_PAUSE};
use crate::dead_letter::{DeadLetter, DeadLetterReason};
use crate::handler::BoxFuture;
use crate::handoff::Duplicate;
use crate::handoff::Job;
use crate::handoff::ShutdownReport;
use crate::handoff::{GivenBack, Refused};
use crate::stats::Counters;
use crate::worker::{dead_letter_job, run_job, Settled, Touch, WorkerContext};

/// The reader and workers of one receiver on its stream.
pub(crate) struct StreamWorkers {
    shared: Arc<Shared>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    queue: RedisStreamQueue,
    ctx: Arc<WorkerContext>,
    /// One per worker: an entry is read only when a worker is free.
    permits: Arc<Semaphore>,
    workers: u32,
    /// The most entries the stream may hold (its backlog).
    capacity: usize,
    tasks: Mutex<JoinSet<()>>,
    /// Entry ids being processed by this process (a takeover of one of them is skipped).
    running: Mutex<HashSet<String>>,
    min_idle: Duration,
    depth: AtomicU64,
    stop: AtomicBool,
    stopped: Notify,
}

/// How an entry reached this reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Read as new (`XREADGROUP … >`): its token was given to no one else.
    Fresh,
    /// Taken over from a consumer that let it idle (`XAUTOCLAIM`), handed out this many
    /// times in all.
    TakenOver { deliveries: u64 },
}

impl StreamWorkers {
    /// Starts the reader of `queue`, with `workers` handler calls at once and a backlog of at
    /// most `capacity` entries.
    pub fn start(
        queue: RedisStreamQueue,
        ctx: WorkerContext,
        workers: usize,
        capacity: usize,
    ) -> Self {
        let lease = ctx.lease;
        let min_idle = queue
            .inner
            .min_idle
            .unwrap_or_else(|| lease + (lease / 10).max(Duration::from_secs(1)));
        if min_idle <= lease / 3 {
            tracing::warn!(?min_idle, ?lease, "min_idle is not longer than the lease renewal interval: running entries may be taken over (the claim check still prevents a second run)");
        }
        let workers = workers.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let shared = Arc::new(Shared {
            queue,
            ctx: Arc::new(ctx),
            permits: Arc::new(Semaphore::new(workers)),
            workers: workers as u32,
            capacity: capacity.max(1),
            tasks: Mutex::new(JoinSet::new()),
            running: Mutex::default(),
            min_idle,
            depth: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            stopped: Notify::new(),
        });
        let reader = tokio::spawn(read_loop(shared.clone()));
        Self {
            shared,
            reader: Mutex::new(Some(reader)),
        }
    }

    /// Appends a claimed job; the delivery may be answered 200 once this returned `Ok`.
    pub async fn send(&self, job: Job) -> Result<(), GivenBack> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Err(Box::new((Refused::Closed, job)));
        }
        let entry = NewEntry {
            provider: job.event.provider,
            key: &job.event.dedup_key,
            run_id: job.event.run_id.as_deref(),
            token: Some(&job.token),
            received_at: job.received_at,
            body: &job.event.raw_body,
            headers: &job.headers,
            source: job.event.source,
        };
        match self.append(&entry).await {
            Ok(()) => Ok(()),
            Err(refused) => Err(Box::new((refused, job))),
        }
    }

    /// Appends a duplicate of a run in flight, without a token (see the module docs).
    pub async fn send_duplicate(&self, duplicate: Duplicate<'_>) -> Result<(), Refused> {
        let entry = NewEntry {
            provider: duplicate.provider,
            key: duplicate.key,
            run_id: duplicate.run_id,
            token: None,
            received_at: duplicate.received_at,
            body: duplicate.body,
            headers: duplicate.headers,
            source: EventSource::Webhook,
        };
        self.append(&entry).await
    }

    async fn append(&self, entry: &NewEntry<'_>) -> Result<(), Refused> {
        let sh = &self.shared;
        match sh.queue.add(entry, sh.capacity).await {
            Ok(()) => Ok(()),
            Err(AddRefused::Full) => {
                tracing::warn!(stream = %sh.queue.stream_key(), capacity = sh.capacity, key = %entry.key, "the stream's backlog is full; refusing the delivery (503)");
                Err(Refused::Full)
            }
            Err(AddRefused::Unavailable(err)) => {
                tracing::error!(stream = %sh.queue.stream_key(), key = %entry.key, error = %err, "could not append a delivery to the stream");
                Err(Refused::Unavailable)
            }
        }
    }

    /// The stream's backlog as last read (every couple of seconds).
    pub fn depth(&self) -> u64 {
        self.shared.depth.load(Ordering::Relaxed)
    }

    /// Stops the reader, lets running handlers finish until `deadline`, then stops them and
    /// releases their claims; their entries stay pending for another instance.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let ends = Instant::now() + deadline;
        let sh = &self.shared;
        sh.stop.store(true, Ordering::Release);
        sh.stopped.notify_one();
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut reader) = reader {
            if tokio::time::timeout_at(ends, &mut reader).await.is_err() {
                reader.abort();
                let _ = reader.await;
            }
        }
        let mut tasks = std::mem::take(&mut *sh.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let drained =
            tokio::time::timeout_at(ends, async { while tasks.join_next().await.is_some() {} })
                .await
                .is_ok();
        let mut report = ShutdownReport::default();
        if !drained {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            for job in sh.ctx.stop_busy() {
                sh.ctx.release(&job).await;
                report.left_pending.push(job.key().to_string());
            }
        }
        sh.queue.forget_consumer_if_idle().await;
        report
    }
}

async fn read_loop(sh: Arc<Shared>) {
    let queue = &sh.queue;
    let mut reader: Option<ConnectionManager> = None;
    let mut cursor = String::from("0-0");
    let scan_every = (sh.min_idle / 10).clamp(Duration::from_millis(100), Duration::from_secs(5));
    // At start, look at once for entries a crashed predecessor left.
    let mut next_scan = Instant::now();
    let mut next_depth = Instant::now();
    let forget_every = (sh.min_idle * 5).min(Duration::from_secs(30));
    let mut next_forget = Instant::now() + forget_every;
    // Entries taken over: each runs alone (see "Poison runs" in the module docs).
    let mut suspects: VecDeque<(StreamId, u64)> = VecDeque::new();
    loop {
        if sh.stop.load(Ordering::Acquire) {
            return;
        }
        if let Some((entry, deliveries)) = suspects.pop_front() {
            let every_worker = tokio::select! {
                all = sh.permits.clone().acquire_many_owned(sh.workers) => match all {
                    Ok(all) => all,
                    Err(_) => return,
                },
                _ = sh.stopped.notified() => return,
            };
            spawn_entry(&sh, entry, Delivery::TakenOver { deliveries }, every_worker);
            continue;
        }
        // Wait for a free worker (keeping the backlog figure fresh meanwhile), then take as
        // many more as are free, up to a batch.
        let first = loop {
            tokio::select! {
                permit = sh.permits.clone().acquire_owned() => match permit {
                    Ok(permit) => break permit,
                    Err(_) => return,
                },
                _ = sh.stopped.notified() => return,
                _ = tokio::time::sleep_until(next_depth) => {
                    next_depth = Instant::now() + DEPTH_EVERY;
                    refresh_depth(&sh).await;
                }
            }
        };
        let mut permits = vec![first];
        while permits.len() < queue.read_batch() {
            match sh.permits.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        reap(&sh);
        let now = Instant::now();
        if now >= next_depth {
            next_depth = now + DEPTH_EVERY;
            refresh_depth(&sh).await;
        }
        if now >= next_forget {
            next_forget = now + forget_every;
            forget_crashed_consumers(&sh).await;
        }
        if now >= next_scan {
            next_scan = now + scan_every;
            let asked = permits.len();
            match take_over(&sh, &cursor, asked).await {
                Ok((next_cursor, taken, full)) => {
                    cursor = next_cursor;
                    if full {
                        // More entries may be due: look again at once.
                        next_scan = Instant::now();
                    }
                    suspects.extend(taken);
                }
                Err(err) => {
                    tracing::warn!(stream = %queue.stream_key(), error = %err, "takeover scan failed")
                }
            }
        }
        if !suspects.is_empty() || sh.stop.load(Ordering::Acquire) {
            // Suspects run first, and alone: give the permits back.
            continue;
        }
        let conn = match &mut reader {
            Some(conn) => conn,
            None => match queue.reader_connection().await {
                Ok(conn) => reader.insert(conn),
                Err(err) => {
                    tracing::warn!(error = %err, "no reader connection to Redis");
                    pause(&sh).await;
                    continue;
                }
            },
        };
        match queue.read_new(conn, permits.len()).await {
            Ok(entries) => {
                for entry in entries {
                    // Never more entries than permits: COUNT asked for that many.
                    let Some(permit) = permits.pop() else { break };
                    spawn_entry(&sh, entry, Delivery::Fresh, permit);
                }
            }
            Err(err) if err.code() == Some("NOGROUP") => {
                tracing::warn!(stream = %queue.stream_key(), "the stream or its group disappeared; creating it again");
                if let Err(err) = super::queue::ensure_group(queue).await {
                    tracing::warn!(error = %err, "could not create the consumer group");
                    pause(&sh).await;
                }
            }
            Err(err) => {
                tracing::warn!(stream = %queue.stream_key(), error = %err, "reading the stream failed");
                pause(&sh).await;
            }
        }
    }
}

/// Takes over up to `count` entries idle longer than `min_idle`, with how many times each
/// was handed out. Returns the next cursor, the entries, and whether the batch was full.
async fn take_over(
    sh: &Shared,
    cursor: &str,
    count: usize,
) -> Result<(String, Vec<(StreamId, u64)>, bool), String> {
    let queue = &sh.queue;
    let reply = queue.autoclaim(sh.min_idle, cursor, count).await?;
    let full = reply.claimed.len() + reply.deleted_ids.len() >= count;
    if !reply.deleted_ids.is_empty() {
        tracing::error!(stream = %queue.stream_key(), ids = ?reply.deleted_ids, "pending entries were deleted from the stream by something other than runhook");
    }
    let claimed: Vec<StreamId> = {
        let running = sh.running.lock().unwrap_or_else(|p| p.into_inner());
        reply
            .claimed
            .into_iter()
            .filter(|entry| !running.contains(&entry.id))
            .collect()
    };
    let ids: Vec<String> = claimed.iter().map(|e| e.id.clone()).collect();
    let counts: HashMap<String, u64> = if ids.is_empty() {
        HashMap::new()
    } else {
        match queue.delivery_counts(&ids).await {
            Ok(pending) => pending.into_iter().map(|p| (p.id, p.deliveries)).collect(),
            Err(err) => {
                tracing::warn!(error = %err, "could not read delivery counts; treating the entries as taken over once");
                HashMap::new()
            }
        }
    };
    let taken = claimed
        .into_iter()
        .map(|entry| {
            let deliveries = counts.get(&entry.id).copied().unwrap_or(2);
            tracing::info!(stream = %queue.stream_key(), id = %entry.id, deliveries, "taking over an entry idle longer than min_idle");
            (entry, deliveries)
        })
        .collect();
    Ok((reply.next_stream_id, taken, full))
}

/// Removes the consumers of crashed instances: those that hold nothing and have been idle for
/// ten times `min_idle`. (Removing a live consumer that holds nothing would cost nothing
/// either: its next read creates it again.)
async fn forget_crashed_consumers(sh: &Shared) {
    let queue = &sh.queue;
    let idle_for = sh.min_idle * 10;
    let consumers = match queue.consumers().await {
        Ok(consumers) => consumers,
        Err(err) => {
            tracing::debug!(error = %err, "could not list the group's consumers");
            return;
        }
    };
    for consumer in consumers {
        if consumer.name == queue.consumer() || consumer.pending > 0 || consumer.idle < idle_for {
            continue;
        }
        match queue.forget_consumer(&consumer.name, idle_for).await {
            Ok(true) => {
                tracing::info!(stream = %queue.stream_key(), consumer = %consumer.name, "removed the consumer of a crashed instance")
            }
            Ok(false) => {}
            Err(err) => tracing::debug!(error = %err, "could not remove a crashed consumer"),
        }
    }
}

/// Reads the stream's backlog into `depth` (best effort).
async fn refresh_depth(sh: &Shared) {
    match sh.queue.backlog().await {
        Ok(depth) => sh.depth.store(depth, Ordering::Relaxed),
        Err(err) => tracing::debug!(error = %err, "could not read the stream's backlog"),
    }
}

/// Waits a moment after a failure, or until the stop signal.
async fn pause(sh: &Shared) {
    tokio::select! {
        _ = tokio::time::sleep(ERROR_PAUSE) => {}
        _ = sh.stopped.notified() => sh.stopped.notify_one(),
    }
}

/// Drops the results of finished entry tasks.
fn reap(sh: &Shared) {
    let mut tasks = sh.tasks.lock().unwrap_or_else(|p| p.into_inner());
    while tasks.try_join_next().is_some() {}
}

fn spawn_entry(
    sh: &Arc<Shared>,
    entry: StreamId,
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
) {
    sh.running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(entry.id.clone());
    let task_shared = sh.clone();
    sh.tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .spawn(async move {
            let id = entry.id.clone();
            handle_entry(&task_shared, entry, delivery).await;
            task_shared
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            drop(permit);
        });
}

/// The fields of one entry as the receive path wrote them.
struct Entry {
    provider: Provider,
    /// A reconciled run's body came from the run API (entries before this field: webhooks).
    source: EventSource,
    key: String,
    token: Option<Token>,
    received_at: SystemTime,
    body: Bytes,
    headers: Vec<(String, String)>,
}

impl Entry {
    fn read(map: &HashMap<String, Value>) -> Option<Self> {
        let text = |name: &str| -> Option<String> {
            redis::from_redis_value_ref::<String>(map.get(name)?).ok()
        };
        let provider = Provider::from_name(&text("provider")?)?;
        let key = text("key").filter(|k| !k.is_empty())?;
        let token = match text("token")?.as_str() {
            "" => None,
            hex => Some(hex.parse().ok()?),
        };
        let body = redis::from_redis_value_ref::<Vec<u8>>(map.get("body")?).ok()?;
        let headers = serde_json::from_str(&text("headers")?).ok()?;
        let received_at = text("at")
            .and_then(|ms| ms.parse::<u64>().ok())
            .map_or_else(SystemTime::now, |ms| UNIX_EPOCH + Duration::from_millis(ms));
        let source = match text("source").as_deref() {
            Some("reconciled") => EventSource::Reconciled,
            _ => EventSource::Webhook,
        };
        Some(Self {
            provider,
            source,
            key,
            token,
            received_at,
            body: Bytes::from(body),
            headers,
        })
    }
}

/// Checks the claim of one entry and processes it if this worker may (see the module docs),
/// then acknowledges it, unless its claim was lost meanwhile (it then stays pending for
/// whoever holds the run).
async fn handle_entry(sh: &Shared, entry: StreamId, delivery: Delivery) {
    let queue = &sh.queue;
    let ctx = &*sh.ctx;
    let id = entry.id;
    let Some(Entry {
        provider,
        source,
        key,
        token,
        received_at,
        body,
        headers,
    }) = Entry::read(&entry.map)
    else {
        foreign_entry(sh, &id, &entry.map).await;
        return;
    };
    // The receive path read this body before appending it: it parses, and gives this key.
    let event = match RunEvent::parse_summary(provider, body.clone()) {
        Ok(mut event) if event.dedup_key == key => {
            if source == EventSource::Reconciled {
                event.source = source;
                event.confirmation = Confirmation::Confirmed;
            }
            event
        }
        _ => {
            foreign_entry(sh, &id, &entry.map).await;
            return;
        }
    };
    // A fresh entry's token was taken by the receive path and given to no one else; a
    // taken-over entry's token may still be renewed by a live worker: never reuse it.
    let held = match (delivery, token) {
        (Delivery::Fresh, Some(token)) => match ctx.store.renew(&key, &token, ctx.lease).await {
            Ok(()) => Some(token),
            Err(StoreError::NotHolder) => None,
            Err(err) => {
                tracing::warn!(%key, %id, error = %err, "could not check the claim; the entry stays pending");
                return;
            }
        },
        _ => None,
    };
    let token = match held {
        Some(token) => token,
        None => match ctx
            .store
            .claim(&key, ctx.lease, Fingerprint::of(&body))
            .await
        {
            Ok(Claim::Acquired(token)) => token,
            Ok(Claim::Done { .. }) => {
                tracing::debug!(%key, %id, "run already processed; acknowledging the entry");
                queue.ack(&id).await;
                return;
            }
            Ok(Claim::InFlight { .. }) => {
                tracing::debug!(%key, %id, "run in flight elsewhere; the entry stays pending");
                return;
            }
            Err(err) => {
                tracing::warn!(%key, %id, error = %err, "could not claim the run; the entry stays pending");
                return;
            }
        },
    };
    let touch: Touch = {
        let (queue, id) = (queue.clone(), id.clone());
        Arc::new(move || -> BoxFuture<'static, ()> {
            let (queue, id) = (queue.clone(), id.clone());
            Box::pin(async move { queue.touch(&id).await })
        })
    };
    let job = Job {
        event: Arc::new(event),
        token,
        held_since: Instant::now(),
        received_at,
        headers: headers.into(),
    };
    let settled = match delivery {
        Delivery::TakenOver { deliveries } if deliveries > queue.inner.max_deliveries => {
            Counters::bump(&ctx.counters.poison);
            tracing::error!(key = %job.key(), %id, deliveries, "poison run: handed to workers too many times, each time without finishing; dead-lettering it");
            dead_letter_job(
                ctx,
                job,
                DeadLetterReason::Poison { deliveries },
                Some(touch),
            )
            .await
        }
        _ => run_job(ctx, job, Some(touch)).await,
    };
    match settled {
        Settled::Processed | Settled::DeadLettered | Settled::NotOurs => queue.ack(&id).await,
        Settled::LostLease => {
            tracing::warn!(%id, "the claim was lost; the entry stays pending for whoever holds the run")
        }
    }
}

/// An entry runhook did not write (or cannot read): dead-lettered whole, then acknowledged.
/// If the letter cannot be written, the entry stays pending and is tried again later.
async fn foreign_entry(sh: &Shared, id: &str, map: &HashMap<String, Value>) {
    tracing::error!(stream = %sh.queue.stream_key(), %id, "a stream entry without the fields runhook writes; dead-lettering it");
    let text = |name: &str| {
        map.get(name)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
    };
    let body = map
        .get("body")
        .and_then(|v| redis::from_redis_value_ref::<Vec<u8>>(v).ok())
        .unwrap_or_default();
    let letter = DeadLetter {
        provider: text("provider").and_then(|p| Provider::from_name(&p)),
        dedup_key: text("key").filter(|k| !k.is_empty()),
        run_id: text("run_id").filter(|k| !k.is_empty()),
        reason: DeadLetterReason::MalformedEntry { id: id.to_string() },
        attempts: 0,
        received_at: SystemTime::now(),
        headers: Vec::new(),
        body: Bytes::from(body),
    };
    if let Err(err) = sh.ctx.dead_letters.put(letter).await {
        Counters::bump(&sh.ctx.counters.dead_letter_write_failures);
        tracing::error!(%id, error = %err, "could not write a dead letter; the entry stays pending");
        return;
    }
    Counters::bump(&sh.ctx.counters.dead_lettered);
    sh.queue.ack(id).await;
}
