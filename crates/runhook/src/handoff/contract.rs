//! The hand-off's contract: what a hand-off answers when it cannot take a job, and what a
//! shutdown reports. Both hand-offs (the in-process queue and the Redis stream) speak it, and
//! the response policy turns it into answers.

use std::time::SystemTime;

use runhook_core::payload::Provider;

use super::Job;

/// A job the hand-off gave back (boxed: refusals are rare, and the `Ok` path stays small), so
/// that its claim can be released.
pub(crate) type GivenBack = Box<(Refused, Job)>;

/// Why a job could not be handed off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// What [`Receiver::shutdown`](crate::Receiver::shutdown) could not finish before its
/// deadline, by de-duplication key. Every key's claim was released, so that a retry, a
/// redrive or a takeover can win at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// In-process queue: acknowledged but not processed, and now in the dead letters with
    /// their bodies (reason `not_drained`).
    pub dead_lettered: Vec<String>,
    /// Redis stream: not processed here, and still pending in the stream, where another
    /// instance takes them over.
    pub left_pending: Vec<String>,
    /// In-process queue: not processed, and the dead-letter sink refused them too. These are
    /// lost unless their senders retry; they are logged at error level.
    pub lost: Vec<String>,
}

impl ShutdownReport {
    /// Whether everything acknowledged was processed before the deadline.
    pub fn drained(&self) -> bool {
        self.dead_lettered.is_empty() && self.left_pending.is_empty() && self.lost.is_empty()
    }

    /// Every key not processed here, whatever became of it.
    pub fn not_drained(&self) -> Vec<String> {
        let mut keys = self.dead_lettered.clone();
        keys.extend(self.left_pending.iter().cloned());
        keys.extend(self.lost.iter().cloned());
        keys
    }
}
