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

/// A `v1a` entry no key made, yet one that passes every check before the hash: `R` is the
/// ed25519 base point (canonical, not of small order) and `s` is 0 (canonical).
fn crafted_entry() -> String {
    let mut bytes = [0u8; 64];
    bytes[0] = 0x58;
    bytes[1..32].fill(0x66);
    format!(
        "v1a,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// `count` crafted entries, then `last` if any, space-separated.
fn crafted_list(count: usize, last: Option<&str>) -> String {
    let mut entries = vec![crafted_entry(); count];
    entries.extend(last.map(str::to_string));
    entries.join(" ")
}

#[test]
fn the_crafted_entry_is_well_formed_and_refused() {
    assert!(matches!(
        verify(&public_only(PUBLIC), &crafted_entry(), BODY),
        Err(AuthError::SignatureMismatch { .. })
    ));
}

#[test]
fn a_header_at_the_entry_bound_is_checked_whole() {
    let max = StandardWebhooks::MAX_SIGNATURE_ENTRIES;
    assert_eq!(max, 8);
    // The genuine entry last, behind max - 1 crafted ones.
    let list = crafted_list(max - 1, Some(SIGNATURE));
    let verified = verify(&public_only(PUBLIC), &list, BODY).unwrap();
    assert_eq!(verified.key_index, Some(0));
    // Mixed kinds count together: max - 1 v1 entries and the genuine v1a one.
    let secret = Secret::from_standard_webhooks(SECRET).unwrap();
    let v1 = sign_standard_webhooks(&secret, ID, TS, b"another body");
    let mut mixed = vec![v1; max - 1];
    mixed.push(SIGNATURE.to_string());
    let both = StandardWebhooks::new(secret)
        .and_public_keys(key(PUBLIC))
        .with_clock(FixedClock(TS));
    assert!(verify(&both, &mixed.join(" "), BODY).is_ok());
    // Entries of other versions, and text without a comma, do not count.
    let padded = format!("{} v2,zzz junk {list}", "v9,abc ".repeat(50));
    assert!(verify(&public_only(PUBLIC), &padded, BODY).is_ok());
}

#[test]
fn a_header_past_the_entry_bound_is_refused_before_any_check() {
    let max = StandardWebhooks::MAX_SIGNATURE_ENTRIES;
    let too_many = AuthError::TooManySignatures {
        name: "webhook-signature".into(),
        max,
    };
    // The genuine entry first: had any entry been checked, the delivery would be accepted.
    let mut list = vec![SIGNATURE.to_string()];
    list.extend(vec![crafted_entry(); max]);
    assert_eq!(
        verify(&public_only(PUBLIC), &list.join(" "), BODY).unwrap_err(),
        too_many
    );
    // The same with a genuine v1 entry first, beside v1a ones, on a verifier holding both.
    let secret = Secret::from_standard_webhooks(SECRET).unwrap();
    let v1 = sign_standard_webhooks(&secret, ID, TS, BODY);
    let both = StandardWebhooks::new(secret.clone())
        .and_public_keys(key(PUBLIC))
        .with_clock(FixedClock(TS));
    let mixed = format!("{v1} {}", crafted_list(max, None));
    assert_eq!(verify(&both, &mixed, BODY).unwrap_err(), too_many);
    // Entries of a kind the verifier holds no key for, or malformed ones, count too: the
    // bound is on the header, not on what this configuration would check.
    let symmetric = StandardWebhooks::new(secret).with_clock(FixedClock(TS));
    let skipped = format!("{v1} {}", crafted_list(max, None));
    assert_eq!(verify(&symmetric, &skipped, BODY).unwrap_err(), too_many);
    let malformed = format!("{} {SIGNATURE}", "v1a,!!! ".repeat(max));
    assert_eq!(
        verify(&public_only(PUBLIC), &malformed, BODY).unwrap_err(),
        too_many
    );
    // 4 000 crafted entries: the same answer, and the message says why.
    let flood = crafted_list(4_000, None);
    let err = verify(&public_only(PUBLIC), &flood, BODY).unwrap_err();
    assert_eq!(err, too_many);
    assert_eq!(
        err.to_string(),
        "header `webhook-signature` carries more than 8 signatures"
    );
    assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
}
