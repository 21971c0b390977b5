//! A local stand-in for a platform's run API, as its docs describe it: `GET` of the
//! platform's run path with the API key in its header (any other key: 401), answering each
//! run as the test scripts it (finished, still running, an error status), 404 for runs it was
//! not told about. It records every call. Shared by the SDK's and the CLI's tests.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use runhook::payload::Provider;
use runhook::platform::Platform;
use serde_json::json;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 with this JSON body.
    Run(String),
    /// This status, with a `Retry-After` when given.
    Status(u16, Option<u64>),
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub run_id: String,
    /// The value of the platform's API-key header, if sent.
    pub key: Option<String>,
}

struct State {
    provider: Provider,
    key: String,
    answers: Mutex<HashMap<String, VecDeque<Answer>>>,
    calls: Mutex<Vec<Call>>,
}

/// The stand-in, serving until dropped.
pub struct RunApi {
    pub base: String,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RunApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RunApi {
    /// Starts `provider`'s run API on a free port, accepting `key`.
    pub async fn start(provider: Provider, key: &str) -> Self {
        let state = Arc::new(State {
            provider,
            key: key.to_string(),
            answers: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let state = shared.clone();
            async move { answer(&state, &uri, &headers) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base,
            state,
            server,
        }
    }

    /// Scripts run `run_id`'s answers, given in order; the last one repeats.
    pub fn script(&self, run_id: &str, answers: Vec<Answer>) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(run_id.to_string(), answers.into());
    }

    /// Scripts run `run_id` to be reported with each of `statuses` in turn (as
    /// [`RunApi::script`]: the last one repeats).
    pub fn script_statuses(&self, run_id: &str, statuses: &[&str]) {
        let provider = self.state.provider;
        let answers = statuses
            .iter()
            .map(|status| Answer::Run(run_body(provider, run_id, status)))
            .collect();
        self.script(run_id, answers);
    }

    /// Every call for `run_id` so far.
    pub fn calls(&self, run_id: &str) -> Vec<Call> {
        let calls = self.state.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| c.run_id == run_id)
            .cloned()
            .collect()
    }

    /// Every call so far.
    pub fn all_calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }
}

fn answer(state: &State, uri: &Uri, headers: &HeaderMap) -> Response {
    let api = Platform::of(state.provider).run_api.unwrap();
    let prefix = api.run_path.trim_end_matches("{id}");
    let path = uri.path().to_string();
    let run_id = path.strip_prefix(prefix).unwrap_or("").to_string();
    let key = headers
        .get(api.key_header)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    state.calls.lock().unwrap().push(Call {
        path: path.clone(),
        run_id: run_id.clone(),
        key: key.clone(),
    });
    if key.as_deref() != Some(state.key.as_str()) {
        return (StatusCode::UNAUTHORIZED, "bad api key").into_response();
    }
    if run_id.is_empty() || run_id.contains('/') {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut answers = state.answers.lock().unwrap();
    let Some(queue) = answers.get_mut(&run_id) else {
        return (StatusCode::NOT_FOUND, "run not found").into_response();
    };
    let next = if queue.len() > 1 {
        queue.pop_front().unwrap()
    } else {
        queue.front().cloned().unwrap()
    };
    match next {
        Answer::Run(body) => {
            (StatusCode::OK, [("content-type", "application/json")], body).into_response()
        }
        Answer::Status(status, retry_after) => {
            let mut response = StatusCode::from_u16(status).unwrap().into_response();
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", secs.to_string().parse().unwrap());
            }
            response
        }
    }
}

/// The run as `provider`'s API returns it, with `status` spelled as that API spells it and a
/// result marking where it came from.
pub fn run_body(provider: Provider, run_id: &str, status: &str) -> String {
    let body = match provider {
        Provider::Skyvern => json!({
            "run_id": run_id, "status": status, "output": {"from": "run-api"},
            "created_at": "2026-12-02T10:00:00Z", "modified_at": "2026-12-02T10:01:00Z",
        }),
        Provider::TinyFish => json!({
            "run_id": run_id, "status": status, "result": {"from": "run-api"}, "error": null,
        }),
        Provider::SmartBrowse => json!({"data": {
            "id": run_id, "run_status": status, "pages_extracted": 2, "items_extracted": 7,
            "credits_used": 1, "completed_at": "2026-12-02T10:01:00Z", "error": null,
            "result": {"from": "run-api"},
        }}),
        other => panic!("{other} has no run API"),
    };
    body.to_string()
}
