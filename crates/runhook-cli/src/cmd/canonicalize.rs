//! `runhook canonicalize`: the exact bytes Skyvern signs for a JSON document; and the check
//! `runhook verify` uses to tell a re-serialized Skyvern body from a forged one.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use runhook_core::canonical::{canonicalize, canonicalize_into, CanonicalError};
use runhook_core::{BodyMatch, Delivery, HeaderLookup, Secrets, SkyvernSignature, Verifier};

use super::input::{open_input, read_error, read_input};
use crate::env;

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
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let written = if args.each_line {
        let input = match open_input(&args.input) {
            Ok(input) => input,
            Err(error) => return usage(&error.to_string()),
        };
        match each_line(input, &mut stdout) {
            Ok(()) => Ok(()),
            Err(Failed::Read(e)) => return usage(&read_error(&args.input, e).to_string()),
            Err(Failed::Write(e)) => Err(e),
        }
    } else {
        let input = match read_input(&args.input) {
            Ok(input) => input,
            Err(error) => return usage(&error.to_string()),
        };
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

/// The input is read this many bytes at a time (the buffer grows to hold a longer line).
const READ_CHUNK: usize = 1 << 20;
/// The output is handed to the writer once this many bytes have accumulated.
const WRITE_CHUNK: usize = 1 << 16;

/// Which side of [`each_line`] failed.
enum Failed {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// One output line per input line. A final `\n` ends the last line rather than starting an
/// empty one, so an empty input has no line at all and `"\n"` has one, empty.
///
/// The input is streamed through one buffer, and the lines' output gathered in another, both
/// reused: memory stays bounded by the longest line, not the input.
fn each_line(mut input: impl Read, out: &mut impl Write) -> Result<(), Failed> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut canonical = Vec::with_capacity(2 * WRITE_CHUNK);
    // `buf[..filled]` holds input not yet processed: part of one line, at most.
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(2 * buf.len(), 0);
        }
        let read = match input.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failed::Read(e)),
        };
        let scanned = filled;
        filled += read;
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', &buf[scanned..filled]) {
            let end = scanned + newline;
            line(&buf[start..end], &mut canonical);
            start = end + 1;
            if canonical.len() >= WRITE_CHUNK {
                out.write_all(&canonical).map_err(Failed::Write)?;
                canonical.clear();
            }
        }
        if read == 0 {
            if filled > 0 {
                line(&buf[..filled], &mut canonical);
            }
            return out.write_all(&canonical).map_err(Failed::Write);
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
}

/// Appends the output line for the input line `input`, its `\n` included.
fn line(input: &[u8], out: &mut Vec<u8>) {
    if let Err(error) = canonicalize_into(input, out) {
        // `out` is as it was; a `Vec` cannot fail to be written to.
        let _ = write!(out, "error: {}", describe(&error));
    }
    out.push(b'\n');
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
    reserialized_explanation_with(env::secrets(secret_env).ok()?, headers, body)
}

/// [`reserialized_explanation`] with the keys given rather than read from the environment.
pub fn reserialized_explanation_with(
    keys: Secrets,
    headers: &dyn HeaderLookup,
    body: &[u8],
) -> Option<String> {
    let scheme = SkyvernSignature::new(keys).with_canonical_fallback();
    let verified = scheme.verify(&Delivery::new(headers, body)).ok()?;
    matches!(verified.body, BodyMatch::Canonical { .. }).then(|| {
        "the raw body bytes do not match, but the body's canonical form does: the payload is \
genuine, and it was re-serialized on its way (a proxy, gateway, framework or log parsed the JSON \
and wrote it out again)\n\
hint: verify the bytes exactly as received, before anything parses the body; or accept such \
deliveries explicitly with `SkyvernSignature::with_canonical_fallback()`"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, as a pipe may.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 = self.1 % 7 + 1;
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn lines(input: &[u8], trickle: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let result = if trickle {
            each_line(Trickle(input, 0), &mut out)
        } else {
            each_line(input, &mut out)
        };
        assert!(result.is_ok());
        out
    }

    #[test]
    fn lines_across_reads_and_longer_than_the_buffer() {
        let long = format!("[{}1]", "1, ".repeat(READ_CHUNK));
        let long_out = format!("[{}1]", "1,".repeat(READ_CHUNK));
        let empty = "error: JSONDecodeError: expecting a value at byte 0\n";
        let cases: [(&[u8], String); 6] = [
            (b"", String::new()),
            (b"\n", empty.into()),
            (b"[1.0]", "[1]\n".into()),
            (b"[1.0]\n\n{ }\n", format!("[1]\n{empty}{{}}\n")),
            (b"1\nx\n", format!("1\n{empty}")),
            (long.as_bytes(), format!("{long_out}\n")),
        ];
        for (input, expected) in &cases {
            for trickle in [false, true] {
                if trickle && input.len() > 100 {
                    continue;
                }
                let out = lines(input, trickle);
                assert_eq!(String::from_utf8(out).unwrap(), *expected);
            }
        }
        let many = "{\"a\": 1.5}\n".repeat(20_000);
        assert_eq!(
            lines(many.as_bytes(), false),
            "{\"a\":1.5}\n".repeat(20_000).as_bytes()
        );
    }
}
