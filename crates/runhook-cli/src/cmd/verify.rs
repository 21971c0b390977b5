//! `runhook verify`: is this captured delivery genuine? If not, exactly why not.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use runhook_core::{
    AuthError, BodyMatch, BrowserUseSignature, ConfigError, Delivery, FirecrawlSignature,
    FixedClock, HeaderToken, PathSecret, PublicKeys, Secret, Secrets, SegmentPosition,
    SkyvernSignature, StandardWebhooks, StandardWebhooksKeys, StandardWebhooksPublicKey,
    TimestampCheck, Verified, Verifier,
};

use super::input::{read_input, InputError};
use crate::env::{self, EnvError};

/// Exit status for a rejected delivery.
const REJECTED: u8 = 1;
/// Exit status for a usage or configuration error.
const USAGE: u8 = 2;

/// The schemes `verify` can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemeArg {
    /// `x-skyvern-signature`: hex HMAC-SHA256 of the raw body keyed by the API key.
    Skyvern,
    /// A static token in a header (WebRun's `Authorization`, SmartBrowse's custom header).
    HeaderToken,
    /// A secret segment of the request path (SmartBrowse).
    PathSecret,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`, or the
    /// `svix-*` aliases).
    StandardWebhooks,
    /// Firecrawl's `x-firecrawl-signature`: `sha256=` and the hex HMAC-SHA256 of the raw body.
    Firecrawl,
    /// Browser Use's `x-browser-use-signature`: hex HMAC-SHA256 of `{timestamp}.{the body's
    /// sorted-key JSON}`, or the older `x-webhook-signature` of the raw body.
    BrowserUse,
}

/// Arguments of `runhook verify`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 genuine, 1 rejected, 2 usage or configuration error.\n\
Secrets are read from the environment variables named by --secret-env, never from the command line."
)]
pub struct VerifyArgs {
    /// The authentication scheme the sender uses.
    #[arg(long, value_enum)]
    scheme: SchemeArg,
    /// Name of an environment variable holding an accepted secret; repeat for key rotation.
    /// For standard-webhooks the value is a `whsec_...` secret (`v1` signatures) or a
    /// `whpk_...` public key (`v1a`, ed25519); give both kinds to accept either.
    #[arg(long = "secret-env", value_name = "VAR", required = true)]
    secret_env: Vec<String>,
    /// File holding the body exactly as received (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    body: PathBuf,
    /// A request header as `Name: value`; repeat for each header.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// For header-token: the header carrying the token.
    #[arg(long, value_name = "NAME", default_value = "authorization")]
    header_name: String,
    /// For path-secret: the request path, e.g. `/webhooks/smartbrowse/8x4Kpz`.
    #[arg(long, value_name = "PATH", default_value = "/")]
    path: String,
    /// For path-secret: index of the secret segment (counted from 0); default the last one.
    #[arg(long, value_name = "INDEX")]
    segment: Option<usize>,
    /// Timestamp tolerance in seconds. Skyvern: checks `x-skyvern-timestamp` (off unless
    /// given). Standard Webhooks and Browser Use: default 300.
    #[arg(long, value_name = "SECONDS")]
    tolerance: Option<u64>,
    /// Check timestamps as if now were this Unix time (for deliveries captured earlier).
    #[arg(long, value_name = "UNIX_SECONDS", allow_hyphen_values = true)]
    at: Option<i64>,
}

/// Runs `runhook verify`.
pub fn run(args: VerifyArgs) -> ExitCode {
    match check(&args) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(Failure::Rejected(reason)) => {
            println!("rejected: {reason}");
            ExitCode::from(REJECTED)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("runhook verify: {message}");
            ExitCode::from(USAGE)
        }
    }
}

enum Failure {
    Rejected(String),
    Usage(UsageError),
}

/// Why the delivery could not be checked (exit status 2).
#[derive(Debug, thiserror::Error)]
enum UsageError {
    /// The body could not be read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A `--header` without a colon.
    #[error("header `{0}` is not of the form `Name: value`")]
    HeaderForm(String),
    /// A `--header` whose name is not an HTTP header name.
    #[error("`{0}` is not a valid header name")]
    HeaderName(String),
    /// A secret could not be read, or is not a key.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The scheme refused its keys.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn check(args: &VerifyArgs) -> Result<String, Failure> {
    let headers = parse_headers(&args.headers).map_err(Failure::Usage)?;
    let body = read_input(&args.body).map_err(|e| Failure::Usage(e.into()))?;
    let scheme = build_scheme(args).map_err(Failure::Usage)?;
    let delivery = Delivery::new(&headers, &body).with_path(&args.path);
    match scheme.verify(&delivery) {
        Ok(verified) => Ok(describe(&verified, args)),
        Err(err @ AuthError::SignatureMismatch { .. }) if args.scheme == SchemeArg::Skyvern => {
            let reserialized =
                super::canonicalize::reserialized_explanation(&args.secret_env, &headers, &body);
            let mut reason = explain(&err, &body);
            if let Some(explanation) = reserialized {
                reason = format!("{reason}\n{explanation}");
            }
            Err(Failure::Rejected(reason))
        }
        Err(err) => Err(Failure::Rejected(explain(&err, &body))),
    }
}

fn build_scheme(args: &VerifyArgs) -> Result<Box<dyn Verifier>, UsageError> {
    let clock = args.at.map(FixedClock);
    let tolerance = args.tolerance.map(Duration::from_secs);
    Ok(match args.scheme {
        SchemeArg::Skyvern => {
            let mut scheme = SkyvernSignature::new(env::secrets(&args.secret_env)?);
            if let Some(tolerance) = tolerance {
                scheme = scheme.with_timestamp_tolerance(tolerance);
            }
            if let Some(clock) = clock {
                scheme = scheme.with_clock(clock);
            }
            Box::new(scheme)
        }
        SchemeArg::Firecrawl => Box::new(FirecrawlSignature::new(env::secrets(&args.secret_env)?)),
        SchemeArg::BrowserUse => {
            let mut scheme = BrowserUseSignature::new(env::secrets(&args.secret_env)?);
            if let Some(tolerance) = tolerance {
                scheme = scheme.with_timestamp_tolerance(tolerance);
            }
            if let Some(clock) = clock {
                scheme = scheme.with_clock(clock);
            }
            Box::new(scheme)
        }
        SchemeArg::HeaderToken => Box::new(HeaderToken::new(
            &args.header_name,
            env::secrets(&args.secret_env)?,
        )?),
        SchemeArg::PathSecret => {
            let position = args
                .segment
                .map_or(SegmentPosition::Last, SegmentPosition::Index);
            Box::new(PathSecret::at(position, env::secrets(&args.secret_env)?))
        }
        SchemeArg::StandardWebhooks => {
            let mut scheme = StandardWebhooks::with_keys(standard_webhooks_keys(&args.secret_env)?);
            if let Some(tolerance) = tolerance {
                scheme = scheme.with_tolerance(tolerance);
            }
            if let Some(clock) = clock {
                scheme = scheme.with_clock(clock);
            }
            Box::new(scheme)
        }
    })
}

/// The Standard Webhooks keys in `vars`: `whpk_...` public keys (`v1a`), the rest
/// `whsec_...` secrets (`v1`).
fn standard_webhooks_keys(vars: &[String]) -> Result<StandardWebhooksKeys, UsageError> {
    let (mut symmetric, mut public) = (Vec::new(), Vec::new());
    for var in vars {
        let not_a_key = |source| EnvError::NotASecret {
            var: var.clone(),
            source,
        };
        let text = env::secret(var)?;
        let text = std::str::from_utf8(text.expose())
            .map_err(|_| EnvError::NotUtf8(var.clone()))?
            .trim();
        if text.starts_with("whpk_") {
            public
                .push(StandardWebhooksPublicKey::from_standard_webhooks(text).map_err(not_a_key)?);
        } else {
            symmetric.push(Secret::from_standard_webhooks(text).map_err(not_a_key)?);
        }
    }
    Ok(match (symmetric.is_empty(), public.is_empty()) {
        (false, true) => StandardWebhooksKeys::Symmetric(Secrets::new(symmetric)?),
        (true, false) => StandardWebhooksKeys::Public(PublicKeys::new(public)?),
        _ => StandardWebhooksKeys::Both {
            symmetric: Secrets::new(symmetric)?,
            public: PublicKeys::new(public)?,
        },
    })
}

/// Parses `Name: value` arguments into header pairs.
fn parse_headers(raw: &[String]) -> Result<Vec<(String, String)>, UsageError> {
    raw.iter()
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| UsageError::HeaderForm(line.clone()))?;
            let name = name.trim();
            http_header_name(name)?;
            Ok((name.to_string(), value.trim().to_string()))
        })
        .collect()
}

fn http_header_name(name: &str) -> Result<(), UsageError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(UsageError::HeaderName(name.into()))
    }
}

fn describe(verified: &Verified, args: &VerifyArgs) -> String {
    let mut out = format!("genuine: scheme {}", verified.scheme);
    if let Some(index) = verified.key_index {
        let var = args.secret_env.get(index).map_or("?", String::as_str);
        out.push_str(&format!(", key #{index} (${var})"));
    }
    if let Some(id) = &verified.message_id {
        out.push_str(&format!(", message id {id}"));
    }
    if let TimestampCheck::WithinTolerance {
        timestamp,
        covered_by_signature,
    } = verified.timestamp
    {
        out.push_str(&format!("\ntimestamp {timestamp} is within the tolerance"));
        if !covered_by_signature {
            out.push_str(
                " (note: the signature does not cover it, so it proves nothing about replays)",
            );
        }
    }
    if verified.body == BodyMatch::Reserialized {
        out.push_str(
            "
the signature covers the payload's re-serialization, which was rebuilt to check it",
        );
    }
    out
}

/// The rejection reason, with a hint where a common mistake explains it.
fn explain(err: &AuthError, body: &[u8]) -> String {
    let mut out = err.to_string();
    if matches!(err, AuthError::SignatureMismatch { .. }) {
        if body.ends_with(b"\n") {
            out.push_str(
                "\nhint: the body file ends with a newline; senders sign the body without one, \
so an editor or `echo` may have added it",
            );
        }
        out.push_str(
            "\nhint: the signature covers the body bytes exactly as sent; a body that was parsed and \
re-serialized (by a proxy, a framework or a log) no longer matches",
        );
    }
    out
}
