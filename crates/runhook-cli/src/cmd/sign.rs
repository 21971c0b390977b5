//! `runhook sign`: the exact request a sender would make for a payload, to test a receiver.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use runhook_core::canonical::SkyvernRequest;
use runhook_core::{Clock as _, SystemClock};

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
}

/// Arguments of `runhook sign`.
#[derive(Debug, Args)]
#[command(
    after_help = "Prints the headers the sender would send, a blank line, then the exact body.\n\
The payload may be spelled any way (whitespace, 3.0, escapes): the body is the sender's canonical \
form of it.\n\
Exit status: 0 printed, 1 the payload is not JSON the sender could send, 2 usage or configuration \
error.\n\
The key is read from the environment variable named by --secret-env, never from the command line."
)]
pub struct SignArgs {
    /// The sender's scheme.
    #[arg(long, value_enum)]
    scheme: SignScheme,
    /// Name of the environment variable holding the key to sign with (for Skyvern, the API key).
    #[arg(long = "secret-env", value_name = "VAR")]
    secret_env: String,
    /// The `x-skyvern-timestamp` to send, in Unix seconds; default now.
    #[arg(long, value_name = "UNIX_SECONDS", allow_hyphen_values = true)]
    timestamp: Option<i64>,
    /// The JSON payload (`-` for standard input).
    #[arg(value_name = "FILE", default_value = "-")]
    input: PathBuf,
}

/// Runs `runhook sign`.
pub fn run(args: SignArgs) -> ExitCode {
    let key = match env::secret(&args.secret_env) {
        Ok(key) => key,
        Err(error) => return fail(USAGE, &error.to_string()),
    };
    let payload = match read_input(&args.input) {
        Ok(payload) => payload,
        Err(error) => return fail(USAGE, &error.to_string()),
    };
    let timestamp = args.timestamp.unwrap_or_else(|| SystemClock.now_unix());
    let request = match args.scheme {
        SignScheme::Skyvern => SkyvernRequest::from_json(&key, &payload, timestamp),
    };
    let request = match request {
        Ok(request) => request,
        Err(error) => {
            let message = format!("cannot sign: {}: {error}", error.python_exception());
            return fail(UNSIGNABLE, &message);
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = request
        .headers()
        .iter()
        .try_for_each(|(name, value)| writeln!(out, "{name}: {value}"))
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.write_all(&request.body))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(USAGE, &format!("cannot write standard output: {e}")),
    }
}

fn fail(status: u8, message: &str) -> ExitCode {
    eprintln!("runhook sign: {message}");
    ExitCode::from(status)
}
