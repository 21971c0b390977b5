//! The durable hand-off (feature `redis`): a Redis stream read by a consumer group, so that
//! an acknowledged delivery survives the crash of the instance that acknowledged it, and so
//! that several receiver instances behind one load balancer share the work.
//!
//! ```no_run
//! use std::sync::Arc;
//! use runhook::payload::{Provider, RunEvent};
//! use runhook::store::RedisStore;
//! use runhook::{Receiver, RedisStreamQueue, Secret, SkyvernSignature};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let url = "redis://127.0.0.1:6379";
//! let queue = RedisStreamQueue::builder(Provider::Skyvern).connect(url).await?;
//! let receiver = Receiver::builder(Provider::Skyvern)
//!     .verifier(SkyvernSignature::new(Secret::new("sk_live_example")?))
//!     .store(Arc::new(RedisStore::connect(url).await?))
//!     .redis_stream(queue)
//!     .handler(|event: Arc<RunEvent>| async move {
//!         println!("processed {}", event.run_id);
//!         Ok::<(), std::io::Error>(())
//!     })
//!     .build()?;
//! # let _ = receiver; Ok(()) }
//! ```
//!
//! # The path of one delivery
//!
//! 1. The receive path authenticates the delivery and claims its dedup key in the idempotency
//!    store (token `T`, lease `L`), then appends it to the stream:
//!    `XADD <stream> MAXLEN ~ <max_len> * provider … key … token T body … headers …`.
//!    **Only after `XADD` succeeded is the delivery answered 200.** If it fails or times out,
//!    the claim is released and the answer is 503 with `Retry-After`, so that the sender's
//!    retry can win.
//! 2. One reader task per receiver reads new entries for the consumer group
//!    (`XREADGROUP GROUP <group> <consumer> COUNT n BLOCK ms STREAMS <stream> >`), never more
//!    than it has free workers, and gives each to a worker.
//! 3. The worker checks the claim. A fresh entry (read with `>`) renews the claim with the
//!    entry's own token `T`: if that works, nobody else can hold the run, and the worker
//!    processes it with `T`. Otherwise (the lease lapsed, or the entry was taken over from
//!    another consumer, see below) the worker claims the key anew: acquired means processing
//!    with the new token; done means the run was processed already, and the entry is
//!    acknowledged without calling the handler; in flight means someone is processing it, and
//!    the entry is left pending, to be looked at again after `min_idle`.
//! 4. Processing is the in-process queue's: handler attempts with retries and backoff, the
//!    lease renewed every third of it, `complete` on success, or a dead letter and `release`
//!    after the last failed attempt. Then the entry is acknowledged and deleted
//!    (`XACK` + `XDEL`, one round trip).
//!
//! # Crashes and takeover
//!
//! An entry read by a consumer stays in the group's pending list until it is acknowledged.
//! Every reader looks, every `min_idle / 2` or so, for entries idle longer than `min_idle`
//! (`XAUTOCLAIM <stream> <group> <consumer> <min_idle> <cursor> COUNT n`): those of a consumer
//! that died. A taken-over entry is **never** processed with the token it carries, because
//! the consumer that had it may still be alive and renewing with that token; it goes through
//! the claim (step 3), which the live holder keeps winning. A worker keeps its entry from
//! being taken over while a handler runs or backs off by resetting the entry's idle time
//! (`XCLAIM … 0 <id> JUSTID`) in the same tick that renews the lease; the claim check stays as
//! the safety net if that reset is late.
//!
//! The default `min_idle` is the receiver's lease plus a quarter of it (at least one second
//! more): by then a dead consumer's claim has lapsed, so the takeover's claim wins at once.
//!
//! # Delivery guarantee
//!
//! Each acknowledged delivery reaches the handler **at least once**; with the idempotency
//! store, **exactly once**, except in one window: a worker that dies after the handler's side
//! effect and before `complete` was recorded. The claim then lapses, the entry is taken over,
//! and the handler runs again for the same run. Make the handler idempotent on
//! [`RunEvent::dedup_key`](crate::payload::RunEvent::dedup_key) if a second run matters.
//! (A worker that dies after `complete` and before `XACK` costs nothing: the takeover finds
//! the run done and only acknowledges the entry.)
//!
//! A duplicate of a run still in flight is answered 200 only after it, too, was appended to
//! the stream (without a token): if the instance holding the run died between its claim and
//! its own `XADD`, the claim lapses and the duplicate's entry wins it, so a 200 never
//! acknowledges a run that exists nowhere. Otherwise the duplicate's entry finds the run done
//! and is acknowledged without a handler call.
//!
//! The guarantee is that of Redis itself: run it with persistence (AOF; with
//! `appendfsync everysec` a Redis crash can lose the last second of entries) and with
//! `maxmemory-policy noeviction`.
//!
//! # Bounded stream
//!
//! Every `XADD` trims the stream with `MAXLEN ~ max_len` (default
//! [`DEFAULT_MAX_LEN`]; `~` lets Redis trim whole nodes, so the stream may hold a little
//! more). Processed entries are deleted at once, so the stream holds only the backlog:
//! entries not yet processed. **Trimming removes the oldest entries whatever their state**:
//! a backlog of more than `max_len` unprocessed entries (workers down for a long time, or a
//! flood) loses the oldest ones. Size `max_len` above the largest backlog you expect. Entries
//! trimmed while pending are reported in the logs when a takeover meets them.
//!
//! Dead letters go to a second stream, `<stream>:dead` by default
//! ([`RedisStreamDeadLetters`]), bounded the same way ([`DEFAULT_DEAD_LETTER_MAX_LEN`]).
//!
//! # Several instances
//!
//! Give every instance the same Redis, the same stream key and the same group, and its own
//! consumer name (the default, `<hostname>-<pid>-<random>`, is unique). New entries go to
//! whichever reader asks first; a crashed instance's entries are taken over by the others
//! after `min_idle`. Use one queue per receiver (route): the queue's consumer name belongs to
//! one reader. Consumers of instances that crashed stay listed in the group
//! (`XINFO CONSUMERS`) with nothing pending once taken over; a clean shutdown removes its own
//! consumer when it has nothing pending. The stream must belong to this one group: the
//! entries are deleted after processing, so a second group would miss them.
//!
//! # Connections
//!
//! Two per queue: a shared, auto-reconnecting [`ConnectionManager`] for `XADD`, `XACK`,
//! `XAUTOCLAIM` and `XCLAIM`, and one more for the reader's blocking `XREADGROUP`. Redis runs
//! a connection's commands in order, so a `BLOCK`ed read on the shared connection would hold
//! every acknowledgement (`XADD`) behind it for up to the block time; one reader per receiver
//! (rather than one per worker) keeps it to a single extra connection, and reading only for
//! free workers means a busy instance does not hold entries that idle workers elsewhere could
//! process.
//!
//! # Shutdown
//!
//! [`Receiver::shutdown`](crate::Receiver::shutdown) stops the reader (after its current
//! read, at most the block time), lets running handlers finish until the deadline, then stops
//! the rest and releases their claims. Their entries stay pending, and another instance takes
//! them over after `min_idle`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::RngExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamReadReply};
use redis::{RedisError, Value};
use runhook_core::payload::Provider;
use runhook_store::{Claim, Fingerprint, StoreError, Token};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::dead_letter::{DeadLetter, DeadLetterReason, DeadLetterSink};
use crate::dispatch::{abandon_busy, run_job, Job, Refused, Touch, WorkerContext};
use crate::handler::BoxFuture;

/// The default bound of the stream (`XADD … MAXLEN ~ 100000`): size it above the largest
/// backlog of unprocessed deliveries you expect, as trimming removes the oldest entries.
pub const DEFAULT_MAX_LEN: usize = 100_000;

/// The default bound of the dead-letter stream (`MAXLEN ~ 10000`); the oldest letters go first.
pub const DEFAULT_DEAD_LETTER_MAX_LEN: usize = 10_000;

/// The default consumer group.
pub const DEFAULT_GROUP: &str = "runhook";

/// The default stream key prefix: the stream of a provider's receiver is
/// `runhook:stream:<provider>` unless [`RedisStreamQueueBuilder::stream_key`] says otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "runhook:stream:";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_BLOCK: Duration = Duration::from_secs(1);
const DEFAULT_READ_BATCH: usize = 16;
/// How often the reader refreshes the backlog figure of `Stats::queue_depth`.
const DEPTH_EVERY: Duration = Duration::from_secs(2);
/// Pause after a failed read before the next one.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

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

/// Configures a [`RedisStreamQueue`]; see [`RedisStreamQueue::builder`].
#[derive(Debug, Clone)]
pub struct RedisStreamQueueBuilder {
    provider: Provider,
    stream_key: Option<String>,
    group: String,
    consumer: Option<String>,
    max_len: usize,
    dead_letter_key: Option<String>,
    dead_letter_max_len: usize,
    read_batch: usize,
    block: Duration,
    min_idle: Option<Duration>,
    timeout: Duration,
}

/// The durable hand-off of one receiver: a Redis stream with a consumer group (see the
/// [module documentation](self) for the guarantees). Give it to
/// [`ReceiverBuilder::redis_stream`](crate::ReceiverBuilder::redis_stream). Cheap to clone.
#[derive(Clone)]
pub struct RedisStreamQueue {
    inner: Arc<QueueInner>,
}

struct QueueInner {
    client: redis::Client,
    conn: ConnectionManager,
    key: String,
    group: String,
    consumer: String,
    max_len: usize,
    dead_key: String,
    dead_max_len: usize,
    read_batch: usize,
    block: Duration,
    min_idle: Option<Duration>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = &self.inner;
        f.debug_struct("RedisStreamQueue")
            .field("key", &q.key)
            .field("group", &q.group)
            .field("consumer", &q.consumer)
            .field("max_len", &q.max_len)
            .field("dead_letter_key", &q.dead_key)
            .finish_non_exhaustive()
    }
}

impl RedisStreamQueue {
    /// Starts configuring the queue of a receiver for `provider` (its default stream key is
    /// `runhook:stream:<provider>`).
    pub fn builder(provider: Provider) -> RedisStreamQueueBuilder {
        RedisStreamQueueBuilder {
            provider,
            stream_key: None,
            group: DEFAULT_GROUP.into(),
            consumer: None,
            max_len: DEFAULT_MAX_LEN,
            dead_letter_key: None,
            dead_letter_max_len: DEFAULT_DEAD_LETTER_MAX_LEN,
            read_batch: DEFAULT_READ_BATCH,
            block: DEFAULT_BLOCK,
            min_idle: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The stream's key.
    pub fn stream_key(&self) -> &str {
        &self.inner.key
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// This instance's consumer name in the group.
    pub fn consumer(&self) -> &str {
        &self.inner.consumer
    }

    /// The approximate bound of the stream (`MAXLEN ~`).
    pub fn max_len(&self) -> usize {
        self.inner.max_len
    }

    /// The dead-letter stream's key.
    pub fn dead_letter_key(&self) -> &str {
        &self.inner.dead_key
    }

    /// The most entries one read or takeover asks for.
    pub fn read_batch(&self) -> usize {
        self.inner.read_batch
    }

    /// A dead-letter sink writing to this queue's dead-letter stream over its connection (the
    /// default sink of a receiver with this queue).
    pub fn dead_letters(&self) -> RedisStreamDeadLetters {
        RedisStreamDeadLetters {
            conn: self.inner.conn.clone(),
            key: self.inner.dead_key.clone(),
            max_len: self.inner.dead_max_len,
            timeout: self.inner.timeout,
        }
    }

    /// `XADD`s one job; `token: None` for a duplicate of a run in flight.
    async fn add(&self, job: &Job, token: Option<&Token>) -> Result<(), String> {
        let q = &*self.inner;
        let headers = serde_json::to_string(&job.headers).map_err(|e| e.to_string())?;
        let token = token.map(Token::to_string).unwrap_or_default();
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&q.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(q.max_len)
            .arg("*")
            .arg("provider")
            .arg(job.provider.as_str())
            .arg("key")
            .arg(&job.key)
            .arg("token")
            .arg(token)
            .arg("body")
            .arg(&job.body[..])
            .arg("headers")
            .arg(headers);
        let mut conn = q.conn.clone();
        bounded(q.timeout, cmd.query_async::<Value>(&mut conn))
            .await
            .map(|_| ())
    }

    /// Acknowledges and deletes a processed entry. A failure leaves it pending: the takeover
    /// finds its run done and acknowledges it then.
    async fn ack(&self, id: &str) {
        let q = &*self.inner;
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(&q.key)
            .arg(&q.group)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(&q.key)
            .arg(id)
            .ignore();
        let mut conn = q.conn.clone();
        if let Err(err) = bounded(q.timeout, pipe.query_async::<()>(&mut conn)).await {
            tracing::warn!(stream = %q.key, id, error = %err, "could not acknowledge a processed entry; a takeover will find it done");
        }
    }

    /// Resets the idle time of an entry being processed, so that it is not taken over.
    async fn touch(&self, id: &str) {
        let q = &*self.inner;
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&q.key)
            .arg(&q.group)
            .arg(&q.consumer)
            .arg(0)
            .arg(id)
            .arg("JUSTID");
        let mut conn = q.conn.clone();
        if let Err(err) = bounded(q.timeout, cmd.query_async::<Value>(&mut conn)).await {
            tracing::warn!(stream = %q.key, id, error = %err, "could not reset the idle time of a running entry");
        }
    }

    /// Takes over up to `count` entries idle longer than `min_idle`, scanning from `cursor`.
    async fn autoclaim(
        &self,
        min_idle: Duration,
        cursor: &str,
        count: usize,
    ) -> Result<StreamAutoClaimReply, String> {
        let q = &*self.inner;
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&q.key)
            .arg(&q.group)
            .arg(&q.consumer)
            .arg(millis(min_idle))
            .arg(cursor)
            .arg("COUNT")
            .arg(count);
        let mut conn = q.conn.clone();
        bounded(q.timeout, cmd.query_async(&mut conn)).await
    }

    /// Reads up to `count` new entries on the reader's own connection, blocking up to the
    /// block time.
    async fn read_new(
        &self,
        conn: &mut ConnectionManager,
        count: usize,
    ) -> Result<Vec<StreamId>, RedisError> {
        let q = &*self.inner;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&q.group)
            .arg(&q.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(millis(q.block))
            .arg("STREAMS")
            .arg(&q.key)
            .arg(">");
        let read = tokio::time::timeout(
            q.block + q.timeout,
            cmd.query_async::<Option<StreamReadReply>>(conn),
        )
        .await
        .map_err(|_| {
            RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no reply to XREADGROUP",
            ))
        })??;
        Ok(read
            .map(|reply| reply.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }

    /// Entries waiting or pending in the group: its lag plus its pending count, or the
    /// stream's length when Redis cannot tell the lag (after deletions it often cannot).
    async fn backlog(&self) -> Result<u64, String> {
        let q = &*self.inner;
        let mut pipe = redis::pipe();
        pipe.cmd("XINFO")
            .arg("GROUPS")
            .arg(&q.key)
            .cmd("XLEN")
            .arg(&q.key);
        let mut conn = q.conn.clone();
        let (groups, len): (StreamInfoGroupsReply, u64) =
            bounded(q.timeout, pipe.query_async(&mut conn)).await?;
        let group = groups.groups.iter().find(|g| g.name == q.group);
        Ok(match group {
            Some(g) => g.lag.map_or(len, |lag| (lag + g.pending) as u64),
            None => len,
        })
    }

    /// Removes this consumer from the group when it has nothing pending (a clean shutdown).
    async fn forget_consumer_if_idle(&self) {
        let q = &*self.inner;
        let mut conn = q.conn.clone();
        let mut pending = redis::cmd("XPENDING");
        pending
            .arg(&q.key)
            .arg(&q.group)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(&q.consumer);
        match bounded(q.timeout, pending.query_async::<Vec<Value>>(&mut conn)).await {
            Ok(entries) if entries.is_empty() => {
                let mut delete = redis::cmd("XGROUP");
                delete
                    .arg("DELCONSUMER")
                    .arg(&q.key)
                    .arg(&q.group)
                    .arg(&q.consumer);
                let _ = bounded(q.timeout, delete.query_async::<Value>(&mut conn)).await;
            }
            Ok(_) => {
                tracing::info!(stream = %q.key, consumer = %q.consumer, "entries left pending; another instance takes them over")
            }
            Err(err) => {
                tracing::debug!(error = %err, "could not list this consumer's pending entries")
            }
        }
    }

    async fn reader_connection(&self) -> Result<ConnectionManager, String> {
        connection(&self.inner.client, self.inner.timeout).await
    }
}

impl RedisStreamQueueBuilder {
    /// The stream's key (default `runhook:stream:<provider>`). Every instance serving the
    /// same route must use the same key.
    pub fn stream_key(mut self, key: impl Into<String>) -> Self {
        self.stream_key = Some(key.into());
        self
    }

    /// The consumer group (default [`DEFAULT_GROUP`], `runhook`).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// This instance's consumer name (default `<hostname>-<pid>-<random>`). It must differ
    /// between instances, and between the receivers of one process.
    pub fn consumer(mut self, consumer: impl Into<String>) -> Self {
        self.consumer = Some(consumer.into());
        self
    }

    /// The approximate bound of the stream, `XADD … MAXLEN ~ max_len` (default
    /// [`DEFAULT_MAX_LEN`]). Trimming removes the oldest entries, processed or not: size it
    /// above the largest backlog of unprocessed deliveries you expect.
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// The dead-letter stream's key (default `<stream>:dead`).
    pub fn dead_letter_key(mut self, key: impl Into<String>) -> Self {
        self.dead_letter_key = Some(key.into());
        self
    }

    /// The approximate bound of the dead-letter stream (default
    /// [`DEFAULT_DEAD_LETTER_MAX_LEN`]); the oldest letters are trimmed first.
    pub fn dead_letter_max_len(mut self, max_len: usize) -> Self {
        self.dead_letter_max_len = max_len;
        self
    }

    /// The most entries one read or takeover asks for (default 16); never more than the
    /// receiver's free workers.
    pub fn read_batch(mut self, batch: usize) -> Self {
        self.read_batch = batch;
        self
    }

    /// How long one `XREADGROUP` waits for new entries (default 1 s). A shutdown waits for
    /// the read under way, so this bounds how long the reader takes to stop.
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// How long an entry must have been idle before another consumer takes it over (default:
    /// the receiver's lease plus a quarter of it, at least one second more). Shorter than the
    /// lease, a takeover finds a dead consumer's claim still held and has to come back.
    pub fn min_idle(mut self, min_idle: Duration) -> Self {
        self.min_idle = Some(min_idle);
        self
    }

    /// The timeout of one Redis call (default 1 s); an `XADD` that times out is answered 503.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects to `url` (`redis://host:port/db`) and creates the consumer group if it does
    /// not exist yet (`XGROUP CREATE <stream> <group> 0 MKSTREAM`; an existing group is kept).
    /// The group starts at `0`, not `$`: entries appended before any group existed are
    /// deliveries already acknowledged to their senders, and must be processed too.
    ///
    /// # Errors
    /// [`StreamError::InvalidConfig`] for a malformed URL, empty names or a zero bound,
    /// [`StreamError::Unavailable`] when Redis cannot be reached or refuses the group.
    pub async fn connect(self, url: &str) -> Result<RedisStreamQueue, StreamError> {
        let invalid = |reason: &str| StreamError::InvalidConfig {
            reason: reason.into(),
        };
        let key = self
            .stream_key
            .unwrap_or_else(|| format!("{DEFAULT_KEY_PREFIX}{}", self.provider));
        if key.is_empty() || self.group.is_empty() {
            return Err(invalid("the stream key and the group must not be empty"));
        }
        if self.max_len == 0 || self.dead_letter_max_len == 0 || self.read_batch == 0 {
            return Err(invalid(
                "max_len, dead_letter_max_len and read_batch must be at least 1",
            ));
        }
        if self.block < Duration::from_millis(1) {
            return Err(invalid("the block time must be at least 1 ms"));
        }
        let client = redis::Client::open(url).map_err(|e| StreamError::InvalidConfig {
            reason: format!("Redis URL: {e}"),
        })?;
        let conn = connection(&client, self.timeout)
            .await
            .map_err(|reason| StreamError::Unavailable { reason })?;
        let queue = RedisStreamQueue {
            inner: Arc::new(QueueInner {
                client,
                conn,
                dead_key: self
                    .dead_letter_key
                    .unwrap_or_else(|| format!("{key}:dead")),
                key,
                group: self.group,
                consumer: self.consumer.unwrap_or_else(default_consumer),
                max_len: self.max_len,
                dead_max_len: self.dead_letter_max_len,
                read_batch: self.read_batch,
                block: self.block,
                min_idle: self.min_idle,
                timeout: self.timeout,
            }),
        };
        ensure_group(&queue)
            .await
            .map_err(|reason| StreamError::Unavailable { reason })?;
        Ok(queue)
    }
}

/// `XGROUP CREATE … 0 MKSTREAM`, an existing group kept.
async fn ensure_group(queue: &RedisStreamQueue) -> Result<(), String> {
    let q = &*queue.inner;
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(&q.key)
        .arg(&q.group)
        .arg("0")
        .arg("MKSTREAM");
    let mut conn = q.conn.clone();
    match tokio::time::timeout(q.timeout, cmd.query_async::<Value>(&mut conn)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
        Ok(Err(e)) => Err(format!("creating the consumer group: {e}")),
        Err(_) => Err(format!("no reply from Redis within {:?}", q.timeout)),
    }
}

async fn connection(
    client: &redis::Client,
    timeout: Duration,
) -> Result<ConnectionManager, String> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(None)
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    match tokio::time::timeout(
        timeout,
        ConnectionManager::new_with_config(client.clone(), config),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("connecting to Redis: {e}")),
        Err(_) => Err(format!("no connection to Redis within {timeout:?}")),
    }
}

/// One Redis call bounded by `timeout`, its error as text.
async fn bounded<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no reply from Redis within {timeout:?}")),
    }
}

fn default_consumer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let tag: u32 = rand::rng().random();
    format!("{host}-{}-{tag:08x}", std::process::id())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The reader and workers of one receiver on its stream.
pub(crate) struct StreamWorkers {
    shared: Arc<Shared>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    queue: RedisStreamQueue,
    ctx: Arc<WorkerContext>,
    /// One per worker: an entry is read only when a worker is free.
    permits: Arc<Semaphore>,
    tasks: Mutex<JoinSet<()>>,
    /// Entry ids being processed by this process (a takeover of one of them is skipped).
    running: Mutex<HashSet<String>>,
    min_idle: Duration,
    depth: AtomicU64,
    stop: AtomicBool,
    stopped: Notify,
}

impl StreamWorkers {
    /// Starts the reader of `queue`, with `workers` handler calls at once.
    pub fn start(queue: RedisStreamQueue, ctx: WorkerContext, workers: usize) -> Self {
        let lease = ctx.lease;
        let min_idle = queue
            .inner
            .min_idle
            .unwrap_or_else(|| lease + (lease / 4).max(Duration::from_secs(1)));
        if min_idle <= lease / 3 {
            tracing::warn!(?min_idle, ?lease, "min_idle is not longer than the lease renewal interval: running entries may be taken over (the claim check still prevents a second run)");
        }
        let shared = Arc::new(Shared {
            queue,
            ctx: Arc::new(ctx),
            permits: Arc::new(Semaphore::new(workers.max(1))),
            tasks: Mutex::new(JoinSet::new()),
            running: Mutex::default(),
            min_idle,
            depth: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            stopped: Notify::new(),
        });
        let reader = tokio::spawn(read_loop(shared.clone()));
        Self {
            shared,
            reader: Mutex::new(Some(reader)),
        }
    }

    /// Appends a claimed job; the delivery may be answered 200 once this returned `Ok`.
    pub async fn send(&self, job: Job) -> Result<(), (Refused, Job)> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Err((Refused::Closed, job));
        }
        match self.shared.queue.add(&job, Some(&job.token)).await {
            Ok(()) => Ok(()),
            Err(err) => {
                tracing::error!(stream = %self.shared.queue.stream_key(), key = %job.key, error = %err, "could not append a delivery to the stream");
                Err((Refused::Unavailable, job))
            }
        }
    }

    /// Appends a duplicate of a run in flight, without a token (see the module docs).
    pub async fn send_tokenless(&self, job: Job) -> Result<(), Refused> {
        self.shared.queue.add(&job, None).await.map_err(|err| {
            tracing::error!(stream = %self.shared.queue.stream_key(), key = %job.key, error = %err, "could not append a duplicate to the stream");
            Refused::Unavailable
        })
    }

    /// The group's backlog as last read (refreshed with each takeover scan).
    pub fn depth(&self) -> u64 {
        self.shared.depth.load(Ordering::Relaxed)
    }

    /// Stops the reader, lets running handlers finish until `deadline`, then stops them and
    /// releases their claims; their entries stay pending for another instance.
    pub async fn shutdown(&self, deadline: Duration) -> Vec<String> {
        let ends = Instant::now() + deadline;
        let sh = &self.shared;
        sh.stop.store(true, Ordering::Release);
        sh.stopped.notify_one();
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut reader) = reader {
            if tokio::time::timeout_at(ends, &mut reader).await.is_err() {
                reader.abort();
                let _ = reader.await;
            }
        }
        let mut tasks = std::mem::take(&mut *sh.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let drained =
            tokio::time::timeout_at(ends, async { while tasks.join_next().await.is_some() {} })
                .await
                .is_ok();
        let left = if drained {
            Vec::new()
        } else {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            abandon_busy(&sh.ctx).await
        };
        sh.queue.forget_consumer_if_idle().await;
        left
    }
}

async fn read_loop(sh: Arc<Shared>) {
    let queue = &sh.queue;
    let mut reader: Option<ConnectionManager> = None;
    let mut cursor = String::from("0-0");
    let scan_every = (sh.min_idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
    // At start, look at once for entries a crashed predecessor left.
    let mut next_scan = Instant::now();
    let mut next_depth = Instant::now();
    loop {
        if sh.stop.load(Ordering::Acquire) {
            return;
        }
        // Wait for a free worker (keeping the backlog figure fresh meanwhile), then take as
        // many more as are free, up to a batch.
        let first = loop {
            tokio::select! {
                permit = sh.permits.clone().acquire_owned() => match permit {
                    Ok(permit) => break permit,
                    Err(_) => return,
                },
                _ = sh.stopped.notified() => return,
                _ = tokio::time::sleep_until(next_depth) => {
                    next_depth = Instant::now() + DEPTH_EVERY;
                    refresh_depth(&sh).await;
                }
            }
        };
        let mut permits = vec![first];
        while permits.len() < queue.read_batch() {
            match sh.permits.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        reap(&sh);
        if Instant::now() >= next_depth {
            next_depth = Instant::now() + DEPTH_EVERY;
            refresh_depth(&sh).await;
        }
        if Instant::now() >= next_scan {
            next_scan = Instant::now() + scan_every;
            let asked = permits.len();
            match queue.autoclaim(sh.min_idle, &cursor, asked).await {
                Ok(reply) => {
                    // A full batch: more entries may be due; look again as soon as workers
                    // are free rather than after a whole interval.
                    if reply.claimed.len() + reply.deleted_ids.len() >= asked {
                        next_scan = Instant::now();
                    }
                    if !reply.deleted_ids.is_empty() {
                        tracing::error!(stream = %queue.stream_key(), lost = reply.deleted_ids.len(), ids = ?reply.deleted_ids, "pending entries were trimmed from the stream before being processed (MAXLEN too small for the backlog)");
                    }
                    cursor = reply.next_stream_id;
                    for entry in reply.claimed {
                        if sh
                            .running
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .contains(&entry.id)
                        {
                            continue;
                        }
                        tracing::info!(stream = %queue.stream_key(), id = %entry.id, "taking over an entry idle longer than min_idle");
                        let Some(permit) = permits.pop() else { break };
                        spawn_entry(&sh, entry, false, permit);
                    }
                }
                Err(err) => {
                    tracing::warn!(stream = %queue.stream_key(), error = %err, "takeover scan failed")
                }
            }
        }
        if permits.is_empty() || sh.stop.load(Ordering::Acquire) {
            continue;
        }
        let conn = match &mut reader {
            Some(conn) => conn,
            None => match queue.reader_connection().await {
                Ok(conn) => reader.insert(conn),
                Err(err) => {
                    tracing::warn!(error = %err, "no reader connection to Redis");
                    pause(&sh).await;
                    continue;
                }
            },
        };
        match queue.read_new(conn, permits.len()).await {
            Ok(entries) => {
                for entry in entries {
                    // Never more entries than permits: COUNT asked for that many.
                    let Some(permit) = permits.pop() else { break };
                    spawn_entry(&sh, entry, true, permit);
                }
            }
            Err(err) if err.code() == Some("NOGROUP") => {
                tracing::warn!(stream = %queue.stream_key(), "the stream or its group disappeared; creating it again");
                if let Err(err) = ensure_group(queue).await {
                    tracing::warn!(error = %err, "could not create the consumer group");
                    pause(&sh).await;
                }
            }
            Err(err) => {
                tracing::warn!(stream = %queue.stream_key(), error = %err, "reading the stream failed");
                pause(&sh).await;
            }
        }
    }
}

/// Reads the group's backlog into `depth` (best effort).
async fn refresh_depth(sh: &Shared) {
    match sh.queue.backlog().await {
        Ok(depth) => sh.depth.store(depth, Ordering::Relaxed),
        Err(err) => tracing::debug!(error = %err, "could not read the stream's backlog"),
    }
}

/// Waits a moment after a failure, or until the stop signal.
async fn pause(sh: &Shared) {
    tokio::select! {
        _ = tokio::time::sleep(ERROR_PAUSE) => {}
        _ = sh.stopped.notified() => sh.stopped.notify_one(),
    }
}

/// Drops the results of finished entry tasks.
fn reap(sh: &Shared) {
    let mut tasks = sh.tasks.lock().unwrap_or_else(|p| p.into_inner());
    while tasks.try_join_next().is_some() {}
}

fn spawn_entry(sh: &Arc<Shared>, entry: StreamId, fresh: bool, permit: OwnedSemaphorePermit) {
    sh.running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(entry.id.clone());
    let task_shared = sh.clone();
    sh.tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .spawn(async move {
            let id = entry.id.clone();
            handle_entry(&task_shared, entry, fresh).await;
            task_shared
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            drop(permit);
        });
}

/// The fields of one entry as the receive path wrote them.
struct Entry {
    provider: Provider,
    key: String,
    token: Option<Token>,
    body: Bytes,
    headers: Vec<(String, String)>,
}

impl Entry {
    fn read(map: &HashMap<String, Value>) -> Option<Self> {
        let text = |name: &str| -> Option<String> {
            redis::from_redis_value_ref::<String>(map.get(name)?).ok()
        };
        let provider = Provider::from_name(&text("provider")?)?;
        let key = text("key").filter(|k| !k.is_empty())?;
        let token = match text("token")?.as_str() {
            "" => None,
            hex => Some(hex.parse().ok()?),
        };
        let body = redis::from_redis_value_ref::<Vec<u8>>(map.get("body")?).ok()?;
        let headers = serde_json::from_str(&text("headers")?).ok()?;
        Some(Self {
            provider,
            key,
            token,
            body: Bytes::from(body),
            headers,
        })
    }
}

/// Checks the claim of one entry and processes it if this worker may (see the module docs).
async fn handle_entry(sh: &Shared, entry: StreamId, fresh: bool) {
    let queue = &sh.queue;
    let ctx = &*sh.ctx;
    let id = entry.id;
    let Some(Entry {
        provider,
        key,
        token,
        body,
        headers,
    }) = Entry::read(&entry.map)
    else {
        foreign_entry(sh, &id, &entry.map).await;
        return;
    };
    // A fresh entry's token was taken by the receive path and given to no one else; a
    // taken-over entry's token may still be renewed by a live worker: never reuse it.
    let held = match (fresh, token) {
        (true, Some(token)) => match ctx.store.renew(&key, &token, ctx.lease).await {
            Ok(()) => Some(token),
            Err(StoreError::NotHolder) => None,
            Err(err) => {
                tracing::warn!(%key, %id, error = %err, "could not check the claim; the entry stays pending");
                return;
            }
        },
        _ => None,
    };
    let token = match held {
        Some(token) => token,
        None => match ctx
            .store
            .claim(&key, ctx.lease, Fingerprint::of(&body))
            .await
        {
            Ok(Claim::Acquired(token)) => token,
            Ok(Claim::Done { .. }) => {
                tracing::debug!(%key, %id, "run already processed; acknowledging the entry");
                queue.ack(&id).await;
                return;
            }
            Ok(Claim::InFlight { .. }) => {
                tracing::debug!(%key, %id, "run in flight elsewhere; the entry stays pending");
                return;
            }
            Err(err) => {
                tracing::warn!(%key, %id, error = %err, "could not claim the run; the entry stays pending");
                return;
            }
        },
    };
    let touch: Touch = {
        let (queue, id) = (queue.clone(), id.clone());
        Arc::new(move || -> BoxFuture<'static, ()> {
            let (queue, id) = (queue.clone(), id.clone());
            Box::pin(async move { queue.touch(&id).await })
        })
    };
    let job = Job {
        provider,
        key,
        token,
        body,
        headers,
        // Not carried through the stream.
        signed_body: None,
    };
    run_job(ctx, job, Some(touch)).await;
    queue.ack(&id).await;
}

/// An entry runhook did not write (or cannot read): dead-lettered whole, then acknowledged.
async fn foreign_entry(sh: &Shared, id: &str, map: &HashMap<String, Value>) {
    tracing::error!(stream = %sh.queue.stream_key(), %id, "a stream entry without the fields runhook writes; dead-lettering it");
    let body = map
        .get("body")
        .and_then(|v| redis::from_redis_value_ref::<Vec<u8>>(v).ok())
        .unwrap_or_default();
    let provider = map
        .get("provider")
        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        .and_then(|p| Provider::from_name(&p))
        .map_or("unknown", Provider::as_str);
    let letter = DeadLetter {
        provider,
        dedup_key: map
            .get("key")
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok()),
        reason: DeadLetterReason::Unparseable(format!("malformed stream entry {id}")),
        headers: Vec::new(),
        body: Bytes::from(body),
    };
    if let Err(err) = sh.ctx.dead_letters.put(letter).await {
        tracing::error!(%id, error = %err, "could not write a dead letter; the entry stays pending");
        return;
    }
    sh.queue.ack(id).await;
}

/// A dead-letter sink that appends each letter to a Redis stream, bounded with `MAXLEN ~`
/// (the oldest letters are trimmed first). Fields: `provider`, `dedup_key` (empty when none
/// could be read), `reason`, `headers` (a JSON array of `[name, value]` pairs, credentials
/// left out) and `body` (the raw bytes). Read them with `XRANGE <key> - +`.
#[derive(Clone)]
pub struct RedisStreamDeadLetters {
    conn: ConnectionManager,
    key: String,
    max_len: usize,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStreamDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamDeadLetters")
            .field("key", &self.key)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl RedisStreamDeadLetters {
    /// A sink appending to the stream `key` at `url`, bounded by
    /// [`DEFAULT_DEAD_LETTER_MAX_LEN`] (see [`RedisStreamDeadLetters::max_len`]).
    ///
    /// # Errors
    /// [`StreamError::InvalidConfig`] for a malformed URL or an empty key,
    /// [`StreamError::Unavailable`] when Redis cannot be reached.
    pub async fn connect(url: &str, key: impl Into<String>) -> Result<Self, StreamError> {
        let key = key.into();
        if key.is_empty() {
            return Err(StreamError::InvalidConfig {
                reason: "the dead-letter stream key must not be empty".into(),
            });
        }
        let client = redis::Client::open(url).map_err(|e| StreamError::InvalidConfig {
            reason: format!("Redis URL: {e}"),
        })?;
        let conn = connection(&client, DEFAULT_TIMEOUT)
            .await
            .map_err(|reason| StreamError::Unavailable { reason })?;
        Ok(Self {
            conn,
            key,
            max_len: DEFAULT_DEAD_LETTER_MAX_LEN,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Bounds the stream to about `max_len` letters (at least 1).
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.max(1);
        self
    }

    /// The stream's key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl DeadLetterSink for RedisStreamDeadLetters {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        Box::pin(async move {
            let headers = serde_json::to_string(&letter.headers).map_err(std::io::Error::other)?;
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&self.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.max_len)
                .arg("*")
                .arg("provider")
                .arg(letter.provider)
                .arg("dedup_key")
                .arg(letter.dedup_key.as_deref().unwrap_or(""))
                .arg("reason")
                .arg(letter.reason.to_string())
                .arg("headers")
                .arg(headers)
                .arg("body")
                .arg(&letter.body[..]);
            let mut conn = self.conn.clone();
            bounded(self.timeout, cmd.query_async::<Value>(&mut conn))
                .await
                .map(|_| ())
                .map_err(std::io::Error::other)
        })
    }
}
