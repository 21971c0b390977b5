//! The receiver the demo plays its script at: a route per platform, sharing a store that is
//! down for one claim ([`OutageOnce`]), a handler that counts its calls, and in-memory dead
//! letters.

use std::sync::Arc;

use runhook::dead_letter::MemoryDeadLetters;
use runhook::payload::{Provider, RunEvent};
use runhook::retry::RetryPolicy;
use runhook::runs::ReconcilePolicy;

use super::script::{
    demo_secret, BROWSERBASE_SECRET, BROWSER_USE_SECRET, CONFIRM_PATH, FIRECRAWL_SECRET,
    RECONCILE_EVERY, SKYVERN_KEY, SMARTBROWSE_PATH, TINYFISH_API_KEY, TINYFISH_PATH, WEBRUN_AUTH,
};
use super::{Calls, DemoError};
use crate::outage_store::OutageOnce;
use crate::serve::app::{ServedRoute, Shared};
use crate::serve::config::{Confirm, RouteSpec};
use crate::serve::runs::RouteRuns;

/// The routes: one per platform, a Skyvern route with the canonical fallback on, and a
/// TinyFish route confirming and reconciling with the run API at `api_base`.
pub fn demo_routes(
    calls: Calls,
    dead_letters: Arc<MemoryDeadLetters>,
    api_base: &str,
) -> Result<Arc<[ServedRoute]>, DemoError> {
    let shared = Shared {
        store: Arc::new(OutageOnce::for_provider(Provider::TinyFish)),
        postgres: None,
        redis: None,
        handler: Arc::new(move |event: Arc<RunEvent>| {
            let calls = calls.clone();
            async move {
                calls.record(&event.dedup_key, event.source);
                Ok::<(), std::io::Error>(())
            }
        }),
        dead_letters,
        workers: 2,
        queue_capacity: Some(64),
        retry: RetryPolicy::default(),
        pre_auth_budget: runhook::receiver::PreAuthBudget::process(),
    };
    let policy = |after| ReconcilePolicy::after(after).every(RECONCILE_EVERY);
    specs(api_base)
        .iter()
        .map(|(spec, secret)| {
            let runs = RouteRuns::with_key(spec, demo_secret(TINYFISH_API_KEY)?, None, policy)?;
            let verifier = spec.verifier_with(demo_secret(secret)?.into())?;
            Ok(shared.route(spec, verifier, runs)?)
        })
        .collect()
}

/// Each route, with the secret it accepts.
fn specs(api_base: &str) -> [(RouteSpec, &'static str); 9] {
    let route = |path: &str, provider| RouteSpec::new(path, provider, vec![]);
    let mut proxied = route("/webhooks/skyvern-behind-proxy", Provider::Skyvern);
    proxied.canonical_fallback = true;
    let mut confirmed = route(CONFIRM_PATH, Provider::TinyFish);
    confirmed.unsigned = true;
    confirmed.confirm = Confirm::FetchFirst;
    confirmed.api_url = Some(api_base.to_string());
    confirmed.reconcile_after_secs = Some(1);
    [
        (route("/webhooks/skyvern", Provider::Skyvern), SKYVERN_KEY),
        (proxied, SKYVERN_KEY),
        (
            route("/webhooks/tinyfish/{secret}", Provider::TinyFish),
            TINYFISH_PATH,
        ),
        (route("/webhooks/webrun", Provider::WebRun), WEBRUN_AUTH),
        (
            route("/webhooks/smartbrowse/{secret}", Provider::SmartBrowse),
            SMARTBROWSE_PATH,
        ),
        (confirmed, TINYFISH_PATH),
        (
            route("/webhooks/browserbase", Provider::Browserbase),
            BROWSERBASE_SECRET,
        ),
        (
            route("/webhooks/firecrawl", Provider::Firecrawl),
            FIRECRAWL_SECRET,
        ),
        (
            route("/webhooks/browser-use", Provider::BrowserUse),
            BROWSER_USE_SECRET,
        ),
    ]
}
