//! One `[[route]]` of `runhook serve`: its path, platform and secrets, how its deliveries are
//! authenticated, and its run API settings, checked.

use std::time::Duration;

use runhook::payload::Provider;
use runhook::platform::{DefaultScheme, Platform};
use runhook::receiver::Interim;
use runhook::verify::SegmentPosition;
use runhook::{
    BrowserUseSignature, FirecrawlSignature, HeaderToken, PathSecret, Secret, Secrets,
    SkyvernSignature, StandardWebhooks, Unsigned, Verifier,
};
use serde::Deserialize;

use super::ServeConfigError;
use crate::env;

/// The placeholder for a secret path segment in a route path: `/webhooks/tinyfish/{secret}`.
pub const SECRET_SEGMENT: &str = "{secret}";

/// One receiving route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The request path; a `{secret}` segment makes the secret a path secret.
    pub path: String,
    /// The platform posting to it.
    #[serde(deserialize_with = "provider_from_name")]
    pub provider: Provider,
    /// Environment variables holding the accepted secrets (several during a key rotation).
    #[serde(default, deserialize_with = "one_or_many")]
    pub secret_env: Vec<String>,
    /// For header tokens (WebRun, SmartBrowse): the header carrying it (default: the
    /// platform's own, from the provider table).
    #[serde(default)]
    pub header_name: Option<String>,
    /// Accept deliveries without any authentication (TinyFish and SmartBrowse sign nothing).
    /// Chosen by name, never a default.
    #[serde(default)]
    pub unsigned: bool,
    /// Skyvern: also accept a body re-serialized by a proxy when its canonical form matches.
    #[serde(default)]
    pub canonical_fallback: bool,
    /// Skyvern: refuse deliveries whose (unsigned) `x-skyvern-timestamp` is further from now
    /// than this many seconds.
    #[serde(default)]
    pub timestamp_tolerance_secs: Option<u64>,
    /// The platform's run API base URL (runhook appends the platform's run path); default its
    /// hosted API. Only with `confirm` or `reconcile_after_secs`.
    #[serde(default)]
    pub api_url: Option<String>,
    /// The environment variable holding the run API key; required by `confirm` and
    /// `reconcile_after_secs`.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Fetch each run from the platform's run API before the handler runs, and hand the
    /// handler the fetched run; a run the API does not know is dead-lettered `not_confirmed`.
    #[serde(default, deserialize_with = "confirm_from_bool")]
    pub confirm: Confirm,
    /// Reconcile this provider's expected runs (`runhook expect`) whose webhook has not been
    /// processed this many seconds after registration (the default window; `--within`
    /// overrides it per run). Needs a Redis store.
    #[serde(default)]
    pub reconcile_after_secs: Option<u64>,
    /// Sweep the platform's recent runs this often, in seconds, and process the finished ones
    /// whose webhook never came (TinyFish, Skyvern); instances sharing a store take turns.
    #[serde(default)]
    pub sweep_every_secs: Option<u64>,
    /// How far back a sweep looks, in seconds (default 3600).
    #[serde(default)]
    pub sweep_window_secs: Option<u64>,
    /// `skip_interim = true`: answer interim events (a Skyvern attempt that will be retried,
    /// `retry_pending: true`) 200 without running the handler; the final event still runs.
    #[serde(
        default,
        rename = "skip_interim",
        deserialize_with = "interim_from_skip"
    )]
    pub interim: Interim,
}

fn interim_from_skip<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Interim, D::Error> {
    Ok(if bool::deserialize(d)? {
        Interim::Skip
    } else {
        Interim::Process
    })
}

/// Whether a route confirms each delivery with the platform's run API (`confirm = true`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Confirm {
    /// The POSTed body is processed as it came (after authentication).
    #[default]
    Off,
    /// The run is fetched from the run API and the fetched run is processed.
    FetchFirst,
}

fn confirm_from_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Confirm, D::Error> {
    Ok(if bool::deserialize(d)? {
        Confirm::FetchFirst
    } else {
        Confirm::Off
    })
}

impl RouteSpec {
    /// A route for `provider` at `path` with the secrets in `secret_env`, other settings at
    /// their defaults.
    pub fn new(path: impl Into<String>, provider: Provider, secret_env: Vec<String>) -> Self {
        Self {
            path: path.into(),
            provider,
            secret_env,
            header_name: None,
            unsigned: false,
            canonical_fallback: false,
            timestamp_tolerance_secs: None,
            api_url: None,
            api_key_env: None,
            confirm: Confirm::Off,
            reconcile_after_secs: None,
            sweep_every_secs: None,
            sweep_window_secs: None,
            interim: Interim::Process,
        }
    }

    /// Whether this route reconciles its provider's expected runs.
    pub fn reconciles(&self) -> bool {
        self.reconcile_after_secs.is_some()
    }

    /// Whether this route calls its platform's run API (to confirm, to reconcile, to sweep).
    pub fn uses_run_api(&self) -> bool {
        self.confirm == Confirm::FetchFirst || self.reconciles() || self.sweeps()
    }

    /// Whether this route sweeps its platform's recent runs.
    pub fn sweeps(&self) -> bool {
        self.sweep_every_secs.is_some()
    }

    /// Refuses run API settings that cannot work: on a platform without a run API (WebRun),
    /// without `api_key_env`, a zero window, or API settings with neither feature on.
    pub fn check_runs(&self) -> Result<(), ServeConfigError> {
        let route = self.path.clone();
        let platform = Platform::of(self.provider);
        if !self.uses_run_api() {
            if self.api_url.is_some() || self.api_key_env.is_some() {
                return Err(ServeConfigError::RunApiUnused { route });
            }
            return Ok(());
        }
        if platform.run_api.is_none() {
            let platform = platform.display_name;
            return Err(ServeConfigError::NoRunApi { route, platform });
        }
        if self.api_key_env.is_none() {
            return Err(ServeConfigError::NoApiKeyEnv { route });
        }
        if self.reconcile_after_secs == Some(0) {
            return Err(ServeConfigError::ZeroWindow { route });
        }
        if self.sweeps() && platform.run_api.and_then(|api| api.list).is_none() {
            let platform = platform.display_name;
            return Err(ServeConfigError::NoRunList { route, platform });
        }
        if self.sweep_every_secs == Some(0) || self.sweep_window_secs == Some(0) {
            return Err(ServeConfigError::ZeroSweep { route });
        }
        if self.sweep_window_secs.is_some() && !self.sweeps() {
            return Err(ServeConfigError::ZeroSweep { route });
        }
        Ok(())
    }

    /// The index of the `{secret}` segment in the path, if it has one.
    pub(super) fn secret_segment(&self) -> Result<Option<usize>, ServeConfigError> {
        let segments: Vec<&str> = self.path.trim_start_matches('/').split('/').collect();
        let mut found = segments
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == SECRET_SEGMENT);
        match (found.next(), found.next()) {
            (None, _) => Ok(None),
            (Some((index, _)), None) => Ok(Some(index)),
            (Some(_), Some(_)) => Err(ServeConfigError::TwoSecretSegments {
                route: self.path.clone(),
            }),
        }
    }

    /// The scheme that authenticates this route's deliveries, with the secrets read from the
    /// environment:
    /// - `unsigned`: none (no secrets allowed);
    /// - a `{secret}` segment in the path: that segment must equal a secret;
    /// - Skyvern: the `x-skyvern-signature` HMAC keyed by the API key;
    /// - WebRun, SmartBrowse: the header `header_name` must equal a secret;
    /// - Browserbase: Standard Webhooks, the secrets being `whsec_` signing secrets;
    /// - Firecrawl: `x-firecrawl-signature` keyed by the webhook secret;
    /// - Browser Use: `x-browser-use-signature` (or the older `x-webhook-signature`) keyed by
    ///   the webhook secret;
    /// - TinyFish signs nothing: a `{secret}` path or `unsigned` is required.
    pub fn verifier(&self) -> Result<Box<dyn Verifier>, ServeConfigError> {
        let route = &self.path;
        if !route.starts_with('/') {
            return Err(ServeConfigError::NotAbsolute {
                route: route.clone(),
            });
        }
        let segment = self.secret_segment()?;
        if self.unsigned {
            if !self.secret_env.is_empty() || segment.is_some() {
                return Err(ServeConfigError::UnsignedWithSecret {
                    route: route.clone(),
                });
            }
            tracing::warn!(route = %route, provider = %self.provider, "route accepts unauthenticated deliveries");
            return Ok(Box::new(Unsigned::accept_without_authentication()));
        }
        if self.secret_env.is_empty() {
            return Err(ServeConfigError::NoSecret {
                route: route.clone(),
            });
        }
        let keys = env::secrets(&self.secret_env).map_err(|source| ServeConfigError::Env {
            route: route.clone(),
            source,
        })?;
        self.verifier_with(keys)
    }

    /// The scheme as [`RouteSpec::verifier`] chooses it, with `keys` as the accepted secrets
    /// (ignored by an `unsigned` route).
    pub fn verifier_with(&self, keys: Secrets) -> Result<Box<dyn Verifier>, ServeConfigError> {
        let route = self.path.clone();
        if self.unsigned {
            return Ok(Box::new(Unsigned::accept_without_authentication()));
        }
        if let Some(index) = self.secret_segment()? {
            return Ok(Box::new(PathSecret::at(
                SegmentPosition::Index(index),
                keys,
            )));
        }
        let platform = Platform::of(self.provider);
        match (platform.default_scheme, &self.header_name) {
            (DefaultScheme::HeaderToken { header }, name) => {
                HeaderToken::new(name.as_deref().unwrap_or(header), keys)
                    .map(|scheme| Box::new(scheme) as Box<dyn Verifier>)
                    .map_err(|source| ServeConfigError::HeaderToken { route, source })
            }
            (_, Some(_)) => Err(ServeConfigError::NoCredentialHeader {
                route,
                platform: platform.display_name,
            }),
            (DefaultScheme::SkyvernSignature, None) => {
                let mut scheme = SkyvernSignature::new(keys);
                if self.canonical_fallback {
                    scheme = scheme.with_canonical_fallback();
                }
                if let Some(secs) = self.timestamp_tolerance_secs {
                    scheme = scheme.with_timestamp_tolerance(Duration::from_secs(secs));
                }
                Ok(Box::new(scheme))
            }
            (DefaultScheme::StandardWebhooks, None) => {
                let decoded = keys
                    .iter()
                    .map(|key| {
                        let text = std::str::from_utf8(key.expose()).map_err(|_| {
                            runhook::verify::ConfigError::InvalidStandardWebhooksSecret
                        })?;
                        Secret::from_standard_webhooks(text)
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .and_then(Secrets::new)
                    .map_err(|source| ServeConfigError::StandardWebhooksSecret {
                        route: route.clone(),
                        source,
                    })?;
                Ok(Box::new(StandardWebhooks::new(decoded)))
            }
            (DefaultScheme::FirecrawlSignature, None) => {
                Ok(Box::new(FirecrawlSignature::new(keys)))
            }
            (DefaultScheme::BrowserUseSignature, None) => {
                let mut scheme = BrowserUseSignature::new(keys);
                if let Some(secs) = self.timestamp_tolerance_secs {
                    scheme = scheme.with_timestamp_tolerance(Duration::from_secs(secs));
                }
                Ok(Box::new(scheme))
            }
            (DefaultScheme::PathSecret, None) => Err(ServeConfigError::SignsNothing {
                route,
                platform: platform.display_name,
            }),
        }
    }
}

fn provider_from_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Provider, D::Error> {
    let name = String::deserialize(d)?;
    crate::names::provider_name(&name).map_err(serde::de::Error::custom)
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tinyfish_needs_a_path_secret_or_an_explicit_unsigned() {
        let mut route = RouteSpec::new("/tf", Provider::TinyFish, vec!["PATH".into()]);
        assert!(route
            .verifier()
            .err()
            .unwrap()
            .to_string()
            .contains("signs nothing"));
        route.secret_env.clear();
        assert!(route
            .verifier()
            .err()
            .unwrap()
            .to_string()
            .contains("no secret"));
        route.unsigned = true;
        assert!(route.verifier().is_ok());
        route.path = "/tf/{secret}".into();
        assert!(route
            .verifier()
            .err()
            .unwrap()
            .to_string()
            .contains("takes no secret"));
    }
}
