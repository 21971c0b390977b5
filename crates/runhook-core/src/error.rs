//! Errors of authentication and configuration, each with the HTTP status a receiver answers.

use std::borrow::Cow;

use http::StatusCode;

/// Why a delivery was not accepted as genuine.
///
/// Every variant answers `401 Unauthorized` ([`AuthError::status`]): a forgery, a replay outside
/// the window or a malformed credential must not be retried by the sender. The `Display` text
/// says precisely what was wrong and never contains a secret or the presented credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A header the scheme needs was not sent.
    #[error("header `{name}` is missing")]
    MissingHeader {
        /// The header's name, lowercase.
        name: Cow<'static, str>,
    },
    /// A header the scheme needs was sent with an empty value.
    #[error("header `{name}` is empty")]
    EmptyHeader {
        /// The header's name, lowercase.
        name: Cow<'static, str>,
    },
    /// A header was sent more than once with different values.
    #[error("header `{name}` was sent more than once with different values")]
    ConflictingHeaders {
        /// The header's name, lowercase.
        name: Cow<'static, str>,
    },
    /// A header's value is not of the form the scheme expects.
    #[error("header `{name}` is malformed: {reason}")]
    MalformedHeader {
        /// The header's name, lowercase.
        name: Cow<'static, str>,
        /// What is wrong with it, e.g. "expected 64 hex digits, got 12 characters".
        reason: String,
    },
    /// The signature is well formed but matches none of the accepted keys for these body bytes.
    #[error("the {scheme} signature does not match the body with any accepted key")]
    SignatureMismatch {
        /// The scheme that checked it.
        scheme: SchemeKind,
    },
    /// A header carries more signatures than the scheme considers: refused before any of them
    /// is checked, so that a forged request cannot buy one verification per entry.
    #[error("header `{name}` carries more than {max} signatures")]
    TooManySignatures {
        /// The header's name, lowercase.
        name: Cow<'static, str>,
        /// How many signatures the scheme considers at most.
        max: usize,
    },
    /// The token header was present but matches none of the accepted tokens.
    #[error("header `{name}` does not match any accepted token")]
    TokenMismatch {
        /// The header's name, lowercase.
        name: Cow<'static, str>,
    },
    /// The request path has no segment where the secret is expected.
    #[error("the request path has no segment {position}")]
    MissingPathSegment {
        /// Which segment was expected, in words ("at index 2", "last").
        position: String,
    },
    /// The path segment matches none of the accepted secrets.
    #[error("the secret path segment does not match any accepted secret")]
    PathSecretMismatch,
    /// The timestamp is further from now than the tolerance allows (in either direction).
    #[error(
        "timestamp in `{name}` is {skew_seconds} s away from now, outside the {tolerance_seconds} s tolerance"
    )]
    TimestampOutsideTolerance {
        /// The header carrying the timestamp, lowercase.
        name: Cow<'static, str>,
        /// How far the timestamp is from now, in seconds (positive: in the future).
        skew_seconds: i128,
        /// The configured tolerance, in seconds.
        tolerance_seconds: u64,
    },
    /// Several schemes were tried ([`crate::AnyOf`]) and none accepted the delivery.
    #[error("no accepted scheme matched: {}", join(.0))]
    NoSchemeMatched(Vec<AuthError>),
}

fn join(errors: &[AuthError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl AuthError {
    /// The status a receiver answers for this rejection: always `401 Unauthorized`.
    pub fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }
}

/// A receiver configured in a way that cannot be safe; found at start-up, not per request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An empty secret was given: an empty key is one every attacker knows.
    #[error("a secret is empty: an empty key is one every attacker knows")]
    EmptySecret,
    /// A secret made only of whitespace was given (usually an unset template variable).
    #[error("a secret is whitespace only")]
    WhitespaceSecret,
    /// A scheme was given no secret at all.
    #[error("no secret was given")]
    NoSecrets,
    /// The secret is a key published in a platform's code (Skyvern's test-webhook key
    /// `test_api_key_placeholder`): anyone can sign with it. See
    /// [`PUBLIC_PLACEHOLDER_KEYS`](crate::PUBLIC_PLACEHOLDER_KEYS).
    #[error("the secret is a platform's public placeholder key (Skyvern's test-webhook key): anyone can sign with it")]
    PlaceholderSecret,
    /// A Standard Webhooks secret is not `whsec_` followed by base64.
    #[error("a Standard Webhooks secret must be `whsec_` followed by base64")]
    InvalidStandardWebhooksSecret,
    /// A Standard Webhooks public key is not `whpk_` followed by the base64 of a valid
    /// 32-byte ed25519 key.
    #[error("a Standard Webhooks public key must be `whpk_` followed by the base64 of 32 bytes")]
    InvalidStandardWebhooksPublicKey,
    /// A header name is not a valid HTTP header name.
    #[error("`{0}` is not a valid HTTP header name")]
    InvalidHeaderName(String),
    /// An [`crate::AnyOf`] was given no scheme.
    #[error("no authentication scheme was given")]
    NoSchemes,
}

impl ConfigError {
    /// The status a receiver answers while misconfigured: `500 Internal Server Error`.
    pub fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// The authentication schemes runhook implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SchemeKind {
    /// Skyvern's `x-skyvern-signature`: hex HMAC-SHA256 of the raw body.
    Skyvern,
    /// A static token in a header (WebRun's `Authorization`, SmartBrowse's custom header).
    HeaderToken,
    /// A hard-to-guess segment of the request path (SmartBrowse).
    PathSecret,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks,
    /// Nothing authenticated, chosen explicitly (TinyFish documents no signature).
    Unsigned,
    /// Firecrawl's `x-firecrawl-signature`: `sha256=` and the hex HMAC-SHA256 of the raw body.
    Firecrawl,
    /// Browser Use's `x-browser-use-signature`: hex HMAC-SHA256 of the timestamp and the
    /// sorted-key payload (or its older `x-webhook-signature` over the raw body).
    BrowserUse,
}

impl SchemeKind {
    /// The scheme's name as the CLI spells it (`skyvern`, `header-token`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SchemeKind::Skyvern => "skyvern",
            SchemeKind::HeaderToken => "header-token",
            SchemeKind::PathSecret => "path-secret",
            SchemeKind::StandardWebhooks => "standard-webhooks",
            SchemeKind::Unsigned => "unsigned",
            SchemeKind::Firecrawl => "firecrawl",
            SchemeKind::BrowserUse => "browser-use",
        }
    }
}

impl std::fmt::Display for SchemeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
