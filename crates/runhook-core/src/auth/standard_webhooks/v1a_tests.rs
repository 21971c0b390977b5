//! `v1a` (ed25519) signatures beside `v1`.
//!
//! The vectors were made with Python's `cryptography` package (Ed25519PrivateKey), outside
//! this repository: private key = the 32 bytes 0x00..=0x1f, message
//! `{ID}.{TS}.{BODY}`, standard base64; `OTHER` is the public key of the bytes 100..=131.

use super::*;
use crate::verify::FixedClock;

const PUBLIC: &str = "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
const OTHER: &str = "whpk_C7w0aldmfDgBIL2cf9flHSxf3+o3zS9b9AWyxr9vLXg=";
const SIGNATURE: &str =
    "v1a,yoUrgEkc12aGqm0n4Sydmdz55xJfTz4AsAgieHFjmkR7LJtqVCZOQYzvvHjI5kAey+r4iaBGxTFRrl2iBQxtDQ==";
const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TS: i64 = 1_614_265_330;
const BODY: &[u8] = br#"{"test": 2432232314}"#;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn key(text: &str) -> StandardWebhooksPublicKey {
    StandardWebhooksPublicKey::from_standard_webhooks(text).unwrap()
}

fn public_only(text: &str) -> StandardWebhooks {
    StandardWebhooks::from_public_keys(key(text)).with_clock(FixedClock(TS))
}

fn verify(scheme: &StandardWebhooks, signature: &str, body: &[u8]) -> Result<Verified, AuthError> {
    let headers = [
        ("webhook-id", ID.to_string()),
        ("webhook-timestamp", TS.to_string()),
        ("webhook-signature", signature.to_string()),
    ];
    scheme.verify(&Delivery::new(&headers, body))
}

#[test]
fn the_reference_signature_verifies() {
    let verified = verify(&public_only(PUBLIC), SIGNATURE, BODY).unwrap();
    assert_eq!(verified.key_index, Some(0));
    assert_eq!(verified.message_id.as_deref(), Some(ID));
}

#[test]
fn forged_wrong_key_truncated_and_malformed_signatures_are_refused() {
    let mismatch = |r: Result<Verified, AuthError>| {
        matches!(
            r,
            Err(AuthError::SignatureMismatch {
                scheme: SchemeKind::StandardWebhooks
            })
        )
    };
    let malformed =
        |r: Result<Verified, AuthError>| matches!(r, Err(AuthError::MalformedHeader { .. }));
    let scheme = public_only(PUBLIC);
    assert!(mismatch(verify(&scheme, SIGNATURE, b"{\"test\": 1}")));
    assert!(mismatch(verify(&public_only(OTHER), SIGNATURE, BODY)));
    let mut forged = SIGNATURE.to_string();
    forged.replace_range(10..11, if &SIGNATURE[10..11] == "A" { "B" } else { "A" });
    assert!(mismatch(verify(&scheme, &forged, BODY)));
    let truncated = &SIGNATURE[..SIGNATURE.len() - 8];
    assert!(malformed(verify(&scheme, truncated, BODY)));
    assert!(malformed(verify(&scheme, "v1a,!!!not-base64!!!", BODY)));
    let too_long = format!("{SIGNATURE}AAAA");
    assert!(malformed(verify(&scheme, &too_long, BODY)));
    // A v1 entry means nothing to a verifier holding only public keys.
    let secret = Secret::from_standard_webhooks(SECRET).unwrap();
    let v1 = sign_standard_webhooks(&secret, ID, TS, BODY);
    assert!(malformed(verify(&scheme, &v1, BODY)));
}

#[test]
fn any_valid_entry_of_a_held_kind_accepts() {
    let secret = Secret::from_standard_webhooks(SECRET).unwrap();
    let v1 = sign_standard_webhooks(&secret, ID, TS, BODY);
    let both = StandardWebhooks::new(secret.clone())
        .and_public_keys(PublicKeys::new([key(OTHER), key(PUBLIC)]).unwrap())
        .with_clock(FixedClock(TS));
    // Secrets are numbered first, then public keys.
    let by_v1a = verify(&both, &format!("v1,AAAA v2,zzz {SIGNATURE}"), BODY).unwrap();
    assert_eq!(by_v1a.key_index, Some(2));
    let by_v1 = verify(&both, &format!("{SIGNATURE} {v1}"), BODY).unwrap();
    assert_eq!(by_v1.key_index, Some(0));
    // A verifier holding only secrets skips v1a entries.
    let symmetric = StandardWebhooks::new(secret).with_clock(FixedClock(TS));
    assert!(matches!(
        verify(&symmetric, SIGNATURE, BODY),
        Err(AuthError::MalformedHeader { .. })
    ));
}

#[test]
fn public_keys_are_read_strictly_and_shown() {
    for bad in [
        "",
        "whpk_",
        "whpk_AAAA",
        "whpk_!!!",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ] {
        assert_eq!(
            StandardWebhooksPublicKey::from_standard_webhooks(bad).unwrap_err(),
            crate::ConfigError::InvalidStandardWebhooksPublicKey,
            "{bad:?}"
        );
    }
    assert!(format!("{:?}", key(PUBLIC)).contains(&PUBLIC[5..]));
    assert!(PublicKeys::new([]).is_err());
}
