//! `runhook canonicalize`: the exact bytes Skyvern signs for a JSON document; and the check
//! `runhook verify` uses to tell a re-serialized Skyvern body from a forged one.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use runhook_core::canonical::{canonicalize, canonicalize_into, CanonicalError};
use runhook_core::{BodyMatch, Delivery, HeaderLookup, Secrets, SkyvernSignature, Verifier};

use super::input::read_input;
use super::secrets;

/// Exit status for an input without a canonical form.
const NOT_CANONICAL: u8 = 1;
/// Exit status for a usage or I/O error.
const USAGE: u8 = 2;

/// Arguments of `runhook canonicalize`.
#[derive(Debug, Args)]
#[command(
    after_help = "Writes Skyvern's canonical form of the JSON document: compact, whole floats as \
integers, floats as Python's repr, non-ASCII raw; exactly the bytes Skyvern signs.\n\
Exit status: 0 written (always with --each-line), 1 the input has no canonical form, 2 usage or \
I/O error."
)]
pub struct CanonicalizeArgs {
    /// Treat each input line (split on `\n` only) as one document, and write one line for
    /// each: its canonical text, or `error: <reason>` when Skyvern could never have sent it.
    #[arg(long)]
    each_line: bool,
    /// The JSON document (`-` for standard input).
    #[arg(value_name = "FILE", default_value = "-")]
    input: PathBuf,
}

/// Runs `runhook canonicalize`.
pub fn run(args: CanonicalizeArgs) -> ExitCode {
    let input = match read_input(&args.input) {
        Ok(input) => input,
        Err(message) => return usage(&message),
    };
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let written = if args.each_line {
        each_line(&input, &mut stdout)
    } else {
        match canonicalize(&input) {
            Ok(canonical) => stdout.write_all(&canonical),
            Err(error) => {
                eprintln!("runhook canonicalize: {}", describe(&error));
                return ExitCode::from(NOT_CANONICAL);
            }
        }
    };
    match written.and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage(&format!("cannot write standard output: {e}")),
    }
}

/// One output line per input line. A final `\n` ends the last line rather than starting an
/// empty one, so an empty input has no line at all and `"\n"` has one, empty.
fn each_line(input: &[u8], out: &mut impl std::io::Write) -> std::io::Result<()> {
    if input.is_empty() {
        return Ok(());
    }
    let input = input.strip_suffix(b"\n").unwrap_or(input);
    let mut canonical = Vec::new();
    for line in input.split(|&b| b == b'\n') {
        canonical.clear();
        match canonicalize_into(line, &mut canonical) {
            Ok(()) => out.write_all(&canonical)?,
            Err(error) => write!(out, "error: {}", describe(&error))?,
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// `JSONDecodeError: expecting a value at byte 0`: the Python exception Skyvern's own code
/// raises, then the precise reason.
fn describe(error: &CanonicalError) -> String {
    format!("{}: {error}", error.python_exception())
}

fn usage(message: &str) -> ExitCode {
    eprintln!("runhook canonicalize: {message}");
    ExitCode::from(USAGE)
}

/// For `runhook verify`: when a Skyvern signature fails on the raw bytes, whether it matches
/// the body's canonical form with one of the keys in `secret_env`, and if so the explanation.
pub fn reserialized_explanation(
    secret_env: &[String],
    headers: &dyn HeaderLookup,
    body: &[u8],
) -> Option<String> {
    reserialized_explanation_with(secrets::all_from_env(secret_env).ok()?, headers, body)
}

/// [`reserialized_explanation`] with the keys given rather than read from the environment.
pub fn reserialized_explanation_with(
    keys: Secrets,
    headers: &dyn HeaderLookup,
    body: &[u8],
) -> Option<String> {
    let scheme = SkyvernSignature::new(keys).with_canonical_fallback();
    let verified = scheme.verify(&Delivery::new(headers, body)).ok()?;
    (verified.body == BodyMatch::Canonical).then(|| {
        "the raw body bytes do not match, but the body's canonical form does: the payload is \
genuine, and it was re-serialized on its way (a proxy, gateway, framework or log parsed the JSON \
and wrote it out again)\n\
hint: verify the bytes exactly as received, before anything parses the body; or accept such \
deliveries explicitly with `SkyvernSignature::with_canonical_fallback()`"
            .to_string()
    })
}
