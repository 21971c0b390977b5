//! Signed Skyvern deliveries: the signature header, a run-completed body, a signed POST.

use runhook_core::{sign_skyvern, Secret};

/// The header Skyvern's signature comes in.
pub const SIGNATURE_HEADER: &str = "x-skyvern-signature";

/// Skyvern's signature of `body` under `key` (the header's value).
pub fn signature(key: &str, body: &[u8]) -> String {
    sign_skyvern(&Secret::new(key).expect("a non-empty test key"), body)
}

/// The headers of a Skyvern delivery of `body` signed with `key`: JSON content, signature.
pub fn signed_headers(key: &str, body: &[u8]) -> [(&'static str, String); 2] {
    [
        ("content-type", "application/json".to_owned()),
        (SIGNATURE_HEADER, signature(key, body)),
    ]
}

/// A small Skyvern run-completed body for `run_id` (its `run_id` and `task_id`).
pub fn completed_body(run_id: &str) -> Vec<u8> {
    format!(
        r#"{{"run_id":"{run_id}","task_id":"{run_id}","status":"completed","output":{{"n":1}},"failure_reason":null}}"#
    )
    .into_bytes()
}

/// A JSON POST of `body` to `url`, signed the Skyvern way with `key`.
pub fn signed_post(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    signed_headers(key, body)
        .into_iter()
        .fold(client.post(url), |request, (name, value)| {
            request.header(name, value)
        })
        .body(body.to_vec())
}

/// A Skyvern workflow run's interim body: attempt `attempt` failed and a retry is pending
/// (`retry_pending: true`, `next_attempt_at` as given), as `webhook_on_retry: "every_attempt"`
/// sends it.
pub fn interim_body(run_id: &str, attempt: u32, next_attempt_at: &str) -> Vec<u8> {
    format!(
        r#"{{"run_id":"{run_id}","workflow_run_id":"{run_id}","run_type":"workflow_run","status":"failed","failure_reason":"page did not load","output":null,"attempt":{attempt},"retry_pending":true,"next_attempt_at":"{next_attempt_at}","attempts":[{{"attempt_number":{attempt},"status":"failed","failure_reason":"page did not load","error_codes":["PAGE_LOAD_TIMEOUT"],"retry_decision":"retry","webhook_sent_at":null}}]}}"#
    )
    .into_bytes()
}

/// A Skyvern workflow run's final body after retries: attempt `attempt` completed.
pub fn retried_final_body(run_id: &str, attempt: u32) -> Vec<u8> {
    format!(
        r#"{{"run_id":"{run_id}","workflow_run_id":"{run_id}","run_type":"workflow_run","status":"completed","failure_reason":null,"output":{{"n":{attempt}}},"attempt":{attempt},"retry_pending":false,"next_attempt_at":null}}"#
    )
    .into_bytes()
}
