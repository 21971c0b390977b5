//! Header lookup without copying: `http::HeaderMap` (axum, hyper, reqwest) and plain lists of
//! pairs plug in here; other maps (actix-web's) implement [`HeaderLookup`] in a few lines.

use std::borrow::Cow;
use std::ops::ControlFlow;

use crate::error::AuthError;

/// Read access to a request's headers, by name, matched ASCII case-insensitively.
///
/// The trait is object-safe, so a [`crate::Delivery`] holds `&dyn HeaderLookup` and every scheme
/// works with every framework's map, borrowing the values in place.
pub trait HeaderLookup {
    /// Calls `visit` with each value of the header `name`, in the order received, until `visit`
    /// returns [`ControlFlow::Break`]. `name` is lowercase; implementations match it
    /// ASCII case-insensitively.
    fn visit_values<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> ControlFlow<()>);

    /// Calls `visit` with every header's name and value, in order. Used to keep a delivery
    /// whole (e.g. in a dead letter); the default sees no headers.
    fn visit_all(&self, visit: &mut dyn FnMut(&str, &[u8])) {
        let _ = visit;
    }
}

impl HeaderLookup for http::HeaderMap {
    fn visit_values<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> ControlFlow<()>) {
        // `HeaderMap` stores names lowercase and lowercases a `&str` key, so this is
        // case-insensitive; an invalid name simply finds nothing.
        for value in self.get_all(name) {
            if visit(value.as_bytes()).is_break() {
                return;
            }
        }
    }

    fn visit_all(&self, visit: &mut dyn FnMut(&str, &[u8])) {
        for (name, value) in self {
            visit(name.as_str(), value.as_bytes());
        }
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> HeaderLookup for [(K, V)] {
    fn visit_values<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> ControlFlow<()>) {
        for (key, value) in self {
            if key.as_ref().eq_ignore_ascii_case(name) && visit(value.as_ref()).is_break() {
                return;
            }
        }
    }

    fn visit_all(&self, visit: &mut dyn FnMut(&str, &[u8])) {
        for (key, value) in self {
            visit(key.as_ref(), value.as_ref());
        }
    }
}

impl<T: HeaderLookup + ?Sized> HeaderLookup for &T {
    fn visit_values<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> ControlFlow<()>) {
        (**self).visit_values(name, visit);
    }

    fn visit_all(&self, visit: &mut dyn FnMut(&str, &[u8])) {
        (**self).visit_all(visit);
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> HeaderLookup for Vec<(K, V)> {
    fn visit_values<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> ControlFlow<()>) {
        self.as_slice().visit_values(name, visit);
    }

    fn visit_all(&self, visit: &mut dyn FnMut(&str, &[u8])) {
        self.as_slice().visit_all(visit);
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>, const N: usize> HeaderLookup for [(K, V); N] {
    fn visit_values<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> ControlFlow<()>) {
        self.as_slice().visit_values(name, visit);
    }

    fn visit_all(&self, visit: &mut dyn FnMut(&str, &[u8])) {
        self.as_slice().visit_all(visit);
    }
}

/// What one header looks like on a request, for schemes that need exactly one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingleHeader<'a> {
    /// Not sent.
    Missing,
    /// Sent once, or several times with byte-identical values.
    One(&'a [u8]),
    /// Sent several times with different values.
    Conflicting,
}

/// Looks up `name` and classifies it as missing, one value, or conflicting values.
pub fn single_header<'a>(headers: &'a dyn HeaderLookup, name: &str) -> SingleHeader<'a> {
    let mut found = SingleHeader::Missing;
    headers.visit_values(name, &mut |value| match found {
        SingleHeader::Missing => {
            found = SingleHeader::One(value);
            ControlFlow::Continue(())
        }
        SingleHeader::One(first) if first == value => ControlFlow::Continue(()),
        _ => {
            found = SingleHeader::Conflicting;
            ControlFlow::Break(())
        }
    });
    found
}

/// The single, non-empty value of a required header with optional whitespace trimmed, or the
/// typed rejection for a missing, empty or conflicting header.
// Takes `&Cow` rather than `&str` so that a rejection can keep the name without allocating.
#[allow(clippy::ptr_arg)]
pub(crate) fn required_header<'a>(
    headers: &'a dyn HeaderLookup,
    name: &Cow<'static, str>,
) -> Result<&'a [u8], AuthError> {
    match single_header(headers, name) {
        SingleHeader::Missing => Err(AuthError::MissingHeader { name: name.clone() }),
        SingleHeader::Conflicting => Err(AuthError::ConflictingHeaders { name: name.clone() }),
        SingleHeader::One(value) => {
            let value = value.trim_ascii();
            if value.is_empty() {
                Err(AuthError::EmptyHeader { name: name.clone() })
            } else {
                Ok(value)
            }
        }
    }
}

/// [`required_header`] for a value that must be visible ASCII (signatures, ids, timestamps).
// Takes `&Cow` rather than `&str` so that a rejection can keep the name without allocating.
#[allow(clippy::ptr_arg)]
pub(crate) fn required_ascii_header<'a>(
    headers: &'a dyn HeaderLookup,
    name: &Cow<'static, str>,
) -> Result<&'a str, AuthError> {
    let value = required_header(headers, name)?;
    if !value.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return Err(AuthError::MalformedHeader {
            name: name.clone(),
            reason: "contains bytes that are not printable ASCII".into(),
        });
    }
    // Printable ASCII is valid UTF-8.
    Ok(std::str::from_utf8(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_map_lookup_is_case_insensitive_and_sees_every_value() {
        let mut map = http::HeaderMap::new();
        map.append("X-Skyvern-Signature", "a".parse().unwrap());
        map.append("x-skyvern-signature", "b".parse().unwrap());
        let mut seen = Vec::new();
        map.visit_values("x-skyvern-signature", &mut |v| {
            seen.push(v.to_vec());
            ControlFlow::Continue(())
        });
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(
            single_header(&map, "x-skyvern-signature"),
            SingleHeader::Conflicting
        );
    }

    #[test]
    fn visit_all_sees_every_header() {
        let mut map = http::HeaderMap::new();
        map.append("a", "1".parse().unwrap());
        map.append("b", "2".parse().unwrap());
        let pairs = vec![("a", "1"), ("b", "2")];
        for headers in [&map as &dyn HeaderLookup, &pairs] {
            let mut seen = Vec::new();
            headers.visit_all(&mut |n, v| seen.push((n.to_string(), v.to_vec())));
            assert_eq!(
                seen,
                vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]
            );
        }
    }

    #[test]
    fn pair_lists_match_names_case_insensitively() {
        let pairs = [("AUTHORIZATION", "Bearer x"), ("Other", "y")];
        assert_eq!(
            single_header(&pairs, "authorization"),
            SingleHeader::One(b"Bearer x")
        );
        assert_eq!(single_header(&pairs, "missing"), SingleHeader::Missing);
    }

    #[test]
    fn identical_repeats_are_one_value() {
        let pairs = vec![("a", "1"), ("A", "1")];
        assert_eq!(single_header(&pairs, "a"), SingleHeader::One(b"1"));
    }

    #[test]
    fn required_header_trims_and_rejects_empty() {
        let name: Cow<'static, str> = "x".into();
        let pairs = [("x", "  ")];
        assert_eq!(
            required_header(&pairs, &name),
            Err(AuthError::EmptyHeader { name: name.clone() })
        );
        let pairs = [("x", " v\t")];
        assert_eq!(required_header(&pairs, &name), Ok(&b"v"[..]));
        let pairs = [("x", "caf\u{e9}")];
        assert!(matches!(
            required_ascii_header(&pairs, &name),
            Err(AuthError::MalformedHeader { .. })
        ));
    }
}
