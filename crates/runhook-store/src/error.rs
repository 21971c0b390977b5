//! The one error type of every store, each variant with the HTTP status a receiver answers.

use std::time::Duration;

use http::StatusCode;

/// Why a store call did not do what was asked.
///
/// [`StoreError::status`] gives the answer for the sender:
/// anything a later retry can cure is `503 Service Unavailable`, with
/// [`StoreError::retry_after`] as a `Retry-After` hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached, did not answer within the timeout, or refused the
    /// command for a passing reason (loading, read-only replica, out of memory).
    ///
    /// Where a call may have been applied although its reply was lost, the store has read the
    /// state back before giving up, so this error means the outcome is unknown only if that
    /// read failed too.
    #[error("idempotency store unavailable: {reason}")]
    Unavailable {
        /// What went wrong, for logs.
        reason: String,
    },
    /// The store holds as many in-flight claims as it may. In-flight records are never
    /// evicted to make room, so the claim is refused instead.
    #[error("idempotency store is full: {capacity} claims in flight; refusing a new one rather than evicting one")]
    Full {
        /// The configured in-flight capacity.
        capacity: usize,
        /// When the earliest lease may lapse (at least one second), a `Retry-After` hint.
        retry_after: Duration,
    },
    /// The key is longer than the store accepts.
    #[error("idempotency key is {len} bytes long, more than the {max} allowed")]
    KeyTooLong {
        /// The key's length in bytes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The key is empty.
    #[error("idempotency key is empty")]
    EmptyKey,
    /// A lease or done window outside 1 ms ..= [`MAX_DURATION`](crate::MAX_DURATION).
    #[error("{what} of {duration:?} is outside 1 ms ..= 30 years")]
    InvalidDuration {
        /// Which duration ("lease", "keep_for").
        what: &'static str,
        /// The value given.
        duration: Duration,
    },
    /// The token does not hold the key (any more): its lease lapsed and the key was claimed
    /// again, completed, released or expired. Nothing was changed.
    #[error(
        "the token does not hold this key: its lease lapsed, or the key was completed or released"
    )]
    NotHolder,
    /// The store could not be set up as configured (e.g. a malformed Redis URL).
    #[error("idempotency store misconfigured: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// The backend holds, under this store's key, a value this store did not write (another
    /// program uses the same key prefix).
    #[error("idempotency store holds a foreign value under this key: {detail}")]
    Corrupt {
        /// What was found, for logs.
        detail: String,
    },
}

impl StoreError {
    /// The HTTP status a receiver answers when this error stops a delivery.
    ///
    /// * `503` for [`Unavailable`](Self::Unavailable) and [`Full`](Self::Full): a retry
    ///   later can succeed (TinyFish retries 5xx);
    /// * `400` for a key that is empty or too long: the delivery itself is unusable;
    /// * `409` for [`NotHolder`](Self::NotHolder): the work belongs to another worker now;
    /// * `500` for [`InvalidDuration`](Self::InvalidDuration), [`InvalidConfig`](Self::InvalidConfig)
    ///   and [`Corrupt`](Self::Corrupt):
    ///   the receiver is misconfigured.
    pub fn status(&self) -> StatusCode {
        match self {
            StoreError::Unavailable { .. } | StoreError::Full { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            StoreError::KeyTooLong { .. } | StoreError::EmptyKey => StatusCode::BAD_REQUEST,
            StoreError::NotHolder => StatusCode::CONFLICT,
            StoreError::InvalidDuration { .. }
            | StoreError::InvalidConfig { .. }
            | StoreError::Corrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A `Retry-After` hint for the 503 answers: one second for
    /// [`Unavailable`](Self::Unavailable), the time until the earliest lease may lapse for
    /// [`Full`](Self::Full); `None` for errors a retry cannot cure.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            StoreError::Unavailable { .. } => Some(Duration::from_secs(1)),
            StoreError::Full { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether the error is passing, i.e. the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        self.status() == StatusCode::SERVICE_UNAVAILABLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_response_policy() {
        let unavailable = StoreError::Unavailable {
            reason: "down".into(),
        };
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.retry_after(), Some(Duration::from_secs(1)));
        let full = StoreError::Full {
            capacity: 3,
            retry_after: Duration::from_secs(7),
        };
        assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(full.retry_after(), Some(Duration::from_secs(7)));
        assert!(full.is_transient());
        assert_eq!(StoreError::NotHolder.status(), StatusCode::CONFLICT);
        assert_eq!(StoreError::NotHolder.retry_after(), None);
        assert_eq!(StoreError::EmptyKey.status(), StatusCode::BAD_REQUEST);
        assert!(!StoreError::EmptyKey.is_transient());
    }
}
