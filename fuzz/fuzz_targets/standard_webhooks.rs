//! `StandardWebhooks::verify` on arbitrary `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` headers (a space-separated signature list) and bodies.
//!
//! Flags: bits 0-1 choose the tolerance (300 s, 0 s, `u64::MAX` s, one day); bit 2 appends the
//! correct `v1,` signature of the delivery to the signature list (when `webhook-id` and
//! `webhook-timestamp` are each sent once); bit 3 signs with the older of the two keys.
//!
//! The verifier also holds a `whpk_` public key, so `v1a` (ed25519) entries are decoded and
//! checked beside `v1` ones.
//!
//! Checked: no panic; every rejection is a 401; a correct signature in the list is never a
//! mismatch; a list refused as too long holds more than `MAX_SIGNATURE_ENTRIES` `v1`/`v1a`
//! entries, and an accepted one never does; an acceptance is backed by a list entry equal to
//! an independently computed HMAC of `id.timestamp.body` under the reported key, with the
//! timestamp within the tolerance and the id reported.
#![no_main]

use std::time::Duration;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use runhook_core::{
    sign_standard_webhooks, AuthError, Delivery, FixedClock, Secret, Secrets, StandardWebhooks,
    StandardWebhooksPublicKey, TimestampCheck, Verifier,
};
use runhook_fuzz::{hmac_sha256, Message};

const KEYS: [&str; 2] = [
    "whsec_b2xkLWtleS1vbGQta2V5LW9sZC1rZXk=",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
];
const NOW: i64 = 1_614_265_330;
/// The public key of the v1a test vectors in runhook-core (private key: bytes 0..=31).
const PUBLIC_KEY: &str = "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";

fuzz_target!(|data: &[u8]| {
    let Some(mut message) = Message::parse(data) else {
        return;
    };
    let secrets = KEYS.map(|k| Secret::from_standard_webhooks(k).unwrap());
    let tolerance = match message.flags & 3 {
        0 => Duration::from_secs(300),
        1 => Duration::ZERO,
        2 => Duration::from_secs(u64::MAX),
        _ => Duration::from_secs(86_400),
    };
    let public = StandardWebhooksPublicKey::from_standard_webhooks(PUBLIC_KEY).unwrap();
    let scheme = StandardWebhooks::new(Secrets::new(secrets.clone()).unwrap())
        .and_public_keys(public)
        .with_tolerance(tolerance)
        .with_clock(FixedClock(NOW));

    let mut self_signed = false;
    if message.flag(2) {
        let id = message.single("webhook-id").map(<[u8]>::to_vec);
        let timestamp = message.single("webhook-timestamp").map(<[u8]>::to_vec);
        if let (Some(id), Some(timestamp)) = (id, timestamp) {
            let key = secrets[usize::from(!message.flag(3))].expose();
            let mac = hmac_sha256(key, &[&id, b".", &timestamp, b".", &message.body]);
            let entry = format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(mac)
            );
            // When both are plain text, runhook's own signer must agree with this one.
            if let (Ok(id), Ok(ts)) = (std::str::from_utf8(&id), std::str::from_utf8(&timestamp)) {
                if let Ok(ts) = ts.parse::<i64>() {
                    if ts.to_string().as_bytes() == timestamp {
                        let key = &secrets[usize::from(!message.flag(3))];
                        assert_eq!(sign_standard_webhooks(key, id, ts, &message.body), entry);
                    }
                }
            }
            let mut list = message
                .single("webhook-signature")
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            if !list.is_empty() {
                list.push(b' ');
            }
            list.extend_from_slice(entry.as_bytes());
            message.set_header("webhook-signature", list);
            self_signed = true;
        }
    }

    // How many v1/v1a entries the list holds (when it was sent once).
    let signatures = message.single("webhook-signature").map(|list| {
        list.split(|&b| b == b' ')
            .filter(|entry| entry.starts_with(b"v1,") || entry.starts_with(b"v1a,"))
            .count()
    });
    let too_many = signatures.is_some_and(|n| n > StandardWebhooks::MAX_SIGNATURE_ENTRIES);

    let delivery = Delivery::new(&message.headers, &message.body).with_path(&message.path);
    match scheme.verify(&delivery) {
        Err(err) => {
            assert_eq!(err.status(), 401);
            let _ = err.to_string();
            if let AuthError::TooManySignatures { max, .. } = err {
                assert_eq!(max, StandardWebhooks::MAX_SIGNATURE_ENTRIES);
                assert!(too_many, "refused as too long with {signatures:?} entries");
            }
            assert!(
                !(self_signed && matches!(err, AuthError::SignatureMismatch { .. })),
                "a correctly signed delivery was a mismatch"
            );
        }
        Ok(verified) => {
            let id = message
                .single("webhook-id")
                .expect("accepted without one id");
            let timestamp = message
                .single("webhook-timestamp")
                .expect("accepted without one timestamp");
            let list = message
                .single("webhook-signature")
                .expect("accepted without one signature list");
            let index = verified
                .key_index
                .expect("Standard Webhooks reports its key");
            let backed = match secrets.get(index) {
                Some(key) => {
                    let expected =
                        hmac_sha256(key.expose(), &[id, b".", timestamp, b".", &message.body]);
                    list.split(|&b| b == b' ')
                        .filter_map(|entry| entry.strip_prefix(b"v1,"))
                        .filter_map(|b64| {
                            base64::engine::general_purpose::STANDARD.decode(b64).ok()
                        })
                        .any(|sig| sig == expected)
                }
                // The public key (index 2): only a 64-byte v1a entry can have matched.
                None => {
                    assert_eq!(index, secrets.len(), "no such key");
                    list.split(|&b| b == b' ')
                        .filter_map(|entry| entry.strip_prefix(b"v1a,"))
                        .filter_map(|b64| {
                            base64::engine::general_purpose::STANDARD.decode(b64).ok()
                        })
                        .any(|sig| sig.len() == 64)
                }
            };
            assert!(backed, "forgery accepted");
            assert!(!too_many, "accepted with {signatures:?} entries");
            assert_eq!(verified.message_id.as_deref().map(str::as_bytes), Some(id));
            match verified.timestamp {
                TimestampCheck::WithinTolerance {
                    timestamp: at,
                    covered_by_signature: true,
                } => {
                    assert!(u128::from(at.abs_diff(NOW)) <= tolerance.as_secs().into());
                    let text = std::str::from_utf8(timestamp).unwrap();
                    assert_eq!(text.parse::<i64>().ok(), Some(at));
                }
                other => panic!("unexpected timestamp check {other:?}"),
            }
            if self_signed {
                assert_eq!(index, usize::from(!message.flag(3)));
            }
        }
    }
});
