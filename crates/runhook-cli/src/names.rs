//! Names given on the command line or in `runhook.toml`, parsed for the commands and for
//! `serve`'s configuration alike.

use runhook::payload::Provider;

/// Parses a provider name as [`Provider::as_str`] spells it, listing the names when it is not
/// one (for clap's `value_parser` and for config files).
pub fn provider_name(name: &str) -> Result<Provider, String> {
    Provider::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
        format!("unknown provider `{name}`; one of: {}", names.join(", "))
    })
}
