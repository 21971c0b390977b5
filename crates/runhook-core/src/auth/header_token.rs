//! A static token in a header: WebRun sends its configured `auth` string as `Authorization`;
//! SmartBrowse sends whatever custom header the recipe configures.

use std::borrow::Cow;

use super::DigestSet;
use crate::error::{AuthError, ConfigError, SchemeKind};
use crate::headers::required_header;
use crate::secret::Secrets;
use crate::verify::{BeforeBody, Delivery, Verified, Verifier};

/// Accepts a delivery whose header carries one of the accepted tokens, compared in constant time.
///
/// The header's whole value is the token: for WebRun's `auth: "Bearer abc"` the accepted token
/// is `Bearer abc`. Leading and trailing whitespace is ignored on both sides, as HTTP strips it.
/// A missing header, or the header sent twice with different values, is rejected.
///
/// ```
/// use runhook_core::{Delivery, HeaderToken, Secret, Verifier};
///
/// let scheme = HeaderToken::authorization(Secret::new("Bearer webrun-token")?);
/// let headers = [("Authorization", "Bearer webrun-token")];
/// assert!(scheme.verify(&Delivery::new(&headers, b"{}")).is_ok());
///
/// let forged = [("Authorization", "Bearer guess")];
/// assert!(scheme.verify(&Delivery::new(&forged, b"{}")).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct HeaderToken {
    name: Cow<'static, str>,
    tokens: DigestSet,
}

impl HeaderToken {
    /// Accepts any of `tokens` in the header `header_name` (any case; must be a valid HTTP
    /// header name).
    pub fn new(header_name: &str, tokens: impl Into<Secrets>) -> Result<Self, ConfigError> {
        let name = http::HeaderName::from_bytes(header_name.trim().as_bytes())
            .map_err(|_| ConfigError::InvalidHeaderName(header_name.to_string()))?;
        let tokens: Secrets = tokens.into();
        Ok(Self {
            name: Cow::Owned(name.as_str().to_string()),
            tokens: DigestSet::new(tokens.iter().map(|t| t.expose().trim_ascii())),
        })
    }

    /// Accepts any of `tokens` as the whole `Authorization` value (WebRun's `auth` setting).
    pub fn authorization(tokens: impl Into<Secrets>) -> Self {
        Self::in_known_header("authorization", tokens.into())
    }

    /// A scheme on a header name known to be valid and lowercase (the platform table's).
    pub(crate) fn in_known_header(name: &'static str, tokens: Secrets) -> Self {
        Self {
            name: Cow::Borrowed(name),
            tokens: DigestSet::new(tokens.iter().map(|t| t.expose().trim_ascii())),
        }
    }

    /// The (lowercase) header name this scheme reads.
    pub fn header_name(&self) -> &str {
        &self.name
    }
}

impl Verifier for HeaderToken {
    fn verify(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        let presented = required_header(delivery.headers, &self.name)?;
        let index = self
            .tokens
            .position(presented)
            .ok_or_else(|| AuthError::TokenMismatch {
                name: self.name.clone(),
            })?;
        Ok(Verified::new(SchemeKind::HeaderToken, index))
    }

    /// The token is in a header: decided before the body.
    fn verify_before_body(&self, delivery: &Delivery<'_>) -> BeforeBody {
        BeforeBody::Decided(self.verify(delivery))
    }

    fn credential_headers(&self) -> Vec<&str> {
        vec![&self.name]
    }

    fn schemes(&self) -> Vec<SchemeKind> {
        vec![SchemeKind::HeaderToken]
    }
}

impl std::fmt::Debug for HeaderToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderToken")
            .field("header", &self.name)
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn scheme() -> HeaderToken {
        let tokens = Secrets::from_values(["Bearer old", "Bearer new"]).unwrap();
        HeaderToken::new("X-Webhook-Token", tokens).unwrap()
    }

    fn check(headers: &[(&str, &str)]) -> Result<Verified, AuthError> {
        scheme().verify(&Delivery::new(&headers, b"{}"))
    }

    #[test]
    fn accepts_any_configured_token_and_reports_which() {
        assert_eq!(
            check(&[("x-webhook-token", "Bearer old")])
                .unwrap()
                .key_index,
            Some(0)
        );
        assert_eq!(
            check(&[("X-WEBHOOK-TOKEN", " Bearer new ")])
                .unwrap()
                .key_index,
            Some(1)
        );
        assert_eq!(scheme().header_name(), "x-webhook-token");
    }

    #[test]
    fn rejections_are_typed() {
        assert!(matches!(check(&[]), Err(AuthError::MissingHeader { .. })));
        assert!(matches!(
            check(&[("x-webhook-token", "")]),
            Err(AuthError::EmptyHeader { .. })
        ));
        assert!(matches!(
            check(&[("x-webhook-token", "Bearer ol")]),
            Err(AuthError::TokenMismatch { .. })
        ));
        assert!(matches!(
            check(&[("x-webhook-token", "Bearer oldx")]),
            Err(AuthError::TokenMismatch { .. })
        ));
        assert!(matches!(
            check(&[
                ("x-webhook-token", "Bearer old"),
                ("x-webhook-token", "Bearer evil")
            ]),
            Err(AuthError::ConflictingHeaders { .. })
        ));
        assert!(check(&[
            ("x-webhook-token", "Bearer old"),
            ("x-webhook-token", "Bearer old")
        ])
        .is_ok());
    }

    #[test]
    fn invalid_header_names_are_configuration_errors() {
        let token = Secret::new("t").unwrap();
        assert!(matches!(
            HeaderToken::new("bad header", token.clone()),
            Err(ConfigError::InvalidHeaderName(_))
        ));
        assert!(HeaderToken::new("", token).is_err());
    }

    #[test]
    fn debug_shows_no_token() {
        let text = format!("{:?}", scheme());
        assert!(!text.contains("Bearer"), "{text}");
    }
}
