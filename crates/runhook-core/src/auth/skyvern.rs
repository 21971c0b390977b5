//! Skyvern: `x-skyvern-signature` is the lowercase hex HMAC-SHA256 of the raw body, keyed by
//! the account's API key.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use super::{check_timestamp, first_match, hex_sha256_header, system_clock};
use crate::error::{AuthError, SchemeKind};
use crate::secret::{Secret, Secrets};
use crate::verify::{BodyMatch, Clock, Delivery, TimestampCheck, Verified, Verifier};

const SIGNATURE_HEADER: Cow<'static, str> = Cow::Borrowed("x-skyvern-signature");
const TIMESTAMP_HEADER: Cow<'static, str> = Cow::Borrowed("x-skyvern-timestamp");

/// Verifies Skyvern's `x-skyvern-signature` on the body bytes exactly as received.
///
/// ```
/// use runhook_core::{sign_skyvern, Delivery, Secret, SkyvernSignature, Verifier};
///
/// let key = Secret::new("sk_live_example")?;
/// let body = br#"{"run_id":"tsk_1","status":"completed"}"#;
/// let signature = sign_skyvern(&key, body);
///
/// let scheme = SkyvernSignature::new(key);
/// let headers = [("x-skyvern-signature", signature)];
/// let verified = scheme.verify(&Delivery::new(&headers, body))?;
/// assert_eq!(verified.key_index, Some(0));
///
/// // One byte changed in the body: rejected.
/// assert!(scheme.verify(&Delivery::new(&headers, b"{\"run_id\":\"tsk_2\"}")).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SkyvernSignature {
    keys: Secrets,
    tolerance: Option<Duration>,
    clock: Arc<dyn Clock>,
    canonical_fallback: bool,
    max_canonical_len: usize,
}

impl SkyvernSignature {
    /// The header carrying the signature.
    pub const SIGNATURE_HEADER: &'static str = "x-skyvern-signature";
    /// The header carrying the send time in Unix seconds. Skyvern does **not** sign it.
    pub const TIMESTAMP_HEADER: &'static str = "x-skyvern-timestamp";
    /// The longest canonical form the fallback builds unless
    /// [`SkyvernSignature::with_canonical_max_len`] says otherwise: 2 MiB, runhook's default
    /// body limit.
    pub const DEFAULT_CANONICAL_MAX_LEN: usize = 2 * 1024 * 1024;

    /// Accepts deliveries signed with any of `keys` (the account API keys).
    pub fn new(keys: impl Into<Secrets>) -> Self {
        Self {
            keys: keys.into(),
            tolerance: None,
            clock: system_clock(),
            canonical_fallback: false,
            max_canonical_len: Self::DEFAULT_CANONICAL_MAX_LEN,
        }
    }

    /// Also accepts a body whose bytes do not match the signature but whose canonical form
    /// (what Skyvern signs for the same payload, rebuilt by [`crate::canonical::canonicalize`])
    /// does: the delivery went through a proxy, gateway or framework that re-serialized the
    /// JSON. Off by default.
    ///
    /// Such a success reports [`BodyMatch::Canonical`] carrying the canonical bytes that
    /// matched: the payload is genuine, but the bytes are not the ones Skyvern
    /// sent. Tried only after the exact bytes fail, so it costs nothing on the normal path; a
    /// body that is not JSON Skyvern could have sent, or whose canonical form is longer than
    /// [`SkyvernSignature::with_canonical_max_len`] (default 2 MiB), is rejected as before.
    ///
    /// The fallback costs up to a canonicalization of the body per failed check: callers on an
    /// async runtime should run [`Verifier::verify_exact`] inline and only call
    /// [`Verifier::verify`] off the async workers when it fails and
    /// [`Verifier::has_fallback`] says so (runhook's receiver does).
    ///
    /// ```
    /// use runhook_core::{sign_skyvern, BodyMatch, Delivery, Secret, SkyvernSignature, Verifier};
    ///
    /// let key = Secret::new("sk_live_example")?;
    /// let signature = sign_skyvern(&key, br#"{"run_id":"wr_1","steps":4}"#);
    /// let headers = [("x-skyvern-signature", signature)];
    /// let reserialized = br#"{ "run_id": "wr_1", "steps": 4.0 }"#;
    ///
    /// let strict = SkyvernSignature::new(key.clone());
    /// assert!(strict.verify(&Delivery::new(&headers, reserialized)).is_err());
    ///
    /// let lenient = SkyvernSignature::new(key).with_canonical_fallback();
    /// let verified = lenient.verify(&Delivery::new(&headers, reserialized))?;
    /// assert!(matches!(verified.body, BodyMatch::Canonical { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_canonical_fallback(mut self) -> Self {
        self.canonical_fallback = true;
        self
    }

    /// The longest canonical form the fallback builds, in bytes (default
    /// [`SkyvernSignature::DEFAULT_CANONICAL_MAX_LEN`]): a body whose canonical form is longer
    /// is rejected without building the rest of it. Set it to the receiver's body limit.
    pub fn with_canonical_max_len(mut self, bytes: usize) -> Self {
        self.max_canonical_len = bytes;
        self
    }

    /// Also requires `x-skyvern-timestamp` within `tolerance` of now, in either direction.
    ///
    /// Skyvern's timestamp is not covered by its signature, so this only turns away honest
    /// stale deliveries (a replay from a log, a queue that sat for hours); it does not stop an
    /// attacker who replays a captured body with a fresh timestamp. Idempotency on `run_id` is
    /// what makes a replay harmless. Successes report
    /// [`TimestampCheck::WithinTolerance`] with `covered_by_signature: false`.
    pub fn with_timestamp_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    /// Uses `clock` for the timestamp window (tests, replays of captured deliveries).
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

impl SkyvernSignature {
    /// The check itself, with the canonical fallback if `fallback` (and configured).
    fn check(&self, delivery: &Delivery<'_>, fallback: bool) -> Result<Verified, AuthError> {
        let presented = hex_sha256_header(delivery.headers, &SIGNATURE_HEADER)?;
        let timestamp = match self.tolerance {
            Some(tolerance) => TimestampCheck::WithinTolerance {
                timestamp: check_timestamp(
                    delivery.headers,
                    &TIMESTAMP_HEADER,
                    tolerance,
                    self.clock.as_ref(),
                )?,
                covered_by_signature: false,
            },
            None => TimestampCheck::NotChecked,
        };
        let matching = |body: &[u8]| {
            first_match(self.keys.iter(), |key| {
                hmac_sha256(key, body).ct_eq(&presented)
            })
        };
        let (index, body) = match matching(delivery.body) {
            Some(index) => (index, BodyMatch::Exact),
            None => (fallback && self.canonical_fallback)
                .then(|| {
                    crate::canonical::canonicalize_reserialized(
                        delivery.body,
                        self.max_canonical_len,
                    )
                    .ok()
                })
                .flatten()
                .filter(|canonical| canonical.as_slice() != delivery.body)
                .and_then(|canonical| matching(&canonical).map(|index| (index, canonical)))
                .map(|(index, canonical)| {
                    let signed = canonical.into();
                    (index, BodyMatch::Canonical { signed })
                })
                .ok_or(AuthError::SignatureMismatch {
                    scheme: SchemeKind::Skyvern,
                })?,
        };
        let mut verified = Verified::new(SchemeKind::Skyvern, index);
        verified.timestamp = timestamp;
        verified.body = body;
        Ok(verified)
    }
}

impl Verifier for SkyvernSignature {
    fn verify(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        self.check(delivery, true)
    }

    fn verify_exact(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        self.check(delivery, false)
    }

    fn has_fallback(&self) -> bool {
        self.canonical_fallback
    }

    fn credential_headers(&self) -> Vec<&str> {
        vec![Self::SIGNATURE_HEADER]
    }

    fn schemes(&self) -> Vec<SchemeKind> {
        vec![SchemeKind::Skyvern]
    }
}

fn hmac_sha256(key: &Secret, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The `x-skyvern-signature` value Skyvern sends for `body` signed with `key`: lowercase hex
/// HMAC-SHA256. For tests of your own endpoint.
pub fn sign_skyvern(key: &Secret, body: &[u8]) -> String {
    hex::encode(hmac_sha256(key, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::FixedClock;

    fn key() -> Secret {
        Secret::new("sk_test").unwrap()
    }

    fn check(
        scheme: &SkyvernSignature,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Verified, AuthError> {
        scheme.verify(&Delivery::new(&headers, body))
    }

    #[test]
    fn known_answer_from_the_vectors() {
        // From shared/vectors: Skyvern's own code signed this body with key `sk_test`.
        let body = br#"{"a":"9999999999"}"#;
        let sig = "ac5b83d792a77b9575a19cd006c883f1a21eb07a8ecea9b56b405226796a8ea2";
        assert_eq!(sign_skyvern(&key(), body), sig);
        let scheme = SkyvernSignature::new(key());
        let verified = check(&scheme, &[("X-Skyvern-Signature", sig)], body).unwrap();
        assert_eq!(verified.scheme, SchemeKind::Skyvern);
        assert!(verified.authenticated);
        assert_eq!(verified.timestamp, TimestampCheck::NotChecked);
    }

    #[test]
    fn rotation_reports_the_matching_key() {
        let old = Secret::new("sk_old").unwrap();
        let new = Secret::new("sk_new").unwrap();
        let scheme = SkyvernSignature::new(Secrets::new([old, new.clone()]).unwrap());
        let sig = sign_skyvern(&new, b"{}");
        let verified = check(&scheme, &[("x-skyvern-signature", &sig)], b"{}").unwrap();
        assert_eq!(verified.key_index, Some(1));
    }

    #[test]
    fn every_malformed_signature_is_a_typed_rejection() {
        let scheme = SkyvernSignature::new(key());
        let good = sign_skyvern(&key(), b"{}");
        let upper_half = format!("{}{}", &good[..32], "zz".repeat(16));
        type Case<'a> = (&'a [(&'a str, &'a str)], fn(&AuthError) -> bool);
        let cases: [Case; 7] = [
            (&[], |e| matches!(e, AuthError::MissingHeader { .. })),
            (&[("x-skyvern-signature", "")], |e| {
                matches!(e, AuthError::EmptyHeader { .. })
            }),
            (&[("x-skyvern-signature", "abc")], |e| {
                matches!(e, AuthError::MalformedHeader { .. })
            }),
            (&[("x-skyvern-signature", &upper_half)], |e| {
                matches!(e, AuthError::MalformedHeader { .. })
            }),
            (&[("x-skyvern-signature", "é")], |e| {
                matches!(e, AuthError::MalformedHeader { .. })
            }),
            (
                &[
                    ("x-skyvern-signature", &good),
                    ("x-skyvern-signature", "00"),
                ],
                |e| matches!(e, AuthError::ConflictingHeaders { .. }),
            ),
            (&[("x-skyvern-signature", &"0".repeat(64))], |e| {
                matches!(e, AuthError::SignatureMismatch { .. })
            }),
        ];
        for (headers, expected) in cases {
            let err = check(&scheme, headers, b"{}").unwrap_err();
            assert!(expected(&err), "{headers:?} gave {err:?}");
            assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn timestamp_window_is_optional_and_reported_as_unsigned() {
        let sig = sign_skyvern(&key(), b"{}");
        let scheme = SkyvernSignature::new(key())
            .with_timestamp_tolerance(Duration::from_secs(300))
            .with_clock(FixedClock(1_769_873_016));
        let ok = check(
            &scheme,
            &[
                ("x-skyvern-signature", &sig),
                ("x-skyvern-timestamp", "1769873000"),
            ],
            b"{}",
        )
        .unwrap();
        assert_eq!(
            ok.timestamp,
            TimestampCheck::WithinTolerance {
                timestamp: 1_769_873_000,
                covered_by_signature: false
            }
        );
        let stale = check(
            &scheme,
            &[
                ("x-skyvern-signature", &sig),
                ("x-skyvern-timestamp", "1769870000"),
            ],
            b"{}",
        );
        assert!(matches!(
            stale,
            Err(AuthError::TimestampOutsideTolerance { .. })
        ));
        let missing = check(&scheme, &[("x-skyvern-signature", &sig)], b"{}");
        assert!(matches!(missing, Err(AuthError::MissingHeader { .. })));
        for absurd in ["-9223372036854775808", "99999999999999999999", "12e3"] {
            let result = check(
                &scheme,
                &[
                    ("x-skyvern-signature", &sig),
                    ("x-skyvern-timestamp", absurd),
                ],
                b"{}",
            );
            assert!(result.is_err(), "{absurd}");
        }
    }

    #[test]
    fn canonical_fallback_is_opt_in_and_reported() {
        let signed = br#"{"run_id":"wr_1","score":NaN,"steps":4,"big":100000000000000000000}"#;
        let sig = sign_skyvern(&key(), signed);
        let headers = [("x-skyvern-signature", sig.as_str())];
        let reserialized =
            b"{\n  \"run_id\": \"wr_\\u0031\",\n  \"score\": NaN, \"steps\": 4.0, \"big\": 1e20\n}";
        let strict = SkyvernSignature::new(key());
        let lenient = SkyvernSignature::new(key()).with_canonical_fallback();

        let exact = check(&lenient, &headers, signed).unwrap();
        assert_eq!(exact.body, BodyMatch::Exact);
        assert!(matches!(
            check(&strict, &headers, reserialized),
            Err(AuthError::SignatureMismatch { .. })
        ));
        let canonical = check(&lenient, &headers, reserialized).unwrap();
        assert!(matches!(canonical.body, BodyMatch::Canonical { .. }));
        assert_eq!(canonical.key_index, Some(0));
        assert_eq!(canonical.signed_body().map(|b| &b[..]), Some(&signed[..]));
        assert_eq!(exact.signed_body(), None);
        // The exact check alone does not fall back.
        assert!(!strict.has_fallback() && lenient.has_fallback());
        assert!(matches!(
            lenient.verify_exact(&Delivery::new(&headers, reserialized)),
            Err(AuthError::SignatureMismatch { .. })
        ));
        assert_eq!(
            lenient.verify_exact(&Delivery::new(&headers, signed)),
            Ok(exact)
        );

        // A different payload, or a body Skyvern could not have sent, still fails.
        for body in [
            &br#"{"run_id":"wr_2","score":NaN,"steps":4}"#[..],
            b"{not json",
            b"",
        ] {
            assert!(matches!(
                check(&lenient, &headers, body),
                Err(AuthError::SignatureMismatch { .. })
            ));
        }
        // A forged signature is not rescued by re-normalization.
        let forged = [("x-skyvern-signature", "0".repeat(64))];
        assert!(lenient
            .verify(&Delivery::new(&forged, reserialized))
            .is_err());
    }

    #[test]
    fn canonical_fallback_is_bounded() {
        // 1e308 is 309 digits in canonical form: 10 of them pass a 3000-byte bound.
        let body = format!("[{}]", ["1e308"; 10].join(","));
        let canonical = crate::canonical::canonicalize(body.as_bytes()).unwrap();
        assert!(canonical.len() > 3000);
        let sig = sign_skyvern(&key(), &canonical);
        let headers = [("x-skyvern-signature", sig.as_str())];
        let bounded = SkyvernSignature::new(key())
            .with_canonical_fallback()
            .with_canonical_max_len(3000);
        assert!(matches!(
            check(&bounded, &headers, body.as_bytes()),
            Err(AuthError::SignatureMismatch { .. })
        ));
        let roomy = bounded.with_canonical_max_len(canonical.len());
        let verified = check(&roomy, &headers, body.as_bytes()).unwrap();
        assert!(matches!(verified.body, BodyMatch::Canonical { .. }));
        assert_eq!(SkyvernSignature::DEFAULT_CANONICAL_MAX_LEN, 2 * 1024 * 1024);
    }

    #[test]
    fn clock_and_tolerance_can_be_given_in_any_order() {
        let sig = sign_skyvern(&key(), b"{}");
        let scheme = SkyvernSignature::new(key())
            .with_clock(FixedClock(100))
            .with_timestamp_tolerance(Duration::from_secs(20));
        assert!(check(
            &scheme,
            &[
                ("x-skyvern-signature", &sig),
                ("x-skyvern-timestamp", "115")
            ],
            b"{}"
        )
        .is_ok());
    }
}
