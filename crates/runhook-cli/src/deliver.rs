//! Delivering a webhook body the way a platform does: its headers, its per-attempt timeout and
//! its retry schedule (`runhook send`, `runhook demo`). The schedule is the platform's
//! [`SenderProfile`] in runhook-core's table ([`runhook_core::platform`]); nothing about a
//! sender is decided here.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use rand::RngExt as _;
use runhook::payload::Provider;
use runhook::verify::{sign_browser_use, sign_firecrawl, sign_skyvern, sign_standard_webhooks};
use runhook::{BrowserUseSignature, FirecrawlSignature, Secret, SkyvernSignature};
use runhook_core::platform::{Platform, RetryOn, SenderProfile};

/// Which of a platform's two sender profiles to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SenderKind {
    /// What its server does today ([`Platform::sender`]; Skyvern: 3 attempts, 30 s each).
    #[default]
    Current,
    /// What its webhook documentation says ([`Platform::documented_sender`]; Skyvern: one
    /// attempt, 10 s).
    Documented,
}

impl SenderKind {
    /// `provider`'s profile of this kind.
    pub fn profile(self, provider: Provider) -> SenderProfile {
        let platform = Platform::of(provider);
        match self {
            SenderKind::Current => platform.sender,
            SenderKind::Documented => platform.documented_sender,
        }
    }
}

/// What authenticates the request.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Nothing (TinyFish; WebRun and SmartBrowse without a configured header).
    None,
    /// Skyvern's API key: signs the body into `x-skyvern-signature`.
    SkyvernKey(Secret),
    /// A Standard Webhooks signing key (decoded from its `whsec_` form): signs `webhook-id`,
    /// `webhook-timestamp` and the body into `webhook-signature` (Browserbase).
    StandardWebhooksKey(Secret),
    /// Firecrawl's webhook secret: signs the body into `x-firecrawl-signature`.
    FirecrawlKey(Secret),
    /// Browser Use's webhook secret: signs `unix_now` and the body's sorted-key form into
    /// `x-browser-use-signature`, sent with `x-browser-use-timestamp`.
    BrowserUseKey(Secret),
    /// A static header (WebRun's `Authorization`, a SmartBrowse custom header).
    Header {
        /// The header's name.
        name: HeaderName,
        /// The header's whole value, e.g. `Bearer …`.
        value: Secret,
    },
}

/// A secret that cannot be sent as a header's value; the message never includes the value.
#[derive(Debug, thiserror::Error)]
#[error(
    "the value for header `{0}` cannot be sent in a header (it holds a control character or a \
     byte that is not visible ASCII)"
)]
pub struct NotAHeaderValue(HeaderName);

impl Credential {
    /// A [`Credential::Header`], refusing a value that cannot be sent in a header.
    pub fn header(name: HeaderName, value: Secret) -> Result<Self, NotAHeaderValue> {
        match header_value(&value) {
            Some(_) => Ok(Credential::Header { name, value }),
            None => Err(NotAHeaderValue(name)),
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
        Credential::StandardWebhooksKey(key) => {
            let id = message_id();
            let signature = sign_standard_webhooks(key, &id, unix_now, body);
            for (name, value) in [
                ("webhook-id", id),
                ("webhook-timestamp", unix_now.to_string()),
                ("webhook-signature", signature),
            ] {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(HeaderName::from_static(name), value);
                }
            }
        }
        Credential::FirecrawlKey(key) => {
            if let Ok(signature) = HeaderValue::from_str(&sign_firecrawl(key, body)) {
                headers.insert(FirecrawlSignature::SIGNATURE_HEADER, signature);
            }
        }
        Credential::BrowserUseKey(key) => match sign_browser_use(key, unix_now, body) {
            Ok(signature) => {
                if let Ok(signature) = HeaderValue::from_str(&signature) {
                    headers.insert(BrowserUseSignature::SIGNATURE_HEADER, signature);
                }
                headers.insert(
                    BrowserUseSignature::TIMESTAMP_HEADER,
                    HeaderValue::from(unix_now),
                );
            }
            Err(err) => {
                tracing::warn!(error = %err, "Browser Use signs the body's JSON, and this body is not JSON it could load; sent unsigned")
            }
        },
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

/// A fresh Standard Webhooks message id, `msg_` and 24 random alphanumerics (each retry of a
/// delivery resends the headers made once, so it keeps its id).
fn message_id() -> String {
    let mut rng = rand::rng();
    let tail: String = (0..24)
        .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
        .collect();
    format!("msg_{tail}")
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

    /// Whether a sender retrying on `retry_on` tries again after this.
    pub fn retried_on(&self, retry_on: RetryOn) -> bool {
        match self {
            AttemptResult::Status(status) => retry_on.status(*status),
            AttemptResult::Network(_) | AttemptResult::TimedOut => retry_on.no_answer(),
        }
    }

    /// The answer's status, if there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            AttemptResult::Status(status) => Some(*status),
            AttemptResult::Network(_) | AttemptResult::TimedOut => None,
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
    /// The pause before the next attempt, if the sender makes one.
    pub next: Option<Pause>,
}

/// The pause a sender makes before its next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    /// How long.
    pub length: Duration,
    /// Where the length comes from.
    pub source: PauseSource,
}

/// Where a [`Pause`]'s length comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseSource {
    /// The sender's own schedule.
    Schedule,
    /// The answer's `Retry-After` (capped by the sender).
    RetryAfter,
}

impl fmt::Display for Pause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retrying in {:.3} s", self.length.as_secs_f64())?;
        match self.source {
            PauseSource::Schedule => Ok(()),
            PauseSource::RetryAfter => f.write_str(", as Retry-After asks"),
        }
    }
}

/// How much of an answer's body an [`Attempt`] keeps.
pub const REPLY_EXCERPT: usize = 300;

/// Posts `body` with `headers` to `url` as `profile` says: at most `profile.attempts`
/// attempts, each bounded by `profile.attempt_timeout`, retrying what `profile.retry_on`
/// retries after [`SenderProfile::delay_before`] (counted from the end of the failed attempt;
/// the jitter drawn here). Every attempt sends the same headers and body, as the platforms do
/// (a Skyvern signature is computed once, by the caller). Calls `on_attempt` after each
/// attempt, before its pause; returns every attempt (never none).
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    body: Bytes,
    profile: &SenderProfile,
    mut on_attempt: impl FnMut(&Attempt),
) -> Vec<Attempt> {
    let first = Instant::now();
    let mut attempts = Vec::with_capacity(profile.attempts as usize);
    for number in 1..=profile.attempts.max(1) {
        let started_after = first.elapsed();
        let start = Instant::now();
        let answer = post_once(client, url, headers, body.clone(), profile.attempt_timeout).await;
        let next = if answer.result.retried_on(profile.retry_on) {
            next_pause(profile, number, answer.retry_after)
        } else {
            None
        };
        let attempt = Attempt {
            number,
            started_after,
            result: answer.result,
            latency: start.elapsed(),
            reply: answer.reply,
            next,
        };
        on_attempt(&attempt);
        attempts.push(attempt);
        match next {
            Some(pause) => tokio::time::sleep(pause.length).await,
            None => break,
        }
    }
    attempts
}

/// The pause after failed attempt `number`, if `profile` makes another attempt.
fn next_pause(
    profile: &SenderProfile,
    number: u32,
    retry_after: Option<Duration>,
) -> Option<Pause> {
    let unit: f64 = rand::rng().random();
    let length = profile.delay_before(number, retry_after, unit)?;
    let source = match retry_after {
        Some(_) if profile.backoff.honours_retry_after() => PauseSource::RetryAfter,
        _ => PauseSource::Schedule,
    };
    Some(Pause { length, source })
}

/// What one POST got back.
struct Answer {
    result: AttemptResult,
    reply: String,
    retry_after: Option<Duration>,
}

/// One POST, its response body read (so that the connection returns to the pool), with the
/// start of that body and the `Retry-After` it asked for.
async fn post_once(
    client: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Answer {
    let sent = client
        .post(url)
        .headers(headers.clone())
        .body(body)
        .timeout(timeout)
        .send()
        .await;
    let no_answer = |result| Answer {
        result,
        reply: String::new(),
        retry_after: None,
    };
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| runhook::verify::parse_retry_after(value, SystemTime::now()));
            // The status is the answer; a body cut short changes nothing for the sender.
            let reply = response.bytes().await.unwrap_or_default();
            let excerpt = &reply[..reply.len().min(REPLY_EXCERPT)];
            Answer {
                result: AttemptResult::Status(status),
                reply: String::from_utf8_lossy(excerpt).into_owned(),
                retry_after,
            }
        }
        Err(error) if error.is_timeout() => no_answer(AttemptResult::TimedOut),
        Err(error) => no_answer(AttemptResult::Network(reason(error))),
    }
}

/// Why a request got no answer, in a few words: its innermost cause (`Connection refused (os
/// error 111)`), never the URL (which may hold a path secret).
fn reason(error: reqwest::Error) -> String {
    let error = error.without_url();
    let first: &dyn std::error::Error = &error;
    let causes = std::iter::successors(Some(first), |cause| cause.source());
    let innermost = causes.last().unwrap_or(first);
    if error.is_connect() {
        format!("cannot connect: {innermost}")
    } else {
        innermost.to_string()
    }
}

#[cfg(test)]
mod tests {
    use runhook::canonical::SkyvernRequest;

    use super::*;

    #[test]
    fn each_kind_reads_its_profile_from_the_table() {
        let skyvern = Platform::of(Provider::Skyvern);
        assert_eq!(
            SenderKind::Current.profile(Provider::Skyvern),
            skyvern.sender
        );
        assert_eq!(
            SenderKind::Documented.profile(Provider::Skyvern),
            skyvern.documented_sender
        );
        assert_eq!(SenderKind::default(), SenderKind::Current);
    }

    #[test]
    fn answers_are_retried_as_the_profile_says() {
        let tinyfish = SenderKind::Current.profile(Provider::TinyFish).retry_on;
        let skyvern = SenderKind::Current.profile(Provider::Skyvern).retry_on;
        for no_answer in [
            AttemptResult::Network("refused".into()),
            AttemptResult::TimedOut,
        ] {
            assert!(no_answer.retried_on(tinyfish));
            assert!(no_answer.retried_on(skyvern));
            assert!(!no_answer.retried_on(RetryOn::Nothing));
        }
        for status in [403, 429, 503] {
            assert!(
                AttemptResult::Status(status).retried_on(skyvern),
                "{status}"
            );
        }
        for status in [200, 202, 301, 400, 401, 404, 429] {
            assert!(
                !AttemptResult::Status(status).retried_on(tinyfish),
                "{status}"
            );
        }
        assert!(AttemptResult::Status(503).retried_on(tinyfish));
    }

    #[test]
    fn a_pause_says_whether_retry_after_set_it() {
        let skyvern = SenderKind::Current.profile(Provider::Skyvern);
        let asked = next_pause(&skyvern, 1, Some(Duration::from_secs(3))).unwrap();
        assert_eq!(asked.length, Duration::from_secs(3));
        assert_eq!(asked.source, PauseSource::RetryAfter);
        assert!(asked.to_string().contains("Retry-After"), "{asked}");
        let scheduled = next_pause(&skyvern, 2, None).unwrap();
        assert!((Duration::from_secs(2)..Duration::from_secs(3)).contains(&scheduled.length));
        let tinyfish = SenderKind::Current.profile(Provider::TinyFish);
        let ignored = next_pause(&tinyfish, 1, Some(Duration::from_secs(9))).unwrap();
        assert_eq!(ignored.length, Duration::from_secs(1));
        assert_eq!(ignored.source, PauseSource::Schedule);
        assert_eq!(next_pause(&skyvern, 3, None), None);
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
        assert!(invalid.is_err_and(|error| !error.to_string().contains("s3")));
        Ok(())
    }
}
