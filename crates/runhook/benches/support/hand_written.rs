//! The checks a careful hand-written Skyvern receiver makes before its own de-duplication, as
//! the benches compare runhook against: the signature (HMAC-SHA256 in constant time), then a
//! JSON body with a run id. Shared by the SDK's and the CLI's benches.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// The body parsed and its run id, or the status to answer: 401 for a missing, malformed or
/// wrong signature under `key`, 400 for a body that is not JSON or has no run id.
pub fn verify_and_parse(
    key: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(serde_json::Value, String), StatusCode> {
    let sig = headers
        .get("x-skyvern-signature")
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let sig = hex::decode(sig.as_bytes()).map_err(|_| StatusCode::UNAUTHORIZED)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    if !bool::from(mac.finalize().into_bytes().as_slice().ct_eq(&sig)) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let value =
        serde_json::from_slice::<serde_json::Value>(body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let run_id = value["run_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or(StatusCode::BAD_REQUEST)?;
    Ok((value, run_id))
}

/// A hand-written receiver's route at `path`: the checks of [`verify_and_parse`] under `key`,
/// the run ids seen kept in a set, each new run handed to the returned channel (`capacity`
/// deep). A full channel is answered 503 and the run forgotten, so that a retry is new again.
pub fn route(
    key: &'static str,
    path: &str,
    capacity: usize,
) -> (axum::Router, tokio::sync::mpsc::Receiver<serde_json::Value>) {
    let seen = Arc::new(Mutex::new(HashSet::<String>::new()));
    let (tx, rx) = tokio::sync::mpsc::channel::<serde_json::Value>(capacity);
    let handler = move |headers: HeaderMap, body: Bytes| {
        let seen = seen.clone();
        let tx = tx.clone();
        async move {
            let (value, run_id) = match verify_and_parse(key, &headers, &body) {
                Ok(parsed) => parsed,
                Err(status) => return status,
            };
            if !seen.lock().unwrap().insert(run_id.clone()) {
                return StatusCode::OK;
            }
            match tx.try_send(value) {
                Ok(()) => StatusCode::OK,
                Err(_) => {
                    // Shed: forget the run so that the sender's retry is new again.
                    seen.lock().unwrap().remove(&run_id);
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }
    };
    let router = axum::Router::new().route(path, axum::routing::post(handler));
    (router, rx)
}
