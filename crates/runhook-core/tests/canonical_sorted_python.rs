//! `canonicalize_sorted` against Python itself: 20 000 generated documents (seeded), written to
//! one file, run once through `python3` with `json.dumps(json.loads(x), separators=(",", ":"),
//! sort_keys=True)`, compared byte for byte; what Python refuses must be refused too.
//! Fails loudly without `python3` (CI installs it); `RUNHOOK_TEST_PYTHON` names another.

use std::fmt::Write as _;
use std::process::Command;

use runhook_core::canonical::canonicalize_sorted;

const CASES: usize = 20_000;
const SEED: u64 = 0x2701_b0e5_5eed_0001;

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// String pieces that sort and escape differently: ASCII, Latin-1, BMP, astral (raw and as
/// escaped pairs), lone surrogates, controls, DEL, escapes of every kind.
const PIECES: &[&str] = &[
    "a",
    "b",
    "z",
    "A",
    "_",
    " ",
    "0",
    "~",
    "é",
    "ß",
    "\u{7f}",
    "\u{80}",
    "\u{ff}",
    "中",
    "\u{ffff}",
    "\u{fffd}",
    "😀",
    "𝄞",
    "\\ud83d\\ude00",
    "\\ud800",
    "\\udfff",
    "\\ud800x",
    "\\n",
    "\\t",
    "\\\"",
    "\\\\",
    "\\/",
    "\\b",
    "\\f",
    "\\r",
    "\\u0000",
    "\\u001f",
    "\\u00e9",
    "\\u00E9",
    "\\u2028",
    "'",
    "<",
    "\u{2028}",
    "key",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "42",
    "9007199254740993",
    "18446744073709551616",
    "-123456789012345678901234567890",
    "0.0",
    "-0.0",
    "5.0",
    "1.5",
    "0.1",
    "1e5",
    "1E5",
    "1e-5",
    "1e-4",
    "0.0001",
    "0.00001",
    "1e16",
    "1e15",
    "123456789012345678.0",
    "1e22",
    "1e23",
    "1e308",
    "1e309",
    "-1e400",
    "2.5e-324",
    "5e-324",
    "1e-400",
    "3.14159265358979323846",
    "1.7976931348623157e308",
    "0.30000000000000004",
    "100",
    "1.0e+2",
    "12e-1",
    "-2.50",
    "NaN",
    "Infinity",
    "-Infinity",
];

fn string(rng: &mut Rng, out: &mut String) {
    out.push('"');
    for _ in 0..rng.below(5) {
        out.push_str(rng.pick(PIECES));
    }
    out.push('"');
}

fn space(rng: &mut Rng, out: &mut String) {
    if rng.below(4) == 0 {
        out.push_str(rng.pick(&[" ", "\n", "\t", "\r\n  ", "  "]));
    }
}

fn value(rng: &mut Rng, depth: usize, out: &mut String) {
    let kind = if depth > 4 {
        rng.below(4)
    } else {
        rng.below(7)
    };
    match kind {
        0 => string(rng, out),
        1 => out.push_str(rng.pick(NUMBERS)),
        2 => out.push_str(rng.pick(&["true", "false", "null"])),
        3 => {
            let n = rng.below(12) + 1;
            let digits: String = (0..n)
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect();
            let digits = digits.trim_start_matches('0');
            out.push_str(if digits.is_empty() { "7" } else { digits });
        }
        4 | 5 => {
            out.push('{');
            let keys = rng.below(5);
            // A few keys reused within the object: repeats keep the last value.
            let mut names: Vec<String> = Vec::new();
            for n in 0..keys {
                if n > 0 {
                    out.push(',');
                }
                space(rng, out);
                if !names.is_empty() && rng.below(4) == 0 {
                    let name = names[rng.below(names.len())].clone();
                    out.push_str(&name);
                } else {
                    let mut name = String::new();
                    string(rng, &mut name);
                    out.push_str(&name);
                    names.push(name);
                }
                space(rng, out);
                out.push(':');
                space(rng, out);
                value(rng, depth + 1, out);
                space(rng, out);
            }
            out.push('}');
        }
        _ => {
            out.push('[');
            for n in 0..rng.below(5) {
                if n > 0 {
                    out.push(',');
                }
                space(rng, out);
                value(rng, depth + 1, out);
            }
            out.push(']');
        }
    }
}

/// One document; about one in six damaged by a byte inserted, dropped or replaced.
fn case(rng: &mut Rng) -> Vec<u8> {
    let mut text = String::new();
    space(rng, &mut text);
    value(rng, 0, &mut text);
    space(rng, &mut text);
    let mut bytes = text.into_bytes();
    if rng.below(6) == 0 && !bytes.is_empty() {
        let at = rng.below(bytes.len());
        let noise = [
            b'"', b',', b'}', b']', b'\\', b'x', b'1', b'.', b'e', b'-', 0xc3, 0x80, b' ',
        ];
        let byte = noise[rng.below(noise.len())];
        match rng.below(3) {
            0 => bytes.insert(at, byte),
            1 => {
                bytes.remove(at);
            }
            _ => bytes[at] = byte,
        }
    }
    bytes
}

/// Whether `json.loads` would read `bytes` as something other than UTF-8 (a NUL among the
/// first bytes, a UTF-16/32 byte order mark): out of scope, never generated by the
/// generator's alphabet except through damage.
fn python_would_guess_another_encoding(bytes: &[u8]) -> bool {
    bytes.iter().take(4).any(|&b| b == 0)
        || bytes.starts_with(&[0xff])
        || bytes.starts_with(&[0xfe])
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

const PYTHON: &str = r#"
import json, sys
out = []
for line in open(sys.argv[1]):
    try:
        text = json.dumps(json.loads(bytes.fromhex(line.strip())), separators=(",", ":"), sort_keys=True)
        out.append("ok " + text.encode("ascii").hex())
    except Exception as e:
        out.append("err " + type(e).__name__)
open(sys.argv[2], "w").write("\n".join(out) + "\n")
"#;

#[test]
fn twenty_thousand_generated_documents_match_python_byte_for_byte() {
    let mut rng = Rng(SEED);
    let mut cases = Vec::with_capacity(CASES);
    while cases.len() < CASES {
        let bytes = case(&mut rng);
        if !python_would_guess_another_encoding(&bytes) {
            cases.push(bytes);
        }
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("canonical-sorted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("cases.hex");
    let output = dir.join("python.txt");
    let lines: String = cases.iter().map(|c| hex(c) + "\n").collect();
    std::fs::write(&input, lines).unwrap();

    let python = std::env::var("RUNHOOK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-c", PYTHON])
        .arg(&input)
        .arg(&output)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run {python}: {e}: this test needs Python 3 (CI installs it)")
        });
    assert!(status.success(), "{python} exited {status}");
    let answers = std::fs::read_to_string(&output).unwrap();
    let answers: Vec<&str> = answers.lines().collect();
    assert_eq!(answers.len(), CASES);

    let (mut accepted, mut refused, mut mismatches) = (0, 0, Vec::new());
    for (n, (case, answer)) in cases.iter().zip(&answers).enumerate() {
        let ours = canonicalize_sorted(case);
        let agree = match (answer.split_once(' '), &ours) {
            (Some(("ok", expected)), Ok(bytes)) => {
                accepted += 1;
                hex(bytes) == expected
            }
            (Some(("err", _)), Err(_)) => {
                refused += 1;
                true
            }
            _ => false,
        };
        if !agree && mismatches.len() < 5 {
            mismatches.push(format!(
                "case {n}: {:?}\n  python: {answer}\n  ours:   {:?}",
                String::from_utf8_lossy(case),
                ours.map(|b| String::from_utf8_lossy(&b).into_owned())
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // The generator reaches both sides.
    assert!(
        accepted > CASES / 2 && refused > CASES / 20,
        "{accepted} accepted, {refused} refused"
    );
}
