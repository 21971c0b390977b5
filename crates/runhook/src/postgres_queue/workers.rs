//! The Postgres hand-off of one receiver: it claims and enqueues deliveries (one statement),
//! starts the reader, and shuts down.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use runhook_core::payload::RunEvent;
use runhook_store::{BacklogCheck, ClaimEnqueued, Fingerprint, Pickup, StoreError};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::job::spawn_job;
use super::queue::PostgresQueue;
use super::reader::Reader;
use super::row::{new_job, Fetched};
use crate::handoff::arrival::Arrival;
use crate::handoff::durable::{self, Carried, ReadBack};
use crate::handoff::{DrainEnd, ShutdownReport};
use crate::log_every::LogEvery;
use crate::worker::WorkerContext;

/// The state the reader, the job tasks and the receiver's handle share.
pub(crate) struct Shared {
    pub queue: PostgresQueue,
    pub ctx: Arc<WorkerContext>,
    /// One per worker: a job is fetched only when a worker is free.
    pub permits: Arc<Semaphore>,
    pub workers: u32,
    /// The most jobs the queue may hold (its backlog).
    pub capacity: usize,
    /// How long a handed-out job stays locked without a sign of life.
    pub lock: Duration,
    pub tasks: Mutex<JoinSet<()>>,
    /// Ids of the jobs this process runs (a takeover of one of them is skipped; a shutdown
    /// hands the unfinished back).
    pub running: Mutex<HashSet<i64>>,
    /// The backlog as last counted, and the jobs enqueued and deleted here since.
    pub depth: AtomicU64,
    pub enqueued_since: AtomicU64,
    pub deleted_since: AtomicU64,
    /// Rate limit of the "backlog full" line: in a flood every delivery is refused.
    pub full_log: LogEvery,
    /// New jobs enqueued here: wakes the reader at once, and the next announcement.
    pub wake: Notify,
    /// Wakes the task that announces new jobs to the other instances.
    pub announce: Notify,
    pub stop: AtomicBool,
    pub stopped: Notify,
}

impl Shared {
    /// Whether a shutdown began.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Drops the results of finished job tasks.
    pub(crate) fn reap(&self) {
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
    }

    /// The backlog as last counted, plus what this instance enqueued since, minus what it
    /// deleted.
    pub(crate) fn estimated_backlog(&self) -> u64 {
        (self.depth.load(Ordering::Relaxed) + self.enqueued_since.load(Ordering::Relaxed))
            .saturating_sub(self.deleted_since.load(Ordering::Relaxed))
    }

    /// Whether the queue's statement must count its backlog: once the estimate reaches three
    /// quarters of the capacity (below that, deliveries are enqueued in batches).
    fn backlog_check(&self) -> BacklogCheck {
        if self.estimated_backlog().saturating_mul(4) >= self.capacity as u64 * 3 {
            BacklogCheck::AtMost(u32::try_from(self.capacity).unwrap_or(u32::MAX))
        } else {
            BacklogCheck::Unchecked
        }
    }
}

pub(crate) use crate::handoff::durable::lock;

/// The reader and workers of one receiver on its queue.
pub(crate) struct PostgresWorkers {
    shared: Arc<Shared>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl PostgresWorkers {
    /// Starts the reader of `queue`, with `workers` handler calls at once and a backlog of at
    /// most `capacity` jobs.
    pub fn start(
        queue: PostgresQueue,
        ctx: WorkerContext,
        workers: usize,
        capacity: usize,
    ) -> Self {
        let lease = ctx.lease;
        let lock_for = queue
            .inner
            .min_idle
            .unwrap_or_else(|| lease + (lease / 10).max(Duration::from_secs(1)));
        let workers = workers.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let shared = Arc::new(Shared {
            queue,
            ctx: Arc::new(ctx),
            permits: Arc::new(Semaphore::new(workers)),
            workers: workers as u32,
            capacity: capacity.max(1),
            lock: lock_for,
            tasks: Mutex::new(JoinSet::new()),
            running: Mutex::default(),
            depth: AtomicU64::new(0),
            enqueued_since: AtomicU64::new(0),
            deleted_since: AtomicU64::new(0),
            full_log: LogEvery::default(),
            wake: Notify::new(),
            announce: Notify::new(),
            stop: AtomicBool::new(false),
            stopped: Notify::new(),
        });
        let reader = tokio::spawn(Reader::new(shared.clone()).run());
        Self {
            shared,
            reader: Mutex::new(Some(reader)),
        }
    }

    /// Claims `event`'s run and enqueues its job in one statement (see the module docs); the
    /// delivery may be answered 200 once this returned [`ClaimEnqueued::Enqueued`].
    ///
    /// When a worker is free, the job is written held by this instance and run here at once
    /// (as if fetched: its claim is fresh, and if this instance dies its lock lapses and
    /// another takes it over); otherwise it waits in the queue for any instance's fetch.
    pub async fn claim_and_enqueue(
        &self,
        event: &RunEvent,
        lease: Duration,
        headers: &[(String, String)],
        received_at: SystemTime,
    ) -> Result<ClaimEnqueued, StoreError> {
        let sh = &self.shared;
        if sh.stopping() {
            return Err(StoreError::Unavailable {
                reason: "the Postgres hand-off is shutting down".into(),
            });
        }
        let headers_json = serde_json::to_string(headers).unwrap_or_else(|_| "[]".into());
        let q = &*sh.queue.inner;
        // A worker free now, and no suspect or fetch waiting for it (the semaphore serves
        // those first), runs the job here.
        let here = sh.permits.clone().try_acquire_owned().ok();
        let pickup = match here {
            Some(_) => Pickup::HeldBy {
                consumer: &q.consumer,
                lock: sh.lock,
            },
            None => Pickup::Queued,
        };
        let job = new_job(&q.name, event, received_at, &headers_json, pickup);
        let fingerprint = Fingerprint::of(&event.raw_body);
        // The claim's lease runs from before the statement.
        let claimed_at = tokio::time::Instant::now();
        let enqueued = q
            .store
            .claim_and_enqueue(
                &event.dedup_key,
                lease,
                fingerprint,
                &job,
                sh.backlog_check(),
            )
            .await;
        match &enqueued {
            Ok(ClaimEnqueued::Enqueued { token, job }) => {
                sh.enqueued_since.fetch_add(1, Ordering::Relaxed);
                match here {
                    Some(permit) => {
                        let run = ReadBack {
                            event: event.clone(),
                            claim: Carried::Renewed {
                                token: *token,
                                at: claimed_at,
                            },
                            received_at,
                            headers: headers.to_vec(),
                        };
                        self.run_here(*job, run, permit).await;
                    }
                    None => {
                        sh.announce.notify_one();
                        sh.wake.notify_one();
                    }
                }
            }
            Ok(ClaimEnqueued::Full) => {
                if let Some(refused) = sh.full_log.tick() {
                    tracing::warn!(queue = %q.name, capacity = sh.capacity, refused, "the queue's backlog is full; refusing deliveries (503; one line per 10 s at most)");
                }
            }
            Ok(ClaimEnqueued::Taken(_)) => {}
            Err(err) => {
                tracing::error!(queue = %q.name, key = %event.dedup_key, error = %err, "could not claim and enqueue a delivery");
            }
        }
        enqueued
    }

    /// Runs job `id`, just enqueued held by this instance, on a task of its own with the
    /// worker's `permit`; in a shutdown that began meanwhile, ends its lock instead, so that
    /// another instance takes it over at its next scan.
    async fn run_here(&self, id: i64, run: ReadBack, permit: OwnedSemaphorePermit) {
        let sh = &self.shared;
        if sh.stopping() {
            drop(permit);
            sh.queue.lapse(&[id]).await;
            return;
        }
        let job = Fetched {
            id,
            deliveries: 1,
            run: Ok(run),
        };
        spawn_job(sh, job, Arrival::Fresh, permit);
    }

    /// Whether the queue's Postgres answers now (logged when not).
    pub async fn reachable(&self) -> bool {
        match self.shared.queue.ping().await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(queue = %self.shared.queue.name(), error = %err, "readiness: the queue's Postgres does not answer");
                false
            }
        }
    }

    /// The workers' shared context.
    pub fn context(&self) -> &WorkerContext {
        &self.shared.ctx
    }

    /// The queue's backlog as last counted (every couple of seconds).
    pub fn depth(&self) -> u64 {
        self.shared.depth.load(Ordering::Relaxed)
    }

    /// Stops the reader, lets running handlers finish until `end`, then stops them,
    /// releases their claims and ends their jobs' locks (and those of jobs fetched ahead), so
    /// that another instance takes them over at its next scan ([`durable::stop`]).
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
        let unfinished: Vec<i64> = lock(&sh.running).drain().collect();
        sh.queue.lapse(&unfinished).await;
        report
    }
}
