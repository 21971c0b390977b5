//! The in-process hand-off: a bounded tokio channel and a pool of worker tasks of this
//! process. Fast, and as safe as the process: a crash loses what is queued (use the Redis
//! stream for a hand-off that survives one).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::contract::{GivenBack, Refused, ShutdownReport};
use super::{DrainEnd, Job};
use crate::dead_letter::DeadLetterReason;
use crate::worker::{dead_letter_job, run_job, Settled, WorkerContext};

/// The queue and its workers. The queue is a multi-consumer channel: an idle worker is woken
/// directly by the job that arrives, with no lock between the workers.
pub(crate) struct MemoryQueue {
    sender: async_channel::Sender<Job>,
    queue: async_channel::Receiver<Job>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    context: Arc<WorkerContext>,
}

impl MemoryQueue {
    pub fn start(context: WorkerContext, capacity: usize, workers: usize) -> Self {
        let (sender, queue) = async_channel::bounded(capacity.max(1));
        let context = Arc::new(context);
        let handles = (0..workers.max(1))
            .map(|_| tokio::spawn(work(queue.clone(), context.clone())))
            .collect();
        Self {
            sender,
            queue,
            workers: Mutex::new(handles),
            context,
        }
    }

    /// Queues `job` without waiting; a full or closed queue gives the job back.
    pub fn try_send(&self, job: Job) -> Result<(), GivenBack> {
        self.sender.try_send(job).map_err(|e| match e {
            async_channel::TrySendError::Full(job) => Box::new((Refused::Full, job)),
            async_channel::TrySendError::Closed(job) => Box::new((Refused::Closed, job)),
        })
    }

    pub fn depth(&self) -> usize {
        self.sender.len()
    }

    /// The workers' shared context.
    pub fn context(&self) -> &WorkerContext {
        &self.context
    }

    /// Stops taking jobs and lets the workers drain the queue until `deadline`. Past it,
    /// stops them, and dead-letters every job not processed (those still queued and those
    /// whose handler was still running), with its body, then releases its claim so that a
    /// retry or a redrive can win. Dead letters are written past the sink's byte budget from
    /// the start of the shutdown (parked ones too); one the sink cannot take at all is
    /// reported lost.
    pub async fn shutdown(&self, mut end: DrainEnd<'_>) -> ShutdownReport {
        // Closed: nothing new is queued, and the workers stop once the queue is empty.
        self.sender.close();
        self.context.parked.close();
        let mut handles: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        let drained = end
            .run(async {
                // A finished worker leaves the list: its handle must not be awaited again below.
                while let Some(handle) = handles.last_mut() {
                    let _ = handle.await;
                    handles.pop();
                }
            })
            .await;
        let mut report = ShutdownReport::default();
        if drained {
            self.report_parked(&mut report).await;
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
        while let Ok(job) = self.queue.try_recv() {
            left.push(job);
        }
        for job in left {
            let letter = job.dead_letter(DeadLetterReason::NotDrained, 0);
            match self.context.dead_letters.put_past_budget(letter).await {
                Ok(()) => report.dead_lettered.push(job.key().to_string()),
                Err(_) => {
                    tracing::error!(key = %job.key(), "shutting down: an undrained delivery is lost unless its sender retries");
                    report.lost.push(job.key().to_string());
                }
            }
            self.context.release(&job).await;
        }
        self.report_parked(&mut report).await;
        report
    }

    /// Stops the parked set; a letter the sink could not take even past its budget is lost.
    async fn report_parked(&self, report: &mut ShutdownReport) {
        for job in self.context.parked.stop().await {
            tracing::error!(key = %job.key(), "shutting down: a dead letter the sink refuses is lost unless its sender retries");
            report.lost.push(job.key().to_string());
            self.context.release(&job).await;
        }
    }
}

async fn work(queue: async_channel::Receiver<Job>, ctx: Arc<WorkerContext>) {
    while let Ok(job) = queue.recv().await {
        run_held(&ctx, job).await;
    }
}

/// Runs one job from the queue. A job that waited long renews (or wins back) its claim
/// first; a claim lost in this process is won back and the job run again, unless another
/// delivery of the run holds it (and processes it) or it is done. After three lost claims, or
/// a store that cannot say, the job is dead-lettered rather than dropped.
async fn run_held(ctx: &WorkerContext, mut job: Job) {
    let mut held = ctx.hold(&mut job).await;
    for _ in 0..3 {
        match held {
            Ok(()) => {
                if !matches!(run_job(ctx, job.clone(), None).await, Settled::LostLease) {
                    return;
                }
            }
            Err(Settled::NotOurs) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        held = ctx.reclaim(&mut job).await;
    }
    if matches!(held, Err(Settled::NotOurs)) {
        return;
    }
    tracing::error!(key = %job.key(), "the run's claim kept being lost; dead-lettering it");
    dead_letter_job(ctx, job, DeadLetterReason::ClaimLost, None).await;
}
