//! Edge cases of the canonicalizer beyond the vectors: repeated keys, lone surrogates that a
//! repeated key removes, nesting and size limits, error kinds and offsets, and no panic on
//! any prefix or corruption of a realistic body.

use runhook_core::canonical::{
    canonicalize, canonicalize_bounded, canonicalize_into, CanonicalError, PythonException,
    SyntaxError, MAX_DEPTH, MAX_INT_DIGITS,
};

const RUN: &[u8] = include_bytes!("../../../testdata/skyvern-run-pretty.json");

fn canon(input: &str) -> String {
    String::from_utf8(canonicalize(input.as_bytes()).unwrap()).unwrap()
}

fn kind(input: &[u8]) -> PythonException {
    canonicalize(input).unwrap_err().python_exception()
}

#[test]
fn repeated_keys_keep_first_position_and_last_value() {
    assert_eq!(canon(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
    assert_eq!(canon(r#"{"a":1,"\u0061":[2.0]}"#), r#"{"a":[2]}"#);
    assert_eq!(canon(r#"{"x/y":1,"x\/y":2}"#), r#"{"x/y":2}"#);
    assert_eq!(
        canon(
            r#"{"o":{"k":1,"k":{"z":0,"z":1}},"p":[{"q":1,"q":2}],"o":{"k":{"z":0,"y":1,"z":2}}}"#
        ),
        r#"{"o":{"k":{"z":2,"y":1}},"p":[{"q":2}]}"#
    );
    // Nested rewrites inside a value that is itself replaced.
    assert_eq!(
        canon(r#"{"a":{"b":1,"b":2},"c":3,"a":{"d":4,"d":5}}"#),
        r#"{"a":{"d":5},"c":3}"#
    );
}

#[test]
fn repeated_keys_in_large_objects() {
    // Past the linear-search threshold the keys are hashed; the result must not change.
    let mut input = String::from("{");
    let mut expected = String::from("{");
    for i in 0..300 {
        input.push_str(&format!("\"k{i}\":{i},"));
        expected.push_str(&format!(
            "\"k{i}\":{},",
            if i % 7 == 0 { -(i as i64) } else { i as i64 }
        ));
    }
    for i in (0..300).step_by(7) {
        input.push_str(&format!("\"\\u00{:02x}{i}\":{}.0,", b'k', -(i as i64)));
    }
    input.pop();
    input.push('}');
    expected.pop();
    expected.push('}');
    assert_eq!(canon(&input), expected);

    let many_same: String = format!("{{{}\"k\":\"last\"}}", "\"k\":0,".repeat(20_000));
    assert_eq!(canon(&many_same), r#"{"k":"last"}"#);
}

#[test]
fn lone_surrogates_only_count_if_they_survive() {
    // Python parses these fine; only encoding the final text to UTF-8 fails, so a lone
    // surrogate in a value that a repeated key replaces is harmless.
    assert_eq!(canon(r#"{"a":"\ud800","a":1}"#), r#"{"a":1}"#);
    assert_eq!(
        canon(r#"{"a":{"b":["\udfff"]},"c":0,"a":2}"#),
        r#"{"a":2,"c":0}"#
    );
    assert_eq!(
        canonicalize(br#"{"a":1,"b":"x\udc00","a":2}"#),
        Err(CanonicalError::LoneSurrogate {
            offset: 13,
            code: 0xdc00
        })
    );
    // A key with a lone surrogate that is repeated: still present once.
    assert_eq!(
        kind(br#"{"\ud800":1,"\ud800":2}"#),
        PythonException::UnicodeEncodeError
    );
    // Reported at the first surviving one.
    assert_eq!(
        canonicalize(br#"{"a":"\ud801","b":"\ud802","a":0}"#)
            .unwrap_err()
            .offset(),
        19
    );
    // Pairs join; a high surrogate followed by a non-low escape does not.
    assert_eq!(canon(r#""\ud83d\ude00""#), "\"😀\"");
    assert_eq!(
        canonicalize(br#""\ud83d\u0041""#),
        Err(CanonicalError::LoneSurrogate {
            offset: 1,
            code: 0xd83d
        })
    );
    assert_eq!(
        kind(br#""\ude00\ud83d""#),
        PythonException::UnicodeEncodeError
    );
}

#[test]
fn strings_are_written_the_python_way() {
    let mut input = String::from("\"");
    let mut expected = String::from("\"");
    for c in 0u32..0x20 {
        input.push_str(&format!("\\u{c:04X}"));
        expected.push_str(match c {
            0x08 => "\\b",
            0x09 => "\\t",
            0x0a => "\\n",
            0x0c => "\\f",
            0x0d => "\\r",
            _ => "",
        });
        if ![0x08, 0x09, 0x0a, 0x0c, 0x0d].contains(&c) {
            expected.push_str(&format!("\\u{c:04x}"));
        }
    }
    input.push_str(r#"\u0022\u005c\u002f\/\u007f\u2028é\u00e9"#);
    input.push('"');
    expected.push_str("\\\"\\\\//\u{7f}\u{2028}éé\"");
    assert_eq!(canon(&input), expected);
}

#[test]
fn numbers() {
    let cases = [
        ("-0", "0"),
        ("-0.0", "0"),
        ("0e0", "0"),
        ("1E2", "100"),
        ("1e23", "99999999999999991611392"),
        ("1e400", "Infinity"),
        ("-1e400", "-Infinity"),
        ("2.4e-324", "0"),
        ("4.9e-324", "5e-324"),
        ("0.1e1", "1"),
        ("100e-3", "0.1"),
        ("10E-6", "1e-05"),
        (
            "123456789012345678901234567890",
            "123456789012345678901234567890",
        ),
        (
            "-123456789012345678901234567890",
            "-123456789012345678901234567890",
        ),
        ("0.000100", "0.0001"),
        ("1.5e300", &format!("{:.0}", 1.5e300)),
        ("NaN", "NaN"),
        ("-Infinity", "-Infinity"),
    ];
    for (input, expected) in cases {
        assert_eq!(canon(input), expected, "{input}");
    }
}

#[test]
fn integer_digit_limit() {
    let ok = "7".repeat(MAX_INT_DIGITS);
    assert_eq!(canon(&ok), ok);
    assert_eq!(canon(&format!("-{ok}")), format!("-{ok}"));
    let long = format!("[-{}]", "7".repeat(MAX_INT_DIGITS + 1));
    assert_eq!(
        canonicalize(long.as_bytes()),
        Err(CanonicalError::IntegerTooLong {
            offset: 1,
            digits: MAX_INT_DIGITS + 1
        })
    );
    // A float literal has no digit limit (Python converts it with `float()`).
    let float = format!("{}.5e-4800", "7".repeat(5000));
    let value: f64 = "7.77777777777777777777777777777e199".parse().unwrap();
    assert_eq!(canon(&float), format!("{value:.0}"));
}

#[test]
fn nesting_is_bounded_without_recursion() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert_eq!(canon(&deep(MAX_DEPTH)), deep(MAX_DEPTH));
    assert_eq!(
        canonicalize(deep(MAX_DEPTH + 1).as_bytes()),
        Err(CanonicalError::TooDeep {
            offset: MAX_DEPTH,
            max: MAX_DEPTH
        })
    );
    for input in [
        "[".repeat(100_000),
        "{\"a\":".repeat(100_000),
        format!("{}{}", "[{\"a\":".repeat(60_000), "1}]".repeat(60_000)),
    ] {
        assert_eq!(kind(input.as_bytes()), PythonException::RecursionError);
    }
}

#[test]
fn what_python_rejects() {
    let syntax = |input: &[u8], offset: usize, reason: SyntaxError| {
        assert_eq!(
            canonicalize(input),
            Err(CanonicalError::Syntax { offset, reason }),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    };
    syntax(b"", 0, SyntaxError::ExpectedValue);
    syntax(b"  ", 2, SyntaxError::ExpectedValue);
    syntax("\u{feff}{}".as_bytes(), 0, SyntaxError::ExpectedValue);
    syntax(b"{} x", 3, SyntaxError::ExtraData);
    syntax(b"{}{}", 2, SyntaxError::ExtraData);
    syntax(b"\x0c{}", 0, SyntaxError::ExpectedValue);
    syntax("{}\u{a0}".as_bytes(), 2, SyntaxError::ExtraData);
    syntax(b"[1,]", 3, SyntaxError::ExpectedValue);
    syntax(br#"{"a":1,}"#, 7, SyntaxError::ExpectedKey);
    syntax(br#"{'a':1}"#, 1, SyntaxError::ExpectedKey);
    syntax(br#"{"a" 1}"#, 5, SyntaxError::ExpectedColon);
    syntax(br#"{"a":1 "b":2}"#, 7, SyntaxError::ExpectedCommaOrBrace);
    syntax(b"[1 2]", 3, SyntaxError::ExpectedCommaOrBracket);
    syntax(b"[1}", 2, SyntaxError::ExpectedCommaOrBracket);
    syntax(br#""abc"#, 0, SyntaxError::UnterminatedString);
    syntax(br#"["a\"]"#, 1, SyntaxError::UnterminatedString);
    syntax(b"\"a\tb\"", 2, SyntaxError::ControlCharacter(b'\t'));
    syntax(br#""\x""#, 1, SyntaxError::InvalidEscape);
    syntax(br#""\u12G4""#, 2, SyntaxError::InvalidUnicodeEscape);
    syntax(br#""\u12""#, 2, SyntaxError::InvalidUnicodeEscape);
    for bad in [
        "nan", "inf", "-NaN", "+1", "01", "-01", ".5", "1.", "1.e3", "1e", "1e+", "0x10", "tru",
        "True", "NULL", "infinity", "[,1]", "{,}", "[", "{", "\"",
    ] {
        assert_eq!(
            kind(bad.as_bytes()),
            PythonException::JsonDecodeError,
            "{bad}"
        );
    }
    assert_eq!(
        canonicalize(b"{\"a\":\"\xff\"}"),
        Err(CanonicalError::InvalidUtf8 { offset: 6 })
    );
    assert_eq!(
        kind(b"\"\xed\xa0\x80\""),
        PythonException::UnicodeDecodeError
    );
}

#[test]
fn top_level_scalars_and_whitespace() {
    assert_eq!(canon(" \t\r\n\"x\" \n"), "\"x\"");
    assert_eq!(
        canon("\r\n[ 1 , 2.50 ,\ttrue,null ]\r\n"),
        "[1,2.5,true,null]"
    );
    assert_eq!(canon("false"), "false");
    assert_eq!(canon("Infinity"), "Infinity");
}

#[test]
fn output_buffer_is_untouched_on_error() {
    let mut out = b"kept".to_vec();
    assert!(canonicalize_into(br#"{"a":[1,2,"#, &mut out).is_err());
    assert_eq!(out, b"kept");
    canonicalize_into(b"[1.0]", &mut out).unwrap();
    assert_eq!(out, b"kept[1]");
}

#[test]
fn no_panic_on_any_prefix_or_corruption_of_a_real_body() {
    let full = canonicalize(RUN).unwrap();
    assert!(full.len() < RUN.len());
    // Every ninth prefix (each cuts the body in a different token), and the last 64 bytes.
    let ends = (0..RUN.len()).step_by(9).chain(RUN.len() - 64..RUN.len());
    for end in ends {
        let prefix = &RUN[..end];
        let _ = canonicalize(prefix);
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..1000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut body = full.clone();
        let at = (seed % body.len() as u64) as usize;
        body[at] = (seed >> 32) as u8;
        if let Ok(again) = canonicalize(&body) {
            // Whatever is accepted is a fixed point.
            assert_eq!(canonicalize(&again).unwrap(), again);
        }
    }
}

#[test]
fn bounded_canonicalization_stops_at_the_bound() {
    // 100 000 numbers `1e308`: 600 KB of input, 31 MB of canonical output.
    let input = format!("[{}]", vec!["1e308"; 100_000].join(","));
    let max = 64 * 1024;
    let err = canonicalize_bounded(input.as_bytes(), max).unwrap_err();
    match err {
        CanonicalError::OutputTooLong { max: bound, offset } => {
            assert_eq!(bound, max);
            // It stopped near where the output passed the bound, not at the end.
            assert!(
                offset < 6 * (max / 309 + 2),
                "stopped at input byte {offset}"
            );
        }
        other => panic!("expected OutputTooLong, got {other:?}"),
    }
    assert_eq!(err.python_exception(), PythonException::NotRaised);

    // Within the bound, and exactly at it: the same bytes as unbounded.
    let canonical = canonicalize(RUN).unwrap();
    assert_eq!(
        canonicalize_bounded(RUN, canonical.len()).unwrap(),
        canonical
    );
    assert!(matches!(
        canonicalize_bounded(RUN, canonical.len() - 1),
        Err(CanonicalError::OutputTooLong { .. })
    ));
    // Other errors are unchanged by a bound.
    assert_eq!(
        canonicalize_bounded(b"[1,", 1000).unwrap_err(),
        canonicalize(b"[1,").unwrap_err()
    );
    // An object that repeats a key is judged on what it writes before collapsing it
    // (`{"a":1,"a":2` is 12 bytes, the result 7).
    let repeated = br#"{"a":1,"a":2}"#;
    assert!(matches!(
        canonicalize_bounded(repeated, 11),
        Err(CanonicalError::OutputTooLong { .. })
    ));
    assert_eq!(canonicalize_bounded(repeated, 12).unwrap(), br#"{"a":2}"#);
}
