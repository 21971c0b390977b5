//! Secrets: API keys, tokens and signing keys that a receiver checks deliveries against.

use std::fmt;

use base64::Engine as _;
use zeroize::Zeroize as _;

use crate::error::ConfigError;

/// Keys published in a platform's own code, refused as secrets: a delivery signed with one
/// proves nothing. Skyvern's `POST /v1/internal/test-webhook` signs with
/// `test_api_key_placeholder` when the organization has no API key.
pub const PUBLIC_PLACEHOLDER_KEYS: &[&[u8]] = &[b"test_api_key_placeholder"];

/// One secret value: an API key, a header token, a path segment or a signing key.
///
/// A `Secret` is never empty and never whitespace-only: an empty HMAC key is a key every
/// attacker knows, so it is refused at construction with [`ConfigError::EmptySecret`].
/// `Debug` prints `Secret(***)`; the value never reaches a log by accident.
#[derive(Clone)]
pub struct Secret {
    bytes: Box<[u8]>,
}

impl Secret {
    /// Builds a secret from its raw bytes, refusing an empty or whitespace-only value, and
    /// [`PUBLIC_PLACEHOLDER_KEYS`] (Skyvern's test-webhook endpoint signs with
    /// `test_api_key_placeholder` when an organization has no key: a key anyone knows).
    ///
    /// ```
    /// use runhook_core::Secret;
    /// assert!(Secret::new("sk_live_123").is_ok());
    /// assert!(Secret::new("   ").is_err());
    /// assert!(Secret::new("test_api_key_placeholder").is_err());
    /// ```
    pub fn new(value: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let bytes = value.as_ref();
        if bytes.is_empty() {
            return Err(ConfigError::EmptySecret);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError::WhitespaceSecret);
        }
        if PUBLIC_PLACEHOLDER_KEYS.contains(&bytes.trim_ascii()) {
            return Err(ConfigError::PlaceholderSecret);
        }
        Ok(Self {
            bytes: bytes.into(),
        })
    }

    /// Builds a Standard Webhooks signing key from its `whsec_<base64>` form (the prefix is
    /// optional), decoding the base64 into the raw key bytes. Base64 whose `=` padding was
    /// lost (copied out of a dashboard, an environment file) is accepted, as the official
    /// `standardwebhooks` libraries accept it.
    ///
    /// ```
    /// use runhook_core::Secret;
    /// let key = Secret::from_standard_webhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    /// assert_eq!(key.expose().len(), 24);
    /// ```
    pub fn from_standard_webhooks(value: &str) -> Result<Self, ConfigError> {
        let encoded = value.trim();
        let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
        if encoded.is_empty() {
            return Err(ConfigError::EmptySecret);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| ConfigError::InvalidStandardWebhooksSecret)?;
        Self::new(decoded)
    }

    /// The secret's bytes. Named so that every use is easy to find in review.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

/// The non-empty list of secrets a scheme accepts, oldest first or newest first as you like.
///
/// Several secrets are accepted at once so that a key can be rotated without downtime: add the
/// new key, move the sender to it, then drop the old one. A successful verification reports the
/// index of the secret that matched ([`crate::Verified::key_index`]).
#[derive(Clone)]
pub struct Secrets {
    items: Vec<Secret>,
}

impl Secrets {
    /// Accepts exactly one secret.
    pub fn one(secret: Secret) -> Self {
        Self {
            items: vec![secret],
        }
    }

    /// Accepts every secret in `secrets`; refuses an empty list with [`ConfigError::NoSecrets`].
    ///
    /// ```
    /// use runhook_core::{Secret, Secrets};
    /// let keys = Secrets::new([Secret::new("old-key")?, Secret::new("new-key")?])?;
    /// assert_eq!(keys.len(), 2);
    /// # Ok::<(), runhook_core::ConfigError>(())
    /// ```
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Result<Self, ConfigError> {
        let items: Vec<Secret> = secrets.into_iter().collect();
        if items.is_empty() {
            return Err(ConfigError::NoSecrets);
        }
        Ok(Self { items })
    }

    /// Builds the list from raw values, refusing any empty or whitespace-only one.
    pub fn from_values<V: AsRef<[u8]>>(
        values: impl IntoIterator<Item = V>,
    ) -> Result<Self, ConfigError> {
        let items = values
            .into_iter()
            .map(Secret::new)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(items)
    }

    /// How many secrets are accepted (never zero).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Always `false`: a `Secrets` holds at least one secret. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The secrets, in the order they were given.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Secret> {
        self.items.iter()
    }
}

impl From<Secret> for Secrets {
    fn from(secret: Secret) -> Self {
        Self::one(secret)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} × ***)", self.items.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_whitespace_secrets_are_refused() {
        assert_eq!(Secret::new("").unwrap_err(), ConfigError::EmptySecret);
        assert_eq!(
            Secret::new(" \t\r\n").unwrap_err(),
            ConfigError::WhitespaceSecret
        );
        assert_eq!(Secret::new(b"").unwrap_err(), ConfigError::EmptySecret);
    }

    #[test]
    fn debug_never_prints_the_value() {
        let secret = Secret::new("sk_very_secret").unwrap();
        let secrets = Secrets::one(secret.clone());
        for text in [format!("{secret:?}"), format!("{secrets:?}")] {
            assert!(!text.contains("very_secret"), "{text}");
            assert!(text.contains("***"), "{text}");
        }
    }

    #[test]
    fn an_empty_list_is_refused() {
        assert_eq!(
            Secrets::new(Vec::new()).unwrap_err(),
            ConfigError::NoSecrets
        );
        assert_eq!(
            Secrets::from_values(["a", ""]).unwrap_err(),
            ConfigError::EmptySecret
        );
    }

    #[test]
    fn standard_webhooks_secret_is_base64_decoded() {
        let key = Secret::from_standard_webhooks("whsec_aGVsbG8=").unwrap();
        assert_eq!(key.expose(), b"hello");
        let bare = Secret::from_standard_webhooks("aGVsbG8=").unwrap();
        assert_eq!(bare.expose(), b"hello");
        // Padding lost on the way: the same key.
        let unpadded = Secret::from_standard_webhooks("whsec_aGVsbG8").unwrap();
        assert_eq!(unpadded.expose(), b"hello");
        assert_eq!(
            Secret::from_standard_webhooks("whsec_aGVsbG").unwrap_err(),
            ConfigError::InvalidStandardWebhooksSecret
        );
        assert_eq!(
            Secret::from_standard_webhooks("whsec_").unwrap_err(),
            ConfigError::EmptySecret
        );
        assert_eq!(
            Secret::from_standard_webhooks("whsec_!!notbase64").unwrap_err(),
            ConfigError::InvalidStandardWebhooksSecret
        );
    }
}
