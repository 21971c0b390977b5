//! The in-process hand-off's promises: a dead-letter sink that fails never costs a delivery.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use runhook::dead_letter::{DeadLetter, DeadLetterSink, MemoryDeadLetters};
use runhook::handler::BoxFuture;
use runhook::payload::{Provider, RunEvent};
use runhook::retry::RetryPolicy;
use runhook::store::{Claim, Fingerprint, IdempotencyStore, MemoryStore};
use runhook::{Receiver, Unsigned};

/// A sink that refuses its first `failures` letters, then keeps them in memory.
struct Flaky {
    failures: AtomicU32,
    kept: MemoryDeadLetters,
}

impl DeadLetterSink for Flaky {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        let refuse = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            return Box::pin(async { Err(std::io::Error::other("disk full")) });
        }
        self.kept.put(letter)
    }
}

/// What a delivery of `body` for `key` finds in `store` now (claiming it for 1 s if free).
async fn claim_now(store: &dyn IdempotencyStore, key: &str, body: &[u8]) -> Claim {
    store
        .claim(key, Duration::from_secs(1), Fingerprint::of(body))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_failing_dead_letter_sink_keeps_the_claim_and_retries_until_the_letter_is_kept() {
    let store = Arc::new(MemoryStore::new());
    let sink = Arc::new(Flaky {
        failures: AtomicU32::new(2),
        kept: MemoryDeadLetters::default(),
    });
    let receiver = Receiver::builder(
        Provider::TinyFish,
        Unsigned::accept_without_authentication(),
    )
    .store(store.clone())
    .dead_letters(sink.clone())
    .handler(|_event: Arc<RunEvent>| async { Err::<(), _>(std::io::Error::other("boom")) })
    .retry(RetryPolicy {
        max_attempts: 1,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        attempt_timeout: Duration::from_secs(5),
    })
    .build()
    .unwrap();
    let body =
        Bytes::from_static(br#"{"event":"run.completed","run_id":"flaky_1","status":"COMPLETED"}"#);
    let outcome = receiver
        .receive(&HeaderMap::new(), "/h", body.clone())
        .await;
    assert_eq!(outcome.status, 200, "{outcome:?}");

    let started = Instant::now();
    while receiver.stats().dead_letter_write_failures < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no failed write"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // While the sink refuses, the run stays claimed: no other delivery may start it, and
    // nothing is released or dropped.
    let claim = claim_now(&*store, "tinyfish:flaky_1", &body).await;
    assert!(matches!(claim, Claim::InFlight { .. }), "{claim:?}");
    assert!(sink.kept.letters().is_empty());

    while receiver.stats().dead_lettered < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the letter was never kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let letters = sink.kept.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].body, body);
    assert_eq!(letters[0].run_id.as_deref(), Some("flaky_1"));
    assert_eq!(receiver.stats().dead_letter_write_failures, 2);
    // Kept: the claim is released so that a later delivery can run it again.
    let claim = claim_now(&*store, "tinyfish:flaky_1", &body).await;
    assert!(claim.is_acquired(), "{claim:?}");
    assert!(receiver.shutdown(Duration::from_secs(1)).await.drained());
}

#[tokio::test]
async fn redriving_a_dead_letter_file_runs_the_handler_and_keeps_only_the_failures() {
    use runhook::dead_letter::{redrive_file, JsonLinesDeadLetters};
    let dir = std::env::temp_dir().join(format!(
        "runhook-redrive-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dead.jsonl");
    let sink = JsonLinesDeadLetters::new(&path);
    for run in ["fixed_1", "still_broken_1"] {
        let body = format!(r#"{{"event":"run.completed","run_id":"{run}","status":"COMPLETED"}}"#);
        let letter = DeadLetter {
            provider: Some(Provider::TinyFish),
            dedup_key: Some(format!("tinyfish:{run}")),
            run_id: Some(run.into()),
            reason: runhook::dead_letter::DeadLetterReason::NotDrained,
            attempts: 0,
            received_at: std::time::SystemTime::now(),
            headers: Vec::new(),
            body: Bytes::from(body),
        };
        sink.put(letter).await.unwrap();
    }
    let handled = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = handled.clone();
    let handler = move |event: Arc<RunEvent>| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(event.run_id.clone());
            if event
                .run_id
                .as_deref()
                .is_some_and(|id| id.starts_with("still_broken"))
            {
                return Err(std::io::Error::other("still broken"));
            }
            Ok(())
        }
    };
    let store: Arc<dyn IdempotencyStore> = Arc::new(MemoryStore::new());
    let report = redrive_file(&path, &[], Arc::new(handler), Some(store.clone()))
        .await
        .unwrap();
    assert_eq!(report.redriven, vec!["tinyfish:fixed_1".to_string()]);
    assert_eq!(report.kept.len(), 1);
    let left = JsonLinesDeadLetters::read(&path).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0].dedup_key.as_deref(),
        Some("tinyfish:still_broken_1")
    );
    // The redriven run is recorded done: a second redrive of a copy calls nothing.
    let body =
        Bytes::from_static(br#"{"event":"run.completed","run_id":"fixed_1","status":"COMPLETED"}"#);
    let claim = claim_now(&*store, "tinyfish:fixed_1", &body).await;
    assert!(matches!(claim, Claim::Done { .. }), "{claim:?}");
    assert_eq!(handled.lock().unwrap().len(), 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the rewritten file stays private");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
