//! `--forward URL`: POST each event's JSON to the user's service, over TLS (rustls with the
//! platform's trust store, or the `SSL_CERT_FILE` / `SSL_CERT_DIR` given) when the URL is
//! `https://`.
//!
//! - Only a 2xx is success. A 3xx is a failed attempt: redirects are never followed (the
//!   event, and whatever the URL carries, would go to a host nobody configured).
//! - A 429 or 503 with `Retry-After` (seconds or an HTTP-date) fails the attempt with a
//!   [`runhook::retry::RetryAfter`] hint, capped, so the worker waits at least that long.
//! - Errors and logs name the target by its origin only (`scheme://host:port`): the path
//!   and query may hold a secret.
//! - Optional limits (at most N at once, at most R per second) apply to every route's workers
//!   together; see [`limits`].

mod limits;
mod settings;
mod target;

use std::sync::Arc;
use std::time::SystemTime;

use runhook::payload::RunEvent;
use runhook::retry::RetryAfter;
use runhook::{Handler, HandlerError};

pub use settings::{ForwardSettings, ForwardSettingsError, DEFAULT_RETRY_AFTER_CAP_SECS};
pub use target::{ForwardUrl, ForwardUrlError};

use crate::event_json;
use limits::Limits;

/// The header carrying the run's de-duplication key.
const DEDUP_KEY_HEADER: &str = "x-runhook-dedup-key";

/// The forward handler's HTTP client could not be built: the error and its causes, without
/// the URL.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct HttpClientError(String);

/// The forward handler for `target`, through `proxy` if one is given. Without one it
/// connects directly: the environment's `HTTP_PROXY` family is ignored, so that the target's
/// URL (which may hold a secret) and the events never go to a proxy nobody chose for them.
pub fn handler(
    target: &ForwardUrl,
    settings: &ForwardSettings,
    proxy: Option<&str>,
) -> Result<Arc<dyn Handler>, HttpClientError> {
    let client = reqwest::Client::builder()
        .timeout(settings.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    let client = match proxy {
        Some(url) => client.proxy(
            reqwest::Proxy::all(url)
                .map_err(|_| HttpClientError("the proxy URL is not a URL".into()))?,
        ),
        None => client,
    };
    let client = client
        .build()
        .map_err(|e| HttpClientError(target::describe(e)))?;
    tracing::info!(
        forward_to = %target.origin(),
        request_timeout_ms = settings.request_timeout.as_millis() as u64,
        retry_after_cap_secs = settings.retry_after_cap.as_secs(),
        concurrency = settings.concurrency.map(|n| n.get()),
        rate_per_sec = settings.interval.map(|i| 1.0 / i.as_secs_f64()),
        "forwarding events (path and query not shown)"
    );
    let forward = Arc::new(Forward {
        client,
        target: target.clone(),
        limits: Limits::new(settings.concurrency, settings.interval),
        retry_after_cap: settings.retry_after_cap,
    });
    Ok(Arc::new(move |event: Arc<RunEvent>| {
        let forward = forward.clone();
        async move { forward.send(&event).await }
    }))
}

/// What one forward handler holds.
struct Forward {
    client: reqwest::Client,
    target: ForwardUrl,
    limits: Limits,
    retry_after_cap: std::time::Duration,
}

impl Forward {
    /// One attempt: wait for the permits, then POST (the request's timeout starts then).
    async fn send(&self, event: &RunEvent) -> Result<(), HandlerError> {
        let body = event_json::record_line(event)?;
        let _permit = self.limits.acquire().await;
        let response = self
            .client
            .post(self.target.url().clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(DEDUP_KEY_HEADER, event.dedup_key.as_str())
            .body(body)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "forward to {}: {}",
                    self.target.origin(),
                    target::describe(e)
                )
            })?;
        self.judge(&response)
    }

    /// A 2xx is success; anything else a failure, with a hint on a 429 or 503 that says when.
    fn judge(&self, response: &reqwest::Response) -> Result<(), HandlerError> {
        let status = response.status();
        let origin = self.target.origin();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            return Err(format!(
                "forward to {origin} answered {status}: redirects are not followed \
                 (give --forward the final URL)"
            )
            .into());
        }
        let message = format!("forward to {origin} answered {status}");
        let asks_to_wait = matches!(
            status,
            http::StatusCode::TOO_MANY_REQUESTS | http::StatusCode::SERVICE_UNAVAILABLE
        );
        let hint = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .filter(|_| asks_to_wait)
            .and_then(|value| {
                runhook::verify::parse_retry_after(value, SystemTime::now())
                    .map(|wait| wait.min(self.retry_after_cap))
            });
        Err(match hint {
            Some(after) => RetryAfter::new(after, message).into(),
            None => message.into(),
        })
    }
}
