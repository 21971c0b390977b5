//! Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature` (a space-separated
//! list of `v1,<base64 HMAC-SHA256>` entries, keyed by `whsec_` secrets, and `v1a,<base64
//! ed25519>` entries, checked with `whpk_` public keys), each over `{id}.{timestamp}.{body}`.
//!
//! Senders built on Svix send the same three headers named `svix-id`, `svix-timestamp` and
//! `svix-signature`: they are accepted as aliases. One delivery is read in one family only:
//! `webhook-*` when `webhook-signature` is present (any `svix-*` header is then ignored),
//! else `svix-*`. The headers of the two families are never mixed.

mod public_key;
#[cfg(test)]
mod v1a_tests;

pub use public_key::{PublicKeys, StandardWebhooksPublicKey};

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::Signature;
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
const SVIX_ID_HEADER: Cow<'static, str> = Cow::Borrowed("svix-id");
const SVIX_TIMESTAMP_HEADER: Cow<'static, str> = Cow::Borrowed("svix-timestamp");
const SVIX_SIGNATURE_HEADER: Cow<'static, str> = Cow::Borrowed("svix-signature");

/// The names of one delivery's three headers: the standard's, or Svix's.
struct Family {
    id: Cow<'static, str>,
    timestamp: Cow<'static, str>,
    signature: Cow<'static, str>,
}

impl Family {
    /// `webhook-*` when `webhook-signature` was sent, else `svix-*` when `svix-signature`
    /// was; `webhook-*` when neither (so that the error names the standard's header).
    fn of(headers: &dyn crate::headers::HeaderLookup) -> Self {
        let sent = |name: &str| {
            let mut any = false;
            headers.visit_values(name, &mut |_| {
                any = true;
                std::ops::ControlFlow::Break(())
            });
            any
        };
        if !sent(&SIGNATURE_HEADER) && sent(&SVIX_SIGNATURE_HEADER) {
            Family {
                id: SVIX_ID_HEADER,
                timestamp: SVIX_TIMESTAMP_HEADER,
                signature: SVIX_SIGNATURE_HEADER,
            }
        } else {
            Family {
                id: ID_HEADER,
                timestamp: TIMESTAMP_HEADER,
                signature: SIGNATURE_HEADER,
            }
        }
    }
}

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
///
/// A verifier holds `whsec_` secrets ([`StandardWebhooks::new`]), `whpk_` public keys
/// ([`StandardWebhooks::from_public_keys`]) or both ([`StandardWebhooks::and_public_keys`]);
/// any entry of a kind it holds a key for that verifies accepts the delivery, and entries of
/// other kinds or versions are skipped.
///
/// A header with more than [`StandardWebhooks::MAX_SIGNATURE_ENTRIES`] `v1` and `v1a` entries
/// in all is refused with [`AuthError::TooManySignatures`] before any entry is checked: each
/// `v1a` check hashes the whole body (an ed25519 signature covers its own `R` first), so
/// without the bound one forged request could buy thousands of body hashes.
#[derive(Clone)]
pub struct StandardWebhooks {
    keys: StandardWebhooksKeys,
    tolerance: Duration,
    clock: Arc<dyn Clock>,
}

impl StandardWebhooks {
    /// The tolerance used unless [`StandardWebhooks::with_tolerance`] sets another: 5 minutes.
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
    /// The header carrying the signatures.
    pub const SIGNATURE_HEADER_NAME: &'static str = "webhook-signature";
    /// How many `v1` and `v1a` entries, together, one `webhook-signature` header may carry: a
    /// sender signs once per active key, a handful during a key rotation. A header with more
    /// is refused without checking any of them.
    pub const MAX_SIGNATURE_ENTRIES: usize = 8;

    /// Accepts `v1` signatures made with any of `keys`.
    pub fn new(keys: impl Into<Secrets>) -> Self {
        Self::with_keys(StandardWebhooksKeys::Symmetric(keys.into()))
    }

    /// Accepts `v1a` signatures made with the private half of any of `keys`.
    pub fn from_public_keys(keys: impl Into<PublicKeys>) -> Self {
        Self::with_keys(StandardWebhooksKeys::Public(keys.into()))
    }

    /// Also accepts `v1a` signatures from `keys` (replacing any public keys already held).
    pub fn and_public_keys(mut self, keys: impl Into<PublicKeys>) -> Self {
        let public = keys.into();
        self.keys = match self.keys {
            StandardWebhooksKeys::Symmetric(symmetric)
            | StandardWebhooksKeys::Both { symmetric, .. } => {
                StandardWebhooksKeys::Both { symmetric, public }
            }
            StandardWebhooksKeys::Public(_) => StandardWebhooksKeys::Public(public),
        };
        self
    }

    /// Accepts what `keys` can check.
    pub fn with_keys(keys: StandardWebhooksKeys) -> Self {
        Self {
            keys,
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

/// What a [`StandardWebhooks`] verifier checks signatures with: never nothing.
///
/// [`Verified::key_index`] counts the secrets first, then the public keys: with two secrets,
/// a `v1a` match with the first public key is index 2.
#[derive(Clone)]
pub enum StandardWebhooksKeys {
    /// `whsec_` secrets: `v1` (HMAC-SHA256) entries are checked.
    Symmetric(Secrets),
    /// `whpk_` public keys: `v1a` (ed25519) entries are checked.
    Public(PublicKeys),
    /// Both kinds of entry are checked.
    Both {
        /// For `v1` entries.
        symmetric: Secrets,
        /// For `v1a` entries.
        public: PublicKeys,
    },
}

impl StandardWebhooksKeys {
    fn symmetric(&self) -> Option<&Secrets> {
        match self {
            StandardWebhooksKeys::Symmetric(keys)
            | StandardWebhooksKeys::Both {
                symmetric: keys, ..
            } => Some(keys),
            StandardWebhooksKeys::Public(_) => None,
        }
    }

    fn public(&self) -> Option<&PublicKeys> {
        match self {
            StandardWebhooksKeys::Public(keys)
            | StandardWebhooksKeys::Both { public: keys, .. } => Some(keys),
            StandardWebhooksKeys::Symmetric(_) => None,
        }
    }
}

/// The entries of a `webhook-signature` value this verifier can check, decoded: `v1` ones
/// when it holds secrets, `v1a` ones when it holds public keys. Other versions are skipped,
/// as the specification asks, and so is an entry whose base64 is malformed or of the wrong
/// length.
#[derive(Default)]
struct Entries {
    v1: Vec<[u8; 32]>,
    v1a: Vec<Signature>,
}

impl Entries {
    /// The entries of `value`, or [`AuthError::TooManySignatures`] when it holds more than
    /// `max` `v1` and `v1a` entries (whether or not this verifier holds keys of their kind,
    /// and whether or not they decode): found before anything is checked.
    // Takes `&Cow` so that a rejection can name the header without allocating.
    #[allow(clippy::ptr_arg)]
    fn read(
        value: &str,
        keys: &StandardWebhooksKeys,
        max: usize,
        header: &Cow<'static, str>,
    ) -> Result<Self, AuthError> {
        let mut entries = Entries::default();
        let mut signatures = 0usize;
        for entry in value.split(' ') {
            let Some((version, encoded)) = entry.split_once(',') else {
                continue;
            };
            if matches!(version, "v1" | "v1a") {
                signatures += 1;
                if signatures > max {
                    return Err(AuthError::TooManySignatures {
                        name: header.clone(),
                        max,
                    });
                }
            }
            match version {
                "v1" if keys.symmetric().is_some() => {
                    if let Some(mac) = decode::<32>(encoded) {
                        entries.v1.push(mac);
                    }
                }
                "v1a" if keys.public().is_some() => {
                    if let Some(bytes) = decode::<64>(encoded) {
                        entries.v1a.push(Signature::from_bytes(&bytes));
                    }
                }
                _ => {}
            }
        }
        Ok(entries)
    }

    fn is_empty(&self) -> bool {
        self.v1.is_empty() && self.v1a.is_empty()
    }
}

/// `encoded` as exactly `N` bytes of standard base64.
fn decode<const N: usize>(encoded: &str) -> Option<[u8; N]> {
    // One byte of room, so that a longer signature is not silently cut to N.
    let mut out = [0u8; 96];
    match base64::engine::general_purpose::STANDARD.decode_slice(encoded, &mut out) {
        Ok(len) if len == N => out[..N].try_into().ok(),
        _ => None,
    }
}

/// What `webhook-signature` must hold for `keys`, for the error message.
fn expected_entries(keys: &StandardWebhooksKeys) -> &'static str {
    match keys {
        StandardWebhooksKeys::Symmetric(_) => "no `v1,<base64 of 32 bytes>` entry",
        StandardWebhooksKeys::Public(_) => "no `v1a,<base64 of 64 bytes>` entry",
        StandardWebhooksKeys::Both { .. } => {
            "no `v1,<base64 of 32 bytes>` or `v1a,<base64 of 64 bytes>` entry"
        }
    }
}

impl Verifier for StandardWebhooks {
    fn credential_headers(&self) -> Vec<&str> {
        vec![Self::SIGNATURE_HEADER_NAME, "svix-signature"]
    }

    fn verify(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        let family = Family::of(delivery.headers);
        let id = required_ascii_header(delivery.headers, &family.id)?;
        let timestamp_text = required_ascii_header(delivery.headers, &family.timestamp)?;
        let entries = Entries::read(
            required_ascii_header(delivery.headers, &family.signature)?,
            &self.keys,
            Self::MAX_SIGNATURE_ENTRIES,
            &family.signature,
        )?;
        if entries.is_empty() {
            return Err(AuthError::MalformedHeader {
                name: family.signature,
                reason: expected_entries(&self.keys).into(),
            });
        }
        let timestamp = check_timestamp(
            delivery.headers,
            &family.timestamp,
            self.tolerance,
            self.clock.as_ref(),
        )?;
        let symmetric = self.keys.symmetric();
        let by_secret = symmetric.and_then(|keys| {
            first_match(keys.iter(), |key| {
                let expected = mac(key, id, timestamp_text, delivery.body);
                let mut any = subtle::Choice::from(0);
                for signature in &entries.v1 {
                    any |= expected.ct_eq(signature);
                }
                any
            })
        });
        // Public keys and signatures are not secret: no need for constant time here. The
        // signed content is built once; each check still hashes it whole (ed25519 hashes its
        // `R` before the message, so no prefix of the hash can be shared between entries),
        // which the entry bound above keeps to a handful per request.
        let by_public_key = || {
            let public = self.keys.public()?;
            if entries.v1a.is_empty() {
                return None;
            }
            let content = signed_content(id, timestamp_text, delivery.body);
            let offset = symmetric.map_or(0, Secrets::len);
            public
                .iter()
                .position(|key| {
                    entries
                        .v1a
                        .iter()
                        .any(|signature| key.verifies(&content, signature))
                })
                .map(|i| offset + i)
        };
        let index = by_secret
            .or_else(by_public_key)
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

/// `{id}.{timestamp}.{body}`, the bytes a `v1a` signature covers.
fn signed_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
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
    fn svix_headers_are_aliases_and_one_family_is_read_whole() {
        let good = independent_signature(ID, &TS.to_string(), BODY);
        let svix = |signature: &str| {
            vec![
                ("svix-id", ID.to_string()),
                ("svix-timestamp", TS.to_string()),
                ("svix-signature", signature.to_string()),
            ]
        };
        let verified = scheme().verify(&Delivery::new(&svix(&good), BODY)).unwrap();
        assert_eq!(verified.message_id.as_deref(), Some(ID));
        let late = scheme().with_clock(FixedClock(TS + 301));
        assert!(matches!(
            late.verify(&Delivery::new(&svix(&good), BODY)),
            Err(AuthError::TimestampOutsideTolerance { name, .. }) if name == "svix-timestamp"
        ));
        assert!(scheme()
            .verify(&Delivery::new(&svix(&good), b"{}"))
            .is_err());
        // Both families: `webhook-*` is read, whole; a genuine `svix-*` set does not rescue a
        // bad `webhook-signature`, and `svix-id` never stands in for a missing `webhook-id`.
        let mut both = headers("v1,AAAA");
        both.extend(svix(&good));
        assert!(scheme().verify(&Delivery::new(&both, BODY)).is_err());
        let mut mixed = headers(&good);
        mixed.remove(0);
        mixed.push(("svix-id", ID.to_string()));
        assert!(matches!(
            scheme().verify(&Delivery::new(&mixed, BODY)),
            Err(AuthError::MissingHeader { name }) if name == "webhook-id"
        ));
        let mut both_good = headers(&good);
        both_good.extend(svix("v1,AAAA"));
        assert!(scheme().verify(&Delivery::new(&both_good, BODY)).is_ok());
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
