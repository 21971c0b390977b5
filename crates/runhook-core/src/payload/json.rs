//! Reading a body into a typed payload: strict `serde_json` on the fast path, Python-compatible
//! lenient parsing only where the body needs it.
//!
//! Genuine bodies may hold what strict JSON parsers refuse or round: Skyvern's Python emits
//! `NaN`, `Infinity` and `-Infinity`, and integers of any size. Such a body is read through
//! [`crate::canonical::parse_lenient`], which represents those values as documented there. Every
//! other body goes straight through `serde_json::from_slice`, so leniency costs nothing on the
//! common path.
//!
//! Nesting: `serde_json` stops at 128 levels to keep its recursion off the end of the stack;
//! the lenient reader goes to [`MAX_DEPTH`](crate::canonical::MAX_DEPTH) levels, as Python
//! does. Turning so deep a value into `T` recurses once per level with large frames (about
//! 1 KiB each in a release build, 4 KiB or more in a debug one: more than a 2 MiB thread stack
//! holds at 1000 levels), so a value deeper than 128 levels is turned into `T` on a thread of
//! its own whose stack is sized for its depth.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::PayloadError;

/// Values nested deeper than this are deserialized on a thread with a stack sized for them:
/// `serde_json`'s own recursion limit, which its strict path already handles on any stack.
const INLINE_DEPTH: usize = 128;
/// Stack reserved per level of nesting on that thread: ample for unoptimized builds. Only the
/// pages actually used are ever committed.
const STACK_PER_LEVEL: usize = 16 * 1024;
/// Stack reserved on that thread besides the levels.
const STACK_BASE: usize = 1024 * 1024;

/// Deserializes `body` into `T`, leniently where the body needs it (see the module docs).
pub fn from_body<T: DeserializeOwned + Send>(body: &[u8]) -> Result<T, PayloadError> {
    match strictly(body) {
        Some(read) => read,
        None => leniently(body),
    }
}

/// A body read by [`object_from_body_either`]: strictly, into a type that may borrow from
/// the body, or through the lenient reader.
#[derive(Debug)]
pub enum Read<S, L> {
    /// The body is strict JSON (no `NaN`, no integer that may not fit in 64 bits).
    Strict(S),
    /// The body needed the lenient reader.
    Lenient(L),
}

/// Like [`object_from_body`], but a strict-JSON body is read into `S`, which may borrow from
/// `body` (`&RawValue`, `&str`), and only a body that needs the lenient reader into `L`. This
/// is how a summary learns where a field lies in the body without a second parse.
pub fn object_from_body_either<'a, S, L>(body: &'a [u8]) -> Result<Read<S, L>, PayloadError>
where
    S: Deserialize<'a>,
    L: DeserializeOwned + Send,
{
    if !starts_an_object(body) {
        return not_an_object(body);
    }
    match strictly::<S>(body) {
        Some(read) => read.map(Read::Strict),
        None => leniently(body).map(Read::Lenient),
    }
}

/// The whole of `body` as one strict-JSON value (no `NaN`, no integer that may not fit in 64
/// bits), or `None` when it is not.
pub fn strict_value(body: &[u8]) -> Option<&serde_json::value::RawValue> {
    strictly(body)?.ok()
}

/// The strict reading of `body`: `None` when the body may be fine for Python but needs the
/// lenient reader (a long integer, `NaN`, a repeated key, a number beyond f64, ...).
fn strictly<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Option<Result<T, PayloadError>> {
    if has_long_digit_run(body) {
        return None;
    }
    match serde_json::from_slice::<T>(body) {
        Ok(value) => Some(Ok(value)),
        // A type error in well-formed JSON is the answer; anything else may be fine for
        // Python, or needs the lenient reader's precise reason.
        Err(e)
            if e.classify() == serde_json::error::Category::Data
                && !e.to_string().starts_with("duplicate field") =>
        {
            // Only now pay for tracking the path, to say which field is wrong.
            let mut de = serde_json::Deserializer::from_slice(body);
            Some(Err(
                match serde_path_to_error::deserialize::<_, T>(&mut de) {
                    Err(e) => data_error(e),
                    Ok(_) => PayloadError::NotJson {
                        reason: e.to_string(),
                    },
                },
            ))
        }
        Err(_) => None,
    }
}

/// Reads `body` through the lenient reader into `T`.
fn leniently<T: DeserializeOwned + Send>(body: &[u8]) -> Result<T, PayloadError> {
    let value = crate::canonical::parse_lenient(body).map_err(|e| PayloadError::NotJson {
        reason: e.to_string(),
    })?;
    let levels = depth(&value);
    if levels <= INLINE_DEPTH {
        return serde_path_to_error::deserialize(value).map_err(data_error);
    }
    // The value (whose drop recurses too) moves to the thread and is consumed there.
    let stack = STACK_BASE + levels * STACK_PER_LEVEL;
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("runhook-deep-json".into())
            .stack_size(stack)
            .spawn_scoped(scope, move || {
                serde_path_to_error::deserialize(value).map_err(data_error)
            })
            .map_err(|e| PayloadError::NotJson {
                reason: format!("nested {levels} levels deep; no thread to read it on: {e}"),
            })?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// How deeply `value` nests arrays and objects (`1` for `[]`, `0` for a scalar), found
/// without recursion.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((value, level)) = stack.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(level);
                stack.extend(items.iter().map(|v| (v, level + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(level);
                stack.extend(map.values().map(|v| (v, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Deserializes `body`, which must be a JSON object, into `T`: any other JSON document is
/// [`PayloadError::NotAnObject`] (serde would otherwise read an array into a struct's fields).
pub fn object_from_body<T: DeserializeOwned + Send>(body: &[u8]) -> Result<T, PayloadError> {
    if !starts_an_object(body) {
        return not_an_object(body);
    }
    from_body(body)
}

/// Whether the first byte after leading whitespace opens an object.
fn starts_an_object(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b'{')
}

/// The error for a body that is not an object: [`PayloadError::NotAnObject`] when it is JSON,
/// else why it is not JSON.
fn not_an_object<T>(body: &[u8]) -> Result<T, PayloadError> {
    match from_body::<serde::de::IgnoredAny>(body) {
        Ok(_) => Err(PayloadError::NotAnObject),
        Err(err) => Err(err),
    }
}

/// Whether `body` holds 19 or more consecutive ASCII digits that may be a number: the only way
/// an integer that may not fit in 64 bits (which strict parsing would round to a float) can
/// appear. A run right after a byte no number follows (a letter, `_`, `"`: `wr_…`, `"…`) is
/// inside a string and does not count (ids such as snowflakes have 19 digits); other runs
/// inside strings still match, and merely take the lenient path.
fn has_long_digit_run(body: &[u8]) -> bool {
    const RUN: usize = 19;
    // Look at every RUN-th byte: any run of RUN digits covers one of them. Only around a digit
    // found there do we count the run.
    let mut i = RUN - 1;
    while i < body.len() {
        if body[i].is_ascii_digit() {
            let start = body[..i]
                .iter()
                .rposition(|b| !b.is_ascii_digit())
                .map_or(0, |p| p + 1);
            let end = body[i..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map_or(body.len(), |p| i + p);
            let may_be_a_number = start == 0 || may_precede_digits_of_a_number(body[start - 1]);
            if end - start >= RUN && may_be_a_number {
                return true;
            }
            i = end + RUN;
        } else {
            i += RUN;
        }
    }
    false
}

/// Whether the digits of a JSON number may follow `byte`: a separator, whitespace, a sign, a
/// decimal point or an exponent's `e`.
fn may_precede_digits_of_a_number(byte: u8) -> bool {
    matches!(
        byte,
        b':' | b',' | b'[' | b' ' | b'\t' | b'\r' | b'\n' | b'-' | b'+' | b'.' | b'e' | b'E'
    )
}

fn data_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> PayloadError {
    let message = e.inner().to_string();
    let message = match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message,
    };
    let path = e.path().to_string();
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`');
        let field = if path == "." {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return PayloadError::MissingField { field };
    }
    if path == "." {
        if message.starts_with("invalid type") {
            return PayloadError::NotAnObject;
        }
        return PayloadError::NotJson { reason: message };
    }
    PayloadError::InvalidField {
        path,
        reason: message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_levels_of_arrays_and_objects() {
        let value: Value = serde_json::from_str(r#"{"a":[1,{"b":[[]]}],"c":{}}"#).unwrap();
        assert_eq!(depth(&value), 5);
        assert_eq!(depth(&Value::Null), 0);
        assert_eq!(depth(&serde_json::json!([])), 1);
    }

    #[test]
    fn long_digit_runs_are_found_anywhere() {
        assert!(!has_long_digit_run(
            b"{\"run_id\":\"tsk_v2_490440779503357994\"}"
        ));
        assert!(has_long_digit_run(b"{\"n\":1234567890123456789}"));
        assert!(has_long_digit_run(b"1234567890123456789"));
        assert!(has_long_digit_run(b"[12345678901234567890123]"));
        assert!(!has_long_digit_run(b"123456789012345678"));
        assert!(!has_long_digit_run(b""));
        // Inside a string: after a letter, `_` or the opening quote.
        assert!(!has_long_digit_run(b"{\"id\":\"wr_1796689967396163778\"}"));
        assert!(!has_long_digit_run(b"{\"id\":\"1796689967396163778\"}"));
        assert!(!has_long_digit_run(b"{\"id\":\"run1796689967396163778\"}"));
        // Where a number's digits may follow: a separator, a sign, a point, an exponent.
        for before in [":", ",", "[", " ", "\n", "-", "+", ".", "e", "E"] {
            let body = format!("[0{before}1796689967396163778]");
            assert!(has_long_digit_run(body.as_bytes()), "after {before:?}");
        }
        for len in 0..64 {
            for at in 0..8 {
                let mut body = vec![b' '; at];
                body.extend(std::iter::repeat_n(b'7', len));
                body.extend_from_slice(b" x");
                assert_eq!(has_long_digit_run(&body), len >= 19, "len {len} at {at}");
            }
        }
    }
}
