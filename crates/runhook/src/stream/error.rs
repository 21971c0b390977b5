//! How the stream fails: setting it up ([`StreamError`], public), and one Redis call.

use std::time::Duration;

use redis::RedisError;

/// A stream queue (or dead-letter stream) that cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The configuration cannot work (a malformed Redis URL, an empty key, a zero bound).
    #[error("Redis stream misconfigured: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// Redis could not be reached or refused a command.
    #[error("Redis stream unavailable: {reason}")]
    Unavailable {
        /// What went wrong, for logs.
        reason: String,
    },
}

/// Why a Redis call gave no answer. (What a script refuses is its answer, not an error: each
/// script's reply is read into its own type.)
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisCallError {
    /// Redis answered with an error, or the connection failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// No answer within the call's timeout.
    #[error("no reply from Redis within {0:?}")]
    TimedOut(Duration),
}

impl RedisCallError {
    /// Whether Redis said the stream or its group does not exist (`NOGROUP`).
    pub(crate) fn is_no_group(&self) -> bool {
        matches!(self, RedisCallError::Redis(e) if e.code() == Some("NOGROUP"))
    }

    /// Whether Redis said the group exists already (`BUSYGROUP`).
    pub(crate) fn is_busy_group(&self) -> bool {
        matches!(self, RedisCallError::Redis(e) if e.code() == Some("BUSYGROUP"))
    }
}

impl From<RedisCallError> for StreamError {
    fn from(err: RedisCallError) -> Self {
        StreamError::Unavailable {
            reason: err.to_string(),
        }
    }
}
