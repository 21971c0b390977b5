//! The shared fixtures under `testdata/` and `examples/deliveries/`, read at compile time.

/// A real Skyvern run body, pretty-printed as Skyvern sends it (`testdata/skyvern-run-pretty.json`).
pub const SKYVERN_RUN_PRETTY: &[u8] = include_bytes!("../../../testdata/skyvern-run-pretty.json");

/// The canonicalization vectors, one JSON object a line (`testdata/skyvern-canonical.jsonl`).
pub const SKYVERN_CANONICAL_VECTORS: &str =
    include_str!("../../../testdata/skyvern-canonical.jsonl");

/// The example Skyvern delivery (`examples/deliveries/skyvern-completed.json`).
pub const SKYVERN_COMPLETED_DELIVERY: &str =
    include_str!("../../../examples/deliveries/skyvern-completed.json");
