//! Every case of the Skyvern vectors (made with Skyvern's own signing code): the canonicalizer
//! reproduces Skyvern's bytes exactly, or fails with the same Python exception.

use runhook_core::canonical::{
    canonicalize, canonicalize_bounded, canonicalize_reserialized, parse_lenient, CanonicalError,
    SkyvernRequest,
};
use runhook_core::Secret;

const VECTORS: &str = include_str!("../../../testdata/skyvern-canonical.jsonl");

struct Case {
    line: usize,
    input: String,
    canonical: Option<String>,
    error: Option<String>,
    key: String,
    signature: Option<String>,
}

fn cases() -> Vec<Case> {
    VECTORS
        .lines()
        .enumerate()
        .map(|(n, line)| {
            let case: serde_json::Value = serde_json::from_str(line).expect("vector line is JSON");
            let text = |field: &str| case[field].as_str().map(str::to_owned);
            Case {
                line: n + 1,
                input: text("input").expect("input"),
                canonical: text("canonical"),
                error: text("error"),
                key: text("key").expect("key"),
                signature: text("signature"),
            }
        })
        .collect()
}

#[test]
fn every_vector_case_byte_for_byte() {
    let cases = cases();
    assert_eq!(cases.len(), 2017);
    let mut failures = Vec::new();
    for case in &cases {
        let got = canonicalize(case.input.as_bytes());
        let ok = match (&got, &case.canonical, &case.error) {
            (Ok(bytes), Some(expected), None) => bytes == expected.as_bytes(),
            (Err(err), None, Some(kind)) => err.python_exception().as_str() == kind,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "line {}: input {:?}\n  expected {:?} / {:?}\n  got {:?}",
                case.line,
                case.input,
                case.canonical,
                case.error,
                got.map(String::from_utf8)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn every_signed_case_signs_like_skyvern() {
    let mut signed = 0;
    for case in cases() {
        let (Some(canonical), Some(signature)) = (&case.canonical, &case.signature) else {
            continue;
        };
        let key = Secret::new(&case.key).unwrap();
        let request = SkyvernRequest::from_json(&key, case.input.as_bytes(), 1_769_873_016)
            .unwrap_or_else(|e| panic!("line {}: {e}", case.line));
        assert_eq!(request.body, canonical.as_bytes(), "line {}", case.line);
        assert_eq!(&request.signature, signature, "line {}", case.line);
        signed += 1;
    }
    assert_eq!(signed, 2001);
}

#[test]
fn canonical_output_is_a_fixed_point() {
    for case in cases() {
        if let Some(canonical) = &case.canonical {
            assert_eq!(
                canonicalize(canonical.as_bytes()).unwrap(),
                canonical.as_bytes(),
                "line {}",
                case.line
            );
        }
    }
}

#[test]
fn lenient_parser_accepts_exactly_the_same_inputs() {
    for case in cases() {
        assert_eq!(
            parse_lenient(case.input.as_bytes()).is_ok(),
            case.canonical.is_some(),
            "line {}",
            case.line
        );
    }
}

#[test]
fn a_bound_changes_nothing_on_the_vectors_but_refuses_longer_output() {
    for case in cases() {
        let input = case.input.as_bytes();
        match canonicalize(input) {
            Ok(canonical) => {
                // An object that repeats a key writes every occurrence before collapsing: the
                // bound counts those bytes too.
                let roomy = 2 * (input.len() + canonical.len());
                assert_eq!(
                    canonicalize_bounded(input, roomy).as_ref(),
                    Ok(&canonical),
                    "line {}",
                    case.line
                );
                if canonical.contains(&b'{') {
                    continue;
                }
                // Without objects, the bound is the output's length exactly.
                let at = canonical.len();
                assert_eq!(
                    canonicalize_bounded(input, at).as_ref(),
                    Ok(&canonical),
                    "line {}",
                    case.line
                );
                // One byte less is refused (never a different output).
                if at > 0 {
                    assert!(
                        canonicalize_bounded(input, at - 1).is_err(),
                        "line {}",
                        case.line
                    );
                }
            }
            Err(err) => assert_eq!(
                canonicalize_bounded(input, usize::MAX),
                Err(err),
                "line {}",
                case.line
            ),
        }
    }
}

/// The fallback's canonical form: the same bytes on every vector whose objects repeat no key
/// (what a re-serializer writes), and a refusal, never other bytes, on those that repeat one.
#[test]
fn the_fallbacks_form_matches_except_where_an_object_repeats_a_key() {
    let (mut same, mut refused) = (0, 0);
    for case in cases() {
        let input = case.input.as_bytes();
        let roomy = 2 * (input.len() + case.canonical.as_ref().map_or(0, String::len));
        match (canonicalize(input), canonicalize_reserialized(input, roomy)) {
            (Ok(canonical), Ok(fallback)) => {
                assert_eq!(fallback, canonical, "line {}", case.line);
                same += 1;
            }
            (_, Err(CanonicalError::RepeatedKey { .. })) => refused += 1,
            (Err(err), fallback) => assert_eq!(fallback, Err(err), "line {}", case.line),
            (Ok(_), Err(err)) => panic!("line {}: {err}", case.line),
        }
    }
    assert!(same > 0);
    assert!(refused > 0, "the vectors hold objects that repeat a key");
}

/// A forged body built to make the fallback rewrite objects (many repeats of one key around a
/// long value) is refused at its first repeat, without writing the rest.
#[test]
fn a_repeated_key_is_refused_at_its_first_repeat() {
    let mut body = String::from("{\"a\":1");
    for _ in 0..100_000 {
        body.push_str(",\"a\":1");
    }
    body.push('}');
    let err = canonicalize_reserialized(body.as_bytes(), body.len() * 2).unwrap_err();
    match err {
        CanonicalError::RepeatedKey { offset } => assert!(offset < 32, "{offset}"),
        other => panic!("{other}"),
    }
}
