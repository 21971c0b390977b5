//! A route's run API settings (`api_url`, `api_key_env`, `confirm`, `reconcile_after_secs`)
//! checked at startup and turned into the SDK's confirm and reconcile settings.

use std::sync::Arc;
use std::time::Duration;

use runhook::platform::Platform;
use runhook::receiver::BackgroundBuilder;
use runhook::runs::{ReconcilePolicy, RunApiClient, RunSource};
use runhook::Secret;

use super::config::{Confirm, RouteSpec};
use crate::cmd::secrets;

/// What a route does with its platform's run API: nothing, confirm, reconcile, or both.
#[derive(Default)]
pub struct RouteRuns {
    /// Where each delivery is confirmed before its handler runs.
    pub confirm: Option<Arc<dyn RunSource>>,
    /// Where this provider's expected runs are reconciled from, and how.
    pub reconcile: Option<(Arc<dyn RunSource>, ReconcilePolicy)>,
}

impl RouteRuns {
    /// `builder` with these settings.
    pub fn apply(self, mut builder: BackgroundBuilder) -> BackgroundBuilder {
        if let Some(source) = self.confirm {
            builder = builder.confirm(source);
        }
        if let Some((source, policy)) = self.reconcile {
            builder = builder.reconcile(source, policy);
        }
        builder
    }
}

impl RouteSpec {
    /// Whether this route reconciles its provider's expected runs.
    pub fn reconciles(&self) -> bool {
        self.reconcile_after_secs.is_some()
    }

    fn uses_run_api(&self) -> bool {
        self.confirm == Confirm::FetchFirst || self.reconciles()
    }

    /// Refuses run API settings that cannot work: on a platform without a run API (WebRun),
    /// without `api_key_env`, a zero window, or API settings with neither feature on.
    pub fn check_runs(&self) -> Result<(), String> {
        let route = &self.path;
        if !self.uses_run_api() {
            if self.api_url.is_some() || self.api_key_env.is_some() {
                return Err(format!(
                    "{route}: api_url and api_key_env are for confirm = true or \
                     reconcile_after_secs; neither is set"
                ));
            }
            return Ok(());
        }
        if Platform::of(self.provider).run_api.is_none() {
            return Err(format!(
                "{route}: {} documents no run API, so it can neither confirm nor reconcile",
                Platform::of(self.provider).display_name
            ));
        }
        if self.api_key_env.is_none() {
            return Err(format!(
                "{route}: confirm and reconcile_after_secs call the run API: give api_key_env \
                 (--api-key-env VAR), the environment variable holding the API key"
            ));
        }
        if self.reconcile_after_secs == Some(0) {
            return Err(format!("{route}: reconcile_after_secs must be at least 1"));
        }
        Ok(())
    }

    /// The route's run API settings, with the API key read from `api_key_env`.
    pub fn runs(&self) -> Result<RouteRuns, String> {
        self.check_runs()?;
        match &self.api_key_env {
            Some(var) if self.uses_run_api() => {
                let key = secrets::from_env(var).map_err(|e| format!("{}: {e}", self.path))?;
                self.runs_with(key, ReconcilePolicy::after)
            }
            _ => Ok(RouteRuns::default()),
        }
    }

    /// The route's run API settings with `key` as the API key, reconciling with the policy
    /// `policy` makes of the route's window.
    pub fn runs_with(
        &self,
        key: Secret,
        policy: impl FnOnce(Duration) -> ReconcilePolicy,
    ) -> Result<RouteRuns, String> {
        if !self.uses_run_api() {
            return Ok(RouteRuns::default());
        }
        let route = &self.path;
        let mut builder =
            RunApiClient::builder(self.provider, key).map_err(|e| format!("{route}: {e}"))?;
        if let Some(url) = &self.api_url {
            // The error never repeats the URL: it may carry credentials.
            builder = builder
                .base_url(url)
                .map_err(|e| format!("{route}: api_url: {e}"))?;
        }
        let client = builder.build().map_err(|e| format!("{route}: {e}"))?;
        tracing::info!(route = %route, provider = %self.provider, api = ?client, confirm = self.confirm == Confirm::FetchFirst, reconcile_after_secs = ?self.reconcile_after_secs, "run API in use");
        let source: Arc<dyn RunSource> = Arc::new(client);
        Ok(RouteRuns {
            confirm: (self.confirm == Confirm::FetchFirst).then(|| source.clone()),
            reconcile: self
                .reconcile_after_secs
                .map(|secs| (source, policy(Duration::from_secs(secs)))),
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
        assert!(webrun.check_runs().unwrap_err().contains("no run API"));
    }

    #[test]
    fn the_run_api_needs_a_key_variable_and_a_feature() {
        let mut tinyfish = route(Provider::TinyFish);
        tinyfish.reconcile_after_secs = Some(5);
        assert!(tinyfish.check_runs().unwrap_err().contains("api_key_env"));
        tinyfish.api_key_env = Some("RUNHOOK_TEST_UNSET_KEY_VAR".into());
        assert!(tinyfish.check_runs().is_ok());
        let err = tinyfish.runs().err().unwrap();
        assert!(
            err.contains("RUNHOOK_TEST_UNSET_KEY_VAR is not set"),
            "{err}"
        );
        tinyfish.reconcile_after_secs = None;
        assert!(tinyfish
            .check_runs()
            .unwrap_err()
            .contains("neither is set"));
    }

    #[test]
    fn a_bad_api_url_is_refused_without_repeating_it() {
        let mut smartbrowse = route(Provider::SmartBrowse);
        smartbrowse.confirm = Confirm::FetchFirst;
        smartbrowse.api_key_env = Some("K".into());
        smartbrowse.api_url = Some("ftp://user:hunter2@host".into());
        let err = smartbrowse
            .runs_with(Secret::new("k").unwrap(), ReconcilePolicy::after)
            .err()
            .unwrap();
        assert!(err.contains("api_url"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        smartbrowse.api_url = Some("http://127.0.0.1:9".into());
        let runs = smartbrowse
            .runs_with(Secret::new("k").unwrap(), ReconcilePolicy::after)
            .unwrap();
        assert!(runs.confirm.is_some() && runs.reconcile.is_none());
    }
}
