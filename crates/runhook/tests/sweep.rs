//! Sweeps against local stand-ins of TinyFish's and Skyvern's list endpoints (real HTTP, the
//! real `RunApiClient`): of 100 finished runs, 60 came by webhook; a sweep hands each of the 40
//! others to the handler exactly once, fetches none of the 60, and two instances sweeping the
//! same provider on one Redis still process each run once. Needs Redis on 127.0.0.1:6379.
#![cfg(all(feature = "runs", feature = "redis"))]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use runhook::payload::{EventSource, Provider, RunEvent};
use runhook::runs::{RunApiClient, SweepPolicy};
use runhook::store::{IdempotencyStore, RedisStore};
use runhook::{Receiver, Secret, Unsigned};
use runhook_testkit::{redis_url, require_redis, unique, wait_for};
use serde_json::{json, Value};

const KEY: &str = "sweep_api_key";
const RUNS: usize = 100;
const BY_WEBHOOK: usize = 60;
/// Runs per page of TinyFish's list in the stand-in (fewer than asked for: pages are followed).
const TINYFISH_PAGE: usize = 40;

/// A run API with a list of `runs` (all finished, newest first) and each run by id, counting
/// the fetches of each run.
#[derive(Clone)]
struct Api {
    provider: Provider,
    runs: Arc<Vec<String>>,
    fetches: Arc<Mutex<HashMap<String, usize>>>,
}

impl Api {
    async fn start(provider: Provider, runs: Vec<String>) -> (Self, String) {
        let api = Self {
            provider,
            runs: Arc::new(runs),
            fetches: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/v1/runs", axum::routing::get(list))
            .route("/v1/runs/{id}", axum::routing::get(one))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (api, base)
    }

    fn fetches(&self) -> HashMap<String, usize> {
        self.fetches.lock().unwrap().clone()
    }

    /// The run as its API spells it (finished).
    fn run(&self, id: &str) -> Value {
        match self.provider {
            Provider::TinyFish => json!({
                "run_id": id, "status": "COMPLETED", "result": {"from": "list"}, "error": null,
                "created_at": "2026-12-07T10:00:00Z",
            }),
            _ => json!({
                "run_id": id, "status": "completed", "output": {"from": "run-api"},
                "created_at": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            }),
        }
    }
}

async fn list(
    State(api): State<Api>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match api.provider {
        Provider::TinyFish => {
            assert!(query.contains_key("created_after"), "{query:?}");
            let start: usize = query.get("cursor").map_or(0, |c| c.parse().unwrap());
            let end = (start + TINYFISH_PAGE).min(api.runs.len());
            let data: Vec<Value> = api.runs[start..end].iter().map(|id| api.run(id)).collect();
            let more = end < api.runs.len();
            axum::Json(json!({"data": data, "pagination": {
                "total": api.runs.len(), "next_cursor": more.then(|| end.to_string()), "has_more": more,
            }}))
            .into_response()
        }
        _ => {
            let page: usize = query["page"].parse().unwrap();
            let size: usize = query["page_size"].parse().unwrap();
            let start = ((page - 1) * size).min(api.runs.len());
            let end = (start + size).min(api.runs.len());
            let items: Vec<Value> = api.runs[start..end].iter().map(|id| api.run(id)).collect();
            axum::Json(Value::Array(items)).into_response()
        }
    }
}

async fn one(State(api): State<Api>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    *api.fetches.lock().unwrap().entry(id.clone()).or_default() += 1;
    if !api.runs.contains(&id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    axum::Json(api.run(&id)).into_response()
}

/// Every event handled, by run id.
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

    fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for event in self.0.lock().unwrap().iter() {
            *counts.entry(event.run_id.clone().unwrap()).or_default() += 1;
        }
        counts
    }

    fn swept(&self) -> usize {
        let calls = self.0.lock().unwrap();
        calls
            .iter()
            .filter(|e| e.source == EventSource::Swept)
            .count()
    }
}

/// The webhook body of finished run `id`.
fn webhook(provider: Provider, id: &str) -> Bytes {
    let body = match provider {
        Provider::TinyFish => json!({"event": "run.completed", "run_id": id, "status": "COMPLETED",
                                     "data": {"result": {"from": "webhook"}}}),
        _ => json!({"run_id": id, "status": "completed", "output": {"from": "webhook"}}),
    };
    Bytes::from(body.to_string())
}

async fn store(prefix: &str) -> Arc<dyn IdempotencyStore> {
    Arc::new(
        RedisStore::builder()
            .prefix(format!("{prefix}:idem:"))
            .connect(&redis_url())
            .await
            .unwrap(),
    )
}

/// A receiver on `store`; sweeping `base` when given.
fn receiver(
    provider: Provider,
    store: Arc<dyn IdempotencyStore>,
    calls: &Calls,
    sweep: Option<&str>,
) -> Receiver {
    let mut builder = Receiver::builder(provider, Unsigned::accept_without_authentication())
        .store(store)
        .handler(calls.handler());
    if let Some(base) = sweep {
        let client = RunApiClient::builder(provider, Secret::new(KEY).unwrap())
            .unwrap()
            .base_url(base)
            .unwrap()
            .build()
            .unwrap();
        let policy = SweepPolicy::new(Duration::from_millis(300), Duration::from_secs(3600))
            .page_pause(Duration::from_millis(10));
        builder = builder.sweep(Arc::new(client), policy);
    }
    builder.build().unwrap()
}

async fn sweeping_finds_the_missing_runs_once(provider: Provider) {
    require_redis();
    let prefix = unique("sweep");
    let runs: Vec<String> = (0..RUNS).map(|n| unique(&format!("run{n}"))).collect();
    let (api, base) = Api::start(provider, runs.clone()).await;
    let store = store(&prefix).await;
    let calls = Calls::default();

    // 60 runs come by webhook, and are processed, before anyone sweeps.
    let webhooks = receiver(provider, store.clone(), &calls, None);
    for run in &runs[..BY_WEBHOOK] {
        let outcome = webhooks
            .receive(&HeaderMap::new(), "/", webhook(provider, run))
            .await;
        assert_eq!(outcome.status, StatusCode::OK, "{:?}", outcome.kind);
    }
    wait_for(Duration::from_secs(20), "the webhooks processed", || {
        (calls.counts().len() == BY_WEBHOOK).then_some(())
    })
    .await;

    // Two instances sweep the same provider on the same store.
    let one = receiver(provider, store.clone(), &calls, Some(&base));
    let two = receiver(provider, store.clone(), &calls, Some(&base));
    wait_for(Duration::from_secs(30), "every run processed", || {
        (calls.counts().len() == RUNS).then_some(())
    })
    .await;
    // Several more periods: nothing runs twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = calls.counts();
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    assert_eq!(calls.swept(), RUNS - BY_WEBHOOK);
    let swept = one.stats().swept + two.stats().swept;
    assert_eq!(swept as usize, RUNS - BY_WEBHOOK);
    let fetches = api.fetches();
    for run in &runs[..BY_WEBHOOK] {
        assert!(
            !fetches.contains_key(run),
            "{run} came by webhook but was fetched"
        );
    }
    match provider {
        // TinyFish's list holds whole runs: nothing is fetched at all.
        Provider::TinyFish => assert!(fetches.is_empty(), "{fetches:?}"),
        // Skyvern's names them: each missing run fetched once, or once more if both instances
        // looked at it in the same moment (the claim still runs it once).
        _ => {
            for run in &runs[BY_WEBHOOK..] {
                assert!(
                    fetches.get(run).is_some_and(|&n| n <= 2),
                    "{run}: {fetches:?}"
                );
            }
        }
    }
    drop((webhooks, one, two));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tinyfish_sweep_processes_each_missing_run_once_and_fetches_none() {
    sweeping_finds_the_missing_runs_once(Provider::TinyFish).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skyvern_sweep_processes_each_missing_run_once_and_fetches_only_those() {
    sweeping_finds_the_missing_runs_once(Provider::Skyvern).await;
}
