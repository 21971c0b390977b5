//! The Redis stream hand-off against a real Redis on 127.0.0.1:6379 (a missing Redis fails
//! every test, saying how to start one). Every test uses its own key prefix. What every
//! hand-off promises (exactly once, a lost lease, the attempts cap, redrive, shutdown,
//! backpressure) is tested in `tests/handoff_contract/`; here, what only the stream does.

#![cfg(feature = "redis")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runhook::payload::{Provider, RunEvent};
use runhook::receiver::BackgroundBuilder;
use runhook::retry::RetryPolicy;
use runhook::store::{Claim, IdempotencyStore, RedisStore, Token};
use runhook::stream::{RedisStreamQueue, RedisStreamQueueBuilder};
use runhook::{Receiver, Secret, SkyvernSignature};
use tokio::sync::Semaphore;

#[path = "handoff_contract/kit.rs"]
mod kit;

use kit::{body, eventually, fp, redis_url, signed, unique, KEY};

const GROUP: &str = "runhook";

/// One test's keys: a store prefix and a stream key under one unique prefix.
struct Env {
    keys: kit::Keys,
    stream: String,
    store: Arc<RedisStore>,
}

impl std::ops::Deref for Env {
    type Target = kit::Keys;

    fn deref(&self) -> &kit::Keys {
        &self.keys
    }
}

impl Env {
    /// Fails the test when Redis is missing.
    async fn new(tag: &str) -> Self {
        let keys = kit::Keys::new(tag).await;
        Self {
            stream: format!("{}stream", keys.prefix),
            store: Arc::new(keys.store().await),
            keys,
        }
    }

    /// An env for `tag` and its queue, configured by `configure`.
    async fn with_queue(
        tag: &str,
        configure: impl FnOnce(RedisStreamQueueBuilder) -> RedisStreamQueueBuilder,
    ) -> (Self, RedisStreamQueue) {
        let env = Self::new(tag).await;
        let queue = env.queue(configure).await;
        (env, queue)
    }

    async fn queue(
        &self,
        configure: impl FnOnce(RedisStreamQueueBuilder) -> RedisStreamQueueBuilder,
    ) -> RedisStreamQueue {
        let builder = RedisStreamQueue::builder(Provider::Skyvern).stream_key(&self.stream);
        configure(builder).connect(&redis_url()).await.unwrap()
    }

    /// A receiver on this env's store and `queue`, with a short lease.
    fn receiver(
        &self,
        queue: RedisStreamQueue,
        lease: Duration,
        handler: impl runhook::Handler,
    ) -> BackgroundBuilder {
        Receiver::builder(
            Provider::Skyvern,
            SkyvernSignature::new(Secret::new(KEY).unwrap()),
        )
        .store(self.store.clone())
        .handler(handler)
        .redis_stream(queue)
        .lease(lease)
        .retry(RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            attempt_timeout: Duration::from_secs(30),
        })
    }

    async fn pending(&self) -> usize {
        self.keys.pending(&self.stream).await
    }

    /// What a delivery of `run` finds in the store now (claiming it for 1 s if free).
    async fn claim_now(&self, run: &str) -> Claim {
        let key = kit::dedup_key(run);
        let fingerprint = fp(run);
        let lease = Duration::from_secs(1);
        self.store.claim(&key, lease, fingerprint).await.unwrap()
    }

    /// Claims `run` for `lease`, as another instance's receive path would.
    async fn acquire(&self, run: &str, lease: Duration) -> Token {
        let key = kit::dedup_key(run);
        match self.store.claim(&key, lease, fp(run)).await.unwrap() {
            Claim::Acquired(token) => token,
            other => panic!("first claim: {other:?}"),
        }
    }

    /// A receiver on `queue` whose handler records each call, and the calls.
    fn recorded(&self, queue: RedisStreamQueue, lease: Duration) -> (Calls, Receiver) {
        let calls = Calls::default();
        let handler = recording(&calls, None);
        let receiver = self.receiver(queue, lease, handler).build().unwrap();
        (calls, receiver)
    }

    /// A receiver's builder on `queue` whose handler waits at the returned gate, then records
    /// the call.
    fn gated(
        &self,
        queue: RedisStreamQueue,
        lease: Duration,
    ) -> (Calls, Arc<Semaphore>, BackgroundBuilder) {
        let calls = Calls::default();
        let gate = Arc::new(Semaphore::new(0));
        let builder = self.receiver(queue, lease, recording(&calls, Some(gate.clone())));
        (calls, gate, builder)
    }

    /// Shuts `receiver` down and removes the test's keys.
    async fn finish(&self, receiver: Receiver, deadline: Duration) {
        receiver.shutdown(deadline).await;
        self.cleanup().await;
    }

    /// The first 10 pending entries: (id, consumer, idle ms, deliveries).
    async fn pending_entries(&self) -> Vec<(String, String, u64, u64)> {
        self.cmd(
            redis::cmd("XPENDING")
                .arg(&self.stream)
                .arg(GROUP)
                .arg("-")
                .arg("+")
                .arg(10),
        )
        .await
    }

    /// Appends an entry as the receive path of another instance would.
    async fn xadd(&self, run: &str, token: Option<Token>) -> String {
        let body = body(run);
        self.cmd(
            redis::cmd("XADD")
                .arg(&self.stream)
                .arg("*")
                .arg("provider")
                .arg("skyvern")
                .arg("key")
                .arg(format!("skyvern:{run}"))
                .arg("token")
                .arg(token.map(|t| t.to_string()).unwrap_or_default())
                .arg("body")
                .arg(&body[..])
                .arg("headers")
                .arg("[]"),
        )
        .await
    }

    /// Reads one new entry as consumer `name`, which never acknowledges it (a consumer that
    /// is about to crash, or a slow live one).
    async fn read_as(&self, name: &str) {
        let _: redis::Value = self
            .cmd(
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(name)
                    .arg("COUNT")
                    .arg(1)
                    .arg("STREAMS")
                    .arg(&self.stream)
                    .arg(">"),
            )
            .await;
    }
}

type Calls = Arc<Mutex<Vec<String>>>;

/// A handler recording each call's run id, after waiting for `gate` (if any) to open.
fn recording(
    calls: &Calls,
    gate: Option<Arc<tokio::sync::Semaphore>>,
) -> impl Fn(Arc<RunEvent>) -> runhook::handler::BoxFuture<'static, Result<(), std::io::Error>> {
    let calls = calls.clone();
    move |event: Arc<RunEvent>| {
        let (calls, gate) = (calls.clone(), gate.clone());
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.acquire().await.unwrap().forget();
            }
            calls
                .lock()
                .unwrap()
                .push(event.run_id.clone().unwrap_or_default());
            Ok(())
        })
    }
}

#[tokio::test]
async fn acknowledged_only_once_in_the_stream_then_processed_acked_and_deleted() {
    let (env, queue) = Env::with_queue("ack", |q| q).await;
    let (calls, gate, builder) = env.gated(queue, Duration::from_secs(5));
    let receiver = builder.workers(1).build().unwrap();

    let runs: Vec<String> = (0..4).map(|i| unique(&format!("run{i}"))).collect();
    for (i, run) in runs.iter().enumerate() {
        let (headers, body) = signed(run);
        let outcome = receiver.receive(&headers, "/hook", body).await;
        assert_eq!(outcome.status, 200, "{outcome:?}");
        // The answer came after XADD: the entry is in the stream already.
        assert_eq!(env.xlen(&env.stream).await, i + 1);
    }
    // One worker holds one entry, blocked in the handler; the rest wait in the stream.
    eventually(
        "the backlog shows in the stats",
        Duration::from_secs(6),
        async || receiver.stats().queue_depth == 4,
    )
    .await;
    assert!(calls.lock().unwrap().is_empty());

    gate.add_permits(runs.len());
    eventually(
        "all processed, acked and deleted",
        Duration::from_secs(10),
        async || {
            calls.lock().unwrap().len() == runs.len()
                && env.pending().await == 0
                && env.xlen(&env.stream).await == 0
        },
    )
    .await;
    let mut seen = calls.lock().unwrap().clone();
    seen.sort();
    let mut expected = runs.clone();
    expected.sort();
    assert_eq!(seen, expected);
    for run in &runs {
        let claim = env.claim_now(run).await;
        assert_eq!(claim, Claim::Done { same_payload: true });
    }
    assert_eq!(receiver.stats().processed, 4);
    assert!(receiver.shutdown(Duration::from_secs(5)).await.drained());
    env.cleanup().await;
}

#[tokio::test]
async fn a_failed_xadd_answers_503_and_releases_the_claim() {
    let (env, queue) = Env::with_queue("xadd-fails", |q| q).await;
    let (calls, receiver) = env.recorded(queue, Duration::from_secs(5));
    // Something else now owns the key: XADD answers WRONGTYPE.
    let _: () = env.cmd(redis::cmd("DEL").arg(&env.stream)).await;
    let _: () = env.cmd(redis::cmd("SET").arg(&env.stream).arg("x")).await;

    let run = unique("run");
    let (headers, body) = signed(&run);
    let outcome = receiver.receive(&headers, "/hook", body).await;
    assert_eq!(outcome.status, 503, "{outcome:?}");
    assert!(outcome.retry_after.is_some());
    // The claim was given back: the sender's retry can win.
    let claim = env.claim_now(&run).await;
    assert!(claim.is_acquired(), "{claim:?}");
    assert!(calls.lock().unwrap().is_empty());
    env.cleanup().await;
}

#[tokio::test]
async fn an_entry_of_a_crashed_consumer_is_taken_over_and_processed_exactly_once() {
    let (env, queue) =
        Env::with_queue("takeover", |q| q.min_idle(Duration::from_millis(1500))).await;
    // The crashed instance: it claimed the run (1 s lease), appended it, read it, and died.
    let run = unique("run");
    let token = env.acquire(&run, Duration::from_secs(1)).await;
    env.xadd(&run, Some(token)).await;
    env.read_as("crashed-consumer").await;
    assert_eq!(env.pending().await, 1);

    let started = Instant::now();
    let (calls, receiver) = env.recorded(queue, Duration::from_secs(1));
    eventually(
        "taken over and processed",
        Duration::from_secs(8),
        async || calls.lock().unwrap().len() == 1 && env.pending().await == 0,
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "taken over before min_idle: {:?}",
        started.elapsed()
    );
    // Nothing more happens: the run is done, the entry gone.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(*calls.lock().unwrap(), vec![run.clone()]);
    assert_eq!(env.xlen(&env.stream).await, 0);
    assert_eq!(
        env.claim_now(&run).await,
        Claim::Done { same_payload: true }
    );
    env.finish(receiver, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_taken_over_entry_whose_claim_is_held_by_a_live_worker_is_not_processed_twice() {
    // A min_idle far below the lease: the takeover happens while the holder is alive.
    let (env, queue) =
        Env::with_queue("live-holder", |q| q.min_idle(Duration::from_millis(300))).await;
    let run = unique("run");
    let key = format!("skyvern:{run}");
    let lease = Duration::from_secs(1);
    let token = env.acquire(&run, lease).await;
    env.xadd(&run, Some(token)).await;
    env.read_as("slow-live-consumer").await;
    // The live worker keeps renewing its lease with the entry's token.
    let holder = {
        let (store, key) = (env.store.clone(), key.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                store.renew(&key, &token, lease).await.unwrap();
            }
        })
    };

    let (calls, receiver) = env.recorded(queue, lease);
    // Several takeover scans pass: each finds the run in flight and leaves the entry pending.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(calls.lock().unwrap().is_empty(), "processed while held");
    assert_eq!(env.pending().await, 1);

    // The live worker finishes (complete) and dies before XACK: the next takeover finds the
    // run done and acknowledges the entry without calling the handler.
    holder.abort();
    env.store
        .complete(&key, &token, Duration::from_secs(60))
        .await
        .unwrap();
    eventually(
        "the done entry is acknowledged",
        Duration::from_secs(5),
        async || env.pending().await == 0 && env.xlen(&env.stream).await == 0,
    )
    .await;
    assert!(calls.lock().unwrap().is_empty());
    env.finish(receiver, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn entries_of_done_runs_are_acknowledged_without_a_handler_call() {
    let (env, queue) = Env::with_queue("done", |q| q).await;
    // Processed elsewhere already; one fresh entry carries its old token, one none.
    let run = unique("run");
    let key = format!("skyvern:{run}");
    let token = env.acquire(&run, Duration::from_secs(5)).await;
    env.store
        .complete(&key, &token, Duration::from_secs(60))
        .await
        .unwrap();
    env.xadd(&run, Some(token)).await;
    env.xadd(&run, None).await;

    let (calls, receiver) = env.recorded(queue, Duration::from_secs(5));
    eventually(
        "both entries acknowledged",
        Duration::from_secs(5),
        async || env.xlen(&env.stream).await == 0 && env.pending().await == 0,
    )
    .await;
    assert!(calls.lock().unwrap().is_empty());
    assert_eq!(receiver.stats().processed, 0);
    env.finish(receiver, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_duplicate_in_flight_is_appended_before_its_200_and_processed_once() {
    let (env, queue) = Env::with_queue("dup", |q| q.min_idle(Duration::from_millis(500))).await;
    let (calls, gate, builder) = env.gated(queue, Duration::from_secs(2));
    let receiver = builder.build().unwrap();
    let run = unique("run");
    let (headers, body) = signed(&run);
    assert_eq!(
        receiver.receive(&headers, "/h", body.clone()).await.status,
        200
    );
    eventually(
        "the first is being processed",
        Duration::from_secs(5),
        async || env.pending().await == 1,
    )
    .await;
    let duplicate = receiver.receive(&headers, "/h", body).await;
    assert_eq!(duplicate.status, 200, "{duplicate:?}");
    assert!(duplicate.is_duplicate());
    // Answered 200 only once it was in the stream, too.
    assert_eq!(env.xlen(&env.stream).await, 2);

    gate.add_permits(10);
    eventually("both entries settled", Duration::from_secs(8), async || {
        env.xlen(&env.stream).await == 0 && env.pending().await == 0
    })
    .await;
    assert_eq!(*calls.lock().unwrap(), vec![run]);
    env.finish(receiver, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn dead_letters_reach_the_dead_letter_stream_and_release_the_claim() {
    let (env, queue) = Env::with_queue("dead", |q| q).await;
    let dead_key = queue.dead_letter_key().to_string();
    assert_eq!(dead_key, format!("{}:dead", env.stream));
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let receiver = env
        .receiver(
            queue,
            Duration::from_secs(5),
            move |_event: Arc<RunEvent>| {
                counted.fetch_add(1, Ordering::Relaxed);
                async { Err::<(), _>(std::io::Error::other("downstream is down")) }
            },
        )
        .build()
        .unwrap();
    let run = unique("run");
    let (headers, body) = signed(&run);
    assert_eq!(
        receiver.receive(&headers, "/h", body.clone()).await.status,
        200
    );
    eventually("dead-lettered", Duration::from_secs(5), async || {
        env.xlen(&dead_key).await == 1 && env.xlen(&env.stream).await == 0
    })
    .await;
    assert_eq!(attempts.load(Ordering::Relaxed), 2);
    let letters: redis::streams::StreamRangeReply = env
        .cmd(redis::cmd("XRANGE").arg(&dead_key).arg("-").arg("+"))
        .await;
    let letter = &letters.ids[0];
    let text = |name: &str| -> String { letter.get(name).unwrap() };
    assert_eq!(text("provider"), "skyvern");
    assert_eq!(text("dedup_key"), format!("skyvern:{run}"));
    assert!(
        text("reason").contains("downstream is down"),
        "{}",
        text("reason")
    );
    let kept: Vec<u8> = letter.get("body").unwrap();
    assert_eq!(kept, body.to_vec());
    let headers: Vec<(String, String)> = serde_json::from_str(&text("headers")).unwrap();
    assert!(headers.iter().all(|(name, _)| name != "authorization"));
    assert_eq!(env.pending().await, 0);
    // Released: a later delivery of the run is processed again.
    let claim = env.claim_now(&run).await;
    assert!(claim.is_acquired(), "{claim:?}");
    assert_eq!(receiver.stats().dead_lettered, 1);
    env.finish(receiver, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_leaves_unfinished_entries_for_another_instance() {
    let env = Env::new("shutdown").await;
    let lease = Duration::from_secs(1);
    let first_calls = Calls::default();
    let never = Arc::new(tokio::sync::Semaphore::new(0));
    let first = env
        .receiver(
            env.queue(|q| q.consumer("first").min_idle(Duration::from_millis(1200)))
                .await,
            lease,
            recording(&first_calls, Some(never)),
        )
        .build()
        .unwrap();
    let run = unique("run");
    let (headers, body) = signed(&run);
    assert_eq!(first.receive(&headers, "/h", body).await.status, 200);
    eventually(
        "the first instance is processing it",
        Duration::from_secs(5),
        async || env.pending().await == 1,
    )
    .await;
    let report = first.shutdown(Duration::from_millis(200)).await;
    assert_eq!(report.left_pending, vec![format!("skyvern:{run}")]);
    assert!(report.dead_lettered.is_empty() && report.lost.is_empty());
    // The claim was released, the entry stays pending.
    assert_eq!(env.pending().await, 1);

    let second_queue = env
        .queue(|q| q.consumer("second").min_idle(Duration::from_millis(1200)))
        .await;
    let (second_calls, second) = env.recorded(second_queue, lease);
    eventually(
        "taken over by the second instance",
        Duration::from_secs(6),
        async || second_calls.lock().unwrap().len() == 1 && env.pending().await == 0,
    )
    .await;
    assert!(first_calls.lock().unwrap().is_empty());
    env.finish(second, Duration::from_secs(5)).await;
}

/// Hands the entry `id` to consumer `name` once more (as a takeover does), raising its
/// delivery count.
async fn redeliver_as(env: &Env, name: &str) {
    for (id, _, _, _) in env.pending_entries().await {
        let _: redis::Value = env
            .cmd(
                redis::cmd("XCLAIM")
                    .arg(&env.stream)
                    .arg(GROUP)
                    .arg(name)
                    .arg(0)
                    .arg(&id),
            )
            .await;
    }
}

#[tokio::test]
async fn a_poison_entry_is_dead_lettered_without_another_handler_call_then_redriven_once() {
    let env = Env::new("poison").await;
    let run = unique("poison");
    let queue = env
        .queue(|q| {
            q.consumer("survivor")
                .max_deliveries(3)
                .min_idle(Duration::from_millis(200))
        })
        .await;
    // Another instance's receive path appended it, then three instances died holding it.
    env.xadd(&run, None).await;
    env.read_as("crashed-1").await;
    redeliver_as(&env, "crashed-2").await;
    redeliver_as(&env, "crashed-3").await;
    let letters = queue.dead_letters();
    let (calls, receiver) = env.recorded(queue.clone(), Duration::from_secs(5));
    eventually(
        "the poison entry is set aside",
        Duration::from_secs(10),
        async || receiver.stats().poison == 1 && env.pending().await == 0,
    )
    .await;
    assert!(
        calls.lock().unwrap().is_empty(),
        "the handler ran a poison run"
    );
    let listed = letters.list().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let record = &listed[0].record;
    assert_eq!(record.reason_code, "poison");
    assert_eq!(
        record.dedup_key.as_deref(),
        Some(format!("skyvern:{run}").as_str())
    );
    assert_eq!(record.body_bytes().unwrap(), body(&run));
    assert_eq!(env.xlen(&env.stream).await, 0);

    // Redriven into the stream: processed once, under a fresh claim, and gone from the
    // dead letters.
    let report = queue.redrive(&[]).await.unwrap();
    assert_eq!(report.redriven, vec![format!("skyvern:{run}")]);
    eventually(
        "the redriven run is processed",
        Duration::from_secs(10),
        async || calls.lock().unwrap().len() == 1 && env.xlen(&env.stream).await == 0,
    )
    .await;
    assert!(letters.list().await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.lock().unwrap().clone(), vec![run.clone()]);
    env.finish(receiver, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_full_dead_letter_stream_keeps_the_entry_until_the_letter_fits() {
    let (env, queue) = Env::with_queue("deadfull", |q| q.dead_letter_capacity(1)).await;
    let letters = queue.dead_letters();
    let failing = |_event: Arc<RunEvent>| async { Err::<(), _>(std::io::Error::other("boom")) };
    let receiver = env
        .receiver(queue, Duration::from_secs(5), failing)
        .workers(2)
        .build()
        .unwrap();
    let (first, second) = (unique("first"), unique("second"));
    for run in [&first, &second] {
        let (headers, body) = signed(run);
        assert_eq!(receiver.receive(&headers, "/h", body).await.status, 200);
    }
    // One letter fits; the other delivery is kept (entry pending, claim held) and retried.
    eventually(
        "one letter written, the other refused",
        Duration::from_secs(10),
        async || {
            receiver.stats().dead_lettered == 1 && receiver.stats().dead_letter_write_failures >= 1
        },
    )
    .await;
    assert_eq!(
        env.xlen(&env.stream).await,
        1,
        "the refused one's entry is kept"
    );
    let kept = letters.list().await.unwrap();
    let kept_key = kept[0].record.dedup_key.clone().unwrap();
    let waiting = if kept_key.ends_with(&first) {
        &second
    } else {
        &first
    };
    let claim = env
        .store
        .claim(
            &format!("skyvern:{waiting}"),
            Duration::from_secs(1),
            fp(waiting),
        )
        .await
        .unwrap();
    assert!(
        !claim.is_acquired(),
        "the waiting delivery's claim is still held"
    );
    // Room again: the kept delivery's letter is written, and its entry goes.
    letters.remove(&[kept[0].id.clone()]).await.unwrap();
    eventually(
        "the second letter written after room was made",
        Duration::from_secs(15),
        async || receiver.stats().dead_lettered == 2 && env.xlen(&env.stream).await == 0,
    )
    .await;
    let listed = letters.list().await.unwrap();
    assert_eq!(
        listed[0].record.dedup_key.as_deref(),
        Some(format!("skyvern:{waiting}").as_str())
    );
    env.finish(receiver, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn consumers_of_crashed_instances_are_removed_once_they_hold_nothing() {
    let (env, queue) = Env::with_queue("forget", |q| {
        q.consumer("alive").min_idle(Duration::from_millis(200))
    })
    .await;
    // A crashed instance's consumer that holds nothing (its entry was acknowledged), and one
    // that still holds an entry.
    let (done, held) = (unique("done"), unique("held"));
    env.xadd(&done, None).await;
    env.read_as("crashed-empty").await;
    let ids = env.pending_entries().await;
    let _: () = env
        .cmd(
            redis::cmd("XACK")
                .arg(&env.stream)
                .arg(GROUP)
                .arg(&ids[0].0),
        )
        .await;
    env.xadd(&held, None).await;
    env.read_as("crashed-holding").await;
    let consumers = async || -> Vec<String> {
        let reply: redis::streams::StreamInfoConsumersReply = env
            .cmd(
                redis::cmd("XINFO")
                    .arg("CONSUMERS")
                    .arg(&env.stream)
                    .arg(GROUP),
            )
            .await;
        reply.consumers.into_iter().map(|c| c.name).collect()
    };
    let (calls, receiver) = env.recorded(queue, Duration::from_millis(150));
    eventually(
        "the empty crashed consumer is removed",
        Duration::from_secs(10),
        async || !consumers().await.contains(&"crashed-empty".to_string()),
    )
    .await;
    // The holding one was not removed while it held its entry: its entry was taken over
    // and processed, and only then may it go.
    eventually(
        "the held entry is taken over and processed",
        Duration::from_secs(10),
        async || calls.lock().unwrap().contains(&held),
    )
    .await;
    assert!(consumers().await.contains(&"alive".to_string()));
    env.finish(receiver, Duration::from_secs(2)).await;
}

/// A run API that knows every run as finished, with the body its webhook would have.
#[cfg(feature = "runs")]
struct FinishedRuns;

#[cfg(feature = "runs")]
impl runhook::runs::RunSource for FinishedRuns {
    fn fetch<'a>(
        &'a self,
        run_id: &'a str,
    ) -> runhook::handler::BoxFuture<'a, Result<runhook::runs::Fetched, runhook::runs::FetchError>>
    {
        let event = RunEvent::parse_summary(Provider::Skyvern, body(run_id)).unwrap();
        Box::pin(async move { Ok(runhook::runs::Fetched::Terminal(Box::new(event))) })
    }
}

#[cfg(feature = "runs")]
#[tokio::test]
async fn a_redriven_reconciled_run_comes_back_reconciled() {
    use runhook::payload::EventSource;
    use runhook::runs::ReconcilePolicy;
    let (env, queue) = Env::with_queue("redrive-source", |q| q).await;
    let letters = queue.dead_letters();
    // The handler fails until it is fixed; it records each event's source once it works.
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(EventSource, bool)>>> = Arc::default();
    let handler = {
        let (fixed, seen) = (fixed.clone(), seen.clone());
        move |event: Arc<RunEvent>| {
            let works = fixed.load(Ordering::SeqCst);
            if works {
                let confirmed = event.confirmation.is_confirmed();
                seen.lock().unwrap().push((event.source, confirmed));
            }
            async move {
                match works {
                    true => Ok(()),
                    false => Err(std::io::Error::other("not yet")),
                }
            }
        }
    };
    let policy = ReconcilePolicy::after(Duration::from_millis(100))
        .every(Duration::from_millis(25))
        .pauses(Duration::from_millis(100), Duration::from_millis(200));
    let receiver = env
        .receiver(queue.clone(), Duration::from_secs(5), handler)
        .reconcile(Arc::new(FinishedRuns), policy)
        .build()
        .unwrap();
    // No webhook comes: the reconciler fetches the run, and its handler fails every attempt.
    let run = unique("reconciled");
    receiver
        .expect(&run, Duration::from_millis(100))
        .await
        .unwrap();
    eventually(
        "the reconciled run is dead-lettered",
        Duration::from_secs(10),
        async || env.xlen(queue.dead_letter_key()).await == 1 && env.pending().await == 0,
    )
    .await;
    let listed = letters.list().await.unwrap();
    assert_eq!(listed[0].record.source.as_deref(), Some("reconciled"));
    assert_eq!(listed[0].record.source(), EventSource::Reconciled);

    fixed.store(true, Ordering::SeqCst);
    let report = queue.redrive(&[]).await.unwrap();
    assert_eq!(report.redriven, vec![format!("skyvern:{run}")]);
    eventually(
        "the redriven run is processed",
        Duration::from_secs(10),
        async || !seen.lock().unwrap().is_empty() && env.xlen(&env.stream).await == 0,
    )
    .await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(EventSource::Reconciled, true)],
        "the redriven run keeps its source"
    );
    env.finish(receiver, Duration::from_secs(5)).await;
}
