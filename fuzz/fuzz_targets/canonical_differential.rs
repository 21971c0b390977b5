//! The canonicalizer, differentially against `serde_json` (with exact float parsing).
//!
//! For every input:
//! * `canonicalize` and `parse_lenient` never panic and agree on success;
//! * a canonical output is UTF-8 and a fixed point: canonicalizing it again changes nothing;
//! * `canonicalize_into` leaves the buffer as it was on error and appends exactly the canonical
//!   bytes on success.
//!
//! Whenever `serde_json` accepts the input (standard JSON, nested at most 128 deep), Python's
//! `json.loads` accepts it too, so `canonicalize` must succeed, and its output must parse back
//! (with `serde_json`) to the input's value after Skyvern's normalization (whole floats become
//! integers), keys in the same order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runhook_core::canonical::{canonicalize, canonicalize_into, parse_lenient};
use serde_json::{Number, Value};

/// 2⁶³, where `i64` ends.
const TWO_63: f64 = 9_223_372_036_854_775_808.0;

fuzz_target!(|data: &[u8]| {
    let canonical = canonicalize(data);
    let lenient = parse_lenient(data);
    assert_eq!(
        canonical.is_ok(),
        lenient.is_ok(),
        "canonicalize and parse_lenient disagree"
    );
    if let (Err(a), Err(b)) = (&canonical, &lenient) {
        assert_eq!(a, b);
        let _ = (a.to_string(), a.python_exception(), a.offset());
    }

    let mut out = b"prefix".to_vec();
    let appended = canonicalize_into(data, &mut out);
    match &canonical {
        Ok(canonical) => {
            assert!(appended.is_ok());
            assert_eq!(&out[6..], &canonical[..]);
            std::str::from_utf8(canonical).expect("canonical output is not UTF-8");
            let again = canonicalize(canonical).expect("canonical output does not canonicalize");
            assert_eq!(&again, canonical, "canonicalization is not idempotent");
            assert_eq!(
                parse_lenient(canonical).ok(),
                lenient.as_ref().ok().cloned(),
                "the canonical form reads as another value"
            );
        }
        Err(_) => {
            assert!(appended.is_err());
            assert_eq!(
                out, b"prefix",
                "a failed canonicalize_into left bytes behind"
            );
        }
    }

    let Ok(reference) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let canonical = match canonical {
        Ok(canonical) => canonical,
        Err(err) => panic!("serde_json accepts what canonicalize refuses: {err}"),
    };
    let back: Value = serde_json::from_slice(&canonical).expect("canonical output is not JSON");
    let expected = normalize(reference);
    assert!(
        same_in_order(&back, &expected),
        "canonical form {} is not the input's value {}",
        String::from_utf8_lossy(&canonical),
        expected
    );
});

/// Skyvern's normalization: a float with no fractional part becomes an integer. Outside the
/// 64-bit ranges `serde_json` reads an integer as a float, on both sides, so those stay floats.
fn normalize(value: Value) -> Value {
    match value {
        Value::Number(n) => Value::Number(match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 => whole(f).unwrap_or(n),
            _ => n,
        }),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, normalize(v))).collect())
        }
        other => other,
    }
}

/// `f` (a whole number) as a `serde_json` integer, when it fits one.
fn whole(f: f64) -> Option<Number> {
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    if (0.0..TWO_64).contains(&f) {
        Some(Number::from(f as u64))
    } else if (-TWO_63..0.0).contains(&f) {
        Some(Number::from(f as i64))
    } else {
        None
    }
}

/// Equality that also compares object key order (`Value`'s `==` ignores it).
fn same_in_order(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_in_order(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_in_order(va, vb))
        }
        (Value::Number(x), Value::Number(y)) => {
            let (p, q) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            match (x.is_f64(), y.is_f64()) {
                (false, false) => x == y,
                // Bit for bit (there is no NaN in serde_json).
                (true, true) => p.to_bits() == q.to_bits(),
                // Only at the edges of the 64-bit ranges can one side hold an integer and the
                // other a float: serde_json reads an integer literal beyond them as a float.
                _ => p == q && p.abs() >= TWO_63,
            }
        }
        _ => a == b,
    }
}
