//! The reader of one receiver on its stream: it waits for free workers, keeps the backlog
//! figure and the consumer list tidy, takes over idle entries, and reads new ones.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::streams::StreamId;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use runhook_store::Token;

use super::defaults::DEPTH_EVERY;
use super::entry::{field, Fields};
use super::error::RedisCallError;
use super::process::spawn_entry;
use super::shared::{lock, Shared};
use crate::handoff::arrival::Arrival;

/// The delivery count assumed for a taken-over entry whose count could not be read: handed
/// out twice (once before, once now), so it runs alone but is not yet poison.
const ASSUMED_DELIVERIES: u64 = 2;

/// The reader's loop was told to stop.
struct Stopped;

/// An entry taken over from another consumer: it runs alone (see "Poison runs" in the module
/// docs).
struct Suspect {
    entry: StreamId,
    /// How many times it was handed to a consumer, this takeover included.
    deliveries: u64,
}

/// What one takeover scan found.
struct TakeOver {
    /// Where the next scan starts.
    next_cursor: String,
    entries: Vec<Suspect>,
    /// The scan filled its batch: more entries may be due at once.
    more: bool,
}

/// The reader task of one receiver.
pub(crate) struct Reader {
    sh: Arc<Shared>,
    /// Its own connection for the blocking `XREADGROUP`, made on first use.
    conn: Option<ConnectionManager>,
    cursor: String,
    scan_every: Duration,
    next_scan: Instant,
    next_depth: Instant,
    forget_every: Duration,
    next_forget: Instant,
    suspects: VecDeque<Suspect>,
    /// Whether a read failed since this consumer's own pending list was last read back.
    own_pending: OwnPending,
}

/// Whether entries may sit in this consumer's pending list unseen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnPending {
    /// Every entry handed to this consumer reached a worker.
    Seen,
    /// A read failed or timed out: Redis may have handed it entries whose reply was lost.
    MayHoldUnseen,
}

impl Reader {
    pub(crate) fn new(sh: Arc<Shared>) -> Self {
        let now = Instant::now();
        let forget_every = (sh.min_idle * 5).min(Duration::from_secs(30));
        Self {
            scan_every: (sh.min_idle / 10)
                .clamp(Duration::from_millis(100), Duration::from_secs(5)),
            forget_every,
            sh,
            conn: None,
            cursor: String::from("0-0"),
            // At start, look at once for entries a crashed predecessor left.
            next_scan: now,
            next_depth: now,
            next_forget: now + forget_every,
            suspects: VecDeque::new(),
            own_pending: OwnPending::Seen,
        }
    }

    /// Reads until the receiver shuts down.
    pub(crate) async fn run(mut self) {
        while !self.sh.stopping() {
            if self.step().await.is_err() {
                return;
            }
        }
    }

    /// One turn: a suspect alone, or as many entries as there are free workers.
    async fn step(&mut self) -> Result<(), Stopped> {
        if let Some(suspect) = self.suspects.pop_front() {
            return self.run_alone(suspect).await;
        }
        let mut permits = self.free_workers().await?;
        self.maintain().await;
        self.take_over_idle(permits.len()).await;
        // Suspects run first, and alone: the permits go back.
        if self.suspects.is_empty() && !self.sh.stopping() {
            self.read_fresh(&mut permits).await;
        }
        Ok(())
    }

    /// Runs a taken-over entry with every worker's permit, so that nothing else runs beside
    /// it.
    async fn run_alone(&mut self, suspect: Suspect) -> Result<(), Stopped> {
        let sh = &self.sh;
        let every_worker = tokio::select! {
            all = sh.permits.clone().acquire_many_owned(sh.workers) => all.map_err(|_| Stopped)?,
            _ = sh.stopped.notified() => return Err(Stopped),
        };
        let arrival = Arrival::TakenOver {
            deliveries: suspect.deliveries,
        };
        spawn_entry(sh, suspect.entry, arrival, every_worker, None);
        Ok(())
    }

    /// Waits for a free worker (keeping the backlog figure fresh meanwhile), then takes as
    /// many more as are free, up to a batch.
    async fn free_workers(&mut self) -> Result<Vec<OwnedSemaphorePermit>, Stopped> {
        let sh = self.sh.clone();
        let first = loop {
            tokio::select! {
                permit = sh.permits.clone().acquire_owned() => break permit.map_err(|_| Stopped)?,
                _ = sh.stopped.notified() => return Err(Stopped),
                _ = tokio::time::sleep_until(self.next_depth) => {
                    self.next_depth = Instant::now() + DEPTH_EVERY;
                    refresh_depth(&sh).await;
                }
            }
        };
        let mut permits = vec![first];
        while permits.len() < sh.queue.read_batch() {
            match sh.permits.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        Ok(permits)
    }

    /// Drops finished tasks, and refreshes the backlog figure and the consumer list when due.
    async fn maintain(&mut self) {
        self.sh.reap();
        let now = Instant::now();
        if now >= self.next_depth {
            self.next_depth = now + DEPTH_EVERY;
            refresh_depth(&self.sh).await;
        }
        if now >= self.next_forget {
            self.next_forget = now + self.forget_every;
            forget_crashed_consumers(&self.sh).await;
        }
    }

    /// When a scan is due, takes over up to `count` idle entries as suspects.
    async fn take_over_idle(&mut self, count: usize) {
        let now = Instant::now();
        if now < self.next_scan {
            return;
        }
        self.next_scan = now + self.scan_every;
        match take_over(&self.sh, &self.cursor, count).await {
            Ok(taken) => {
                self.cursor = taken.next_cursor;
                if taken.more {
                    self.next_scan = Instant::now();
                }
                self.suspects.extend(taken.entries);
            }
            Err(err) => {
                tracing::warn!(stream = %self.sh.queue.stream_key(), error = %err, "takeover scan failed")
            }
        }
    }

    /// Reads up to one new entry per permit, and gives each to a worker.
    async fn read_fresh(&mut self, permits: &mut Vec<OwnedSemaphorePermit>) {
        let sh = self.sh.clone();
        let own_pending = self.own_pending;
        let Some(conn) = self.connection().await else {
            return sh.pause().await;
        };
        let read = match own_pending {
            OwnPending::MayHoldUnseen => read_back_unseen(&sh, conn, permits.len()).await,
            OwnPending::Seen => sh.queue.read_new(conn, permits.len()).await,
        };
        match read {
            Ok(entries) if own_pending == OwnPending::MayHoldUnseen => {
                if entries.is_empty() {
                    self.own_pending = OwnPending::Seen;
                }
                for entry in entries {
                    let Some(permit) = permits.pop() else { break };
                    tracing::info!(stream = %sh.queue.stream_key(), id = %entry.id, "reading back an entry whose read reply was lost");
                    spawn_entry(&sh, entry, Arrival::Fresh, permit, None);
                }
            }
            Ok(entries) => {
                let renewed = renew_read(&sh, &entries).await;
                for entry in entries {
                    // Never more entries than permits: COUNT asked for that many.
                    let Some(permit) = permits.pop() else { break };
                    let at = renewed.held.contains(&entry.id).then_some(renewed.at);
                    spawn_entry(&sh, entry, Arrival::Fresh, permit, at);
                }
            }
            Err(err) if err.is_no_group() => {
                tracing::warn!(stream = %sh.queue.stream_key(), "the stream or its group disappeared; creating it again");
                if let Err(err) = super::queue::ensure_group(&sh.queue).await {
                    tracing::warn!(error = %err, "could not create the consumer group");
                    sh.pause().await;
                }
            }
            Err(err) => {
                tracing::warn!(stream = %sh.queue.stream_key(), error = %err, "reading the stream failed");
                self.own_pending = OwnPending::MayHoldUnseen;
                sh.pause().await;
            }
        }
    }

    /// The reader's own connection, made if there is none yet.
    async fn connection(&mut self) -> Option<&mut ConnectionManager> {
        if self.conn.is_none() {
            match self.sh.queue.reader_connection().await {
                Ok(conn) => self.conn = Some(conn),
                Err(err) => tracing::warn!(error = %err, "no reader connection to Redis"),
            }
        }
        self.conn.as_mut()
    }
}

/// The entries of one read whose claims were renewed with the tokens they carry, and when.
struct Renewed {
    at: Instant,
    held: HashSet<String>,
}

/// With a claim store ([`RedisStreamQueueBuilder::claim_in`](super::RedisStreamQueueBuilder::claim_in)),
/// renews the claims of freshly read `entries` with their own tokens, in one script: their
/// workers then need not renew them one by one ([`Carried::Renewed`](crate::handoff::durable::Carried)).
/// Without one, or when Redis fails, none (each worker renews its own, as always).
async fn renew_read(sh: &Shared, entries: &[StreamId]) -> Renewed {
    let at = Instant::now();
    let mut renewed = Renewed {
        at,
        held: HashSet::new(),
    };
    let Some(store) = sh.queue.claim_store() else {
        return renewed;
    };
    let carried: Vec<(&str, (String, Token))> = entries
        .iter()
        .filter_map(|entry| Some((entry.id.as_str(), carried_claim(&entry.map)?)))
        .collect();
    let claims: Vec<(&str, Token)> = carried
        .iter()
        .map(|(_, (key, token))| (key.as_str(), *token))
        .collect();
    match store.renew_many(&claims, sh.ctx.lease).await {
        Ok(held) => {
            renewed.held = (carried.iter().zip(held))
                .filter(|(_, held)| *held)
                .map(|((id, _), _)| id.to_string())
                .collect();
        }
        Err(err) => {
            tracing::debug!(error = %err, "could not renew a read's claims; each worker renews its own")
        }
    }
    renewed
}

/// The dedup key and token an entry carries, when it carries both.
fn carried_claim(map: &HashMap<String, redis::Value>) -> Option<(String, Token)> {
    let fields = Fields(map);
    let key = fields.text(field::KEY).ok()?;
    let token = fields.text(field::TOKEN).ok()?.parse().ok()?;
    Some((key, token))
}

/// Up to `count` entries of this consumer's own pending list that no worker of it runs: handed
/// to it by a read whose reply was lost. They carry their own token, as when read fresh.
async fn read_back_unseen(
    sh: &Shared,
    conn: &mut ConnectionManager,
    count: usize,
) -> Result<Vec<StreamId>, RedisCallError> {
    // The running ones come back too: ask for enough to get past them.
    let running = lock(&sh.running).len();
    let pending = sh.queue.read_own_pending(conn, count + running).await?;
    let (gone, pending): (Vec<StreamId>, Vec<StreamId>) =
        pending.into_iter().partition(|entry| entry.map.is_empty());
    // An entry deleted since (settled elsewhere) comes back without fields: nothing to run.
    for entry in gone {
        sh.queue.ack(&entry.id).await;
    }
    let running = lock(&sh.running);
    Ok(pending
        .into_iter()
        .filter(|entry| !running.contains(&entry.id))
        .take(count)
        .collect())
}

/// Takes over up to `count` entries idle longer than `min_idle`, with how many times each
/// was handed out.
async fn take_over(sh: &Shared, cursor: &str, count: usize) -> Result<TakeOver, RedisCallError> {
    let queue = &sh.queue;
    let reply = queue.autoclaim(sh.min_idle, cursor, count).await?;
    let more = reply.claimed.len() + reply.deleted_ids.len() >= count;
    if !reply.deleted_ids.is_empty() {
        tracing::error!(stream = %queue.stream_key(), ids = ?reply.deleted_ids, "pending entries were deleted from the stream by something other than runhook");
    }
    let claimed: Vec<StreamId> = {
        let running = lock(&sh.running);
        reply
            .claimed
            .into_iter()
            .filter(|entry| !running.contains(&entry.id))
            .collect()
    };
    let counts = delivery_counts(sh, &claimed).await;
    let entries = claimed
        .into_iter()
        .map(|entry| {
            let deliveries = counts
                .get(&entry.id)
                .copied()
                .unwrap_or(ASSUMED_DELIVERIES);
            tracing::info!(stream = %queue.stream_key(), id = %entry.id, deliveries, "taking over an entry idle longer than min_idle");
            Suspect { entry, deliveries }
        })
        .collect();
    Ok(TakeOver {
        next_cursor: reply.next_stream_id,
        entries,
        more,
    })
}

/// How many times each of `entries` was handed out, by id (none when Redis did not say).
async fn delivery_counts(sh: &Shared, entries: &[StreamId]) -> HashMap<String, u64> {
    if entries.is_empty() {
        return HashMap::new();
    }
    let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    match sh.queue.delivery_counts(&ids).await {
        Ok(pending) => pending.into_iter().map(|p| (p.id, p.deliveries)).collect(),
        Err(err) => {
            tracing::warn!(error = %err, "could not read delivery counts; treating the entries as taken over once");
            HashMap::new()
        }
    }
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
