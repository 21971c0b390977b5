//! End-to-end tests of runhook: see the `[[test]]` entries in Cargo.toml.
