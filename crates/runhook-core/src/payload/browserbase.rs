//! Browserbase webhook events: an envelope `{id, type, resourceId, createdAt, data}` whose
//! `type` reads `<domain>.<resource>.<state>` (`functions.invocations.completed`,
//! `sessions.navigations.blocked`, …), signed with Standard Webhooks.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::json::{self, Read};
use super::progress;
use super::{Parts, ProviderPayload, ResultSpan, RunError, RunStatus, RunTimestamps};
use crate::payload::PayloadError;

/// A Browserbase webhook body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BrowserbaseEvent {
    /// The event's id, the same on every retry of it.
    pub id: Option<String>,
    /// `<domain>.<resource>.<state>`, e.g. `functions.invocations.completed`.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// The object the event concerns (the invocation, build or session id); the
    /// de-duplication key.
    #[serde(rename = "resourceId")]
    pub resource_id: String,
    /// When the event happened.
    #[serde(rename = "createdAt")]
    pub created_at: Option<String>,
    /// The event's own fields.
    pub data: Option<Value>,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct Summary<R> {
    id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    #[serde(rename = "resourceId")]
    resource_id: String,
    #[serde(rename = "createdAt")]
    created_at: Option<String>,
    data: Option<SummaryData<R>>,
}

#[derive(Deserialize)]
struct SummaryData<R> {
    status: Option<String>,
    results: Option<R>,
    cause: Option<Cause>,
}

#[derive(Deserialize)]
struct Cause {
    code: Option<String>,
    message: Option<String>,
}

/// The unified view's parts, and the progress qualifier of the key (see [`progress`]).
pub(super) fn summary(body: &[u8]) -> Result<(Parts, Option<String>), PayloadError> {
    match json::object_from_body_either::<Summary<&RawValue>, Summary<IgnoredAny>>(body)? {
        Read::Strict(event) => {
            let results = event.data.as_ref().and_then(|data| data.results);
            let result = ResultSpan::of(body, results);
            Ok(parts(event, result))
        }
        Read::Lenient(event) => Ok(parts(event, ResultSpan::NotASlice)),
    }
}

fn parts<R>(event: Summary<R>, result: ResultSpan) -> (Parts, Option<String>) {
    let event_type = event.event_type.unwrap_or_default();
    let data = event.data;
    let mut status = progress::status_of_type(&event_type);
    // A type without a state in its last segment: the invocation's own status says it.
    if let (RunStatus::Unknown(_), Some(text)) =
        (&status, data.as_ref().and_then(|d| d.status.as_deref()))
    {
        if matches!(
            RunStatus::from_text(text),
            RunStatus::Completed | RunStatus::Failed
        ) {
            status = RunStatus::from_text(text);
        }
    }
    let qualifier = progress::qualifier(&status, event.id.as_deref(), &event_type);
    let error = data.and_then(|d| d.cause).map(|cause| RunError {
        message: cause.message.unwrap_or_default(),
        category: cause.code,
    });
    let parts = Parts {
        run_id: event.resource_id,
        id_field: "resourceId",
        status,
        event: Some(event_type).filter(|t| !t.is_empty()),
        error,
        timestamps: RunTimestamps {
            finished_at: event.created_at,
            ..RunTimestamps::default()
        },
        result,
    };
    (parts, qualifier)
}

pub(super) fn payload(body: &[u8]) -> Result<ProviderPayload, PayloadError> {
    Ok(ProviderPayload::Browserbase(Box::new(
        json::object_from_body(body)?,
    )))
}
