//! Browser Use: `X-Browser-Use-Signature` is the hex HMAC-SHA256 of `"{timestamp}.{payload}"`,
//! keyed by the webhook secret's text, where `timestamp` is the `X-Browser-Use-Timestamp`
//! header as sent (Unix seconds) and `payload` is the body re-serialized as Python's
//! `json.dumps(json.loads(body), separators=(",", ":"), sort_keys=True)`
//! ([`canonicalize_sorted`](crate::canonical::canonicalize_sorted)). The signature covers the
//! timestamp, so the window is a real replay defence.
//!
//! Older Browser Use deliveries carry `X-Webhook-Signature` instead: the hex HMAC-SHA256 of the
//! raw body alone, with no timestamp. The two are told apart by their header; the older one is
//! accepted unless refused with [`LegacySignature::Refuse`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use super::{check_timestamp, first_match, hex_sha256_header, system_clock};
use crate::canonical::{sorted_into, CanonicalError, Out};
use crate::error::{AuthError, SchemeKind};
use crate::headers::{required_ascii_header, single_header, SingleHeader};
use crate::secret::{Secret, Secrets};
use crate::verify::{BeforeBody, BodyMatch, Clock, Delivery, TimestampCheck, Verified, Verifier};

const SIGNATURE_HEADER: Cow<'static, str> = Cow::Borrowed("x-browser-use-signature");
const TIMESTAMP_HEADER: Cow<'static, str> = Cow::Borrowed("x-browser-use-timestamp");
const LEGACY_SIGNATURE_HEADER: Cow<'static, str> = Cow::Borrowed("x-webhook-signature");

/// Whether [`BrowserUseSignature`] accepts Browser Use's older `X-Webhook-Signature` (the HMAC
/// of the raw body alone, with no timestamp and so no replay window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacySignature {
    /// Accepted when the delivery carries no `X-Browser-Use-Signature` (the default).
    Accept,
    /// Refused: only the timestamped signature is accepted.
    Refuse,
}

/// Verifies Browser Use's `X-Browser-Use-Signature` (and, unless refused, its older
/// `X-Webhook-Signature`) with any of the accepted webhook secrets.
///
/// The signature covers the payload's sorted-key re-serialization, not the bytes sent: a body
/// that is not already in that form is re-serialized to check it, straight into the MACs (no
/// copy of the output is built). Bodies up to [`BrowserUseSignature::INLINE_SORT_MAX`] are
/// re-serialized by [`Verifier::verify_exact`]; larger ones only by [`Verifier::verify`], which
/// a receiver runs off its async workers.
///
/// ```
/// use runhook_core::{sign_browser_use, BrowserUseSignature, Delivery, FixedClock, Secret, Verifier};
///
/// let secret = Secret::new("bu_whsec_example")?;
/// let body = br#"{"type": "agent.task.status_update", "timestamp": "2026-12-07T10:30:00Z",
///     "payload": {"task_id": "task_1", "session_id": "s_1", "status": "finished"}}"#;
/// let now = 1_796_640_000;
/// let headers = [
///     ("x-browser-use-signature", sign_browser_use(&secret, now, body)?),
///     ("x-browser-use-timestamp", now.to_string()),
/// ];
/// let scheme = BrowserUseSignature::new(secret).with_clock(FixedClock(now + 60));
/// assert!(scheme.verify(&Delivery::new(&headers, body)).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct BrowserUseSignature {
    keys: Secrets,
    tolerance: Duration,
    clock: Arc<dyn Clock>,
    legacy: LegacySignature,
    max_canonical_len: usize,
}

impl BrowserUseSignature {
    /// The header carrying the signature.
    pub const SIGNATURE_HEADER: &'static str = "x-browser-use-signature";
    /// The header carrying the send time in Unix seconds, covered by the signature.
    pub const TIMESTAMP_HEADER: &'static str = "x-browser-use-timestamp";
    /// The header of the older form: the HMAC of the raw body alone.
    pub const LEGACY_SIGNATURE_HEADER: &'static str = "x-webhook-signature";
    /// How far the timestamp may be from now unless told otherwise: 5 minutes, as Browser
    /// Use's own verification example allows.
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
    /// The largest body [`Verifier::verify_exact`] re-serializes (64 KiB): Browser Use's
    /// status updates are a few hundred bytes.
    pub const INLINE_SORT_MAX: usize = 64 * 1024;
    /// The longest re-serialization built unless
    /// [`BrowserUseSignature::with_canonical_max_len`] says otherwise: 2 MiB, runhook's
    /// default body limit.
    pub const DEFAULT_CANONICAL_MAX_LEN: usize = 2 * 1024 * 1024;

    /// Accepts deliveries signed with any of `keys` (the webhook secrets), timestamped within
    /// [`BrowserUseSignature::DEFAULT_TOLERANCE`], and the older untimestamped form.
    pub fn new(keys: impl Into<Secrets>) -> Self {
        Self {
            keys: keys.into(),
            tolerance: Self::DEFAULT_TOLERANCE,
            clock: system_clock(),
            legacy: LegacySignature::Accept,
            max_canonical_len: Self::DEFAULT_CANONICAL_MAX_LEN,
        }
    }

    /// Requires the timestamp within `tolerance` of now, in either direction.
    pub fn with_timestamp_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Whether the older `X-Webhook-Signature` is accepted.
    pub fn with_legacy(mut self, legacy: LegacySignature) -> Self {
        self.legacy = legacy;
        self
    }

    /// The longest re-serialization built, in bytes (default
    /// [`BrowserUseSignature::DEFAULT_CANONICAL_MAX_LEN`]): set it to the receiver's body limit.
    pub fn with_canonical_max_len(mut self, bytes: usize) -> Self {
        self.max_canonical_len = bytes;
        self
    }

    /// Uses `clock` for the timestamp window (tests, replays of captured deliveries).
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Which form the delivery carries, decided from its headers alone.
    fn form(&self, delivery: &Delivery<'_>) -> Result<Form, AuthError> {
        let present =
            |name: &str| !matches!(single_header(delivery.headers, name), SingleHeader::Missing);
        if present(Self::SIGNATURE_HEADER) {
            return Ok(Form::Timestamped);
        }
        match self.legacy {
            LegacySignature::Accept if present(Self::LEGACY_SIGNATURE_HEADER) => Ok(Form::Legacy),
            _ => Err(AuthError::MissingHeader {
                name: SIGNATURE_HEADER,
            }),
        }
    }

    /// The timestamp's text as sent (it is signed as is) and its value, within the window.
    fn timestamp<'a>(&self, delivery: &Delivery<'a>) -> Result<(&'a str, i64), AuthError> {
        let text = required_ascii_header(delivery.headers, &TIMESTAMP_HEADER)?;
        let value = check_timestamp(
            delivery.headers,
            &TIMESTAMP_HEADER,
            self.tolerance,
            self.clock.as_ref(),
        )?;
        Ok((text, value))
    }

    /// The check, re-serializing bodies of at most `sort_limit` bytes.
    fn check(&self, delivery: &Delivery<'_>, sort_limit: usize) -> Result<Verified, AuthError> {
        match self.form(delivery)? {
            Form::Legacy => {
                let presented = hex_sha256_header(delivery.headers, &LEGACY_SIGNATURE_HEADER)?;
                let index = first_match(self.keys.iter(), |key| {
                    let mut mac = keyed(key);
                    mac.update(delivery.body);
                    finish(mac).ct_eq(&presented)
                })
                .ok_or(self.mismatch())?;
                let mut verified = Verified::new(SchemeKind::BrowserUse, index);
                verified.body = BodyMatch::Exact;
                Ok(verified)
            }
            Form::Timestamped => {
                let presented = hex_sha256_header(delivery.headers, &SIGNATURE_HEADER)?;
                let (text, timestamp) = self.timestamp(delivery)?;
                let prefixed: Vec<Hmac<Sha256>> = self
                    .keys
                    .iter()
                    .map(|key| {
                        let mut mac = keyed(key);
                        mac.update(text.as_bytes());
                        mac.update(b".");
                        mac
                    })
                    .collect();
                // The body as sent is already the signed form when the sender sent its dump.
                let exact = first_match(prefixed.iter(), |mac| {
                    let mut mac = mac.clone();
                    mac.update(delivery.body);
                    finish(mac).ct_eq(&presented)
                });
                let (index, body) = match exact {
                    Some(index) => (index, BodyMatch::Exact),
                    None if delivery.body.len() <= sort_limit => {
                        let mut out = MacOut::new(prefixed);
                        sorted_into(delivery.body, &mut out, self.max_canonical_len)
                            .map_err(|_: CanonicalError| self.mismatch())?;
                        let tags = out.finish();
                        let index = first_match(tags.iter(), |tag| tag.ct_eq(&presented))
                            .ok_or(self.mismatch())?;
                        (index, BodyMatch::Reserialized)
                    }
                    None => return Err(self.mismatch()),
                };
                let mut verified = Verified::new(SchemeKind::BrowserUse, index);
                verified.timestamp = TimestampCheck::WithinTolerance {
                    timestamp,
                    covered_by_signature: true,
                };
                verified.body = body;
                Ok(verified)
            }
        }
    }

    fn mismatch(&self) -> AuthError {
        AuthError::SignatureMismatch {
            scheme: SchemeKind::BrowserUse,
        }
    }
}

/// The two signatures Browser Use has sent.
enum Form {
    /// `X-Browser-Use-Signature` over the timestamp and the sorted payload.
    Timestamped,
    /// `X-Webhook-Signature` over the raw body.
    Legacy,
}

impl Verifier for BrowserUseSignature {
    fn verify(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        self.check(delivery, usize::MAX)
    }

    fn verify_exact(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        self.check(delivery, Self::INLINE_SORT_MAX)
    }

    fn has_fallback(&self) -> bool {
        true
    }

    /// Refuses, unread, a delivery with no signature header, or whose signed timestamp is
    /// missing or outside the window.
    fn verify_before_body(&self, delivery: &Delivery<'_>) -> BeforeBody {
        let refused = match self.form(delivery) {
            Err(err) => err,
            Ok(Form::Legacy) => return BeforeBody::NeedsBody,
            Ok(Form::Timestamped) => match self.timestamp(delivery) {
                Err(err) => err,
                Ok(_) => return BeforeBody::NeedsBody,
            },
        };
        BeforeBody::Decided(Err(refused))
    }

    fn credential_headers(&self) -> Vec<&str> {
        vec![Self::SIGNATURE_HEADER, Self::LEGACY_SIGNATURE_HEADER]
    }

    fn schemes(&self) -> Vec<SchemeKind> {
        vec![SchemeKind::BrowserUse]
    }
}

fn keyed(key: &Secret) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes any key length")
}

fn finish(mac: Hmac<Sha256>) -> [u8; 32] {
    mac.finalize().into_bytes().into()
}

/// The sorted form written into one MAC per key through a small buffer.
struct MacOut {
    macs: Vec<Hmac<Sha256>>,
    buffer: [u8; 512],
    filled: usize,
}

impl MacOut {
    fn new(macs: Vec<Hmac<Sha256>>) -> Self {
        Self {
            macs,
            buffer: [0; 512],
            filled: 0,
        }
    }

    fn flush(&mut self) {
        let pending = &self.buffer[..self.filled];
        for mac in &mut self.macs {
            mac.update(pending);
        }
        self.filled = 0;
    }

    fn finish(mut self) -> Vec<[u8; 32]> {
        self.flush();
        self.macs.into_iter().map(finish).collect()
    }
}

impl Out for MacOut {
    fn put(&mut self, bytes: &[u8]) {
        if self.filled + bytes.len() > self.buffer.len() {
            self.flush();
        }
        if bytes.len() > self.buffer.len() {
            for mac in &mut self.macs {
                mac.update(bytes);
            }
            return;
        }
        self.buffer[self.filled..self.filled + bytes.len()].copy_from_slice(bytes);
        self.filled += bytes.len();
    }
}

/// The `X-Browser-Use-Signature` value Browser Use sends for `body` at `timestamp` (Unix
/// seconds, sent as `X-Browser-Use-Timestamp`), signed with `key`: the hex HMAC-SHA256 of
/// `"{timestamp}.{sorted payload}"`. Fails when `body` is not JSON Python could load. For tests
/// of your own endpoint.
pub fn sign_browser_use(
    key: &Secret,
    timestamp: i64,
    body: &[u8],
) -> Result<String, CanonicalError> {
    let mut mac = keyed(key);
    mac.update(format!("{timestamp}.").as_bytes());
    let mut out = MacOut::new(vec![mac]);
    sorted_into(body, &mut out, usize::MAX)?;
    let tag = out.finish().pop().unwrap_or_default();
    Ok(hex::encode(tag))
}

/// The older `X-Webhook-Signature` value: the hex HMAC-SHA256 of the raw `body`.
pub fn sign_browser_use_legacy(key: &Secret, body: &[u8]) -> String {
    let mut mac = keyed(key);
    mac.update(body);
    hex::encode(finish(mac))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::FixedClock;

    const NOW: i64 = 1_796_640_000;
    const BODY: &[u8] = br#"{"type": "agent.task.status_update", "timestamp": "2026-12-07T10:30:00Z", "payload": {"task_id": "task_1", "session_id": "s_1", "status": "finished", "metadata": {"note": "caf\u00e9"}}}"#;

    fn secret() -> Secret {
        Secret::new("bu-secret").unwrap()
    }

    fn scheme() -> BrowserUseSignature {
        BrowserUseSignature::new(secret()).with_clock(FixedClock(NOW))
    }

    /// The documented recipe, written out by hand: HMAC of `"{ts}.{sorted dump}"`.
    fn independent(key: &[u8], timestamp: &str, dump: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(dump);
        hex::encode(mac.finalize().into_bytes())
    }

    const SORTED: &[u8] = br#"{"payload":{"metadata":{"note":"caf\u00e9"},"session_id":"s_1","status":"finished","task_id":"task_1"},"timestamp":"2026-12-07T10:30:00Z","type":"agent.task.status_update"}"#;

    fn check(headers: &[(&str, String)], body: &[u8]) -> Result<Verified, AuthError> {
        scheme().verify(&Delivery::new(&headers, body))
    }

    fn signed(signature: String, timestamp: &str) -> Vec<(&'static str, String)> {
        vec![
            ("X-Browser-Use-Signature", signature),
            ("X-Browser-Use-Timestamp", timestamp.to_string()),
        ]
    }

    #[test]
    fn signs_the_sorted_payload_as_the_recipe_does() {
        let signature = independent(b"bu-secret", &NOW.to_string(), SORTED);
        assert_eq!(sign_browser_use(&secret(), NOW, BODY).unwrap(), signature);
        let verified = check(&signed(signature.clone(), &NOW.to_string()), BODY).unwrap();
        assert_eq!(verified.body, BodyMatch::Reserialized);
        assert_eq!(verified.scheme, SchemeKind::BrowserUse);
        assert_eq!(
            verified.timestamp,
            TimestampCheck::WithinTolerance {
                timestamp: NOW,
                covered_by_signature: true
            }
        );
        // The dump itself, sent as the body, matches as it is.
        let exact = check(&signed(signature, &NOW.to_string()), SORTED).unwrap();
        assert_eq!(exact.body, BodyMatch::Exact);
    }

    #[test]
    fn the_inline_check_leaves_large_bodies_to_the_full_one() {
        let padding = "x".repeat(BrowserUseSignature::INLINE_SORT_MAX);
        let body = format!(r#"{{"type": "test", "payload": {{"pad": "{padding}"}}}}"#);
        let headers = signed(
            sign_browser_use(&secret(), NOW, body.as_bytes()).unwrap(),
            &NOW.to_string(),
        );
        let delivery = Delivery::new(&headers, body.as_bytes());
        assert!(scheme().verify_exact(&delivery).is_err());
        assert!(scheme().has_fallback());
        assert_eq!(
            scheme().verify(&delivery).unwrap().body,
            BodyMatch::Reserialized
        );
        let bounded = scheme().with_canonical_max_len(1024);
        assert!(bounded.verify(&delivery).is_err());
    }

    #[test]
    fn tampered_wrong_key_stale_and_moved_timestamps_are_refused() {
        let ts = NOW.to_string();
        let good = independent(b"bu-secret", &ts, SORTED);
        let mismatch = AuthError::SignatureMismatch {
            scheme: SchemeKind::BrowserUse,
        };
        let tampered = String::from_utf8(BODY.to_vec())
            .unwrap()
            .replace("finished", "stopped");
        assert_eq!(
            check(&signed(good.clone(), &ts), tampered.as_bytes()).unwrap_err(),
            mismatch
        );
        let wrong_key = independent(b"other", &ts, SORTED);
        assert_eq!(check(&signed(wrong_key, &ts), BODY).unwrap_err(), mismatch);
        // The timestamp is signed: moving it breaks the signature.
        let moved = (NOW + 1).to_string();
        assert_eq!(
            check(&signed(good.clone(), &moved), BODY).unwrap_err(),
            mismatch
        );
        // A genuine signature of a stale delivery: outside the window.
        let stale = (NOW - 301).to_string();
        let old = independent(b"bu-secret", &stale, SORTED);
        assert!(matches!(
            check(&signed(old, &stale), BODY),
            Err(AuthError::TimestampOutsideTolerance { .. })
        ));
        assert!(matches!(
            check(&[("x-browser-use-signature", good)], BODY),
            Err(AuthError::MissingHeader { .. })
        ));
        assert!(matches!(
            check(&signed("zz".repeat(32), &ts), BODY),
            Err(AuthError::MalformedHeader { .. })
        ));
        // Not JSON: nothing to re-serialize, refused.
        let of_empty = independent(b"bu-secret", &ts, b"{}");
        assert_eq!(check(&signed(of_empty, &ts), b"{").unwrap_err(), mismatch);
    }

    #[test]
    fn the_legacy_form_is_told_apart_by_its_header_and_can_be_refused() {
        let legacy = [(
            "X-Webhook-Signature",
            sign_browser_use_legacy(&secret(), BODY),
        )];
        let verified = check(&legacy, BODY).unwrap();
        assert_eq!(verified.timestamp, TimestampCheck::NotChecked);
        assert_eq!(verified.body, BodyMatch::Exact);
        assert!(check(&legacy, SORTED).is_err());
        let strict = scheme().with_legacy(LegacySignature::Refuse);
        assert!(matches!(
            strict.verify(&Delivery::new(&legacy, BODY)),
            Err(AuthError::MissingHeader { .. })
        ));
        // With both headers, the timestamped one decides.
        let both = [
            legacy[0].clone(),
            ("X-Browser-Use-Signature", "0".repeat(64)),
            ("X-Browser-Use-Timestamp", NOW.to_string()),
        ];
        assert!(check(&both, BODY).is_err());
    }

    #[test]
    fn headers_alone_refuse_an_unsigned_or_stale_delivery_before_its_body() {
        let before =
            |headers: &[(&str, String)]| scheme().verify_before_body(&Delivery::new(&headers, b""));
        assert!(matches!(before(&[]), BeforeBody::Decided(Err(_))));
        let stale = signed("0".repeat(64), &(NOW - 1000).to_string());
        assert!(matches!(before(&stale), BeforeBody::Decided(Err(_))));
        let fresh = signed("0".repeat(64), &NOW.to_string());
        assert_eq!(before(&fresh), BeforeBody::NeedsBody);
        let legacy = [("x-webhook-signature", "0".repeat(64))];
        assert_eq!(before(&legacy), BeforeBody::NeedsBody);
    }

    #[test]
    fn the_mac_writer_matches_the_buffered_form_across_its_buffer() {
        let long = "é".repeat(700);
        let body = format!(r#"{{"b": "{long}", "a": [1.0, 2e30, "{long}"]}}"#);
        let dump = crate::canonical::canonicalize_sorted(body.as_bytes()).unwrap();
        assert_eq!(
            sign_browser_use(&secret(), 7, body.as_bytes()).unwrap(),
            independent(b"bu-secret", "7", &dump)
        );
    }
}
