//! What a receiver counts: one set of atomic counters per receiver, bumped where each thing
//! happens, and the snapshot ([`Stats`]) that metrics and tests read.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of what the receiver did, for metrics and tests.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub received: AtomicU64,
    pub accepted: AtomicU64,
    pub interim_skipped: AtomicU64,
    pub rejected: AtomicU64,
    pub rejected_unauthorized: AtomicU64,
    pub rejected_too_large: AtomicU64,
    pub rejected_unparseable: AtomicU64,
    pub rejected_unavailable: AtomicU64,
    pub duplicates: AtomicU64,
    pub duplicates_with_other_body: AtomicU64,
    pub processed: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub dead_letter_write_failures: AtomicU64,
    pub lost_leases: AtomicU64,
    pub poison: AtomicU64,
    pub canonical_fallback_matches: AtomicU64,
    pub confirmed: AtomicU64,
    pub confirm_failures: AtomicU64,
    pub reconciled: AtomicU64,
    pub reconcile_given_up: AtomicU64,
    pub expected_waiting: AtomicU64,
    pub swept: AtomicU64,
    /// A gauge: dead letters refused by the sink and parked, tried again in the background.
    pub parked: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot, with the hand-off's current depth.
    pub(crate) fn snapshot(&self, queue_depth: u64) -> Stats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            received: get(&self.received),
            accepted: get(&self.accepted),
            interim_skipped: get(&self.interim_skipped),
            rejected: get(&self.rejected),
            rejected_unauthorized: get(&self.rejected_unauthorized),
            rejected_too_large: get(&self.rejected_too_large),
            rejected_unparseable: get(&self.rejected_unparseable),
            rejected_unavailable: get(&self.rejected_unavailable),
            duplicates: get(&self.duplicates),
            duplicates_with_other_body: get(&self.duplicates_with_other_body),
            processed: get(&self.processed),
            failed_attempts: get(&self.failed_attempts),
            dead_lettered: get(&self.dead_lettered),
            dead_letter_write_failures: get(&self.dead_letter_write_failures),
            lost_leases: get(&self.lost_leases),
            poison: get(&self.poison),
            canonical_fallback_matches: get(&self.canonical_fallback_matches),
            confirmed: get(&self.confirmed),
            confirm_failures: get(&self.confirm_failures),
            reconciled: get(&self.reconciled),
            reconcile_given_up: get(&self.reconcile_given_up),
            expected_waiting: get(&self.expected_waiting),
            swept: get(&self.swept),
            dead_letters_parked: get(&self.parked),
            queue_depth,
        }
    }
}

/// A counters snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Deliveries received.
    pub received: u64,
    /// Deliveries acknowledged and handed off.
    pub accepted: u64,
    /// Genuine interim events (attempts the platform will retry) answered 200 without a
    /// handler call, on a route that skips them ([`Interim::Skip`](crate::receiver::Interim)).
    pub interim_skipped: u64,
    /// Deliveries rejected, for any reason (the sum of the `rejected_*` counts and
    /// misconfiguration).
    pub rejected: u64,
    /// Rejected as not genuine (401).
    pub rejected_unauthorized: u64,
    /// Rejected for a body over the limit (413).
    pub rejected_too_large: u64,
    /// Genuine but unusable (not the provider's payload, or a run id that cannot be a key):
    /// dead-lettered and answered 202.
    pub rejected_unparseable: u64,
    /// Refused for now (503): store, resolver or queue unavailable, queue full, or shutting
    /// down.
    pub rejected_unavailable: u64,
    /// Genuine duplicates.
    pub duplicates: u64,
    /// Duplicates whose body differs from the first.
    pub duplicates_with_other_body: u64,
    /// Handler runs that succeeded, with the run recorded as done.
    pub processed: u64,
    /// Handler attempts that failed.
    pub failed_attempts: u64,
    /// Deliveries dead-lettered.
    pub dead_lettered: u64,
    /// Dead-letter writes the sink refused (full, at its byte budget, or failing): the
    /// delivery was kept (parked, or its stream entry left pending) and the write tried again.
    pub dead_letter_write_failures: u64,
    /// Attempts stopped because their claim was lost (a renewal or the completion found
    /// another holder, or renewals failed for a whole lease): never counted as processed.
    pub lost_leases: u64,
    /// Stream entries set aside as poison (handed to workers too many times).
    pub poison: u64,
    /// Deliveries whose signature matched only the body's canonical form (a proxy or framework
    /// re-serialized them; see `SkyvernSignature::with_canonical_fallback`).
    pub canonical_fallback_matches: u64,
    /// Runs whose data the platform's run API confirmed before the handler ran.
    pub confirmed: u64,
    /// Confirmation fetches that did not confirm the run: a run API error, a run it does not
    /// know, or one not finished yet.
    pub confirm_failures: u64,
    /// Expected runs whose webhook never came, fetched and handed to the handler.
    pub reconciled: u64,
    /// Expected runs given up on (never finished within the horizon; dead-lettered).
    pub reconcile_given_up: u64,
    /// Expected runs still waiting for their webhook or their reconciliation, as last read
    /// from the store by this receiver's reconciler.
    pub expected_waiting: u64,
    /// Finished runs a sweep of the platform's recent runs found without a processed webhook,
    /// and handed to the handler ([`ReceiverBuilder::sweep`](crate::ReceiverBuilder::sweep)).
    pub swept: u64,
    /// Dead letters the sink refused, parked with their claims held and tried again in the
    /// background (the sink is full or failing: an alarm).
    pub dead_letters_parked: u64,
    /// Deliveries waiting in the queue now. For a Redis stream: the stream's backlog
    /// (entries not yet processed, by every instance), read every 2 s, best effort.
    pub queue_depth: u64,
}
