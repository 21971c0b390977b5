//! Canonicalizer throughput on the realistic Skyvern run body (`testdata/`), pretty-printed
//! and compact, side by side with serde_json's parse-to-`Value` plus serialize on the same
//! input. The third contender, Python doing what Skyvern does, is measured by
//! `benches/canonical_python.py` on the same two inputs.
//!
//! Run: `cargo bench -p runhook-core --bench canonical`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use runhook_core::canonical::{canonicalize, canonicalize_into};

const PRETTY: &[u8] = include_bytes!("../../../testdata/skyvern-run-pretty.json");

fn canonical(c: &mut Criterion) {
    let compact = canonicalize(PRETTY).expect("the fixture is valid");
    let inputs: [(&str, &[u8]); 2] = [("pretty", PRETTY), ("compact", &compact)];
    let mut group = c.benchmark_group("canonical");
    for (name, input) in inputs {
        group.throughput(Throughput::Bytes(input.len() as u64));
        let mut out = Vec::with_capacity(input.len());
        group.bench_with_input(BenchmarkId::new("runhook", name), input, |b, input| {
            b.iter(|| {
                out.clear();
                canonicalize_into(black_box(input), &mut out).unwrap();
                black_box(out.len())
            })
        });
        let mut out = Vec::with_capacity(input.len());
        group.bench_with_input(
            BenchmarkId::new("serde_json_roundtrip", name),
            input,
            |b, input| {
                b.iter(|| {
                    out.clear();
                    let value: serde_json::Value =
                        serde_json::from_slice(black_box(input)).unwrap();
                    serde_json::to_writer(&mut out, &value).unwrap();
                    black_box(out.len())
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, canonical);
criterion_main!(benches);
