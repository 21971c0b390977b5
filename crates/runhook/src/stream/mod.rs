//! The durable hand-off (feature `redis`): a Redis stream read by a consumer group, so that
//! an acknowledged delivery survives the crash of the instance that acknowledged it, and so
//! that several receiver instances behind one load balancer share the work.
//!
//! ```no_run
//! use std::sync::Arc;
//! use runhook::payload::{Provider, RunEvent};
//! use runhook::store::RedisStore;
//! use runhook::{Receiver, Secret, SkyvernSignature};
//! use runhook::stream::RedisStreamQueue;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let url = "redis://127.0.0.1:6379";
//! let queue = RedisStreamQueue::builder(Provider::Skyvern).connect(url).await?;
//! let verifier = SkyvernSignature::new(Secret::new("sk_live_example")?);
//! let receiver = Receiver::builder(Provider::Skyvern, verifier)
//!     .store(Arc::new(RedisStore::connect(url).await?))
//!     .handler(|event: Arc<RunEvent>| async move {
//!         println!("processed {}", event.dedup_key);
//!         Ok::<(), std::io::Error>(())
//!     })
//!     .redis_stream(queue)
//!     .build()?;
//! # let _ = receiver; Ok(()) }
//! ```
//!
//! # The path of one delivery
//!
//! 1. The receive path authenticates the delivery and claims its dedup key in the idempotency
//!    store (token `T`, lease `L`), then appends it to the stream, unless the stream's backlog
//!    is at its capacity, in one atomic step (a Lua script: `XLEN`, then
//!    `XADD <stream> * <fields>`, the fields of [the entry](#entries-and-dead-letters) with
//!    `token` `T`).
//!    **Only after `XADD` succeeded is the delivery answered 200.** If the backlog is full, or
//!    Redis fails or times out, the claim is released and the answer is 503 with
//!    `Retry-After`, so that the sender's retry can win.
//!
//!    With a claim store ([`RedisStreamQueueBuilder::claim_in`], what `runhook serve` uses),
//!    the claim and the append are **one script** on the store's Redis
//!    ([`RedisStore::claim_and_append`](runhook_store::RedisStore::claim_and_append)): a
//!    taken run or a full backlog writes nothing, so there is no claim to release, and a run in
//!    flight always has its entry (a duplicate of it is answered 200 with no copy appended).
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
//!    (`XACK` + `XDEL`, one round trip); with a claim store, `complete`, `XACK` and `XDEL` are
//!    one script ([`RedisStore::complete_and_remove`](runhook_store::RedisStore::complete_and_remove)).
//!
//! # Crashes and takeover
//!
//! An entry read by a consumer stays in the group's pending list until it is acknowledged.
//! Every reader looks, every `min_idle / 10` (at most every 5 s), for entries idle longer than
//! `min_idle`
//! (`XAUTOCLAIM <stream> <group> <consumer> <min_idle> <cursor> COUNT n`): those of a consumer
//! that died. A taken-over entry is **never** processed with the token it carries, because
//! the consumer that had it may still be alive and renewing with that token; it goes through
//! the claim (step 3), which the live holder keeps winning. A worker keeps its entry from
//! being taken over while a handler runs or backs off by resetting the entry's idle time
//! (`XCLAIM … 0 <id> JUSTID`) in the same tick that renews the lease; the claim check stays as
//! the safety net if that reset is late.
//!
//! The default `min_idle` is the receiver's lease plus a tenth of it (at least one second
//! more): by then a dead consumer's claim has lapsed, so the takeover's claim wins at once.
//! With the default lease of 30 s, a crashed instance's runs are taken over about 35–40 s
//! after its last renewal (idle past `min_idle`, then the next scan and a blocked read). A
//! shorter lease fails over sooner, at the price of more renewals (one `SET` and one
//! `XCLAIM` per running job every third of the lease) and less slack for a
//! stalled process, whose attempt is then stopped at its next renewal.
//!
//! # Poison runs
//!
//! A run whose handler kills its process (out of memory, an abort, a native crash) would be
//! taken over, and kill the next process, forever. Each takeover reads the entry's delivery
//! count (`XPENDING`): an entry handed to workers more than `max_deliveries` times (default
//! [`DEFAULT_MAX_DELIVERIES`]) is dead-lettered with the reason `poison` and its claim
//! released, without running the handler again. An entry that was taken over (handed out at
//! least twice) is a suspect: it runs **alone** on its instance, with no other entry read
//! meanwhile, so that when it does kill its process it takes no innocent runs (and their
//! delivery counts) with it.
//!
//! Consumers that crashed stay listed in the group; once they hold nothing and have been idle
//! for ten times `min_idle`, a reader removes them
//! (`XGROUP DELCONSUMER`, in a Lua script that checks again that they hold nothing).
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
//! # Bounded by backpressure, never by trimming
//!
//! Processed entries are deleted at once, so the stream holds only the backlog: entries not
//! yet processed. The backlog is bounded by the receiver's
//! [`queue_capacity`](crate::ReceiverBuilder::queue_capacity) (default
//! [`DEFAULT_STREAM_CAPACITY`]): past it, deliveries are answered 503 with `Retry-After` and
//! their claims released. Nothing is ever trimmed: an acknowledged entry leaves the stream
//! only once it is processed or dead-lettered.
//!
//! Dead letters go to a second stream, `<stream>:dead` by default
//! ([`RedisStreamDeadLetters`]), bounded the same way ([`DEFAULT_DEAD_LETTER_CAPACITY`]): a
//! full dead-letter stream refuses the letter, and the worker keeps the entry and its claim
//! and tries again later. List them with [`RedisStreamDeadLetters::list`], and hand them back
//! to the stream with [`RedisStreamQueue::redrive`].
//!
//! # Entries and dead letters
//!
//! An entry's fields: `provider`; `key` (the dedup key); `run_id` (empty when the run has
//! none); `token` (the claim's token, empty for a duplicate or a redriven letter); `at` (when
//! the delivery was received, ms since the epoch); `body` (the raw bytes); `headers` (a JSON
//! array of `[name, value]` pairs, credentials left out); `source` (`webhook`, or
//! `reconciled` when the body came from the platform's run API; an entry without it is read
//! as a webhook's). An entry that lacks `provider`, `key`, `token`, `body` or `headers`, or
//! whose body is not the named run's payload, is not one runhook wrote: it is dead-lettered
//! whole (reason `malformed_entry`) and acknowledged.
//!
//! A dead letter's fields: `provider`, `dedup_key`, `run_id` (empty when unknown), `reason`,
//! `reason_code`, `attempts`, `received_at` (RFC 3339), `received_at_ms`, `headers`, `body`
//! and `source`. A redrive writes a letter back as an entry with the same provider, key, run
//! id, receipt time, body, headers and source, and no token.
//!
//! These names are written and read in one place in the code, and the redrive script is
//! built from them.
//!
//! # Several instances
//!
//! Give every instance the same Redis, the same stream key and the same group, and its own
//! consumer name (the default, `<hostname>-<pid>-<random>`, is unique). New entries go to
//! whichever reader asks first; a crashed instance's entries are taken over by the others
//! after `min_idle`. Use one queue per receiver (route): the queue's consumer name belongs to
//! one reader. A clean shutdown removes its own consumer when it has nothing pending. Two
//! deployments sharing one Redis (staging and production) must not share keys: give each its
//! own [`namespace`](RedisStreamQueueBuilder::namespace) and store prefix. The stream must
//! belong to this one group: the
//! entries are deleted after processing, so a second group would miss them.
//!
//! # Connections
//!
//! Two per queue: a shared, auto-reconnecting [`ConnectionManager`](redis::aio::ConnectionManager) for `XADD`, `XACK`,
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
//! them over after `min_idle` (or this one, when it starts again).

mod call;
mod claimed;
mod dead_letters;
mod defaults;
mod durability;
mod entry;
mod error;
mod foreign;
mod process;
mod queue;
mod reader;
mod shared;
mod workers;

pub use dead_letters::{ListedDeadLetter, RedisStreamDeadLetters};
pub use defaults::{
    stream_key, DEFAULT_DEAD_LETTER_CAPACITY, DEFAULT_GROUP, DEFAULT_KEY_PREFIX,
    DEFAULT_MAX_DELIVERIES, DEFAULT_NAMESPACE, DEFAULT_STREAM_CAPACITY,
};
pub use error::StreamError;
pub use queue::{RedisStreamQueue, RedisStreamQueueBuilder};
pub(crate) use workers::StreamWorkers;
