//! The contract every `IdempotencyStore` keeps, written once against `Arc<dyn IdempotencyStore>`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use runhook_store::{
    Claim, Expectation, Expected, Fingerprint, IdempotencyStore, KeyState, StoreError, Token,
    Window,
};
use tokio::sync::Barrier;

pub type Store = Arc<dyn IdempotencyStore>;

pub const LONG: Duration = Duration::from_secs(30);
pub const KEEP: Duration = Duration::from_secs(60);
/// A lease short enough to wait out in a test.
const SHORT: Duration = Duration::from_millis(150);
/// Comfortably longer than `SHORT`.
const PAST_SHORT: Duration = Duration::from_millis(300);

pub fn fp(body: &str) -> Fingerprint {
    Fingerprint::of(body.as_bytes())
}

/// Runs `work` on `n` tasks released at once, each with its own handle on `store`; what each
/// returned.
async fn all_at_once<T, F>(store: &Store, n: usize, work: impl Fn(Store) -> F) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, work) = (barrier.clone(), work(store.clone()));
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

/// What `store` answers a claim of `key` with `LONG` and the fingerprint of `"body"`.
async fn claim_body(store: &Store, key: &str) -> Claim {
    store.claim(key, LONG, fp("body")).await.unwrap()
}

/// A call a token may be refused.
#[derive(Clone, Copy, Debug)]
enum Op {
    Complete,
    Release,
    Renew,
}

/// Asserts `store` refuses `op` with `token` on `key`: not the holder.
async fn not_holder(store: &Store, key: &str, token: &Token, op: Op) {
    let answer = match op {
        Op::Complete => store.complete(key, token, KEEP).await,
        Op::Release => store.release(key, token).await,
        Op::Renew => store.renew(key, token, LONG).await,
    };
    assert_eq!(answer, Err(StoreError::NotHolder), "{op:?}");
}

pub async fn acquire(store: &Store, key: &str, lease: Duration, body: &str) -> Token {
    match store.claim(key, lease, fp(body)).await {
        Ok(Claim::Acquired(t)) => t,
        other => panic!("expected Acquired for {key}, got {other:?}"),
    }
}

pub async fn one_winner_among_64_concurrent_claims(store: Store) {
    let claims = all_at_once(&store, 64, |store| async move {
        store.claim("run-1", LONG, fp("body")).await.unwrap()
    })
    .await;
    let mut acquired = 0;
    let mut in_flight = 0;
    for claim in claims {
        match claim {
            Claim::Acquired(_) => acquired += 1,
            Claim::InFlight {
                same_payload: true, ..
            } => in_flight += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((acquired, in_flight), (1, 63));
}

pub async fn lapsed_lease_makes_the_key_claimable(store: Store) {
    let first = acquire(&store, "run-1", SHORT, "body").await;
    match store.claim("run-1", SHORT, fp("body")).await.unwrap() {
        Claim::InFlight {
            same_payload: true,
            expires_in,
        } => {
            if let Some(e) = expires_in {
                assert!(e <= SHORT, "{e:?}");
            }
        }
        other => panic!("expected InFlight, got {other:?}"),
    }
    tokio::time::sleep(PAST_SHORT).await;
    let second = acquire(&store, "run-1", LONG, "body").await;
    assert_ne!(first, second);
}

pub async fn stale_token_is_refused_and_the_successor_keeps_the_key(store: Store) {
    let stale = acquire(&store, "run-1", SHORT, "body").await;
    tokio::time::sleep(PAST_SHORT).await;
    let current = acquire(&store, "run-1", LONG, "body").await;
    not_holder(&store, "run-1", &stale, Op::Complete).await;
    not_holder(&store, "run-1", &stale, Op::Release).await;
    not_holder(&store, "run-1", &stale, Op::Renew).await;
    // The successor's claim is untouched.
    assert!(matches!(
        claim_body(&store, "run-1").await,
        Claim::InFlight { .. }
    ));
    store.complete("run-1", &current, KEEP).await.unwrap();
    assert_eq!(
        store.claim("run-1", LONG, fp("body")).await.unwrap(),
        Claim::Done { same_payload: true }
    );
}

pub async fn complete_after_the_lease_lapsed_is_refused(store: Store) {
    let token = acquire(&store, "run-1", SHORT, "body").await;
    tokio::time::sleep(PAST_SHORT).await;
    not_holder(&store, "run-1", &token, Op::Complete).await;
    // Nothing was written: the key is claimable, not done.
    acquire(&store, "run-1", LONG, "body").await;
}

pub async fn release_lets_the_next_claim_win(store: Store) {
    let first = acquire(&store, "run-1", LONG, "body").await;
    store.release("run-1", &first).await.unwrap();
    let second = acquire(&store, "run-1", LONG, "body").await;
    assert_ne!(first, second);
    not_holder(&store, "run-1", &first, Op::Release).await;
    store.complete("run-1", &second, KEEP).await.unwrap();
}

pub async fn fingerprints_are_reported(store: Store) {
    let token = acquire(&store, "run-1", LONG, "first").await;
    let claim = |body: &'static str| store.claim("run-1", LONG, fp(body));
    for (body, same) in [("first", true), ("other", false)] {
        assert_eq!(
            claim(body).await.unwrap().same_payload(),
            Some(same),
            "{body}"
        );
    }
    store.complete("run-1", &token, KEEP).await.unwrap();
    for (body, same_payload) in [("first", true), ("other", false)] {
        assert_eq!(
            claim(body).await.unwrap(),
            Claim::Done { same_payload },
            "{body}"
        );
    }
}

pub async fn renew_extends_the_lease(store: Store) {
    let token = acquire(&store, "run-1", Duration::from_millis(300), "body").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    store
        .renew("run-1", &token, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        store
            .renew("run-1", &Token::random(), Duration::from_secs(2))
            .await,
        Err(StoreError::NotHolder)
    );
    // Past the original lease: still held.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(matches!(
        claim_body(&store, "run-1").await,
        Claim::InFlight { .. }
    ));
    store.complete("run-1", &token, KEEP).await.unwrap();
}

pub async fn done_window_expires(store: Store) {
    let token = acquire(&store, "run-1", LONG, "body").await;
    store.complete("run-1", &token, SHORT).await.unwrap();
    assert!(matches!(
        claim_body(&store, "run-1").await,
        Claim::Done { .. }
    ));
    tokio::time::sleep(PAST_SHORT).await;
    acquire(&store, "run-1", LONG, "body").await;
}

pub async fn forged_token_is_refused(store: Store) {
    let token = acquire(&store, "run-1", LONG, "body").await;
    let forged = Token::random();
    not_holder(&store, "run-1", &forged, Op::Complete).await;
    not_holder(&store, "run-1", &forged, Op::Release).await;
    // Refusals wrote nothing: the real holder still completes.
    store.complete("run-1", &token, KEEP).await.unwrap();
    // A token acts once.
    not_holder(&store, "run-1", &token, Op::Complete).await;
    assert!(matches!(
        claim_body(&store, "run-1").await,
        Claim::Done { .. }
    ));
}

pub async fn token_text_form_works_elsewhere(store: Store) {
    let token = acquire(&store, "run-1", LONG, "body").await;
    let carried: Token = token.to_string().parse().unwrap();
    store.complete("run-1", &carried, KEEP).await.unwrap();
}

pub async fn keys_are_independent(store: Store) {
    let a = acquire(&store, "run-a", LONG, "body").await;
    let b = acquire(&store, "run-b", LONG, "body").await;
    store.complete("run-a", &a, KEEP).await.unwrap();
    assert!(matches!(
        store.claim("run-b", LONG, fp("body")).await.unwrap(),
        Claim::InFlight { .. }
    ));
    not_holder(&store, "run-b", &a, Op::Complete).await;
    store.release("run-b", &b).await.unwrap();
}

pub async fn bad_input_is_rejected(store: Store) {
    let err = store.claim("", LONG, fp("x")).await.unwrap_err();
    assert_eq!(err, StoreError::EmptyKey);
    let long = "k".repeat(runhook_store::DEFAULT_MAX_KEY_LEN + 1);
    let err = store.claim(&long, LONG, fp("x")).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::KeyTooLong {
            len: runhook_store::DEFAULT_MAX_KEY_LEN + 1,
            max: runhook_store::DEFAULT_MAX_KEY_LEN
        }
    );
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    // The longest allowed key works.
    let max = "k".repeat(runhook_store::DEFAULT_MAX_KEY_LEN);
    let token = acquire(&store, &max, LONG, "x").await;
    store.release(&max, &token).await.unwrap();

    assert!(matches!(
        store.claim("run-1", Duration::ZERO, fp("x")).await,
        Err(StoreError::InvalidDuration { what: "lease", .. })
    ));
    let token = acquire(&store, "run-1", LONG, "x").await;
    assert!(matches!(
        store.complete("run-1", &token, Duration::ZERO).await,
        Err(StoreError::InvalidDuration {
            what: "keep_for",
            ..
        })
    ));
    // The refused call changed nothing.
    store.complete("run-1", &token, KEEP).await.unwrap();
}

/// Many tasks race over few keys, each holding briefly and releasing; at no moment may two
/// hold the same key.
pub async fn mutual_exclusion_under_contention(store: Store, tasks: usize, rounds: usize) {
    const KEYS: usize = 8;
    let holders: Arc<Vec<AtomicUsize>> = Arc::new((0..KEYS).map(|_| AtomicUsize::new(0)).collect());
    let wins = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (store, holders, wins) = (store.clone(), holders.clone(), wins.clone());
            tokio::spawn(async move {
                for r in 0..rounds {
                    let k = (t * 7 + r) % KEYS;
                    let key = format!("run-{k}");
                    if let Claim::Acquired(token) =
                        store.claim(&key, LONG, fp("body")).await.unwrap()
                    {
                        assert_eq!(holders[k].fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        wins.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                        holders[k].fetch_sub(1, Ordering::SeqCst);
                        store.release(&key, &token).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    assert!(wins.load(Ordering::Relaxed) >= KEYS, "hardly any claim won");
}

/// Defines one `#[tokio::test]` per contract case for a backend. `$make` is an async fn
/// `(test_name) -> Option<Store>`; `None` skips (only allowed outside CI).
pub async fn state_follows_the_key(store: Store) {
    assert_eq!(store.state("state:k").await.unwrap(), KeyState::Absent);
    let token = acquire(&store, "state:k", LONG, "a").await;
    assert_eq!(store.state("state:k").await.unwrap(), KeyState::InFlight);
    store.complete("state:k", &token, KEEP).await.unwrap();
    assert_eq!(store.state("state:k").await.unwrap(), KeyState::Done);
    let other = acquire(&store, "state:other", SHORT, "a").await;
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(store.state("state:other").await.unwrap(), KeyState::Absent);
    let _ = other;
    assert!(store.state("").await.is_err());
}

pub async fn expectations_are_handed_out_once_while_held(store: Store) {
    let expectations = store.expectations().expect("this store keeps expectations");
    let now = std::time::SystemTime::now();
    let due_now = |run: &str| {
        let mut e = Expectation::new(
            format!("tinyfish:{run}"),
            run,
            Window::Within(Duration::ZERO),
        );
        e.registered_at = now - Duration::from_secs(1);
        e
    };
    for run in 0..40 {
        let e = due_now(&format!("r{run}"));
        assert_eq!(
            expectations.expect("tinyfish", &e).await.unwrap(),
            Expected::Recorded
        );
    }
    assert_eq!(
        expectations
            .expect("tinyfish", &due_now("r0"))
            .await
            .unwrap(),
        Expected::AlreadyExpected
    );
    let later = Expectation::new(
        "tinyfish:later",
        "later",
        Window::Within(Duration::from_secs(3600)),
    );
    expectations.expect("tinyfish", &later).await.unwrap();
    assert_eq!(expectations.waiting("tinyfish").await.unwrap(), 41);
    // Eight takers at once: each due expectation goes to exactly one of them.
    let takers = all_at_once(&store, 8, |store| async move {
        let expectations = store.expectations().unwrap();
        let mut got = Vec::new();
        loop {
            let batch = expectations
                .take_due("tinyfish", std::time::SystemTime::now(), LONG, 3)
                .await
                .unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch.into_iter().map(|e| e.run_id));
        }
    })
    .await;
    let mut all: Vec<String> = takers.into_iter().flatten().collect();
    all.sort();
    let mut expected: Vec<String> = (0..40).map(|r| format!("r{r}")).collect();
    expected.sort();
    assert_eq!(all, expected);
    assert!(expectations
        .take_due("other", now + LONG, LONG, 10)
        .await
        .unwrap()
        .is_empty());
    // Rescheduled ones come back when due, with what the taker stored; forgotten ones never.
    let mut checked = due_now("r1");
    checked.checks = 2;
    expectations
        .reschedule("tinyfish", &checked, now)
        .await
        .unwrap();
    expectations
        .forget("tinyfish", "tinyfish:r2")
        .await
        .unwrap();
    expectations
        .reschedule("tinyfish", &due_now("r2"), now)
        .await
        .unwrap();
    let again = expectations
        .take_due("tinyfish", std::time::SystemTime::now(), LONG, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!((again[0].run_id.as_str(), again[0].checks), ("r1", 2));
    assert_eq!(
        again[0]
            .registered_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
        checked
            .registered_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    assert_eq!(expectations.waiting("tinyfish").await.unwrap(), 40);
}

macro_rules! contract_tests {
    ($make:path) => {
        // The cases, a theme a line: claims, leases, tokens, keys, expectations.
        contract_tests!(@each $make,
            one_winner_among_64_concurrent_claims, fingerprints_are_reported,
            lapsed_lease_makes_the_key_claimable, complete_after_the_lease_lapsed_is_refused,
            release_lets_the_next_claim_win, renew_extends_the_lease, done_window_expires,
            stale_token_is_refused_and_the_successor_keeps_the_key, forged_token_is_refused,
            token_text_form_works_elsewhere,
            keys_are_independent, bad_input_is_rejected, state_follows_the_key,
            expectations_are_handed_out_once_while_held,
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn mutual_exclusion_under_contention() {
            if let Some(store) = $make("mutual_exclusion").await {
                crate::suite::mutual_exclusion_under_contention(store, 16, 100).await;
            }
        }
    };
    (@each $make:path, $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(store) = $make(stringify!($case)).await {
                    crate::suite::$case(store).await;
                }
            }
        )*
    };
}
