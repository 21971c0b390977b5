//! Whether a background receiver can take and process deliveries now: its store and stream
//! answer, its dead-letter sink takes letters, its workers move. What `GET /readyz` answers
//! in `runhook serve`; mount [`Receiver::readiness`](super::Receiver::readiness) the same
//! way in your own server.

use std::time::Duration;

/// Why a receiver is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotReady {
    /// It is shutting down: new deliveries are refused.
    ShuttingDown,
    /// The idempotency store did not answer a ping (the error is logged, not shown).
    StoreUnreachable,
    /// The Redis of the route's stream did not answer a ping.
    StreamUnreachable,
    /// The dead-letter sink refuses letters (full, at its byte budget, or failing): the
    /// deliveries whose letter it refused are parked, their claims held, and tried again.
    SinkRefusing {
        /// Dead letters parked now.
        parked: u64,
    },
    /// Every worker has been busy on the same job for longer than the attempt timeout while
    /// deliveries wait: nothing is moving.
    WorkersStuck {
        /// Busy workers.
        workers: usize,
        /// How long the most recent of them has held its job.
        for_at_least: Duration,
        /// Deliveries waiting.
        waiting: u64,
    },
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::ShuttingDown => f.write_str("shutting down"),
            NotReady::StoreUnreachable => f.write_str("store unreachable"),
            NotReady::StreamUnreachable => f.write_str("stream unreachable"),
            NotReady::SinkRefusing { parked } => {
                write!(f, "dead-letter sink refusing letters ({parked} parked)")
            }
            NotReady::WorkersStuck {
                workers,
                for_at_least,
                waiting,
            } => write!(
                f,
                "workers stuck ({workers} busy for at least {}s, {waiting} waiting)",
                for_at_least.as_secs()
            ),
        }
    }
}

/// A receiver's readiness: ready when no problem was found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Readiness {
    /// Every problem found, in a fixed order (shutdown, store, stream, sink, workers).
    pub problems: Vec<NotReady>,
}

impl Readiness {
    /// Whether no problem was found.
    pub fn is_ready(&self) -> bool {
        self.problems.is_empty()
    }
}
