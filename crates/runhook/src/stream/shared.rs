//! What the reader, the entry tasks and the receiver's handle of one stream share.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::defaults::ERROR_PAUSE;
use super::queue::RedisStreamQueue;
use crate::log_every::LogEvery;
use crate::worker::WorkerContext;

/// The state of one receiver's reader and workers on its stream.
pub(crate) struct Shared {
    pub queue: RedisStreamQueue,
    pub ctx: Arc<WorkerContext>,
    /// One per worker: an entry is read only when a worker is free.
    pub permits: Arc<Semaphore>,
    pub workers: u32,
    /// The most entries the stream may hold (its backlog).
    pub capacity: usize,
    pub tasks: Mutex<JoinSet<()>>,
    /// Entry ids being processed by this process (a takeover of one of them is skipped).
    pub running: Mutex<HashSet<String>>,
    pub min_idle: Duration,
    pub depth: AtomicU64,
    /// Rate limit of the "backlog full" line: in a flood every delivery is refused.
    pub full_log: LogEvery,
    pub stop: AtomicBool,
    pub stopped: Notify,
}

impl Shared {
    /// Whether a shutdown began.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Waits a moment after a failure, or until the stop signal.
    pub(crate) async fn pause(&self) {
        tokio::select! {
            _ = tokio::time::sleep(ERROR_PAUSE) => {}
            _ = self.stopped.notified() => self.stopped.notify_one(),
        }
    }

    /// Drops the results of finished entry tasks.
    pub(crate) fn reap(&self) {
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
    }
}

pub(crate) use crate::handoff::durable::lock;
