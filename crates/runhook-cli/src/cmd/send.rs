//! `runhook send`: deliver bodies to a receiver exactly as a platform would, retries included,
//! one file at a time or as load from a template.

mod load;
mod retried;

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::{HeaderMap, HeaderName};
use runhook::canonical::{canonicalize, CanonicalError};
use runhook::payload::{PayloadError, Provider};
use runhook::platform::{DefaultScheme, Platform};
use runhook::verify::{Clock as _, SystemClock};

use super::input::{read_input, InputError};
use crate::env::{self, EnvError};
use runhook_core::platform::SenderProfile;

use crate::deliver::{self, deliver, Attempt, Credential, NotAHeaderValue, SenderKind};

/// Exit status when a delivery did not end with a 2xx.
const NOT_DELIVERED: u8 = 1;
/// Exit status for a usage or configuration error (nothing was sent).
const USAGE: u8 = 2;

/// Arguments of `runhook send`.
#[derive(Debug, Args)]
#[command(
    after_help = "Each FILE is one delivery, made as the platform makes it: same headers \
(Skyvern: canonical body, signature, timestamp, computed once and resent unchanged), same \
timeout per attempt, same retries. Skyvern (its server since May 2026): 3 attempts of 30 s, on \
403, 408, 425, 429, 5xx, network errors and timeouts, after 1 s × 2^n plus up to 1 s of \
jitter, or the answer's Retry-After (seconds or HTTP-date, at most 30 s); --sender documented \
makes the single 10 s attempt its docs page describes. TinyFish: 4 attempts, after 1 s, 2 s, \
4 s, on 5xx, network errors and timeouts, never on 4xx, Retry-After ignored. WebRun, \
SmartBrowse: one attempt. Every attempt is printed with its status, latency and the pause \
before the next.\n\
With --count N, sends N deliveries made from the single template FILE, each with a fresh run id \
(every JSON string equal to the template's run id is replaced, so Skyvern's task_id and \
TinyFish's data.run_id follow; webrun-ai bodies, whose dedup key is the body hash, get a \
`runhook_load_id` field), then prints a summary.\n\
Exit status: 0 every delivery was answered 2xx, 1 some delivery was not, 2 usage or \
configuration error (nothing sent).\n\
The secret is read from the environment variable named by --secret-env, never from the command \
line, and is never printed."
)]
pub struct SendArgs {
    /// The platform to imitate: skyvern, tinyfish, webrun, webrun-ai or smartbrowse.
    #[arg(long, value_parser = crate::names::provider_name)]
    provider: Provider,
    /// The receiver's URL (plain http://).
    #[arg(long, value_name = "URL")]
    to: String,
    /// Name of the environment variable holding the credential. Skyvern (required): the API
    /// key to sign with. WebRun, SmartBrowse: the value of the --header-name header (e.g.
    /// `Bearer …`); without it no header is sent. TinyFish sends none.
    #[arg(long = "secret-env", value_name = "VAR")]
    secret_env: Option<String>,
    /// WebRun, SmartBrowse: the header carrying the credential [default: authorization].
    #[arg(long, value_name = "NAME", value_parser = header_name, requires = "secret_env")]
    header_name: Option<HeaderName>,
    /// Skyvern: send the file's bytes as they are (still signed) instead of Skyvern's canonical
    /// form of its JSON. Other platforms always send the file as it is.
    #[arg(long)]
    raw: bool,
    /// Which of the platform's senders to imitate: `current`, what its server does today, or
    /// `documented`, what its webhook docs say (they differ for Skyvern only: its docs still
    /// describe a single 10 s attempt).
    #[arg(long, value_enum, value_name = "KIND", default_value_t = SenderKind::Current)]
    sender: SenderKind,
    /// Timeout of each attempt, in seconds, instead of the platform's (Skyvern 30 s, or 10 s
    /// as documented; TinyFish, SmartBrowse 10 s; WebRun 30 s).
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    timeout: Option<Duration>,
    /// Skyvern: play each FILE as the final attempt of a workflow run retried under one run id
    /// (`webhook_on_retry: "every_attempt"`): first N interim webhooks (attempts 1..N, `status:
    /// "failed"`, `retry_pending: true`, `next_attempt_at`), then FILE as attempt N+1.
    #[arg(long, value_name = "N", value_parser = retries, conflicts_with = "count")]
    interim_attempts: Option<u32>,
    /// Load mode: send this many deliveries made from the single template FILE.
    #[arg(long, value_name = "N", value_parser = positive)]
    count: Option<usize>,
    /// Load mode: the fraction of the deliveries that resend an earlier delivery's exact body
    /// and headers (0.0 to 1.0).
    #[arg(long, value_name = "RATIO", value_parser = ratio, default_value = "0", requires = "count")]
    duplicates: f64,
    /// Load mode: how many deliveries are in flight at once.
    #[arg(long, value_name = "C", value_parser = positive, default_value = "8", requires = "count")]
    concurrency: usize,
    /// The bodies to send (`-` for standard input, the default).
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Why nothing was sent: a usage or configuration error (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// `--interim-attempts` for a platform other than Skyvern.
    #[error("--interim-attempts plays Skyvern's retried workflow runs; {0} numbers no attempts")]
    InterimNotSkyvern(Provider),
    /// `--interim-attempts` with a body that is not a Skyvern run (an object with a `run_id`).
    #[error("--interim-attempts needs each FILE to be a Skyvern run: a JSON object with a string `run_id`")]
    NotARun,
    /// `--count` with other than one file.
    #[error("--count takes exactly one template FILE")]
    CountFiles,
    /// A body could not be read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// `--to` is not a URL.
    #[error("--to `{url}`: {source}")]
    Url {
        /// The URL given.
        url: String,
        /// Why not.
        source: UrlParseError,
    },
    /// `--to` is an `https://` URL.
    #[error(
        "--to `{0}`: this build sends plain HTTP only; use an http:// URL (a local receiver or \
         a TLS-terminating proxy)"
    )]
    Https(String),
    /// `--to` is neither.
    #[error("--to `{url}`: `{scheme}` is not http")]
    NotHttp {
        /// The URL given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(reqwest::Error),
    /// A secret could not be read.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// A header token that cannot be sent in a header.
    #[error("environment variable {var}: {source}")]
    HeaderValue {
        /// The variable.
        var: String,
        /// Why not.
        source: NotAHeaderValue,
    },
    /// `--header-name` for a platform that sends no credential header.
    #[error("{0} sends no credential header; --header-name is for webrun and smartbrowse")]
    NoCredentialHeader(Provider),
    /// `--secret-env` for a platform that signs nothing.
    #[error(
        "{0} sends no credential (its deliveries are unsigned; a path secret goes in the --to \
         URL); drop --secret-env"
    )]
    Unsigned(Provider),
    /// Skyvern without `--secret-env`.
    #[error(
        "skyvern signs every delivery: name the variable holding the API key with --secret-env"
    )]
    NoSkyvernKey,
    /// A signing platform (Browserbase, Firecrawl) without `--secret-env`.
    #[error(
        "{0} signs every delivery: name the variable holding the signing secret with --secret-env"
    )]
    NoSigningKey(Provider),
    /// A payload Skyvern could not send (it has no canonical form).
    #[error(
        "Skyvern could not send this payload ({}: {source}); --raw sends it as it is",
        .source.python_exception()
    )]
    NotSendable {
        /// Why not.
        source: CanonicalError,
    },
    /// The load template is not the platform's payload.
    #[error("the template is not a {provider} payload: {source}")]
    NotATemplate {
        /// The platform.
        provider: Provider,
        /// Why not.
        source: PayloadError,
    },
    /// The load template names no run.
    #[error("the template's {0} payload carries no run id")]
    NoRunId(Provider),
    /// The load template's run id cannot be replaced.
    #[error(
        "cannot replace the run id in the template: write the field {0} reads it from as a \
         plain JSON string (no escapes)"
    )]
    IdNotReplaceable(Provider),
    /// A `webrun-ai` load template that is not an object.
    #[error(
        "a webrun-ai template must be a JSON object: its dedup key is the body's hash, which \
         runhook varies with a `{field}` field",
        field = load::LOAD_ID_FIELD
    )]
    NotAnObject,
    /// The load's semaphore closed (a bug).
    #[error("internal error: {0}")]
    Internal(#[from] tokio::sync::AcquireError),
}

/// Why a text is not a URL (the `url` crate's error, as reqwest re-exports its `Url` only).
type UrlParseError = <reqwest::Url as std::str::FromStr>::Err;

/// A flag's value that is not what the flag takes.
#[derive(Debug, thiserror::Error)]
enum ValueError {
    /// Not a header name.
    #[error("`{0}` is not a header name")]
    HeaderName(String),
    /// Not a number.
    #[error("`{0}` is not a number of seconds")]
    Seconds(String),
    /// Not above zero.
    #[error("`{0}` is not a positive number of seconds")]
    PositiveSeconds(String),
    /// Not a whole number above zero.
    #[error("`{0}` is not a positive whole number")]
    Positive(String),
    /// Not a retry count Skyvern allows.
    #[error("`{0}` is not a number of retries from 1 to 5 (Skyvern's max_retries)")]
    Attempts(String),
    /// Not in `[0, 1]`.
    #[error("`{0}` is not a ratio between 0.0 and 1.0")]
    Ratio(String),
}

/// Runs `runhook send`.
pub fn run(args: SendArgs) -> ExitCode {
    match send(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(NOT_DELIVERED),
        Err(message) => {
            eprintln!("runhook send: {message}");
            ExitCode::from(USAGE)
        }
    }
}

/// Sends what `args` asks for: `Ok(true)` if every delivery was answered 2xx, `Err` for a
/// usage or configuration error found before anything was sent.
fn send(args: SendArgs) -> Result<bool, SendError> {
    let sender = Sender {
        provider: args.provider,
        credential: credential(&args)?,
        raw: args.raw,
    };
    let target = Target::new(&args)?;
    let files = if args.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.files
    };
    let job = match args.count {
        Some(count) => {
            let [file] = files.as_slice() else {
                return Err(SendError::CountFiles);
            };
            let load = load::Load {
                count,
                duplicates: args.duplicates,
                concurrency: args.concurrency,
            };
            Job::Load(load, load::Template::new(sender, read_input(file)?)?)
        }
        None => {
            let mut bodies = Vec::new();
            for file in &files {
                let payload = read_input(file)?;
                let name = display_name(file);
                match args.interim_attempts {
                    None => bodies.push((name, sender.body(&payload)?)),
                    Some(_) if args.provider != Provider::Skyvern => {
                        return Err(SendError::InterimNotSkyvern(args.provider))
                    }
                    Some(interim) => {
                        for (attempt, body) in retried::deliveries(&payload, interim)? {
                            bodies.push((format!("{name} {attempt}"), sender.body(&body)?));
                        }
                    }
                }
            }
            Job::Each(sender, bodies)
        }
    };
    let runtime = tokio::runtime::Runtime::new().map_err(SendError::Runtime)?;
    match job {
        Job::Load(load, template) => runtime.block_on(load.run(target, template)),
        Job::Each(sender, bodies) => Ok(runtime.block_on(send_each(&target, &sender, bodies))),
    }
}

/// What to send, checked before anything is sent.
enum Job {
    /// One delivery per file, in order: (name shown, body); the headers are made when it is
    /// sent, as the platform makes them (Skyvern's timestamp is the time of sending).
    Each(Sender, Vec<(String, Bytes)>),
    /// Load from a template.
    Load(load::Load, load::Template),
}

/// Where and how deliveries go: one client (one connection pool) for all of them.
struct Target {
    client: reqwest::Client,
    url: String,
    schedule: Schedule,
}

/// The sender imitated: whose, and its profile.
struct Schedule {
    provider: Provider,
    kind: SenderKind,
    profile: SenderProfile,
}

impl Target {
    fn new(args: &SendArgs) -> Result<Self, SendError> {
        check_url(&args.to)?;
        let mut profile = args.sender.profile(args.provider);
        if let Some(timeout) = args.timeout {
            profile.attempt_timeout = timeout;
        }
        let client = reqwest::Client::builder()
            // Senders post once to the configured URL; a redirect is an answer, not a detour.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(SendError::HttpClient)?;
        Ok(Self {
            client,
            url: args.to.clone(),
            schedule: Schedule {
                provider: args.provider,
                kind: args.sender,
                profile,
            },
        })
    }

    /// Delivers `prepared` on the platform's schedule, calling `on_attempt` after each attempt.
    async fn deliver(&self, prepared: Prepared, on_attempt: impl FnMut(&Attempt)) -> Vec<Attempt> {
        let Prepared { headers, body } = prepared;
        deliver(
            &self.client,
            &self.url,
            &headers,
            body,
            &self.schedule.profile,
            on_attempt,
        )
        .await
    }
}

fn check_url(url: &str) -> Result<(), SendError> {
    let parsed = reqwest::Url::parse(url).map_err(|source| SendError::Url {
        url: url.into(),
        source,
    })?;
    match parsed.scheme() {
        "http" => Ok(()),
        "https" => Err(SendError::Https(url.into())),
        scheme => Err(SendError::NotHttp {
            url: url.into(),
            scheme: scheme.into(),
        }),
    }
}

/// What authenticates the deliveries, from `--secret-env` and `--header-name`.
fn credential(args: &SendArgs) -> Result<Credential, SendError> {
    let provider = args.provider;
    let var = args.secret_env.as_deref();
    // What the platform can send comes from the provider table.
    match Platform::of(provider).default_scheme {
        DefaultScheme::HeaderToken { header } => match var {
            None => Ok(Credential::None),
            Some(var) => {
                let name = match &args.header_name {
                    Some(name) => name.clone(),
                    None => HeaderName::from_static(header),
                };
                Credential::header(name, env::secret(var)?).map_err(|source| {
                    SendError::HeaderValue {
                        var: var.into(),
                        source,
                    }
                })
            }
        },
        _ if args.header_name.is_some() => Err(SendError::NoCredentialHeader(provider)),
        DefaultScheme::PathSecret if var.is_some() => Err(SendError::Unsigned(provider)),
        DefaultScheme::PathSecret => Ok(Credential::None),
        DefaultScheme::SkyvernSignature => {
            let var = var.ok_or(SendError::NoSkyvernKey)?;
            Ok(Credential::SkyvernKey(env::secret(var)?))
        }
        DefaultScheme::StandardWebhooks => {
            let var = var.ok_or(SendError::NoSigningKey(provider))?;
            let key = env::standard_webhooks_secret(var)?;
            Ok(Credential::StandardWebhooksKey(key))
        }
        DefaultScheme::FirecrawlSignature => {
            let var = var.ok_or(SendError::NoSigningKey(provider))?;
            Ok(Credential::FirecrawlKey(env::secret(var)?))
        }
        DefaultScheme::BrowserUseSignature => {
            let var = var.ok_or(SendError::NoSigningKey(provider))?;
            Ok(Credential::BrowserUseKey(env::secret(var)?))
        }
    }
}

/// How the platform turns a payload into a request.
struct Sender {
    provider: Provider,
    credential: Credential,
    raw: bool,
}

/// A request ready to post.
struct Prepared {
    headers: HeaderMap,
    body: Bytes,
}

impl Sender {
    /// The body the platform sends for `payload`: Skyvern the canonical form of the JSON
    /// (unless `--raw`), the others the bytes as they are.
    fn body(&self, payload: &[u8]) -> Result<Bytes, SendError> {
        if self.provider != Provider::Skyvern || self.raw {
            return Ok(Bytes::copy_from_slice(payload));
        }
        match canonicalize(payload) {
            Ok(body) => Ok(body.into()),
            Err(source) => Err(SendError::NotSendable { source }),
        }
    }

    /// The request the platform sends with `body` at `unix_now`.
    fn request(&self, body: Bytes, unix_now: i64) -> Prepared {
        let headers = deliver::platform_headers(self.provider, &self.credential, &body, unix_now);
        Prepared { headers, body }
    }

    /// The request the platform sends for `payload` at `unix_now`.
    fn prepare(&self, payload: &[u8], unix_now: i64) -> Result<Prepared, SendError> {
        Ok(self.request(self.body(payload)?, unix_now))
    }
}

/// Delivers each file in turn, printing every attempt and each outcome; `true` if all were
/// answered 2xx.
async fn send_each(target: &Target, sender: &Sender, bodies: Vec<(String, Bytes)>) -> bool {
    let mut all_delivered = true;
    for (name, body) in bodies {
        let attempts = target
            .deliver(sender.request(body, now()), |attempt| {
                say(format_args!(
                    "{name}: {}",
                    attempt_line(attempt, &target.schedule)
                ));
            })
            .await;
        say(format_args!(
            "{name}: {}",
            outcome_line(&attempts, &target.schedule)
        ));
        all_delivered &= delivered(&attempts);
    }
    all_delivered
}

/// Writes `text` on standard output. A closed pipe (`| head`) must not stop the deliveries, so
/// a failed write is ignored.
fn say(text: impl fmt::Display) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Whether the last attempt was answered 2xx.
fn delivered(attempts: &[Attempt]) -> bool {
    attempts.last().is_some_and(|a| a.result.is_success())
}

/// `attempt 2/4 at +1.003 s: HTTP 503 Service Unavailable (2.1 ms); retrying in 2.000 s`.
fn attempt_line(attempt: &Attempt, schedule: &Schedule) -> String {
    let next = match &attempt.next {
        Some(pause) => format!("; {pause}"),
        None => String::new(),
    };
    format!(
        "attempt {}/{} at +{:.3} s: {} ({}){next}",
        attempt.number,
        schedule.profile.attempts,
        attempt.started_after.as_secs_f64(),
        attempt.result,
        millis(attempt.latency),
    )
}

/// `delivered (HTTP 200 OK) after 2 attempts`, or why not.
fn outcome_line(attempts: &[Attempt], schedule: &Schedule) -> String {
    let Some(last) = attempts.last() else {
        return "not delivered: no attempt was made".into();
    };
    let tries = match attempts.len() {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    };
    if last.result.is_success() {
        return format!("delivered ({}) after {tries}", last.result);
    }
    let who = match schedule.kind {
        SenderKind::Current => schedule.provider.to_string(),
        SenderKind::Documented => format!("{} as documented", schedule.provider),
    };
    let retry_on = schedule.profile.retry_on;
    let why = if schedule.profile.attempts <= 1 {
        format!("; {who} does not retry")
    } else if last.result.retried_on(retry_on) {
        "; no retry left".into()
    } else {
        match last.result.status() {
            Some(status) => format!("; {who} never retries HTTP {status}"),
            None => format!("; {who} never retries this"),
        }
    };
    format!("not delivered: {} after {tries}{why}", last.result)
}

/// A duration as milliseconds with one decimal: `2.1 ms`.
fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// The name printed for an input.
fn display_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "stdin".into()
    } else {
        path.display().to_string()
    }
}

fn now() -> i64 {
    SystemClock.now_unix()
}

fn header_name(name: &str) -> Result<HeaderName, ValueError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| ValueError::HeaderName(name.into()))
}

fn seconds(text: &str) -> Result<Duration, ValueError> {
    let seconds: f64 = text.parse().map_err(|_| ValueError::Seconds(text.into()))?;
    match Duration::try_from_secs_f64(seconds) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(ValueError::PositiveSeconds(text.into())),
    }
}

fn positive(text: &str) -> Result<usize, ValueError> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ValueError::Positive(text.into())),
    }
}

fn retries(text: &str) -> Result<u32, ValueError> {
    match text.parse::<u32>() {
        Ok(n) if (1..=5).contains(&n) => Ok(n),
        _ => Err(ValueError::Attempts(text.into())),
    }
}

fn ratio(text: &str) -> Result<f64, ValueError> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(ValueError::Ratio(text.into())),
    }
}
