//! The authentication schemes, and the pieces they share: constant-time key matching and
//! timestamp windows.

mod any_of;
mod browser_use;
mod firecrawl;
mod header_token;
mod path_secret;
mod skyvern;
mod standard_webhooks;
mod unsigned;

pub use any_of::AnyOf;
pub use browser_use::{
    sign_browser_use, sign_browser_use_legacy, BrowserUseSignature, LegacySignature,
};
pub use firecrawl::{sign_firecrawl, FirecrawlSignature};
pub use header_token::HeaderToken;
pub use path_secret::{PathSecret, SegmentPosition};
pub use skyvern::{sign_skyvern, SkyvernSignature};
pub use standard_webhooks::{
    sign_standard_webhooks, PublicKeys, StandardWebhooks, StandardWebhooksKeys,
    StandardWebhooksPublicKey,
};
pub use unsigned::Unsigned;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConditionallySelectable as _, ConstantTimeEq as _};

use crate::error::AuthError;
use crate::headers::{required_ascii_header, HeaderLookup};
use crate::verify::{Clock, SystemClock};

/// Index of the first candidate for which `matches` is true, found in constant time over all
/// candidates: every candidate is checked, whichever one matches.
fn first_match<T>(
    candidates: impl Iterator<Item = T>,
    mut matches: impl FnMut(T) -> Choice,
) -> Option<usize> {
    let mut found = Choice::from(0);
    let mut index = 0u64;
    for (i, candidate) in candidates.enumerate() {
        let hit = matches(candidate);
        index.conditional_assign(&(i as u64), hit & !found);
        found |= hit;
    }
    bool::from(found).then_some(index as usize)
}

/// SHA-256 digests of accepted plain-text values (tokens, path segments). Comparing digests in
/// constant time hides both the value and its length from timing, and means the plain value
/// need not be kept in memory.
#[derive(Clone)]
struct DigestSet {
    digests: Vec<[u8; 32]>,
}

impl DigestSet {
    fn new<'a>(values: impl Iterator<Item = &'a [u8]>) -> Self {
        Self {
            digests: values.map(|v| Sha256::digest(v).into()).collect(),
        }
    }

    /// Index of the accepted value equal to `presented`, compared in constant time.
    fn position(&self, presented: &[u8]) -> Option<usize> {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        first_match(self.digests.iter(), |d| d.ct_eq(&presented))
    }

    fn len(&self) -> usize {
        self.digests.len()
    }
}

/// Reads the Unix-seconds timestamp in header `name` and checks it lies within `tolerance` of
/// `clock`'s now, in either direction. Safe on any input: absurd values are rejected, never wrap.
// Takes `&Cow` rather than `&str` so that a rejection can keep the name without allocating.
#[allow(clippy::ptr_arg)]
fn check_timestamp(
    headers: &dyn HeaderLookup,
    name: &Cow<'static, str>,
    tolerance: Duration,
    clock: &dyn Clock,
) -> Result<i64, AuthError> {
    let text = required_ascii_header(headers, name)?;
    let timestamp = parse_unix_seconds(text).map_err(|reason| AuthError::MalformedHeader {
        name: name.clone(),
        reason: reason.into(),
    })?;
    let skew = i128::from(timestamp) - i128::from(clock.now_unix());
    let tolerance = tolerance.as_secs();
    if skew.unsigned_abs() > u128::from(tolerance) {
        return Err(AuthError::TimestampOutsideTolerance {
            name: name.clone(),
            skew_seconds: skew,
            tolerance_seconds: tolerance,
        });
    }
    Ok(timestamp)
}

/// The 32 bytes that the 64 hex digits of header `name` encode (Skyvern's and Browser Use's
/// signatures), or the typed rejection.
// Takes `&Cow` rather than `&str` so that a rejection can keep the name without allocating.
#[allow(clippy::ptr_arg)]
fn hex_sha256_header(
    headers: &dyn HeaderLookup,
    name: &Cow<'static, str>,
) -> Result<[u8; 32], AuthError> {
    let text = required_ascii_header(headers, name)?;
    let malformed = |reason: String| AuthError::MalformedHeader {
        name: name.clone(),
        reason,
    };
    if text.len() != 64 {
        return Err(malformed(format!(
            "expected 64 hex digits, got {} characters",
            text.len()
        )));
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|_| malformed("expected 64 hex digits, found a non-hex character".into()))?;
    Ok(bytes)
}

/// The clock used unless a scheme is given another.
fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Parses a decimal integer of Unix seconds: optional `-`, then ASCII digits only.
fn parse_unix_seconds(text: &str) -> Result<i64, &'static str> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a Unix timestamp in whole seconds");
    }
    text.parse::<i64>()
        .map_err(|_| "Unix timestamp out of range")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::FixedClock;

    #[test]
    fn first_match_finds_the_first_hit_only() {
        assert_eq!(
            first_match([false, true, true].into_iter(), |b| Choice::from(b as u8)),
            Some(1)
        );
        assert_eq!(
            first_match([false, false].into_iter(), |b| Choice::from(b as u8)),
            None
        );
        assert_eq!(
            first_match(std::iter::empty::<bool>(), |b| Choice::from(b as u8)),
            None
        );
    }

    #[test]
    fn digest_set_matches_exact_values_only() {
        let set = DigestSet::new([&b"alpha"[..], b"beta"].into_iter());
        assert_eq!(set.position(b"beta"), Some(1));
        assert_eq!(set.position(b"bet"), None);
        assert_eq!(set.position(b""), None);
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn parse_unix_seconds_rejects_absurd_values() {
        assert_eq!(parse_unix_seconds("1769873016"), Ok(1_769_873_016));
        assert_eq!(parse_unix_seconds("-9223372036854775808"), Ok(i64::MIN));
        assert!(parse_unix_seconds("99999999999999999999").is_err());
        assert!(parse_unix_seconds("+5").is_err());
        assert!(parse_unix_seconds("1.5").is_err());
        assert!(parse_unix_seconds("-").is_err());
        assert!(parse_unix_seconds("").is_err());
    }

    #[test]
    fn window_is_symmetric_and_safe_at_the_extremes() {
        let name: Cow<'static, str> = "ts".into();
        let tolerance = Duration::from_secs(300);
        let at = |v: &str| {
            check_timestamp(
                &[("ts", v.to_string())],
                &name,
                tolerance,
                &FixedClock(1_000_000),
            )
        };
        assert_eq!(at("1000300"), Ok(1_000_300));
        assert_eq!(at("999700"), Ok(999_700));
        assert!(matches!(
            at("1000301"),
            Err(AuthError::TimestampOutsideTolerance {
                skew_seconds: 301,
                ..
            })
        ));
        assert!(matches!(
            at("999699"),
            Err(AuthError::TimestampOutsideTolerance {
                skew_seconds: -301,
                ..
            })
        ));
        assert!(matches!(
            at("-9223372036854775808"),
            Err(AuthError::TimestampOutsideTolerance { .. })
        ));
        assert!(matches!(
            at("9223372036854775807"),
            Err(AuthError::TimestampOutsideTolerance { .. })
        ));
        assert!(matches!(
            at("99999999999999999999"),
            Err(AuthError::MalformedHeader { .. })
        ));
        let everything = Duration::from_secs(u64::MAX);
        let far = check_timestamp(
            &[("ts", "9223372036854775807")],
            &name,
            everything,
            &FixedClock(i64::MIN),
        );
        assert_eq!(far, Ok(i64::MAX));
    }

    mod credential_headers {
        use crate::secret::Secret;
        use crate::verify::Verifier;
        use crate::{AnyOf, HeaderToken, PathSecret, SkyvernSignature, StandardWebhooks, Unsigned};

        fn secret() -> Secret {
            Secret::new("whsec_dGVzdA==").unwrap()
        }

        #[test]
        fn header_token_names_its_own_header() {
            let custom = HeaderToken::new("X-Hook-Auth", secret()).unwrap();
            assert_eq!(custom.credential_headers(), ["x-hook-auth"]);
            let bearer = HeaderToken::authorization(secret());
            assert_eq!(bearer.credential_headers(), ["authorization"]);
        }

        #[test]
        fn skyvern_names_its_signature_header() {
            let scheme = SkyvernSignature::new(secret());
            assert_eq!(scheme.credential_headers(), ["x-skyvern-signature"]);
        }

        #[test]
        fn standard_webhooks_names_its_signature_header() {
            let scheme = StandardWebhooks::new(secret());
            assert_eq!(
                scheme.credential_headers(),
                ["webhook-signature", "svix-signature"]
            );
        }

        #[test]
        fn path_secret_and_unsigned_name_none() {
            assert!(PathSecret::last_segment(secret())
                .credential_headers()
                .is_empty());
            assert!(Unsigned::accept_without_authentication()
                .credential_headers()
                .is_empty());
        }

        #[test]
        fn any_of_names_the_union_once_each_and_boxes_forward() {
            let scheme = AnyOf::new(vec![
                Box::new(HeaderToken::new("x-hook-auth", secret()).unwrap()),
                Box::new(PathSecret::last_segment(secret())),
                Box::new(SkyvernSignature::new(secret())),
                Box::new(HeaderToken::new("X-HOOK-AUTH", secret()).unwrap()),
            ])
            .unwrap();
            assert_eq!(
                scheme.credential_headers(),
                ["x-hook-auth", "x-skyvern-signature"]
            );
            let shared: std::sync::Arc<dyn Verifier> = std::sync::Arc::new(scheme);
            assert_eq!(shared.credential_headers().len(), 2);
        }
    }
}
