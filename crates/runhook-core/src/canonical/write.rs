//! The canonical writer: consumes tokens and writes Skyvern's bytes as it goes.
//!
//! Output is produced in one pass, without building a tree. Most of a document is usually
//! already canonical: the writer does not copy it token by token but keeps a pending stretch
//! of input, from [`Writer::pending`] to the parser's position, that is exactly what it would
//! write, and copies it in one piece only where the input diverges from the output
//! (whitespace, a string with escapes, a number spelled otherwise, a repeated key) or where
//! the output must be read. An input offset at or past `pending` therefore maps to the output
//! offset `out.len() + (offset - pending)` ([`Writer::output_offset`]).
//!
//! Each open object remembers where
//! each of its keys was written; only when an object turns out to repeat a key is its region
//! rewritten (first key's position, last value), at its closing brace. A member's value needs
//! no bookkeeping: in the output it runs from its key's `:` to the `,` before the next key
//! (or to the closing brace).
//!
//! A lone surrogate is written in its generalized UTF-8 form (three bytes `ED A0..BF xx`, which
//! never occur in UTF-8) so that keys still compare correctly, and remembered; if one survives
//! to the end of the document (it may sit in a value that a repeated key replaces), the
//! document is rejected, as Python's `str.encode("utf-8")` would.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use super::error::CanonicalError;
use super::number::{short_decimal, write_float_literal, ShortDecimal};
use super::scan::{parse, FloatLiteral, Sink, Str, Word};

/// Objects with this many distinct keys switch from a linear key search to a hash index.
const INDEX_THRESHOLD: usize = 32;
/// "No key" in a hash chain.
const NONE: usize = usize::MAX;
/// The longest pending stretch that [`Writer::flush`] copies as a fixed-size block.
const SHORT_STRETCH: usize = 16;

/// One key written in an open object (repeats included, in input order).
#[derive(Debug, Clone, Copy)]
struct Key {
    /// Output offset of the opening quote.
    start: usize,
    /// Output offset just past the closing quote (the `:` is there).
    end: usize,
    /// [`fingerprint`] of the key, to skip most key comparisons in small objects.
    fingerprint: u64,
    /// For a first occurrence: the index in `Writer::keys` of the key's last occurrence
    /// (itself if none). For a repeat: [`NONE`].
    last: usize,
    /// The previous first occurrence in the same object whose key has the same hash.
    next_same_hash: usize,
}

/// An open object.
#[derive(Debug)]
struct Frame {
    /// Output offset of the opening brace.
    start: usize,
    /// Index of this object's first key in `Writer::keys`.
    keys_base: usize,
    /// The enclosing object's [`InnermostKeys`], put back when this one closes.
    enclosing: InnermostKeys,
    /// Length of `Writer::surrogates` when the object opened.
    surrogates_base: usize,
    /// A key was repeated: the region must be rewritten at the closing brace.
    repeated: bool,
    /// Key hash to the latest first occurrence with that hash, once the object is large.
    index: Option<HashMap<u64, usize>>,
}

/// What the path of a new key reads and updates of the innermost open object: kept in the
/// writer itself rather than in its [`Frame`], one load away instead of three.
#[derive(Debug, Clone, Copy, Default)]
struct InnermostKeys {
    /// How many distinct keys the object has so far.
    distinct: usize,
    /// One bit per key seen, chosen by its fingerprint: a clear bit proves a key new.
    filter: u128,
}

#[derive(Debug, Clone, Copy)]
struct Surrogate {
    /// Input offset of the escape.
    offset: usize,
    code: u16,
    /// Output offset of its three bytes.
    at: usize,
}

struct Writer<'i, 'o> {
    /// The document.
    input: &'i [u8],
    /// Where the pending stretch starts: `input[pending..]`, up to the parser's position, is
    /// canonical as it stands and not yet copied to `out`.
    pending: usize,
    out: &'o mut Vec<u8>,
    /// The most bytes this document may add to `out`.
    max_len: usize,
    /// The longest `out` may grow to: its length before this document plus `max_len`.
    limit: usize,
    /// An input offset up to which the output (written and pending) stays within `limit`,
    /// so that the check between tokens is one comparison. Copying a pending stretch leaves
    /// the true bound unchanged; output that is not a copy of input lowers it, and this is
    /// recomputed there ([`Writer::rebase`]). Dropped whitespace raises it, but is not
    /// counted as it goes: a check that fails recomputes it before it gives up.
    horizon: usize,
    /// The open objects, innermost last (arrays need no state).
    frames: Vec<Frame>,
    /// The innermost open object's keys so far (none outside objects).
    innermost: InnermostKeys,
    keys: Vec<Key>,
    surrogates: Vec<Surrogate>,
    hasher: Option<RandomState>,
    /// What a key repeated within one object does.
    repeated_keys: RepeatedKeys,
    /// Whether a repeated key was refused ([`RepeatedKeys::Refuse`]): the next check fails.
    refused_repeat: bool,
}

/// What the writer does with a key repeated within one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RepeatedKeys {
    /// As Python's `json.loads`: the key stays where it first appeared, with its last value.
    Merge,
    /// Stop with [`CanonicalError::RepeatedKey`]: no JSON re-serializer writes one, so a body
    /// that has one was not re-serialized from a body Skyvern sent.
    Refuse,
}

/// Canonicalizes `input`, appending to `out` (see [`parse`] about UTF-8 errors), and stops
/// with [`CanonicalError::OutputTooLong`] once the document's output passes `max_len` bytes
/// (checked between tokens, so `out` may pass it by one token's output before it stops).
pub(crate) fn write_canonical(
    input: &[u8],
    out: &mut Vec<u8>,
    max_len: usize,
    repeated_keys: RepeatedKeys,
) -> Result<(), CanonicalError> {
    // Sized for a typical webhook body, so that most documents allocate only once each.
    let base = out.len();
    let mut writer = Writer {
        input,
        pending: 0,
        out,
        max_len,
        limit: base.saturating_add(max_len),
        horizon: 0,
        frames: Vec::with_capacity(8),
        innermost: InnermostKeys::default(),
        keys: Vec::with_capacity(64),
        surrogates: Vec::new(),
        hasher: None,
        repeated_keys,
        refused_repeat: false,
    };
    writer.rebase();
    parse(input, &mut writer)?;
    if writer.refused_repeat {
        return Err(CanonicalError::RepeatedKey {
            offset: input.len(),
        });
    }
    writer.flush(input.len());
    match writer.surrogates.iter().min_by_key(|s| s.offset) {
        Some(s) => Err(CanonicalError::LoneSurrogate {
            offset: s.offset,
            code: s.code,
        }),
        None => Ok(()),
    }
}

impl Sink for Writer<'_, '_> {
    #[inline]
    fn begin(&mut self, object: bool, offset: usize) {
        if object {
            self.frames.push(Frame {
                start: self.output_offset(offset),
                keys_base: self.keys.len(),
                enclosing: std::mem::take(&mut self.innermost),
                surrogates_base: self.surrogates.len(),
                repeated: false,
                index: None,
            });
        }
    }

    #[inline]
    fn separator(&mut self, _object: bool) {}

    #[inline]
    fn end(&mut self, object: bool, offset: usize) {
        if !object {
            return;
        }
        if let Some(frame) = self.frames.pop() {
            self.innermost = frame.enclosing;
            if frame.repeated {
                self.flush(offset);
                self.rewrite(&frame);
                self.pending = offset + 1;
                self.rebase();
            }
            self.keys.truncate(frame.keys_base);
        }
    }

    /// Inline for the common case, a key without escapes that the filter proves new; the
    /// search for an earlier occurrence is out of line ([`Writer::key_lookup`]).
    #[inline(always)]
    fn key(&mut self, key: Str<'_>) {
        let quote = key.offset - 1;
        let after = key.offset + key.raw.len() + 1;
        let (start, end, fingerprint) = if key.escaped {
            self.escaped_key(key)
        } else {
            // Without escapes the quoted text is already canonical and stays pending. The raw
            // key is its canonical text: it is fingerprinted from the input.
            let start = self.output_offset(quote);
            (start, start + key.quoted.len(), fingerprint(key.raw))
        };
        let index = self.keys.len();
        let object = &mut self.innermost;
        // Most keys are new, and the filter proves it without a search (a large object has
        // a hash index, built once it has `INDEX_THRESHOLD` distinct keys).
        let bit = 1u128 << (fingerprint >> 57);
        let maybe_seen = object.filter & bit != 0;
        object.filter |= bit;
        if maybe_seen || object.distinct >= INDEX_THRESHOLD {
            // The search reads keys from `out`.
            self.flush(after);
            self.key_lookup(start, end, fingerprint);
            return;
        }
        object.distinct += 1;
        self.keys.push(Key {
            start,
            end,
            fingerprint,
            last: index,
            next_same_hash: NONE,
        });
    }

    #[inline]
    fn string(&mut self, value: Str<'_>) {
        // Without escapes the raw text holds no `"`, `\` or control character: with its
        // quotes it is already in canonical form, and stays pending.
        if value.escaped {
            self.escaped_string(value);
        }
    }

    #[inline]
    fn integer(&mut self, literal: &[u8], offset: usize) {
        // No leading zeros are possible, so only `-0` has another spelling.
        if literal == b"-0" {
            self.replace(offset, offset + 2, |out| out.push(b'0'));
        }
    }

    #[inline]
    fn float(&mut self, literal: FloatLiteral<'_>) {
        let (start, end) = (literal.offset, literal.offset + literal.text.len());
        match short_decimal(literal) {
            // The canonical text is the literal without its tail (`4.0` → `4`, `2.50` →
            // `2.5`): the tail is dropped like whitespace.
            Some(ShortDecimal::Prefix(n)) => {
                if n < literal.text.len() {
                    self.whitespace(start + n, end);
                }
            }
            _ => self.replace(start, end, |out| write_float_literal(literal, out)),
        }
    }

    #[inline]
    fn word(&mut self, _word: Word) {
        // The input spells every word exactly as Python writes it.
    }

    #[inline(always)]
    fn whitespace(&mut self, from: usize, to: usize) {
        self.flush(from);
        self.pending = to;
    }

    #[inline]
    fn check(&mut self, offset: usize) -> Result<(), CanonicalError> {
        if offset > self.horizon {
            return self.recheck(offset);
        }
        Ok(())
    }
}

/// The outcome of looking a key up among the innermost object's earlier keys.
enum Found {
    /// The index of its first occurrence.
    Earlier(usize),
    /// It is new; the hash chain it continues (or [`NONE`]).
    New(usize),
}

impl Writer<'_, '_> {
    /// The output offset that the input offset `offset` (at or past `pending`) will have.
    #[inline(always)]
    fn output_offset(&self, offset: usize) -> usize {
        self.out.len() + (offset - self.pending)
    }

    /// Copies the pending stretch up to the input offset `to` into `out`.
    ///
    /// In pretty-printed input, whitespace cuts the document into short stretches (a key and
    /// its `:`, a value and its `,`): one of at most [`SHORT_STRETCH`] bytes is copied as a
    /// fixed-size block, then the excess cut off, which costs a few instructions where a call
    /// to `memcpy` for a variable length costs dozens.
    #[inline(always)]
    fn flush(&mut self, to: usize) {
        let from = self.pending;
        self.pending = to;
        let len = to.saturating_sub(from);
        if len <= SHORT_STRETCH {
            if let Some(block) = self.input.get(from..from + SHORT_STRETCH) {
                if let Ok(block) = <&[u8; SHORT_STRETCH]>::try_from(block) {
                    let end = self.out.len() + len;
                    self.out.extend_from_slice(block);
                    self.out.truncate(end);
                    return;
                }
            }
        }
        if let Some(stretch) = self.input.get(from..to) {
            self.out.extend_from_slice(stretch);
        }
    }

    /// Writes, in place of the input bytes `start..end`, what `write` writes (out of line:
    /// most numbers are written as they stand).
    #[inline(never)]
    fn replace(&mut self, start: usize, end: usize, write: impl FnOnce(&mut Vec<u8>)) {
        self.flush(start);
        write(self.out);
        self.pending = end;
        self.rebase();
    }

    /// Recomputes [`Writer::horizon`] after output was written that is not a copy of input.
    fn rebase(&mut self) {
        self.horizon = match self.limit.checked_sub(self.out.len()) {
            Some(room) => self.pending.saturating_add(room),
            // Already too long: any offset from `pending` on fails the check.
            None => self.pending.saturating_sub(1),
        };
    }

    /// The slow path of [`Sink::check`]: counts the whitespace dropped since the horizon was
    /// last computed, and fails only if the output really is too long.
    #[cold]
    #[inline(never)]
    fn recheck(&mut self, offset: usize) -> Result<(), CanonicalError> {
        if self.refused_repeat {
            return Err(CanonicalError::RepeatedKey { offset });
        }
        self.rebase();
        if offset > self.horizon {
            return Err(CanonicalError::OutputTooLong {
                offset,
                max: self.max_len,
            });
        }
        Ok(())
    }

    /// Writes a key with escapes (without its `:`, which stays pending); returns its output
    /// offsets and its [`fingerprint`].
    #[inline(never)]
    fn escaped_key(&mut self, key: Str<'_>) -> (usize, usize, u64) {
        let start = self.output_offset(key.offset - 1);
        self.escaped_string(key);
        let end = self.out.len();
        let text = self.out.get(start + 1..end - 1).unwrap_or_default();
        (start, end, fingerprint(text))
    }

    /// Writes a string with escapes in place of its input text, quotes included.
    #[inline(never)]
    fn escaped_string(&mut self, value: Str<'_>) {
        let quote = value.offset - 1;
        self.flush(quote);
        // Room for the quotes and the `:` or `,` that usually follows.
        self.out.reserve(value.raw.len() + 3);
        self.out.push(b'"');
        self.transcode(value);
        self.out.push(b'"');
        self.pending = value.offset + value.raw.len() + 1;
        self.rebase();
    }

    /// Records the key just written at `out[start..end]`, searching the innermost object for
    /// an earlier occurrence: the slow path of [`Sink::key`].
    #[inline(never)]
    fn key_lookup(&mut self, start: usize, end: usize, fingerprint: u64) {
        let index = self.keys.len();
        let next_same_hash = match self.find(start, end, fingerprint) {
            Found::Earlier(_) if self.repeated_keys == RepeatedKeys::Refuse => {
                // Fail at the next check (between tokens), off the hot path: no room left.
                self.refused_repeat = true;
                self.limit = 0;
                self.rebase();
                return;
            }
            Found::Earlier(first) => {
                if let Some(first) = self.keys.get_mut(first) {
                    first.last = index;
                }
                if let Some(frame) = self.frames.last_mut() {
                    frame.repeated = true;
                }
                self.keys.push(Key {
                    start,
                    end,
                    fingerprint,
                    last: NONE,
                    next_same_hash: NONE,
                });
                return;
            }
            Found::New(chain) => chain,
        };
        self.innermost.distinct += 1;
        self.keys.push(Key {
            start,
            end,
            fingerprint,
            last: index,
            next_same_hash,
        });
    }

    /// Looks up the key at `out[start..end]` among the innermost object's first occurrences;
    /// past [`INDEX_THRESHOLD`] distinct keys, through a hash index (built on first need).
    fn find(&mut self, start: usize, end: usize, fingerprint: u64) -> Found {
        let Some(frame) = self.frames.last_mut() else {
            return Found::New(NONE);
        };
        let base = frame.keys_base;
        let out = &*self.out;
        let key = out.get(start..end).unwrap_or_default();
        let same = |k: &Key| k.last != NONE && out.get(k.start..k.end) == Some(key);
        // An object has an index once it has this many distinct keys, and only then.
        if self.innermost.distinct < INDEX_THRESHOLD {
            let earlier = self.keys.get(base..).unwrap_or_default();
            return match earlier
                .iter()
                .position(|k| k.fingerprint == fingerprint && same(k))
            {
                Some(found) => Found::Earlier(base + found),
                None => Found::New(NONE),
            };
        }
        // A keyed hash of the whole key: the fingerprint is cheap but easy to collide on
        // purpose, which would make the search quadratic.
        let hasher = self.hasher.get_or_insert_with(RandomState::new);
        let keys = &mut self.keys;
        let index = frame.index.get_or_insert_with(|| {
            let mut index = HashMap::with_capacity(2 * INDEX_THRESHOLD);
            for (i, k) in keys.iter_mut().enumerate().skip(base) {
                if k.last != NONE {
                    let h = hasher.hash_one(out.get(k.start..k.end).unwrap_or_default());
                    k.next_same_hash = index.insert(h, i).unwrap_or(NONE);
                }
            }
            index
        });
        let hash = hasher.hash_one(key);
        let mut at = index.get(&hash).copied().unwrap_or(NONE);
        while let Some(k) = keys.get(at) {
            if same(k) {
                return Found::Earlier(at);
            }
            at = k.next_same_hash;
        }
        Found::New(index.insert(hash, keys.len()).unwrap_or(NONE))
    }

    /// Rewrites the object that opened at `frame.start`: each key once, where it first
    /// appeared, with its last value.
    fn rewrite(&mut self, frame: &Frame) {
        let keys = self.keys.get(frame.keys_base..).unwrap_or_default();
        let region_end = self.out.len();
        // The value after key `i` runs from its `:` to the `,` before key `i + 1`.
        let value = |i: usize| {
            let start = keys.get(i).map_or(region_end, |k| k.end + 1);
            let end = keys.get(i + 1).map_or(region_end, |k| k.start - 1);
            (start, end.max(start))
        };
        let mut region = Vec::with_capacity(region_end - frame.start + 1);
        // (old start, old end, new start) of every piece that is kept.
        let mut moves = Vec::new();
        region.push(b'{');
        for (i, k) in keys.iter().enumerate().filter(|(_, k)| k.last != NONE) {
            if i > 0 {
                region.push(b',');
            }
            moves.push((k.start, k.end, frame.start + region.len()));
            region.extend_from_slice(self.out.get(k.start..k.end).unwrap_or_default());
            region.push(b':');
            let (start, end) = value(k.last - frame.keys_base);
            moves.push((start, end, frame.start + region.len()));
            region.extend_from_slice(self.out.get(start..end).unwrap_or_default());
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
        while let Some(pos) = raw
            .get(i..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\\'))
        {
            let backslash = i + pos;
            self.out
                .extend_from_slice(raw.get(run..backslash).unwrap_or_default());
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
        self.out
            .extend_from_slice(raw.get(run..).unwrap_or_default());
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
