//! Skyvern task and workflow runs.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::json::{self, Read};
use super::{
    Attempt, Parts, ProviderPayload, ResultSpan, RunError, RunPhase, RunStatus, RunTimestamps,
};
use crate::payload::PayloadError;

/// A Skyvern run as its webhook sends it. Times are ISO 8601 without a zone (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SkyvernRun {
    /// The run's id (`tsk_v2_…`, `wr_…`); the de-duplication key.
    pub run_id: String,
    /// Same as `run_id` for task runs.
    pub task_id: Option<String>,
    /// `completed`, `failed`, `terminated`, `timed_out` or `canceled`.
    pub status: Option<String>,
    /// Data extracted by the run; with an error-code mapping, failed runs carry `output.error`.
    pub output: Option<Value>,
    /// An AI-written description of what was done.
    pub summary: Option<String>,
    /// The prompt of the original request.
    pub prompt: Option<String>,
    /// The URL of the original request.
    pub url: Option<String>,
    /// Files downloaded during the run.
    pub downloaded_files: Option<Vec<Value>>,
    /// Video recording of the browser session.
    pub recording_url: Option<String>,
    /// Screenshots, latest first.
    pub screenshot_urls: Option<Vec<String>>,
    /// Why the run failed.
    pub failure_reason: Option<String>,
    /// Errors met during the run.
    pub errors: Option<Vec<Value>>,
    /// Steps executed.
    pub step_count: Option<u64>,
    /// `task_v2`, `openai_cua`, `anthropic_cua`, `workflow_run`, ...
    pub run_type: Option<String>,
    /// Link to the run in Skyvern Cloud.
    pub app_url: Option<String>,
    /// The organization that owns the run.
    pub organization_id: Option<String>,
    /// The associated workflow run.
    pub workflow_run_id: Option<String>,
    /// The internal workflow id.
    pub workflow_id: Option<String>,
    /// The permanent workflow id used to run the workflow.
    pub workflow_permanent_id: Option<String>,
    /// The proxy location used (e.g. `RESIDENTIAL`).
    pub proxy_location: Option<String>,
    /// The webhook URL that received this payload.
    pub webhook_callback_url: Option<String>,
    /// Always null in a delivered payload, per Skyvern.
    pub webhook_failure_reason: Option<String>,
    /// When the run was created.
    pub created_at: Option<String>,
    /// When the run was last updated.
    pub modified_at: Option<String>,
    /// When the run entered the queue.
    pub queued_at: Option<String>,
    /// When execution began.
    pub started_at: Option<String>,
    /// When execution completed.
    pub finished_at: Option<String>,
    /// Which attempt of a workflow run with a retry policy this is (1 for the first).
    pub attempt: Option<u32>,
    /// `true` on an interim webhook: this attempt failed and another is scheduled.
    pub retry_pending: Option<bool>,
    /// When the next attempt starts (with `retry_pending: true`).
    pub next_attempt_at: Option<String>,
    /// Every attempt so far, oldest first.
    pub attempts: Option<Vec<SkyvernAttempt>>,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One attempt of a Skyvern workflow run with a retry policy (`attempts[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SkyvernAttempt {
    /// 1 for the first attempt.
    pub attempt_number: Option<u32>,
    /// How the attempt ended (`failed`, `completed`, ...), or that it is running.
    pub status: Option<String>,
    /// Why the attempt failed.
    pub failure_reason: Option<String>,
    /// The error codes the attempt failed with (what `retry_on` matches).
    pub error_codes: Option<Vec<String>>,
    /// What the policy decided after it: `retry`, `final`, `revoked` or `abandoned`.
    pub retry_decision: Option<String>,
    /// When its webhook was sent, if one was.
    pub webhook_sent_at: Option<String>,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The fields of the unified view, read without building `output` and the rest. `R` is how
/// `output` is read: where it lies in a strict-JSON body (`&RawValue`), or skipped.
#[derive(Deserialize)]
struct Summary<R> {
    run_id: String,
    // A missing `Option` field is `None` without `#[serde(default)]` (which, on a field of
    // type `R`, would ask `R: Default`).
    output: Option<R>,
    status: Option<String>,
    failure_reason: Option<String>,
    created_at: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    attempt: Option<u32>,
    retry_pending: Option<bool>,
    next_attempt_at: Option<String>,
}

/// The summary's parts, and which attempt the body reports in `attempt`.
pub(super) fn summary(body: &[u8], attempt: &mut Attempt) -> Result<Parts, PayloadError> {
    match json::object_from_body_either::<Summary<&RawValue>, Summary<IgnoredAny>>(body)? {
        Read::Strict(run) => {
            let result = ResultSpan::of(body, run.output);
            Ok(parts(run, result, attempt))
        }
        Read::Lenient(run) => Ok(parts(run, ResultSpan::NotASlice, attempt)),
    }
}

fn parts<R>(run: Summary<R>, result: ResultSpan, attempt: &mut Attempt) -> Parts {
    *attempt = Attempt {
        number: run.attempt,
        phase: RunPhase::of(run.retry_pending, run.next_attempt_at),
    };
    Parts {
        status: RunStatus::from_optional(run.status.as_deref()),
        error: run.failure_reason.map(|message| RunError {
            message,
            category: None,
        }),
        run_id: run.run_id,
        id_field: "run_id",

        event: None,
        timestamps: RunTimestamps {
            created_at: run.created_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
        },
        result,
    }
}

pub(super) fn payload(body: &[u8]) -> Result<ProviderPayload, PayloadError> {
    Ok(ProviderPayload::Skyvern(Box::new(json::object_from_body(
        body,
    )?)))
}
