//! The sorted-key form (Browser Use's), differentially against `serde_json`.
//!
//! For every input, `canonicalize_sorted` never panics, and a result is pure printable ASCII,
//! a fixed point (canonicalizing it again changes nothing), with every object's keys strictly
//! increasing by code point.
//!
//! Whenever `serde_json` accepts the input (standard JSON, nested at most 128 deep), Python's
//! `json.loads` accepts it too, so `canonicalize_sorted` must succeed, and its output must
//! parse back (with `serde_json`) to the input's value: the same keys (a repeated key keeping
//! its last value) and the same numbers as doubles (`serde_json` reads `-0` and integers
//! beyond 64 bits as doubles; Python keeps them as integers, which compare equal as doubles).
#![no_main]

use libfuzzer_sys::fuzz_target;
use runhook_core::canonical::canonicalize_sorted;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let sorted = canonicalize_sorted(data);
    if let Err(err) = &sorted {
        let _ = (err.to_string(), err.python_exception(), err.offset());
    }
    if let Ok(out) = &sorted {
        assert!(
            out.iter().all(|b| (0x20..0x7f).contains(b)),
            "the sorted form is not printable ASCII"
        );
        let again = canonicalize_sorted(out).expect("the sorted form does not canonicalize");
        assert_eq!(&again, out, "the sorted form is not a fixed point");
    }

    let Ok(reference) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let out = match sorted {
        Ok(out) => out,
        Err(err) => panic!("serde_json accepts what canonicalize_sorted refuses: {err}"),
    };
    let back: Value = serde_json::from_slice(&out).expect("the sorted form is not JSON");
    assert!(
        keys_sorted(&back),
        "keys out of order in {}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        same(&back, &reference),
        "sorted form {} is not the input's value {reference}",
        String::from_utf8_lossy(&out)
    );
});

/// Every object's keys strictly increasing (a `String`'s order is its code points' order).
fn keys_sorted(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().all(keys_sorted),
        Value::Object(map) => {
            map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b) && map.values().all(keys_sorted)
        }
        _ => true,
    }
}

/// Equality of values with key order ignored and numbers compared as doubles.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, va)| y.get(key).is_some_and(|vb| same(va, vb)))
        }
        (Value::Number(x), Value::Number(y)) => {
            let (p, q) = (x.as_f64(), y.as_f64());
            p.is_some() && p == q
        }
        _ => a == b,
    }
}
