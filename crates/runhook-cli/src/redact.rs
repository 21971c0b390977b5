//! URLs as logs and error messages may show them: without the credentials they can carry.

/// `url` without its user, password, path and query: `scheme://***@host:port` when it carried
/// credentials, `scheme://host:port` otherwise. A password may hold `@`, `/` or `:` unencoded,
/// so the host is what follows the **last** `@`. Text that is not a URL (`memory`) is shown as
/// it is.
pub fn url_label(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (credentials, after) = match rest.rsplit_once('@') {
        Some((_, after)) => ("***@", after),
        None => ("", rest),
    };
    let host = after.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{credentials}{host}")
}

#[cfg(test)]
mod tests {
    use super::url_label;

    #[test]
    fn credentials_never_show_whatever_they_hold() {
        let cases = [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379"),
            ("redis://:s3cret@h:6395", "redis://***@h:6395"),
            (
                "redis://user:p@ssw0rdTAIL@127.0.0.1:6395/2",
                "redis://***@127.0.0.1:6395",
            ),
            ("rediss://u:pa/ss@host:1", "rediss://***@host:1"),
            ("redis://h:1/?password=x", "redis://h:1"),
            ("memory", "memory"),
        ];
        for (url, label) in cases {
            assert_eq!(url_label(url), label, "{url}");
            assert!(!url_label(url).contains("TAIL"));
        }
    }
}
