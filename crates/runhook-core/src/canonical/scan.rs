//! A push parser with the grammar of Python's `json.loads` (CPython's C scanner).
//!
//! It checks the structure, the string escapes and the number grammar, and bounds the nesting
//! depth with an explicit stack (no recursion), calling a [`Sink`] for each piece of the
//! document in order. String contents are handed over raw, between the quotes; the sink
//! decodes them when `escaped` is set. Every piece comes with its input offset, and skipped
//! whitespace is reported too, so that a sink can copy the input wherever it is already in
//! the form it wants instead of rebuilding it piece by piece.

use super::error::{CanonicalError, SyntaxError};
use super::{MAX_DEPTH, MAX_INT_DIGITS};

/// A string's raw contents between its quotes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Str<'a> {
    /// The bytes between the quotes, exactly as in the input (valid UTF-8, no raw control
    /// character, every escape well formed).
    pub raw: &'a [u8],
    /// `raw` with its two quotes: the string's canonical text as it is when not `escaped`.
    pub quoted: &'a [u8],
    /// Whether `raw` contains a backslash.
    pub escaped: bool,
    /// Offset of `raw` in the input (one past the opening quote).
    pub offset: usize,
}

/// A number literal with a fraction or an exponent, with its parts located by the scanner so
/// that the writer need not search it again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FloatLiteral<'a> {
    /// The whole literal, exactly as in the input (JSON grammar checked).
    pub text: &'a [u8],
    /// Offset of the literal in the input.
    pub offset: usize,
    /// The end of the sign and integer digits: the `.`, the exponent's `e`, or the end.
    pub int_end: usize,
    /// The end of the fraction: the exponent's `e` or the end (`int_end` without a fraction).
    pub frac_end: usize,
}

/// The literal words of Python's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Word {
    True,
    False,
    Null,
    NaN,
    Infinity,
    NegInfinity,
}

impl Word {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Word::True => "true",
            Word::False => "false",
            Word::Null => "null",
            Word::NaN => "NaN",
            Word::Infinity => "Infinity",
            Word::NegInfinity => "-Infinity",
        }
    }
}

/// Receives a document's pieces in order, each with its input offset.
pub(crate) trait Sink {
    /// `{` (`object`) or `[`, at input offset `offset`.
    fn begin(&mut self, object: bool, offset: usize);
    /// The `,` between two members (`object`) or two elements.
    fn separator(&mut self, object: bool);
    /// `}` (`object`) or `]`, at input offset `offset`.
    fn end(&mut self, object: bool, offset: usize);
    /// An object key, reported as soon as it is scanned: before the whitespace and the `:`
    /// that follow it (an error is returned if the `:` is missing).
    fn key(&mut self, key: Str<'_>);
    /// A string value.
    fn string(&mut self, value: Str<'_>);
    /// An integer literal (no fraction, no exponent) within the digit limit, at input offset
    /// `offset`.
    fn integer(&mut self, literal: &[u8], offset: usize);
    /// A number literal with a fraction or an exponent.
    fn float(&mut self, literal: FloatLiteral<'_>);
    /// `true`, `false`, `null`, `NaN`, `Infinity` or `-Infinity`.
    fn word(&mut self, word: Word);
    /// Whitespace between tokens, the input bytes `from..to`.
    #[inline]
    fn whitespace(&mut self, _from: usize, _to: usize) {}
    /// Called before each value and after each value or container is complete, with the input
    /// offset: an error stops the parse (a sink that bounds its output).
    #[inline]
    fn check(&mut self, _offset: usize) -> Result<(), CanonicalError> {
        Ok(())
    }
}

/// Bytes that end a run of plain string content: `"`, `\` and control characters.
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = true;
        i += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// One in every byte of a word.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The top bit of every byte of a word: where [`has_byte`] and [`has_byte_below`] flag.
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Flags (in the top bit, once masked with [`HIGHS`]) the bytes of `word` equal to `byte`;
/// the lowest flag is exact (a borrow only propagates upwards from a flagged byte).
#[inline(always)]
fn has_byte(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x
}

/// Flags (as [`has_byte`]) the bytes of `word` below `bound` (at most 0x80); the lowest flag
/// is exact.
#[inline(always)]
fn has_byte_below(word: u64, bound: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(bound)) & !word
}

/// The offset of the first byte at or after `at` that is not plain ASCII string content: `"`,
/// `\\`, a control character or a non-ASCII byte (or the length).
///
/// Eight bytes at a time: for each of the three byte tests, the lowest flagged byte of the
/// classic "has a byte less than n" bit trick is exact (a borrow only propagates upwards from
/// a byte that is itself flagged), and the top bit flags a non-ASCII byte exactly, so the
/// lowest bit of their union is the first byte to look at.
#[inline]
fn skip_plain(bytes: &[u8], at: usize) -> usize {
    run_end(
        bytes,
        at,
        |v| (has_byte(v, b'"') | has_byte(v, b'\\') | has_byte_below(v, 0x20) | v) & HIGHS,
        |b| STRING_STOP[b as usize] || b >= 0x80,
    )
}

/// The offset of the first byte at or after `at` that ends a run (or the length): eight bytes
/// at a time while eight remain, `ends` giving a word whose lowest set bit lies in the first
/// byte that ends it (zero if none does), then byte by byte with `ends_at`.
#[inline(always)]
fn run_end(
    bytes: &[u8],
    mut at: usize,
    ends: impl Fn(u64) -> u64,
    ends_at: impl Fn(u8) -> bool,
) -> usize {
    while let Some(word) = bytes.get(at..at + 8) {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let flagged = ends(u64::from_le_bytes(word));
        if flagged != 0 {
            return at + (flagged.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while bytes.get(at).is_some_and(|&b| !ends_at(b)) {
        at += 1;
    }
    at
}

/// The end of the run of ASCII digits at `at`, eight bytes at a time: most numbers end
/// within the first word, found without a branch per digit.
#[inline(always)]
fn digits_end(bytes: &[u8], at: usize) -> usize {
    // A digit is a byte whose distance above `0` is below ten: flag the others exactly (the
    // low seven bits plus 0x76 carry into the top bit from 10 up, never further).
    let others = |v: u64| {
        let x = v ^ (ONES * u64::from(b'0'));
        (((x & !HIGHS) + ONES * 0x76) | x) & HIGHS
    };
    run_end(bytes, at, others, |b| !b.is_ascii_digit())
}

/// The length of the UTF-8 sequence starting with the non-ASCII byte at `at`, or `None` if it
/// is not a valid one (overlong forms, surrogates and code points past U+10FFFF included).
#[inline]
fn utf8_sequence(bytes: &[u8], at: usize) -> Option<usize> {
    let byte = |i: usize| bytes.get(at + i).copied().unwrap_or(0);
    let continuation = |b: u8| (0x80..=0xbf).contains(&b);
    let (len, second) = match byte(0) {
        0xc2..=0xdf => (2, 0x80..=0xbf),
        0xe0 => (3, 0xa0..=0xbf),
        0xe1..=0xec | 0xee..=0xef => (3, 0x80..=0xbf),
        0xed => (3, 0x80..=0x9f),
        0xf0 => (4, 0x90..=0xbf),
        0xf1..=0xf3 => (4, 0x80..=0xbf),
        0xf4 => (4, 0x80..=0x8f),
        _ => return None,
    };
    let valid = second.contains(&byte(1)) && (2..len).all(|i| continuation(byte(i)));
    valid.then_some(len)
}

/// Skips the run of whitespace at `from` and reports it to `sink`; returns its end. Out of
/// line, scanning and reporting in one call: in pretty-printed input every line has one.
#[inline(never)]
fn whitespace_run<S: Sink>(bytes: &[u8], from: usize, sink: &mut S) -> usize {
    let pos = match bytes.get(from) {
        Some(b' ' | b'\t' | b'\n' | b'\r') => indentation_end(bytes, from + 1),
        _ => return from,
    };
    let pos = match bytes.get(pos) {
        Some(b' ' | b'\t' | b'\n' | b'\r') => mixed_whitespace_end(bytes, pos),
        _ => pos,
    };
    sink.whitespace(from, pos);
    pos
}

/// The end of the run of spaces at `at`, eight bytes at a time.
#[inline(always)]
fn indentation_end(bytes: &[u8], at: usize) -> usize {
    run_end(bytes, at, |v| v ^ (ONES * u64::from(b' ')), |b| b != b' ')
}

/// The end of a whitespace run that goes on after its indentation (blank lines, tabs, CRLF).
#[inline(never)]
fn mixed_whitespace_end(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(at) {
        at = indentation_end(bytes, at + 1);
    }
    at
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

// The errors are built out of line, where they cost the parse loop no registers.

#[cold]
#[inline(never)]
fn too_deep(offset: usize) -> CanonicalError {
    CanonicalError::TooDeep {
        offset,
        max: MAX_DEPTH,
    }
}

#[cold]
#[inline(never)]
fn integer_too_long(offset: usize, digits: usize) -> CanonicalError {
    CanonicalError::IntegerTooLong { offset, digits }
}

#[cold]
#[inline(never)]
fn invalid_utf8(offset: usize) -> CanonicalError {
    CanonicalError::InvalidUtf8 { offset }
}

#[cold]
#[inline(never)]
fn syntax(offset: usize, reason: SyntaxError) -> CanonicalError {
    CanonicalError::Syntax { offset, reason }
}

/// Parses the JSON text `bytes`, calling `sink` for each piece, in order.
///
/// Only string contents are checked to be UTF-8, as they are scanned (every other byte of a
/// valid document is ASCII by the grammar): on success the whole input is UTF-8. On failure the caller must
/// check the whole input, since Python decodes it before parsing and an invalid byte after
/// the error found here takes precedence.
pub(crate) fn parse<S: Sink>(bytes: &[u8], sink: &mut S) -> Result<(), CanonicalError> {
    let mut p = Parser { bytes, pos: 0 };
    // One entry per open container: `true` for an object.
    let mut stack: Vec<bool> = Vec::with_capacity(32);
    'value: loop {
        sink.check(p.pos)?;
        p.skip_whitespace(sink);
        match p.peek() {
            Some(open @ (b'{' | b'[')) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(too_deep(p.pos));
                }
                let object = open == b'{';
                let close = if object { b'}' } else { b']' };
                sink.begin(object, p.pos);
                p.pos += 1;
                p.skip_whitespace(sink);
                if p.peek() == Some(close) {
                    sink.end(object, p.pos);
                    p.pos += 1;
                } else {
                    stack.push(object);
                    if object {
                        p.key(sink)?;
                    }
                    continue 'value;
                }
            }
            Some(b'"') => {
                let value = p.string()?;
                sink.string(value);
            }
            Some(first @ (b'-' | b'0'..=b'9')) => {
                if first == b'-' && p.bytes.get(p.pos + 1) == Some(&b'I') {
                    p.word(Word::NegInfinity, sink)?;
                } else {
                    p.number(sink)?;
                }
            }
            Some(b't') => p.word(Word::True, sink)?,
            Some(b'f') => p.word(Word::False, sink)?,
            Some(b'n') => p.word(Word::Null, sink)?,
            Some(b'N') => p.word(Word::NaN, sink)?,
            Some(b'I') => p.word(Word::Infinity, sink)?,
            _ => return Err(syntax(p.pos, SyntaxError::ExpectedValue)),
        }
        // A value is complete: close containers until one continues with `,`.
        loop {
            sink.check(p.pos)?;
            p.skip_whitespace(sink);
            let Some(&object) = stack.last() else {
                return if p.pos == p.bytes.len() {
                    Ok(())
                } else {
                    Err(syntax(p.pos, SyntaxError::ExtraData))
                };
            };
            match (p.peek(), object) {
                (Some(b','), _) => {
                    p.pos += 1;
                    sink.separator(object);
                    if object {
                        p.skip_whitespace(sink);
                        p.key(sink)?;
                    }
                    continue 'value;
                }
                (Some(b'}'), true) | (Some(b']'), false) => {
                    sink.end(object, p.pos);
                    p.pos += 1;
                    stack.pop();
                }
                (_, true) => return Err(syntax(p.pos, SyntaxError::ExpectedCommaOrBrace)),
                (_, false) => return Err(syntax(p.pos, SyntaxError::ExpectedCommaOrBracket)),
            }
        }
    }
}

impl<'a> Parser<'a> {
    /// Skips whitespace: inline for the common cases (none, or one space as after `json.dumps`'s
    /// `", "` and `": "`), out of line for longer runs.
    #[inline(always)]
    fn skip_whitespace<S: Sink>(&mut self, sink: &mut S) {
        match self.bytes.get(self.pos) {
            Some(&b) if b > b' ' => {}
            Some(b' ') if self.bytes.get(self.pos + 1).is_some_and(|&b| b > b' ') => {
                sink.whitespace(self.pos, self.pos + 1);
                self.pos += 1;
            }
            None => {}
            Some(_) => self.pos = whitespace_run(self.bytes, self.pos, sink),
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    /// A key and its `:`.
    #[inline(always)]
    fn key<S: Sink>(&mut self, sink: &mut S) -> Result<(), CanonicalError> {
        if self.peek() != Some(b'"') {
            return Err(syntax(self.pos, SyntaxError::ExpectedKey));
        }
        let key = self.string()?;
        sink.key(key);
        self.skip_whitespace(sink);
        if self.peek() != Some(b':') {
            return Err(syntax(self.pos, SyntaxError::ExpectedColon));
        }
        self.pos += 1;
        Ok(())
    }

    fn word<S: Sink>(&mut self, word: Word, sink: &mut S) -> Result<(), CanonicalError> {
        if self.rest().starts_with(word.as_str().as_bytes()) {
            self.pos += word.as_str().len();
            sink.word(word);
            Ok(())
        } else {
            Err(syntax(self.pos, SyntaxError::ExpectedValue))
        }
    }

    /// Skips a run of ASCII digits; returns its length.
    #[inline]
    fn digits(&mut self) -> usize {
        let start = self.pos;
        self.pos = digits_end(self.bytes, start);
        self.pos - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`, taking the fraction and exponent only
    /// when complete (as Python does: `1.` is the number `1` followed by garbage).
    fn number<S: Sink>(&mut self, sink: &mut S) -> Result<(), CanonicalError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_digits = match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                1
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(syntax(start, SyntaxError::ExpectedValue)),
        };
        let mut float = false;
        let int_end = self.pos - start;
        if self.peek() == Some(b'.') && matches!(self.bytes.get(self.pos + 1), Some(b'0'..=b'9')) {
            self.pos += 1;
            self.digits();
            float = true;
        }
        let frac_end = self.pos - start;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let mark = self.pos;
            self.pos += 1;
            if matches!(self.peek(), Some(b'-' | b'+')) {
                self.pos += 1;
            }
            if self.digits() > 0 {
                float = true;
            } else {
                self.pos = mark;
            }
        }
        let literal = self.bytes.get(start..self.pos).unwrap_or_default();
        if float {
            sink.float(FloatLiteral {
                text: literal,
                offset: start,
                int_end,
                frac_end,
            });
        } else if int_digits > MAX_INT_DIGITS {
            return Err(integer_too_long(start, int_digits));
        } else {
            sink.integer(literal, start);
        }
        Ok(())
    }

    /// Scans a string starting at its opening quote; leaves `pos` after the closing quote.
    #[inline(always)]
    fn string(&mut self) -> Result<Str<'a>, CanonicalError> {
        let open = self.pos;
        let start = open + 1;
        let mut at = start;
        let mut escaped = false;
        loop {
            at = skip_plain(self.bytes, at);
            match self.bytes.get(at) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    match self.bytes.get(at + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at += 2,
                        Some(b'u') => {
                            let hex = self.bytes.get(at + 2..at + 6);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(syntax(at + 1, SyntaxError::InvalidUnicodeEscape));
                            }
                            at += 6;
                        }
                        None => return Err(syntax(open, SyntaxError::UnterminatedString)),
                        Some(_) => return Err(syntax(at, SyntaxError::InvalidEscape)),
                    }
                }
                Some(0x80..) => match utf8_sequence(self.bytes, at) {
                    Some(len) => at += len,
                    None => return Err(invalid_utf8(at)),
                },
                Some(&control) => return Err(syntax(at, SyntaxError::ControlCharacter(control))),
                None => return Err(syntax(open, SyntaxError::UnterminatedString)),
            }
        }
        self.pos = at + 1;
        Ok(Str {
            raw: self.bytes.get(start..at).unwrap_or_default(),
            quoted: self.bytes.get(open..at + 1).unwrap_or_default(),
            escaped,
            offset: start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the pieces as text, one per entry.
    #[derive(Default)]
    struct Trace(Vec<String>);

    impl Sink for Trace {
        fn begin(&mut self, object: bool, _: usize) {
            self.0.push(if object { "{" } else { "[" }.into());
        }
        fn separator(&mut self, _: bool) {
            self.0.push(",".into());
        }
        fn end(&mut self, object: bool, _: usize) {
            self.0.push(if object { "}" } else { "]" }.into());
        }
        fn key(&mut self, key: Str<'_>) {
            self.0
                .push(format!("key {}", String::from_utf8_lossy(key.raw)));
        }
        fn string(&mut self, value: Str<'_>) {
            let raw = String::from_utf8_lossy(value.raw);
            self.0.push(format!("str {raw} {}", value.escaped));
        }
        fn integer(&mut self, literal: &[u8], _: usize) {
            self.0
                .push(format!("int {}", String::from_utf8_lossy(literal)));
        }
        fn float(&mut self, literal: FloatLiteral<'_>) {
            let text = String::from_utf8_lossy(literal.text);
            let (int, frac) = (literal.int_end, literal.frac_end);
            self.0.push(format!("float {text} {int} {frac}"));
        }
        fn word(&mut self, word: Word) {
            self.0.push(word.as_str().into());
        }
    }

    fn trace(text: &str) -> Result<Vec<String>, CanonicalError> {
        let mut sink = Trace::default();
        parse(text.as_bytes(), &mut sink).map(|()| sink.0)
    }

    #[test]
    fn pieces_in_order() {
        assert_eq!(
            trace(r#" {"a" : [ -0, 1.5e-3, "x\n", {} ], "b":-Infinity} "#).unwrap(),
            [
                "{",
                "key a",
                "[",
                "int -0",
                ",",
                "float 1.5e-3 1 3",
                ",",
                "str x\\n true",
                ",",
                "{",
                "}",
                "]",
                ",",
                "key b",
                "-Infinity",
                "}"
            ]
        );
    }

    #[test]
    fn whitespace_runs_of_any_length() {
        for n in 0..24 {
            for unit in [" ", "\t", "\n", "\r", " \n", "\n   "] {
                let pad = unit.repeat(n);
                let text = format!("{pad}[{pad}1{pad},{pad}\"a\"{pad}]{pad}");
                let pieces = ["[", "int 1", ",", "str a false", "]"];
                assert_eq!(trace(&text).unwrap(), pieces, "{text:?}");
                let stray = format!("[{pad}\u{a0}1]");
                assert_eq!(
                    trace(&stray),
                    Err(syntax(1 + pad.len(), SyntaxError::ExpectedValue))
                );
            }
        }
    }

    #[test]
    fn numbers_follow_python_grammar() {
        assert_eq!(trace("1E+2").unwrap(), ["float 1E+2 1 1"]);
        assert_eq!(trace("-12.50").unwrap(), ["float -12.50 3 6"]);
        for bad in [
            "01", "1.", "1e", "1e+", ".5", "+1", "-", "-x", "nan", "-NaN", "1.e5",
        ] {
            assert!(trace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_runs_stop_at_the_first_special_byte() {
        let text = "abcdefghijklmnopqrstuvwxyz\u{1}é\"\\abcdefghij";
        let special = |b: u8| STRING_STOP[b as usize] || b >= 0x80;
        for i in 0..text.len() {
            let expected = text.as_bytes()[i..]
                .iter()
                .position(|&b| special(b))
                .map_or(text.len(), |p| i + p);
            assert_eq!(skip_plain(text.as_bytes(), i), expected, "{i}");
        }
        for at in 0..20 {
            for b in 0..=255u8 {
                let mut bytes = vec![b'a'; 20];
                bytes[at] = b;
                let expected = if special(b) { at } else { 20 };
                assert_eq!(skip_plain(&bytes, 0), expected, "{b:#x} at {at}");
            }
        }
    }

    #[test]
    fn digit_runs_stop_at_the_first_other_byte() {
        for at in 0..20 {
            for b in 0..=255u8 {
                let mut bytes = vec![b'7'; 20];
                bytes[at] = b;
                let expected = if b.is_ascii_digit() { 20 } else { at };
                assert_eq!(digits_end(&bytes, 0), expected, "{b:#x} at {at}");
                assert_eq!(digits_end(&bytes, at), expected, "{b:#x} from {at}");
            }
        }
    }

    #[test]
    fn utf8_sequences_agree_with_std() {
        // Every sequence of up to three bytes, and every four-byte lead with every second byte
        // (with valid and invalid continuations after it).
        let check = |bytes: &[u8]| {
            // The first byte is not ASCII: the shortest valid prefix is one character.
            let std = (1..=bytes.len()).find(|&k| std::str::from_utf8(&bytes[..k]).is_ok());
            assert_eq!(utf8_sequence(bytes, 0), std, "{bytes:x?}");
        };
        for a in 0x80..=0xffu8 {
            check(&[a]);
            for b in 0..=0xffu8 {
                check(&[a, b]);
                for c in [0x00, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xc0, 0xff] {
                    check(&[a, b, c]);
                    for d in [0x00, 0x80, 0xbf, 0xc0] {
                        check(&[a, b, c, d]);
                    }
                }
            }
        }
    }
}
