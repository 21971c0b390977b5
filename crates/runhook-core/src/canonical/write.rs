//! The canonical writer: consumes tokens and writes Skyvern's bytes as it goes.
//!
//! Output is produced in one pass, without building a tree. Each open object remembers where
//! its members' keys and values sit in the output; only when an object turns out to repeat a
//! key is its region rewritten (first key's position, last value), at its closing brace.
//!
//! A lone surrogate is written in its generalized UTF-8 form (three bytes `ED A0..BF xx`, which
//! never occur in UTF-8) so that keys still compare correctly, and remembered; if one survives
//! to the end of the document (it may sit in a value that a repeated key replaces), the
//! document is rejected, as Python's `str.encode("utf-8")` would.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use super::error::CanonicalError;
use super::number::write_float_literal;
use super::scan::{Scanner, Str, Token};

/// Objects with this many members switch from a linear key search to a hash index.
const INDEX_THRESHOLD: usize = 24;
/// "No member" in a hash chain.
const NONE: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Member {
    key_start: usize,
    key_end: usize,
    value_start: usize,
    value_end: usize,
    /// The previous member of the same object whose key has the same hash.
    next_same_hash: usize,
}

#[derive(Debug)]
struct Frame {
    object: bool,
    /// No element or member written yet.
    first: bool,
    /// Output offset of the opening bracket.
    start: usize,
    /// Index of this object's first member in `Writer::members`.
    members_base: usize,
    /// Length of `Writer::surrogates` when the object opened.
    surrogates_base: usize,
    /// The member whose value is being written.
    current: usize,
    /// Output offset where the current member's value starts.
    value_start: usize,
    /// A key was repeated: the region must be rewritten at the closing brace.
    duplicate: bool,
    /// Key hash to the latest member with that hash, once the object is large.
    index: Option<HashMap<u64, usize>>,
}

#[derive(Debug, Clone, Copy)]
struct Surrogate {
    /// Input offset of the escape.
    offset: usize,
    code: u16,
    /// Output offset of its three bytes.
    at: usize,
}

pub(crate) struct Writer<'o> {
    out: &'o mut Vec<u8>,
    frames: Vec<Frame>,
    members: Vec<Member>,
    surrogates: Vec<Surrogate>,
    hasher: Option<RandomState>,
}

/// Canonicalizes `text` (already known to be UTF-8), appending to `out`.
pub(crate) fn write_canonical(text: &str, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    let mut scanner = Scanner::new(text);
    let mut writer = Writer {
        out,
        frames: Vec::new(),
        members: Vec::new(),
        surrogates: Vec::new(),
        hasher: None,
    };
    while let Some(token) = scanner.next_token()? {
        writer.token(token);
    }
    match writer.surrogates.iter().min_by_key(|s| s.offset) {
        Some(s) => Err(CanonicalError::LoneSurrogate {
            offset: s.offset,
            code: s.code,
        }),
        None => Ok(()),
    }
}

impl Writer<'_> {
    #[inline]
    fn token(&mut self, token: Token<'_>) {
        match token {
            Token::BeginObject => self.open(true, b'{'),
            Token::BeginArray => self.open(false, b'['),
            Token::EndArray => {
                self.out.push(b']');
                self.frames.pop();
                self.after_value();
            }
            Token::EndObject => {
                if let Some(frame) = self.frames.pop() {
                    if frame.duplicate {
                        self.rewrite(&frame);
                    } else {
                        self.out.push(b'}');
                    }
                    self.members.truncate(frame.members_base);
                }
                self.after_value();
            }
            Token::Key(key) => self.key(key),
            Token::String(s) => {
                self.before_value();
                self.string(s);
                self.after_value();
            }
            Token::Integer(literal) => {
                self.before_value();
                // No leading zeros are possible, so only `-0` has another spelling.
                let literal = if literal == "-0" { "0" } else { literal };
                self.out.extend_from_slice(literal.as_bytes());
                self.after_value();
            }
            Token::Float(literal) => {
                self.before_value();
                write_float_literal(literal, self.out);
                self.after_value();
            }
            Token::True => self.word(b"true"),
            Token::False => self.word(b"false"),
            Token::Null => self.word(b"null"),
            Token::NaN => self.word(b"NaN"),
            Token::Infinity => self.word(b"Infinity"),
            Token::NegInfinity => self.word(b"-Infinity"),
        }
    }

    fn word(&mut self, word: &[u8]) {
        self.before_value();
        self.out.extend_from_slice(word);
        self.after_value();
    }

    fn open(&mut self, object: bool, bracket: u8) {
        self.before_value();
        self.frames.push(Frame {
            object,
            first: true,
            start: self.out.len(),
            members_base: self.members.len(),
            surrogates_base: self.surrogates.len(),
            current: NONE,
            value_start: 0,
            duplicate: false,
            index: None,
        });
        self.out.push(bracket);
    }

    /// Writes the separator before an array element.
    #[inline]
    fn before_value(&mut self) {
        if let Some(frame) = self.frames.last_mut() {
            if !frame.object {
                if !frame.first {
                    self.out.push(b',');
                }
                frame.first = false;
            }
        }
    }

    /// Records where an object member's value ended.
    #[inline]
    fn after_value(&mut self) {
        if let Some(frame) = self.frames.last() {
            if frame.object {
                if let Some(member) = self.members.get_mut(frame.current) {
                    member.value_start = frame.value_start;
                    member.value_end = self.out.len();
                }
            }
        }
    }

    fn key(&mut self, key: Str<'_>) {
        let Some(frame) = self.frames.last_mut() else {
            return;
        };
        if !frame.first {
            self.out.push(b',');
        }
        frame.first = false;
        let key_start = self.out.len();
        self.string(key);
        let key_end = self.out.len();
        self.out.push(b':');
        let value_start = self.out.len();
        let current = self.find_or_add_member(key_start, key_end);
        if let Some(frame) = self.frames.last_mut() {
            frame.current = current;
            frame.value_start = value_start;
        }
    }

    /// The member of the innermost object with the key at `out[key_start..key_end]`: an
    /// earlier one with an equal key (marking the object as repeating a key), or a new one.
    fn find_or_add_member(&mut self, key_start: usize, key_end: usize) -> usize {
        let Some(frame) = self.frames.last_mut() else {
            return NONE;
        };
        let base = frame.members_base;
        let key = &self.out[key_start..key_end];
        let same = |m: &Member| self.out.get(m.key_start..m.key_end) == Some(key);
        let new_index = self.members.len();
        let mut hash = 0;
        if frame.index.is_none() && new_index - base < INDEX_THRESHOLD {
            if let Some(found) = self.members[base..].iter().position(same) {
                frame.duplicate = true;
                return base + found;
            }
        } else {
            let hasher = self.hasher.get_or_insert_with(RandomState::new);
            let index = frame.index.get_or_insert_with(|| {
                let mut index = HashMap::with_capacity(2 * INDEX_THRESHOLD);
                for (i, m) in self.members.iter_mut().enumerate().skip(base) {
                    let h = hasher.hash_one(&self.out[m.key_start..m.key_end]);
                    m.next_same_hash = index.insert(h, i).unwrap_or(NONE);
                }
                index
            });
            hash = hasher.hash_one(key);
            let mut at = index.get(&hash).copied().unwrap_or(NONE);
            while let Some(m) = self.members.get(at) {
                if same(m) {
                    frame.duplicate = true;
                    return at;
                }
                at = m.next_same_hash;
            }
        }
        let next_same_hash = match frame.index.as_mut() {
            Some(index) => index.insert(hash, new_index).unwrap_or(NONE),
            None => NONE,
        };
        self.members.push(Member {
            key_start,
            key_end,
            value_start: key_end + 1,
            value_end: key_end + 1,
            next_same_hash,
        });
        new_index
    }

    /// Rewrites the object that opened at `frame.start`: each key once, where it first
    /// appeared, with its last value.
    fn rewrite(&mut self, frame: &Frame) {
        let members = &self.members[frame.members_base..];
        let mut region = Vec::with_capacity(self.out.len() - frame.start + 1);
        // (old start, old end, new start) of every piece that is kept.
        let mut moves = Vec::new();
        region.push(b'{');
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                region.push(b',');
            }
            moves.push((m.key_start, m.key_end, frame.start + region.len()));
            region.extend_from_slice(&self.out[m.key_start..m.key_end]);
            region.push(b':');
            moves.push((m.value_start, m.value_end, frame.start + region.len()));
            region.extend_from_slice(&self.out[m.value_start..m.value_end]);
        }
        region.push(b'}');
        self.out.truncate(frame.start);
        self.out.extend_from_slice(&region);

        // Lone surrogates written inside this object: keep those in kept pieces, at their new
        // place; forget those in replaced values and repeated keys.
        if self.surrogates.len() > frame.surrogates_base {
            moves.sort_unstable();
            let inside = self.surrogates.split_off(frame.surrogates_base);
            for mut s in inside {
                let after = moves.partition_point(|&(start, _, _)| start <= s.at);
                if let Some(&(start, end, to)) = after.checked_sub(1).and_then(|i| moves.get(i)) {
                    if s.at < end {
                        s.at = to + (s.at - start);
                        self.surrogates.push(s);
                    }
                }
            }
        }
    }

    /// Writes a string, quoted and escaped as Python's `json.dumps(..., ensure_ascii=False)`.
    #[inline]
    fn string(&mut self, s: Str<'_>) {
        self.out.push(b'"');
        if s.escaped {
            self.transcode(s);
        } else {
            // Without escapes the raw text holds no `"`, `\` or control character: it is
            // already in canonical form.
            self.out.extend_from_slice(s.raw.as_bytes());
        }
        self.out.push(b'"');
    }

    fn transcode(&mut self, s: Str<'_>) {
        let raw = s.raw.as_bytes();
        let mut i = 0;
        let mut run = 0;
        while let Some(pos) = raw[i..].iter().position(|&b| b == b'\\') {
            let backslash = i + pos;
            self.out.extend_from_slice(&raw[run..backslash]);
            let escape = raw.get(backslash + 1).copied().unwrap_or(b'\\');
            i = backslash + 2;
            match escape {
                b'"' => self.out.extend_from_slice(b"\\\""),
                b'\\' => self.out.extend_from_slice(b"\\\\"),
                b'/' => self.out.push(b'/'),
                b'b' => self.out.extend_from_slice(b"\\b"),
                b'f' => self.out.extend_from_slice(b"\\f"),
                b'n' => self.out.extend_from_slice(b"\\n"),
                b'r' => self.out.extend_from_slice(b"\\r"),
                b't' => self.out.extend_from_slice(b"\\t"),
                _ => {
                    let mut code = hex4(raw.get(i..i + 4));
                    i += 4;
                    if (0xd800..0xdc00).contains(&code) && raw.get(i..i + 2) == Some(b"\\u") {
                        let low = hex4(raw.get(i + 2..i + 6));
                        if (0xdc00..0xe000).contains(&low) {
                            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                            i += 6;
                        }
                    }
                    self.code_point(code, s.offset + backslash);
                }
            }
            run = i;
        }
        self.out.extend_from_slice(&raw[run.min(raw.len())..]);
    }

    /// Writes one decoded `\uXXXX` code point.
    fn code_point(&mut self, code: u32, offset: usize) {
        match code {
            0x08 => self.out.extend_from_slice(b"\\b"),
            0x09 => self.out.extend_from_slice(b"\\t"),
            0x0a => self.out.extend_from_slice(b"\\n"),
            0x0c => self.out.extend_from_slice(b"\\f"),
            0x0d => self.out.extend_from_slice(b"\\r"),
            0x00..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                self.out.extend_from_slice(b"\\u00");
                self.out.push(HEX[(code >> 4) as usize]);
                self.out.push(HEX[(code & 0xf) as usize]);
            }
            0x22 => self.out.extend_from_slice(b"\\\""),
            0x5c => self.out.extend_from_slice(b"\\\\"),
            0xd800..=0xdfff => {
                self.surrogates.push(Surrogate {
                    offset,
                    code: code as u16,
                    at: self.out.len(),
                });
                self.out.extend_from_slice(&[
                    0xe0 | (code >> 12) as u8,
                    0x80 | ((code >> 6) & 0x3f) as u8,
                    0x80 | (code & 0x3f) as u8,
                ]);
            }
            _ => {
                let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut utf8 = [0u8; 4];
                self.out
                    .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
}

/// The value of four hex digits (already validated by the scanner).
fn hex4(digits: Option<&[u8]>) -> u32 {
    digits.map_or(0xfffd, |digits| {
        digits.iter().fold(0, |acc, &d| {
            let value = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => 0,
            };
            (acc << 4) | u32::from(value)
        })
    })
}
