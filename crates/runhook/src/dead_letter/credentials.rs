//! What is never kept with a delivery: the headers that carry credentials.

use runhook_core::HeaderLookup;

/// Headers whose values are credentials and are never written to a dead letter or a stream
/// entry, whatever the route's scheme (the scheme adds its own header names).
pub(crate) fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "authorization"
        || name == "cookie"
        || name == "set-cookie"
        || name == "proxy-authorization"
        || name.contains("signature")
        || name.contains("token")
        || name.contains("secret")
        || name.contains("api-key")
}

/// The headers worth keeping with a dead letter or a queued delivery: all but credentials
/// (the fixed list above and the route's own `credential_headers`, lowercase).
pub(crate) fn kept_headers(
    headers: &dyn HeaderLookup,
    credential_headers: &[String],
) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    headers.visit_all(&mut |name, value| {
        let credential = is_credential_header(name)
            || credential_headers
                .iter()
                .any(|c| c.eq_ignore_ascii_case(name));
        if !credential {
            kept.push((
                name.to_string(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        }
    });
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_headers_are_recognised() {
        for name in [
            "Authorization",
            "cookie",
            "Set-Cookie",
            "x-skyvern-signature",
            "webhook-signature",
            "x-api-key",
        ] {
            assert!(is_credential_header(name), "{name}");
        }
        assert!(!is_credential_header("content-type"));
    }
}
