//! A lenient parser into `serde_json::Value`, for the provider payload models.

use serde_json::{Map, Number, Value};

use super::error::CanonicalError;
use super::scan::{parse, FloatLiteral, Sink, Str, Word};

/// Parses any body [`canonicalize`](super::canonicalize) accepts into a [`serde_json::Value`].
///
/// The value is the payload Skyvern meant, after its normalization, with what
/// `serde_json::Value` cannot hold mapped as follows:
///
/// | in the body | in the `Value` |
/// |---|---|
/// | `NaN`, `Infinity`, `-Infinity` | the strings `"NaN"`, `"Infinity"`, `"-Infinity"` |
/// | an integer outside `i64`/`u64` (also a whole float such as `1e20`) | a string of its exact decimal digits |
/// | a whole float (`3.0`, `-0.0`) | an integer (`3`, `0`) |
/// | a repeated key | its last value |
///
/// Nothing is lost: each mapped value keeps its exact text. Everything else is as usual;
/// objects come out in the order of serde_json's `Map`: sorted by key, or the body's order
/// where serde_json's `preserve_order` feature is on (runhook does not turn it on).
/// Errors are those of [`canonicalize`](super::canonicalize).
///
/// ```
/// use runhook_core::canonical::parse_lenient;
/// use serde_json::json;
///
/// let value = parse_lenient(br#"{"score": NaN, "steps": 3.0, "id": 123456789012345678901234567890}"#)?;
/// assert_eq!(
///     value,
///     json!({"score": "NaN", "steps": 3, "id": "123456789012345678901234567890"})
/// );
/// # Ok::<(), runhook_core::canonical::CanonicalError>(())
/// ```
pub fn parse_lenient(input: &[u8]) -> Result<Value, CanonicalError> {
    build(&super::canonicalize(input)?)
}

enum Open {
    Array(Vec<Value>),
    Object(Map<String, Value>, String),
}

/// Builds the value of a canonical text (no repeated key, no lone surrogate), iteratively.
fn build(canonical: &[u8]) -> Result<Value, CanonicalError> {
    let mut builder = Builder {
        stack: Vec::new(),
        root: Value::Null,
    };
    parse(canonical, &mut builder)?;
    Ok(builder.root)
}

struct Builder {
    stack: Vec<Open>,
    root: Value,
}

impl Builder {
    fn add(&mut self, value: Value) {
        match self.stack.last_mut() {
            Some(Open::Array(items)) => items.push(value),
            Some(Open::Object(map, pending)) => {
                map.insert(std::mem::take(pending), value);
            }
            None => self.root = value,
        }
    }
}

impl Sink for Builder {
    fn begin(&mut self, object: bool, _offset: usize) {
        self.stack.push(if object {
            Open::Object(Map::new(), String::new())
        } else {
            Open::Array(Vec::new())
        });
    }

    fn separator(&mut self, _object: bool) {}

    fn end(&mut self, _object: bool, _offset: usize) {
        let value = match self.stack.pop() {
            Some(Open::Object(map, _)) => Value::Object(map),
            Some(Open::Array(items)) => Value::Array(items),
            None => Value::Null,
        };
        self.add(value);
    }

    fn key(&mut self, key: Str<'_>) {
        if let Some(Open::Object(_, pending)) = self.stack.last_mut() {
            *pending = decode(key);
        }
    }

    fn string(&mut self, value: Str<'_>) {
        self.add(Value::String(decode(value)));
    }

    fn integer(&mut self, literal: &[u8], _offset: usize) {
        self.add(integer(&String::from_utf8_lossy(literal)));
    }

    fn float(&mut self, literal: FloatLiteral<'_>) {
        let literal = String::from_utf8_lossy(literal.text);
        let value = literal
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or_else(|| Value::String(literal.into_owned()), Value::Number);
        self.add(value);
    }

    fn word(&mut self, word: Word) {
        self.add(match word {
            Word::True => Value::Bool(true),
            Word::False => Value::Bool(false),
            Word::Null => Value::Null,
            Word::NaN | Word::Infinity | Word::NegInfinity => {
                Value::String(word.as_str().to_owned())
            }
        });
    }
}

fn integer(literal: &str) -> Value {
    if let Ok(n) = literal.parse::<i64>() {
        Value::Number(n.into())
    } else if let Ok(n) = literal.parse::<u64>() {
        Value::Number(n.into())
    } else {
        Value::String(literal.to_owned())
    }
}

/// Decodes a string's escapes (a lone surrogate, impossible in a canonical text, becomes
/// U+FFFD).
fn decode(s: Str<'_>) -> String {
    // The raw text is a slice of a `str` cut at ASCII quotes: valid UTF-8.
    let raw = String::from_utf8_lossy(s.raw);
    if !s.escaped {
        return raw.into_owned();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = &*raw;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = &rest[at + 1..];
        let mut chars = escape.chars();
        let consumed = match chars.next() {
            Some('b') => {
                out.push('\u{8}');
                1
            }
            Some('f') => {
                out.push('\u{c}');
                1
            }
            Some('n') => {
                out.push('\n');
                1
            }
            Some('r') => {
                out.push('\r');
                1
            }
            Some('t') => {
                out.push('\t');
                1
            }
            Some('u') => {
                let code = hex(escape.get(1..5));
                let low = escape
                    .get(5..7)
                    .filter(|&p| p == "\\u")
                    .map(|_| hex(escape.get(7..11)));
                match (code, low) {
                    (0xd800..=0xdbff, Some(low @ 0xdc00..=0xdfff)) => {
                        let joined = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                        out.push(char::from_u32(joined).unwrap_or('\u{fffd}'));
                        11
                    }
                    _ => {
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        5
                    }
                }
            }
            Some(c) => {
                out.push(c);
                c.len_utf8()
            }
            None => 0,
        };
        rest = escape.get(consumed..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

fn hex(digits: Option<&str>) -> u32 {
    digits
        .and_then(|d| u32::from_str_radix(d, 16).ok())
        .unwrap_or(0xfffd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documented_mapping() {
        let value = parse_lenient(
            br#"{"a":[Infinity,-Infinity,1e400,-0.0,0.5,18446744073709551615,-9223372036854775808,18446744073709551616],"a":{"s":"\u00e9\ud83d\ude00\n\"\\\u0001/"}, "b": [1.5e300]}"#,
        )
        .unwrap();
        let big = "150000000000000007875714038280663037305670287166223873237378117326770368698\
                   336229367955706262067179606555666574932581726541378485304064586346718827718\
                   006047427258080138986370560674535069218213508905342985245619991762167855845\
                   146132011197911417021374186888818323008526425717350420829458029818910081024\
                   0";
        assert_eq!(big.len(), 301);
        assert_eq!(value, json!({"a": {"s": "é😀\n\"\\\u{1}/"}, "b": [big]}));
        let value = parse_lenient(b"[Infinity,-Infinity,1e400,-0.0,0.5,18446744073709551615,-9223372036854775808,18446744073709551616]").unwrap();
        assert_eq!(
            value,
            json!([
                "Infinity",
                "-Infinity",
                "Infinity",
                0,
                0.5,
                18446744073709551615u64,
                i64::MIN,
                "18446744073709551616"
            ])
        );
    }

    #[test]
    fn errors_are_those_of_canonicalize() {
        assert!(parse_lenient(br#"{"a":"\udc00"}"#).is_err());
        assert!(parse_lenient(b"[1,]").is_err());
    }
}
