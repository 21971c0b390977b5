//! Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature` (a space-separated
//! list of `v1,<base64 HMAC-SHA256>` over `{id}.{timestamp}.{body}`), keyed by a `whsec_` secret.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use super::{check_timestamp, first_match, system_clock};
use crate::error::{AuthError, SchemeKind};
use crate::headers::required_ascii_header;
use crate::secret::{Secret, Secrets};
use crate::verify::{Clock, Delivery, TimestampCheck, Verified, Verifier};

const ID_HEADER: Cow<'static, str> = Cow::Borrowed("webhook-id");
const TIMESTAMP_HEADER: Cow<'static, str> = Cow::Borrowed("webhook-timestamp");
const SIGNATURE_HEADER: Cow<'static, str> = Cow::Borrowed("webhook-signature");

/// Verifies a Standard Webhooks delivery; the timestamp is signed and must be within the
/// tolerance (default 5 minutes) of now in either direction.
///
/// Keys are the decoded bytes of `whsec_` secrets: build them with
/// [`Secret::from_standard_webhooks`].
///
/// ```
/// use runhook_core::{sign_standard_webhooks, Delivery, Secret, StandardWebhooks, Verifier};
///
/// let key = Secret::from_standard_webhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
/// let body = br#"{"run_id":"r1"}"#;
/// let signature = sign_standard_webhooks(&key, "msg_1", now, body);
/// let headers = [
///     ("webhook-id", "msg_1".to_string()),
///     ("webhook-timestamp", now.to_string()),
///     ("webhook-signature", signature),
/// ];
/// let verified = StandardWebhooks::new(key).verify(&Delivery::new(&headers, body))?;
/// assert_eq!(verified.message_id.as_deref(), Some("msg_1"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct StandardWebhooks {
    keys: Secrets,
    tolerance: Duration,
    clock: Arc<dyn Clock>,
}

impl StandardWebhooks {
    /// The tolerance used unless [`StandardWebhooks::with_tolerance`] sets another: 5 minutes.
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
    /// The header carrying the signatures.
    pub const SIGNATURE_HEADER_NAME: &'static str = "webhook-signature";

    /// Accepts deliveries signed with any of `keys`.
    pub fn new(keys: impl Into<Secrets>) -> Self {
        Self {
            keys: keys.into(),
            tolerance: Self::DEFAULT_TOLERANCE,
            clock: system_clock(),
        }
    }

    /// Sets how far `webhook-timestamp` may be from now, in either direction.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Uses `clock` for the timestamp check (tests, replays of captured deliveries).
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

/// The `v1` signatures in a `webhook-signature` value, decoded. Entries of other versions are
/// skipped, as the specification asks; an undecodable `v1` entry is skipped too.
fn v1_signatures(value: &str) -> Vec<[u8; 32]> {
    value
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| {
            let mut out = [0u8; 32];
            match base64::engine::general_purpose::STANDARD.decode_slice(encoded, &mut out) {
                Ok(32) => Some(out),
                _ => None,
            }
        })
        .collect()
}

impl Verifier for StandardWebhooks {
    fn credential_headers(&self) -> Vec<&str> {
        vec![Self::SIGNATURE_HEADER_NAME]
    }

    fn verify(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        let id = required_ascii_header(delivery.headers, &ID_HEADER)?;
        let timestamp_text = required_ascii_header(delivery.headers, &TIMESTAMP_HEADER)?;
        let signatures = v1_signatures(required_ascii_header(delivery.headers, &SIGNATURE_HEADER)?);
        if signatures.is_empty() {
            return Err(AuthError::MalformedHeader {
                name: SIGNATURE_HEADER,
                reason: "no `v1,<base64 of 32 bytes>` entry".into(),
            });
        }
        let timestamp = check_timestamp(
            delivery.headers,
            &TIMESTAMP_HEADER,
            self.tolerance,
            self.clock.as_ref(),
        )?;
        let index = first_match(self.keys.iter(), |key| {
            let expected = mac(key, id, timestamp_text, delivery.body);
            let mut any = subtle::Choice::from(0);
            for signature in &signatures {
                any |= expected.ct_eq(signature);
            }
            any
        })
        .ok_or(AuthError::SignatureMismatch {
            scheme: SchemeKind::StandardWebhooks,
        })?;
        let mut verified = Verified::new(SchemeKind::StandardWebhooks, index);
        verified.timestamp = TimestampCheck::WithinTolerance {
            timestamp,
            covered_by_signature: true,
        };
        verified.message_id = Some(id.to_string());
        Ok(verified)
    }

    fn schemes(&self) -> Vec<SchemeKind> {
        vec![SchemeKind::StandardWebhooks]
    }
}

fn mac(key: &Secret, id: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The `webhook-signature` value (`v1,<base64>`) for a message, for tests of your own endpoint.
pub fn sign_standard_webhooks(key: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(key, id, &timestamp.to_string(), body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::FixedClock;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    fn scheme() -> StandardWebhooks {
        StandardWebhooks::new(Secret::from_standard_webhooks(SECRET).unwrap())
            .with_clock(FixedClock(TS))
    }

    fn headers(signature: &str) -> Vec<(&'static str, String)> {
        vec![
            ("webhook-id", ID.to_string()),
            ("webhook-timestamp", TS.to_string()),
            ("webhook-signature", signature.to_string()),
        ]
    }

    fn independent_signature(id: &str, ts: &str, body: &[u8]) -> String {
        // Built straight from the specification's words, not through `mac`.
        let key = base64::engine::general_purpose::STANDARD
            .decode(SECRET.trim_start_matches("whsec_"))
            .unwrap();
        let mut content = Vec::new();
        content.extend_from_slice(format!("{id}.{ts}.").as_bytes());
        content.extend_from_slice(body);
        let mut m = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        m.update(&content);
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
        )
    }

    #[test]
    fn known_answer_from_the_specification() {
        let key = Secret::from_standard_webhooks(SECRET).unwrap();
        let published = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(sign_standard_webhooks(&key, ID, TS, BODY), published);
        assert_eq!(independent_signature(ID, &TS.to_string(), BODY), published);
        let verified = scheme()
            .verify(&Delivery::new(&headers(published), BODY))
            .unwrap();
        assert_eq!(verified.message_id.as_deref(), Some(ID));
        assert_eq!(
            verified.timestamp,
            TimestampCheck::WithinTolerance {
                timestamp: TS,
                covered_by_signature: true
            }
        );
    }

    #[test]
    fn any_v1_entry_in_the_list_may_match() {
        let good = independent_signature(ID, &TS.to_string(), BODY);
        let list = format!("v1a,xyz v1,AAAA {good} v2,zzz");
        assert!(scheme()
            .verify(&Delivery::new(&headers(&list), BODY))
            .is_ok());
    }

    #[test]
    fn tampering_and_time_are_rejected() {
        let good = independent_signature(ID, &TS.to_string(), BODY);
        let err = scheme()
            .verify(&Delivery::new(&headers(&good), br#"{"test": 2432232315}"#))
            .unwrap_err();
        assert_eq!(
            err,
            AuthError::SignatureMismatch {
                scheme: SchemeKind::StandardWebhooks
            }
        );
        for offset in [-301, 301] {
            let late = scheme().with_clock(FixedClock(TS + offset));
            let err = late
                .verify(&Delivery::new(&headers(&good), BODY))
                .unwrap_err();
            assert!(
                matches!(err, AuthError::TimestampOutsideTolerance { .. }),
                "{err:?}"
            );
        }
        let wide = scheme()
            .with_tolerance(Duration::from_secs(600))
            .with_clock(FixedClock(TS + 500));
        assert!(wide.verify(&Delivery::new(&headers(&good), BODY)).is_ok());
        // A signature made for another id does not carry over.
        let other = independent_signature("msg_other", &TS.to_string(), BODY);
        assert!(scheme()
            .verify(&Delivery::new(&headers(&other), BODY))
            .is_err());
    }

    #[test]
    fn malformed_headers_are_typed() {
        let err = scheme()
            .verify(&Delivery::new(&headers("v2,abc"), BODY))
            .unwrap_err();
        assert!(matches!(err, AuthError::MalformedHeader { .. }), "{err:?}");
        let mut missing_id = headers("v1,AAAA");
        missing_id.remove(0);
        let err = scheme()
            .verify(&Delivery::new(&missing_id, BODY))
            .unwrap_err();
        assert!(matches!(err, AuthError::MissingHeader { .. }), "{err:?}");
        let good = independent_signature(ID, &TS.to_string(), BODY);
        let mut bad_ts = headers(&good);
        bad_ts[1].1 = "soon".into();
        let err = scheme().verify(&Delivery::new(&bad_ts, BODY)).unwrap_err();
        assert!(matches!(err, AuthError::MalformedHeader { .. }), "{err:?}");
    }
}
