//! The stream hand-off of one receiver: it starts the reader, appends claimed deliveries, and
//! shuts down.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use runhook_core::payload::{EventSource, RunEvent};
use runhook_store::{ClaimAppended, Fingerprint, StoreError, StreamAppend, Token};
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::entry::NewEntry;
use super::queue::{AddRefused, DuplicateAdded, RedisStreamQueue};
use super::reader::Reader;
use super::shared::Shared;
use crate::handoff::durable;
use crate::handoff::{DrainEnd, Duplicate, GivenBack, Job, Refused, ShutdownReport, Written};
use crate::log_every::LogEvery;
use crate::worker::WorkerContext;

/// The reader and workers of one receiver on its stream.
pub(crate) struct StreamWorkers {
    shared: Arc<Shared>,
    reader: Mutex<Option<JoinHandle<()>>>,
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
            full_log: LogEvery::default(),
            stop: AtomicBool::new(false),
            stopped: Notify::new(),
        });
        let reader = tokio::spawn(Reader::new(shared.clone()).run());
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

    /// Whether runs are claimed with their entries ([`RedisStreamQueueBuilder::claim_in`]):
    /// then the receive path calls [`StreamWorkers::claim_and_append`], never
    /// [`StreamWorkers::send`].
    ///
    /// [`RedisStreamQueueBuilder::claim_in`]: super::RedisStreamQueueBuilder::claim_in
    pub fn claims_with_entry(&self) -> bool {
        self.shared.queue.inner.claims.is_some()
    }

    /// Claims `event`'s run and appends its entry in one script; the delivery may be answered
    /// 200 once this returned [`Written::Enqueued`].
    pub async fn claim_and_append(
        &self,
        event: &RunEvent,
        lease: Duration,
        headers: &[(String, String)],
        received_at: SystemTime,
    ) -> Result<Written, StoreError> {
        let sh = &self.shared;
        let unavailable = |reason: &str| StoreError::Unavailable {
            reason: reason.into(),
        };
        let Some(store) = &sh.queue.inner.claims else {
            return Err(unavailable("the stream has no claim store"));
        };
        if sh.stop.load(Ordering::Acquire) {
            return Err(unavailable("the stream hand-off is shutting down"));
        }
        let token = Token::random();
        let entry = NewEntry {
            provider: event.provider,
            key: &event.dedup_key,
            run_id: event.run_id.as_deref(),
            token: Some(&token),
            received_at,
            body: &event.raw_body,
            headers,
            source: event.source,
        };
        let mut values: Vec<(&str, Vec<u8>)> = Vec::with_capacity(8);
        (entry.encode(|name, value| values.push((name, value.to_vec()))))
            .map_err(|e| unavailable(&format!("the entry's headers: {e}")))?;
        let fields: Vec<(&str, &[u8])> = values.iter().map(|(n, v)| (*n, &v[..])).collect();
        let append = StreamAppend {
            stream: sh.queue.stream_key(),
            capacity: sh.capacity as u64,
            fields: &fields,
        };
        let fingerprint = Fingerprint::of(&event.raw_body);
        let written = store
            .claim_and_append(&event.dedup_key, token, lease, fingerprint, &append)
            .await;
        match written {
            Ok(ClaimAppended::Appended) => Ok(Written::Enqueued),
            Ok(ClaimAppended::Taken(claim)) => Ok(Written::Taken(claim)),
            Ok(ClaimAppended::Full) => {
                log_full(sh);
                Ok(Written::Full)
            }
            Err(err) => {
                tracing::error!(stream = %sh.queue.stream_key(), key = %event.dedup_key, error = %err, "could not claim and append a delivery");
                Err(err)
            }
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
        let sh = &self.shared;
        match sh.queue.add_duplicate(&entry, sh.capacity).await {
            Ok(DuplicateAdded::Appended) => Ok(()),
            Ok(DuplicateAdded::AlreadyPending) => {
                tracing::debug!(stream = %sh.queue.stream_key(), key = %entry.key, "a copy of this run in flight is in the stream already; not appending another");
                Ok(())
            }
            Err(refused) => Err(refused_append(sh, &entry, refused)),
        }
    }

    async fn append(&self, entry: &NewEntry<'_>) -> Result<(), Refused> {
        let sh = &self.shared;
        (sh.queue.add(entry, sh.capacity).await)
            .map_err(|refused| refused_append(sh, entry, refused))
    }

    /// Whether the stream's Redis answers now (logged when not).
    pub async fn reachable(&self) -> bool {
        match self.shared.queue.ping().await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(stream = %self.shared.queue.stream_key(), error = %err, "readiness: the stream's Redis does not answer");
                false
            }
        }
    }

    /// The workers' shared context.
    pub fn context(&self) -> &WorkerContext {
        &self.shared.ctx
    }

    /// The stream's backlog as last read (every couple of seconds).
    pub fn depth(&self) -> u64 {
        self.shared.depth.load(Ordering::Relaxed)
    }

    /// Stops the reader, lets running handlers finish until `end`, then stops them and
    /// releases their claims; their entries stay pending for another instance
    /// ([`durable::stop`]). The consumer then leaves the group if it holds nothing.
    pub async fn shutdown(&self, end: DrainEnd<'_>) -> ShutdownReport {
        let sh = &self.shared;
        let running = durable::Running {
            ctx: &sh.ctx,
            stop: &sh.stop,
            stopped: &sh.stopped,
            reader: &self.reader,
            tasks: &sh.tasks,
        };
        let report = durable::stop(running, end).await;
        sh.queue.forget_consumer_if_idle().await;
        report
    }
}

/// Logs that the backlog is full (one line per period at most, with the count refused).
fn log_full(sh: &Shared) {
    if let Some(refused) = sh.full_log.tick() {
        tracing::warn!(stream = %sh.queue.stream_key(), capacity = sh.capacity, refused, "the stream's backlog is full; refusing deliveries (503; one line per 10 s at most)");
    }
}

/// Logs why the stream refused `entry`, and what the delivery is answered.
fn refused_append(sh: &Shared, entry: &NewEntry<'_>, refused: AddRefused) -> Refused {
    match refused {
        AddRefused::Full => {
            log_full(sh);
            Refused::Full
        }
        err => {
            tracing::error!(stream = %sh.queue.stream_key(), key = %entry.key, error = %err, "could not append a delivery to the stream");
            Refused::Unavailable
        }
    }
}
