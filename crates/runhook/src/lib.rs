//! # runhook
//!
//! Receive the webhooks that web-agent platforms (Skyvern, TinyFish, WebRun, SmartBrowse) send
//! when a run finishes: prove each delivery is genuine on its raw bytes, process each run once,
//! answer within the sender's timeout, and never lose a genuine delivery.
//!
//! This crate re-exports [`runhook_core`] (secrets and authentication schemes) and adds the
//! framework integrations behind cargo features: `axum` (whose `http::HeaderMap` implements
//! [`HeaderLookup`] as is) and `actix` ([`actix::ActixHeaders`]).
//!
//! ```
//! use runhook::{sign_skyvern, Delivery, Secret, SkyvernSignature, Verifier};
//!
//! let key = Secret::new("sk_live_example")?;
//! let body = br#"{"run_id":"tsk_1","status":"completed"}"#;
//! let mut headers = http::HeaderMap::new();
//! headers.insert("x-skyvern-signature", sign_skyvern(&key, body).parse()?);
//! assert!(SkyvernSignature::new(key).verify(&Delivery::new(&headers, body)).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use runhook_core::*;
pub use runhook_store as store;

mod body;
mod dead_letter;
mod handler;
mod handoff;
mod memory_queue;
mod receiver;
mod redrive;
#[cfg(feature = "tower")]
mod response;
mod stats;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod stream;
mod worker;

pub use body::content_length;
pub use dead_letter::{
    DeadLetter, DeadLetterReason, DeadLetterRecord, DeadLetterSink, JsonLinesDeadLetters,
    MemoryDeadLetters,
};
pub use handler::{BoxFuture, Handler, HandlerError};
pub use receiver::{
    BuildError, ClaimedEvent, InFlightDuplicates, InlineReceiver, KeyResolver, Outcome,
    OutcomeKind, Receiver, ReceiverBuilder, ShutdownReport, Unavailable, VerifiedRun,
    DEFAULT_BODY_LIMIT, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_LEASE, DEFAULT_QUEUE_CAPACITY,
};
pub use redrive::{redrive_file, RedriveReport};
pub use stats::Stats;
pub use worker::RetryPolicy;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use stream::{RedisStreamDeadLetters, RedisStreamQueue, RedisStreamQueueBuilder, StreamError};

#[cfg(feature = "actix")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub mod actix;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
