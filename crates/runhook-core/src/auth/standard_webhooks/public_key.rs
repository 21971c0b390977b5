//! Standard Webhooks `whpk_` public keys, which verify `v1a` (ed25519) signatures.

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::error::ConfigError;

/// A Standard Webhooks public key (`whpk_<base64 of 32 bytes>`): it verifies `v1a` signatures
/// and cannot make them. Not a secret, so its `Debug` shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct StandardWebhooksPublicKey(VerifyingKey);

impl StandardWebhooksPublicKey {
    /// Reads `whpk_<base64>` (or the bare base64), refusing anything but a valid 32-byte
    /// ed25519 point with [`ConfigError::InvalidStandardWebhooksPublicKey`].
    ///
    /// ```
    /// use runhook_core::StandardWebhooksPublicKey;
    /// let key = StandardWebhooksPublicKey::from_standard_webhooks(
    ///     "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",
    /// )?;
    /// assert!(StandardWebhooksPublicKey::from_standard_webhooks("whpk_AAAA").is_err());
    /// # Ok::<(), runhook_core::ConfigError>(())
    /// ```
    pub fn from_standard_webhooks(value: &str) -> Result<Self, ConfigError> {
        let encoded = value.trim();
        let encoded = encoded.strip_prefix("whpk_").unwrap_or(encoded);
        let mut bytes = [0u8; 32];
        match base64::engine::general_purpose::STANDARD.decode_slice(encoded, &mut bytes) {
            Ok(32) => {}
            _ => return Err(ConfigError::InvalidStandardWebhooksPublicKey),
        }
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| ConfigError::InvalidStandardWebhooksPublicKey)
    }

    /// Whether `signature` is this key's signature of `content` (`{id}.{timestamp}.{body}`),
    /// checked strictly (no small-order keys, no malleable signatures). Hashes `content` whole.
    pub(super) fn verifies(&self, content: &[u8], signature: &Signature) -> bool {
        self.0.verify_strict(content, signature).is_ok()
    }
}

impl fmt::Debug for StandardWebhooksPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encoded = base64::engine::general_purpose::STANDARD.encode(self.0.as_bytes());
        write!(f, "StandardWebhooksPublicKey(whpk_{encoded})")
    }
}

/// The non-empty list of public keys a verifier accepts `v1a` signatures from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeys {
    items: Vec<StandardWebhooksPublicKey>,
}

impl PublicKeys {
    /// Every key in `keys`; refuses an empty list with [`ConfigError::NoSecrets`].
    pub fn new(
        keys: impl IntoIterator<Item = StandardWebhooksPublicKey>,
    ) -> Result<Self, ConfigError> {
        let items: Vec<_> = keys.into_iter().collect();
        if items.is_empty() {
            return Err(ConfigError::NoSecrets);
        }
        Ok(Self { items })
    }

    /// How many keys (never zero).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Always `false`: a `PublicKeys` holds at least one key. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The keys, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &StandardWebhooksPublicKey> {
        self.items.iter()
    }
}

impl From<StandardWebhooksPublicKey> for PublicKeys {
    fn from(key: StandardWebhooksPublicKey) -> Self {
        Self { items: vec![key] }
    }
}
