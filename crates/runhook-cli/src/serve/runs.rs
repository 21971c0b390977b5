//! A route's run API settings (`api_url`, `api_key_env`, `confirm`, `reconcile_after_secs`,
//! `sweep_every_secs`, `sweep_window_secs`), checked by [`RouteSpec::check_runs`], turned into
//! the run API client its receiver confirms, reconciles and sweeps with.

use std::sync::Arc;
use std::time::Duration;

use runhook::runs::{ReconcilePolicy, RunApiClient, RunLister, RunSource, SweepPolicy};
use runhook::Secret;

use super::config::{Confirm, RouteSpec, ServeConfigError};
use crate::env;

/// How far back a sweep looks when the route gives no `sweep_window_secs`: an hour.
const DEFAULT_SWEEP_WINDOW_SECS: u64 = 3600;

/// What a route does with its platform's run API: nothing, confirm, reconcile, or both.
#[derive(Default)]
pub struct RouteRuns {
    /// Where each delivery is confirmed before its handler runs.
    pub confirm: Option<Arc<dyn RunSource>>,
    /// Where this provider's expected runs are reconciled from, and how.
    pub reconcile: Option<(Arc<dyn RunSource>, ReconcilePolicy)>,
    /// Where this provider's recent runs are swept from, and how.
    pub sweep: Option<(Arc<dyn RunLister>, SweepPolicy)>,
}

impl RouteRuns {
    /// `spec`'s run API settings, with the API key read from its `api_key_env`, through
    /// `proxy` if one is given (no proxy otherwise, whatever the environment says).
    pub fn of(spec: &RouteSpec, proxy: Option<&str>) -> Result<Self, ServeConfigError> {
        spec.check_runs()?;
        match &spec.api_key_env {
            Some(var) if spec.uses_run_api() => {
                let key = env::secret(var).map_err(|source| ServeConfigError::Env {
                    route: spec.path.clone(),
                    source,
                })?;
                Self::with_key(spec, key, proxy, ReconcilePolicy::after)
            }
            _ => Ok(Self::default()),
        }
    }

    /// `spec`'s run API settings with `key` as the API key, reconciling with the policy
    /// `policy` makes of the route's window.
    pub fn with_key(
        spec: &RouteSpec,
        key: Secret,
        proxy: Option<&str>,
        policy: impl FnOnce(Duration) -> ReconcilePolicy,
    ) -> Result<Self, ServeConfigError> {
        if !spec.uses_run_api() {
            return Ok(Self::default());
        }
        let route = &spec.path;
        let client = |source| ServeConfigError::Client {
            route: route.clone(),
            source,
        };
        let mut builder = RunApiClient::builder(spec.provider, key).map_err(client)?;
        if let Some(url) = &spec.api_url {
            // The error never repeats the URL: it may carry credentials.
            builder = builder
                .base_url(url)
                .map_err(|source| ServeConfigError::ApiUrl {
                    route: route.clone(),
                    source,
                })?;
        }
        if let Some(proxy) = proxy {
            builder = builder.proxy(proxy).map_err(client)?;
        }
        let client = builder.build().map_err(client)?;
        tracing::info!(route = %route, provider = %spec.provider, api = ?client, confirm = spec.confirm == Confirm::FetchFirst, reconcile_after_secs = ?spec.reconcile_after_secs, sweep_every_secs = ?spec.sweep_every_secs, "run API in use");
        let client = Arc::new(client);
        let source: Arc<dyn RunSource> = client.clone();
        let sweep = spec.sweep_every_secs.map(|every| {
            let window = spec.sweep_window_secs.unwrap_or(DEFAULT_SWEEP_WINDOW_SECS);
            let policy = SweepPolicy::new(Duration::from_secs(every), Duration::from_secs(window));
            (client as Arc<dyn RunLister>, policy)
        });
        Ok(RouteRuns {
            confirm: (spec.confirm == Confirm::FetchFirst).then(|| source.clone()),
            reconcile: spec
                .reconcile_after_secs
                .map(|secs| (source, policy(Duration::from_secs(secs)))),
            sweep,
        })
    }
}

#[cfg(test)]
mod tests {
    use runhook::payload::Provider;

    use super::*;

    fn route(provider: Provider) -> RouteSpec {
        let mut route = RouteSpec::new("/r", provider, vec![]);
        route.unsigned = true;
        route
    }

    #[test]
    fn webrun_has_no_run_api() {
        let mut webrun = route(Provider::WebRun);
        webrun.confirm = Confirm::FetchFirst;
        webrun.api_key_env = Some("K".into());
        assert!(webrun
            .check_runs()
            .unwrap_err()
            .to_string()
            .contains("no run API"));
    }

    #[test]
    fn the_run_api_needs_a_key_variable_and_a_feature() {
        let mut tinyfish = route(Provider::TinyFish);
        tinyfish.reconcile_after_secs = Some(5);
        assert!(tinyfish
            .check_runs()
            .unwrap_err()
            .to_string()
            .contains("api_key_env"));
        tinyfish.api_key_env = Some("RUNHOOK_TEST_UNSET_KEY_VAR".into());
        assert!(tinyfish.check_runs().is_ok());
        let err = RouteRuns::of(&tinyfish, None).err().unwrap().to_string();
        assert!(
            err.contains("RUNHOOK_TEST_UNSET_KEY_VAR is not set"),
            "{err}"
        );
        tinyfish.reconcile_after_secs = None;
        assert!(tinyfish
            .check_runs()
            .unwrap_err()
            .to_string()
            .contains("neither is set"));
    }

    #[test]
    fn a_bad_api_url_is_refused_without_repeating_it() {
        let mut smartbrowse = route(Provider::SmartBrowse);
        smartbrowse.confirm = Confirm::FetchFirst;
        smartbrowse.api_key_env = Some("K".into());
        smartbrowse.api_url = Some("ftp://user:hunter2@host".into());
        let err = RouteRuns::with_key(
            &smartbrowse,
            Secret::new("k").unwrap(),
            None,
            ReconcilePolicy::after,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("api_url"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        smartbrowse.api_url = Some("http://127.0.0.1:9".into());
        let runs = RouteRuns::with_key(
            &smartbrowse,
            Secret::new("k").unwrap(),
            None,
            ReconcilePolicy::after,
        )
        .unwrap();
        assert!(runs.confirm.is_some() && runs.reconcile.is_none());
    }
}
