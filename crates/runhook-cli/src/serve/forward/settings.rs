//! The forward handler's settings, read from `runhook.toml` or the flags, and how they size
//! the worker's attempt timeout.

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::serve::config::{HandlerKind, ServeConfig};

/// The longest a forwarded request (connect, TLS, answer) may take, when the handler timeout
/// is not shorter.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The default cap on a target's `Retry-After`, in seconds.
pub const DEFAULT_RETRY_AFTER_CAP_SECS: u64 = 60;

/// The fastest rate that may be configured, requests per second.
const MAX_RATE_PER_SEC: f64 = 1_000_000.0;

/// The slowest: one request every 1000 s.
const MIN_RATE_PER_SEC: f64 = 0.001;

/// Why forward settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ForwardSettingsError {
    /// `forward_concurrency = 0`.
    #[error("forward concurrency must be at least 1")]
    ZeroConcurrency,
    /// A rate outside [`MIN_RATE_PER_SEC`, `MAX_RATE_PER_SEC`].
    #[error(
        "forward rate must be between {MIN_RATE_PER_SEC} and {MAX_RATE_PER_SEC} requests per \
         second"
    )]
    Rate,
    /// Forward settings without a forward handler.
    #[error(
        "forward_retry_after_cap_secs, forward_rate_per_sec and forward_concurrency apply to \
         a forward handler only"
    )]
    NotForwarding,
}

/// How the forward handler talks to its target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForwardSettings {
    /// How long one request may take, measured from when it holds its permits.
    pub request_timeout: Duration,
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    pub retry_after_cap: Duration,
    /// At most this many requests in flight at once.
    pub concurrency: Option<NonZeroUsize>,
    /// At least this long between two requests.
    pub interval: Option<Duration>,
}

impl ForwardSettings {
    /// Whether requests may wait for a permit before they are sent.
    pub fn limited(&self) -> bool {
        self.concurrency.is_some() || self.interval.is_some()
    }

    /// The forward handler's settings `config` gives, or why they cannot be used.
    pub fn of(config: &ServeConfig) -> Result<Self, ForwardSettingsError> {
        let concurrency = match config.forward_concurrency {
            None => None,
            Some(n) => Some(NonZeroUsize::new(n).ok_or(ForwardSettingsError::ZeroConcurrency)?),
        };
        let interval = match config.forward_rate_per_sec {
            None => None,
            Some(rate) if (MIN_RATE_PER_SEC..=MAX_RATE_PER_SEC).contains(&rate) => {
                Duration::try_from_secs_f64(1.0 / rate).ok()
            }
            Some(_) => return Err(ForwardSettingsError::Rate),
        };
        Ok(Self {
            request_timeout: REQUEST_TIMEOUT.min(config.handler_timeout()),
            retry_after_cap: Duration::from_secs(config.forward_retry_after_cap_secs),
            concurrency,
            interval,
        })
    }

    /// Refuses forward settings in `config` that cannot be used, or given without a forward
    /// handler.
    pub fn check(config: &ServeConfig) -> Result<(), ForwardSettingsError> {
        let settings = Self::of(config)?;
        let forwarding = matches!(config.handler, HandlerKind::Forward(_));
        let any_set = settings.limited()
            || config.forward_retry_after_cap_secs != DEFAULT_RETRY_AFTER_CAP_SECS;
        if any_set && !forwarding {
            return Err(ForwardSettingsError::NotForwarding);
        }
        Ok(())
    }

    /// How long the worker lets one forward attempt run under `config`: the handler timeout,
    /// stretched when
    /// limits may make a request wait for its permits first. Each worker has one request at a
    /// time and both waits are first come, first served, so a request never waits longer than
    /// every other worker's whole request (and rate slot) before its own; the attempt gets
    /// that much on top of its own request, so that a run is never failed, nor dead-lettered,
    /// only because the limiter made it queue. The request itself stays bounded by
    /// `request_timeout`.
    pub fn attempt_timeout(&self, config: &ServeConfig) -> Duration {
        let handler_timeout = config.handler_timeout();
        if !self.limited() {
            return handler_timeout;
        }
        let workers = config
            .workers
            .saturating_mul(config.routes.len().max(1))
            .min(u32::MAX as usize) as u32;
        let per_request = self.request_timeout + self.interval.unwrap_or_default();
        let queued = per_request.saturating_mul(workers);
        handler_timeout.max(self.request_timeout.saturating_add(queued))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::config::RouteSpec;
    use runhook::payload::Provider;

    fn config(handler: HandlerKind) -> ServeConfig {
        let route = RouteSpec::new("/hook", Provider::Skyvern, vec!["K".into()]);
        ServeConfig::new(vec![route], handler)
    }

    fn forward() -> ServeConfig {
        config(HandlerKind::Forward(
            super::super::ForwardUrl::parse("http://127.0.0.1:1/x").unwrap(),
        ))
    }

    #[test]
    fn limits_are_checked() {
        let mut c = forward();
        c.forward_concurrency = Some(0);
        assert!(ForwardSettings::check(&c).is_err());
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            let mut c = forward();
            c.forward_rate_per_sec = Some(rate);
            assert!(ForwardSettings::check(&c).is_err(), "{rate}");
        }
        let mut c = forward();
        c.forward_rate_per_sec = Some(4.0);
        c.forward_concurrency = Some(2);
        let settings = ForwardSettings::of(&c).unwrap();
        assert_eq!(settings.interval, Some(Duration::from_millis(250)));
        assert_eq!(settings.concurrency, NonZeroUsize::new(2));
        let mut c = config(HandlerKind::Exec(
            crate::serve::config::ExecSpec::new("true".into(), Vec::new()).unwrap(),
        ));
        c.forward_concurrency = Some(2);
        assert!(ForwardSettings::check(&c).is_err());
    }

    #[test]
    fn the_keys_are_read_from_runhook_toml() {
        let text = r#"
            forward_retry_after_cap_secs = 5
            forward_rate_per_sec = 0.5
            forward_concurrency = 3
            [handler]
            forward = "https://hooks.example.com/in/s3cr3t"
            [[route]]
            path = "/hook"
            provider = "skyvern"
            secret_env = "K"
        "#;
        let c = ServeConfig::from_toml(text).unwrap();
        let settings = ForwardSettings::of(&c).unwrap();
        assert_eq!(settings.retry_after_cap, Duration::from_secs(5));
        assert_eq!(settings.interval, Some(Duration::from_secs(2)));
        assert_eq!(settings.concurrency, NonZeroUsize::new(3));
        assert!(
            !format!("{c:?}").contains("s3cr3t"),
            "Debug shows the URL's path"
        );
        let bad = text.replace("https://hooks.example.com/in/s3cr3t", "ftp://h/s3cr3t");
        let error = ServeConfig::from_toml(&bad).unwrap_err().to_string();
        assert!(
            error.contains("http") && !error.contains("s3cr3t"),
            "{error}"
        );
    }

    #[test]
    fn the_attempt_timeout_covers_the_wait_for_permits() {
        let mut c = forward();
        c.handler_timeout_secs = 10;
        c.workers = 8;
        let unlimited = ForwardSettings::of(&c).unwrap();
        assert_eq!(unlimited.attempt_timeout(&c), Duration::from_secs(10));
        c.forward_concurrency = Some(1);
        c.forward_rate_per_sec = Some(1.0);
        let limited = ForwardSettings::of(&c).unwrap();
        // Its own 10 s request, after 8 others of 10 s + 1 s each.
        assert_eq!(limited.attempt_timeout(&c), Duration::from_secs(98));
    }
}
