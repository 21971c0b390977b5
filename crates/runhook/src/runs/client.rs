//! The run API client (feature `runs`): reqwest over rustls, one per platform and account.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderValue, StatusCode};
use rand::RngExt as _;
use runhook_core::payload::{from_run_api, ApiRun, Provider};
use runhook_core::platform::{Platform, RunApi};
use runhook_core::Secret;

use tokio::sync::Semaphore;

use super::{FetchError, Fetched, RunSource};
use crate::handler::BoxFuture;

/// The default time one request may take.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default number of requests per fetch, the first included.
const DEFAULT_ATTEMPTS: u32 = 3;
/// The default largest answer read.
const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;
/// Requests a [`RunApiClient`] makes at once by default
/// ([`RunApiClientBuilder::max_in_flight`]).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 8;
/// The longest `Retry-After` a fetch waits for; a longer one fails the fetch (its caller has
/// its own, longer backoff).
const RETRY_AFTER_CAP: Duration = Duration::from_secs(10);

/// Fetches runs from one platform's run API with one account's key: `GET {base}{path}` with
/// the key in the platform's header, retried with backoff on 5xx, 429 and network errors.
/// Where each platform's API lives is in [`Platform::run_api`].
///
/// ```
/// use runhook::payload::Provider;
/// use runhook::runs::RunApiClient;
/// use runhook::Secret;
///
/// let client = RunApiClient::builder(Provider::TinyFish, Secret::new("tf_key")?)?
///     .base_url("http://127.0.0.1:9999")? // a self-hosted or local stand-in
///     .build()?;
/// assert_eq!(client.provider(), Provider::TinyFish);
/// // WebRun documents no run API.
/// assert!(RunApiClient::builder(Provider::WebRun, Secret::new("k")?).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RunApiClient {
    provider: Provider,
    api: RunApi,
    base: reqwest::Url,
    key: HeaderValue,
    http: reqwest::Client,
    attempts: u32,
    max_body: usize,
    /// Requests allowed at once: a flood of forged runs on a route that confirms costs at most
    /// this many calls with the account's key at a time.
    in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for RunApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunApiClient")
            .field("provider", &self.provider)
            .field("base", &self.base.origin().ascii_serialization())
            .field("attempts", &self.attempts)
            .field("in_flight", &self.in_flight.available_permits())
            .finish_non_exhaustive()
    }
}

/// Configures a [`RunApiClient`]; see [`RunApiClient::builder`].
pub struct RunApiClientBuilder {
    provider: Provider,
    api: RunApi,
    base: reqwest::Url,
    key: Secret,
    timeout: Duration,
    attempts: u32,
    max_body: usize,
    proxy: Option<reqwest::Proxy>,
    max_in_flight: usize,
}

/// Why a [`RunApiClient`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunApiClientError {
    /// The platform documents no run API (WebRun).
    #[error("{0} documents no run API")]
    NoRunApi(Provider),
    /// The base URL is not an `http(s)://` URL.
    #[error("the run API base URL is not an http(s) URL")]
    BadBaseUrl,
    /// The proxy URL given to [`RunApiClientBuilder::proxy`] is not one.
    #[error("the proxy URL is not a URL")]
    BadProxyUrl,
    /// The API key cannot be sent in a header.
    #[error("the API key cannot be sent in a header (a control character or a non-ASCII byte)")]
    BadKey,
    /// The HTTP client could not be built (its TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

impl RunApiClient {
    /// A client for `provider`'s hosted run API with `api_key`.
    ///
    /// # Errors
    /// [`RunApiClientError::NoRunApi`] for WebRun.
    pub fn builder(
        provider: Provider,
        api_key: Secret,
    ) -> Result<RunApiClientBuilder, RunApiClientError> {
        let api = Platform::of(provider)
            .run_api
            .ok_or(RunApiClientError::NoRunApi(provider))?;
        let base = api
            .default_base
            .parse()
            .map_err(|_| RunApiClientError::BadBaseUrl)?;
        Ok(RunApiClientBuilder {
            provider,
            api,
            base,
            key: api_key,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
            max_body: DEFAULT_MAX_BODY,
            proxy: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        })
    }

    /// The platform this client fetches from.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Fetches run `run_id`: finished, pending, or unknown to the API.
    pub async fn fetch(&self, run_id: &str) -> Result<Fetched, FetchError> {
        let url = self.url_of(run_id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.get_once(url.clone()).await {
                Ok((StatusCode::NOT_FOUND, _)) => return Ok(Fetched::Unknown),
                Ok((status, body)) if status.is_success() => {
                    return match from_run_api(self.provider, run_id, &body)? {
                        ApiRun::Terminal(event) => Ok(Fetched::Terminal(event)),
                        ApiRun::Pending { status } => Ok(Fetched::Pending { status }),
                        ApiRun::RetryPending(event) => Ok(Fetched::RetryPending(event)),
                    };
                }
                Ok((status, _))
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN =>
                {
                    return Err(FetchError::Unauthorized(status.as_u16()))
                }
                Err(error) => error,
                Ok((status, _)) => FetchError::Status {
                    status: status.as_u16(),
                    retry_after: None,
                },
            };
            let retryable = match &error {
                FetchError::Network(_) => true,
                FetchError::Status { status, .. } => *status == 429 || *status >= 500,
                _ => false,
            };
            if !retryable || attempt >= self.attempts {
                return Err(error);
            }
            let pause = match &error {
                FetchError::Status {
                    retry_after: Some(asked),
                    ..
                } if *asked > RETRY_AFTER_CAP => return Err(error),
                FetchError::Status {
                    retry_after: Some(asked),
                    ..
                } => *asked,
                _ => backoff(attempt),
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// The platform's run API as the platform table describes it.
    pub(super) fn run_api(&self) -> RunApi {
        self.api
    }

    /// `{base}{path}` (the base's own path kept in front).
    pub(super) fn url_at(&self, path: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty();
            segments.extend(path.trim_start_matches('/').split('/'));
        }
        url
    }

    /// `{base}{path of run_id}`, the id percent-encoded as one path segment.
    fn url_of(&self, run_id: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty();
            for part in self.api.run_path.trim_start_matches('/').split('/') {
                segments.push(if part == "{id}" { run_id } else { part });
            }
        }
        url
    }

    /// One GET: the status and the body (bounded), or a network error, or the status with
    /// its `Retry-After` when it is a retryable refusal.
    pub(super) async fn get_once(
        &self,
        url: reqwest::Url,
    ) -> Result<(StatusCode, Bytes), FetchError> {
        // Held until the answer is read; the semaphore is never closed.
        let _turn = self.in_flight.acquire().await.ok();
        let response = self
            .http
            .get(url)
            .header(self.api.key_header, self.key.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(network)?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| runhook_core::parse_retry_after(v, std::time::SystemTime::now()));
            return Err(FetchError::Status {
                status: status.as_u16(),
                retry_after,
            });
        }
        if !status.is_success() {
            return Ok((status, Bytes::new()));
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(network)?;
            if body.len() + chunk.len() > self.max_body {
                return Err(FetchError::TooLarge {
                    limit: self.max_body,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, Bytes::from(body)))
    }
}

impl RunSource for RunApiClient {
    fn fetch<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(RunApiClient::fetch(self, run_id))
    }
}

/// The pause before retry `attempt` (1-based): 200 ms doubled each time, a random point in
/// its upper half.
fn backoff(attempt: u32) -> Duration {
    let full = Duration::from_millis(200) * (1u32 << attempt.saturating_sub(1).min(6));
    let half = full / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

/// A request's failure in a few words, never its URL (which holds the run id and maybe a
/// self-hosted secret path).
fn network(error: reqwest::Error) -> FetchError {
    let error = error.without_url();
    let mut innermost: &dyn std::error::Error = &error;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    let kind = if error.is_timeout() {
        "timed out: "
    } else if error.is_connect() {
        "cannot connect: "
    } else {
        ""
    };
    FetchError::Network(format!("{kind}{innermost}"))
}

impl RunApiClientBuilder {
    /// The API's base URL, for a self-hosted install or a local stand-in (default: the
    /// platform's hosted API, [`RunApi::default_base`]). The platform's path is appended.
    ///
    /// # Errors
    /// [`RunApiClientError::BadBaseUrl`] unless it is an `http://` or `https://` URL.
    pub fn base_url(mut self, base: &str) -> Result<Self, RunApiClientError> {
        let url: reqwest::Url = base.parse().map_err(|_| RunApiClientError::BadBaseUrl)?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(RunApiClientError::BadBaseUrl);
        }
        self.base = url;
        Ok(self)
    }

    /// How long one request may take (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Requests per fetch, the first included (default 3, at least 1): 5xx, 429 and network
    /// errors are retried after 100–200 ms, then 200–400 ms, … or the answer's `Retry-After`
    /// (up to 10 s; a longer one ends the fetch).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The largest answer read, in bytes (default 8 MiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// At most this many requests at once, across every fetch of this client (default
    /// [`DEFAULT_MAX_IN_FLIGHT`]); more wait their turn. On a route that confirms unsigned
    /// deliveries, anyone can make the receiver fetch: this bounds what a flood of forged runs
    /// spends of the account's key and of the platform's rate limit.
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests.max(1);
        self
    }

    /// Sends every request through the proxy at `url` (`http://`, `https://` or `socks5://`,
    /// with credentials in the URL if it needs them). Without it the client connects directly:
    /// `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` are ignored, so that the API key and run ids
    /// never go to a proxy nobody chose for them.
    ///
    /// # Errors
    /// [`RunApiClientError::BadProxyUrl`] when `url` is not a proxy URL.
    pub fn proxy(mut self, url: &str) -> Result<Self, RunApiClientError> {
        self.proxy = Some(reqwest::Proxy::all(url).map_err(|_| RunApiClientError::BadProxyUrl)?);
        Ok(self)
    }

    /// Builds the client: rustls with the platform's trust store (or `SSL_CERT_FILE`), no
    /// redirects, no proxy unless one was given ([`RunApiClientBuilder::proxy`]).
    ///
    /// # Errors
    /// [`RunApiClientError::BadKey`] when the key cannot be sent in a header;
    /// [`RunApiClientError::Http`] when the TLS setup fails.
    pub fn build(self) -> Result<RunApiClient, RunApiClientError> {
        let mut key =
            HeaderValue::from_bytes(self.key.expose()).map_err(|_| RunApiClientError::BadKey)?;
        key.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("runhook/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        let http = match self.proxy {
            Some(proxy) => http.proxy(proxy),
            None => http,
        };
        let http = http
            .build()
            .map_err(|e| RunApiClientError::Http(e.without_url().to_string()))?;
        Ok(RunApiClient {
            provider: self.provider,
            api: self.api,
            base: self.base,
            key,
            http,
            attempts: self.attempts,
            max_body: self.max_body,
            in_flight: Arc::new(Semaphore::new(self.max_in_flight)),
        })
    }
}
