//! `SkyvernSignature::verify` on arbitrary headers and bodies.
//!
//! Flags: bit 0 checks `x-skyvern-timestamp` within 300 s of a fixed clock; bit 1 turns the
//! canonical fallback on; bit 2 replaces the signature header with the correct signature of the
//! body, bit 3 (when bit 2 is clear) with that of the body's canonical form; bit 4 writes that
//! signature in uppercase hex; bit 5 signs with the older of the two accepted keys.
//!
//! Checked: no panic; every rejection is a 401; a correct signature is never a mismatch; an
//! acceptance is backed by an independently computed HMAC of exactly what it claims to match
//! (the raw body, or its canonical form only with the fallback on), with the right key index
//! and timestamp report.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use runhook_core::canonical::{canonicalize, canonicalize_reserialized, CanonicalError};
use runhook_core::{
    sign_skyvern, AuthError, BodyMatch, Delivery, FixedClock, Secret, Secrets, SkyvernSignature,
    TimestampCheck, Verifier,
};
use runhook_fuzz::{hmac_sha256, Message};

/// The first is the key the vectors in `testdata/skyvern-canonical.jsonl` were signed with.
const KEYS: [&str; 2] = ["sk_test", "sk_fuzz_current_key"];
const NOW: i64 = 1_769_873_016;
const TOLERANCE: u64 = 300;

fuzz_target!(|data: &[u8]| {
    let Some(mut message) = Message::parse(data) else {
        return;
    };
    let secrets = KEYS.map(|k| Secret::new(k).unwrap());
    let mut scheme = SkyvernSignature::new(Secrets::new(secrets.clone()).unwrap());
    let tolerance = message.flag(0);
    let fallback = message.flag(1);
    if tolerance {
        scheme = scheme
            .with_timestamp_tolerance(Duration::from_secs(TOLERANCE))
            .with_clock(FixedClock(NOW));
    }
    if fallback {
        scheme = scheme.with_canonical_fallback();
    }

    let canonical = canonicalize(&message.body).ok();
    let signed: Option<Vec<u8>> = if message.flag(2) {
        Some(message.body.to_vec())
    } else if message.flag(3) {
        canonical.clone()
    } else {
        None
    };
    if let Some(signed) = &signed {
        let key = &secrets[usize::from(!message.flag(5))];
        let mut signature = sign_skyvern(key, signed);
        if message.flag(4) {
            signature.make_ascii_uppercase();
        }
        message.set_header(SkyvernSignature::SIGNATURE_HEADER, signature);
    }

    let delivery = Delivery::new(&message.headers, &message.body).with_path(&message.path);
    let result = scheme.verify(&delivery);

    match &result {
        Err(err) => {
            assert_eq!(err.status(), 401);
            let _ = err.to_string();
            if let Some(signed) = &signed {
                // The fallback refuses a body whose object repeats a key (no re-serializer
                // writes one): signed over such a body's canonical form, it is a mismatch.
                let repeats_a_key = matches!(
                    canonicalize_reserialized(&message.body, usize::MAX),
                    Err(CanonicalError::RepeatedKey { .. })
                );
                let matches_fallback = (fallback && !repeats_a_key) || *signed == *message.body;
                if matches_fallback {
                    assert!(
                        !matches!(err, AuthError::SignatureMismatch { .. }),
                        "a correctly signed delivery was a mismatch"
                    );
                }
            }
        }
        Ok(verified) => {
            let presented = message
                .single(SkyvernSignature::SIGNATURE_HEADER)
                .expect("accepted without one signature header");
            let presented =
                hex::decode(presented.to_ascii_lowercase()).expect("accepted a non-hex signature");
            let index = verified.key_index.expect("Skyvern reports its key");
            let key = KEYS[index].as_bytes();
            let matched: Vec<u8> = match &verified.body {
                BodyMatch::Exact => message.body.to_vec(),
                BodyMatch::Canonical { signed: reported } => {
                    assert!(fallback, "canonical match without the fallback");
                    let canonical = canonical
                        .clone()
                        .expect("canonical match of a non-JSON body");
                    assert_ne!(
                        canonical, *message.body,
                        "canonical match reported for exact"
                    );
                    assert_eq!(reported[..], canonical[..], "reported other signed bytes");
                    canonical
                }
                other => panic!("unexpected body match {other:?}"),
            };
            assert_eq!(presented, hmac_sha256(key, &[&matched]), "forgery accepted");
            match verified.timestamp {
                TimestampCheck::NotChecked => assert!(!tolerance),
                TimestampCheck::WithinTolerance {
                    timestamp,
                    covered_by_signature,
                } => {
                    assert!(tolerance && !covered_by_signature);
                    assert!(timestamp.abs_diff(NOW) <= TOLERANCE);
                }
                other => panic!("unexpected timestamp check {other:?}"),
            }
            if signed.is_some() {
                assert_eq!(index, usize::from(!message.flag(5)));
            }
        }
    }
    // A fallback-free scheme accepts exactly the raw-body signature, nothing else.
    if !fallback && !tolerance {
        let exact = message
            .single(SkyvernSignature::SIGNATURE_HEADER)
            .filter(|v| v.len() == 64)
            .and_then(|v| hex::decode(v.to_ascii_lowercase()).ok())
            .is_some_and(|presented| {
                KEYS.iter()
                    .any(|k| presented == hmac_sha256(k.as_bytes(), &[&message.body]))
            });
        // Values with bytes outside printable ASCII are refused before the comparison.
        let printable = message
            .single(SkyvernSignature::SIGNATURE_HEADER)
            .is_some_and(|v| v.iter().all(|b| b.is_ascii_graphic() || *b == b' '));
        assert_eq!(result.is_ok(), exact && printable);
    }
});
