//! The contract against `MemoryStore`, and what only the embedded store promises.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use runhook_store::{Claim, IdempotencyStore, MemoryStore, StoreError};

use crate::suite::{acquire, fp, Store, KEEP, LONG};

async fn memory_store(_test: &str) -> Option<Store> {
    Some(Arc::new(MemoryStore::new()))
}

mod contract {
    contract_tests!(super::memory_store);
}

#[tokio::test]
async fn full_store_refuses_new_claims_rather_than_evicting_one() {
    let store: Store = Arc::new(MemoryStore::builder().shards(1).max_in_flight(4).build());
    let mut tokens = Vec::new();
    for i in 0..4 {
        tokens.push(acquire(&store, &format!("run-{i}"), LONG, "b").await);
    }
    let err = store.claim("run-4", LONG, fp("b")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Full { capacity: 4, .. }),
        "{err:?}"
    );
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(err.retry_after().unwrap() >= Duration::from_secs(1));
    // Every in-flight claim survived, so no second run can start.
    for i in 0..4 {
        assert!(matches!(
            store
                .claim(&format!("run-{i}"), LONG, fp("b"))
                .await
                .unwrap(),
            Claim::InFlight { .. }
        ));
    }
    // Completing one frees its slot (done records live apart from in-flight ones).
    store.complete("run-0", &tokens[0], KEEP).await.unwrap();
    acquire(&store, "run-4", LONG, "b").await;
    assert!(matches!(
        store.claim("run-0", LONG, fp("b")).await.unwrap(),
        Claim::Done { .. }
    ));
}

#[tokio::test]
async fn memory_stays_bounded_under_a_flood_of_unique_keys() {
    let store = Arc::new(
        MemoryStore::builder()
            .shards(4)
            .capacity(1_000)
            .max_in_flight(1_000)
            .build(),
    );
    let dyn_store: Store = store.clone();
    for i in 0..30_000 {
        let key = format!("skyvern:wr_{i}");
        let token = acquire(&dyn_store, &key, LONG, "b").await;
        dyn_store.complete(&key, &token, KEEP).await.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.in_flight, 0);
    assert!(stats.done <= 1_000, "{stats:?}");
    assert!(stats.done >= 900, "{stats:?}");
    // The most recent keys are still remembered.
    assert!(matches!(
        dyn_store
            .claim("skyvern:wr_29999", LONG, fp("b"))
            .await
            .unwrap(),
        Claim::Done { .. }
    ));

    // A flood of claims that never complete: bounded by max_in_flight, then refused.
    let mut full = 0;
    for i in 0..5_000 {
        match dyn_store.claim(&format!("flood-{i}"), LONG, fp("b")).await {
            Ok(c) => assert!(c.is_acquired()),
            Err(StoreError::Full { .. }) => full += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(store.stats().in_flight <= 1_000);
    assert!(full >= 4_000, "{full}");
}

#[tokio::test]
async fn configured_key_bound_is_enforced() {
    let store = MemoryStore::builder().max_key_len(8).build();
    assert!(store.claim("12345678", LONG, fp("b")).await.is_ok());
    assert_eq!(
        store.claim("123456789", LONG, fp("b")).await,
        Err(StoreError::KeyTooLong { len: 9, max: 8 })
    );
}

#[test]
fn mutual_exclusion_across_os_threads() {
    // Plain threads, no runtime: the memory store's futures are ready at once.
    let store = Arc::new(MemoryStore::builder().shards(2).build());
    let holders: Arc<Vec<std::sync::atomic::AtomicUsize>> =
        Arc::new((0..4).map(|_| Default::default()).collect());
    std::thread::scope(|s| {
        for t in 0..4 {
            let (store, holders) = (store.clone(), holders.clone());
            s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    for r in 0..5_000 {
                        let k = (t + r) % 4;
                        let key = format!("k{k}");
                        if let Claim::Acquired(tok) =
                            store.claim(&key, LONG, fp("b")).await.unwrap()
                        {
                            use std::sync::atomic::Ordering::SeqCst;
                            assert_eq!(holders[k].fetch_add(1, SeqCst), 0);
                            holders[k].fetch_sub(1, SeqCst);
                            store.release(&key, &tok).await.unwrap();
                        }
                    }
                });
            });
        }
    });
    assert_eq!(store.stats().in_flight, 0);
}
