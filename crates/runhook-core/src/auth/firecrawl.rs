//! Firecrawl's `X-Firecrawl-Signature: sha256=<hex>`: HMAC-SHA256 of the raw body, keyed by the
//! account's webhook secret. Firecrawl signs no timestamp, so there is no replay window:
//! de-duplication on the job id is what makes a replay harmless.

use std::borrow::Cow;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use super::first_match;
use crate::error::{AuthError, SchemeKind};
use crate::headers::required_ascii_header;
use crate::secret::{Secret, Secrets};
use crate::verify::{Delivery, Verified, Verifier};

const SIGNATURE_HEADER: Cow<'static, str> = Cow::Borrowed("x-firecrawl-signature");

/// Verifies `x-firecrawl-signature` (`sha256=` and 64 hex digits) against the raw body with
/// any of the accepted webhook secrets (the secret's text is the HMAC key, as Firecrawl uses it).
///
/// ```
/// use runhook_core::{sign_firecrawl, Delivery, FirecrawlSignature, Secret, Verifier};
///
/// let secret = Secret::new("fc_whsec_example")?;
/// let body = br#"{"success":true,"type":"crawl.completed","id":"j1","data":[]}"#;
/// let headers = [("x-firecrawl-signature", sign_firecrawl(&secret, body))];
/// assert!(FirecrawlSignature::new(secret).verify(&Delivery::new(&headers, body)).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct FirecrawlSignature {
    keys: Secrets,
}

impl FirecrawlSignature {
    /// The header carrying the signature.
    pub const SIGNATURE_HEADER: &'static str = "x-firecrawl-signature";

    /// Accepts signatures made with any of `keys`.
    pub fn new(keys: impl Into<Secrets>) -> Self {
        Self { keys: keys.into() }
    }

    /// The 32 bytes the header's `sha256=<hex>` value encodes.
    fn presented(delivery: &Delivery<'_>) -> Result<[u8; 32], AuthError> {
        let text = required_ascii_header(delivery.headers, &SIGNATURE_HEADER)?;
        let malformed = |reason: String| AuthError::MalformedHeader {
            name: SIGNATURE_HEADER,
            reason,
        };
        let hex_digits = text
            .strip_prefix("sha256=")
            .ok_or_else(|| malformed("expected `sha256=` followed by 64 hex digits".into()))?;
        if hex_digits.len() != 64 {
            return Err(malformed(format!(
                "expected 64 hex digits after `sha256=`, got {} characters",
                hex_digits.len()
            )));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes)
            .map_err(|_| malformed("expected 64 hex digits, found a non-hex character".into()))?;
        Ok(bytes)
    }
}

impl Verifier for FirecrawlSignature {
    fn verify(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        let presented = Self::presented(delivery)?;
        let index = first_match(self.keys.iter(), |key| {
            hmac_sha256(key, delivery.body).ct_eq(&presented)
        })
        .ok_or(AuthError::SignatureMismatch {
            scheme: SchemeKind::Firecrawl,
        })?;
        Ok(Verified::new(SchemeKind::Firecrawl, index))
    }

    fn credential_headers(&self) -> Vec<&str> {
        vec![Self::SIGNATURE_HEADER]
    }

    fn schemes(&self) -> Vec<SchemeKind> {
        vec![SchemeKind::Firecrawl]
    }
}

fn hmac_sha256(key: &Secret, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The `x-firecrawl-signature` value Firecrawl sends for `body` signed with `key`:
/// `sha256=` and the lowercase hex HMAC-SHA256. For tests of your own endpoint.
pub fn sign_firecrawl(key: &Secret, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(key, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"success":true,"type":"crawl.completed","id":"j1","data":[]}"#;

    fn scheme() -> FirecrawlSignature {
        FirecrawlSignature::new(Secret::new("fc-secret").unwrap())
    }

    fn independent(key: &[u8], body: &[u8]) -> String {
        // From the documentation's words: HMAC-SHA256 of the raw body, hex, `sha256=` prefix.
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn check(signature: &str, body: &[u8]) -> Result<Verified, AuthError> {
        let headers = [("X-Firecrawl-Signature", signature.to_string())];
        scheme().verify(&Delivery::new(&headers, body))
    }

    #[test]
    fn a_genuine_signature_verifies_and_matches_the_documented_recipe() {
        let signature = independent(b"fc-secret", BODY);
        assert_eq!(
            sign_firecrawl(&Secret::new("fc-secret").unwrap(), BODY),
            signature
        );
        assert_eq!(check(&signature, BODY).unwrap().key_index, Some(0));
    }

    #[test]
    fn tampered_wrong_key_and_malformed_are_refused() {
        let signature = independent(b"fc-secret", BODY);
        let mismatch = AuthError::SignatureMismatch {
            scheme: SchemeKind::Firecrawl,
        };
        assert_eq!(check(&signature, b"{}").unwrap_err(), mismatch);
        assert_eq!(
            check(&independent(b"other", BODY), BODY).unwrap_err(),
            mismatch
        );
        for bad in [
            signature.trim_start_matches("sha256="),
            "sha1=00",
            "sha256=zz",
            &signature[..signature.len() - 1],
        ] {
            assert!(
                matches!(check(bad, BODY), Err(AuthError::MalformedHeader { .. })),
                "{bad}"
            );
        }
        let none: [(&str, String); 0] = [];
        assert!(matches!(
            scheme().verify(&Delivery::new(&none, BODY)),
            Err(AuthError::MissingHeader { .. })
        ));
    }
}
