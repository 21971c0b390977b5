//! What may be said about the forward target: its origin (`scheme://host:port`), never the
//! path or query, which may carry a secret; and errors with their causes, without the URL.

use std::fmt;

/// Why a text is not a URL (the `url` crate's error, as reqwest re-exports its `Url` only).
type UrlParseError = <reqwest::Url as std::str::FromStr>::Err;

/// Why a `--forward` URL cannot be used; never repeating the URL (its path or query may hold
/// a secret).
#[derive(Debug, thiserror::Error)]
pub enum ForwardUrlError {
    /// It does not parse.
    #[error("--forward: not a URL: {0}")]
    NotAUrl(UrlParseError),
    /// Its scheme is neither `http` nor `https`.
    #[error("--forward: a {0}:// URL; only http:// and https:// are forwarded to")]
    Scheme(String),
    /// It names no host.
    #[error("--forward: the URL has no host")]
    NoHost,
}

/// The URL `--forward` names. Its `Debug` and `Display` show only the origin.
#[derive(Clone, PartialEq, Eq)]
pub struct ForwardUrl(reqwest::Url);

impl ForwardUrl {
    /// Reads `text` as an `http://` or `https://` URL with a host. The error never repeats the
    /// text (its path or query may hold a secret).
    pub fn parse(text: &str) -> Result<Self, ForwardUrlError> {
        let url = reqwest::Url::parse(text).map_err(ForwardUrlError::NotAUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ForwardUrlError::Scheme(url.scheme().into()));
        }
        if url.host_str().is_none() {
            return Err(ForwardUrlError::NoHost);
        }
        Ok(Self(url))
    }

    /// The URL itself, to send requests to (never to print).
    pub fn url(&self) -> &reqwest::Url {
        &self.0
    }

    /// `scheme://host:port`, what logs and errors may show.
    pub fn origin(&self) -> String {
        let url = &self.0;
        let host = url.host_str().unwrap_or("?");
        match url.port_or_known_default() {
            Some(port) => format!("{}://{host}:{port}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        }
    }
}

impl fmt::Debug for ForwardUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ForwardUrl({}/…)", self.origin())
    }
}

impl fmt::Display for ForwardUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/…", self.origin())
    }
}

/// `error` and its causes, `: `-separated, without the URL reqwest attaches to its own errors
/// (the causes, from hyper and rustls, carry none).
pub fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        // hyper repeats its cause in its own message at times.
        if !text.ends_with(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_origin_is_shown() {
        let url =
            ForwardUrl::parse("https://user:pw@hooks.example.com/in/s3cr3t?token=abc").unwrap();
        assert_eq!(url.origin(), "https://hooks.example.com:443");
        for shown in [format!("{url}"), format!("{url:?}")] {
            assert!(
                !shown.contains("s3cr3t") && !shown.contains("abc") && !shown.contains("pw"),
                "{shown}"
            );
        }
        let url = ForwardUrl::parse("http://[::1]:8081/x").unwrap();
        assert_eq!(url.origin(), "http://[::1]:8081");
    }

    #[test]
    fn parse_errors_do_not_repeat_the_url() {
        for text in [
            "ftp://host/s3cr3t",
            "not a url s3cr3t",
            "http://[bad/s3cr3t",
            "unix:/s3cr3t",
        ] {
            let error = ForwardUrl::parse(text).unwrap_err().to_string();
            assert!(!error.contains("s3cr3t"), "{error}");
        }
    }
}
