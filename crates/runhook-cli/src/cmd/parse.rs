//! `runhook parse`: what runhook reads from a body, as the unified run event.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use runhook_core::payload::{Provider, RunEvent};
use serde_json::{json, Value};

use super::input::read_input;

/// Arguments of `runhook parse`.
#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 parsed, 1 not that provider's payload, 2 usage error.")]
pub struct ParseArgs {
    /// Which payload the body is: skyvern, tinyfish, webrun (full_response or just_ping),
    /// webrun-ai (ai_response) or smartbrowse.
    #[arg(long, value_parser = provider_name)]
    provider: Provider,
    /// The body file (`-`, the default, for standard input).
    #[arg(default_value = "-")]
    file: PathBuf,
}

fn provider_name(name: &str) -> Result<Provider, String> {
    Provider::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
        format!("unknown provider `{name}`; one of: {}", names.join(", "))
    })
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
            println!("{}", summary(&event));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("runhook parse: not a {} payload: {err}", args.provider);
            ExitCode::from(1)
        }
    }
}

/// The event as one JSON object.
fn summary(event: &RunEvent) -> Value {
    json!({
        "provider": event.provider.as_str(),
        "dedup_key": event.dedup_key,
        "run_id": event.run_id,
        "status": event.status.as_str(),
        "event": event.event,
        "result": event.result(),
        "error": event.error.as_ref().map(|e| json!({"message": e.message, "category": e.category})),
    })
}
