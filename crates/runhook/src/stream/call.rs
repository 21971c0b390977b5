//! One Redis call, bounded in time, and the connections they go over.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;

use super::error::RedisCallError;

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
