//! Property tests: canonicalizing twice changes nothing; the output denotes the same value as
//! the generated payload; whitespace, number spelling and escape spelling of the input never
//! change the output.

use proptest::prelude::*;
use runhook_core::canonical::{canonicalize, parse_lenient};
use serde_json::{Map, Number, Value};

/// A payload as Python would hold it after `json.loads`.
#[derive(Debug, Clone)]
enum Node {
    Null,
    Bool(bool),
    /// An integer literal: sign and digits (no leading zero).
    Int(bool, String),
    Float(f64),
    Str(String),
    Array(Vec<Node>),
    /// Members in input order; keys may repeat.
    Object(Vec<(String, Node)>),
}

fn digits() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..1000).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[1-9][0-9]{0,60}",
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        (-1e6f64..1e6).prop_map(|x| (x * 100.0).round() / 100.0),
        (-1e-3f64..1e-3),
        (-(1i64 << 60)..(1i64 << 60)).prop_map(|n| n as f64),
        Just(-0.0),
        Just(f64::INFINITY),
        Just(f64::NAN),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c]{0,3}",
        any::<String>(),
        "[\\x00-\\x1f\"\\\\/é日😀\u{2028}\u{7f}a]{0,8}",
    ]
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        Just(Node::Null),
        any::<bool>().prop_map(Node::Bool),
        (any::<bool>(), digits()).prop_map(|(neg, d)| Node::Int(neg, d)),
        float().prop_map(Node::Float),
        text().prop_map(Node::Str),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Node::Array),
            // Keys from a small alphabet so that repeats are common.
            prop::collection::vec(("[a-c]{0,2}|[é\"\\\\\\x01]", inner), 0..6)
                .prop_map(Node::Object),
        ]
    })
}

/// A tiny deterministic generator choosing among spellings.
struct Spell(u64);

impl Spell {
    fn pick(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }

    fn ws(&mut self, out: &mut String) {
        for _ in 0..self.pick(3) {
            out.push([' ', '\t', '\n', '\r'][self.pick(4) as usize]);
        }
    }

    fn string(&mut self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            let short = match c {
                '"' => Some("\\\""),
                '\\' => Some("\\\\"),
                '\n' => Some("\\n"),
                '\t' => Some("\\t"),
                '\u{8}' => Some("\\b"),
                '\u{c}' => Some("\\f"),
                '\r' => Some("\\r"),
                '/' => Some("\\/"),
                _ => None,
            };
            let must_escape = c < ' ' || c == '"' || c == '\\';
            let choice = self.pick(3);
            if let (0, Some(short)) = (choice, short) {
                out.push_str(short);
            } else if choice == 1 || must_escape {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    if self.pick(2) == 0 {
                        out.push_str(&format!("\\u{unit:04x}"));
                    } else {
                        out.push_str(&format!("\\u{unit:04X}"));
                    }
                }
            } else {
                out.push(c);
            }
        }
        out.push('"');
    }

    fn float(&mut self, x: f64, out: &mut String) {
        if x.is_nan() {
            out.push_str("NaN");
        } else if x.is_infinite() {
            if x < 0.0 {
                out.push('-');
            }
            out.push_str(if self.pick(2) == 0 {
                "Infinity"
            } else {
                "1e999"
            });
        } else {
            // Every spelling below denotes exactly `x` once correctly rounded.
            let text = match self.pick(5) {
                0 => format!("{x:e}"),
                1 => format!("{x:.20e}").replace('e', "E"),
                2 => format!("{x:?}"),
                3 => {
                    // Shift the decimal point into the exponent: d.ddd e k = dddd e (k - n).
                    let sci = format!("{x:e}");
                    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
                    let exp: i32 = exp.parse().unwrap_or(0);
                    let (sign, mantissa) = match mantissa.strip_prefix('-') {
                        Some(m) => ("-", m),
                        None => ("", mantissa),
                    };
                    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
                    let all = format!("{int}{frac}");
                    let trimmed = all.trim_start_matches('0');
                    let body = if trimmed.is_empty() { "0" } else { trimmed };
                    format!("{sign}{body}.000e{:+}", exp - frac.len() as i32)
                }
                _ => format!("{x:.30e}"),
            };
            // A spelling with neither `.` nor `e` would be an integer literal.
            if text.contains(['.', 'e', 'E']) {
                out.push_str(&text);
            } else {
                out.push_str(&text);
                out.push_str(".0");
            }
        }
    }

    fn node(&mut self, node: &Node, out: &mut String) {
        match node {
            Node::Null => out.push_str("null"),
            Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Node::Int(neg, d) => {
                if *neg {
                    out.push('-');
                }
                out.push_str(d);
                // A small integer may also be spelled as the equal float.
                if d.len() < 10 && self.pick(3) == 0 {
                    out.push_str(if self.pick(2) == 0 { ".0" } else { ".000e0" });
                }
            }
            Node::Float(x) => self.float(*x, out),
            Node::Str(s) => self.string(s, out),
            Node::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    self.separator(i, out);
                    self.node(item, out);
                }
                self.ws(out);
                out.push(']');
            }
            Node::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    self.separator(i, out);
                    self.string(key, out);
                    self.ws(out);
                    out.push(':');
                    self.ws(out);
                    self.node(value, out);
                }
                self.ws(out);
                out.push('}');
            }
        }
    }

    /// White space before the `i`th item of an array or object, and the comma after the
    /// previous one.
    fn separator(&mut self, i: usize, out: &mut String) {
        self.ws(out);
        if i > 0 {
            out.push(',');
            self.ws(out);
        }
    }

    fn document(&mut self, node: &Node) -> String {
        let mut out = String::new();
        self.ws(&mut out);
        self.node(node, &mut out);
        self.ws(&mut out);
        out
    }
}

fn int_value(text: &str) -> Value {
    text.parse::<i64>()
        .map(Value::from)
        .or_else(|_| text.parse::<u64>().map(Value::from))
        .unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// The value `parse_lenient` documents for `node`, computed independently of the crate
/// (Rust's exact `{:.0}` formatting gives the digits of a whole double).
fn expected(node: &Node) -> Value {
    match node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(neg, d) => {
            let zero = d.bytes().all(|b| b == b'0');
            int_value(&format!("{}{d}", if *neg && !zero { "-" } else { "" }))
        }
        Node::Float(x) if x.is_nan() => Value::String("NaN".into()),
        Node::Float(x) if x.is_infinite() => {
            Value::String(if *x > 0.0 { "Infinity" } else { "-Infinity" }.into())
        }
        Node::Float(x) if x.fract() == 0.0 => {
            let digits = format!("{x:.0}");
            int_value(if digits == "-0" { "0" } else { &digits })
        }
        Node::Float(x) => Value::Number(Number::from_f64(*x).unwrap()),
        Node::Str(s) => Value::String(s.clone()),
        Node::Array(items) => Value::Array(items.iter().map(expected).collect()),
        Node::Object(members) => {
            let mut map = Map::new();
            for (key, value) in members {
                map.insert(key.clone(), expected(value));
            }
            Value::Object(map)
        }
    }
}

/// The keys of every object of `node` in canonical order: first position, no repeats.
fn key_order(node: &Node, out: &mut Vec<String>) {
    match node {
        Node::Array(items) => items.iter().for_each(|item| key_order(item, out)),
        Node::Object(members) => {
            let mut seen: Vec<&str> = Vec::new();
            for (key, _) in members {
                if !seen.contains(&key.as_str()) {
                    seen.push(key);
                }
            }
            out.push(seen.join("\u{0}"));
            for key in seen {
                // The last value of each key.
                if let Some((_, value)) = members.iter().rev().find(|(k, _)| k == key) {
                    key_order(value, out);
                }
            }
        }
        _ => {}
    }
}

/// The keys of every object of a canonical text, in order (serde_json's `Map` is sorted, so
/// the order is read from the text itself).
fn canonical_key_order(canonical: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(canonical).unwrap();
    let mut out = Vec::new();
    walk_keys(text, &mut 0, &mut out);
    out
}

/// A minimal reader of canonical text that records each object's keys in order.
fn walk_keys(text: &str, at: &mut usize, out: &mut Vec<String>) {
    let bytes = text.as_bytes();
    match bytes[*at] {
        b'{' => {
            *at += 1;
            let slot = out.len();
            out.push(String::new());
            let mut keys = Vec::new();
            while bytes[*at] != b'}' {
                if bytes[*at] == b',' {
                    *at += 1;
                }
                let start = *at;
                skip_string(bytes, at);
                let raw: Value = serde_json::from_str(&text[start..*at]).unwrap();
                keys.push(raw.as_str().unwrap().to_owned());
                *at += 1; // ':'
                walk_keys(text, at, out);
            }
            *at += 1;
            out[slot] = keys.join("\u{0}");
        }
        b'[' => {
            *at += 1;
            while bytes[*at] != b']' {
                if bytes[*at] == b',' {
                    *at += 1;
                }
                walk_keys(text, at, out);
            }
            *at += 1;
        }
        b'"' => skip_string(bytes, at),
        _ => {
            while !matches!(bytes[*at], b',' | b']' | b'}') {
                *at += 1;
                if *at == bytes.len() {
                    return;
                }
            }
        }
    }
}

fn skip_string(bytes: &[u8], at: &mut usize) {
    *at += 1;
    while bytes[*at] != b'"' {
        *at += if bytes[*at] == b'\\' { 2 } else { 1 };
    }
    *at += 1;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn canonical_form_is_a_fixed_point(node in node(), seed in any::<u64>()) {
        let input = Spell(seed).document(&node);
        let once = canonicalize(input.as_bytes()).unwrap();
        prop_assert_eq!(canonicalize(&once).unwrap(), once);
    }

    #[test]
    fn output_denotes_the_same_value(node in node(), seed in any::<u64>()) {
        let input = Spell(seed).document(&node);
        let once = canonicalize(input.as_bytes()).unwrap();
        prop_assert_eq!(parse_lenient(&once).unwrap(), expected(&node));
        let mut order = Vec::new();
        key_order(&node, &mut order);
        prop_assert_eq!(canonical_key_order(&once), order);
    }

    #[test]
    fn spelling_never_changes_the_output(node in node(), a in any::<u64>(), b in any::<u64>()) {
        let first = Spell(a).document(&node);
        let second = Spell(b).document(&node);
        prop_assert_eq!(
            canonicalize(first.as_bytes()).unwrap(),
            canonicalize(second.as_bytes()).unwrap(),
            "{:?} vs {:?}", first, second
        );
    }
}
