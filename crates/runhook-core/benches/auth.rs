//! Verification cost per delivery on the realistic Skyvern body (`testdata/`), side by side
//! with the hand-rolled check runhook replaces (hex-encode the HMAC, then `==` on strings).
//!
//! Run: `cargo bench -p runhook-core --bench auth`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hmac::{Hmac, Mac as _};
use runhook_core::{
    sign_skyvern, sign_standard_webhooks, Delivery, FixedClock, HeaderToken, Secret, Secrets,
    SkyvernSignature, StandardWebhooks, Verifier,
};
use sha2::Sha256;

const BODY: &[u8] = include_bytes!("../../../testdata/skyvern-run-pretty.json");

/// The usual hand-rolled check: not constant-time, allocates a hex string per request.
fn hand_rolled(key: &[u8], body: &[u8], header: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes()) == header
}

fn skyvern(c: &mut Criterion) {
    let key = Secret::new("sk_bench_key").unwrap();
    let signature = sign_skyvern(&key, BODY);
    let headers = http::HeaderMap::from_iter([(
        http::HeaderName::from_static("x-skyvern-signature"),
        signature.parse().unwrap(),
    )]);
    let one_key = SkyvernSignature::new(key.clone());
    let rotation = SkyvernSignature::new(
        Secrets::new([Secret::new("sk_bench_old").unwrap(), key.clone()]).unwrap(),
    );

    let mut group = c.benchmark_group("skyvern_verify");
    group.throughput(Throughput::Bytes(BODY.len() as u64));
    group.bench_function("runhook_one_key", |b| {
        b.iter(|| {
            one_key
                .verify(black_box(&Delivery::new(&headers, BODY)))
                .unwrap()
        })
    });
    group.bench_function("runhook_two_keys", |b| {
        b.iter(|| {
            rotation
                .verify(black_box(&Delivery::new(&headers, BODY)))
                .unwrap()
        })
    });
    group.bench_function("hand_rolled_hex_eq", |b| {
        b.iter(|| assert!(hand_rolled(b"sk_bench_key", black_box(BODY), &signature)))
    });
    group.finish();
}

fn others(c: &mut Criterion) {
    let token = HeaderToken::authorization(Secret::new("Bearer bench-token").unwrap());
    let headers = [("authorization", "Bearer bench-token")];
    c.bench_function("header_token_verify", |b| {
        b.iter(|| {
            token
                .verify(black_box(&Delivery::new(&headers, BODY)))
                .unwrap()
        })
    });

    let key = Secret::from_standard_webhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let signature = sign_standard_webhooks(&key, "msg_1", 1_700_000_000, BODY);
    let headers = [
        ("webhook-id", "msg_1".to_string()),
        ("webhook-timestamp", "1700000000".to_string()),
        ("webhook-signature", signature),
    ];
    let scheme = StandardWebhooks::new(key).with_clock(FixedClock(1_700_000_000));
    let mut group = c.benchmark_group("standard_webhooks_verify");
    group.throughput(Throughput::Bytes(BODY.len() as u64));
    group.bench_function("runhook", |b| {
        b.iter(|| {
            scheme
                .verify(black_box(&Delivery::new(&headers, BODY)))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, skyvern, others);
criterion_main!(benches);
