//! The worker with real handlers that return a [`RetryAfter`] hint: the pause before the next
//! attempt is the longer of the backoff and the hint, the claim stays held meanwhile, and
//! hinted failures still end in the dead letters.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use runhook_core::payload::{Provider, RunEvent};
use runhook_store::{Claim, Fingerprint, IdempotencyStore, MemoryStore};
use tokio::time::Instant;

use super::{run_job, Settled, WorkerContext};
use crate::dead_letter::DeadLetters;
use crate::dead_letter::{DeadLetterReason, MemoryDeadLetters};
use crate::handler::{Handler, HandlerError};
use crate::handoff::Job;
use crate::retry::RetryAfter;
use crate::retry::RetryPolicy;
use crate::stats::Counters;

const LEASE: Duration = Duration::from_millis(150);

/// A handler that fails with `hint` on its first `failures` attempts (every attempt when
/// `None`), then succeeds, noting when each attempt started.
fn hinting(
    hint: Duration,
    failures: Option<usize>,
    seen: Arc<Mutex<Vec<Instant>>>,
) -> impl Handler {
    move |_event: Arc<RunEvent>| {
        let seen = seen.clone();
        async move {
            let attempt = {
                let mut seen = seen.lock().unwrap();
                seen.push(Instant::now());
                seen.len()
            };
            if failures.is_none_or(|n| attempt <= n) {
                // Not finished at the first poll: the worker's timed path.
                tokio::task::yield_now().await;
                return Err::<(), HandlerError>(
                    RetryAfter::new(hint, "upstream answered 429").into(),
                );
            }
            Ok(())
        }
    }
}

struct Setup {
    ctx: WorkerContext,
    store: Arc<MemoryStore>,
    dead_letters: Arc<MemoryDeadLetters>,
    job: Job,
}

async fn setup(handler: impl Handler, retry: RetryPolicy) -> Setup {
    let store = Arc::new(MemoryStore::new());
    let dead_letters = Arc::new(MemoryDeadLetters::default());
    let body = br#"{"run_id":"tsk_hint","status":"completed"}"#.to_vec();
    let event = RunEvent::parse(Provider::Skyvern, body).unwrap();
    let fingerprint = Fingerprint::of(&event.raw_body);
    let Claim::Acquired(token) = store
        .claim(&event.dedup_key, LEASE, fingerprint)
        .await
        .unwrap()
    else {
        panic!("a fresh store refused the claim");
    };
    let job = Job::claimed(event, token, SystemTime::now(), Vec::new());
    let counters = Arc::new(Counters::default());
    let writer = DeadLetters::new(dead_letters.clone(), counters.clone());
    let parked = crate::parked::Parked::start(crate::parked::Settings {
        store: store.clone(),
        dead_letters: writer.clone(),
        lease: LEASE,
        bound: 4,
    });
    let ctx = WorkerContext {
        confirm: None,
        store: store.clone(),
        handler: Arc::new(handler),
        dead_letters: writer,
        retry,
        lease: LEASE,
        keep_for: Duration::from_secs(60),
        counters,
        busy: Default::default(),
        unrecorded: Default::default(),
        workers: 1,
        parked,
    };
    Setup {
        ctx,
        store,
        dead_letters,
        job,
    }
}

fn policy(max_attempts: u32, initial_backoff: Duration) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff,
        max_backoff: initial_backoff,
        attempt_timeout: Duration::from_secs(5),
    }
}

async fn claim_again(store: &MemoryStore, job: &Job) -> Claim {
    store
        .claim(job.key(), LEASE, Fingerprint::of(&job.event.raw_body))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_hint_longer_than_the_backoff_delays_the_next_attempt_with_the_claim_held() {
    let hint = Duration::from_millis(700);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = setup(
        hinting(hint, Some(1), seen.clone()),
        policy(3, Duration::from_millis(10)),
    )
    .await;
    let job = s.job.clone();
    let worker = tokio::spawn(async move {
        let settled = run_job(&s.ctx, s.job, None).await;
        (settled, s.ctx)
    });
    // Four leases into the hint, the run is still held by the waiting worker.
    tokio::time::sleep(LEASE * 4).await;
    assert!(
        matches!(claim_again(&s.store, &job).await, Claim::InFlight { .. }),
        "the claim lapsed while the worker waited out the hint"
    );
    let (settled, ctx) = worker.await.unwrap();
    assert!(matches!(settled, Settled::Processed));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one hinted failure, one success");
    let gap = seen[1] - seen[0];
    assert!(
        gap >= hint,
        "the second attempt came {gap:?} after the first"
    );
    assert!(gap < hint + Duration::from_secs(2), "waited {gap:?}");
    assert!(matches!(
        claim_again(&s.store, &job).await,
        Claim::Done { .. }
    ));
    assert!(s.dead_letters.letters().is_empty());
    drop(ctx);
}

#[tokio::test]
async fn a_hint_shorter_than_the_backoff_leaves_the_backoff() {
    let backoff = Duration::from_millis(600);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = setup(
        hinting(Duration::from_millis(1), Some(1), seen.clone()),
        policy(3, backoff),
    )
    .await;
    assert!(matches!(
        run_job(&s.ctx, s.job, None).await,
        Settled::Processed
    ));
    let seen = seen.lock().unwrap().clone();
    let gap = seen[1] - seen[0];
    // The backoff's jitter picks a point in its upper half.
    assert!(
        gap >= backoff / 2,
        "the second attempt came {gap:?} after the first"
    );
}

#[tokio::test]
async fn hinted_failures_end_in_the_dead_letters_and_release_the_claim() {
    let hint = Duration::from_millis(300);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = setup(
        hinting(hint, None, seen.clone()),
        policy(3, Duration::from_millis(1)),
    )
    .await;
    let job = s.job.clone();
    assert!(matches!(
        run_job(&s.ctx, s.job, None).await,
        Settled::DeadLettered
    ));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for pair in seen.windows(2) {
        assert!(pair[1] - pair[0] >= hint, "{:?}", pair[1] - pair[0]);
    }
    let letters = s.dead_letters.letters();
    assert_eq!(letters.len(), 1);
    match &letters[0].reason {
        DeadLetterReason::HandlerFailed {
            attempts,
            last_error,
        } => {
            assert_eq!(*attempts, 3);
            assert!(last_error.contains("upstream answered 429"), "{last_error}");
            assert!(last_error.contains("retry after 300ms"), "{last_error}");
        }
        other => panic!("dead-lettered as {other:?}"),
    }
    assert!(matches!(
        claim_again(&s.store, &job).await,
        Claim::Acquired(_)
    ));
}
