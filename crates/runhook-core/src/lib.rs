//! # runhook-core
//!
//! The synchronous, I/O-free heart of runhook: secrets, authentication of webhook deliveries on
//! the body bytes exactly as received, and errors that know the HTTP status to answer.
//!
//! | sender | scheme |
//! |---|---|
//! | Skyvern | [`SkyvernSignature`]: hex HMAC-SHA256 of the raw body in `x-skyvern-signature` |
//! | WebRun | [`HeaderToken::authorization`]: the configured `auth` value in `Authorization` |
//! | SmartBrowse | [`PathSecret`] and/or [`HeaderToken`] |
//! | TinyFish | [`PathSecret`] (its only credential), or [`Unsigned`] chosen by name |
//! | Firecrawl | [`FirecrawlSignature`]: `x-firecrawl-signature: sha256=<hex HMAC-SHA256 of the raw body>` |
//! | Browser Use | [`BrowserUseSignature`]: `x-browser-use-signature`, hex HMAC-SHA256 of `"{timestamp}.{sorted-key payload}"` |
//! | Browserbase, many others | [`StandardWebhooks`] |
//!
//! What runhook knows about each platform (its default scheme, the schemes it can send, how
//! its sender retries, its run API) is in one table: [`platform::Platform`].
//!
//! ```
//! use runhook_core::{sign_skyvern, Delivery, SchemeKind, Secret, SkyvernSignature, Verifier};
//!
//! let api_key = Secret::new("sk_live_example")?; // refuses "" and "   "
//! let scheme = SkyvernSignature::new(api_key.clone());
//!
//! let body = br#"{"run_id":"wr_1","status":"completed"}"#; // exactly as received
//! let headers = http::HeaderMap::from_iter([(
//!     http::HeaderName::from_static("x-skyvern-signature"),
//!     sign_skyvern(&api_key, body).parse()?,
//! )]);
//! let verified = scheme.verify(&Delivery::new(&headers, body))?;
//! assert_eq!(verified.scheme, SchemeKind::Skyvern);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
pub mod canonical;
mod error;
mod headers;
pub mod payload;
pub mod platform;
mod retry_after;
mod secret;
mod verify;

pub use auth::{
    sign_browser_use, sign_browser_use_legacy, sign_firecrawl, sign_skyvern,
    sign_standard_webhooks, AnyOf, BrowserUseSignature, FirecrawlSignature, HeaderToken,
    LegacySignature, PathSecret, PublicKeys, SegmentPosition, SkyvernSignature, StandardWebhooks,
    StandardWebhooksKeys, StandardWebhooksPublicKey, Unsigned,
};
pub use error::{AuthError, ConfigError, SchemeKind};
pub use headers::{single_header, HeaderLookup, SingleHeader};
pub use retry_after::parse_retry_after;
pub use secret::{Secret, Secrets, PUBLIC_PLACEHOLDER_KEYS};
pub use verify::{
    BeforeBody, BodyMatch, Clock, Delivery, FixedClock, SystemClock, TimestampCheck, Verified,
    Verifier,
};
