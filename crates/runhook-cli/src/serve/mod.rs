//! The receiving server behind `runhook serve` and `runhook demo`.

pub mod app;
pub mod config;
pub mod forward;
pub mod handlers;
pub mod jsonl;
pub mod metrics;
pub mod runs;
pub mod trim;
