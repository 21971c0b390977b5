//! The claimed run's home: where the receive path and the reconciler hand a claimed run (the
//! in-process queue, with feature `redis` a Redis stream, with feature `postgres` a jobs
//! table, both shared by every instance), what a
//! hand-off answers ([`contract`]), and the job itself ([`Job`]).
//! One small enum, so that the receiver's code does not care which hand-off it has.

#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod arrival;
pub(crate) mod contract;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod durable;
pub(crate) mod job;
pub(crate) mod memory;
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) mod with_job;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use runhook_store::IdempotencyStore;
use tokio::time::Instant;

#[cfg(feature = "postgres")]
use crate::postgres_queue::PostgresWorkers;
#[cfg(feature = "redis")]
use crate::stream::StreamWorkers;
pub use contract::ShutdownReport;
pub(crate) use contract::{Duplicate, GivenBack, Refused};
pub(crate) use job::Job;
pub(crate) use memory::MemoryQueue;
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) use with_job::{WithJob, Written};

/// The hand-off of one receiver, with its workers.
pub(crate) enum HandOff {
    /// A bounded tokio channel and a pool of tasks of this process.
    Memory(MemoryQueue),
    /// A Redis stream read by a consumer group (feature `redis`).
    #[cfg(feature = "redis")]
    Stream(StreamWorkers),
    /// A PostgreSQL jobs table read with `SKIP LOCKED` (feature `postgres`): the claim and the
    /// job are written in one statement by the receive path
    /// ([`HandOff::claims_with_its_job`]).
    #[cfg(feature = "postgres")]
    Postgres(PostgresWorkers),
}

impl HandOff {
    /// Hands `job` off; the delivery may be acknowledged once this returned `Ok`. A refusal
    /// gives the job back so that its claim can be released.
    async fn send(&self, job: Job) -> Result<(), GivenBack> {
        match self {
            HandOff::Memory(queue) => queue.try_send(job),
            #[cfg(feature = "redis")]
            HandOff::Stream(stream) => stream.send(job).await,
            // Never sent a claimed job: its route claims and enqueues in one statement.
            #[cfg(feature = "postgres")]
            HandOff::Postgres(_) => {
                tracing::error!(key = %job.key(), "a claimed job was handed to the Postgres queue, which claims its own");
                Err(Box::new((Refused::Unavailable, job)))
            }
        }
    }

    /// The hand-off, when it claims each run and writes its job in one step (the Postgres
    /// queue; the Redis stream given a claim store), in place of the store's claim followed
    /// by [`HandOff::send_or_release`].
    #[cfg(any(feature = "postgres", feature = "redis"))]
    pub fn claims_with_its_job(&self) -> Option<WithJob<'_>> {
        match self {
            #[cfg(feature = "postgres")]
            HandOff::Postgres(queue) => Some(WithJob::Postgres(queue)),
            #[cfg(feature = "redis")]
            HandOff::Stream(stream) if stream.claims_with_entry() => Some(WithJob::Stream(stream)),
            _ => None,
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
            // The run in flight committed its job with its claim: nothing to add.
            #[cfg(feature = "postgres")]
            HandOff::Postgres(_) => {
                let _ = duplicate;
                Ok(())
            }
        }
    }

    /// Whether the hand-off survives this process (a Redis stream): a duplicate of a run in
    /// flight is then worth appending before it is answered 200.
    pub fn is_durable(&self) -> bool {
        match self {
            HandOff::Memory(_) => false,
            #[cfg(feature = "redis")]
            HandOff::Stream(_) => true,
            #[cfg(feature = "postgres")]
            HandOff::Postgres(_) => true,
        }
    }

    /// Deliveries waiting or being processed (the stream's: best effort, refreshed by the
    /// reader every few seconds).
    pub fn depth(&self) -> u64 {
        match self {
            HandOff::Memory(queue) => queue.depth() as u64,
            #[cfg(feature = "redis")]
            HandOff::Stream(stream) => stream.depth(),
            #[cfg(feature = "postgres")]
            HandOff::Postgres(queue) => queue.depth(),
        }
    }

    /// The workers' shared context (their busy jobs, the parked dead letters).
    pub fn context(&self) -> &crate::worker::WorkerContext {
        match self {
            HandOff::Memory(queue) => queue.context(),
            #[cfg(feature = "redis")]
            HandOff::Stream(stream) => stream.context(),
            #[cfg(feature = "postgres")]
            HandOff::Postgres(queue) => queue.context(),
        }
    }

    /// Whether the hand-off's backend answers now (the in-process queue always does).
    pub async fn reachable(&self) -> bool {
        match self {
            HandOff::Memory(_) => true,
            #[cfg(feature = "redis")]
            HandOff::Stream(stream) => stream.reachable().await,
            #[cfg(feature = "postgres")]
            HandOff::Postgres(queue) => queue.reachable().await,
        }
    }

    /// Stops taking jobs, lets the workers finish until `deadline`, and reports what was not
    /// processed (dead-lettered, or left pending in the stream).
    /// The drain also ends when `end` says so.
    pub async fn shutdown(&self, end: DrainEnd<'_>) -> ShutdownReport {
        match self {
            HandOff::Memory(queue) => queue.shutdown(end).await,
            #[cfg(feature = "redis")]
            HandOff::Stream(stream) => stream.shutdown(end).await,
            #[cfg(feature = "postgres")]
            HandOff::Postgres(queue) => queue.shutdown(end).await,
        }
    }
}

/// When a shutdown's drain ends: at a deadline, or sooner when the caller cuts it short.
pub(crate) struct DrainEnd<'a> {
    ends: Instant,
    cut: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
}

impl<'a> DrainEnd<'a> {
    /// `deadline` from now, or when `cut` completes, whichever comes first.
    pub(crate) fn new(deadline: Duration, cut: impl Future<Output = ()> + Send + 'a) -> Self {
        Self {
            ends: Instant::now() + deadline,
            cut: Box::pin(cut),
        }
    }

    /// Runs `work` until it completes (`true`) or the drain ends (`false`).
    pub(crate) async fn run<F: Future>(&mut self, work: F) -> bool {
        let cut = tokio::select! {
            biased;
            _ = work => return true,
            () = tokio::time::sleep_until(self.ends) => false,
            () = &mut self.cut => true,
        };
        if cut {
            // Cut: the drain has ended for every later step too (and `cut` is done).
            self.ends = Instant::now();
            self.cut = Box::pin(std::future::pending());
        }
        false
    }
}
