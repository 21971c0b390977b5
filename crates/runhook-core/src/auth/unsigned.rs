//! An explicit choice to accept deliveries that carry no proof of origin (TinyFish documents no
//! signature).

use crate::error::{AuthError, SchemeKind};
use crate::verify::{BodyMatch, Delivery, TimestampCheck, Verified, Verifier};

/// Accepts every delivery and records that nothing was authenticated.
///
/// There is no `Default`: this scheme has to be chosen by name. TinyFish documents no
/// signature; if you use it, confirm each run with `GET /v1/runs/{id}` before acting on it, and
/// prefer a secret path ([`crate::PathSecret`]) where the sender lets you choose the URL.
///
/// ```
/// use runhook_core::{Delivery, Unsigned, Verifier};
/// let headers: [(&str, &str); 0] = [];
/// let verified = Unsigned::accept_without_authentication().verify(&Delivery::new(&headers, b"{}"))?;
/// assert!(!verified.authenticated);
/// # Ok::<(), runhook_core::AuthError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Unsigned {
    _chosen_by_name: (),
}

impl Unsigned {
    /// Accepts deliveries without authenticating them.
    pub fn accept_without_authentication() -> Self {
        Self {
            _chosen_by_name: (),
        }
    }
}

impl Verifier for Unsigned {
    fn verify(&self, _delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        Ok(Verified {
            scheme: SchemeKind::Unsigned,
            key_index: None,
            authenticated: false,
            timestamp: TimestampCheck::NotChecked,
            message_id: None,
            body: BodyMatch::NotSigned,
        })
    }

    fn schemes(&self) -> Vec<SchemeKind> {
        vec![SchemeKind::Unsigned]
    }
}
