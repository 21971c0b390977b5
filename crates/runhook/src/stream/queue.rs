//! The stream itself: its builder, and the Redis commands the receive path and the workers
//! send.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::Value;
use runhook_core::payload::Provider;
use runhook_store::RedisStore;

use super::call::{bounded, connection, millis};
use super::dead_letters::RedisStreamDeadLetters;
use super::defaults::{
    default_consumer, stream_key, DEFAULT_BLOCK, DEFAULT_DEAD_LETTER_CAPACITY, DEFAULT_GROUP,
    DEFAULT_MAX_DELIVERIES, DEFAULT_NAMESPACE, DEFAULT_READ_BATCH, DEFAULT_TIMEOUT,
};
use super::entry::{NewEntry, Redriven, REDRIVE_SCRIPT};
use super::error::{RedisCallError, StreamError};
use crate::dead_letter::RedriveReport;

/// Appends an entry unless the stream holds `ARGV[1]` entries already (the backlog: processed
/// entries are deleted). Returns the new id, or `false` when full.
const ADD_SCRIPT: &str = r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
";

/// Appends a duplicate of a run in flight unless one of its copies is still in the stream: the
/// marker `KEYS[2]` names the entry last appended for the run, and while `XRANGE` finds that
/// entry nothing more is appended. Otherwise as [`ADD_SCRIPT`], with the new id written to the
/// marker (`ARGV[2]`: its time to live in ms; the marker is only a pointer, and a stale one is
/// replaced). Returns the new id, `'pending'` when a copy is there already, or `false` when the
/// backlog is full.
const ADD_DUPLICATE_SCRIPT: &str = r"
local last = redis.call('GET', KEYS[2])
if last and #redis.call('XRANGE', KEYS[1], last, last) > 0 then return 'pending' end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[2], id, 'PX', ARGV[2])
return id
";

/// The append scripts, hashed once (a `Script` hashes its source when made, and every
/// delivery appends).
static ADD: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ADD_SCRIPT));
static ADD_DUPLICATE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(ADD_DUPLICATE_SCRIPT));

/// How long a duplicate's marker is kept: only a pointer, it needs to outlive its entry no
/// longer than a run can stay in flight; after that one more copy may be appended.
const DUPLICATE_MARKER_TTL: Duration = Duration::from_secs(3600);

/// Removes consumer `ARGV[1]` if it still holds nothing and has been idle at least `ARGV[2]`
/// ms. Returns 1 when removed.
const FORGET_SCRIPT: &str = r"
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[3])
for _, c in ipairs(consumers) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] == ARGV[1] then
    if tonumber(f['pending']) == 0 and tonumber(f['idle']) >= tonumber(ARGV[2]) then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[3], ARGV[1])
      return 1
    end
    return 0
  end
end
return 0
";

/// Why an entry was not appended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AddRefused {
    /// The backlog is at its capacity.
    #[error("the backlog is at its capacity")]
    Full,
    /// Redis failed or timed out.
    #[error(transparent)]
    Unavailable(#[from] RedisCallError),
    /// The entry's headers could not be written as JSON.
    #[error("encoding the entry: {0}")]
    Unencodable(#[from] serde_json::Error),
}

/// What became of a duplicate of a run in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DuplicateAdded {
    /// Appended: it is the run's one copy appended as a duplicate.
    Appended,
    /// A copy appended for an earlier duplicate is still in the stream: nothing appended.
    AlreadyPending,
}

/// One entry's place in the group's pending list.
pub(crate) struct PendingEntry {
    pub id: String,
    /// How many times it was handed to a consumer.
    pub deliveries: u64,
}

/// One consumer of the group, as `XINFO CONSUMERS` lists it.
pub(crate) struct ConsumerInfo {
    pub name: String,
    pub pending: u64,
    pub idle: Duration,
}

/// Configures a [`RedisStreamQueue`]; see [`RedisStreamQueue::builder`].
#[derive(Debug, Clone)]
pub struct RedisStreamQueueBuilder {
    name: String,
    namespace: String,
    stream_key: Option<String>,
    group: String,
    consumer: Option<String>,
    dead_letter_key: Option<String>,
    dead_letter_capacity: usize,
    read_batch: usize,
    block: Duration,
    min_idle: Option<Duration>,
    max_deliveries: u64,
    timeout: Duration,
    claims: Option<RedisStore>,
}

/// The durable hand-off of one receiver: a Redis stream with a consumer group (see the
/// [module documentation](super) for the guarantees). Give it to
/// [`ReceiverBuilder::redis_stream`](crate::ReceiverBuilder::redis_stream). Cheap to clone.
#[derive(Clone)]
pub struct RedisStreamQueue {
    pub(crate) inner: Arc<QueueInner>,
}

pub(crate) struct QueueInner {
    client: redis::Client,
    pub(super) conn: ConnectionManager,
    pub(super) key: String,
    pub(super) group: String,
    pub(super) consumer: String,
    dead_key: String,
    dead_capacity: usize,
    read_batch: usize,
    block: Duration,
    pub(crate) min_idle: Option<Duration>,
    pub(crate) max_deliveries: u64,
    pub(super) timeout: Duration,
    /// Where runs are claimed with their entries in one script, when they are
    /// ([`RedisStreamQueueBuilder::claim_in`]).
    pub(crate) claims: Option<RedisStore>,
}

impl std::fmt::Debug for RedisStreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = &self.inner;
        f.debug_struct("RedisStreamQueue")
            .field("key", &q.key)
            .field("group", &q.group)
            .field("consumer", &q.consumer)
            .field("dead_letter_key", &q.dead_key)
            .finish_non_exhaustive()
    }
}

impl RedisStreamQueue {
    /// Starts configuring the queue of a receiver for `provider` (its default stream key is
    /// `runhook:stream:<provider>`).
    pub fn builder(provider: Provider) -> RedisStreamQueueBuilder {
        RedisStreamQueueBuilder {
            name: provider.as_str().to_string(),
            namespace: DEFAULT_NAMESPACE.into(),
            stream_key: None,
            group: DEFAULT_GROUP.into(),
            consumer: None,
            dead_letter_key: None,
            dead_letter_capacity: DEFAULT_DEAD_LETTER_CAPACITY,
            read_batch: DEFAULT_READ_BATCH,
            block: DEFAULT_BLOCK,
            min_idle: None,
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            timeout: DEFAULT_TIMEOUT,
            claims: None,
        }
    }

    /// The store runs are claimed in with their entries, when they are
    /// ([`RedisStreamQueueBuilder::claim_in`]).
    pub fn claim_store(&self) -> Option<&RedisStore> {
        self.inner.claims.as_ref()
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
        RedisStreamDeadLetters::over(
            self.inner.conn.clone(),
            self.inner.dead_key.clone(),
            self.inner.dead_capacity,
            self.inner.timeout,
        )
    }

    /// Hands dead letters back to the stream, where the running instances process them once,
    /// under a fresh claim, and removes them from the dead-letter stream (each letter moved in
    /// one atomic step). Only the letters whose dedup key is in `keys` are moved, or all of
    /// them when `keys` is empty. A letter without a provider, key or body (a malformed entry)
    /// is kept.
    ///
    /// # Errors
    /// [`StreamError::Unavailable`] when Redis fails; the letters moved before are reported
    /// moved in the logs.
    pub async fn redrive(&self, keys: &[String]) -> Result<RedriveReport, StreamError> {
        let letters = self.dead_letters().list().await?;
        let mut report = RedriveReport::default();
        for letter in letters {
            if !report.takes(&letter.record, keys) {
                continue;
            }
            let key = letter.record.dedup_key.clone();
            let mut conn = self.inner.conn.clone();
            let mut invocation = REDRIVE_SCRIPT.key(&self.inner.dead_key);
            invocation.key(&self.inner.key).arg(&letter.id);
            match bounded(self.inner.timeout, invocation.invoke_async(&mut conn)).await? {
                Redriven::Moved(_) => report.redriven.push(key.unwrap_or_default()),
                Redriven::Gone => {}
                Redriven::Incomplete => report
                    .kept
                    .push((key, "the letter has no provider, key or body".into())),
            }
        }
        Ok(report)
    }

    /// Appends one entry unless the backlog is at `capacity` (one atomic script).
    pub(crate) async fn add(
        &self,
        entry: &NewEntry<'_>,
        capacity: usize,
    ) -> Result<(), AddRefused> {
        let q = &*self.inner;
        match self
            .append_with(&ADD, &[&q.key], &[capacity as u64], entry)
            .await?
        {
            Some(_id) => Ok(()),
            None => Err(AddRefused::Full),
        }
    }

    /// Appends a duplicate of a run in flight (an entry without a token) unless a copy of the
    /// run appended as a duplicate is still in the stream, and unless the backlog is at
    /// `capacity` (one atomic script). A replay of a run in flight thus never grows the stream
    /// by more than one entry, however often it comes.
    pub(crate) async fn add_duplicate(
        &self,
        entry: &NewEntry<'_>,
        capacity: usize,
    ) -> Result<DuplicateAdded, AddRefused> {
        let q = &*self.inner;
        let marker = format!("{}:pending:{}", q.key, entry.key);
        let args = [capacity as u64, millis(DUPLICATE_MARKER_TTL)];
        match self
            .append_with(&ADD_DUPLICATE, &[&q.key, &marker], &args, entry)
            .await?
        {
            Some(reply) if reply == "pending" => Ok(DuplicateAdded::AlreadyPending),
            Some(_id) => Ok(DuplicateAdded::Appended),
            None => Err(AddRefused::Full),
        }
    }

    /// Runs one of the append scripts with `keys`, then `args`, then the entry's fields as
    /// its arguments; its reply.
    async fn append_with(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[u64],
        entry: &NewEntry<'_>,
    ) -> Result<Option<String>, AddRefused> {
        let q = &*self.inner;
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        entry.encode(|name, value| {
            invocation.arg(name).arg(value);
        })?;
        let mut conn = q.conn.clone();
        let reply = invocation.invoke_async::<Option<String>>(&mut conn);
        Ok(bounded(q.timeout, reply).await?)
    }

    /// Whether Redis answers a `PING` on the stream's connection (a readiness check).
    pub(crate) async fn ping(&self) -> Result<(), super::error::RedisCallError> {
        let q = &*self.inner;
        let mut conn = q.conn.clone();
        bounded(
            q.timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .map(drop)
    }

    /// Acknowledges and deletes a processed entry. A failure leaves it pending: the takeover
    /// finds its run done and acknowledges it then.
    pub(crate) async fn ack(&self, id: &str) {
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

    /// Takes over up to `count` entries idle longer than `min_idle`, scanning from `cursor`.
    pub(crate) async fn autoclaim(
        &self,
        min_idle: Duration,
        cursor: &str,
        count: usize,
    ) -> Result<StreamAutoClaimReply, RedisCallError> {
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
    pub(crate) async fn read_new(
        &self,
        conn: &mut ConnectionManager,
        count: usize,
    ) -> Result<Vec<StreamId>, RedisCallError> {
        self.read_group(conn, count, Some(self.inner.block), ">")
            .await
    }

    /// Up to `count` entries this consumer was handed but may never have seen: the reply to a
    /// read that timed out (Redis paused, a slow network) still hands its entries to the
    /// consumer, which lost them with the reply. `XREADGROUP … STREAMS <stream> 0` reads them
    /// back from the consumer's own pending list (the ones a worker runs now included).
    pub(crate) async fn read_own_pending(
        &self,
        conn: &mut ConnectionManager,
        count: usize,
    ) -> Result<Vec<StreamId>, RedisCallError> {
        self.read_group(conn, count, None, "0").await
    }

    /// `XREADGROUP GROUP <group> <consumer> COUNT <count> [BLOCK <ms>] STREAMS <stream> <from>`:
    /// new entries (`>`) or this consumer's pending ones (`0`).
    async fn read_group(
        &self,
        conn: &mut ConnectionManager,
        count: usize,
        block: Option<Duration>,
        from: &str,
    ) -> Result<Vec<StreamId>, RedisCallError> {
        let q = &*self.inner;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&q.group)
            .arg(&q.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(millis(block));
        }
        cmd.arg("STREAMS").arg(&q.key).arg(from);
        let wait = q.timeout + block.unwrap_or_default();
        let read = bounded(wait, cmd.query_async::<Option<StreamReadReply>>(conn)).await?;
        Ok(read
            .map(|reply| reply.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }

    /// The backlog: entries not yet processed, by any instance (processed entries are
    /// deleted, so this is the stream's length).
    pub(crate) async fn backlog(&self) -> Result<u64, RedisCallError> {
        let q = &*self.inner;
        let mut conn = q.conn.clone();
        bounded(
            q.timeout,
            redis::cmd("XLEN").arg(&q.key).query_async(&mut conn),
        )
        .await
    }

    /// How many times each of `ids` (pending in the group) was handed to a consumer.
    pub(crate) async fn delivery_counts(
        &self,
        ids: &[String],
    ) -> Result<Vec<PendingEntry>, RedisCallError> {
        let q = &*self.inner;
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("XPENDING")
                .arg(&q.key)
                .arg(&q.group)
                .arg(id)
                .arg(id)
                .arg(1);
        }
        let mut conn = q.conn.clone();
        let replies: Vec<Vec<(String, String, u64, u64)>> =
            bounded(q.timeout, pipe.query_async(&mut conn)).await?;
        Ok(replies
            .into_iter()
            .flatten()
            .map(|(id, _consumer, _idle, deliveries)| PendingEntry { id, deliveries })
            .collect())
    }

    /// The group's consumers.
    pub(crate) async fn consumers(&self) -> Result<Vec<ConsumerInfo>, RedisCallError> {
        let q = &*self.inner;
        let mut conn = q.conn.clone();
        let reply: redis::streams::StreamInfoConsumersReply = bounded(
            q.timeout,
            redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&q.key)
                .arg(&q.group)
                .query_async(&mut conn),
        )
        .await?;
        Ok(reply
            .consumers
            .into_iter()
            .map(|c| ConsumerInfo {
                name: c.name,
                pending: c.pending as u64,
                idle: Duration::from_millis(c.idle as u64),
            })
            .collect())
    }

    /// Removes another consumer (one that crashed) if it still holds nothing and has been
    /// idle for `idle` at least, checked and done in one script.
    pub(crate) async fn forget_consumer(
        &self,
        name: &str,
        idle: Duration,
    ) -> Result<bool, RedisCallError> {
        let q = &*self.inner;
        let script = redis::Script::new(FORGET_SCRIPT);
        let mut invocation = script.key(&q.key);
        invocation.arg(name).arg(millis(idle)).arg(&q.group);
        let mut conn = q.conn.clone();
        bounded(q.timeout, invocation.invoke_async::<i64>(&mut conn))
            .await
            .map(|removed| removed == 1)
    }

    /// Removes this consumer from the group when it has nothing pending (a clean shutdown).
    pub(crate) async fn forget_consumer_if_idle(&self) {
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

    pub(crate) async fn reader_connection(&self) -> Result<ConnectionManager, RedisCallError> {
        connection(&self.inner.client, self.inner.timeout).await
    }
}

impl RedisStreamQueueBuilder {
    /// The stream's key (default `<namespace>:stream:<provider>`). Every instance serving the
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

    /// The namespace of the default stream key, `<namespace>:stream:<provider>` (default
    /// [`DEFAULT_NAMESPACE`](super::DEFAULT_NAMESPACE), `runhook`). Give each deployment
    /// sharing a Redis (staging, production) its own, with the matching store prefix
    /// (`RedisStore::builder().prefix("<namespace>:idem:")`), so that they never see each
    /// other's deliveries.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The dead-letter stream's key (default `<stream>:dead`).
    pub fn dead_letter_key(mut self, key: impl Into<String>) -> Self {
        self.dead_letter_key = Some(key.into());
        self
    }

    /// The most letters the dead-letter stream holds (default
    /// [`DEFAULT_DEAD_LETTER_CAPACITY`]); past it, letters are refused and their deliveries
    /// kept (and tried again) until some are redriven or removed. Nothing is trimmed.
    pub fn dead_letter_capacity(mut self, capacity: usize) -> Self {
        self.dead_letter_capacity = capacity;
        self
    }

    /// How many times an entry may be handed to workers before a takeover sets it aside as
    /// poison (default [`DEFAULT_MAX_DELIVERIES`], at least 1).
    pub fn max_deliveries(mut self, deliveries: u64) -> Self {
        self.max_deliveries = deliveries.max(1);
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
    /// the receiver's lease plus a tenth of it, at least one second more). Shorter than the
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

    /// Claims each delivery's run in `store` **in the same script** as its append (one round
    /// trip where a claim and an `XADD` took two), and records each processed run done in the
    /// same script that acknowledges and deletes its entry. A run in flight then always has
    /// its entry in the stream, so a duplicate of it is answered 200 without a copy appended.
    /// `store` must live on the stream's Redis, and be the receiver's store: the receiver
    /// takes it as its store unless given another.
    pub fn claim_in(mut self, store: RedisStore) -> Self {
        self.claims = Some(store);
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
            .unwrap_or_else(|| stream_key(&self.namespace, &self.name));
        if key.is_empty() || self.group.is_empty() || self.namespace.is_empty() {
            return Err(invalid(
                "the stream key, the namespace and the group must not be empty",
            ));
        }
        if self.dead_letter_capacity == 0 || self.read_batch == 0 {
            return Err(invalid(
                "dead_letter_capacity and read_batch must be at least 1",
            ));
        }
        if self.block < Duration::from_millis(1) {
            return Err(invalid("the block time must be at least 1 ms"));
        }
        let client = redis::Client::open(url).map_err(|e| StreamError::InvalidConfig {
            reason: format!("Redis URL: {e}"),
        })?;
        let conn = connection(&client, self.timeout).await?;
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
                dead_capacity: self.dead_letter_capacity,
                read_batch: self.read_batch,
                block: self.block,
                min_idle: self.min_idle,
                max_deliveries: self.max_deliveries,
                timeout: self.timeout,
                claims: self.claims,
            }),
        };
        ensure_group(&queue).await?;
        let q = &*queue.inner;
        super::durability::warn_if_it_can_lose_entries(&q.conn, q.timeout, &q.key).await;
        Ok(queue)
    }
}

/// `XGROUP CREATE … 0 MKSTREAM`, an existing group kept.
pub(crate) async fn ensure_group(queue: &RedisStreamQueue) -> Result<(), RedisCallError> {
    let q = &*queue.inner;
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(&q.key)
        .arg(&q.group)
        .arg("0")
        .arg("MKSTREAM");
    let mut conn = q.conn.clone();
    match bounded(q.timeout, cmd.query_async::<Value>(&mut conn)).await {
        Err(err) if !err.is_busy_group() => Err(err),
        _ => Ok(()),
    }
}
