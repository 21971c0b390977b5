//! Skyvern's canonical JSON, reproduced byte for byte; and the sorted-key form Browser Use
//! signs ([`canonicalize_sorted`]).
//!
//! Skyvern signs `json.dumps(normalize(payload), separators=(",", ":"), ensure_ascii=False)`,
//! where `normalize` turns every float that is a whole number into an int. A proxy, gateway or
//! framework that re-serializes the body on its way breaks the signature; a strict JSON parser
//! rejects the `NaN`, `Infinity` and huge integers that Skyvern genuinely sends.
//! [`canonicalize`] rebuilds, from any JSON text that Python's `json.loads` accepts, the exact
//! bytes Skyvern would sign for the same payload, and rejects what Skyvern could never have
//! sent:
//!
//! * numbers: integers of any size are kept exact (more than [`MAX_INT_DIGITS`] digits is an
//!   error, as in Python); floats are correctly rounded; a whole float becomes the exact
//!   decimal integer of the double (`1e23` → `99999999999999991611392`, `-0.0` → `0`);
//!   overflow gives `Infinity`; `NaN`, `Infinity` and `-Infinity` are accepted and kept; other
//!   floats are written as Python's `repr` (`0.1`, `1e-05`);
//! * strings: escapes are decoded, then written Python's way: non-ASCII raw, `\"`, `\\`,
//!   `\n \r \t \b \f`, other control characters as `\u00XX` (lowercase hex), `/` unescaped;
//!   surrogate-pair escapes are joined; a lone surrogate, a raw control character or invalid
//!   UTF-8 is an error;
//! * objects keep their key order; a repeated key keeps the first key's position and the last
//!   value;
//! * whitespace between tokens (space, tab, CR, LF) is dropped; anything else, including a
//!   byte order mark, is an error;
//! * nesting deeper than [`MAX_DEPTH`] is an error, never a stack overflow.
//!
//! The input is processed in one pass without building a tree (only an object that repeats a
//! key is rewritten, in place). The output is usually shorter than the input, but a float
//! literal grows into its exact digits (`1e308` becomes 309 digits): at worst about 52 output
//! bytes per input byte, so cap the body size before canonicalizing untrusted input.
//!
//! ```
//! use runhook_core::canonical::{canonicalize, PythonException};
//!
//! let reserialized = br#"{ "status": "completed", "price": 5.0, "ratio": 1E-5, "big": 1e20 }"#;
//! assert_eq!(
//!     canonicalize(reserialized)?,
//!     br#"{"status":"completed","price":5,"ratio":1e-05,"big":100000000000000000000}"#
//! );
//!
//! let err = canonicalize(br#"{"a":"\ud800"}"#).unwrap_err();
//! assert_eq!(err.python_exception(), PythonException::UnicodeEncodeError);
//! # Ok::<(), runhook_core::canonical::CanonicalError>(())
//! ```

mod error;
mod lenient;
mod number;
mod repr;
mod scan;
mod sign;
mod sorted;
mod write;

pub(crate) use sorted::Out;
use write::RepeatedKeys;

pub use error::{CanonicalError, PythonException, SyntaxError};
pub use lenient::parse_lenient;
pub use sign::{canonicalize_value, SkyvernRequest};

/// The deepest nesting of arrays and objects accepted.
///
/// Python has no fixed limit, only its recursion limit (1000 frames by default): `json.loads`
/// itself gives up a little below 1000 levels, and Skyvern's recursive normalization near 500.
/// Deeper input could never have been sent and is refused with
/// [`CanonicalError::TooDeep`] (Python's `RecursionError`) instead of exhausting a stack.
pub const MAX_DEPTH: usize = 1000;

/// The most digits an integer literal may have: Python's default limit for converting a string
/// to an `int` (`sys.get_int_max_str_digits()`); longer ones are a `ValueError`.
pub const MAX_INT_DIGITS: usize = 4300;

/// The exact body Skyvern would send for the payload that `input` denotes.
///
/// `input` is any JSON text Python's `json.loads` accepts (any whitespace, any number
/// spelling, escapes); the result is always UTF-8. See the [module docs](self) for the rules.
pub fn canonicalize(input: &[u8]) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(input.len());
    canonicalize_into(input, &mut out)?;
    Ok(out)
}

/// Like [`canonicalize`], but gives up with [`CanonicalError::OutputTooLong`] as soon as the
/// output passes `max_len` bytes, so that untrusted input costs work and memory bounded by
/// `max_len` (plus one token's output: the output is checked between tokens) rather than up to
/// 52 times its own length.
///
/// ```
/// use runhook_core::canonical::{canonicalize_bounded, CanonicalError};
///
/// assert_eq!(canonicalize_bounded(b"[1.0, 2.0]", 5)?, b"[1,2]");
/// // `1e308` alone is 309 digits in canonical form.
/// let err = canonicalize_bounded(b"[1e308]", 100).unwrap_err();
/// assert!(matches!(err, CanonicalError::OutputTooLong { max: 100, .. }));
/// # Ok::<(), CanonicalError>(())
/// ```
pub fn canonicalize_bounded(input: &[u8], max_len: usize) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(input.len().min(max_len));
    canonicalize_into_bounded(input, &mut out, max_len, RepeatedKeys::Merge)?;
    Ok(out)
}

/// The canonical form of a body a proxy may have re-serialized, bounded like
/// [`canonicalize_bounded`], for the signature check's fallback: a body that repeats a key
/// within an object is refused ([`CanonicalError::RepeatedKey`]) at once. No JSON
/// re-serializer writes a repeated key, so such a body cannot be a re-serialized delivery;
/// refusing it keeps a forged body from making the check rewrite objects key by key.
///
/// ```
/// use runhook_core::canonical::{canonicalize_reserialized, CanonicalError};
///
/// assert_eq!(canonicalize_reserialized(br#"{"a": 1.0}"#, 100)?, br#"{"a":1}"#);
/// let err = canonicalize_reserialized(br#"{"a":1,"a":2}"#, 100).unwrap_err();
/// assert!(matches!(err, CanonicalError::RepeatedKey { .. }));
/// # Ok::<(), CanonicalError>(())
/// ```
pub fn canonicalize_reserialized(input: &[u8], max_len: usize) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(input.len().min(max_len));
    canonicalize_into_bounded(input, &mut out, max_len, RepeatedKeys::Refuse)?;
    Ok(out)
}

/// Like [`canonicalize`], appending to `out` (whose contents are left as they were on error).
///
/// ```
/// let mut out = Vec::new();
/// runhook_core::canonical::canonicalize_into(b"[1.0, NaN]", &mut out)?;
/// assert_eq!(out, b"[1,NaN]");
/// # Ok::<(), runhook_core::canonical::CanonicalError>(())
/// ```
pub fn canonicalize_into(input: &[u8], out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    canonicalize_into_bounded(input, out, usize::MAX, RepeatedKeys::Merge)
}

fn canonicalize_into_bounded(
    input: &[u8],
    out: &mut Vec<u8>,
    max_len: usize,
    repeated_keys: RepeatedKeys,
) -> Result<(), CanonicalError> {
    let before = out.len();
    let result = write::write_canonical(input, out, max_len, repeated_keys);
    if let Err(error) = result {
        out.truncate(before);
        // Python decodes the whole body before parsing it: an invalid byte anywhere wins.
        if let Err(e) = std::str::from_utf8(input) {
            return Err(CanonicalError::InvalidUtf8 {
                offset: e.valid_up_to(),
            });
        }
        return Err(error);
    }
    Ok(())
}

/// The exact text of `json.dumps(json.loads(input), separators=(",", ":"), sort_keys=True)`
/// in Python (3.11 and later; `ensure_ascii` left on): the body Browser Use signs.
///
/// * keys are sorted by code point in every object; a repeated key keeps its last value;
/// * strings are pure ASCII: `\"`, `\\`, `\n \r \t \b \f`, every other character outside
///   `0x20..=0x7e` as `\uxxxx` (lowercase hex), astral characters as a surrogate pair; a lone
///   surrogate escape is kept (Python accepts it here);
/// * integers exact (`-0` is `0`; more than [`MAX_INT_DIGITS`] digits is an error); floats as
///   Python's `repr` (`5.0`, `1e-05`, `1e+16`), overflow as `Infinity`; `NaN`, `Infinity`,
///   `-Infinity` kept;
/// * one leading UTF-8 byte order mark is skipped, as `json.loads` does for bytes; bodies in
///   UTF-16 or UTF-32 (which `json.loads` would detect) are refused as not UTF-8 JSON;
/// * nesting deeper than [`MAX_DEPTH`] is an error.
///
/// Unlike [`canonicalize`], this builds a small tree of the document (objects must be sorted):
/// bound it with [`canonicalize_sorted_bounded`] on untrusted input.
///
/// ```
/// use runhook_core::canonical::canonicalize_sorted;
///
/// let body = r#"{ "type": "test", "payload": {"b": 5.0, "a": "caf\u00e9 ☕"}, "n": 1E20 }"#;
/// assert_eq!(
///     canonicalize_sorted(body.as_bytes())?,
///     br#"{"n":1e+20,"payload":{"a":"caf\u00e9 \u2615","b":5.0},"type":"test"}"#
/// );
/// # Ok::<(), runhook_core::canonical::CanonicalError>(())
/// ```
pub fn canonicalize_sorted(input: &[u8]) -> Result<Vec<u8>, CanonicalError> {
    canonicalize_sorted_bounded(input, usize::MAX)
}

/// Like [`canonicalize_sorted`], but gives up with [`CanonicalError::OutputTooLong`] once the
/// output would pass `max_len` bytes (checked between tokens).
///
/// ```
/// use runhook_core::canonical::{canonicalize_sorted_bounded, CanonicalError};
///
/// assert_eq!(canonicalize_sorted_bounded(br#"{"b":1,"a":2}"#, 64)?, br#"{"a":2,"b":1}"#);
/// let err = canonicalize_sorted_bounded(br#"["\u00e9\u00e9\u00e9"]"#, 8).unwrap_err();
/// assert!(matches!(err, CanonicalError::OutputTooLong { max: 8, .. }));
/// # Ok::<(), CanonicalError>(())
/// ```
pub fn canonicalize_sorted_bounded(
    input: &[u8],
    max_len: usize,
) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(input.len().min(max_len));
    sorted_into(input, &mut out, max_len)?;
    Ok(out)
}

/// Writes the sorted-key form of `input` to `out` (nothing unless it all parses): what
/// [`canonicalize_sorted_bounded`] returns, without a buffer of its own when `out` is a MAC.
pub(crate) fn sorted_into(
    input: &[u8],
    out: &mut impl sorted::Out,
    max_len: usize,
) -> Result<(), CanonicalError> {
    let input = input.strip_prefix(b"\xef\xbb\xbf").unwrap_or(input);
    sorted::write_sorted(input, out, max_len).map_err(|error| {
        // Python decodes the whole body before parsing it: an invalid byte anywhere wins.
        match std::str::from_utf8(input) {
            Err(e) => CanonicalError::InvalidUtf8 {
                offset: e.valid_up_to(),
            },
            Ok(_) => error,
        }
    })
}
