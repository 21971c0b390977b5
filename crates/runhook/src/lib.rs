//! # runhook
//!
//! Receive the webhooks that web-agent platforms (Skyvern, TinyFish, WebRun, SmartBrowse) send
//! when a run finishes: prove each delivery is genuine on its raw bytes, process each run once,
//! answer within the sender's timeout, and never lose a genuine delivery.
//!
//! This crate re-exports [`runhook_core`] (secrets and authentication schemes) and adds the
//! framework integrations behind cargo features: `axum` (whose `http::HeaderMap` implements
//! [`HeaderLookup`](verify::HeaderLookup) as is) and `actix` ([`actix::ActixHeaders`]).
//!
//! ```
//! use runhook::{Secret, SkyvernSignature, Verifier};
//! use runhook::verify::{sign_skyvern, Delivery};
//!
//! let key = Secret::new("sk_live_example")?;
//! let body = br#"{"run_id":"tsk_1","status":"completed"}"#;
//! let mut headers = http::HeaderMap::new();
//! headers.insert("x-skyvern-signature", sign_skyvern(&key, body).parse()?);
//! assert!(SkyvernSignature::new(key).verify(&Delivery::new(&headers, body)).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Three forms of one pipeline
//!
//! - [`Receiver`] (built with a handler): acknowledges as soon as the run is safely handed off
//!   and runs the handler in the background, retried with backoff, dead-lettered when it keeps
//!   failing. Mounted with `runhook::axum::post`, `runhook::actix::post`, or as a tower
//!   `Service`.
//! - [`InlineReceiver`] (built with [`ReceiverBuilder::build_inline`]) behind a middleware,
//!   `tower::WebhookLayer` or `actix::WebhookLayer`: your existing handler runs inline; a
//!   2xx completes the claim, anything else releases it.
//! - The same [`InlineReceiver`] behind an extractor (`axum::Webhook`, `actix::Webhook`): you
//!   get the claimed run and complete it yourself.
//!
//! ## Response policy
//!
//! Every answer comes from an [`Outcome`], whose documentation holds the whole policy table
//! (status, `Retry-After`, closing the connection); the adapters only render it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod budget;
pub mod dead_letter;
pub mod handler;
mod handoff;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod inbox;
mod log_every;
#[cfg(any(feature = "tower", feature = "actix"))]
mod middleware;
mod parked;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres_queue;
pub mod receiver;
#[cfg(feature = "tower")]
mod response;
pub mod retry;
pub mod runs;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
mod stats;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod stream;
mod unrecorded;
mod worker;

// The entry points: the receivers, their builder, what they answer, the handler they run.
pub use handler::{Handler, HandlerError};
pub use receiver::{
    BuildError, InlineReceiver, Outcome, OutcomeKind, Receiver, ReceiverBuilder, ShutdownReport,
};
pub use stats::Stats;
// The schemes and their keys.
pub use runhook_core::{
    AnyOf, BrowserUseSignature, FirecrawlSignature, HeaderToken, PathSecret, Secret, Secrets,
    SkyvernSignature, StandardWebhooks, Unsigned, Verifier,
};

pub use runhook_core::{canonical, payload, platform};
pub use runhook_store as store;

/// Authentication in detail: the delivery a scheme checks, what it established, the errors,
/// clocks for timestamp windows, and the signing helpers senders (and tests) use.
pub mod verify {
    pub use runhook_core::{
        parse_retry_after, sign_browser_use, sign_browser_use_legacy, sign_firecrawl, sign_skyvern,
        sign_standard_webhooks, single_header, AuthError, BodyMatch, Clock, ConfigError, Delivery,
        FixedClock, HeaderLookup, LegacySignature, PublicKeys, SchemeKind, SegmentPosition,
        SingleHeader, StandardWebhooksKeys, StandardWebhooksPublicKey, SystemClock, TimestampCheck,
        Verified,
    };
}

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
