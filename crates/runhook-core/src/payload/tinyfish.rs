//! TinyFish run events: `{event, run_id, status, data}` where `data` is the run as
//! `GET /v1/runs/{id}` returns it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::json::{self, Read};
use super::{Parts, ProviderPayload, ResultSpan, RunError, RunStatus, RunTimestamps};
use crate::payload::PayloadError;

/// A TinyFish webhook body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TinyFishRun {
    /// `run.completed`, `run.failed` or `run.cancelled`.
    pub event: Option<String>,
    /// The run's id; the de-duplication key.
    pub run_id: String,
    /// `COMPLETED`, `FAILED` or `CANCELLED`.
    pub status: Option<String>,
    /// The run; a failure may carry only `error` and `result`.
    pub data: Option<TinyFishRunData>,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The run inside a TinyFish body, shaped as `GET /v1/runs/{id}` returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TinyFishRunData {
    /// The run's id (repeated).
    pub run_id: Option<String>,
    /// The run's status (repeated).
    pub status: Option<String>,
    /// The goal the run was given.
    pub goal: Option<String>,
    /// When the run was created.
    pub created_at: Option<String>,
    /// When the run started.
    pub started_at: Option<String>,
    /// When the run finished.
    pub finished_at: Option<String>,
    /// How many steps the agent took.
    pub num_of_steps: Option<u64>,
    /// Extracted data, when completed.
    pub result: Option<Value>,
    /// Error details, when failed.
    pub error: Option<TinyFishError>,
    /// The actions the agent took.
    pub steps: Option<Vec<TinyFishStep>>,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A TinyFish run's error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TinyFishError {
    /// What went wrong.
    pub message: Option<String>,
    /// The kind of failure, e.g. `AGENT_FAILURE`.
    pub category: Option<String>,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One action a TinyFish agent took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TinyFishStep {
    /// The step's id.
    pub id: Option<String>,
    /// When it happened.
    pub timestamp: Option<String>,
    /// The step's status.
    pub status: Option<String>,
    /// What the agent did, in words.
    pub action: Option<String>,
    /// Always null in webhooks (screenshots are fetched separately).
    pub screenshot: Option<Value>,
    /// How long it took, e.g. `1.2s`.
    pub duration: Option<String>,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The fields of the unified view, read without building `result` and `steps`.
#[derive(Deserialize)]
struct Summary<R> {
    event: Option<String>,
    run_id: String,
    status: Option<String>,
    // A missing `Option` field is `None` without `#[serde(default)]` (which, where `R`
    // appears, would ask `R: Default`).
    data: Option<SummaryData<R>>,
}

#[derive(Deserialize)]
struct SummaryData<R> {
    status: Option<String>,
    /// How `result` is read: where it lies in a strict-JSON body (`&RawValue`), or skipped.
    result: Option<R>,
    created_at: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    error: Option<SummaryError>,
}

#[derive(Deserialize)]
struct SummaryError {
    message: Option<String>,
    category: Option<String>,
}

pub(super) fn summary(body: &[u8]) -> Result<Parts, PayloadError> {
    match json::object_from_body_either::<Summary<&RawValue>, Summary<IgnoredAny>>(body)? {
        Read::Strict(run) => {
            let result = run.data.as_ref().and_then(|data| data.result);
            let result = ResultSpan::of(body, result);
            Ok(parts(run, result))
        }
        Read::Lenient(run) => Ok(parts(run, ResultSpan::NotASlice)),
    }
}

fn parts<R>(run: Summary<R>, result: ResultSpan) -> Parts {
    let data = run.data;
    // The status field is authoritative; the event name says the same in other words.
    let status = RunStatus::from_optional(
        run.status
            .as_deref()
            .or(data.as_ref().and_then(|d| d.status.as_deref()))
            .or(run.event.as_deref()),
    );
    let (timestamps, error) = match data {
        Some(data) => (
            RunTimestamps {
                created_at: data.created_at,
                started_at: data.started_at,
                finished_at: data.finished_at,
            },
            data.error.map(|e| RunError {
                message: e.message.unwrap_or_default(),
                category: e.category,
            }),
        ),
        None => (RunTimestamps::default(), None),
    };
    Parts {
        run_id: run.run_id,
        id_field: "run_id",
        status,
        event: run.event,
        error,
        timestamps,
        result,
    }
}

pub(super) fn payload(body: &[u8]) -> Result<ProviderPayload, PayloadError> {
    Ok(ProviderPayload::TinyFish(Box::new(json::object_from_body(
        body,
    )?)))
}
