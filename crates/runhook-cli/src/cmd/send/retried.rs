//! `runhook send --interim-attempts N`: a Skyvern workflow run retried under one run id, as
//! Skyvern sends it with `webhook_on_retry: "every_attempt"`: an interim webhook for each
//! failed attempt that will be retried, then the final one.

use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use super::SendError;

/// How long after an interim webhook its next attempt is announced for (the
/// `retry_policy.delay_seconds` the bodies claim).
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// The deliveries of a run retried `interim` times before `payload` (a Skyvern run, its
/// outcome) is its final attempt: `interim` bodies for attempts 1..=interim (`status:
/// "failed"`, `retry_pending: true`, `next_attempt_at`), then `payload` as attempt
/// `interim + 1` with `retry_pending: false`; each named `attempt N (interim|final)`. All carry
/// the same `run_id` and the growing `attempts[]` history.
pub fn deliveries(payload: &[u8], interim: u32) -> Result<Vec<(String, Vec<u8>)>, SendError> {
    let final_run = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(run)) if run.get("run_id").is_some_and(Value::is_string) => run,
        _ => return Err(SendError::NotARun),
    };
    let mut history = Vec::new();
    let mut bodies = Vec::new();
    for attempt in 1..=interim {
        let reason = format!("attempt {attempt} failed (played by runhook send)");
        history.push(json!({
            "attempt_number": attempt,
            "status": "failed",
            "failure_reason": reason,
            "error_codes": [],
            "retry_decision": "retry",
            "webhook_sent_at": iso8601(SystemTime::now()),
        }));
        let mut run = final_run.clone();
        run.insert("status".into(), json!("failed"));
        run.insert("failure_reason".into(), json!(reason));
        run.insert("output".into(), Value::Null);
        set_attempt(&mut run, attempt, true, &history);
        let next = iso8601(SystemTime::now() + RETRY_DELAY);
        run.insert("next_attempt_at".into(), json!(next));
        bodies.push((format!("attempt {attempt} (interim)"), to_vec(run)));
    }
    let last = interim + 1;
    let status = final_run
        .get("status")
        .cloned()
        .unwrap_or(json!("completed"));
    history.push(json!({
        "attempt_number": last,
        "status": status,
        "retry_decision": "final",
        "webhook_sent_at": iso8601(SystemTime::now()),
    }));
    let mut run = final_run;
    set_attempt(&mut run, last, false, &history);
    run.insert("next_attempt_at".into(), Value::Null);
    bodies.push((format!("attempt {last} (final)"), to_vec(run)));
    Ok(bodies)
}

fn set_attempt(run: &mut Map<String, Value>, attempt: u32, pending: bool, history: &[Value]) {
    run.insert("attempt".into(), json!(attempt));
    run.insert("retry_pending".into(), json!(pending));
    run.insert("attempts".into(), Value::Array(history.to_vec()));
}

fn to_vec(run: Map<String, Value>) -> Vec<u8> {
    // A map of JSON values always serializes.
    serde_json::to_vec(&Value::Object(run)).unwrap_or_default()
}

/// `at` as Skyvern writes its times: ISO 8601, UTC, microseconds, no zone.
fn iso8601(at: SystemTime) -> String {
    let text = humantime::format_rfc3339_micros(at).to_string();
    text.trim_end_matches('Z').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use runhook::payload::{Provider, RunEvent, RunStatus};

    #[test]
    fn interim_attempts_then_the_final_one_under_one_run_id() {
        let payload = br#"{"run_id":"wr_9","status":"completed","output":{"n":1}}"#;
        let bodies = deliveries(payload, 2).unwrap();
        let names: Vec<&str> = bodies.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "attempt 1 (interim)",
                "attempt 2 (interim)",
                "attempt 3 (final)"
            ]
        );
        let events: Vec<RunEvent> = bodies
            .into_iter()
            .map(|(_, body)| RunEvent::parse(Provider::Skyvern, body).unwrap())
            .collect();
        let keys: Vec<&str> = events.iter().map(|e| e.dedup_key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "skyvern:wr_9#attempt-1",
                "skyvern:wr_9#attempt-2",
                "skyvern:wr_9"
            ]
        );
        assert!(!events[0].phase.is_final() && events[0].phase.retry_not_before().is_some());
        assert_eq!(events[1].status, RunStatus::Failed);
        assert!(events[2].phase.is_final());
        assert_eq!(events[2].attempt, Some(3));
        assert_eq!(events[2].status, RunStatus::Completed);
        assert_eq!(events[2].result(), Some(&json!({"n": 1})));
    }

    #[test]
    fn a_body_that_is_not_a_run_is_refused() {
        for body in [&b"[1]"[..], b"{\"status\":\"completed\"}", b"{"] {
            assert!(matches!(deliveries(body, 1), Err(SendError::NotARun)));
        }
    }
}
