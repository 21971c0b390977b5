//! Secrets come from named environment variables only, never from argv (which `ps` shows):
//! shared by the commands and by `serve`'s routes.

use runhook_core::{ConfigError, Secret, Secrets};

/// Why a secret could not be read from the environment.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The variable is not set.
    #[error("environment variable {0} is not set")]
    NotSet(String),
    /// Its value is not UTF-8.
    #[error("environment variable {0} is not valid UTF-8")]
    NotUtf8(String),
    /// Its value is not a usable secret (empty or whitespace-only).
    #[error("environment variable {var}: {source}")]
    NotASecret {
        /// The variable.
        var: String,
        /// Why the value is refused.
        source: ConfigError,
    },
    /// The secrets together are not a usable set.
    #[error(transparent)]
    Secrets(ConfigError),
}

/// A secret read from the environment variable `var`; the error says why it is unset, not
/// UTF-8, empty or whitespace-only.
pub fn secret(var: &str) -> Result<Secret, EnvError> {
    let value = std::env::var_os(var).ok_or_else(|| EnvError::NotSet(var.into()))?;
    let value = value
        .into_string()
        .map_err(|_| EnvError::NotUtf8(var.into()))?;
    Secret::new(value).map_err(|source| EnvError::NotASecret {
        var: var.into(),
        source,
    })
}

/// Every secret named by `vars`, in order.
pub fn secrets(vars: &[String]) -> Result<Secrets, EnvError> {
    let secrets = vars
        .iter()
        .map(|v| secret(v))
        .collect::<Result<Vec<_>, _>>()?;
    Secrets::new(secrets).map_err(EnvError::Secrets)
}

/// A Standard Webhooks signing key read from `var` in its `whsec_<base64>` form, decoded.
pub fn standard_webhooks_secret(var: &str) -> Result<Secret, EnvError> {
    let text = secret(var)?;
    let text = std::str::from_utf8(text.expose()).map_err(|_| EnvError::NotUtf8(var.into()))?;
    Secret::from_standard_webhooks(text).map_err(|source| EnvError::NotASecret {
        var: var.into(),
        source,
    })
}
