//! `runhook sign`: the exact request a sender would make for a payload, to test a receiver.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use runhook_core::canonical::{CanonicalError, SkyvernRequest};
use runhook_core::{
    sign_standard_webhooks, BrowserUseSignature, Clock as _, FirecrawlSignature, Secret,
    StandardWebhooks, SystemClock,
};

use super::input::read_input;
use crate::env;

/// Exit status for a payload that cannot be signed (not JSON Skyvern could send).
const UNSIGNABLE: u8 = 1;
/// Exit status for a usage or configuration error (including an unset or empty secret).
const USAGE: u8 = 2;

/// The schemes `sign` can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignScheme {
    /// Skyvern: canonical JSON body, `x-skyvern-signature` (hex HMAC-SHA256 keyed by the API
    /// key) and `x-skyvern-timestamp`.
    Skyvern,
    /// Standard Webhooks: the body as given, `webhook-id` (from `--id`), `webhook-timestamp`
    /// and `webhook-signature` (`v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`,
    /// keyed by a `whsec_` secret).
    StandardWebhooks,
    /// Firecrawl: the body as given and `x-firecrawl-signature` (`sha256=` and the hex
    /// HMAC-SHA256 of the body, keyed by the webhook secret).
    Firecrawl,
    /// Browser Use: the body as given, `x-browser-use-signature` (the hex HMAC-SHA256 of
    /// `{timestamp}.{the body's sorted-key JSON}`, keyed by the webhook secret) and
    /// `x-browser-use-timestamp`.
    BrowserUse,
}

/// Arguments of `runhook sign`.
#[derive(Debug, Args)]
#[command(
    after_help = "Prints the headers the sender would send, one `name: value` a line, a blank line, \
then the exact body.\n\
Skyvern: the payload may be spelled any way (whitespace, 3.0, escapes): the body is the sender's \
canonical form of it. Standard Webhooks, Firecrawl: the body is signed exactly as given. Browser \
Use: the body is sent as given, its sorted-key form is signed.\n\
Exit status: 0 printed, 1 the payload is not JSON the sender could send, 2 usage or configuration \
error.\n\
The key is read from the environment variable named by --secret-env, never from the command line."
)]
pub struct SignArgs {
    /// The sender's scheme.
    #[arg(long, value_enum)]
    scheme: SignScheme,
    /// Name of the environment variable holding the key to sign with (for Skyvern, the API key;
    /// for Standard Webhooks, a `whsec_...` secret; for Firecrawl and Browser Use, the webhook
    /// secret).
    #[arg(long = "secret-env", value_name = "VAR")]
    secret_env: String,
    /// For standard-webhooks (required there): the `webhook-id`, the message's unique id.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// The timestamp header to send, in Unix seconds; default now.
    #[arg(long, value_name = "UNIX_SECONDS", allow_hyphen_values = true)]
    timestamp: Option<i64>,
    /// The JSON payload (`-` for standard input).
    #[arg(value_name = "FILE", default_value = "-")]
    input: PathBuf,
}

/// Runs `runhook sign`.
pub fn run(args: SignArgs) -> ExitCode {
    let signed = match args.scheme {
        SignScheme::Skyvern => sign_skyvern(&args),
        SignScheme::StandardWebhooks => sign_standard(&args),
        SignScheme::Firecrawl => sign_firecrawl(&args),
        SignScheme::BrowserUse => sign_browser_use(&args),
    };
    let signed = match signed {
        Ok(signed) => signed,
        Err((status, message)) => return fail(status, &message),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = signed
        .headers
        .iter()
        .try_for_each(|(name, value)| writeln!(out, "{name}: {value}"))
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.write_all(&signed.body))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(USAGE, &format!("cannot write standard output: {e}")),
    }
}

/// What a sender would send: its headers in order, then the exact body.
struct Signed {
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// Why nothing was signed: the exit status and the message.
type Refusal = (u8, String);

fn sign_skyvern(args: &SignArgs) -> Result<Signed, Refusal> {
    no_id(args)?;
    let (key, payload) = (secret(args)?, body(args)?);
    let request = SkyvernRequest::from_json(&key, &payload, timestamp(args)).map_err(unsignable)?;
    Ok(Signed {
        headers: request.headers().into(),
        body: request.body,
    })
}

fn sign_standard(args: &SignArgs) -> Result<Signed, Refusal> {
    let id = match args.id.as_deref() {
        None => return Err((USAGE, "--scheme standard-webhooks needs --id".into())),
        Some(id) if !is_header_token(id) => {
            let message = "--id must be non-empty visible ASCII (no spaces or control characters)";
            return Err((USAGE, message.into()));
        }
        Some(id) => id,
    };
    let key =
        env::standard_webhooks_secret(&args.secret_env).map_err(|e| (USAGE, e.to_string()))?;
    let body = body(args)?;
    let timestamp = timestamp(args);
    let signature = sign_standard_webhooks(&key, id, timestamp, &body);
    Ok(Signed {
        headers: vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            (StandardWebhooks::SIGNATURE_HEADER_NAME, signature),
        ],
        body,
    })
}

fn sign_firecrawl(args: &SignArgs) -> Result<Signed, Refusal> {
    no_id(args)?;
    let (key, body) = (secret(args)?, body(args)?);
    if args.timestamp.is_some() {
        return Err((
            USAGE,
            "Firecrawl signs no timestamp: drop --timestamp".into(),
        ));
    }
    let signature = runhook_core::sign_firecrawl(&key, &body);
    Ok(Signed {
        headers: vec![
            ("Content-Type", "application/json".to_owned()),
            (FirecrawlSignature::SIGNATURE_HEADER, signature),
        ],
        body,
    })
}

fn sign_browser_use(args: &SignArgs) -> Result<Signed, Refusal> {
    no_id(args)?;
    let (key, body) = (secret(args)?, body(args)?);
    let timestamp = timestamp(args);
    let signature = runhook_core::sign_browser_use(&key, timestamp, &body).map_err(unsignable)?;
    Ok(Signed {
        headers: vec![
            ("Content-Type", "application/json".to_owned()),
            (BrowserUseSignature::SIGNATURE_HEADER, signature),
            (BrowserUseSignature::TIMESTAMP_HEADER, timestamp.to_string()),
        ],
        body,
    })
}

/// The key in `--secret-env`.
fn secret(args: &SignArgs) -> Result<Secret, Refusal> {
    env::secret(&args.secret_env).map_err(|e| (USAGE, e.to_string()))
}

/// The payload to sign, from the input file.
fn body(args: &SignArgs) -> Result<Vec<u8>, Refusal> {
    read_input(&args.input).map_err(|e| (USAGE, e.to_string()))
}

/// `--timestamp`, or now.
fn timestamp(args: &SignArgs) -> i64 {
    args.timestamp.unwrap_or_else(|| SystemClock.now_unix())
}

/// A payload the sender could not have sent (its JSON is not what Python would load).
fn unsignable(error: CanonicalError) -> Refusal {
    let message = format!("cannot sign: {}: {error}", error.python_exception());
    (UNSIGNABLE, message)
}

/// Refuses `--id`, which only Standard Webhooks signs.
fn no_id(args: &SignArgs) -> Result<(), Refusal> {
    match args.id {
        Some(_) => Err((USAGE, "--id is for --scheme standard-webhooks only".into())),
        None => Ok(()),
    }
}

/// Whether `value` can be printed as one header value and read back unchanged.
fn is_header_token(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic())
}

fn fail(status: u8, message: &str) -> ExitCode {
    eprintln!("runhook sign: {message}");
    ExitCode::from(status)
}
