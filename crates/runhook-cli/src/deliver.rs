//! Delivering a webhook body the way a platform does: its headers, its per-attempt timeout and
//! its retry schedule (`runhook send`, `runhook demo`).
//!
//! | platform | timeout per attempt | attempts | retried on |
//! |---|---|---|---|
//! | Skyvern | 10 s | 1 | never (a replay is a manual duplicate) |
//! | TinyFish | 10 s | 4, after 1 s, 2 s, 4 s | 5xx, network error, timeout; never 4xx |
//! | WebRun (any `submittedData`) | 30 s | 1 | never |
//! | SmartBrowse | 10 s | 1 | never |

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use runhook::payload::Provider;
use runhook::{sign_skyvern, Secret, SkyvernSignature};

/// How a platform sends: per-attempt timeout and retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderProfile {
    /// The platform this profile imitates.
    pub provider: Provider,
    /// How long one attempt may take before the sender gives up on it.
    pub attempt_timeout: Duration,
    /// The pause before each retry, in order: its length is the number of retries.
    pub retry_delays: Vec<Duration>,
}

/// How `provider` sends, from its documentation (see the [module docs](self)).
pub fn profile(provider: Provider) -> SenderProfile {
    let (timeout_secs, delays_secs): (u64, &[u64]) = match provider {
        Provider::TinyFish => (10, &[1, 2, 4]),
        Provider::WebRun | Provider::WebRunAi => (30, &[]),
        // Skyvern, SmartBrowse, and any platform added later: one attempt, 10 s.
        _ => (10, &[]),
    };
    SenderProfile {
        provider,
        attempt_timeout: Duration::from_secs(timeout_secs),
        retry_delays: delays_secs
            .iter()
            .copied()
            .map(Duration::from_secs)
            .collect(),
    }
}

impl SenderProfile {
    /// Whether this sender retries after `result`: only on a 5xx, a network error or a timeout,
    /// and only if it retries at all. Whether a retry remains is [`deliver`]'s business.
    pub fn retries(&self, result: &AttemptResult) -> bool {
        !self.retry_delays.is_empty() && result.is_retryable()
    }

    /// The most attempts one delivery makes.
    pub fn max_attempts(&self) -> usize {
        self.retry_delays.len() + 1
    }
}

/// What authenticates the request.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Nothing (TinyFish; WebRun and SmartBrowse without a configured header).
    None,
    /// Skyvern's API key: signs the body into `x-skyvern-signature`.
    SkyvernKey(Secret),
    /// A static header (WebRun's `Authorization`, a SmartBrowse custom header).
    Header {
        /// The header's name.
        name: HeaderName,
        /// The header's whole value, e.g. `Bearer …`.
        value: Secret,
    },
}

impl Credential {
    /// A [`Credential::Header`], refusing a value that cannot be sent in a header (the message
    /// never includes the value).
    pub fn header(name: HeaderName, value: Secret) -> Result<Self, String> {
        match header_value(&value) {
            Some(_) => Ok(Credential::Header { name, value }),
            None => Err(format!(
                "the value for header `{name}` cannot be sent in a header (it holds a control \
                 character or a byte that is not visible ASCII)"
            )),
        }
    }
}

/// `secret` as a header value marked sensitive (so that `Debug` hides it), if it is one.
fn header_value(secret: &Secret) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_bytes(secret.expose()).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The headers the platform sends with `body`: `content-type: application/json`, a
/// `user-agent` naming the platform, and the credential: for Skyvern `x-skyvern-signature`
/// (the body signed with the key) and `x-skyvern-timestamp` (`unix_now`); for a header, that
/// header. A header credential whose value is not a valid header value (see
/// [`Credential::header`]) is left out, with a warning.
pub fn platform_headers(
    provider: Provider,
    credential: &Credential,
    body: &[u8],
    unix_now: i64,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let agent = format!("runhook-send/{} (as {provider})", env!("CARGO_PKG_VERSION"));
    if let Ok(agent) = HeaderValue::from_str(&agent) {
        headers.insert(USER_AGENT, agent);
    }
    match credential {
        Credential::None => {}
        Credential::SkyvernKey(key) => {
            let signature = sign_skyvern(key, body);
            if let Ok(signature) = HeaderValue::from_str(&signature) {
                headers.insert(SkyvernSignature::SIGNATURE_HEADER, signature);
            }
            headers.insert(
                SkyvernSignature::TIMESTAMP_HEADER,
                HeaderValue::from(unix_now),
            );
        }
        Credential::Header { name, value } => match header_value(value) {
            Some(value) => {
                headers.insert(name.clone(), value);
            }
            None => {
                tracing::warn!(header = %name, "credential is not a valid header value; not sent")
            }
        },
    }
    headers
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The receiver answered with this HTTP status.
    Status(u16),
    /// No answer: the connection failed or broke (the reason, without the URL).
    Network(String),
    /// No answer within the attempt's timeout.
    TimedOut,
}

impl AttemptResult {
    /// Whether the receiver answered 2xx: the delivery is acknowledged.
    pub fn is_success(&self) -> bool {
        matches!(self, AttemptResult::Status(200..=299))
    }

    /// Whether a retrying sender tries again: a 5xx, a network error or a timeout.
    pub fn is_retryable(&self) -> bool {
        match self {
            AttemptResult::Status(status) => (500..=599).contains(status),
            AttemptResult::Network(_) | AttemptResult::TimedOut => true,
        }
    }
}

impl fmt::Display for AttemptResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptResult::Status(status) => {
                write!(f, "HTTP {status}")?;
                let reason = StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason());
                match reason {
                    Some(reason) => write!(f, " {reason}"),
                    None => Ok(()),
                }
            }
            AttemptResult::Network(reason) => write!(f, "network error: {reason}"),
            AttemptResult::TimedOut => f.write_str("timed out"),
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// When it started, counted from the start of the first attempt.
    pub started_after: Duration,
    /// How it ended.
    pub result: AttemptResult,
    /// How long it took, until the whole response was read or the attempt failed.
    pub latency: Duration,
    /// The start of the answer's body (at most [`REPLY_EXCERPT`] bytes, lossy UTF-8): the
    /// receiver's reason for a rejection. Empty when there was no answer.
    pub reply: String,
}

/// How much of an answer's body an [`Attempt`] keeps.
pub const REPLY_EXCERPT: usize = 300;

/// Posts `body` with `headers` to `url`, retrying on `profile`'s schedule; calls `on_attempt`
/// after each attempt; returns every attempt (never none). Each attempt is bounded by
/// `profile.attempt_timeout`; a retry waits its delay after the failed attempt ended.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    body: Bytes,
    profile: &SenderProfile,
    mut on_attempt: impl FnMut(&Attempt),
) -> Vec<Attempt> {
    let first = Instant::now();
    let mut delays = profile.retry_delays.iter();
    let mut attempts = Vec::with_capacity(profile.max_attempts());
    for number in 1.. {
        let started_after = first.elapsed();
        let start = Instant::now();
        let (result, reply) =
            post_once(client, url, headers, body.clone(), profile.attempt_timeout).await;
        let attempt = Attempt {
            number,
            started_after,
            result,
            latency: start.elapsed(),
            reply,
        };
        on_attempt(&attempt);
        let retry = profile.retries(&attempt.result);
        attempts.push(attempt);
        match delays.next() {
            Some(delay) if retry => tokio::time::sleep(*delay).await,
            _ => break,
        }
    }
    attempts
}

/// One POST, its response body read (so that the connection returns to the pool), with the
/// start of that body.
async fn post_once(
    client: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> (AttemptResult, String) {
    let sent = client
        .post(url)
        .headers(headers.clone())
        .body(body)
        .timeout(timeout)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            // The status is the answer; a body cut short changes nothing for the sender.
            let reply = response.bytes().await.unwrap_or_default();
            let excerpt = &reply[..reply.len().min(REPLY_EXCERPT)];
            let reply = String::from_utf8_lossy(excerpt).into_owned();
            (AttemptResult::Status(status), reply)
        }
        Err(error) if error.is_timeout() => (AttemptResult::TimedOut, String::new()),
        Err(error) => (AttemptResult::Network(reason(error)), String::new()),
    }
}

/// Why a request got no answer, in a few words: its innermost cause (`Connection refused (os
/// error 111)`), never the URL (which may hold a path secret).
fn reason(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut innermost: &dyn std::error::Error = &error;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    let prefix = if error.is_connect() {
        "cannot connect: "
    } else {
        ""
    };
    format!("{prefix}{innermost}")
}

#[cfg(test)]
mod tests {
    use runhook::canonical::SkyvernRequest;

    use super::*;

    #[test]
    fn profiles_follow_the_senders_documents() {
        let tinyfish = profile(Provider::TinyFish);
        assert_eq!(tinyfish.attempt_timeout, Duration::from_secs(10));
        assert_eq!(
            tinyfish.retry_delays,
            [1, 2, 4].map(Duration::from_secs).to_vec()
        );
        assert_eq!(
            profile(Provider::WebRunAi).attempt_timeout,
            Duration::from_secs(30)
        );
        for provider in [Provider::Skyvern, Provider::WebRun, Provider::SmartBrowse] {
            assert_eq!(profile(provider).max_attempts(), 1, "{provider}");
        }
    }

    #[test]
    fn only_5xx_network_errors_and_timeouts_are_retried() {
        let tinyfish = profile(Provider::TinyFish);
        let retried = |r: AttemptResult| tinyfish.retries(&r);
        assert!(retried(AttemptResult::Status(503)));
        assert!(retried(AttemptResult::Network("refused".into())));
        assert!(retried(AttemptResult::TimedOut));
        for status in [200, 202, 301, 400, 401, 404, 429] {
            assert!(!retried(AttemptResult::Status(status)), "{status}");
        }
        assert!(!profile(Provider::Skyvern).retries(&AttemptResult::Status(503)));
    }

    #[test]
    fn skyvern_headers_are_those_skyvern_sends() -> Result<(), Box<dyn std::error::Error>> {
        let key = Secret::new("sk_test")?;
        let expected = SkyvernRequest::from_json(&key, br#"{"run_id":"r"}"#, 1_769_873_016)?;
        let headers = platform_headers(
            Provider::Skyvern,
            &Credential::SkyvernKey(key),
            &expected.body,
            1_769_873_016,
        );
        for (name, value) in expected.headers() {
            assert_eq!(
                headers.get(name).map(HeaderValue::as_bytes),
                Some(value.as_bytes())
            );
        }
        assert!(headers.contains_key(USER_AGENT));
        Ok(())
    }

    #[test]
    fn a_header_credential_is_sent_and_hidden_from_debug() -> Result<(), Box<dyn std::error::Error>>
    {
        let credential = Credential::header(
            HeaderName::from_static("authorization"),
            Secret::new("Bearer s3cr3t")?,
        )?;
        let headers = platform_headers(Provider::WebRun, &credential, b"{}", 0);
        assert_eq!(headers["authorization"], "Bearer s3cr3t");
        for text in [format!("{headers:?}"), format!("{credential:?}")] {
            assert!(!text.contains("s3cr3t"), "{text}");
        }
        let invalid = Credential::header(
            HeaderName::from_static("authorization"),
            Secret::new("Bearer s3\ncr3t")?,
        );
        assert!(invalid.is_err_and(|message| !message.contains("s3")));
        Ok(())
    }
}
