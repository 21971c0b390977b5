//! # runhook-store
//!
//! Idempotency stores for webhook receivers: each run's work happens once although senders
//! retry and replay. The `IdempotencyStore` contract and its in-memory and Redis backends land
//! here (see the project's DESIGN.md, "Idempotency states").
#![forbid(unsafe_code)]
#![warn(missing_docs)]
