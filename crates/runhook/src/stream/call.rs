//! One Redis call, bounded in time, and how it can fail.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;

use super::StreamError;

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

/// A shared, auto-reconnecting connection to `client`, made within `timeout`.
pub(crate) async fn connection(
    client: &redis::Client,
    timeout: Duration,
) -> Result<ConnectionManager, RedisCallError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(None)
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    bounded(
        timeout,
        ConnectionManager::new_with_config(client.clone(), config),
    )
    .await
}

/// One Redis call bounded by `timeout`.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisCallError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(RedisCallError::TimedOut(timeout)),
    }
}

/// A duration in whole milliseconds, as Redis takes it.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
