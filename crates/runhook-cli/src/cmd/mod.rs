//! One module per subcommand.

pub mod canonicalize;
pub mod dead_letters;
pub mod demo;
pub mod expect;
pub mod input;
pub mod parse;
pub mod secrets;
pub mod send;
pub mod serve;
pub mod sign;
pub mod verify;

use runhook::payload::Provider;

/// Parses a provider name as [`Provider::as_str`] spells it, listing the names when it is not
/// one (for clap's `value_parser` and for config files).
pub fn provider_name(name: &str) -> Result<Provider, String> {
    Provider::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
        format!("unknown provider `{name}`; one of: {}", names.join(", "))
    })
}
