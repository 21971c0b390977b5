//! Runs this process has processed but whose completion the store has not recorded yet: the
//! store did not answer when the handler finished (Redis paused, a network partition). Their
//! workers keep trying to record them; meanwhile, a worker of this process that gets such a run
//! again (a takeover of its stream entry once the lease lapsed, a duplicate's entry) records it
//! instead of running the handler a second time.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

/// The dedup keys of runs processed here and not yet recorded as done. At most one per worker:
/// each worker records its own before it takes another job.
#[derive(Default)]
pub(crate) struct Unrecorded(Mutex<HashSet<String>>);

impl Unrecorded {
    fn keys(&self) -> MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that `key`'s run was processed and its completion is not recorded yet.
    pub(crate) fn insert(&self, key: &str) {
        self.keys().insert(key.to_owned());
    }

    /// Notes that `key`'s completion is recorded (or settled by someone else).
    pub(crate) fn remove(&self, key: &str) {
        self.keys().remove(key);
    }

    /// Whether `key`'s run was processed here and its completion is not recorded yet.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.keys().contains(key)
    }
}
