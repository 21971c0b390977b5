//! The hand-offs that claim a run and write its job in one step, in place of the store's claim
//! followed by [`HandOff::send_or_release`](super::HandOff::send_or_release): the Postgres
//! queue (one statement) and the Redis stream given a claim store (one script). A run in
//! flight on them always has its job, so a duplicate of it needs nothing written.

use std::time::{Duration, SystemTime};

use runhook_core::payload::RunEvent;
use runhook_store::{Claim, StoreError};

#[cfg(feature = "postgres")]
use crate::postgres_queue::PostgresWorkers;
#[cfg(feature = "redis")]
use crate::stream::StreamWorkers;

/// A hand-off that claims each run with its job.
pub(crate) enum WithJob<'a> {
    #[cfg(feature = "postgres")]
    Postgres(&'a PostgresWorkers),
    #[cfg(feature = "redis")]
    Stream(&'a StreamWorkers),
}

/// What became of one delivery.
pub(crate) enum Written {
    /// The run was claimed and its job written, together: answer 200.
    Enqueued,
    /// Nothing was written: the run is done, or another delivery holds it.
    Taken(Claim),
    /// Nothing was written: the hand-off holds its capacity.
    Full,
}

impl WithJob<'_> {
    /// Claims `event`'s run for `lease` and writes its job (with its kept `headers`) in one
    /// step.
    pub(crate) async fn claim_and_enqueue(
        &self,
        event: &RunEvent,
        lease: Duration,
        headers: &[(String, String)],
        received_at: SystemTime,
    ) -> Result<Written, StoreError> {
        match self {
            #[cfg(feature = "postgres")]
            WithJob::Postgres(queue) => {
                use runhook_store::ClaimEnqueued;
                let enqueued = queue
                    .claim_and_enqueue(event, lease, headers, received_at)
                    .await?;
                Ok(match enqueued {
                    ClaimEnqueued::Enqueued { .. } => Written::Enqueued,
                    ClaimEnqueued::Taken(claim) => Written::Taken(claim),
                    ClaimEnqueued::Full => Written::Full,
                })
            }
            #[cfg(feature = "redis")]
            WithJob::Stream(stream) => {
                stream
                    .claim_and_append(event, lease, headers, received_at)
                    .await
            }
        }
    }
}
