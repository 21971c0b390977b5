//! Runnable examples of runhook: see the `[[example]]` entries in Cargo.toml.
