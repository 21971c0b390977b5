//! What the fuzz targets share: one input format for "a delivery" (flags, path, headers, body)
//! and independent reference computations the targets check runhook against.
//!
//! # Input format
//!
//! Every target that takes a delivery reads its input as:
//!
//! ```text
//! <1 byte of flags><path>\n<name>:<value>\n<name>:<value>\n\n<body>
//! ```
//!
//! The flags byte means something different per target (see each target's docs). The head
//! (everything before the first blank line) is split on `\n`: its first line is the request
//! path, every other non-empty line a header, split at its first `:` (one space after the colon
//! is dropped; a line without a colon is a header with an empty value). Names and values may be
//! any bytes, so header maps that a real HTTP server would refuse are exercised too. Without a
//! blank line the body is empty.
//!
//! The format is text-like on purpose: seeds are written by `seed.py` from real payloads, and
//! libFuzzer's mutations (splicing, dictionary insertion) keep most of the structure.

use std::borrow::Cow;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// One delivery decoded from a fuzz input (see the [crate docs](crate)).
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// The first byte of the input: per-target switches.
    pub flags: u8,
    /// The request path (lossily decoded as UTF-8).
    pub path: String,
    /// The headers in order, names lossily decoded as UTF-8, values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body bytes.
    pub body: Cow<'a, [u8]>,
}

impl<'a> Message<'a> {
    /// Decodes `data`; `None` only for an empty input.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&flags, rest) = data.split_first()?;
        let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
            Some(at) => (&rest[..at], &rest[at + 2..]),
            None => (rest, &[][..]),
        };
        let mut lines = head.split(|&b| b == b'\n');
        let path = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
        let headers = lines
            .filter(|line| !line.is_empty())
            .map(|line| match line.iter().position(|&b| b == b':') {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    let value = value.strip_prefix(b" ").unwrap_or(value);
                    (lossy(&line[..colon]), value.to_vec())
                }
                None => (lossy(line), Vec::new()),
            })
            .collect();
        Some(Self {
            flags,
            path,
            headers,
            body: Cow::Borrowed(body),
        })
    }

    /// Whether flag bit `bit` (0 = least significant) is set.
    pub fn flag(&self, bit: u8) -> bool {
        self.flags & (1 << bit) != 0
    }

    /// Replaces every header named `name` (ASCII case-insensitively) with one `name: value`.
    pub fn set_header(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.into()));
    }

    /// The values of header `name`, in order (ASCII case-insensitive match).
    pub fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The value a scheme reads for a header that must be sent once: the value (trimmed of
    /// ASCII whitespace) when every copy of the header is byte-identical, else `None`.
    pub fn single(&self, name: &str) -> Option<&[u8]> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice());
        let first = values.next()?;
        values.all(|v| v == first).then_some(first.trim_ascii())
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// HMAC-SHA256 computed here, independently of runhook, for checking its verifiers.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_format() {
        let m = Message::parse(b"\x05/hook/a\nA: 1\nb:2\nnocolon\n\n{\"x\":1}\n\nmore").unwrap();
        assert_eq!(m.flags, 5);
        assert!(m.flag(0) && !m.flag(1) && m.flag(2));
        assert_eq!(m.path, "/hook/a");
        assert_eq!(
            m.headers,
            vec![
                ("A".to_string(), b"1".to_vec()),
                ("b".to_string(), b"2".to_vec()),
                ("nocolon".to_string(), Vec::new()),
            ]
        );
        assert_eq!(&*m.body, b"{\"x\":1}\n\nmore");
        assert!(Message::parse(b"").is_none());
        let bare = Message::parse(b"\x00").unwrap();
        assert_eq!(
            (bare.path.as_str(), bare.headers.len(), bare.body.len()),
            ("", 0, 0)
        );
    }

    #[test]
    fn single_and_set_header() {
        let mut m = Message::parse(b"\x00/\nX: a \nx: a \ny: 1\nY: 2\nz:  1\nz:1\n\n").unwrap();
        assert_eq!(m.single("x"), Some(&b"a"[..]));
        assert_eq!(m.single("y"), None);
        // Compared before trimming, as runhook does: " 1" and "1" conflict.
        assert_eq!(m.single("z"), None);
        m.set_header("y", "3");
        assert_eq!(m.single("Y"), Some(&b"3"[..]));
    }
}
