//! What the platforms that report a job's progress as well as its end (Browserbase, Firecrawl)
//! share: the status an event type names, and the identity of an event that is not the end.

use super::RunStatus;

/// The status an event type's last segment names (`crawl.completed`,
/// `functions.invocations.failed`, `agent.cancelled`); `Unknown` with the whole type for a
/// progress event (`crawl.page`, `agent.action`, `…started`).
pub(super) fn status_of_type(event_type: &str) -> RunStatus {
    let last = event_type.rsplit('.').next().unwrap_or(event_type);
    match last.to_ascii_lowercase().as_str() {
        "completed" | "succeeded" => RunStatus::Completed,
        "failed" => RunStatus::Failed,
        "cancelled" | "canceled" => RunStatus::Cancelled,
        "timed_out" => RunStatus::TimedOut,
        _ => RunStatus::Unknown(event_type.to_string()),
    }
}

/// The qualifier of a progress event's de-duplication key (`<provider>:<id>#<qualifier>`):
/// `None` for the event that ends the job (its key is the job's own, `<provider>:<id>`, so
/// that the end is processed once whatever came before it); for any other event the
/// delivery's own id, stable across the sender's retries, or else its type.
pub(super) fn qualifier(
    status: &RunStatus,
    delivery_id: Option<&str>,
    event_type: &str,
) -> Option<String> {
    if status.is_terminal() {
        return None;
    }
    Some(match delivery_id.filter(|id| !id.trim().is_empty()) {
        Some(id) => id.to_string(),
        None => event_type.to_string(),
    })
}
