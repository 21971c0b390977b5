//! The in-process hand-off: a bounded tokio channel and a pool of worker tasks of this
//! process. Fast, and as safe as the process: a crash loses what is queued (use the Redis
//! stream for a hand-off that survives one).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dead_letter::DeadLetterReason;
use crate::receiver::ShutdownReport;
use crate::worker::{run_job, Job, Settled, WorkerContext};

/// Why a job could not be handed off.
pub(crate) enum Refused {
    /// The queue (or the stream's backlog) is at its capacity.
    Full,
    /// The hand-off is shutting down.
    Closed,
    /// The hand-off's backend (Redis) failed or timed out; the reason is logged where it
    /// happened.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Unavailable,
}

/// The queue and its workers.
pub(crate) struct MemoryQueue {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    context: Arc<WorkerContext>,
    capacity: usize,
}

impl MemoryQueue {
    pub fn start(context: WorkerContext, capacity: usize, workers: usize) -> Self {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let queue = Arc::new(tokio::sync::Mutex::new(receiver));
        let context = Arc::new(context);
        let handles = (0..workers.max(1))
            .map(|_| tokio::spawn(work(queue.clone(), context.clone())))
            .collect();
        Self {
            sender: Mutex::new(Some(sender)),
            queue,
            workers: Mutex::new(handles),
            context,
            capacity: capacity.max(1),
        }
    }

    /// Queues `job` without waiting; a full or closed queue gives the job back.
    pub fn try_send(&self, job: Job) -> Result<(), (Refused, Job)> {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(sender) = sender else {
            return Err((Refused::Closed, job));
        };
        sender.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(job) => (Refused::Full, job),
            mpsc::error::TrySendError::Closed(job) => (Refused::Closed, job),
        })
    }

    pub fn depth(&self) -> usize {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        sender.as_ref().map_or(0, |s| self.capacity - s.capacity())
    }

    /// Stops taking jobs and lets the workers drain the queue until `deadline`. Past it,
    /// stops them, and dead-letters every job not processed (those still queued and those
    /// whose handler was still running), with its body, then releases its claim so that a
    /// retry or a redrive can win.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        drop(self.sender.lock().unwrap_or_else(|p| p.into_inner()).take());
        let mut handles: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        let drained = tokio::time::timeout(deadline, async {
            for handle in handles.iter_mut() {
                let _ = handle.await;
            }
        })
        .await
        .is_ok();
        let mut report = ShutdownReport::default();
        if drained {
            return report;
        }
        for handle in &handles {
            handle.abort();
        }
        for handle in handles {
            let _ = handle.await;
        }
        // The workers are stopped: nothing changes `busy` or the queue any more.
        let mut left = self.context.stop_busy();
        {
            let mut queue = self.queue.lock().await;
            while let Ok(job) = queue.try_recv() {
                left.push(job);
            }
        }
        for job in left {
            let letter = job.dead_letter(DeadLetterReason::NotDrained, 0);
            match self.context.dead_letters.put(letter).await {
                Ok(()) => {
                    crate::stats::Counters::bump(&self.context.counters.dead_lettered);
                    report.dead_lettered.push(job.key.clone());
                }
                Err(err) => {
                    tracing::error!(key = %job.key, error = %err, "shutting down: could not dead-letter an undrained delivery; it is lost unless its sender retries");
                    report.lost.push(job.key.clone());
                }
            }
            self.context.release(&job).await;
        }
        report
    }
}

async fn work(queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>, ctx: Arc<WorkerContext>) {
    loop {
        let job = { queue.lock().await.recv().await };
        let Some(mut job) = job else { return };
        // A job that waited long may have to renew (or win back) its claim first.
        if ctx.hold(&mut job).await.is_err() {
            continue;
        }
        // A lost claim in this process: win the run back, unless another delivery of it
        // holds it (and will process it) or it is done.
        for _ in 0..3 {
            if run_job(&ctx, job.clone(), None).await != Settled::LostLease
                || ctx.reclaim(&mut job).await.is_err()
            {
                break;
            }
        }
    }
}
