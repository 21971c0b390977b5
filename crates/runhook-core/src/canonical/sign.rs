//! Signing helpers: the exact request Skyvern would send, for tests of a receiver.

use serde_json::Value;

use super::error::CanonicalError;
use crate::auth::sign_skyvern;
use crate::secret::Secret;
use crate::SkyvernSignature;

/// The canonical bytes of a `serde_json::Value`: what Skyvern signs for that payload.
///
/// Whole floats become integers (`3.0` → `3`) and keys keep the map's order: sorted, unless
/// serde_json's `preserve_order` feature is on. runhook does not turn that feature on; to sign
/// a payload in its insertion order, add `serde_json = { version = "1", features =
/// ["preserve_order"] }` to your own `Cargo.toml`, or sign JSON text with
/// [`SkyvernRequest::from_json`], which keeps the text's order. Fails only when nested deeper
/// than [`MAX_DEPTH`](super::MAX_DEPTH).
///
/// ```
/// let body = runhook_core::canonical::canonicalize_value(&serde_json::json!({"steps": 3.0}))?;
/// assert_eq!(body, br#"{"steps":3}"#);
/// # Ok::<(), runhook_core::canonical::CanonicalError>(())
/// ```
pub fn canonicalize_value(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    // Writing a `Value` to a Vec cannot fail: its keys are strings and it holds no
    // non-finite float.
    let json = serde_json::to_vec(value).unwrap_or_default();
    super::canonicalize(&json)
}

/// A delivery exactly as Skyvern would send it: canonical body, signature and timestamp.
///
/// For tests of your own endpoint: post [`SkyvernRequest::body`] with
/// [`SkyvernRequest::headers`].
///
/// ```
/// use runhook_core::canonical::SkyvernRequest;
/// use runhook_core::{Delivery, Secret, SkyvernSignature, Verifier};
///
/// let key = Secret::new("sk_test")?;
/// let request = SkyvernRequest::from_json(&key, br#"{ "run_id": "wr_1", "steps": 4.0 }"#, 1_769_873_016)?;
/// assert_eq!(request.body, br#"{"run_id":"wr_1","steps":4}"#);
///
/// let headers = request.headers();
/// assert_eq!(headers[0], ("Content-Type", "application/json".to_string()));
/// SkyvernSignature::new(key).verify(&Delivery::new(&headers, &request.body))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkyvernRequest {
    /// The exact body bytes (Skyvern's canonical JSON, UTF-8).
    pub body: Vec<u8>,
    /// The `x-skyvern-signature` value: lowercase hex HMAC-SHA256 of `body`.
    pub signature: String,
    /// The `x-skyvern-timestamp` value, Unix seconds (not covered by the signature).
    pub timestamp: i64,
}

impl SkyvernRequest {
    /// The `Content-Type` Skyvern sends.
    pub const CONTENT_TYPE: &'static str = "application/json";

    /// The request for the payload that the JSON text `json` denotes (any spelling; see
    /// [`canonicalize`](super::canonicalize)), signed with `key`, sent at `timestamp`.
    pub fn from_json(key: &Secret, json: &[u8], timestamp: i64) -> Result<Self, CanonicalError> {
        Ok(Self::from_canonical(
            key,
            super::canonicalize(json)?,
            timestamp,
        ))
    }

    /// The request for `payload`, signed with `key`, sent at `timestamp`.
    pub fn from_value(
        key: &Secret,
        payload: &Value,
        timestamp: i64,
    ) -> Result<Self, CanonicalError> {
        Ok(Self::from_canonical(
            key,
            canonicalize_value(payload)?,
            timestamp,
        ))
    }

    fn from_canonical(key: &Secret, body: Vec<u8>, timestamp: i64) -> Self {
        Self {
            signature: sign_skyvern(key, &body),
            body,
            timestamp,
        }
    }

    /// The headers Skyvern sends, in its order: `Content-Type`, `x-skyvern-signature`,
    /// `x-skyvern-timestamp`. Usable directly as a [`HeaderLookup`](crate::HeaderLookup).
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("Content-Type", Self::CONTENT_TYPE.to_owned()),
            (SkyvernSignature::SIGNATURE_HEADER, self.signature.clone()),
            (
                SkyvernSignature::TIMESTAMP_HEADER,
                self.timestamp.to_string(),
            ),
        ]
    }
}
