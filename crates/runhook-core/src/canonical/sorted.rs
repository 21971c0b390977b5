//! The sorted-key form: `json.dumps(json.loads(body), separators=(",", ":"), sort_keys=True)`
//! with Python's defaults otherwise (`ensure_ascii=True`), as Browser Use signs its webhooks.
//!
//! Unlike Skyvern's form, floats are not normalized (`5.0` stays `5.0`, `1e20` is `1e+20`),
//! every non-ASCII character is escaped (`\u00e9`; astral characters as a surrogate pair), a
//! lone surrogate is kept as its escape (with `ensure_ascii` Python never encodes it), and
//! each object's keys are sorted by code point with a repeated key keeping its last value.
//!
//! The document is parsed by the same scanner as Skyvern's form (Python's grammar, depth and
//! integer limits), into a small tree whose scalars are already written; objects are sorted
//! when they close.

use super::error::CanonicalError;
use super::repr::write_python_float;
use super::scan::{parse, FloatLiteral, Sink, Str, Word};

/// A value whose scalars are written: a span of [`Builder::leaves`], or a container.
enum Node {
    /// `leaves[start..end]`.
    Leaf { start: usize, end: usize },
    /// An array's elements in order.
    Array(Vec<Node>),
    /// An object's members, sorted by key and without repeats once the object is closed.
    Object(Vec<Member>),
}

/// One object member: its key's code points (lone surrogates included) and its value.
struct Member {
    key: Vec<u32>,
    value: Node,
}

/// An open container and, for an object, the key waiting for its value.
enum Open {
    Array(Vec<Node>),
    Object {
        members: Vec<Member>,
        key: Option<Vec<u32>>,
    },
}

struct Builder {
    /// Every scalar's output, back to back.
    leaves: Vec<u8>,
    stack: Vec<Open>,
    root: Option<Node>,
    /// An upper bound of the output's length so far.
    size: usize,
    max_len: usize,
}

impl Builder {
    fn push(&mut self, node: Node) {
        self.size = self.size.saturating_add(1);
        match self.stack.last_mut() {
            Some(Open::Array(items)) => items.push(node),
            Some(Open::Object { members, key }) => {
                let key = key.take().unwrap_or_default();
                members.push(Member { key, value: node });
            }
            None => self.root = Some(node),
        }
    }

    fn leaf(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.leaves.len();
        write(&mut self.leaves);
        let end = self.leaves.len();
        self.size = self.size.saturating_add(end - start);
        self.push(Node::Leaf { start, end });
    }
}

impl Sink for Builder {
    fn begin(&mut self, object: bool, _offset: usize) {
        self.size = self.size.saturating_add(2);
        self.stack.push(if object {
            Open::Object {
                members: Vec::new(),
                key: None,
            }
        } else {
            Open::Array(Vec::new())
        });
    }

    fn separator(&mut self, _object: bool) {}

    fn end(&mut self, _object: bool, _offset: usize) {
        let node = match self.stack.pop() {
            Some(Open::Array(items)) => Node::Array(items),
            Some(Open::Object { mut members, .. }) => {
                // Stable: repeats of a key stay in input order, and the last one is kept.
                members.sort_by(|a, b| a.key.cmp(&b.key));
                let mut kept: Vec<Member> = Vec::with_capacity(members.len());
                for member in members {
                    match kept.last_mut() {
                        Some(last) if last.key == member.key => *last = member,
                        _ => kept.push(member),
                    }
                }
                Node::Object(kept)
            }
            None => return,
        };
        // `push` counts a value once; the brackets were counted when it opened.
        self.size = self.size.saturating_sub(1);
        self.push(node);
    }

    fn key(&mut self, key: Str<'_>) {
        let code_points = decode(key);
        // Quotes, colon, and at most six bytes per code point.
        self.size = self
            .size
            .saturating_add(3 + 6 * code_points.len().min(usize::MAX / 8));
        if let Some(Open::Object { key, .. }) = self.stack.last_mut() {
            *key = Some(code_points);
        }
    }

    fn string(&mut self, value: Str<'_>) {
        let code_points = decode(value);
        self.leaf(|out| write_string(&code_points, out));
    }

    fn integer(&mut self, literal: &[u8], _offset: usize) {
        // Python's int drops the sign of zero; the grammar allows no other respelling.
        let literal: &[u8] = if literal == b"-0" { b"0" } else { literal };
        self.leaf(|out| out.extend_from_slice(literal));
    }

    fn float(&mut self, literal: FloatLiteral<'_>) {
        // Checked against the JSON grammar by the scanner; Rust's parser rounds correctly,
        // as Python's does, and overflows to infinity as `float()` does.
        let value = std::str::from_utf8(literal.text)
            .ok()
            .and_then(|text| text.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        self.leaf(|out| write_python_float(value, out));
    }

    fn word(&mut self, word: Word) {
        self.leaf(|out| out.extend_from_slice(word.as_str().as_bytes()));
    }

    fn check(&mut self, offset: usize) -> Result<(), CanonicalError> {
        if self.size > self.max_len {
            return Err(CanonicalError::OutputTooLong {
                offset,
                max: self.max_len,
            });
        }
        Ok(())
    }
}

/// Where the sorted form is written: a buffer, or straight into a signature's MACs (so that
/// checking a signature allocates no copy of the output).
pub(crate) trait Out {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// The sorted-key form of `input`, or Python's refusal; at most about `max_len` bytes of
/// output are built (the bound is checked between tokens). Nothing is written to `out` unless
/// the whole input parses.
pub(super) fn write_sorted(
    input: &[u8],
    out: &mut impl Out,
    max_len: usize,
) -> Result<(), CanonicalError> {
    let mut builder = Builder {
        leaves: Vec::with_capacity(input.len()),
        stack: Vec::new(),
        root: None,
        size: 0,
        max_len,
    };
    parse(input, &mut builder)?;
    if builder.size > max_len {
        return Err(CanonicalError::OutputTooLong {
            offset: input.len(),
            max: max_len,
        });
    }
    if let Some(root) = &builder.root {
        write_node(root, &builder.leaves, out);
    }
    Ok(())
}

/// Writes `node`; recursion is bounded by the scanner's depth limit.
fn write_node(node: &Node, leaves: &[u8], out: &mut impl Out) {
    match node {
        Node::Leaf { start, end } => out.put(&leaves[*start..*end]),
        Node::Array(items) => {
            out.put(b"[");
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.put(b",");
                }
                write_node(item, leaves, out);
            }
            out.put(b"]");
        }
        Node::Object(members) => {
            out.put(b"{");
            for (n, member) in members.iter().enumerate() {
                if n > 0 {
                    out.put(b",");
                }
                write_string(&member.key, out);
                out.put(b":");
                write_node(&member.value, leaves, out);
            }
            out.put(b"}");
        }
    }
}

/// The code points of a string as Python's `json.loads` decodes it: escapes decoded, a
/// `\uD8xx\uDCxx` pair joined, a lone surrogate kept as itself.
fn decode(s: Str<'_>) -> Vec<u32> {
    let text = String::from_utf8_lossy(s.raw);
    if !s.escaped {
        return text.chars().map(u32::from).collect();
    }
    let mut code_points = Vec::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            code_points.push(u32::from(c));
            continue;
        }
        let code = match chars.next() {
            Some('b') => 0x08,
            Some('f') => 0x0c,
            Some('n') => 0x0a,
            Some('r') => 0x0d,
            Some('t') => 0x09,
            Some('u') => hex4(&mut chars),
            Some(other) => u32::from(other),
            None => break,
        };
        if (0xd800..0xdc00).contains(&code) {
            // A high surrogate joins a `\u` low surrogate right after it.
            let mut ahead = chars.clone();
            if ahead.next() == Some('\\') && ahead.next() == Some('u') {
                let low = hex4(&mut ahead);
                if (0xdc00..0xe000).contains(&low) {
                    code_points.push(0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00));
                    chars = ahead;
                    continue;
                }
            }
        }
        code_points.push(code);
    }
    code_points
}

/// Four hex digits (checked by the scanner).
fn hex4(chars: &mut impl Iterator<Item = char>) -> u32 {
    (0..4).fold(0, |acc, _| {
        (acc << 4) | chars.next().and_then(|c| c.to_digit(16)).unwrap_or(0)
    })
}

/// Writes a string as `json.dumps` does with `ensure_ascii=True`.
fn write_string(code_points: &[u32], out: &mut impl Out) {
    out.put(b"\"");
    for &code in code_points {
        match code {
            0x22 => out.put(b"\\\""),
            0x5c => out.put(b"\\\\"),
            0x0a => out.put(b"\\n"),
            0x0d => out.put(b"\\r"),
            0x09 => out.put(b"\\t"),
            0x08 => out.put(b"\\b"),
            0x0c => out.put(b"\\f"),
            0x20..=0x7e => out.put(&[code as u8]),
            0x10000.. => {
                let v = code - 0x10000;
                write_escape(0xd800 | (v >> 10), out);
                write_escape(0xdc00 | (v & 0x3ff), out);
            }
            _ => write_escape(code, out),
        }
    }
    out.put(b"\"");
}

/// `\uxxxx`, lowercase.
fn write_escape(unit: u32, out: &mut impl Out) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut escape = *b"\\u0000";
    for (digit, shift) in escape[2..].iter_mut().zip([12, 8, 4, 0]) {
        *digit = HEX[((unit >> shift) & 0xf) as usize];
    }
    out.put(&escape);
}
