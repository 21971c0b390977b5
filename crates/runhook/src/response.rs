//! The response policy's answer as an `http` response, for the adapters built on `http`
//! (tower, axum); actix-web has its own types and builds the same answer in `actix.rs`.

use http::header::{HeaderValue, CONNECTION, CONTENT_TYPE, RETRY_AFTER};

use crate::receiver::Outcome;

/// The answer for `outcome`: its status, `Retry-After` (whole seconds, at least 1) when set, a
/// short plain body, and `Connection: close` after a body read timeout or a body over the
/// limit, so that a stalled connection, or one whose body was not read to its end, is dropped.
pub(crate) fn http_response<B: From<String>>(outcome: &Outcome) -> http::Response<B> {
    let mut response = http::Response::new(B::from(outcome.body_text()));
    *response.status_mut() = outcome.status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(after) = outcome.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
    }
    if outcome.closes_connection() {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
