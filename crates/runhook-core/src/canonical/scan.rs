//! A pull tokenizer with Python's `json.loads` grammar (the C scanner of CPython 3.11).
//!
//! It checks the structure, the string escapes and the number grammar, and bounds the nesting
//! depth with an explicit stack (no recursion). String contents are handed out raw, between
//! the quotes; the consumer decodes them when `escaped` is set.

use super::error::{CanonicalError, SyntaxError};
use super::{MAX_DEPTH, MAX_INT_DIGITS};

/// One token of a JSON text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Token<'a> {
    BeginObject,
    EndObject,
    BeginArray,
    EndArray,
    /// An object key; the scanner has consumed the `:` after it.
    Key(Str<'a>),
    String(Str<'a>),
    /// An integer literal (no fraction, no exponent), any size within the digit limit.
    Integer(&'a str),
    /// A number literal with a fraction or an exponent.
    Float(&'a str),
    True,
    False,
    Null,
    NaN,
    Infinity,
    NegInfinity,
}

/// A string's raw contents between its quotes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Str<'a> {
    /// The bytes between the quotes, exactly as in the input (valid UTF-8, no raw control
    /// character, every escape well formed).
    pub raw: &'a str,
    /// Whether `raw` contains a backslash.
    pub escaped: bool,
    /// Offset of `raw` in the input (one past the opening quote).
    pub offset: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the document's value.
    Start,
    /// After `[`: a value or `]`.
    ValueOrEnd,
    /// After `{`: a key or `}`.
    KeyOrEnd,
    /// After `,` in an array, or after a key's `:`.
    Value,
    /// After `,` in an object.
    Key,
    /// After a value inside a container.
    CommaOrEnd,
    /// After the document's value.
    Done,
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

pub(crate) struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// One entry per open container: `true` for an object.
    stack: Vec<bool>,
    state: State,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            stack: Vec::new(),
            state: State::Start,
        }
    }

    fn syntax(offset: usize, reason: SyntaxError) -> CanonicalError {
        CanonicalError::Syntax { offset, reason }
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// The next token, or `None` once the document and its trailing whitespace are consumed.
    #[inline]
    pub(crate) fn next_token(&mut self) -> Result<Option<Token<'a>>, CanonicalError> {
        loop {
            self.skip_whitespace();
            match self.state {
                State::Start | State::Value => return self.value().map(Some),
                State::ValueOrEnd => {
                    if self.peek() == Some(b']') {
                        return Ok(Some(self.close(Token::EndArray)));
                    }
                    return self.value().map(Some);
                }
                State::KeyOrEnd => {
                    if self.peek() == Some(b'}') {
                        return Ok(Some(self.close(Token::EndObject)));
                    }
                    return self.key().map(Some);
                }
                State::Key => return self.key().map(Some),
                State::CommaOrEnd => {
                    let in_object = self.stack.last().copied().unwrap_or(false);
                    match (self.peek(), in_object) {
                        (Some(b','), true) => {
                            self.pos += 1;
                            self.state = State::Key;
                        }
                        (Some(b','), false) => {
                            self.pos += 1;
                            self.state = State::Value;
                        }
                        (Some(b'}'), true) => return Ok(Some(self.close(Token::EndObject))),
                        (Some(b']'), false) => return Ok(Some(self.close(Token::EndArray))),
                        (_, true) => {
                            return Err(Self::syntax(self.pos, SyntaxError::ExpectedCommaOrBrace))
                        }
                        (_, false) => {
                            return Err(Self::syntax(self.pos, SyntaxError::ExpectedCommaOrBracket))
                        }
                    }
                }
                State::Done => {
                    return if self.pos == self.bytes.len() {
                        Ok(None)
                    } else {
                        Err(Self::syntax(self.pos, SyntaxError::ExtraData))
                    };
                }
            }
        }
    }

    /// Consumes the closing bracket at `pos` and leaves its container.
    fn close(&mut self, token: Token<'a>) -> Token<'a> {
        self.pos += 1;
        self.stack.pop();
        self.after_value();
        token
    }

    fn after_value(&mut self) {
        self.state = if self.stack.is_empty() {
            State::Done
        } else {
            State::CommaOrEnd
        };
    }

    fn open(&mut self, object: bool) -> Result<(), CanonicalError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(CanonicalError::TooDeep {
                offset: self.pos,
                max: MAX_DEPTH,
            });
        }
        self.stack.push(object);
        self.pos += 1;
        self.state = if object {
            State::KeyOrEnd
        } else {
            State::ValueOrEnd
        };
        Ok(())
    }

    fn key(&mut self) -> Result<Token<'a>, CanonicalError> {
        if self.peek() != Some(b'"') {
            return Err(Self::syntax(self.pos, SyntaxError::ExpectedKey));
        }
        let key = self.string()?;
        self.skip_whitespace();
        if self.peek() != Some(b':') {
            return Err(Self::syntax(self.pos, SyntaxError::ExpectedColon));
        }
        self.pos += 1;
        self.state = State::Value;
        Ok(Token::Key(key))
    }

    fn value(&mut self) -> Result<Token<'a>, CanonicalError> {
        let token = match self.peek() {
            Some(b'"') => Token::String(self.string()?),
            Some(b'{') => {
                self.open(true)?;
                return Ok(Token::BeginObject);
            }
            Some(b'[') => {
                self.open(false)?;
                return Ok(Token::BeginArray);
            }
            Some(b'-' | b'0'..=b'9') => {
                if self.rest().starts_with(b"-Infinity") {
                    self.pos += 9;
                    Token::NegInfinity
                } else {
                    self.number()?
                }
            }
            Some(b't') => self.word(b"true", Token::True)?,
            Some(b'f') => self.word(b"false", Token::False)?,
            Some(b'n') => self.word(b"null", Token::Null)?,
            Some(b'N') => self.word(b"NaN", Token::NaN)?,
            Some(b'I') => self.word(b"Infinity", Token::Infinity)?,
            _ => return Err(Self::syntax(self.pos, SyntaxError::ExpectedValue)),
        };
        self.after_value();
        Ok(token)
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    fn word(&mut self, word: &[u8], token: Token<'a>) -> Result<Token<'a>, CanonicalError> {
        if self.rest().starts_with(word) {
            self.pos += word.len();
            Ok(token)
        } else {
            Err(Self::syntax(self.pos, SyntaxError::ExpectedValue))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`, taking the fraction and exponent only
    /// when complete (as Python does: `1.` is the number `1` followed by garbage).
    fn number(&mut self) -> Result<Token<'a>, CanonicalError> {
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
            _ => return Err(Self::syntax(start, SyntaxError::ExpectedValue)),
        };
        let mut float = false;
        if self.peek() == Some(b'.') && matches!(self.bytes.get(self.pos + 1), Some(b'0'..=b'9')) {
            self.pos += 1;
            self.digits();
            float = true;
        }
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
        let literal = self.text.get(start..self.pos).unwrap_or_default();
        if float {
            Ok(Token::Float(literal))
        } else if int_digits > MAX_INT_DIGITS {
            Err(CanonicalError::IntegerTooLong {
                offset: start,
                digits: int_digits,
            })
        } else {
            Ok(Token::Integer(literal))
        }
    }

    /// Scans a string starting at its opening quote; leaves `pos` after the closing quote.
    fn string(&mut self) -> Result<Str<'a>, CanonicalError> {
        let open = self.pos;
        let start = open + 1;
        let mut at = start;
        let mut escaped = false;
        loop {
            while let Some(&b) = self.bytes.get(at) {
                if STRING_STOP[b as usize] {
                    break;
                }
                at += 1;
            }
            match self.bytes.get(at) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    match self.bytes.get(at + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at += 2,
                        Some(b'u') => {
                            let hex = self.bytes.get(at + 2..at + 6);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(Self::syntax(
                                    at + 1,
                                    SyntaxError::InvalidUnicodeEscape,
                                ));
                            }
                            at += 6;
                        }
                        None => return Err(Self::syntax(open, SyntaxError::UnterminatedString)),
                        Some(_) => return Err(Self::syntax(at, SyntaxError::InvalidEscape)),
                    }
                }
                Some(&control) => {
                    return Err(Self::syntax(at, SyntaxError::ControlCharacter(control)))
                }
                None => return Err(Self::syntax(open, SyntaxError::UnterminatedString)),
            }
        }
        self.pos = at + 1;
        Ok(Str {
            raw: self.text.get(start..at).unwrap_or_default(),
            escaped,
            offset: start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Result<Vec<Token<'_>>, CanonicalError> {
        let mut scanner = Scanner::new(text);
        let mut out = Vec::new();
        while let Some(token) = scanner.next_token()? {
            out.push(token);
        }
        Ok(out)
    }

    #[test]
    fn numbers_follow_python_grammar() {
        assert_eq!(tokens("-0").unwrap(), [Token::Integer("-0")]);
        assert_eq!(tokens("1.5e-3").unwrap(), [Token::Float("1.5e-3")]);
        assert_eq!(tokens("1E+2").unwrap(), [Token::Float("1E+2")]);
        assert_eq!(tokens("-Infinity").unwrap(), [Token::NegInfinity]);
        for bad in [
            "01", "1.", "1e", "1e+", ".5", "+1", "-", "-x", "nan", "-NaN", "1.e5",
        ] {
            assert!(tokens(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_point_at_the_problem() {
        let err = tokens("[1 2]").unwrap_err();
        assert_eq!(
            err,
            CanonicalError::Syntax {
                offset: 3,
                reason: SyntaxError::ExpectedCommaOrBracket
            }
        );
        let err = tokens(r#"{"a":"x"#).unwrap_err();
        assert_eq!(err.offset(), 5);
        assert!(matches!(
            tokens("\u{feff}{}").unwrap_err(),
            CanonicalError::Syntax {
                offset: 0,
                reason: SyntaxError::ExpectedValue
            }
        ));
    }
}
