//! The checks a careful hand-written Skyvern receiver makes before its own de-duplication, as
//! the benches compare runhook against: the signature (HMAC-SHA256 in constant time), then a
//! JSON body with a run id. Shared by the SDK's and the CLI's benches.

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
