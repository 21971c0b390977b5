//! Why a body has no canonical form: Skyvern could never have sent it.

use std::fmt;

/// Why an input has no canonical form.
///
/// Each variant is a body Skyvern could never have signed and sent. Offsets are byte offsets
/// into the input. [`CanonicalError::python_exception`] names the exception Skyvern's own
/// Python code raises on the same input, as in the test vectors' `error` field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalError {
    /// The bytes are not UTF-8 (Skyvern sends UTF-8 only).
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the first byte that is not part of a valid UTF-8 sequence.
        offset: usize,
    },
    /// Not JSON that Python's `json.loads` accepts.
    #[error("{reason} at byte {offset}")]
    Syntax {
        /// Where the problem was found.
        offset: usize,
        /// What was wrong there.
        reason: SyntaxError,
    },
    /// An integer literal longer than Python's limit of 4300 digits.
    #[error("integer at byte {offset} has {digits} digits, more than Python's limit of 4300")]
    IntegerTooLong {
        /// Offset of the literal.
        offset: usize,
        /// How many digits it has.
        digits: usize,
    },
    /// A `\uXXXX` escape of a surrogate that is not half of a pair survives into the document:
    /// it cannot be encoded as UTF-8.
    #[error("lone surrogate \\u{code:04x} at byte {offset} cannot be encoded as UTF-8")]
    LoneSurrogate {
        /// Offset of the escape's backslash.
        offset: usize,
        /// The surrogate code unit.
        code: u16,
    },
    /// Objects and arrays nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("nesting deeper than {max} levels at byte {offset}")]
    TooDeep {
        /// Offset of the `[` or `{` that went one level too deep.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// An object repeats a key, refused by
    /// [`canonicalize_reserialized`](super::canonicalize_reserialized): Python would keep the
    /// last value, but no re-serializer writes a repeated key, so the body was not re-serialized
    /// from one Skyvern sent.
    #[error("an object repeats a key (found by byte {offset})")]
    RepeatedKey {
        /// Where in the input the repeat was found.
        offset: usize,
    },
    /// The canonical form would be longer than the bound given to
    /// [`canonicalize_bounded`](super::canonicalize_bounded). Not a limit of Skyvern's: the
    /// input may well have a canonical form, only a longer one than the caller accepts.
    #[error("canonical form longer than {max} bytes (stopped at input byte {offset})")]
    OutputTooLong {
        /// Where in the input the output passed the bound.
        offset: usize,
        /// The bound, in bytes.
        max: usize,
    },
}

impl CanonicalError {
    /// The exception Skyvern's Python code raises on the same input.
    pub fn python_exception(&self) -> PythonException {
        match self {
            CanonicalError::InvalidUtf8 { .. } => PythonException::UnicodeDecodeError,
            CanonicalError::Syntax { .. } => PythonException::JsonDecodeError,
            CanonicalError::IntegerTooLong { .. } => PythonException::ValueError,
            CanonicalError::LoneSurrogate { .. } => PythonException::UnicodeEncodeError,
            CanonicalError::TooDeep { .. } => PythonException::RecursionError,
            CanonicalError::OutputTooLong { .. } | CanonicalError::RepeatedKey { .. } => {
                PythonException::NotRaised
            }
        }
    }

    /// The byte offset in the input where the problem was found.
    pub fn offset(&self) -> usize {
        match *self {
            CanonicalError::InvalidUtf8 { offset }
            | CanonicalError::Syntax { offset, .. }
            | CanonicalError::IntegerTooLong { offset, .. }
            | CanonicalError::LoneSurrogate { offset, .. }
            | CanonicalError::TooDeep { offset, .. }
            | CanonicalError::OutputTooLong { offset, .. }
            | CanonicalError::RepeatedKey { offset } => offset,
        }
    }
}

/// What exactly is not JSON in a [`CanonicalError::Syntax`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyntaxError {
    /// A value was expected (also: empty input, `nan`, `+1`, `.5`, a leading byte order mark).
    ExpectedValue,
    /// A `"`-quoted object key was expected (also: a trailing comma in an object).
    ExpectedKey,
    /// `:` was expected after an object key.
    ExpectedColon,
    /// `,` or `]` was expected after an array element.
    ExpectedCommaOrBracket,
    /// `,` or `}` was expected after an object member.
    ExpectedCommaOrBrace,
    /// A string has no closing quote.
    UnterminatedString,
    /// A raw control character (below U+0020) inside a string.
    ControlCharacter(u8),
    /// A backslash followed by something other than `"\/bfnrtu`.
    InvalidEscape,
    /// `\u` not followed by four hex digits.
    InvalidUnicodeEscape,
    /// Something other than whitespace after the document.
    ExtraData,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyntaxError::ExpectedValue => f.write_str("expecting a value"),
            SyntaxError::ExpectedKey => {
                f.write_str("expecting a property name enclosed in double quotes")
            }
            SyntaxError::ExpectedColon => f.write_str("expecting ':' after the property name"),
            SyntaxError::ExpectedCommaOrBracket => f.write_str("expecting ',' or ']'"),
            SyntaxError::ExpectedCommaOrBrace => f.write_str("expecting ',' or '}'"),
            SyntaxError::UnterminatedString => f.write_str("unterminated string starting"),
            SyntaxError::ControlCharacter(byte) => {
                write!(f, "raw control character U+{byte:04X} in a string")
            }
            SyntaxError::InvalidEscape => f.write_str("invalid backslash escape"),
            SyntaxError::InvalidUnicodeEscape => f.write_str("invalid \\uXXXX escape"),
            SyntaxError::ExtraData => f.write_str("extra data after the document"),
        }
    }
}

/// The Python exception Skyvern's signing code raises on an input without a canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PythonException {
    /// `json.JSONDecodeError`: not JSON that `json.loads` accepts.
    JsonDecodeError,
    /// `UnicodeEncodeError`: a lone surrogate cannot be sent as UTF-8.
    UnicodeEncodeError,
    /// `ValueError`: an integer longer than 4300 digits.
    ValueError,
    /// `UnicodeDecodeError`: the bytes are not UTF-8.
    UnicodeDecodeError,
    /// `RecursionError`: nested too deeply for Python's default recursion limit.
    RecursionError,
    /// None: Python accepts the input; runhook refused it for a bound of its own
    /// ([`CanonicalError::OutputTooLong`]).
    NotRaised,
}

impl PythonException {
    /// The exception's Python class name, e.g. `JSONDecodeError`.
    pub fn as_str(self) -> &'static str {
        match self {
            PythonException::JsonDecodeError => "JSONDecodeError",
            PythonException::UnicodeEncodeError => "UnicodeEncodeError",
            PythonException::ValueError => "ValueError",
            PythonException::UnicodeDecodeError => "UnicodeDecodeError",
            PythonException::RecursionError => "RecursionError",
            PythonException::NotRaised => "none",
        }
    }
}

impl fmt::Display for PythonException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
