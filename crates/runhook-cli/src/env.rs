//! Secrets come from named environment variables only, never from argv (which `ps` shows):
//! shared by the commands and by `serve`'s routes.

use runhook_core::{Secret, Secrets};

/// A secret read from the environment variable `var`, with the message to print when it is
/// unset, not UTF-8, empty or whitespace-only.
pub fn secret(var: &str) -> Result<Secret, String> {
    let value =
        std::env::var_os(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
    let value = value
        .into_string()
        .map_err(|_| format!("environment variable {var} is not valid UTF-8"))?;
    Secret::new(value).map_err(|e| format!("environment variable {var}: {e}"))
}

/// Every secret named by `vars`, in order.
pub fn secrets(vars: &[String]) -> Result<Secrets, String> {
    let secrets = vars
        .iter()
        .map(|v| secret(v))
        .collect::<Result<Vec<_>, _>>()?;
    Secrets::new(secrets).map_err(|e| e.to_string())
}
