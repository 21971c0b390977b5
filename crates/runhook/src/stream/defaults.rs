//! The stream's defaults and names.

use std::time::Duration;

/// The default bound of a stream's backlog when the receiver sets no
/// [`queue_capacity`](crate::ReceiverBuilder::queue_capacity): past it, deliveries get 503.
pub const DEFAULT_STREAM_CAPACITY: usize = 10_000;

/// The default bound of the dead-letter stream: past it, letters are refused (and their
/// deliveries kept where they are) until some are redriven or removed.
pub const DEFAULT_DEAD_LETTER_CAPACITY: usize = 10_000;

/// How many times an entry may be handed to workers before it is set aside as poison.
pub const DEFAULT_MAX_DELIVERIES: u64 = 5;

/// The default consumer group.
pub const DEFAULT_GROUP: &str = "runhook";

/// The default namespace: the stream of a provider's receiver is
/// `runhook:stream:<provider>` unless [`RedisStreamQueueBuilder::namespace`](super::RedisStreamQueueBuilder::namespace) or
/// [`RedisStreamQueueBuilder::stream_key`](super::RedisStreamQueueBuilder::stream_key) says otherwise.
pub const DEFAULT_NAMESPACE: &str = "runhook";

/// The default stream key prefix, `<DEFAULT_NAMESPACE>:stream:`.
pub const DEFAULT_KEY_PREFIX: &str = "runhook:stream:";

/// The stream key of `name` (a provider, or a route path) in `namespace`:
/// `<namespace>:stream:<name>`.
pub fn stream_key(namespace: &str, name: &str) -> String {
    format!("{namespace}:stream:{name}")
}

pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_BLOCK: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_READ_BATCH: usize = 16;
/// How often the reader refreshes the backlog figure of `Stats::queue_depth`.
pub(crate) const DEPTH_EVERY: Duration = Duration::from_secs(2);
/// Pause after a failed read before the next one.
pub(crate) const ERROR_PAUSE: Duration = Duration::from_millis(500);

pub(crate) use crate::handoff::durable::default_consumer;
