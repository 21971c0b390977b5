//! WebRun task webhooks: `full_response` and `just_ping` carry `taskId`; `ai_response` is the
//! user's own schema output with no marker and no id, so the route says which mode it receives.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{json, Parts, ProviderPayload, ResultSpan, RunStatus, RunTimestamps};
use crate::payload::PayloadError;

/// A WebRun body of a route configured with `full_response` or `just_ping`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WebRunPayload {
    /// `submittedData: "full_response"`: the result with token usage.
    FullResponse(Box<WebRunFullResponse>),
    /// `submittedData: "just_ping"`: only the ids and the completion time.
    JustPing(Box<WebRunPing>),
}

/// WebRun's `full_response` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WebRunFullResponse {
    /// `task_completed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The session the task ran in.
    #[serde(rename = "sessionId", default)]
    pub session_id: Option<String>,
    /// The task's id; the de-duplication key.
    #[serde(rename = "taskId")]
    pub task_id: String,
    /// The AI's answer and token counts.
    pub data: Option<WebRunData>,
    /// Billing usage.
    pub usage: Option<WebRunUsage>,
    /// When the task completed (ISO 8601).
    #[serde(rename = "completedAt", default)]
    pub completed_at: Option<String>,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `data` of a WebRun `full_response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WebRunData {
    /// The AI's answer; for structured output, JSON inside a string
    /// (see [`WebRunData::message_json`]).
    pub message: Option<String>,
    /// Prompt tokens used.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens used.
    pub completion_tokens: Option<u64>,
    /// Total tokens used.
    pub total_tokens: Option<u64>,
    /// Seconds the completion took.
    pub completion_time: Option<f64>,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl WebRunData {
    /// The message parsed as JSON, when it is JSON (structured output); `None` when there is
    /// no message or it is plain text.
    pub fn message_json(&self) -> Option<Value> {
        let message = self.message.as_deref()?;
        json::from_body::<Value>(message.as_bytes()).ok()
    }
}

/// The `usage` of a WebRun `full_response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WebRunUsage {
    /// Input tokens billed.
    #[serde(rename = "inputTokens", default)]
    pub input_tokens: Option<u64>,
    /// Output tokens billed.
    #[serde(rename = "outputTokens", default)]
    pub output_tokens: Option<u64>,
    /// Compute seconds billed.
    #[serde(rename = "computeTime", default)]
    pub compute_time: Option<f64>,
    /// Cost in US dollars.
    pub cost: Option<f64>,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// WebRun's `just_ping` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WebRunPing {
    /// `task_completed`.
    pub event: String,
    /// The session the task ran in.
    #[serde(rename = "sessionId", default)]
    pub session_id: Option<String>,
    /// The task's id; the de-duplication key.
    #[serde(rename = "taskId")]
    pub task_id: String,
    /// When the task completed (ISO 8601).
    #[serde(rename = "completedAt", default)]
    pub completed_at: Option<String>,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The fields of the unified view, for both modes: `full_response` has `type`, `just_ping`
/// has `event`.
#[derive(Deserialize)]
struct Summary {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    event: Option<String>,
    #[serde(rename = "taskId")]
    task_id: String,
    #[serde(rename = "completedAt", default)]
    completed_at: Option<String>,
}

pub(super) fn summary(body: &[u8]) -> Result<Parts, PayloadError> {
    let run: Summary = json::object_from_body(body)?;
    let event = run.kind.or(run.event);
    Ok(Parts {
        run_id: run.task_id,
        id_field: "taskId",
        status: RunStatus::from_optional(event.as_deref()),
        event,
        error: None,
        timestamps: RunTimestamps {
            finished_at: run.completed_at,
            ..RunTimestamps::default()
        },
        // The answer is JSON inside the `message` string: not a slice of the body.
        result: ResultSpan::NotASlice,
    })
}

/// Just enough to tell the two modes apart.
#[derive(Deserialize)]
struct Marker {
    #[serde(rename = "type", default)]
    kind: Option<Value>,
}

pub(super) fn payload(body: &[u8]) -> Result<ProviderPayload, PayloadError> {
    let marker: Marker = json::object_from_body(body)?;
    Ok(ProviderPayload::WebRun(if marker.kind.is_some() {
        WebRunPayload::FullResponse(Box::new(json::object_from_body(body)?))
    } else {
        WebRunPayload::JustPing(Box::new(json::object_from_body(body)?))
    }))
}

/// The answer in a `full_response`: parsed when it is JSON, else the text.
pub(super) fn message_result(payload: &WebRunPayload) -> Option<Value> {
    match payload {
        WebRunPayload::FullResponse(full) => full.data.as_ref().and_then(|d| {
            d.message_json()
                .or_else(|| d.message.clone().map(Value::String))
        }),
        WebRunPayload::JustPing(_) => None,
    }
}

/// `ai_response`: any JSON document is the user's output. A body that is not JSON but is UTF-8
/// text (plain-text output) is kept as a string; only bytes that are not text are refused.
pub(super) fn ai_payload(body: &[u8]) -> Result<ProviderPayload, PayloadError> {
    let output = match json::from_body::<Value>(body) {
        Ok(value) => value,
        Err(_) => Value::String(utf8_text(body)?.to_string()),
    };
    Ok(ProviderPayload::WebRunAi(output))
}

/// `ai_response` has no id and no status: the body's hash is its id and it is complete.
pub(super) fn ai_summary(body: &[u8], body_hash: String) -> Result<Parts, PayloadError> {
    // The whole body is the result.
    let result = match json::strict_value(body) {
        Some(whole) => ResultSpan::of(body, Some(whole)),
        None => {
            if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
                utf8_text(body)?;
            }
            ResultSpan::NotASlice
        }
    };
    Ok(Parts {
        run_id: body_hash,
        id_field: "body",
        status: RunStatus::Completed,
        event: None,
        error: None,
        timestamps: RunTimestamps::default(),
        result,
    })
}

/// A body that is not JSON is still an `ai_response` when it is text (plain-text output).
fn utf8_text(body: &[u8]) -> Result<&str, PayloadError> {
    std::str::from_utf8(body).map_err(|e| PayloadError::NotJson {
        reason: format!("neither JSON nor UTF-8 text ({e})"),
    })
}
