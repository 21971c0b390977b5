//! Every signed case of the Skyvern vectors (made with Skyvern's own signing code) verifies on
//! its canonical bytes, and stops verifying when one byte of the body or signature changes.

use runhook_core::{AuthError, Delivery, SchemeKind, Secret, SkyvernSignature, Verifier};

const VECTORS: &str = include_str!("../../../testdata/skyvern-canonical.jsonl");

struct Case {
    canonical: Vec<u8>,
    key: String,
    signature: String,
}

fn signed_cases() -> Vec<Case> {
    VECTORS
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("vector line is JSON"))
        .filter_map(|case| {
            Some(Case {
                canonical: case["canonical"].as_str()?.as_bytes().to_vec(),
                key: case["key"].as_str()?.to_string(),
                signature: case["signature"].as_str()?.to_string(),
            })
        })
        .collect()
}

fn verify(case: &Case, body: &[u8], signature: &str) -> Result<(), AuthError> {
    let scheme = SkyvernSignature::new(Secret::new(&case.key).unwrap());
    let headers = [("x-skyvern-signature", signature)];
    scheme.verify(&Delivery::new(&headers, body)).map(|_| ())
}

#[test]
fn every_signed_vector_verifies() {
    let cases = signed_cases();
    assert_eq!(
        cases.len(),
        2001,
        "the vectors file holds 2001 signed cases"
    );
    for case in &cases {
        verify(case, &case.canonical, &case.signature)
            .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(&case.canonical)));
    }
}

#[test]
fn one_changed_body_byte_is_rejected() {
    let mismatch = Err(AuthError::SignatureMismatch {
        scheme: SchemeKind::Skyvern,
    });
    for (n, case) in signed_cases().iter().enumerate() {
        let mut body = case.canonical.clone();
        let at = n % body.len();
        body[at] ^= 0x01;
        assert_eq!(
            verify(case, &body, &case.signature),
            mismatch,
            "byte {at} flipped"
        );
        let mut longer = case.canonical.clone();
        longer.push(b' ');
        assert_eq!(verify(case, &longer, &case.signature), mismatch);
    }
}

#[test]
fn one_changed_signature_digit_is_rejected() {
    for (n, case) in signed_cases().iter().enumerate() {
        let mut signature = case.signature.clone().into_bytes();
        let at = n % signature.len();
        signature[at] = if signature[at] == b'0' { b'1' } else { b'0' };
        let signature = String::from_utf8(signature).unwrap();
        assert!(
            matches!(
                verify(case, &case.canonical, &signature),
                Err(AuthError::SignatureMismatch { .. })
            ),
            "digit {at} changed"
        );
    }
}

#[test]
fn a_different_key_is_rejected() {
    let case = &signed_cases()[0];
    let scheme = SkyvernSignature::new(Secret::new(format!("{}x", case.key)).unwrap());
    let headers = [("x-skyvern-signature", case.signature.as_str())];
    assert!(scheme
        .verify(&Delivery::new(&headers, &case.canonical))
        .is_err());
}
