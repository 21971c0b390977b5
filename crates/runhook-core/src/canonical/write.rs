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
use super::scan::{parse, Sink, Str, Word};

/// Objects with this many members switch from a linear key search to a hash index.
const INDEX_THRESHOLD: usize = 32;
/// "No member" in a hash chain.
const NONE: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Member {
    key_start: usize,
    key_end: usize,
    value_start: usize,
    value_end: usize,
    /// [`fingerprint`] of the key, to skip most key comparisons in small objects.
    fingerprint: u64,
    /// The previous member of the same object whose key has the same hash.
    next_same_hash: usize,
}

/// An open object.
#[derive(Debug)]
struct Frame {
    /// Output offset of the opening brace.
    start: usize,
    /// Index of this object's first member in `Writer::members`.
    members_base: usize,
    /// Length of `Writer::surrogates` when the object opened.
    surrogates_base: usize,
    /// The member whose value is being written.
    current: usize,
    /// A key was repeated: the region must be rewritten at the closing brace.
    duplicate: bool,
    /// One bit per key seen, chosen by its fingerprint: a clear bit proves a key new.
    filter: u128,
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

struct Writer<'o> {
    out: &'o mut Vec<u8>,
    /// The open objects, innermost last (arrays need no state).
    frames: Vec<Frame>,
    members: Vec<Member>,
    surrogates: Vec<Surrogate>,
    hasher: Option<RandomState>,
}

/// Canonicalizes `input`, appending to `out` (see [`parse`] about UTF-8 errors).
pub(crate) fn write_canonical(input: &[u8], out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    let mut writer = Writer {
        out,
        frames: Vec::new(),
        members: Vec::new(),
        surrogates: Vec::new(),
        hasher: None,
    };
    parse(input, &mut writer)?;
    match writer.surrogates.iter().min_by_key(|s| s.offset) {
        Some(s) => Err(CanonicalError::LoneSurrogate {
            offset: s.offset,
            code: s.code,
        }),
        None => Ok(()),
    }
}

impl Sink for Writer<'_> {
    #[inline]
    fn begin(&mut self, object: bool) {
        if object {
            self.frames.push(Frame {
                start: self.out.len(),
                members_base: self.members.len(),
                surrogates_base: self.surrogates.len(),
                current: NONE,
                duplicate: false,
                filter: 0,
                index: None,
            });
            self.out.push(b'{');
        } else {
            self.out.push(b'[');
        }
    }

    #[inline]
    fn separator(&mut self, object: bool) {
        if object {
            self.value_done();
        }
        self.out.push(b',');
    }

    #[inline]
    fn end(&mut self, object: bool) {
        if !object {
            self.out.push(b']');
            return;
        }
        self.value_done();
        if let Some(frame) = self.frames.pop() {
            if frame.duplicate {
                self.rewrite(&frame);
            } else {
                self.out.push(b'}');
            }
            self.members.truncate(frame.members_base);
        }
    }

    #[inline]
    fn key(&mut self, key: Str<'_>) {
        let key_start = self.out.len();
        self.string(key);
        let key_end = self.out.len();
        self.out.push(b':');
        let contents = self.out.get(key_start + 1..key_end - 1).unwrap_or_default();
        let fingerprint = fingerprint(contents);
        let new_index = self.members.len();
        let Some(frame) = self.frames.last_mut() else {
            return;
        };
        // Most keys are new, and the filter proves it without a search.
        let bit = 1u128 << (fingerprint >> 57);
        let maybe_seen = frame.filter & bit != 0;
        frame.filter |= bit;
        if !maybe_seen && frame.index.is_none() && new_index - frame.members_base < INDEX_THRESHOLD
        {
            frame.current = new_index;
            self.members.push(Member {
                key_start,
                key_end,
                value_start: key_end + 1,
                value_end: key_end + 1,
                fingerprint,
                next_same_hash: NONE,
            });
            return;
        }
        let current = self.find_or_add_member(key_start, key_end, fingerprint);
        if let Some(frame) = self.frames.last_mut() {
            frame.current = current;
        }
        if let Some(member) = self.members.get_mut(current) {
            member.value_start = key_end + 1;
        }
    }

    #[inline]
    fn string(&mut self, value: Str<'_>) {
        // Room for the quotes and the `:` or `,` that usually follows.
        self.out.reserve(value.raw.len() + 3);
        self.out.push(b'"');
        if value.escaped {
            self.transcode(value);
        } else {
            // Without escapes the raw text holds no `"`, `\` or control character: it is
            // already in canonical form.
            self.out.extend_from_slice(value.raw);
        }
        self.out.push(b'"');
    }

    #[inline]
    fn integer(&mut self, literal: &[u8]) {
        // No leading zeros are possible, so only `-0` has another spelling.
        let literal = if literal == b"-0" { b"0" } else { literal };
        self.out.extend_from_slice(literal);
    }

    #[inline]
    fn float(&mut self, literal: &[u8]) {
        write_float_literal(literal, self.out);
    }

    #[inline]
    fn word(&mut self, word: Word) {
        self.out.extend_from_slice(word.as_str().as_bytes());
    }
}

impl Writer<'_> {
    /// Records where the innermost object's current member's value ends.
    #[inline]
    fn value_done(&mut self) {
        if let Some(frame) = self.frames.last() {
            if let Some(member) = self.members.get_mut(frame.current) {
                member.value_end = self.out.len();
            }
        }
    }

    /// The member of the innermost object with the key at `out[key_start..key_end]`: an
    /// earlier one with an equal key (marking the object as repeating a key), or a new one.
    fn find_or_add_member(&mut self, key_start: usize, key_end: usize, fingerprint: u64) -> usize {
        let Some(frame) = self.frames.last_mut() else {
            return NONE;
        };
        let base = frame.members_base;
        let key = self.out.get(key_start..key_end).unwrap_or_default();
        let same = |m: &Member| self.out.get(m.key_start..m.key_end) == Some(key);
        let new_index = self.members.len();
        let mut hash = 0;
        if frame.index.is_none() && new_index - base < INDEX_THRESHOLD {
            let found = self.members[base..]
                .iter()
                .position(|m| m.fingerprint == fingerprint && same(m));
            if let Some(found) = found {
                frame.duplicate = true;
                return base + found;
            }
        } else {
            // Past the threshold, a keyed hash of the whole key: the fingerprint is cheap but
            // easy to collide on purpose, which would make the search quadratic.
            let hasher = self.hasher.get_or_insert_with(RandomState::new);
            let out = &self.out;
            let index = frame.index.get_or_insert_with(|| {
                let mut index = HashMap::with_capacity(2 * INDEX_THRESHOLD);
                for (i, m) in self.members.iter_mut().enumerate().skip(base) {
                    let h = hasher.hash_one(out.get(m.key_start..m.key_end).unwrap_or_default());
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
            fingerprint,
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

    fn transcode(&mut self, s: Str<'_>) {
        let raw = s.raw;
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

/// A cheap summary of a key's contents (its length, first and last eight bytes, or all of a
/// short one), mixed so that its top bits are usable as a filter index: equal keys have equal
/// fingerprints.
#[inline]
fn fingerprint(key: &[u8]) -> u64 {
    let n = key.len();
    let word = |at: usize| {
        key.get(at..at + 8)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map_or(0, u64::from_le_bytes)
    };
    let half = |at: usize| {
        key.get(at..at + 4)
            .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
            .map_or(0, |b| u64::from(u32::from_le_bytes(b)))
    };
    let byte = |at: usize| key.get(at).map_or(0, |&b| u64::from(b));
    let (head, tail) = match n {
        8.. => (word(0), word(n - 8)),
        4..=7 => (half(0), half(n - 4)),
        1..=3 => (byte(0) << 16 | byte(n / 2) << 8 | byte(n - 1), 0),
        0 => (0, 0),
    };
    (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
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
