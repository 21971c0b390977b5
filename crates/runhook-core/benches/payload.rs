//! Typed parse of the realistic Skyvern body: runhook's lenient-capable path versus plain
//! `serde_json::from_slice` into the same struct (strict), on the compact body Skyvern sends.
//! A third line measures a body that really needs the lenient path (it holds `NaN`).
//!
//! Run: `cargo bench -p runhook-core --bench payload`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use runhook_core::canonical::canonicalize;
use runhook_core::payload::{json::from_body, Provider, RunEvent, SkyvernRun};

const PRETTY: &[u8] = include_bytes!("../../../testdata/skyvern-run-pretty.json");

fn payload(c: &mut Criterion) {
    let compact = canonicalize(PRETTY).unwrap();
    let text = std::str::from_utf8(&compact).unwrap();
    let with_nan = text.replacen("\"step_count\":", "\"score\":NaN,\"step_count\":", 1);
    assert_ne!(with_nan, text, "the fixture has a step_count to mark");

    let mut group = c.benchmark_group("skyvern_typed_parse");
    group.throughput(Throughput::Bytes(compact.len() as u64));
    group.bench_function("serde_json_strict", |b| {
        b.iter(|| serde_json::from_slice::<SkyvernRun>(black_box(&compact)).unwrap())
    });
    group.bench_function("serde_json_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&compact)).unwrap())
    });
    group.bench_function("runhook_from_body", |b| {
        b.iter(|| from_body::<SkyvernRun>(black_box(&compact)).unwrap())
    });
    group.bench_function("runhook_run_event", |b| {
        b.iter(|| RunEvent::parse(Provider::Skyvern, black_box(compact.clone())).unwrap())
    });
    group.bench_function("runhook_from_body_with_nan", |b| {
        b.iter(|| from_body::<SkyvernRun>(black_box(with_nan.as_bytes())).unwrap())
    });
    group.finish();
}

criterion_group!(benches, payload);
criterion_main!(benches);
