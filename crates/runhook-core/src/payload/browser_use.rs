//! Browser Use webhook events: an envelope `{type, timestamp, payload}` whose `type` is
//! `agent.task.status_update` (the payload names the task, its session and its status) or
//! `test` (the dashboard's ping, `{"test": "ok"}`).
//!
//! Its documentation has shown two spellings of the payload: `task_id`/`session_id` and
//! `taskId`/`sessionId`; both are read. Statuses: `finished` ends the task as completed,
//! `failed` and `error` as failed, `stopped` as cancelled (stopped by a person or an error),
//! `timed_out` as timed out; every other status (`initializing`, `created`, `started`,
//! `running`, `paused`, `idle`) is progress, keyed `browser-use:<task>#<status>` so that it
//! never takes the place of the task's end.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::json::{self, Read};
use super::progress;
use super::{Parts, ProviderPayload, ResultSpan, RunError, RunStatus, RunTimestamps};
use crate::payload::PayloadError;

/// The event type of a task's status change.
pub const STATUS_UPDATE: &str = "agent.task.status_update";

/// A Browser Use webhook body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BrowserUseEvent {
    /// `agent.task.status_update` or `test`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the event was sent (RFC 3339).
    pub timestamp: Option<String>,
    /// The event's own fields.
    pub payload: BrowserUseTask,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The payload of a status update (a `test` ping has none of these fields: its `test` is in
/// `extra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BrowserUseTask {
    /// The task's id (`task_id`, or `taskId`); the de-duplication key.
    #[serde(alias = "taskId")]
    pub task_id: Option<String>,
    /// The browser session the task ran in (`session_id`, or `sessionId`).
    #[serde(alias = "sessionId")]
    pub session_id: Option<String>,
    /// The task's status: `started`, `finished`, `stopped`, …
    pub status: Option<String>,
    /// The metadata given when the task was created, returned as given.
    pub metadata: Option<Value>,
    /// The task's output, when a run API answer was turned into this shape.
    pub output: Option<Value>,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct Summary<R> {
    #[serde(rename = "type")]
    event_type: String,
    timestamp: Option<String>,
    payload: Option<SummaryTask<R>>,
}

#[derive(Deserialize)]
struct SummaryTask<R> {
    #[serde(alias = "taskId")]
    task_id: Option<String>,
    status: Option<String>,
    output: Option<R>,
    error: Option<Value>,
}

/// The status a Browser Use task status names.
pub(super) fn status_of(text: &str) -> RunStatus {
    match text.trim().to_ascii_lowercase().as_str() {
        "finished" => RunStatus::Completed,
        "failed" | "error" => RunStatus::Failed,
        "stopped" => RunStatus::Cancelled,
        "timed_out" => RunStatus::TimedOut,
        _ => RunStatus::Unknown(text.to_string()),
    }
}

/// The unified view's parts, and the progress qualifier of the key.
pub(super) fn summary(body: &[u8]) -> Result<(Parts, Option<String>), PayloadError> {
    match json::object_from_body_either::<Summary<&RawValue>, Summary<IgnoredAny>>(body)? {
        Read::Strict(event) => {
            let output = event.payload.as_ref().and_then(|task| task.output);
            let result = ResultSpan::of(body, output);
            parts(event, result)
        }
        Read::Lenient(event) => parts(event, ResultSpan::NotASlice),
    }
}

fn parts<R>(
    event: Summary<R>,
    result: ResultSpan,
) -> Result<(Parts, Option<String>), PayloadError> {
    let timestamps = RunTimestamps {
        finished_at: event.timestamp.clone(),
        ..RunTimestamps::default()
    };
    if event.event_type != STATUS_UPDATE {
        // The dashboard's ping, or an event type runhook does not know: no task to name, so
        // it is keyed by its type and time (each ping is processed once).
        let sent = event.timestamp.unwrap_or_default();
        let parts = Parts {
            run_id: event.event_type.clone(),
            id_field: "type",
            status: RunStatus::Unknown(event.event_type.clone()),
            event: Some(event.event_type),
            error: None,
            timestamps,
            result: ResultSpan::Absent,
        };
        return Ok((parts, Some(sent).filter(|s| !s.is_empty())));
    }
    let task = event.payload.ok_or_else(|| PayloadError::MissingField {
        field: "payload".into(),
    })?;
    let task_id = task.task_id.ok_or_else(|| PayloadError::MissingField {
        field: "payload.task_id".into(),
    })?;
    let status_text = task.status.unwrap_or_default();
    let status = status_of(&status_text);
    // No delivery id: a progress event is keyed by its status (each status once).
    let named = match status_text.trim() {
        "" => "status-missing",
        text => text,
    };
    let qualifier = progress::qualifier(&status, None, named);
    let error = RunError::from_json(task.error);
    let parts = Parts {
        run_id: task_id,
        id_field: "payload.task_id",
        status,
        event: Some(event.event_type),
        error,
        timestamps,
        result,
    };
    Ok((parts, qualifier))
}

pub(super) fn payload(body: &[u8]) -> Result<ProviderPayload, PayloadError> {
    Ok(ProviderPayload::BrowserUse(Box::new(
        json::object_from_body(body)?,
    )))
}
