//! `BrowserUseSignature` on arbitrary headers and bodies.
//!
//! Flags: bit 0 replaces the signature with the correct one over the body's sorted-key form,
//! bit 1 (when bit 0 is clear) with the correct one over the raw body, both with
//! `x-browser-use-timestamp` set to the fixed clock's now; bit 2 sets the older
//! `x-webhook-signature` to the raw body's correct signature; bit 3 signs with the older of the
//! two accepted keys; bit 4 refuses the older form.
//!
//! Checked: no panic; every rejection is a 401; a correct signature is never a mismatch; an
//! acceptance is backed by an independently computed HMAC of exactly what it claims to match
//! (the timestamp and the raw body, the timestamp and the sorted form, or the raw body alone in
//! the older header), with the right key index; the inline check agrees with the full one on
//! bodies it re-serializes; a refusal from the headers alone is never contradicted by the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runhook_core::canonical::canonicalize_sorted;
use runhook_core::{
    sign_browser_use, sign_browser_use_legacy, AuthError, BeforeBody, BodyMatch,
    BrowserUseSignature, Delivery, FixedClock, LegacySignature, Secret, Secrets, TimestampCheck,
    Verifier,
};
use runhook_fuzz::{hmac_sha256, Message};

const KEYS: [&str; 2] = ["bu_fuzz_old_secret", "bu_fuzz_current_secret"];
const NOW: i64 = 1_796_640_000;

fuzz_target!(|data: &[u8]| {
    let Some(mut message) = Message::parse(data) else {
        return;
    };
    let secrets = KEYS.map(|k| Secret::new(k).unwrap());
    let legacy = match message.flag(4) {
        true => LegacySignature::Refuse,
        false => LegacySignature::Accept,
    };
    let scheme = BrowserUseSignature::new(Secrets::new(secrets.clone()).unwrap())
        .with_clock(FixedClock(NOW))
        .with_legacy(legacy);
    let key = &secrets[usize::from(!message.flag(3))];
    let sorted = canonicalize_sorted(&message.body).ok();

    let mut correct = false;
    if message.flag(0) {
        if let Ok(signature) = sign_browser_use(key, NOW, &message.body) {
            message.set_header(BrowserUseSignature::SIGNATURE_HEADER, signature);
            message.set_header(BrowserUseSignature::TIMESTAMP_HEADER, NOW.to_string());
            correct = true;
        }
    } else if message.flag(1) {
        let signature = hex::encode(hmac_sha256(
            key.expose(),
            &[NOW.to_string().as_bytes(), b".", &message.body],
        ));
        message.set_header(BrowserUseSignature::SIGNATURE_HEADER, signature);
        message.set_header(BrowserUseSignature::TIMESTAMP_HEADER, NOW.to_string());
        correct = true;
    }
    if message.flag(2) {
        let signature = sign_browser_use_legacy(key, &message.body);
        message.set_header(BrowserUseSignature::LEGACY_SIGNATURE_HEADER, signature);
        let timestamped = message
            .values(BrowserUseSignature::SIGNATURE_HEADER)
            .next()
            .is_some();
        correct |= !timestamped && legacy == LegacySignature::Accept;
    }

    let delivery = Delivery::new(&message.headers, &message.body).with_path(&message.path);
    let result = scheme.verify(&delivery);
    let before = scheme.verify_before_body(&Delivery::new(&message.headers, b""));
    match &before {
        BeforeBody::NeedsBody => {}
        BeforeBody::Decided(Ok(_)) => panic!("accepted from the headers alone"),
        BeforeBody::Decided(Err(_)) => assert!(result.is_err(), "refused unread, accepted read"),
    }
    if message.body.len() <= BrowserUseSignature::INLINE_SORT_MAX {
        assert_eq!(
            scheme.verify_exact(&delivery).is_ok(),
            result.is_ok(),
            "the inline check disagrees on a body it re-serializes"
        );
    }

    match &result {
        Err(err) => {
            assert_eq!(err.status(), 401);
            let _ = err.to_string();
            if correct {
                assert!(
                    !matches!(err, AuthError::SignatureMismatch { .. }),
                    "a correctly signed delivery was a mismatch"
                );
            }
        }
        Ok(verified) => {
            let index = verified.key_index.expect("Browser Use reports its key");
            let key = KEYS[index].as_bytes();
            let presented = |name: &str| {
                let value = message
                    .single(name)
                    .expect("accepted without one signature header");
                hex::decode(value).expect("accepted a non-hex signature")
            };
            match verified.timestamp {
                TimestampCheck::NotChecked => {
                    assert_eq!(
                        legacy,
                        LegacySignature::Accept,
                        "the older form was refused"
                    );
                    assert_eq!(verified.body, BodyMatch::Exact);
                    let presented = presented(BrowserUseSignature::LEGACY_SIGNATURE_HEADER);
                    assert_eq!(
                        presented,
                        hmac_sha256(key, &[&message.body]),
                        "forgery accepted"
                    );
                }
                TimestampCheck::WithinTolerance {
                    timestamp,
                    covered_by_signature,
                } => {
                    assert!(covered_by_signature);
                    assert!(timestamp.abs_diff(NOW) <= 300);
                    let sent = message
                        .single(BrowserUseSignature::TIMESTAMP_HEADER)
                        .expect("accepted without a timestamp");
                    let sent = sent.trim_ascii();
                    let matched: Vec<u8> = match &verified.body {
                        BodyMatch::Exact => message.body.to_vec(),
                        BodyMatch::Reserialized => sorted
                            .clone()
                            .expect("re-serialized match of a body Python cannot load"),
                        other => panic!("unexpected body match {other:?}"),
                    };
                    let presented = presented(BrowserUseSignature::SIGNATURE_HEADER);
                    assert_eq!(
                        presented,
                        hmac_sha256(key, &[sent, b".", &matched]),
                        "forgery accepted"
                    );
                }
                other => panic!("unexpected timestamp check {other:?}"),
            }
            if correct {
                assert_eq!(index, usize::from(!message.flag(3)));
            }
        }
    }
});
