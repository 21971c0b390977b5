//! The claimed run's home: where the receive path and the reconciler hand a claimed run (the
//! in-process queue, or with feature `redis` a Redis stream shared by every instance), what a
//! hand-off answers ([`contract`]), the job itself ([`Job`]), and the one dead-letter writer.
//! One small enum, so that the receiver's code does not care which hand-off it has.

pub(crate) mod contract;
pub(crate) mod dead_letters;
pub(crate) mod job;
pub(crate) mod memory;

use std::time::Duration;

use runhook_store::IdempotencyStore;

#[cfg(feature = "redis")]
use crate::stream::StreamWorkers;
pub use contract::ShutdownReport;
pub(crate) use contract::{Duplicate, GivenBack, Refused};
pub(crate) use dead_letters::DeadLetters;
pub(crate) use job::Job;
pub(crate) use memory::MemoryQueue;

/// How long a processed run is remembered as done unless the builder's `dedup_window` says
/// otherwise (7 days): the webhook path, the reconciler and file redrive all use it.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// The hand-off of one receiver, with its workers.
pub(crate) enum HandOff {
    /// A bounded tokio channel and a pool of tasks of this process.
    Memory(MemoryQueue),
    /// A Redis stream read by a consumer group (feature `redis`).
    #[cfg(feature = "redis")]
    Stream(StreamWorkers),
}

impl HandOff {
    /// Hands `job` off; the delivery may be acknowledged once this returned `Ok`. A refusal
    /// gives the job back so that its claim can be released.
    async fn send(&self, job: Job) -> Result<(), GivenBack> {
        match self {
            HandOff::Memory(queue) => queue.try_send(job),
            #[cfg(feature = "redis")]
            HandOff::Stream(stream) => stream.send(job).await,
        }
    }

    /// Hands `job` off, or, when the hand-off refuses it, releases its claim in `store` first
    /// (so that the sender's retry can win) and says why.
    pub async fn send_or_release(
        &self,
        store: &dyn IdempotencyStore,
        job: Job,
    ) -> Result<(), Refused> {
        let Err(given_back) = self.send(job).await else {
            return Ok(());
        };
        let (refused, job) = *given_back;
        if let Err(err) = store.release(job.key(), &job.token).await {
            tracing::warn!(key = %job.key(), error = %err, "could not release a claim after a refused hand-off");
        }
        Err(refused)
    }

    /// Makes a duplicate of a run in flight as durable as the run itself, before it is
    /// answered 200. The in-process queue has nothing to add (its run lives and dies with
    /// this process, and so does the store's claim). The stream appends the duplicate without
    /// a token: if the instance holding the run died before its own `XADD`, the claim lapses
    /// and this entry wins it, so the run is not lost.
    pub async fn guard_in_flight_duplicate(&self, duplicate: Duplicate<'_>) -> Result<(), Refused> {
        match self {
            HandOff::Memory(_) => {
                let _ = duplicate;
                Ok(())
            }
            #[cfg(feature = "redis")]
            HandOff::Stream(stream) => stream.send_duplicate(duplicate).await,
        }
    }

    /// Whether the hand-off survives this process (a Redis stream): a duplicate of a run in
    /// flight is then worth appending before it is answered 200.
    pub fn is_durable(&self) -> bool {
        match self {
            HandOff::Memory(_) => false,
            #[cfg(feature = "redis")]
            HandOff::Stream(_) => true,
        }
    }

    /// Deliveries waiting or being processed (the stream's: best effort, refreshed by the
    /// reader every few seconds).
    pub fn depth(&self) -> u64 {
        match self {
            HandOff::Memory(queue) => queue.depth() as u64,
            #[cfg(feature = "redis")]
            HandOff::Stream(stream) => stream.depth(),
        }
    }

    /// Stops taking jobs, lets the workers finish until `deadline`, and reports what was not
    /// processed (dead-lettered, or left pending in the stream).
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        match self {
            HandOff::Memory(queue) => queue.shutdown(deadline).await,
            #[cfg(feature = "redis")]
            HandOff::Stream(stream) => stream.shutdown(deadline).await,
        }
    }
}
