//! How a durable hand-off's entry (a stream entry, a Postgres job) reached a worker, and what
//! becomes of it once the worker is done: the vocabulary the readers, the claim check and the
//! acknowledgements share.

/// How an entry reached this reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// Read as new (`XREADGROUP … >`, a job never handed out): its token was given to no one
    /// else.
    Fresh,
    /// Taken over from a consumer that let it idle (`XAUTOCLAIM`, a job whose lock lapsed),
    /// handed out this many times in all.
    TakenOver { deliveries: u64 },
}

/// What becomes of an entry once a worker is done with it.
pub(crate) enum Next {
    /// Processed, dead-lettered or done elsewhere: acknowledged and deleted.
    Acknowledge,
    /// Processed, and removed from the hand-off by the write that recorded its run done:
    /// nothing left to acknowledge.
    Removed,
    /// Held by someone else, or not settled here (a lost claim, a store or sink that did not
    /// answer): left pending for whoever takes it next.
    LeavePending,
    /// Its dead letter is parked (the sink refused it): acknowledged once the letter is
    /// written, left pending if it never is. The worker is free meanwhile.
    AfterParked(crate::parked::ParkTicket),
}

impl Next {
    /// What becomes of the entry once its parked letter, if any, is settled: acknowledged when
    /// the letter was written, left pending when it never is.
    pub(crate) async fn after_parked(self) -> Next {
        match self {
            Next::AfterParked(ticket) => match ticket.written().await {
                true => Next::Acknowledge,
                false => Next::LeavePending,
            },
            next => next,
        }
    }
}
