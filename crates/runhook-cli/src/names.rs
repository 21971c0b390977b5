//! Names given on the command line or in `runhook.toml`, parsed for the commands and for
//! `serve`'s configuration alike.

use runhook::payload::Provider;

/// A provider name that is none of [`Provider::ALL`]; the message lists them.
#[derive(Debug, thiserror::Error)]
#[error("unknown provider `{0}`; one of: {names}", names = provider_names())]
pub struct UnknownProvider(String);

/// Parses a provider name as [`Provider::as_str`] spells it (for clap's `value_parser` and
/// for config files).
pub fn provider_name(name: &str) -> Result<Provider, UnknownProvider> {
    Provider::from_name(name).ok_or_else(|| UnknownProvider(name.into()))
}

/// Every provider's name, comma-separated.
fn provider_names() -> String {
    let names: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
    names.join(", ")
}
