//! The verification contract every scheme implements, and what a success reports.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{AuthError, SchemeKind};
use crate::headers::HeaderLookup;

/// One incoming delivery, borrowed from the HTTP request: headers, path and the body bytes
/// exactly as received. Nothing is copied or re-serialized.
#[derive(Clone, Copy)]
pub struct Delivery<'a> {
    /// The request headers.
    pub headers: &'a dyn HeaderLookup,
    /// The request path, e.g. `/webhooks/smartbrowse/8x4Kpz`; a query string is ignored.
    pub path: &'a str,
    /// The body bytes exactly as received.
    pub body: &'a [u8],
}

impl<'a> Delivery<'a> {
    /// A delivery with the given headers and body, on path `/`.
    pub fn new(headers: &'a dyn HeaderLookup, body: &'a [u8]) -> Self {
        Self {
            headers,
            path: "/",
            body,
        }
    }

    /// The same delivery on another request path.
    pub fn with_path(mut self, path: &'a str) -> Self {
        self.path = path;
        self
    }
}

impl fmt::Debug for Delivery<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("path", &self.path)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// An authentication scheme: decides whether a delivery is genuine.
///
/// Implementations are synchronous and do no I/O. The trait is object-safe, so schemes can be
/// combined at run time ([`crate::AnyOf`]) and stored as `Box<dyn Verifier>`.
pub trait Verifier: Send + Sync {
    /// Checks `delivery`; on success says which scheme and key accepted it.
    fn verify(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError>;

    /// The same check without any slow fallback (the canonical form of
    /// [`crate::SkyvernSignature::with_canonical_fallback`]): cheap enough to run on an async
    /// worker. When it fails and [`Verifier::has_fallback`] is `true`, [`Verifier::verify`]
    /// may still accept the delivery; run it off the async workers. By default the same as
    /// [`Verifier::verify`].
    fn verify_exact(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        self.verify(delivery)
    }

    /// Whether [`Verifier::verify`] may accept a delivery that [`Verifier::verify_exact`]
    /// rejected. `false` by default.
    fn has_fallback(&self) -> bool {
        false
    }

    /// Decides from `delivery`'s headers and path alone, before its body is read, when the
    /// scheme can: a receiver then refuses a forged delivery without reading its body, and
    /// reads an accepted one's body without counting it as unauthenticated. `delivery.body` is
    /// empty and must not be relied on. By default [`BeforeBody::NeedsBody`]; a scheme that
    /// never reads the body but authenticates nothing ([`crate::Unsigned`]) must keep it.
    fn verify_before_body(&self, delivery: &Delivery<'_>) -> BeforeBody {
        let _ = delivery;
        BeforeBody::NeedsBody
    }

    /// The (lowercase) names of the headers that carry this scheme's credential or signature,
    /// which must not be stored with a delivery (dead letters, queue entries). Empty by
    /// default.
    fn credential_headers(&self) -> Vec<&str> {
        Vec::new()
    }

    /// The schemes this verifier may accept a delivery by, so that a receiver can refuse one
    /// its platform cannot satisfy ([`crate::platform::Platform::schemes`]). Empty (the
    /// default, for a scheme of your own) means unknown: not checked.
    fn schemes(&self) -> Vec<SchemeKind> {
        Vec::new()
    }
}

/// A verifier behind a pointer is a verifier: every method forwards to the pointee.
macro_rules! forward_verifier {
    ($($pointer:ident)::+) => {
        impl<V: Verifier + ?Sized> Verifier for $($pointer)::+<V> {
            fn verify(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
                (**self).verify(delivery)
            }

            fn verify_exact(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
                (**self).verify_exact(delivery)
            }

            fn has_fallback(&self) -> bool {
                (**self).has_fallback()
            }

            fn verify_before_body(&self, delivery: &Delivery<'_>) -> BeforeBody {
                (**self).verify_before_body(delivery)
            }

            fn credential_headers(&self) -> Vec<&str> {
                (**self).credential_headers()
            }

            fn schemes(&self) -> Vec<SchemeKind> {
                (**self).schemes()
            }
        }
    };
}

forward_verifier!(Box);
forward_verifier!(std::sync::Arc);

/// What a scheme can tell from a delivery's headers and path alone
/// ([`Verifier::verify_before_body`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeforeBody {
    /// The body is needed (a signature over it, or a scheme that says nothing).
    NeedsBody,
    /// Decided without the body: genuine (what proved it), or refused.
    Decided(Result<Verified, AuthError>),
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// The scheme that accepted the delivery.
    pub scheme: SchemeKind,
    /// Index, in the scheme's [`crate::Secrets`], of the secret that matched; `None` when
    /// nothing was authenticated ([`crate::Unsigned`]).
    pub key_index: Option<usize>,
    /// `false` only for [`crate::Unsigned`]: the delivery's origin was not proven.
    pub authenticated: bool,
    /// What was checked about the delivery's timestamp.
    pub timestamp: TimestampCheck,
    /// The sender's message id when the scheme has one (Standard Webhooks' `webhook-id`).
    pub message_id: Option<String>,
    /// How the signature relates to the body bytes received (with the canonical bytes the
    /// signature covers, when it matched only those).
    pub body: BodyMatch,
}

impl Verified {
    /// The bytes the sender signed when they differ from the body received (a canonical-only
    /// match); `None` when the signature covers the body as received, or nothing signs it.
    pub fn signed_body(&self) -> Option<&bytes::Bytes> {
        match &self.body {
            BodyMatch::Canonical { signed } => Some(signed),
            BodyMatch::Exact | BodyMatch::Reserialized | BodyMatch::NotSigned => None,
        }
    }

    pub(crate) fn new(scheme: SchemeKind, key_index: usize) -> Self {
        // Schemes that sign the body match its exact bytes unless they say otherwise; the
        // others leave the body unauthenticated.
        let body = match scheme {
            SchemeKind::Skyvern
            | SchemeKind::StandardWebhooks
            | SchemeKind::Firecrawl
            | SchemeKind::BrowserUse => BodyMatch::Exact,
            _ => BodyMatch::NotSigned,
        };
        Self {
            scheme,
            key_index: Some(key_index),
            authenticated: true,
            timestamp: TimestampCheck::NotChecked,
            message_id: None,
            body,
        }
    }
}

/// How a successful verification's signature relates to the body bytes received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyMatch {
    /// The signature covers the body bytes exactly as received.
    Exact,
    /// The signature matched only the body's canonical form, rebuilt as the sender serializes
    /// it ([`crate::SkyvernSignature::with_canonical_fallback`]): the body was re-serialized
    /// on its way (proxy, gateway, framework). Its content is what was signed; its bytes are
    /// not, so anything computed from the raw bytes (a hash, a byte-for-byte replay) differs.
    Canonical {
        /// The canonical bytes the signature covers: what the sender signed.
        signed: bytes::Bytes,
    },
    /// The signature covers the sender's own re-serialization of the payload, which the body's
    /// bytes need not match: Browser Use signs the sorted-key form of what it sends
    /// ([`crate::BrowserUseSignature`]). The content is what was signed, checked by rebuilding
    /// that form; it is the scheme's normal case, not a sign of a proxy.
    Reserialized,
    /// The scheme does not sign the body (header token, path secret, unsigned).
    NotSigned,
}

/// What a scheme checked about the time a delivery was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimestampCheck {
    /// No timestamp window was configured or the scheme has none.
    NotChecked,
    /// The timestamp was within the tolerance.
    WithinTolerance {
        /// The timestamp sent, in Unix seconds.
        timestamp: i64,
        /// Whether the signature covers the timestamp. `false` for Skyvern: its
        /// `x-skyvern-timestamp` is not signed, so an attacker who replays a captured body can
        /// send any timestamp; the window only rejects honest stale deliveries.
        covered_by_signature: bool,
    },
}

/// The current time as Unix seconds; injectable so that timestamp windows can be tested.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }
}

/// A clock stopped at a fixed instant, for tests and for replaying a captured delivery.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now_unix(&self) -> i64 {
        self.0
    }
}
