//! The pre-authentication byte budget: a bound, shared by every receiver of a process by
//! default, on the bytes held by request bodies that are being read and not yet authenticated.
//!
//! Bodies are read whole before a signature over them can be checked, so without a bound a
//! thousand connections that each send most of a large body and stall hold gigabytes. Each
//! body charges the budget as its bytes arrive, past its first [`UNCHARGED_BYTES`] (a small
//! body is never refused for the budget: what it holds is bounded by the connection cap, like
//! the connection's own buffers), and gives the charge back once authentication has finished,
//! pass or fail, or the body is dropped. A body that would take the budget past its limit is
//! refused at once with 503 and `Retry-After`, and its connection closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// The default budget: 64 MiB for every receiver of the process together.
pub const DEFAULT_PRE_AUTH_BUDGET_BYTES: u64 = 64 * 1024 * 1024;

/// The first bytes of each body, never charged (16 KiB).
pub const UNCHARGED_BYTES: usize = 16 * 1024;

/// A bound on the bytes held by bodies not yet authenticated. Cheap to clone: clones share one
/// count, so one budget given to several receivers bounds them together.
/// [`PreAuthBudget::process`] is the one every receiver uses unless given another.
#[derive(Clone)]
pub struct PreAuthBudget {
    inner: Arc<Inner>,
}

struct Inner {
    limit: u64,
    held: AtomicU64,
}

impl std::fmt::Debug for PreAuthBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreAuthBudget")
            .field("limit", &self.limit())
            .field("held", &self.held())
            .finish()
    }
}

impl PreAuthBudget {
    /// A budget of `bytes`, of its own.
    pub fn new(bytes: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit: bytes,
                held: AtomicU64::new(0),
            }),
        }
    }

    /// The process's budget, shared by every receiver not given another:
    /// [`DEFAULT_PRE_AUTH_BUDGET_BYTES`].
    pub fn process() -> Self {
        static PROCESS: OnceLock<PreAuthBudget> = OnceLock::new();
        PROCESS
            .get_or_init(|| Self::new(DEFAULT_PRE_AUTH_BUDGET_BYTES))
            .clone()
    }

    /// The most bytes it lets bodies hold.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// The bytes bodies hold now.
    pub fn held(&self) -> u64 {
        self.inner.held.load(Ordering::Relaxed)
    }

    /// A charge of nothing yet, for one body.
    pub(crate) fn charge(&self) -> Charge {
        Charge {
            budget: Some(self.clone()),
            bytes: 0,
        }
    }

    /// Takes `bytes` more if the limit allows.
    fn take(&self, bytes: u64) -> bool {
        let limit = self.inner.limit;
        self.inner
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|after| *after <= limit)
            })
            .is_ok()
    }
}

/// What one body holds of a budget; given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Option<PreAuthBudget>,
    bytes: u64,
}

impl Charge {
    /// A charge on no budget (a body already authenticated, or read outside a receiver).
    pub(crate) fn none() -> Self {
        Self {
            budget: None,
            bytes: 0,
        }
    }

    /// Notes that the body grew from `before` to `after` bytes; `false` when the budget cannot
    /// take the bytes past [`UNCHARGED_BYTES`] (nothing more is charged then).
    pub(crate) fn grow(&mut self, before: usize, after: usize) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        let more = after.saturating_sub(UNCHARGED_BYTES) - before.saturating_sub(UNCHARGED_BYTES);
        if more == 0 {
            return true;
        }
        let more = more as u64;
        if !budget.take(more) {
            return false;
        }
        self.bytes += more;
        true
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.inner.held.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_past_the_uncharged_bytes_up_to_the_limit_and_gives_back_on_drop() {
        let budget = PreAuthBudget::new(100_000);
        let mut first = budget.charge();
        assert!(first.grow(0, UNCHARGED_BYTES));
        assert_eq!(budget.held(), 0);
        assert!(first.grow(UNCHARGED_BYTES, UNCHARGED_BYTES + 60_000));
        assert_eq!(budget.held(), 60_000);
        let mut second = budget.clone().charge();
        assert!(!second.grow(0, UNCHARGED_BYTES + 50_000), "past the limit");
        assert_eq!(budget.held(), 60_000);
        assert!(second.grow(0, UNCHARGED_BYTES + 40_000));
        assert_eq!(budget.held(), 100_000);
        drop(first);
        assert_eq!(budget.held(), 40_000);
        drop(second);
        assert_eq!(budget.held(), 0);
        let mut free = Charge::none();
        assert!(free.grow(0, usize::MAX));
    }

    #[test]
    fn the_process_budget_is_one() {
        let (a, b) = (PreAuthBudget::process(), PreAuthBudget::process());
        assert!(Arc::ptr_eq(&a.inner, &b.inner));
        assert_eq!(a.limit(), DEFAULT_PRE_AUTH_BUDGET_BYTES);
    }
}
