//! The canonicalizer against Skyvern's own Python normalizer, in alternation: each round times
//! runhook on a document for a fixed span, then asks a long-lived Python process
//! (`canonical_python.py --serve`) to time `json.loads` + normalize + `json.dumps` on the same
//! document for the same span, and takes the ratio. On a shared machine whose speed drifts
//! over minutes, the two halves of each ratio are then measured seconds apart, and the median
//! of the rounds' ratios is the figure to quote.
//!
//! Run: `cargo bench -p runhook-core --bench canonical_vs_python` (`ROUNDS`, default 15;
//! `SECONDS` per sample, default 0.3; `PYTHON`, default `python3`). The two sides' outputs are
//! checked to be the same bytes (by SHA-256) before any timing.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runhook_core::canonical::{canonicalize, canonicalize_into};
use sha2::{Digest, Sha256};

const PRETTY: &[u8] = include_bytes!("../../../testdata/skyvern-run-pretty.json");

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// MB/s (10^6 bytes) that runhook sustains on `input` for about `span`.
fn runhook_rate(input: &[u8], span: Duration) -> f64 {
    let mut out = Vec::with_capacity(input.len());
    let mut n = 0u64;
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            out.clear();
            canonicalize_into(black_box(input), &mut out).expect("the fixture is valid");
            black_box(out.len());
        }
        n += 64;
        let elapsed = start.elapsed();
        if elapsed >= span {
            return input.len() as f64 * n as f64 / elapsed.as_secs_f64() / 1e6;
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let rounds: usize = env_or("ROUNDS", 15);
    let span = Duration::from_secs_f64(env_or("SECONDS", 0.3));
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");

    let compact = canonicalize(PRETTY).expect("the fixture is valid");
    let mut child = Command::new(&python)
        .arg(manifest.join("benches/canonical_python.py"))
        .arg("--serve")
        .arg(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {python}: {e}"));
    let mut to_python = child.stdin.take().expect("piped stdin");
    let mut from_python = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut answer = || {
        from_python
            .next()
            .expect("python answered")
            .expect("python's answer is text")
    };

    let hello = answer();
    let (version, digest) = hello.rsplit_once(' ').expect("`python VERSION SHA256`");
    assert_eq!(
        digest,
        hex::encode(Sha256::digest(&compact)),
        "Python and runhook disagree on the fixture's canonical bytes"
    );
    println!(
        "{version}; {rounds} rounds of {:.1} s per side and input",
        span.as_secs_f64()
    );
    println!("outputs: same SHA-256 ({} canonical bytes)", compact.len());

    let inputs: [(&str, &[u8]); 2] = [("pretty", PRETTY), ("compact", &compact)];
    let mut ratios = [Vec::new(), Vec::new()];
    let mut rates = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    for round in 1..=rounds {
        for (i, (name, input)) in inputs.iter().enumerate() {
            let rust = runhook_rate(input, span);
            writeln!(to_python, "{name} {}", span.as_secs_f64()).expect("python reads");
            let py: f64 = answer().parse().expect("python's rate is a number");
            println!(
                "round {round:2} {name:8} runhook {rust:7.1} MB/s  python {py:6.2} MB/s  ratio {:5.1}x",
                rust / py
            );
            ratios[i].push(rust / py);
            rates[i].0.push(rust);
            rates[i].1.push(py);
        }
    }
    drop(to_python);
    let _ = child.wait();

    println!("medians over {rounds} rounds:");
    for (i, (name, _)) in inputs.iter().enumerate() {
        println!(
            "{name:8} runhook {:7.1} MB/s  python {:6.2} MB/s  ratio {:5.1}x (median of the rounds' ratios)",
            median(&mut rates[i].0),
            median(&mut rates[i].1),
            median(&mut ratios[i]),
        );
    }
}
