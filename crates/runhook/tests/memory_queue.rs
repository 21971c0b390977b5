//! Redrive from a dead-letter file. (What the in-process queue promises, a failing dead-letter
//! sink included, is tested with every hand-off in `tests/handoff_contract/`.)

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use runhook::dead_letter::{DeadLetter, DeadLetterSink};
use runhook::payload::{EventSource, Provider, RunEvent};
use runhook::store::{Claim, Fingerprint, IdempotencyStore, MemoryStore};

/// What a delivery of `body` for `key` finds in `store` now (claiming it for 1 s if free).
async fn claim_now(store: &dyn IdempotencyStore, key: &str, body: &[u8]) -> Claim {
    store
        .claim(key, Duration::from_secs(1), Fingerprint::of(body))
        .await
        .unwrap()
}

/// A fresh directory for one test, with the path of its dead-letter file.
fn letters_file(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "runhook-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dead.jsonl");
    (dir, path)
}

/// A TinyFish run's letter, set aside as not drained.
fn letter(run: &str, source: EventSource) -> DeadLetter {
    let body = format!(r#"{{"event":"run.completed","run_id":"{run}","status":"COMPLETED"}}"#);
    DeadLetter {
        provider: Some(Provider::TinyFish),
        dedup_key: Some(format!("tinyfish:{run}")),
        run_id: Some(run.into()),
        reason: runhook::dead_letter::DeadLetterReason::NotDrained,
        attempts: 0,
        received_at: std::time::SystemTime::now(),
        headers: Vec::new(),
        body: Bytes::from(body),
        source,
        truncated: None,
    }
}

#[tokio::test]
async fn redriving_a_dead_letter_file_runs_the_handler_and_keeps_only_the_failures() {
    use runhook::dead_letter::{redrive_file, JsonLinesDeadLetters};
    let (dir, path) = letters_file("redrive");
    let sink = JsonLinesDeadLetters::new(&path);
    for run in ["fixed_1", "still_broken_1"] {
        let letter = letter(run, EventSource::Webhook);
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

#[tokio::test]
async fn a_reconciled_letter_redriven_from_a_file_reaches_the_handler_reconciled() {
    use runhook::dead_letter::{redrive_file, JsonLinesDeadLetters};
    let (dir, path) = letters_file("redrive-source");
    let letter = letter("reconciled_1", EventSource::Reconciled);
    JsonLinesDeadLetters::new(&path).put(letter).await.unwrap();
    assert_eq!(
        JsonLinesDeadLetters::read(&path).unwrap()[0].source(),
        EventSource::Reconciled
    );
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = {
        let seen = seen.clone();
        move |event: Arc<RunEvent>| {
            let confirmed = event.confirmation.is_confirmed();
            seen.lock().unwrap().push((event.source, confirmed));
            async { Ok::<(), std::io::Error>(()) }
        }
    };
    let report = redrive_file(&path, &[], Arc::new(handler), None)
        .await
        .unwrap();
    assert_eq!(report.redriven, vec!["tinyfish:reconciled_1".to_string()]);
    assert_eq!(*seen.lock().unwrap(), vec![(EventSource::Reconciled, true)]);
    std::fs::remove_dir_all(&dir).unwrap();
}
