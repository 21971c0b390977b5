//! The durable hand-off on PostgreSQL (feature `postgres`): a delivery's claim and its job
//! commit in **one statement** before its 200, and workers on every instance take jobs with
//! `FOR UPDATE SKIP LOCKED`, so that an acknowledged delivery survives the crash of the
//! instance that acknowledged it, on the database you already run.
//!
//! ```no_run
//! use std::sync::Arc;
//! use runhook::payload::{Provider, RunEvent};
//! use runhook::postgres_queue::PostgresQueue;
//! use runhook::store::{Migrations, PostgresStore};
//! use runhook::{Receiver, Secret, SkyvernSignature};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::builder()
//!     .migrations(Migrations::Apply)
//!     .connect("postgres://app@127.0.0.1:5432/app")
//!     .await?;
//! let queue = PostgresQueue::builder(Provider::Skyvern).build(store.clone())?;
//! let verifier = SkyvernSignature::new(Secret::new("sk_live_example")?);
//! let receiver = Receiver::builder(Provider::Skyvern, verifier)
//!     .store(Arc::new(store))
//!     .handler(|event: Arc<RunEvent>| async move {
//!         println!("processed {}", event.dedup_key);
//!         Ok::<(), std::io::Error>(())
//!     })
//!     .postgres_queue(queue)
//!     .build()?;
//! # let _ = receiver; Ok(()) }
//! ```
//!
//! # The path of one delivery
//!
//! 1. The receive path authenticates the delivery, then sends one statement: it claims the
//!    run's dedup key in `<schema>.claims` (token `T`, lease `L`) and, **only when the claim
//!    was won**, inserts the job (the body, the headers minus credentials, `T`) into
//!    `<schema>.jobs`. Both rows commit together or not at all. **Only after that commit is
//!    the delivery answered 200.** A duplicate finds the claim (done: 200; in flight: 200, its
//!    job is already there, see below) and writes nothing. When the backlog is at its
//!    capacity nothing is written and the answer is 503 with `Retry-After`.
//! 2. One reader task per receiver fetches fresh jobs for its free workers (never more):
//!    `UPDATE jobs SET locked_until = now() + min_idle, locked_by = <consumer>,
//!    deliveries = deliveries + 1 … (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING …`.
//!    Instances never wait on each other's rows. When nothing is left it sleeps until a job
//!    is announced: at once for a job this process enqueued, by `NOTIFY runhook_jobs` (sent at
//!    most every 20 ms, outside the deliveries' transactions) for another's, and at the
//!    latest after the poll interval (1 s).
//! 3. The worker checks the claim as with the Redis stream: a fresh job renews its own token
//!    `T` (proof that nobody else holds the run); a taken-over job claims the run anew. Then
//!    it runs the handler (attempts, backoff, the lease renewed every third of it, and the
//!    job's lock extended in the same tick), records the run done, and deletes the job.
//!
//! # Crashes and takeover
//!
//! A job whose lock lapsed (its instance died, or stalled past `min_idle`: by default the
//! lease plus a tenth, at least a second more) is taken over by the next scan of any reader
//! (every `min_idle / 10`, at most 5 s). With the default 30 s lease, a killed instance's jobs
//! run elsewhere within about 40 s. A taken-over job is a suspect: it runs alone on its
//! instance; one handed out more than `max_deliveries` times (default
//! [`DEFAULT_MAX_DELIVERIES`]) is dead-lettered as `poison` without running again. A clean
//! shutdown ends its unfinished jobs' locks at once, so that another instance takes them at
//! its next scan.
//!
//! # What a 200 means
//!
//! The job is committed in PostgreSQL with its claim, as durable as your database's commits
//! (`synchronous_commit`, replication). A duplicate of a run in flight is answered 200 without
//! writing anything: the run's job committed with its claim, so it exists as long as the
//! claim does (keep to this hand-off's workers for the runs of its queue: a claim taken
//! outside it, by an inline receiver say, has no job behind it). Each run reaches the
//! handler at least once, and with the claim, exactly once except in one window: a worker
//! that dies after the handler's side effect and before the done mark. For effects in the
//! same database, close it with the transactional inbox ([`crate::inbox`]).
//!
//! # Bounded by backpressure
//!
//! The backlog (jobs waiting or running) is bounded by the receiver's
//! [`queue_capacity`](crate::ReceiverBuilder::queue_capacity) (default
//! [`DEFAULT_QUEUE_CAPACITY`]): the statement counts the queue's jobs (up to the capacity) once
//! the backlog last counted, plus what this instance enqueued since, reaches half the
//! capacity; below that it does not count. Concurrent deliveries can each take the last free
//! place. Dead letters go to `<schema>.dead_letters` ([`PostgresDeadLetters`]), bounded the
//! same way (refused past their capacity, the job kept and tried again).
//!
//! # Connections
//!
//! The queue uses its store's pool: one connection at a time per statement, and one held by
//! each receiver's reader for `LISTEN`. Size the pool for your workers plus the concurrent
//! deliveries you expect.

mod dead_letters;
mod error;
mod job;
mod queue;
mod reader;
mod row;
mod workers;

pub use dead_letters::{ListedPostgresLetter, PostgresDeadLetters};
pub use error::PostgresQueueError;
pub use queue::{
    PostgresQueue, PostgresQueueBuilder, DEFAULT_DEAD_LETTER_CAPACITY, DEFAULT_MAX_DELIVERIES,
    DEFAULT_QUEUE_CAPACITY,
};
pub(crate) use workers::PostgresWorkers;
