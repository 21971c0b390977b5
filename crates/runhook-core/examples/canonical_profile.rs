//! Canonicalizes the realistic Skyvern fixture N times, for a profiler: instruction counts per
//! document are deterministic under callgrind where timings on a shared machine are not.
//!
//! ```text
//! cargo build --release -p runhook-core --example canonical_profile
//! valgrind --tool=callgrind target/release/examples/canonical_profile pretty 1
//! valgrind --tool=callgrind target/release/examples/canonical_profile pretty 101
//! ```
//!
//! The difference between the two runs' instruction totals, divided by 100, is the cost of one
//! document (`pretty`: the fixture as stored, 11 KB; `compact`: its canonical form, 7.8 KB;
//! or the path of any JSON file).
//! Run from the workspace root. It also prints the MB/s it measured, for a rough look.

use std::hint::black_box;
use std::time::Instant;

use runhook_core::canonical::{canonicalize, canonicalize_into};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "pretty".into());
    let documents: usize = args.next().map_or(1000, |n| n.parse().expect("a count"));
    let pretty = std::fs::read("testdata/skyvern-run-pretty.json")
        .expect("run from the workspace root: testdata/skyvern-run-pretty.json");
    let compact = canonicalize(&pretty).expect("the fixture is valid");
    let other;
    let input = match which.as_str() {
        "pretty" => &pretty,
        "compact" => &compact,
        path => {
            other = std::fs::read(path).expect("`pretty`, `compact` or a JSON file");
            &other
        }
    };
    let mut out = Vec::with_capacity(input.len());
    let start = Instant::now();
    for _ in 0..documents {
        out.clear();
        canonicalize_into(black_box(input), &mut out).expect("the fixture is valid");
        black_box(out.len());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = (input.len() * documents) as f64 / elapsed / 1e6;
    println!("{which}: {documents} documents, {rate:.1} MB/s");
}
