//! A run as a platform's run API returns it, turned into the same [`RunEvent`] as its webhook
//! (`GET /v1/runs/{id}` and the like; where each lives is in [`crate::platform`]).
//!
//! | platform | the API's body | the webhook body it becomes |
//! |---|---|---|
//! | Skyvern | the webhook payload's own fields | the same bytes (`retry_pending: true`: not over) |
//! | TinyFish | the webhook's `data` | `{"event": "run.<status>", "run_id", "status", "data": <body>}` |
//! | SmartBrowse | `{"data": {"id", "run_status", …, "result"}}` | the flat webhook body, `result` kept |
//! | Browser Use | `{"id", "sessionId", "status", "output", "finishedAt", …}` | `{"type": "agent.task.status_update", "timestamp", "payload": {"task_id", "session_id", "status", "output"}}` |

use serde_json::{json, Map, Value};

use super::{Confirmation, PayloadError, Provider, RunEvent};
use crate::platform::Platform;

/// What a platform's run API says about one run.
#[derive(Debug, Clone)]
pub enum ApiRun {
    /// The run is over: here it is, as its webhook would have carried it
    /// ([`Confirmation::Confirmed`]).
    Terminal(Box<RunEvent>),
    /// The run is not over yet.
    Pending {
        /// Its status, as the API spells it.
        status: String,
    },
    /// An attempt of the run ended and the platform will run it again (Skyvern's
    /// `retry_pending: true`, whatever its `status` says): not over. The event is that
    /// attempt's interim event ([`RunPhase::Interim`](super::RunPhase)), confirmed; its
    /// phase says when the next attempt starts
    /// ([`RunPhase::retry_not_before`](super::RunPhase::retry_not_before)).
    RetryPending(Box<RunEvent>),
}

/// Why a run API's answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunApiError {
    /// The platform documents no run API (WebRun).
    #[error("{0} documents no run API")]
    NoRunApi(Provider),
    /// The answer is not the run's JSON.
    #[error("the run API's answer is not a run: {0}")]
    NotARun(String),
    /// The answer is about another run than the one asked for.
    #[error("the run API answered for run {answered:?}, not {asked:?}")]
    OtherRun {
        /// The id asked for.
        asked: String,
        /// The id in the answer.
        answered: String,
    },
    /// The run, once turned into its webhook's shape, does not parse as one.
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// Reads `body`, the platform's answer for run `run_id`, as a [`RunEvent`] if the run is over.
///
/// ```
/// use runhook_core::payload::{from_run_api, ApiRun, Provider};
///
/// let body = br#"{"run_id":"r-1","status":"COMPLETED","result":{"n":1}}"#;
/// let ApiRun::Terminal(event) = from_run_api(Provider::TinyFish, "r-1", body)? else {
///     panic!("a completed run is terminal");
/// };
/// assert_eq!(event.dedup_key, "tinyfish:r-1");
/// assert!(event.confirmation.is_confirmed());
/// assert!(matches!(
///     from_run_api(Provider::TinyFish, "r-1", br#"{"run_id":"r-1","status":"RUNNING"}"#)?,
///     ApiRun::Pending { .. }
/// ));
/// # Ok::<(), runhook_core::payload::RunApiError>(())
/// ```
pub fn from_run_api(provider: Provider, run_id: &str, body: &[u8]) -> Result<ApiRun, RunApiError> {
    let api = Platform::of(provider)
        .run_api
        .ok_or(RunApiError::NoRunApi(provider))?;
    let value: Value =
        serde_json::from_slice(body).map_err(|e| RunApiError::NotARun(e.to_string()))?;
    let (status, webhook_body) = match provider {
        Provider::Skyvern => (string_field(&value, "status")?, None),
        Provider::TinyFish => tinyfish(&value, run_id)?,
        Provider::SmartBrowse => smartbrowse(&value, run_id)?,
        Provider::BrowserUse => browser_use(&value, run_id)?,
        Provider::WebRun | Provider::WebRunAi | Provider::Browserbase | Provider::Firecrawl => {
            return Err(RunApiError::NoRunApi(provider))
        }
    };
    if !api.is_terminal(&status) {
        return Ok(ApiRun::Pending { status });
    }
    let bytes = match webhook_body {
        Some(value) => {
            serde_json::to_vec(&value).map_err(|e| RunApiError::NotARun(e.to_string()))?
        }
        None => body.to_vec(),
    };
    let mut event = RunEvent::parse(provider, bytes)?;
    if event.run_id.as_deref() != Some(run_id) {
        return Err(RunApiError::OtherRun {
            asked: run_id.to_string(),
            answered: event.run_id.unwrap_or_default(),
        });
    }
    event.confirmation = Confirmation::Confirmed;
    match event.phase.is_final() {
        true => Ok(ApiRun::Terminal(Box::new(event))),
        false => Ok(ApiRun::RetryPending(Box::new(event))),
    }
}

fn string_field(value: &Value, name: &str) -> Result<String, RunApiError> {
    value
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| RunApiError::NotARun(format!("no string `{name}`")))
}

/// TinyFish: the API's body is the webhook's `data`.
fn tinyfish(value: &Value, run_id: &str) -> Result<(String, Option<Value>), RunApiError> {
    let status = string_field(value, "status")?;
    let id = value
        .get("run_id")
        .and_then(Value::as_str)
        .unwrap_or(run_id);
    let webhook = json!({
        "event": format!("run.{}", status.to_ascii_lowercase()),
        "run_id": id,
        "status": status,
        "data": value,
    });
    Ok((status, Some(webhook)))
}

/// Browser Use: the API's task view, turned into a status update carrying its output.
fn browser_use(value: &Value, run_id: &str) -> Result<(String, Option<Value>), RunApiError> {
    let status = string_field(value, "status")?;
    let id = value.get("id").and_then(Value::as_str).unwrap_or(run_id);
    let webhook = json!({
        "type": super::browser_use::STATUS_UPDATE,
        "timestamp": value.get("finishedAt"),
        "payload": {
            "task_id": id,
            "session_id": value.get("sessionId"),
            "status": status,
            "metadata": value.get("metadata"),
            "output": value.get("output"),
        },
    });
    Ok((status, Some(webhook)))
}

/// SmartBrowse: the API wraps the run in `data` and names its fields differently.
fn smartbrowse(value: &Value, run_id: &str) -> Result<(String, Option<Value>), RunApiError> {
    let data = value
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| RunApiError::NotARun("no `data` object".into()))?;
    let status = data
        .get("run_status")
        .and_then(Value::as_str)
        .ok_or_else(|| RunApiError::NotARun("no string `data.run_status`".into()))?
        .to_string();
    let mut webhook = Map::new();
    webhook.insert("event".into(), status.clone().into());
    webhook.insert(
        "run_id".into(),
        data.get("id").cloned().unwrap_or_else(|| run_id.into()),
    );
    webhook.insert("status".into(), status.clone().into());
    if let Some(at) = data.get("completed_at") {
        webhook.insert("timestamp".into(), at.clone());
    }
    for field in [
        "pages_extracted",
        "items_extracted",
        "credits_used",
        "result",
    ] {
        if let Some(v) = data.get(field) {
            webhook.insert(field.into(), v.clone());
        }
    }
    let error = match data.get("error") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    webhook.insert("error".into(), error.into());
    Ok((status, Some(Value::Object(webhook))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::RunStatus;

    fn terminal(provider: Provider, id: &str, body: &str) -> RunEvent {
        match from_run_api(provider, id, body.as_bytes()).unwrap() {
            ApiRun::Terminal(event) => *event,
            pending => panic!("{pending:?}"),
        }
    }

    #[test]
    fn skyvern_runs_are_their_webhook_bodies() {
        let body =
            r#"{"run_id":"wr_9","status":"failed","failure_reason":"blocked","output":null}"#;
        let event = terminal(Provider::Skyvern, "wr_9", body);
        assert_eq!(event.dedup_key, "skyvern:wr_9");
        assert_eq!(event.status, RunStatus::Failed);
        assert_eq!(&event.raw_body[..], body.as_bytes());
        let running = from_run_api(
            Provider::Skyvern,
            "wr_9",
            br#"{"run_id":"wr_9","status":"running"}"#,
        );
        assert!(matches!(running, Ok(ApiRun::Pending { status }) if status == "running"));
    }

    #[test]
    fn a_skyvern_run_with_a_retry_pending_is_not_over() {
        let body = r#"{"run_id":"wr_7","status":"failed","attempt":1,"retry_pending":true,
            "next_attempt_at":"2026-09-15T12:30:00","attempts":[{"attempt_number":1,
            "status":"failed","retry_decision":"retry"}]}"#;
        let Ok(ApiRun::RetryPending(event)) =
            from_run_api(Provider::Skyvern, "wr_7", body.as_bytes())
        else {
            panic!("a failed run with a retry pending is not terminal");
        };
        assert_eq!(event.attempt, Some(1));
        assert_eq!(event.dedup_key, "skyvern:wr_7#attempt-1");
        assert!(event.phase.retry_not_before().is_some());
        assert!(event.confirmation.is_confirmed());
        let last = r#"{"run_id":"wr_7","status":"completed","attempt":2,"retry_pending":false}"#;
        let event = terminal(Provider::Skyvern, "wr_7", last);
        assert_eq!(event.dedup_key, "skyvern:wr_7");
        assert!(event.phase.is_final());
    }

    #[test]
    fn tinyfish_runs_are_wrapped_as_their_webhook() {
        let event = terminal(
            Provider::TinyFish,
            "tf-1",
            r#"{"run_id":"tf-1","status":"COMPLETED","result":{"price":3}}"#,
        );
        assert_eq!(event.event.as_deref(), Some("run.completed"));
        assert_eq!(event.result(), Some(&json!({"price": 3})));
        assert_eq!(event.confirmation, Confirmation::Confirmed);
    }

    #[test]
    fn smartbrowse_runs_are_flattened_with_their_result() {
        let event = terminal(
            Provider::SmartBrowse,
            "k7",
            r#"{"data":{"id":"k7","run_status":"completed","pages_extracted":5,"items_extracted":87,
                "credits_used":10,"completed_at":"2026-05-21T17:04:12Z","error":null,"result":[{"a":1}]}}"#,
        );
        assert_eq!(event.status, RunStatus::Completed);
        let value: Value = serde_json::from_slice(&event.raw_body).unwrap();
        assert_eq!(value["result"], json!([{"a": 1}]));
        assert_eq!(value["items_extracted"], 87);
        assert_eq!(value["error"], "");
    }

    #[test]
    fn browser_use_tasks_become_the_status_update_that_ends_them() {
        let body = r#"{"id":"task_42","sessionId":"sess_9","llm":"gpt","task":"find it",
            "status":"finished","output":"{\"price\": 3}","finishedAt":"2026-12-07T09:14:03Z",
            "metadata":{"order":"o-1"}}"#;
        let event = terminal(Provider::BrowserUse, "task_42", body);
        assert_eq!(event.dedup_key, "browser-use:task_42");
        assert_eq!(event.status, RunStatus::Completed);
        assert_eq!(event.result(), Some(&json!("{\"price\": 3}")));
        assert_eq!(
            event.timestamps.finished_at.as_deref(),
            Some("2026-12-07T09:14:03Z")
        );
        let typed: &crate::payload::BrowserUseEvent = event.payload_as().unwrap();
        assert_eq!(typed.payload.session_id.as_deref(), Some("sess_9"));
        assert_eq!(typed.payload.metadata, Some(json!({"order": "o-1"})));
        let stopped = terminal(
            Provider::BrowserUse,
            "t",
            r#"{"id":"t","status":"stopped"}"#,
        );
        assert_eq!(stopped.status, RunStatus::Cancelled);
        let running = from_run_api(
            Provider::BrowserUse,
            "t",
            br#"{"id":"t","status":"started"}"#,
        );
        assert!(matches!(running, Ok(ApiRun::Pending { status }) if status == "started"));
    }

    #[test]
    fn an_answer_for_another_run_or_not_a_run_is_refused() {
        assert!(matches!(
            from_run_api(
                Provider::TinyFish,
                "asked",
                br#"{"run_id":"other","status":"COMPLETED"}"#
            ),
            Err(RunApiError::OtherRun { .. })
        ));
        assert!(matches!(
            from_run_api(Provider::Skyvern, "r", b"<html>"),
            Err(RunApiError::NotARun(_))
        ));
        assert!(matches!(
            from_run_api(Provider::SmartBrowse, "r", br#"{"id":"r"}"#),
            Err(RunApiError::NotARun(_))
        ));
        assert_eq!(
            from_run_api(Provider::WebRun, "r", b"{}").unwrap_err(),
            RunApiError::NoRunApi(Provider::WebRun)
        );
    }
}
