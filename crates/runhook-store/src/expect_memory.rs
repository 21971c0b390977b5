//! The memory store's expectations: a due-ordered set and the records, per scope, bounded.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::expect::{unix_ms, Expectation, Expectations, Expected};
use crate::StoreError;

/// Expectations kept in this process (part of a [`MemoryStore`](crate::MemoryStore)).
#[derive(Debug)]
pub(crate) struct MemoryExpectations {
    scopes: Mutex<HashMap<String, Scope>>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Scope {
    /// `(due ms, dedup key)`, earliest first.
    by_due: BTreeSet<(u64, String)>,
    /// Each expectation and its current due time.
    records: HashMap<String, (Expectation, u64)>,
}

impl Scope {
    fn set_due(&mut self, key: &str, due: u64) {
        if let Some((_, old)) = self.records.get_mut(key) {
            self.by_due.remove(&(*old, key.to_string()));
            *old = due;
            self.by_due.insert((due, key.to_string()));
        }
    }
}

impl MemoryExpectations {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            scopes: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn scopes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Scope>> {
        self.scopes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl Expectations for MemoryExpectations {
    async fn expect(&self, scope: &str, expectation: &Expectation) -> Result<Expected, StoreError> {
        let mut scopes = self.scopes();
        let scope = scopes.entry(scope.to_string()).or_default();
        if scope.records.contains_key(&expectation.dedup_key) {
            return Ok(Expected::AlreadyExpected);
        }
        if scope.records.len() >= self.capacity {
            return Err(StoreError::Full {
                capacity: self.capacity,
                retry_after: Duration::from_secs(60),
            });
        }
        let due = unix_ms(expectation.first_due());
        let key = expectation.dedup_key.clone();
        scope.by_due.insert((due, key.clone()));
        scope.records.insert(key, (expectation.clone(), due));
        Ok(Expected::Recorded)
    }

    async fn take_due(
        &self,
        scope: &str,
        now: SystemTime,
        hold: Duration,
        limit: usize,
    ) -> Result<Vec<Expectation>, StoreError> {
        let mut scopes = self.scopes();
        let Some(scope) = scopes.get_mut(scope) else {
            return Ok(Vec::new());
        };
        let now_ms = unix_ms(now);
        let due: Vec<String> = scope
            .by_due
            .iter()
            .take_while(|(due, _)| *due <= now_ms)
            .take(limit)
            .map(|(_, key)| key.clone())
            .collect();
        let hidden_until = now_ms.saturating_add(hold.as_millis() as u64);
        let mut taken = Vec::with_capacity(due.len());
        for key in due {
            scope.set_due(&key, hidden_until);
            if let Some((expectation, _)) = scope.records.get(&key) {
                taken.push(expectation.clone());
            }
        }
        Ok(taken)
    }

    async fn reschedule(
        &self,
        scope: &str,
        expectation: &Expectation,
        next_check: SystemTime,
    ) -> Result<(), StoreError> {
        let mut scopes = self.scopes();
        let Some(scope) = scopes.get_mut(scope) else {
            return Ok(());
        };
        let key = &expectation.dedup_key;
        if let Some((stored, _)) = scope.records.get_mut(key) {
            *stored = expectation.clone();
            scope.set_due(key, unix_ms(next_check));
        }
        Ok(())
    }

    async fn forget(&self, scope: &str, dedup_key: &str) -> Result<(), StoreError> {
        let mut scopes = self.scopes();
        if let Some(scope) = scopes.get_mut(scope) {
            if let Some((_, due)) = scope.records.remove(dedup_key) {
                scope.by_due.remove(&(due, dedup_key.to_string()));
            }
        }
        Ok(())
    }

    async fn waiting(&self, scope: &str) -> Result<usize, StoreError> {
        Ok(self.scopes().get(scope).map_or(0, |s| s.records.len()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::expect::Window;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn expectation(run: &str, registered: u64, within_ms: u64) -> Expectation {
        let mut e = Expectation::new(
            format!("tinyfish:{run}"),
            run,
            Window::Within(Duration::from_millis(within_ms)),
        );
        e.registered_at = at(registered);
        e
    }

    #[tokio::test]
    async fn due_expectations_are_taken_once_per_hold_then_rescheduled_or_forgotten() {
        let store = MemoryExpectations::new(10);
        let a = expectation("a", 1_000, 500);
        let b = expectation("b", 1_000, 5_000);
        assert_eq!(
            store.expect("tinyfish", &a).await.unwrap(),
            Expected::Recorded
        );
        assert_eq!(
            store.expect("tinyfish", &a).await.unwrap(),
            Expected::AlreadyExpected
        );
        store.expect("tinyfish", &b).await.unwrap();
        let hold = Duration::from_secs(30);
        assert!(store
            .take_due("tinyfish", at(1_499), hold, 10)
            .await
            .unwrap()
            .is_empty());
        let taken = store
            .take_due("tinyfish", at(1_500), hold, 10)
            .await
            .unwrap();
        assert_eq!(taken, std::slice::from_ref(&a));
        // Hidden while held: a second taker gets nothing until the hold ends.
        assert!(store
            .take_due("tinyfish", at(2_000), hold, 10)
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .take_due("other", at(99_000), hold, 10)
            .await
            .unwrap()
            .is_empty());
        let mut checked = a.clone();
        checked.checks = 1;
        store
            .reschedule("tinyfish", &checked, at(3_000))
            .await
            .unwrap();
        let taken = store
            .take_due("tinyfish", at(6_000), hold, 10)
            .await
            .unwrap();
        assert_eq!(taken, [checked, b.clone()]);
        store.forget("tinyfish", &b.dedup_key).await.unwrap();
        // Forgotten: a reschedule does not bring it back.
        store.reschedule("tinyfish", &b, at(0)).await.unwrap();
        assert_eq!(store.waiting("tinyfish").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_full_scope_refuses_new_expectations() {
        let store = MemoryExpectations::new(2);
        store.expect("s", &expectation("a", 0, 1)).await.unwrap();
        store.expect("s", &expectation("b", 0, 1)).await.unwrap();
        assert!(matches!(
            store.expect("s", &expectation("c", 0, 1)).await,
            Err(StoreError::Full { capacity: 2, .. })
        ));
        assert!(store.expect("t", &expectation("c", 0, 1)).await.is_ok());
    }
}
