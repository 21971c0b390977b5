//! Where `runhook serve` keeps its claims: `--store` or `store =`.

use serde::Deserialize;

use super::ServeConfigError;

/// Where claims are kept, as `--store` or `store =` names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StoreSpec {
    /// In this process (`memory`, the default).
    #[default]
    Memory,
    /// Redis at this `redis://` or `rediss://` URL, shared by every instance using it.
    Redis(String),
    /// PostgreSQL at this `postgres://` or `postgresql://` URL (TLS by its `sslmode`), shared
    /// by every instance using it and the same schema.
    Postgres(String),
}

impl StoreSpec {
    /// The spec as given (`memory` or the URL, credentials included: not for logs).
    pub fn as_str(&self) -> &str {
        match self {
            StoreSpec::Memory => "memory",
            StoreSpec::Redis(url) | StoreSpec::Postgres(url) => url,
        }
    }

    /// Whether other processes can share it (every store but `memory`).
    pub fn is_shared(&self) -> bool {
        !matches!(self, StoreSpec::Memory)
    }
}

impl std::str::FromStr for StoreSpec {
    type Err = ServeConfigError;

    fn from_str(spec: &str) -> Result<Self, ServeConfigError> {
        if spec == "memory" {
            Ok(StoreSpec::Memory)
        } else if spec.starts_with("redis://") || spec.starts_with("rediss://") {
            Ok(StoreSpec::Redis(spec.to_string()))
        } else if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            Ok(StoreSpec::Postgres(spec.to_string()))
        } else {
            // Only the scheme: the rest may hold a password.
            let scheme = spec.split("://").next().unwrap_or_default();
            Err(ServeConfigError::Store {
                scheme: scheme.into(),
            })
        }
    }
}

impl TryFrom<String> for StoreSpec {
    type Error = ServeConfigError;

    fn try_from(spec: String) -> Result<Self, ServeConfigError> {
        spec.parse()
    }
}
