//! Verification cost per delivery on the realistic Skyvern body (`testdata/`), side by side
//! with the hand-rolled check runhook replaces (hex-encode the HMAC, then `==` on strings).
//!
//! Also what a forged Standard Webhooks `v1a` list costs on a 2 MiB body: one crafted entry
//! (one ed25519 check, which hashes the whole body) and 4 000 of them (refused unchecked).
//!
//! Run: `cargo bench -p runhook-core --bench auth`

use std::hint::black_box;

use criterion::measurement::{Measurement, WallTime};
use criterion::{criterion_group, criterion_main, Bencher, BenchmarkGroup, Criterion, Throughput};
use hmac::{Hmac, Mac as _};
use runhook_core::{
    sign_skyvern, sign_standard_webhooks, AuthError, Delivery, FixedClock, HeaderLookup,
    HeaderToken, Secret, Secrets, SkyvernSignature, StandardWebhooks, StandardWebhooksPublicKey,
    Verifier,
};
use sha2::Sha256;

const BODY: &[u8] = include_bytes!("../../../testdata/skyvern-run-pretty.json");

/// The usual hand-rolled check: not constant-time, allocates a hex string per request.
fn hand_rolled(key: &[u8], body: &[u8], header: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes()) == header
}

/// Benches `verifier` accepting `headers` and [`BODY`], as `name` in `on` (a group or the
/// whole run).
fn bench_verify<M: Measurement>(
    on: &mut impl BenchOn<M>,
    name: &str,
    verifier: &impl Verifier,
    headers: &dyn HeaderLookup,
) {
    on.bench(name, &mut |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&Delivery::new(headers, BODY)))
                .unwrap()
        })
    });
}

/// Where a bench function can go: a group, or the whole run.
trait BenchOn<M: Measurement> {
    fn bench(&mut self, name: &str, f: &mut dyn FnMut(&mut Bencher<'_, M>));
}

impl<M: Measurement> BenchOn<M> for BenchmarkGroup<'_, M> {
    fn bench(&mut self, name: &str, f: &mut dyn FnMut(&mut Bencher<'_, M>)) {
        self.bench_function(name, f);
    }
}

impl BenchOn<WallTime> for Criterion {
    fn bench(&mut self, name: &str, f: &mut dyn FnMut(&mut Bencher<'_, WallTime>)) {
        self.bench_function(name, f);
    }
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
    bench_verify(&mut group, "runhook_one_key", &one_key, &headers);
    bench_verify(&mut group, "runhook_two_keys", &rotation, &headers);
    group.bench_function("hand_rolled_hex_eq", |b| {
        b.iter(|| assert!(hand_rolled(b"sk_bench_key", black_box(BODY), &signature)))
    });
    group.finish();
}

fn others(c: &mut Criterion) {
    let token = HeaderToken::authorization(Secret::new("Bearer bench-token").unwrap());
    let headers = [("authorization", "Bearer bench-token")];
    bench_verify(c, "header_token_verify", &token, &headers);

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
    bench_verify(&mut group, "runhook", &scheme, &headers);
    group.finish();
}

/// A `v1a` entry nobody signed that passes every check before the hash: `R` is the ed25519
/// base point, `s` is 0.
const CRAFTED_V1A: &str =
    "v1a,WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmYAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";

fn v1a_flood(c: &mut Criterion) {
    let key = StandardWebhooksPublicKey::from_standard_webhooks(
        "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",
    )
    .unwrap();
    let scheme = StandardWebhooks::from_public_keys(key).with_clock(FixedClock(1_700_000_000));
    let body = vec![b'x'; 2 * 1024 * 1024];
    let mut group = c.benchmark_group("standard_webhooks_v1a_forged_2mib");
    for entries in [1, 4_000] {
        let headers = [
            ("webhook-id", "msg_1".to_string()),
            ("webhook-timestamp", "1700000000".to_string()),
            ("webhook-signature", vec![CRAFTED_V1A; entries].join(" ")),
        ];
        group.bench_function(format!("{entries}_entries"), |b| {
            b.iter(|| {
                let err = scheme
                    .verify(black_box(&Delivery::new(&headers, &body)))
                    .unwrap_err();
                assert_eq!(
                    matches!(err, AuthError::TooManySignatures { .. }),
                    entries > StandardWebhooks::MAX_SIGNATURE_ENTRIES
                );
            })
        });
    }
    group.finish();
}

criterion_group!(benches, skyvern, others, v1a_flood);
criterion_main!(benches);
