//! Number output the way Python writes it after Skyvern's normalization.
//!
//! * A float that is a whole number is written as the exact decimal integer of the double.
//! * Any other finite float is written as Python's `repr`: the shortest digits that round-trip,
//!   fixed notation when `1e-4 <= |x| < 1e16`, otherwise `d.ddde-XX` with at least two
//!   exponent digits.
//! * Overflowed floats are written `Infinity` / `-Infinity`.

use super::scan::FloatLiteral;

/// Writes the canonical form of the float literal `literal` (already checked against the JSON
/// grammar) to `out`.
#[inline]
pub(crate) fn write_float_literal(literal: FloatLiteral<'_>, out: &mut Vec<u8>) {
    match short_decimal(literal) {
        Some(short) => write_short_decimal(literal.text, short, out),
        None => write_parsed(literal.text, out),
    }
}

/// The general path: parse the literal, then write the double.
#[inline(never)]
fn write_parsed(literal: &[u8], out: &mut Vec<u8>) {
    // The grammar was checked by the scanner, and Rust's parser accepts every JSON float
    // literal, rounding correctly (as Python does); a failure here would be a bug, and writing
    // NaN keeps the function total rather than panicking.
    let value = std::str::from_utf8(literal)
        .ok()
        .and_then(|text| text.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    write_f64(value, out);
}

/// The most significant digits a decimal may have for [`short_decimal`]: `f64::DIGITS`.
const SHORT_DIGITS: usize = 15;

/// The canonical form of a short decimal literal, found without parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShortDecimal<'a> {
    /// The canonical text is the literal's first `n` bytes.
    Prefix(usize),
    /// Minus zero (`-0.0`, `-0.000`): `0`.
    NegativeZero,
    /// Below 1e-4: `-?d.ddde-XX`, with `zeros` zeros after the point before `significant`.
    SmallExponent {
        negative: bool,
        significant: &'a [u8],
        zeros: usize,
    },
}

/// The fast path for the common literal: a plain decimal (`162.59`, `-0.0025`, `4.0`) with at
/// most 15 significant digits and no exponent; `None` for any other literal.
///
/// Why the digits can be copied: every decimal of at most 15 significant digits in the normal
/// range survives a round trip through the nearest double and back to 15 digits
/// (`f64::DIGITS`), so no two such decimals share a double. The shortest round-trip digits of
/// that double are at most as long as the input's, hence are the input's own digits (without
/// leading and trailing zeros); and the double is a whole number exactly when the decimal
/// is, with the same value (below 10^15 < 2^53, every integer is a double). The length bound
/// keeps the value far from the subnormal range (at least 1e-40).
///
/// In fixed notation the canonical text is therefore a prefix of the literal: everything up to
/// the last nonzero fraction digit, or up to the point for a whole number.
#[inline]
pub(crate) fn short_decimal(literal: FloatLiteral<'_>) -> Option<ShortDecimal<'_>> {
    let FloatLiteral {
        text,
        int_end,
        frac_end,
        ..
    } = literal;
    if text.len() > 40 || frac_end != text.len() || frac_end <= int_end {
        return None; // long, an exponent, or no fraction
    }
    let negative = text.first() == Some(&b'-');
    let int = text.get(usize::from(negative)..int_end).unwrap_or_default();
    let frac = text.get(int_end + 1..frac_end).unwrap_or_default();
    let frac = &frac[..frac.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1)];
    // The grammar allows no leading zero in the integer part other than a lone `0`.
    if int != b"0" {
        if int.len() + frac.len() > SHORT_DIGITS {
            return None;
        }
        // 1e-4 <= |x| < 1e15: fixed notation, the digits as given; or a whole number below
        // 10^15 < 2^53: exactly its integer part.
        return Some(ShortDecimal::Prefix(if frac.is_empty() {
            int_end
        } else {
            int_end + 1 + frac.len()
        }));
    }
    let Some(zeros) = frac.iter().position(|&d| d != b'0') else {
        // Zero: `0.0` keeps its `0`, `-0.0` loses its sign.
        return Some(if negative {
            ShortDecimal::NegativeZero
        } else {
            ShortDecimal::Prefix(1)
        });
    };
    let significant = &frac[zeros..];
    if significant.len() > SHORT_DIGITS {
        return None;
    }
    Some(if zeros < 4 {
        ShortDecimal::Prefix(int_end + 1 + frac.len())
    } else {
        ShortDecimal::SmallExponent {
            negative,
            significant,
            zeros,
        }
    })
}

/// Writes the canonical form of a literal that [`short_decimal`] recognized.
fn write_short_decimal(text: &[u8], short: ShortDecimal<'_>, out: &mut Vec<u8>) {
    match short {
        ShortDecimal::Prefix(n) => out.extend_from_slice(text.get(..n).unwrap_or_default()),
        ShortDecimal::NegativeZero => out.push(b'0'),
        ShortDecimal::SmallExponent {
            negative,
            significant,
            zeros,
        } => write_small_exponent(negative, significant, zeros, out),
    }
}

/// Writes `-?d.ddde-XX` for a short decimal below 1e-4 with `zeros` zeros after the point
/// before its `significant` digits.
fn write_small_exponent(negative: bool, significant: &[u8], zeros: usize, out: &mut Vec<u8>) {
    if negative {
        out.push(b'-');
    }
    if let Some((first, rest)) = significant.split_first() {
        out.push(*first);
        if !rest.is_empty() {
            out.push(b'.');
            out.extend_from_slice(rest);
        }
    }
    out.extend_from_slice(b"e-");
    if zeros + 1 < 10 {
        out.push(b'0');
    }
    write_u64(zeros as u64 + 1, false, out);
}

/// Writes `value` as Skyvern's normalization and `json.dumps` would.
pub(crate) fn write_f64(value: f64, out: &mut Vec<u8>) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        });
    } else if value.fract() == 0.0 {
        write_whole(value, out);
    } else {
        write_repr(value, out);
    }
}

/// Python's `repr` of a finite float that is not a whole number.
fn write_repr(value: f64, out: &mut Vec<u8>) {
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(value).as_bytes();
    // ryu writes the same shortest, closest digits as Python (David Gay's mode 0) but lays
    // them out differently: fixed notation down to 1e-5 (Python switches to exponent form
    // below 1e-4) and exponents without zero padding (`1e-7` where Python writes `1e-07`).
    if let Some(e) = text.iter().position(|&b| b == b'e') {
        out.extend_from_slice(&text[..e]);
        write_exponent(&text[e + 1..], out);
        return;
    }
    let (sign, unsigned) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if let Some(digits) = unsigned.strip_prefix(b"0.0000") {
        // 1e-5 <= |x| < 1e-4: Python writes `d.ddde-05`.
        if sign {
            out.push(b'-');
        }
        if let Some((first, rest)) = digits.split_first() {
            out.push(*first);
            if !rest.is_empty() {
                out.push(b'.');
                out.extend_from_slice(rest);
            }
        }
        out.extend_from_slice(b"e-05");
        return;
    }
    out.extend_from_slice(text);
}

/// Writes `e`, the exponent's sign (always) and at least two digits, from ryu's `-7` / `22`.
fn write_exponent(exponent: &[u8], out: &mut Vec<u8>) {
    let (sign, digits) = match exponent.split_first() {
        Some((b'-', rest)) => (b'-', rest),
        _ => (b'+', exponent),
    };
    out.push(b'e');
    out.push(sign);
    if digits.len() < 2 {
        out.push(b'0');
    }
    out.extend_from_slice(digits);
}

/// Writes a finite, whole `value` as the exact decimal integer it denotes (`-0.0` is `0`).
fn write_whole(value: f64, out: &mut Vec<u8>) {
    // Every whole double below 2^63 in magnitude converts to i64 exactly.
    if value.abs() < 9_223_372_036_854_775_808.0 {
        // `as` is exact here: `value` is whole and in range.
        let int = value as i64;
        write_u64(int.unsigned_abs(), int < 0, out);
    } else {
        write_big_whole(value, out);
    }
}

/// Writes `magnitude` in decimal, with a leading `-` when `negative`.
pub(crate) fn write_u64(magnitude: u64, negative: bool, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = magnitude;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if negative {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// One limb of the decimal big number below: nine decimal digits.
const LIMB: u64 = 1_000_000_000;

/// Writes the exact decimal value of a whole double of magnitude at least 2^63.
///
/// Such a double is `mantissa * 2^exponent` with a 53-bit mantissa and `11 <= exponent <= 971`,
/// so its decimal form has up to 309 digits. The product is computed in base 10^9 limbs
/// (at most 35 of them), shifting by up to 32 bits per step so that every limb product fits a
/// `u64`. This is the only arbitrary-size arithmetic the canonicalizer needs (integer literals
/// are copied digit for digit), which is why it is a dozen lines here rather than a
/// dependency on a general big-integer crate.
fn write_big_whole(value: f64, out: &mut Vec<u8>) {
    let bits = value.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i64;
    let mantissa = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    let mut exponent = biased - 1075;
    // Little-endian base-10^9 limbs of the mantissa.
    let mut limbs: Vec<u64> = Vec::with_capacity(36);
    let mut rest = mantissa;
    while rest > 0 {
        limbs.push(rest % LIMB);
        rest /= LIMB;
    }
    while exponent > 0 {
        let shift = exponent.min(32);
        exponent -= shift;
        let mut carry = 0u64;
        for limb in &mut limbs {
            // limb < 10^9 < 2^30 and carry < 2^33, so this stays below 2^63.
            let product = (*limb << shift) + carry;
            *limb = product % LIMB;
            carry = product / LIMB;
        }
        while carry > 0 {
            limbs.push(carry % LIMB);
            carry /= LIMB;
        }
    }
    if value < 0.0 {
        out.push(b'-');
    }
    let mut iter = limbs.iter().rev();
    if let Some(&top) = iter.next() {
        write_u64(top, false, out);
    }
    for &limb in iter {
        let mut digits = [b'0'; 9];
        let mut rest = limb;
        for slot in digits.iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.extend_from_slice(&digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(value: f64) -> String {
        let mut out = Vec::new();
        write_f64(value, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn python_repr_layout() {
        let cases = [
            (0.1, "0.1"),
            (-0.0025, "-0.0025"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (0.00001, "1e-05"),
            (-0.000011, "-1.1e-05"),
            (7e-5, "7e-05"),
            (1.5e-7, "1.5e-07"),
            (5e-324, "5e-324"),
            (2.225073858507201e-308, "2.225073858507201e-308"),
            (1234567890123456.8, "1234567890123456.8"),
            (0.30000000000000004, "0.30000000000000004"),
            (123.456e-10, "1.23456e-08"),
        ];
        for (value, expected) in cases {
            assert_eq!(canon(value), expected, "{value:e}");
        }
    }

    #[test]
    fn whole_floats_are_exact_integers() {
        let cases = [
            (3.0, "3".to_string()),
            (-0.0, "0".to_string()),
            (1e20, "100000000000000000000".to_string()),
            (1e23, "99999999999999991611392".to_string()),
            (-9_223_372_036_854_775_808.0, "-9223372036854775808".to_string()),
            (9_223_372_036_854_775_808.0, "9223372036854775808".to_string()),
            (
                f64::MAX,
                "179769313486231570814527423731704356798070567525844996598917476803157260780028538760589558632766878171540458953514382464234321326889464182768467546703537516986049910576551282076245490090389328944075868508455133942304583236903222948165808559332123348274797826204144723168738177180919299881250404026184124858368".to_string(),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(canon(value), expected, "{value:e}");
        }
        assert_eq!(canon(1.5e300).len(), 301);
    }

    /// The slow path: parse, then format.
    fn exact(literal: &str) -> String {
        let mut out = Vec::new();
        write_f64(literal.parse().unwrap(), &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Splits a literal the way the scanner does.
    fn split(literal: &str) -> FloatLiteral<'_> {
        let text = literal.as_bytes();
        let exp = text
            .iter()
            .position(|&b| b == b'e' || b == b'E')
            .unwrap_or(text.len());
        let int_end = text[..exp].iter().position(|&b| b == b'.').unwrap_or(exp);
        FloatLiteral {
            text,
            offset: 0,
            int_end,
            frac_end: exp,
        }
    }

    fn short(literal: &str, out: &mut Vec<u8>) -> bool {
        let literal = split(literal);
        let short = short_decimal(literal);
        if let Some(short) = short {
            write_short_decimal(literal.text, short, out);
        }
        short.is_some()
    }

    #[test]
    fn short_decimals_agree_with_the_exact_path() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut checked = 0;
        for _ in 0..200_000 {
            let r = next();
            let int = match r % 4 {
                0 => "0".to_string(),
                1 => (r >> 8 & 0xff).to_string(),
                _ => ((r >> 8) % 10u64.pow((r >> 59) as u32 % 20)).to_string(),
            };
            let frac_len = (r >> 20) as usize % 20 + 1;
            let mut frac = String::new();
            let mut d = next();
            for i in 0..frac_len {
                // Runs of zeros are common, to reach the exponent form and whole numbers.
                frac.push(if (d >> (i % 60)) & 3 == 0 || r & 0x100 == 0 && i > 3 {
                    '0'
                } else {
                    char::from(b'0' + (d % 10) as u8)
                });
                d /= 3;
            }
            let sign = if r & 0x200 == 0 { "-" } else { "" };
            let literal = format!("{sign}{int}.{frac}");
            let mut fast = Vec::new();
            if short(&literal, &mut fast) {
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    exact(&literal),
                    "{literal}"
                );
                checked += 1;
            }
        }
        assert!(checked > 100_000, "{checked}");
        for literal in [
            "0.00001",
            "-0.000012345",
            "0.0001",
            "123456789012345.0",
            "0.0",
        ] {
            let mut fast = Vec::new();
            assert!(short(literal, &mut fast), "{literal}");
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                exact(literal),
                "{literal}"
            );
        }
        for literal in [
            "1.5e3",
            "1234567890123456.7",
            &format!("0.{}1", "0".repeat(40)),
        ] {
            assert!(!short(literal, &mut Vec::new()), "{literal}");
        }
    }

    #[test]
    fn non_finite() {
        assert_eq!(canon(f64::NAN), "NaN");
        assert_eq!(canon(f64::INFINITY), "Infinity");
        assert_eq!(canon(f64::NEG_INFINITY), "-Infinity");
    }
}
