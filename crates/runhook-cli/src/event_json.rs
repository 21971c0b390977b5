//! The unified run event as JSON, as `runhook parse` prints it and `runhook serve` hands it on.

use runhook::canonical::parse_lenient;
use runhook::payload::RunEvent;
use serde_json::{json, Value};

/// What runhook read from the body: provider, keys, status, result and error.
pub fn summary(event: &RunEvent) -> Value {
    json!({
        "provider": event.provider.as_str(),
        "dedup_key": event.dedup_key,
        "run_id": event.run_id,
        "status": event.status.as_str(),
        "event": event.event,
        "result": event.result(),
        "error": event.error.as_ref().map(|e| json!({"message": e.message, "category": e.category})),
    })
}

/// The summary plus the whole body as sent (`NaN` and over-long integers kept as their text),
/// for handlers that need more than runhook reads.
pub fn record(event: &RunEvent) -> Value {
    let mut record = summary(event);
    let body = parse_lenient(&event.raw_body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&event.raw_body).into_owned()));
    record["body"] = body;
    record
}
