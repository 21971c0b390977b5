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
