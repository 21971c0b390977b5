//! Confirm and reconcile against a local stand-in of each platform's run API (real HTTP, the
//! real `RunApiClient`): the handler gets the API's run, unknown runs are never processed,
//! and an expected run is processed once whether its webhook comes, comes late, races the
//! reconciler, or never comes. Redis tests need Redis on 127.0.0.1:6379.
#![cfg(feature = "runs")]

#[path = "support/run_api.rs"]
mod run_api;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use run_api::{run_body, Answer, RunApi};
use runhook::dead_letter::{DeadLetter, MemoryDeadLetters};
use runhook::payload::{Confirmation, EventSource, Provider, RunEvent};
use runhook::retry::RetryPolicy;
use runhook::runs::{FetchError, Fetched, ReconcilePolicy, RunApiClient, RunSource};
use runhook::store::{IdempotencyStore, MemoryStore};
use runhook::{PathSecret, Receiver, Secret, Unsigned};
use runhook_testkit::{redis_url, require_redis, unique, wait_for};
use serde_json::json;

const KEY: &str = "api_key_for_tests";
const WAIT: Duration = Duration::from_secs(20);

fn client(provider: Provider, api: &RunApi) -> Arc<RunApiClient> {
    Arc::new(
        RunApiClient::builder(provider, Secret::new(KEY).unwrap())
            .unwrap()
            .base_url(&api.base)
            .unwrap()
            .build()
            .unwrap(),
    )
}

/// A handler recording every event it gets.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Arc<RunEvent>>>>);

impl Calls {
    fn handler(&self) -> impl runhook::Handler {
        let calls = self.clone();
        move |event: Arc<RunEvent>| {
            let calls = calls.clone();
            async move {
                calls.0.lock().unwrap().push(event);
                Ok::<(), std::io::Error>(())
            }
        }
    }

    fn of(&self, run_id: &str) -> Vec<Arc<RunEvent>> {
        let calls = self.0.lock().unwrap();
        calls
            .iter()
            .filter(|e| e.run_id.as_deref() == Some(run_id))
            .cloned()
            .collect()
    }

    async fn wait_for(&self, run_id: &str, count: usize) -> Vec<Arc<RunEvent>> {
        let what = format!("{run_id} processed {count} times");
        wait_for(WAIT, what, || {
            Some(self.of(run_id)).filter(|got| got.len() >= count)
        })
        .await
    }
}

/// The first dead letter `letters` receives.
async fn first_letter(letters: &MemoryDeadLetters) -> DeadLetter {
    wait_for(WAIT, "a dead letter", || letters.take().into_iter().next()).await
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..RetryPolicy::default()
    }
}

fn quick_reconcile() -> ReconcilePolicy {
    ReconcilePolicy::after(Duration::from_millis(100))
        .every(Duration::from_millis(25))
        .pauses(Duration::from_millis(100), Duration::from_millis(200))
}

// ---------------------------------------------------------------------------------------------
// The client.

#[tokio::test]
async fn the_client_reads_finished_pending_and_unknown_runs_with_the_api_key() {
    for (provider, done, running) in [
        (Provider::Skyvern, "completed", "running"),
        (Provider::TinyFish, "COMPLETED", "RUNNING"),
        (Provider::SmartBrowse, "completed", "running"),
    ] {
        let api = RunApi::start(provider, KEY).await;
        let client = client(provider, &api);
        let run = unique("run");
        api.script_statuses(&run, &[running, done]);
        assert!(matches!(
            client.fetch(&run).await.unwrap(),
            Fetched::Pending { status } if status == running
        ));
        let Fetched::Terminal(event) = client.fetch(&run).await.unwrap() else {
            panic!("{provider}: a finished run is terminal");
        };
        assert_eq!(event.dedup_key, format!("{provider}:{run}"));
        assert_eq!(event.confirmation, Confirmation::Confirmed);
        assert_eq!(
            event.result(),
            Some(&json!({"from": "run-api"})),
            "{provider}"
        );
        assert!(matches!(
            client.fetch("nobody-knows").await.unwrap(),
            Fetched::Unknown
        ));
        let calls = api.all_calls();
        assert!(
            calls.iter().all(|c| c.key.as_deref() == Some(KEY)),
            "{calls:?}"
        );
        let path = Platform::of(provider).run_api.unwrap().path_of(&run);
        assert_eq!(calls[0].path, path);
    }
}

use runhook::platform::Platform;

#[tokio::test]
async fn the_client_retries_passing_failures_but_not_a_refused_key() {
    let api = RunApi::start(Provider::TinyFish, KEY).await;
    let run = unique("flaky");
    api.script(
        &run,
        vec![
            Answer::Status(503, None),
            Answer::Status(429, Some(1)),
            Answer::Run(run_body(Provider::TinyFish, &run, "FAILED")),
        ],
    );
    let started = Instant::now();
    let fetched = client(Provider::TinyFish, &api).fetch(&run).await.unwrap();
    assert!(matches!(fetched, Fetched::Terminal(_)));
    assert_eq!(api.calls(&run).len(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );

    let wrong_key = RunApiClient::builder(Provider::TinyFish, Secret::new("wrong").unwrap())
        .unwrap()
        .base_url(&api.base)
        .unwrap()
        .build()
        .unwrap();
    let refused = wrong_key.fetch(&run).await;
    assert_eq!(refused.unwrap_err(), FetchError::Unauthorized(401));
    assert_eq!(api.calls(&run).len(), 4, "a refused key is not retried");
    // Nothing answers: a network error, with no URL in it.
    let nowhere = RunApiClient::builder(Provider::TinyFish, Secret::new(KEY).unwrap())
        .unwrap()
        .base_url("http://127.0.0.1:1/secret-path")
        .unwrap()
        .attempts(2)
        .build()
        .unwrap();
    let error = nowhere.fetch("r").await.unwrap_err().to_string();
    assert!(!error.contains("secret-path"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Confirm.

async fn confirming_tinyfish(
    api: &RunApi,
    calls: &Calls,
    letters: Arc<MemoryDeadLetters>,
) -> Receiver {
    Receiver::builder(
        Provider::TinyFish,
        Unsigned::accept_without_authentication(),
    )
    .handler(calls.handler())
    .confirm(client(Provider::TinyFish, api))
    .retry(quick_retries())
    .dead_letters(letters)
    .build()
    .unwrap()
}

fn posted(run_id: &str) -> Bytes {
    Bytes::from(
        json!({"event": "run.completed", "run_id": run_id, "status": "COMPLETED",
               "data": {"result": {"from": "post"}}})
        .to_string(),
    )
}

#[tokio::test]
async fn a_confirmed_route_hands_the_handler_the_api_run_and_never_an_unknown_one() {
    let api = RunApi::start(Provider::TinyFish, KEY).await;
    let calls = Calls::default();
    let letters = Arc::new(MemoryDeadLetters::default());
    let receiver = confirming_tinyfish(&api, &calls, letters.clone()).await;

    let known = unique("known");
    api.script_statuses(&known, &["COMPLETED"]);
    let outcome = receiver
        .receive(&HeaderMap::new(), "/hook", posted(&known))
        .await;
    assert_eq!(outcome.status, StatusCode::OK);
    let got = calls.wait_for(&known, 1).await;
    assert_eq!(got[0].confirmation, Confirmation::Confirmed);
    assert_eq!(got[0].source, EventSource::Webhook);
    assert_eq!(got[0].result(), Some(&json!({"from": "run-api"})));

    let forged = unique("forged");
    let outcome = receiver
        .receive(&HeaderMap::new(), "/hook", posted(&forged))
        .await;
    assert_eq!(outcome.status, StatusCode::OK, "acknowledged, then checked");
    let letter = first_letter(&letters).await;
    assert_eq!(letter.reason.code(), "not_confirmed");
    assert_eq!(letter.run_id.as_deref(), Some(forged.as_str()));
    assert!(calls.of(&forged).is_empty());
    let stats = receiver.stats();
    assert_eq!((stats.confirmed, stats.confirm_failures), (1, 1));
}

#[tokio::test]
async fn a_run_not_finished_yet_is_confirmed_on_a_later_attempt() {
    let api = RunApi::start(Provider::TinyFish, KEY).await;
    let calls = Calls::default();
    let receiver = confirming_tinyfish(&api, &calls, Arc::new(MemoryDeadLetters::default())).await;
    let run = unique("late");
    api.script(
        &run,
        vec![
            Answer::Run(run_body(Provider::TinyFish, &run, "RUNNING")),
            Answer::Status(500, None),
            Answer::Run(run_body(Provider::TinyFish, &run, "COMPLETED")),
        ],
    );
    receiver
        .receive(&HeaderMap::new(), "/hook", posted(&run))
        .await;
    let got = calls.wait_for(&run, 1).await;
    assert!(got[0].confirmation.is_confirmed());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls.of(&run).len(), 1);
    assert!(api.calls(&run).len() >= 3);
}

/// A Skyvern route confirming with the run API (its deliveries signed with `SKYVERN_KEY`).
fn confirming_skyvern(api: &RunApi, calls: &Calls) -> Receiver {
    Receiver::skyvern(Secret::new(SKYVERN_KEY).unwrap())
        .handler(calls.handler())
        .confirm(client(Provider::Skyvern, api))
        .retry(quick_retries())
        .build()
        .unwrap()
}

const SKYVERN_KEY: &str = "sk_confirm_attempts";

fn signed(body: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in runhook_testkit::skyvern::signed_headers(SKYVERN_KEY, body) {
        headers.insert(name, value.parse().unwrap());
    }
    headers
}

#[tokio::test]
async fn a_run_whose_retry_is_pending_is_confirmed_after_its_next_attempt() {
    let api = RunApi::start(Provider::Skyvern, KEY).await;
    let calls = Calls::default();
    let receiver = confirming_skyvern(&api, &calls);
    let run = unique("wr_retrying");
    // The run API reads `failed` with a retry pending for two more seconds, then `completed`:
    // far later than the 50 ms backoff, which must not be what decides the second look.
    let next_attempt = std::time::SystemTime::now() + Duration::from_secs(2);
    let next_attempt_at = humantime::format_rfc3339_millis(next_attempt).to_string();
    let pending = runhook_testkit::skyvern::interim_body(&run, 1, &next_attempt_at);
    let last = runhook_testkit::skyvern::retried_final_body(&run, 2);
    api.script(
        &run,
        vec![
            Answer::Run(String::from_utf8(pending).unwrap()),
            Answer::Run(String::from_utf8(last).unwrap()),
        ],
    );
    // The webhook (`final_only`: one delivery) reads completed; confirm asks the API first.
    let posted = runhook_testkit::skyvern::completed_body(&run);
    let outcome = receiver
        .receive(&signed(&posted), "/hook", posted.into())
        .await;
    assert_eq!(outcome.status, StatusCode::OK);
    let got = calls.wait_for(&run, 1).await;
    let handled_at = std::time::SystemTime::now();
    assert!(
        handled_at >= next_attempt,
        "handled before the pending retry's start"
    );
    assert!(got[0].confirmation.is_confirmed());
    assert!(got[0].phase.is_final());
    assert_eq!(got[0].attempt, Some(2));
    assert_eq!(got[0].dedup_key, format!("skyvern:{run}"));
    assert_eq!(got[0].result(), Some(&json!({"n": 2})));
    assert_eq!(
        api.calls(&run).len(),
        2,
        "one look while pending, one after"
    );
    let stats = receiver.stats();
    assert_eq!((stats.confirmed, stats.confirm_failures), (1, 1));
}

#[tokio::test]
async fn an_interim_event_is_confirmed_by_its_own_attempt() {
    let api = RunApi::start(Provider::Skyvern, KEY).await;
    let calls = Calls::default();
    let receiver = confirming_skyvern(&api, &calls);
    let run = unique("wr_interim");
    let interim = runhook_testkit::skyvern::interim_body(&run, 1, "2099-01-01T00:00:00");
    api.script(
        &run,
        vec![Answer::Run(String::from_utf8(interim.clone()).unwrap())],
    );
    let outcome = receiver
        .receive(&signed(&interim), "/hook", interim.into())
        .await;
    assert_eq!(outcome.status, StatusCode::OK);
    let got = calls.wait_for(&run, 1).await;
    assert!(
        got[0].confirmation.is_confirmed(),
        "the API's answer for that attempt"
    );
    assert!(!got[0].phase.is_final());
    assert_eq!(got[0].dedup_key, format!("skyvern:{run}#attempt-1"));
    assert_eq!(api.calls(&run).len(), 1);
}

#[tokio::test]
async fn a_reconciled_run_whose_retry_is_pending_waits_for_its_next_attempt() {
    let (api, calls, receiver) = quickly_reconciling(Provider::Skyvern).await;
    let run = unique("wr_expected");
    let next_attempt = std::time::SystemTime::now() + Duration::from_secs(2);
    let next_attempt_at = humantime::format_rfc3339_millis(next_attempt).to_string();
    let pending = runhook_testkit::skyvern::interim_body(&run, 1, &next_attempt_at);
    let last = runhook_testkit::skyvern::retried_final_body(&run, 2);
    api.script(
        &run,
        vec![
            Answer::Run(String::from_utf8(pending).unwrap()),
            Answer::Run(String::from_utf8(last).unwrap()),
        ],
    );
    receiver
        .expect(&run, Duration::from_millis(100))
        .await
        .unwrap();
    let got = calls.wait_for(&run, 1).await;
    assert!(std::time::SystemTime::now() >= next_attempt);
    assert!(got[0].phase.is_final());
    assert_eq!(got[0].source, EventSource::Reconciled);
    // The reconciler's pauses are 100-200 ms: without the hint it would have asked ~10 times.
    assert_eq!(api.calls(&run).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Expect and reconcile.

async fn reconciling(
    provider: Provider,
    api: &RunApi,
    calls: &Calls,
    store: Arc<dyn IdempotencyStore>,
    letters: Arc<MemoryDeadLetters>,
    policy: ReconcilePolicy,
) -> Receiver {
    let verifier = PathSecret::last_segment(Secret::new("path-secret").unwrap());
    Receiver::builder(provider, verifier)
        .store(store)
        .dead_letters(letters)
        .handler(calls.handler())
        .reconcile(client(provider, api), policy)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_missed_webhook_is_reconciled_once_for_every_platform() {
    for (provider, done) in [
        (Provider::TinyFish, "COMPLETED"),
        (Provider::Skyvern, "completed"),
        (Provider::SmartBrowse, "completed"),
    ] {
        let (api, calls, receiver) = quickly_reconciling(provider).await;
        let run = unique("missed");
        api.script_statuses(&run, &[done]);
        receiver
            .expect(&run, Duration::from_millis(100))
            .await
            .unwrap();
        let got = calls.wait_for(&run, 1).await;
        assert_eq!(got[0].source, EventSource::Reconciled, "{provider}");
        assert!(got[0].confirmation.is_confirmed());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(calls.of(&run).len(), 1, "{provider}");
        assert_eq!(
            api.calls(&run).len(),
            1,
            "{provider}: one API call per reconciled run"
        );
        assert_eq!(receiver.stats().reconciled, 1);
    }
}

#[tokio::test]
async fn a_webhook_in_time_costs_no_api_call_and_a_running_run_waits() {
    let (api, calls, receiver) = quickly_reconciling(Provider::TinyFish).await;
    let on_time = unique("on_time");
    receiver
        .expect(&on_time, Duration::from_millis(300))
        .await
        .unwrap();
    let path = "/hook/path-secret";
    let outcome = receiver
        .receive(&HeaderMap::new(), path, posted(&on_time))
        .await;
    assert_eq!(outcome.status, StatusCode::OK);
    calls.wait_for(&on_time, 1).await;

    let running = unique("running");
    api.script_statuses(&running, &["RUNNING", "RUNNING", "COMPLETED"]);
    receiver
        .expect(&running, Duration::from_millis(50))
        .await
        .unwrap();
    let got = calls.wait_for(&running, 1).await;
    assert_eq!(got[0].source, EventSource::Reconciled);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(calls.of(&on_time).len(), 1);
    assert_eq!(calls.of(&running).len(), 1);
    assert!(api.calls(&on_time).is_empty(), "{:?}", api.calls(&on_time));
    assert_eq!(api.calls(&running).len(), 3);
}

#[tokio::test]
async fn a_run_that_never_finishes_is_given_up_and_dead_lettered() {
    let api = RunApi::start(Provider::Skyvern, KEY).await;
    let calls = Calls::default();
    let letters = Arc::new(MemoryDeadLetters::default());
    let policy = quick_reconcile().horizon(Duration::from_millis(400));
    let receiver = in_memory(Provider::Skyvern, &api, &calls, letters.clone(), policy).await;
    let run = unique("stuck");
    api.script_statuses(&run, &["running"]);
    receiver
        .expect(&run, Duration::from_millis(50))
        .await
        .unwrap();
    let letter = first_letter(&letters).await;
    assert_eq!(letter.reason.code(), "never_completed");
    assert!(
        letter.reason.to_string().contains("still running"),
        "{}",
        letter.reason
    );
    assert!(calls.of(&run).is_empty());
    let stats = receiver.stats();
    assert_eq!(stats.reconcile_given_up, 1);
    let checks = api.calls(&run).len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.calls(&run).len(), checks, "fetched after giving up");
}

/// A webhook and the reconciler racing for one run, many times: each run processed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_racing_the_reconciler_is_processed_once() {
    let api = RunApi::start(Provider::TinyFish, KEY).await;
    let calls = Calls::default();
    let policy = ReconcilePolicy::after(Duration::ZERO).every(Duration::from_millis(10));
    let receiver = in_memory(Provider::TinyFish, &api, &calls, Default::default(), policy).await;
    let runs: Vec<String> = (0..40).map(|_| unique("race")).collect();
    for run in &runs {
        api.script_statuses(run, &["COMPLETED"]);
        receiver.expect(run, Duration::ZERO).await.unwrap();
        let receiver = receiver.clone();
        let body = posted(run);
        tokio::spawn(async move {
            receiver
                .receive(&HeaderMap::new(), "/hook/path-secret", body)
                .await;
        });
    }
    for run in &runs {
        calls.wait_for(run, 1).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for run in &runs {
        assert_eq!(calls.of(run).len(), 1, "{run}");
    }
}

#[tokio::test]
async fn webrun_can_be_neither_confirmed_nor_reconciled() {
    let api = RunApi::start(Provider::TinyFish, KEY).await;
    let built = Receiver::builder(Provider::WebRun, Unsigned::accept_without_authentication())
        .handler(Calls::default().handler())
        .confirm(client(Provider::TinyFish, &api) as Arc<dyn RunSource>)
        .build();
    assert!(matches!(
        built.err(),
        Some(runhook::BuildError::NoRunApi(Provider::WebRun))
    ));
    assert!(RunApiClient::builder(Provider::WebRun, Secret::new(KEY).unwrap()).is_err());
}

/// `provider`'s run API stand-in, and [`in_memory`] on it with the quick reconcile policy.
async fn quickly_reconciling(provider: Provider) -> (RunApi, Calls, Receiver) {
    let api = RunApi::start(provider, KEY).await;
    let calls = Calls::default();
    let receiver = in_memory(
        provider,
        &api,
        &calls,
        Default::default(),
        quick_reconcile(),
    )
    .await;
    (api, calls, receiver)
}

/// [`reconciling`] with a store of its own in memory.
async fn in_memory(
    provider: Provider,
    api: &RunApi,
    calls: &Calls,
    letters: Arc<MemoryDeadLetters>,
    policy: ReconcilePolicy,
) -> Receiver {
    let store: Arc<dyn IdempotencyStore> = Arc::new(MemoryStore::new());
    reconciling(provider, api, calls, store, letters, policy).await
}

// ---------------------------------------------------------------------------------------------
// Two instances on one Redis.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_reconcile_each_run_once_in_all() {
    use runhook::store::RedisStore;
    require_redis();
    let prefix = unique("runs_two_instances");
    let api = RunApi::start(Provider::TinyFish, KEY).await;
    let calls = Calls::default();
    let mut receivers = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::builder()
            .prefix(format!("{prefix}:idem:"))
            .connect(&redis_url())
            .await
            .unwrap();
        let store: Arc<dyn IdempotencyStore> = Arc::new(store);
        let policy = ReconcilePolicy::after(Duration::ZERO).every(Duration::from_millis(20));
        receivers.push(
            reconciling(
                Provider::TinyFish,
                &api,
                &calls,
                store,
                Default::default(),
                policy,
            )
            .await,
        );
    }
    let runs: Vec<String> = (0..60).map(|_| unique("shared")).collect();
    for (i, run) in runs.iter().enumerate() {
        api.script_statuses(run, &["COMPLETED"]);
        receivers[i % 2]
            .expect(run, Duration::from_millis(50))
            .await
            .unwrap();
    }
    for run in &runs {
        calls.wait_for(run, 1).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for run in &runs {
        assert_eq!(calls.of(run).len(), 1, "{run}");
    }
    let reconciled: u64 = receivers.iter().map(|r| r.stats().reconciled).sum();
    assert_eq!(reconciled, 60);
    let api_calls = api.all_calls().len();
    eprintln!("{api_calls} run API calls for 60 reconciled runs on two instances");
    assert!(api_calls <= 70, "{api_calls} API calls for 60 runs");
}

/// However many fetches run at once (a flood of forged runs on a route that confirms unsigned
/// deliveries), the client sends at most `max_in_flight` requests at a time with the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_sends_at_most_max_in_flight_requests_at_once() {
    use tokio::io::AsyncReadExt as _;
    // A run API that reads each request and never answers: requests pile up there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = requests.clone();
    let server = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            open.push(tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if socket.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                std::future::pending::<()>().await;
                drop(socket);
            }));
        }
    });
    let client = Arc::new(
        RunApiClient::builder(Provider::TinyFish, Secret::new(KEY).unwrap())
            .unwrap()
            .base_url(&base)
            .unwrap()
            .timeout(Duration::from_secs(30))
            .max_in_flight(2)
            .build()
            .unwrap(),
    );
    let fetches: Vec<_> = (0..10)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { client.fetch(&format!("forged-{n}")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 2);
    for fetch in fetches {
        fetch.abort();
    }
    server.abort();
}
