//! The `runhook` command: receive, send, check and sign webhook deliveries from web-agent
//! platforms.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod deliver;
mod env;
mod event_json;
mod names;
mod outage_store;
mod redact;
mod serve;

/// runhook: the receiving end of web-agent webhooks (Skyvern, TinyFish, WebRun, SmartBrowse).
#[derive(Debug, Parser)]
#[command(name = "runhook", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a receiver with a route per platform and play each platform's deliveries at it,
    /// good and bad: what was answered and what was processed. No setup, no Redis.
    Demo(cmd::demo::DemoArgs),
    /// Check whether a captured delivery is genuine, and say precisely why not.
    Verify(cmd::verify::VerifyArgs),
    /// Parse a body as a provider's payload and print the unified run event as JSON.
    Parse(cmd::parse::ParseArgs),
    /// Write the exact bytes Skyvern signs for a JSON document (its canonical form).
    Canonicalize(cmd::canonicalize::CanonicalizeArgs),
    /// Receive webhooks: one route from flags or many from runhook.toml, with /healthz and
    /// /metrics.
    Serve(Box<cmd::serve::ServeArgs>),
    /// Print the exact request (headers, blank line, body) a sender would make for a payload.
    Sign(cmd::sign::SignArgs),
    /// Deliver bodies to a receiver exactly as a platform does (headers, timeout, retries), or
    /// generate load with fresh run ids and duplicates.
    Send(cmd::send::SendArgs),
    /// List the deliveries a receiver set aside (a --dead-letters file or a route's
    /// dead-letter stream), and redrive them: back into the route's stream, or through the
    /// handler of a runhook.toml.
    DeadLetters(cmd::dead_letters::DeadLettersArgs),
    /// Record that runs were started (Skyvern, TinyFish, SmartBrowse), so that the `serve`
    /// instances reconciling them on the same Redis fetch each one whose webhook never comes.
    Expect(cmd::expect::ExpectArgs),
    /// Create or bring up to date a Postgres store's tables (its schema), before `serve`.
    Migrate(cmd::migrate::MigrateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify(args) => cmd::verify::run(args),
        Command::Parse(args) => cmd::parse::run(args),
        Command::Canonicalize(args) => cmd::canonicalize::run(args),
        Command::Sign(args) => cmd::sign::run(args),
        Command::Send(args) => cmd::send::run(args),
        Command::Serve(args) => cmd::serve::run(*args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::DeadLetters(args) => cmd::dead_letters::run(args),
        Command::Expect(args) => cmd::expect::run(args),
        Command::Migrate(args) => cmd::migrate::run(args),
    }
}
