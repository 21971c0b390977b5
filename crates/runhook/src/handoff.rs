//! Where the receive path hands a claimed delivery: the in-process queue, or (feature `redis`)
//! a Redis stream shared by every instance. One small enum, so that the receiver's code does
//! not care which.

use std::time::{Duration, SystemTime};

use runhook_core::payload::Provider;

use crate::memory_queue::{GivenBack, MemoryQueue, Refused};
use crate::receiver::ShutdownReport;
#[cfg(feature = "redis")]
use crate::stream::StreamWorkers;
use crate::worker::Job;

/// The hand-off of one receiver, with its workers.
pub(crate) enum HandOff {
    /// A bounded tokio channel and a pool of tasks of this process.
    Memory(MemoryQueue),
    /// A Redis stream read by a consumer group (feature `redis`).
    #[cfg(feature = "redis")]
    Stream(StreamWorkers),
}

/// A duplicate of a run in flight, to be made as durable as the run before it is answered
/// 200. It carries no claim token: it never holds the run.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Duplicate<'a> {
    pub provider: Provider,
    pub key: &'a str,
    pub run_id: Option<&'a str>,
    pub received_at: SystemTime,
    pub body: &'a [u8],
    pub headers: &'a [(String, String)],
}

impl HandOff {
    /// Hands `job` off; the delivery may be acknowledged once this returned `Ok`. A refusal
    /// gives the job back so that its claim can be released.
    pub async fn send(&self, job: Job) -> Result<(), GivenBack> {
        match self {
            HandOff::Memory(queue) => queue.try_send(job),
            #[cfg(feature = "redis")]
            HandOff::Stream(stream) => stream.send(job).await,
        }
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
