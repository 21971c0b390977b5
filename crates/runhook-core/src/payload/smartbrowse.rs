//! SmartBrowse recipe-run events: a flat body, not the API envelope.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::json::{self, Read};
use super::{Parts, ProviderPayload, ResultSpan, RunError, RunStatus, RunTimestamps};
use crate::payload::PayloadError;

/// A SmartBrowse webhook body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SmartBrowseRun {
    /// `completed`, `failed` or `cancelled`.
    pub event: Option<String>,
    /// When the event happened (ISO 8601, UTC).
    pub timestamp: Option<String>,
    /// The run's id; the de-duplication key.
    pub run_id: String,
    /// The recipe that ran.
    pub recipe_id: Option<String>,
    /// `completed`, `failed` or `cancelled`.
    pub status: Option<String>,
    /// Pages extracted.
    pub pages_extracted: Option<u64>,
    /// Items extracted.
    pub items_extracted: Option<u64>,
    /// Credits the run used.
    pub credits_used: Option<f64>,
    /// `replay`, or empty.
    pub mode: Option<String>,
    /// How far the page drifted from the recipe (0 to 1).
    pub drift: Option<f64>,
    /// Warnings raised during the run.
    pub warnings: Option<Vec<Value>>,
    /// The error; empty when the run succeeded.
    pub error: Option<String>,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The fields of the unified view. `R` is how `result` is read (only a run fetched from the
/// run API has one): where it lies in a strict-JSON body (`&RawValue`), or skipped.
#[derive(Deserialize)]
struct Summary<R> {
    result: Option<R>,
    event: Option<String>,
    timestamp: Option<String>,
    run_id: String,
    status: Option<String>,
    error: Option<String>,
}

pub(super) fn summary(body: &[u8]) -> Result<Parts, PayloadError> {
    // Its webhook carries counts only; a run fetched from its run API has a `result` too.
    match json::object_from_body_either::<Summary<&RawValue>, Summary<IgnoredAny>>(body)? {
        Read::Strict(run) => {
            let result = ResultSpan::of(body, run.result);
            Ok(parts(run, result))
        }
        Read::Lenient(run) => Ok(parts(run, ResultSpan::NotASlice)),
    }
}

fn parts<R>(run: Summary<R>, result: ResultSpan) -> Parts {
    let status = RunStatus::from_optional(run.status.as_deref().or(run.event.as_deref()));
    let error = run
        .error
        .filter(|e| !e.trim().is_empty())
        .map(|message| RunError {
            message,
            category: None,
        });
    Parts {
        run_id: run.run_id,
        id_field: "run_id",
        status,
        event: run.event,
        error,
        timestamps: RunTimestamps {
            finished_at: run.timestamp,
            ..RunTimestamps::default()
        },
        result,
    }
}

pub(super) fn payload(body: &[u8]) -> Result<ProviderPayload, PayloadError> {
    Ok(ProviderPayload::SmartBrowse(Box::new(
        json::object_from_body(body)?,
    )))
}
