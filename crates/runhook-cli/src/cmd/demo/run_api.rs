//! The demo's stand-in for TinyFish's run API (`GET /v1/runs/{id}` with `X-API-Key`): the
//! runs it was given, finished; 404 for any other; 401 for another key.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use runhook::payload::Provider;
use runhook::platform::Platform;
use serde_json::Value;

use super::DemoError;

struct Runs {
    key: String,
    runs: HashMap<String, Value>,
}

/// Serves `runs` (run id → the API's JSON) to callers with `key` on a free localhost port,
/// until the task is aborted; its base URL.
pub async fn start(
    key: &str,
    runs: HashMap<String, Value>,
) -> Result<(String, tokio::task::JoinHandle<()>), DemoError> {
    let path = Platform::of(Provider::TinyFish)
        .run_api
        .map(|api| api.run_path)
        .ok_or(DemoError::NoRunApi)?;
    let state = Arc::new(Runs {
        key: key.to_string(),
        runs,
    });
    let app = axum::Router::new()
        .route(path, axum::routing::get(answer))
        .with_state(state);
    let (listener, base) = super::bind_localhost("cannot start the run API stand-in").await?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((base, server))
}

async fn answer(
    State(state): State<Arc<Runs>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(state.key.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match state.runs.get(&id) {
        Some(run) => axum::Json(run.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "run not found").into_response(),
    }
}
