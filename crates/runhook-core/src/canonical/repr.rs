//! Python's `repr` of a float, as `json.dumps` writes a float it has not normalized: `5.0`,
//! `-0.0`, `1e-05`, `1e+16`, `NaN`, `Infinity`.

/// Writes `value` as Python's `json.dumps` does (`float.__repr__`, and the words `NaN`,
/// `Infinity` and `-Infinity`).
///
/// The digits are the shortest that round-trip (ryu's, the same as Python's David Gay mode 0);
/// the layout is Python's: fixed notation when the decimal exponent `e` of `d.ddd × 10^e` is
/// in `-4..16` (with `.0` when there is no fraction), otherwise `d.ddde±XX` with at least two
/// exponent digits.
pub(crate) fn write_python_float(value: f64, out: &mut Vec<u8>) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if value.is_infinite() {
        let word: &[u8] = if value > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        };
        out.extend_from_slice(word);
        return;
    }
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(value).as_bytes();
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (mantissa, exponent) = match text.iter().position(|&b| b == b'e') {
        Some(e) => (&text[..e], parse_exponent(&text[e + 1..])),
        None => (text, 0),
    };
    let (int_part, frac_part) = match mantissa.iter().position(|&b| b == b'.') {
        Some(dot) => (&mantissa[..dot], &mantissa[dot + 1..]),
        None => (mantissa, &[][..]),
    };
    // value = 0.DIGITS × 10^point, once leading zeros are dropped.
    let mut digits: Vec<u8> = int_part.iter().chain(frac_part).copied().collect();
    let mut point = int_part.len() as i64 + exponent;
    let leading = digits.iter().take_while(|&&d| d == b'0').count();
    digits.drain(..leading);
    point -= leading as i64;
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    if negative {
        out.push(b'-');
    }
    if digits.is_empty() {
        out.extend_from_slice(b"0.0");
        return;
    }
    let e = point - 1;
    if (-4..16).contains(&e) {
        write_fixed(&digits, point, out);
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if e < 0 { b'-' } else { b'+' });
        let magnitude = e.unsigned_abs();
        if magnitude < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(magnitude.to_string().as_bytes());
    }
}

/// `0.DIGITS × 10^point` in fixed notation, `.0` added to a whole number.
fn write_fixed(digits: &[u8], point: i64, out: &mut Vec<u8>) {
    if point <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', point.unsigned_abs() as usize));
        out.extend_from_slice(digits);
    } else {
        let point = point as usize;
        if point >= digits.len() {
            out.extend_from_slice(digits);
            out.extend(std::iter::repeat_n(b'0', point - digits.len()));
            out.extend_from_slice(b".0");
        } else {
            out.extend_from_slice(&digits[..point]);
            out.push(b'.');
            out.extend_from_slice(&digits[point..]);
        }
    }
}

/// ryu's exponent (`-7`, `22`): always a small valid integer.
fn parse_exponent(text: &[u8]) -> i64 {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(value: f64) -> String {
        let mut out = Vec::new();
        write_python_float(value, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn as_python_writes_them() {
        // Each right-hand side is what CPython 3.11's repr() prints.
        let cases = [
            (5.0, "5.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (0.1, "0.1"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e20, "1.2345e+20"),
            (123456789012345.6, "123456789012345.6"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
            (-2.5e-100, "-2.5e-100"),
            (9007199254740993.0, "9007199254740992.0"),
        ];
        for (value, python) in cases {
            assert_eq!(repr(value), python, "{value:e}");
        }
    }
}
