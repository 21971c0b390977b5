//! `runhook parse`: what runhook reads from a body, as the unified run event.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use runhook_core::payload::{Provider, RunEvent};

use super::input::read_input;

/// Arguments of `runhook parse`.
#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 parsed, 1 not that provider's payload, 2 usage error.")]
pub struct ParseArgs {
    /// Which payload the body is: skyvern, tinyfish, webrun (full_response or just_ping),
    /// webrun-ai (ai_response) or smartbrowse.
    #[arg(long, value_parser = crate::names::provider_name)]
    provider: Provider,
    /// The body file (`-`, the default, for standard input).
    #[arg(default_value = "-")]
    file: PathBuf,
}

/// Runs `runhook parse`.
pub fn run(args: ParseArgs) -> ExitCode {
    let body = match read_input(&args.file) {
        Ok(body) => body,
        Err(message) => {
            eprintln!("runhook parse: {message}");
            return ExitCode::from(2);
        }
    };
    match RunEvent::parse(args.provider, body) {
        Ok(event) => {
            println!("{}", crate::event_json::summary(&event));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("runhook parse: not a {} payload: {err}", args.provider);
            ExitCode::from(1)
        }
    }
}
