//! The receiver pipeline end to end over real HTTP: real axum and actix-web servers on
//! loopback serving runhook's ready handlers (and extractors), a real reqwest client, real
//! background workers, and a private `redis-server` for the Redis store.
//!
//! Every scenario runs once per framework (`axum_server::*` and `actix_server::*`). Each test
//! builds its own receiver, server and run ids, so tests are independent and run in parallel.
//!
//! Waiting for "nothing more happened" is never done with a sleep: receivers that must prove
//! the absence of a handler call use one worker, and a fresh *sentinel* delivery is sent after
//! the deliveries under test. The queue is FIFO and the single worker finishes a job (handler
//! call and claim completion) before taking the next, so once the sentinel's handler call is
//! seen, every earlier delivery has been fully processed, and any extra call would be visible.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::ServiceConfig;
use runhook::dead_letter::{DeadLetter, DeadLetterReason, MemoryDeadLetters};
use runhook::payload::{Provider, RunEvent, RunStatus};
use runhook::receiver::{BackgroundBuilder, ClaimedEvent};
use runhook::retry::RetryPolicy;
use runhook::store::{Fingerprint, IdempotencyStore, MemoryStore, RedisStore};
use runhook::verify::sign_skyvern;
use runhook::{
    Handler, HeaderToken, InlineReceiver, PathSecret, Receiver, ReceiverBuilder, Secret,
    SkyvernSignature, Stats,
};
use tokio::sync::{watch, Notify};

#[macro_use]
#[path = "support/servers.rs"]
mod servers;
use runhook_testkit::skyvern::SIGNATURE_HEADER as SIGNATURE;
use runhook_testkit::unique;
use servers::answers::*;
use servers::routes::*;
use servers::{post, serve, spawn_actix, spawn_axum, Framework, Reply, Server};

const SKYVERN_KEY: &str = "sk_e2e_pipeline_key";
const WEBRUN_AUTH: &str = "Bearer webrun-pipeline-token";
const TINYFISH_SECRET: &str = "tf7Qm2Kx9sLwPzR4";

/// How long any wait for the pipeline may take before the test fails (generous: a wait
/// normally ends within milliseconds; this only bounds a broken run).
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Fixtures: ids, bodies, receivers.

/// A run id no other test uses (see [`unique`]) and its Skyvern body.
fn fresh_run(tag: &str) -> (String, Vec<u8>) {
    let id = unique(tag);
    let body = skyvern_body(&id);
    (id, body)
}

fn skyvern_key(run_id: &str) -> String {
    format!("skyvern:{run_id}")
}

fn skyvern_body_with_status(run_id: &str, status: &str) -> Vec<u8> {
    format!(
        r#"{{"run_id":"{run_id}","status":"{status}","output":{{"price":29.99,"title":"caf\u00e9 ☕"}},"step_count":3}}"#
    )
    .into_bytes()
}

fn skyvern_body(run_id: &str) -> Vec<u8> {
    skyvern_body_with_status(run_id, "completed")
}

/// A genuine Skyvern body of exactly `len` bytes.
fn padded_skyvern_body(run_id: &str, len: usize) -> Vec<u8> {
    let head = format!(r#"{{"run_id":"{run_id}","status":"completed","output":{{"pad":""#);
    let tail = r#""}}"#;
    let pad = len - head.len() - tail.len();
    let body = format!("{head}{}{tail}", "x".repeat(pad)).into_bytes();
    assert_eq!(body.len(), len);
    body
}

fn skyvern_signature(body: &[u8]) -> String {
    sign_skyvern(&Secret::new(SKYVERN_KEY).unwrap(), body)
}

/// Short backoffs, so that retries take milliseconds.
fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        attempt_timeout: Duration::from_secs(60),
    }
}

/// Serves on `framework` a Skyvern receiver with `calls`'s handler, fast retries and the
/// settings `tune` adds; the receiver and a client for it.
async fn serve_skyvern(
    framework: Framework,
    calls: &Arc<Calls>,
    tune: impl FnOnce(BackgroundBuilder) -> BackgroundBuilder,
) -> (Receiver, Ctx) {
    let builder = skyvern_receiver()
        .handler(calls.handler())
        .retry(fast_retry());
    let receiver = tune(builder).build().unwrap();
    let ctx = Ctx::start(framework, vec![(SKYVERN_ROUTE, receiver.clone())]).await;
    (receiver, ctx)
}

fn skyvern_receiver() -> ReceiverBuilder {
    Receiver::builder(
        Provider::Skyvern,
        SkyvernSignature::new(Secret::new(SKYVERN_KEY).unwrap()),
    )
}

// ---------------------------------------------------------------------------------------------
// The handler under test: records each call, optionally waits on a gate, then sleeps.

struct Calls {
    /// Every handler call, in call order.
    events: Mutex<Vec<RunEvent>>,
    /// Calls that returned.
    finished: AtomicUsize,
    changed: Notify,
    /// Handlers wait until this is `true`.
    gate: watch::Sender<bool>,
    /// How long a handler sleeps after the gate, before returning.
    delay: Duration,
}

impl Calls {
    fn with(open: bool, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            events: Mutex::new(Vec::new()),
            finished: AtomicUsize::new(0),
            changed: Notify::new(),
            gate: watch::Sender::new(open),
            delay,
        })
    }

    /// Handlers return at once.
    fn immediate() -> Arc<Self> {
        Self::with(true, Duration::ZERO)
    }

    /// Handlers block until [`Calls::open_gate`].
    fn gated() -> Arc<Self> {
        Self::with(false, Duration::ZERO)
    }

    /// Handlers sleep `delay`.
    fn slow(delay: Duration) -> Arc<Self> {
        Self::with(true, delay)
    }

    fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// Records a call; returns how many calls this run's key has had, this one included.
    fn record(&self, event: &RunEvent) -> usize {
        let mut events = self.events.lock().unwrap();
        events.push(event.clone());
        let n = events
            .iter()
            .filter(|e| e.dedup_key == event.dedup_key)
            .count();
        drop(events);
        self.changed.notify_waiters();
        n
    }

    fn finish(&self) {
        self.finished.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn handler(self: &Arc<Self>) -> impl Handler {
        let calls = self.clone();
        move |event: Arc<RunEvent>| {
            let calls = calls.clone();
            async move {
                calls.record(&event);
                let mut gate = calls.gate.subscribe();
                let _ = gate.wait_for(|open| *open).await;
                tokio::time::sleep(calls.delay).await;
                calls.finish();
                Ok::<(), std::io::Error>(())
            }
        }
    }

    /// The de-duplication keys of the calls so far, in call order.
    fn keys(&self) -> Vec<String> {
        let events = self.events.lock().unwrap();
        events.iter().map(|e| e.dedup_key.clone()).collect()
    }

    fn events(&self) -> Vec<RunEvent> {
        self.events.lock().unwrap().clone()
    }

    fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }

    /// Waits until `condition` holds (checked after every call and return), at most [`WAIT`].
    async fn wait_until(&self, what: &str, condition: impl Fn(&Self) -> bool) {
        let waited = tokio::time::timeout(WAIT, async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if condition(self) {
                    return;
                }
                changed.await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "timed out waiting until {what}; calls {:?}, finished {}",
            self.keys(),
            self.finished()
        );
    }

    async fn wait_for_key(&self, key: &str) {
        self.wait_until(&format!("the handler is called for {key}"), |c| {
            c.keys().iter().any(|k| k == key)
        })
        .await;
    }
}

/// Polls `condition` every 10 ms, at most [`WAIT`] (for counters the handler cannot signal).
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Servers and the client.

/// One server and a client for it.
struct Ctx {
    server: Server,
    client: reqwest::Client,
}

impl Ctx {
    fn new(server: Server) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self { server, client }
    }

    async fn start(framework: Framework, routes: Vec<(&'static str, Receiver)>) -> Self {
        Self::new(serve(framework, routes).await)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        post(&self.client, &self.url(path), headers, body).await
    }

    /// `body` sent with Skyvern's signature of `signed` (the same bytes or others).
    async fn signed(&self, signed: &[u8], body: impl Into<reqwest::Body>) -> Reply {
        let signature = skyvern_signature(signed);
        self.post(SKYVERN_ROUTE, &[(SIGNATURE, &signature)], body)
            .await
    }

    /// A genuine Skyvern delivery of `body`.
    async fn skyvern(&self, body: Vec<u8>) -> Reply {
        let signature = skyvern_signature(&body);
        self.post(SKYVERN_ROUTE, &[(SIGNATURE, &signature)], body)
            .await
    }

    /// Sends a new genuine Skyvern run and waits until the handler is called for it; with one
    /// worker, every delivery queued before it has then been processed and its claim settled.
    /// Returns the sentinel's de-duplication key.
    async fn flush(&self, calls: &Calls) -> String {
        let id = unique("tsk_sentinel");
        self.skyvern(skyvern_body(&id)).await.assert(200, ACCEPTED);
        let key = skyvern_key(&id);
        calls.wait_for_key(&key).await;
        key
    }
}

/// `body` as a streamed request body of `chunk`-byte pieces: sent chunked, without a
/// `Content-Length`.
fn streamed(body: &[u8], chunk: usize) -> reqwest::Body {
    let chunks: Vec<Vec<u8>> = body.chunks(chunk).map(<[u8]>::to_vec).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks.into_iter().map(Ok::<_, std::io::Error>),
    ))
}

// ---------------------------------------------------------------------------------------------
// A private Redis.

/// A `redis-server` started for one test on a free port, killed when dropped.
struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    async fn start() -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        let mut redis = RedisServer {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(status)) = redis.child.as_mut().unwrap().try_wait() {
                return Err(format!("redis-server exited at start: {status}"));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(redis);
            }
            if Instant::now() > deadline {
                return Err(format!("redis-server not listening on {port} within 5 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private Redis. Fails the test when it cannot be started (a test that cannot run must not
/// pass), saying how to get a `redis-server`.
async fn private_redis(test: &str) -> RedisServer {
    match RedisServer::start().await {
        Ok(redis) => redis,
        Err(why) => panic!(
            "{test} needs the `redis-server` binary on PATH to start a private Redis: {why}; \
             install Redis (e.g. `apt-get install redis-server`); the other Redis tests use one \
             started with: redis-server --daemonize yes --port 6379 --save \"\" --appendonly no"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios. Each runs against both frameworks (see the macro at the end).

/// Scenario 1: A genuine delivery: 200 at once, exactly one handler call with the body as sent.
async fn genuine_delivery_is_acknowledged_and_processed_once(framework: Framework) {
    let calls = Calls::immediate();
    let (receiver, ctx) = serve_skyvern(framework, &calls, |b| b).await;

    let (id, body) = fresh_run("tsk_genuine");
    ctx.skyvern(body.clone()).await.assert(200, ACCEPTED);

    calls
        .wait_until("the handler returned", |c| c.finished() == 1)
        .await;
    eventually("the run is counted as processed", || {
        receiver.stats().processed == 1
    })
    .await;
    let events = calls.events();
    assert_eq!(events.len(), 1, "{:?}", calls.keys());
    let event = &events[0];
    assert_eq!(event.provider, Provider::Skyvern);
    assert_eq!(event.run_id.as_deref(), Some(id.as_str()));
    assert_eq!(event.dedup_key, skyvern_key(&id));
    assert_eq!(event.status, RunStatus::Completed);
    assert_eq!(&event.raw_body[..], &body[..]);
    assert_eq!(
        receiver.stats(),
        Stats {
            received: 1,
            accepted: 1,
            processed: 1,
            ..Stats::default()
        }
    );
}

/// Scenario 2: The same delivery again after it was processed: 200 (duplicate), no second call; the
/// same run with another body is a duplicate too, and counted as one with a different body.
async fn duplicate_after_processing_gets_200_and_no_second_call(framework: Framework) {
    let calls = Calls::immediate();
    let (receiver, ctx) = serve_skyvern(framework, &calls, |b| b.workers(1)).await;

    let (id, body) = fresh_run("tsk_dup");
    ctx.skyvern(body.clone()).await.assert(200, ACCEPTED);
    let sentinel = ctx.flush(&calls).await; // the first delivery's claim is now complete

    ctx.skyvern(body.clone()).await.assert(200, DUPLICATE);
    ctx.skyvern(skyvern_body_with_status(&id, "failed"))
        .await
        .assert(200, DUPLICATE);

    let sentinel2 = ctx.flush(&calls).await;
    assert_eq!(calls.keys(), [skyvern_key(&id), sentinel, sentinel2]);
    eventually("three runs processed", || receiver.stats().processed == 3).await;
    assert_eq!(
        receiver.stats(),
        Stats {
            received: 5,
            accepted: 3,
            duplicates: 2,
            duplicates_with_other_body: 1,
            processed: 3,
            ..Stats::default()
        }
    );
}

/// Scenario 3: 100 concurrent copies of one delivery: all 200, exactly one accepted, one handler
/// call.
async fn concurrent_copies_give_exactly_one_call(framework: Framework) {
    let calls = Calls::immediate();
    let (receiver, ctx) = serve_skyvern(framework, &calls, |b| b.workers(1)).await;

    let (id, body) = fresh_run("tsk_concurrent");
    let signature = skyvern_signature(&body);
    let copies: Vec<_> = (0..100)
        .map(|_| {
            let (client, url) = (ctx.client.clone(), ctx.url(SKYVERN_ROUTE));
            let (body, signature) = (body.clone(), signature.clone());
            tokio::spawn(async move { post(&client, &url, &[(SIGNATURE, &signature)], body).await })
        })
        .collect();
    let mut replies = Vec::new();
    for copy in copies {
        replies.push(copy.await.unwrap());
    }

    let not_ok: Vec<_> = replies.iter().filter(|r| r.status != 200).collect();
    assert!(not_ok.is_empty(), "every copy gets 200: {not_ok:?}");
    let accepted = replies.iter().filter(|r| r.text == ACCEPTED).count();
    let duplicates = replies.iter().filter(|r| r.text == DUPLICATE).count();
    assert_eq!((accepted, duplicates), (1, 99));

    let sentinel = ctx.flush(&calls).await;
    assert_eq!(calls.keys(), [skyvern_key(&id), sentinel]);
    let stats = receiver.stats();
    assert_eq!(
        (
            stats.received,
            stats.accepted,
            stats.duplicates,
            stats.rejected
        ),
        (101, 2, 99, 0)
    );
    assert_eq!(stats.duplicates_with_other_body, 0);
}

/// Scenario 4: Forged, tampered or missing signatures: 401, no call, and no claim taken (the
/// genuine delivery of the same run afterwards is processed).
async fn forged_signature_gets_401(framework: Framework) {
    let calls = Calls::immediate();
    let (receiver, ctx) = serve_skyvern(framework, &calls, |b| b.workers(1)).await;

    let (id, body) = fresh_run("tsk_forged");
    let forged = sign_skyvern(&Secret::new("sk_attacker_key").unwrap(), &body);
    let reply = ctx
        .post(SKYVERN_ROUTE, &[(SIGNATURE, &forged)], body.clone())
        .await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert!(reply.text.starts_with("unauthorized: "), "{reply:?}");
    assert_eq!(reply.retry_after, None);

    // A genuine signature of another body.
    let tampered = skyvern_body_with_status(&id, "failed");
    let reply = ctx
        .post(
            SKYVERN_ROUTE,
            &[(SIGNATURE, &skyvern_signature(&body))],
            tampered,
        )
        .await;
    assert_eq!(reply.status, 401, "{reply:?}");

    ctx.post(SKYVERN_ROUTE, &[], body.clone())
        .await
        .assert(401, "unauthorized: header `x-skyvern-signature` is missing");

    ctx.skyvern(body).await.assert(200, ACCEPTED);
    let sentinel = ctx.flush(&calls).await;
    assert_eq!(calls.keys(), [skyvern_key(&id), sentinel]);
    let stats = receiver.stats();
    assert_eq!((stats.received, stats.rejected, stats.accepted), (5, 3, 2));
    assert_eq!(stats.rejected_unauthorized, 3);
}

/// Scenario 5: Over the body limit: 413 with a `Content-Length` and with a chunked body; a chunked
/// body within the limit is read and processed.
async fn body_over_the_limit_gets_413(framework: Framework) {
    let calls = Calls::immediate();
    let (_receiver, ctx) =
        serve_skyvern(framework, &calls, |b| b.body_limit(1024).workers(1)).await;
    let too_large = "body larger than 1024 bytes";

    let big_id = unique("tsk_big");
    let big = padded_skyvern_body(&big_id, 4096);
    let signature = skyvern_signature(&big);
    ctx.post(SKYVERN_ROUTE, &[(SIGNATURE, &signature)], big.clone())
        .await
        .assert(413, too_large);
    ctx.post(
        SKYVERN_ROUTE,
        &[(SIGNATURE, &signature)],
        streamed(&big, 512),
    )
    .await
    .assert(413, too_large);

    // Exactly at the limit, chunked: accepted.
    let id = unique("tsk_at_limit");
    let body = padded_skyvern_body(&id, 1024);
    ctx.signed(&body, streamed(&body, 300))
        .await
        .assert(200, ACCEPTED);
    // One byte over, chunked: refused.
    let over = padded_skyvern_body(&unique("tsk_over"), 1025);
    ctx.signed(&over, streamed(&over, 300))
        .await
        .assert(413, too_large);

    let sentinel = ctx.flush(&calls).await;
    assert_eq!(calls.keys(), [skyvern_key(&id), sentinel]);
    assert_eq!(&calls.events()[0].raw_body[..], &body[..]);
}

/// Scenario 6: Genuine but not the provider's payload: 202, kept whole in the dead-letter sink
/// without credential headers, and no handler call. A body whose id reads but whose fields do not
/// parse is acknowledged and dead-lettered by the worker.
async fn genuine_garbage_gets_202_and_is_dead_lettered(framework: Framework) {
    let calls = Calls::immediate();
    let skyvern_letters = Arc::new(MemoryDeadLetters::default());
    let webrun_letters = Arc::new(MemoryDeadLetters::default());
    let skyvern = skyvern_receiver()
        .handler(calls.handler())
        .retry(fast_retry())
        .workers(1)
        .dead_letters(skyvern_letters.clone())
        .build()
        .unwrap();
    let webrun = Receiver::builder(
        Provider::WebRun,
        HeaderToken::authorization(Secret::new(WEBRUN_AUTH).unwrap()),
    )
    .dead_letters(webrun_letters.clone())
    .handler(calls.handler())
    .build()
    .unwrap();
    let ctx = Ctx::start(
        framework,
        vec![
            (SKYVERN_ROUTE, skyvern.clone()),
            (WEBRUN_ROUTE, webrun.clone()),
        ],
    )
    .await;

    let not_skyvern = br#"{"hello":1}"#.to_vec();
    let signature = skyvern_signature(&not_skyvern);
    let credentials = [
        ("authorization", "Bearer leaked-credential-1"),
        ("x-api-key", "leaked-credential-2"),
        ("cookie", "session=leaked-credential-3"),
    ];
    let mut headers = vec![
        (SIGNATURE, signature.as_str()),
        ("x-request-id", "req-e2e-1"),
    ];
    headers.extend(credentials);
    ctx.post(SKYVERN_ROUTE, &headers, not_skyvern.clone())
        .await
        .assert(202, FOR_REVIEW);

    let not_json = b"run finished: ok, {not json".to_vec();
    ctx.signed(&not_json, not_json.clone())
        .await
        .assert(202, FOR_REVIEW);

    // WebRun: the credential is the auth header itself; the letter must not keep it.
    let no_task_id = br#"{"event":"task_completed","sessionId":"s-1"}"#.to_vec();
    ctx.post(
        WEBRUN_ROUTE,
        &[("authorization", WEBRUN_AUTH)],
        no_task_id.clone(),
    )
    .await
    .assert(202, FOR_REVIEW);

    let letters = skyvern_letters.letters();
    assert_eq!(letters.len(), 2, "{letters:?}");
    for (letter, body) in letters.iter().zip([&not_skyvern, &not_json]) {
        assert_eq!(letter.provider, Some(Provider::Skyvern));
        assert_eq!(&letter.body[..], &body[..]);
        assert_eq!(letter.dedup_key, None);
        assert!(
            matches!(letter.reason, DeadLetterReason::Unparseable(_)),
            "{letter:?}"
        );
        assert_no_credentials(letter);
    }
    let first = &letters[0];
    assert!(has_header(first, "x-request-id", "req-e2e-1"), "{first:?}");
    // The signature is the verifier's credential header: not kept either.
    assert!(
        first
            .headers
            .iter()
            .all(|(n, v)| !n.eq_ignore_ascii_case(SIGNATURE) && v != &signature),
        "{first:?}"
    );

    let letters = webrun_letters.letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].provider, Some(Provider::WebRun));
    assert_eq!(&letters[0].body[..], &no_task_id[..]);
    assert_no_credentials(&letters[0]);

    // The id reads, the summary does not (`status` must be a string): the receive path reads
    // the summary before the ack, so this is answered 202 (the response policy for a genuine
    // body that is not the provider's payload) and dead-lettered with its key.
    let id = unique("tsk_bad_field");
    let bad_field = format!(r#"{{"run_id":"{id}","status":["completed"]}}"#).into_bytes();
    ctx.skyvern(bad_field.clone()).await.assert(202, FOR_REVIEW);
    let sentinel = ctx.flush(&calls).await;
    assert_eq!(calls.keys(), [sentinel]);
    let letters = skyvern_letters.letters();
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert_eq!(letters[2].dedup_key.as_deref(), Some(&*skyvern_key(&id)));
    assert_eq!(&letters[2].body[..], &bad_field[..]);
    assert!(matches!(
        letters[2].reason,
        DeadLetterReason::Unparseable(_)
    ));
    assert_eq!(skyvern.stats().dead_lettered, 3);
    assert_eq!(webrun.stats().dead_lettered, 1);
}

fn has_header(letter: &DeadLetter, name: &str, value: &str) -> bool {
    letter
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value)
}

#[track_caller]
fn assert_no_credentials(letter: &DeadLetter) {
    for (name, value) in &letter.headers {
        let name = name.to_ascii_lowercase();
        assert!(
            !["authorization", "x-api-key", "cookie"].contains(&name.as_str()),
            "credential header `{name}` kept in {letter:?}"
        );
        assert!(
            !value.contains("leaked-credential") && !value.contains("webrun-pipeline-token"),
            "credential value kept in {letter:?}"
        );
    }
}

/// Scenario 7: The Redis store: a duplicate of a run in flight gets 503 (shared store, in-process
/// queue), a duplicate after completion 200; with Redis down a new run gets 503 + `Retry-After`.
async fn redis_down_gets_503(framework: Framework) {
    let test = format!("{framework:?} redis_down_gets_503");
    let mut redis = private_redis(&test).await;
    let store = RedisStore::builder()
        .prefix(format!("runhook:e2e:{}:", unique("p")))
        .timeout(Duration::from_millis(300))
        .connect(&redis.url())
        .await
        .expect("connect to the private Redis");
    let calls = Calls::gated();
    let (_receiver, ctx) =
        serve_skyvern(framework, &calls, |b| b.store(Arc::new(store)).workers(1)).await;

    let (id, body) = fresh_run("tsk_redis");
    ctx.skyvern(body.clone()).await.assert(200, ACCEPTED);
    calls.wait_for_key(&skyvern_key(&id)).await;

    // In flight (the handler waits on the gate): with a shared store, 503 and a later retry.
    let reply = ctx.skyvern(body.clone()).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.text, DUPLICATE);
    let after = reply.retry_after_secs();
    assert!((1..=60).contains(&after), "{reply:?}");

    calls.open_gate();
    let sentinel = ctx.flush(&calls).await; // the run's claim is complete in Redis now
    ctx.skyvern(body.clone()).await.assert(200, DUPLICATE);

    redis.kill();
    let started = Instant::now();
    let id2 = unique("tsk_redis_down");
    let reply = ctx.skyvern(skyvern_body(&id2)).await;
    reply.assert(503, UNAVAILABLE);
    assert!(reply.retry_after_secs() >= 1, "{reply:?}");
    assert!(
        started.elapsed() < WAIT,
        "the 503 took {:?}",
        started.elapsed()
    );
    // A duplicate of the done run cannot be told apart either: 503 too.
    ctx.skyvern(body).await.assert(503, UNAVAILABLE);

    assert_eq!(calls.keys(), [skyvern_key(&id), sentinel]);
}

/// Scenario 8: A full queue: 503 + `Retry-After`, and the claim is released so that the same
/// delivery is accepted and processed when re-sent later.
async fn full_queue_gets_503_and_releases_the_claim(framework: Framework) {
    let calls = Calls::gated();
    let (receiver, ctx) =
        serve_skyvern(framework, &calls, |b| b.queue_capacity(1).workers(1)).await;

    let (a, b, c) = (unique("tsk_q_a"), unique("tsk_q_b"), unique("tsk_q_c"));
    ctx.skyvern(skyvern_body(&a)).await.assert(200, ACCEPTED);
    calls.wait_for_key(&skyvern_key(&a)).await; // the worker holds `a`, the queue is empty
    ctx.skyvern(skyvern_body(&b)).await.assert(200, ACCEPTED); // the queue's one slot
    assert_eq!(receiver.stats().queue_depth, 1);

    let reply = ctx.skyvern(skyvern_body(&c)).await;
    reply.assert(503, UNAVAILABLE);
    // Skyvern honours Retry-After: it is asked for the pause that spans its retries over a
    // minute (`SenderProfile::outage_retry_after`).
    assert_eq!(reply.retry_after_secs(), 30);

    calls.open_gate();
    calls
        .wait_until("a and b are processed", |c| c.finished() == 2)
        .await;
    ctx.skyvern(skyvern_body(&c)).await.assert(200, ACCEPTED);
    calls
        .wait_until("c is processed", |c| c.finished() == 3)
        .await;
    assert_eq!(
        calls.keys(),
        [skyvern_key(&a), skyvern_key(&b), skyvern_key(&c)]
    );
    let stats = receiver.stats();
    assert_eq!((stats.received, stats.accepted, stats.rejected), (4, 3, 1));
}

/// Scenario 9a: Shutdown drains what was acknowledged; a delivery after it gets 503.
async fn shutdown_drains_acknowledged_deliveries(framework: Framework) {
    let calls = Calls::slow(Duration::from_millis(100));
    let (receiver, ctx) = serve_skyvern(framework, &calls, |b| b.workers(2)).await;

    let ids: Vec<String> = (0..5).map(|_| unique("tsk_drain")).collect();
    for id in &ids {
        ctx.skyvern(skyvern_body(id)).await.assert(200, ACCEPTED);
    }
    let report = receiver.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained(), "{report:?}");
    assert_eq!(
        calls.finished(),
        ids.len(),
        "all processed when shutdown returns"
    );
    let mut keys = calls.keys();
    keys.sort();
    let mut expected: Vec<String> = ids.iter().map(|id| skyvern_key(id)).collect();
    expected.sort();
    assert_eq!(keys, expected);

    let reply = ctx.skyvern(skyvern_body(&unique("tsk_late"))).await;
    reply.assert(503, SHUTTING_DOWN);
    assert!(reply.retry_after_secs() >= 1, "{reply:?}");
    assert_eq!(calls.keys().len(), ids.len());
}

/// Scenario 9b: Shutdown with a short deadline and a handler that never finishes loses
/// nothing: the undrained deliveries (the one being handled and the queued one) are in the
/// dead letters with their bodies, reported, and their claims released.
async fn shutdown_past_its_deadline_dead_letters_undrained_deliveries(framework: Framework) {
    let calls = Calls::gated();
    let store = Arc::new(MemoryStore::new());
    let letters = Arc::new(MemoryDeadLetters::default());
    let (receiver, ctx) = serve_skyvern(framework, &calls, |b| {
        b.store(store.clone())
            .dead_letters(letters.clone())
            .workers(1)
    })
    .await;

    let (busy, queued) = (unique("tsk_busy"), unique("tsk_queued"));
    ctx.skyvern(skyvern_body(&busy)).await.assert(200, ACCEPTED);
    calls.wait_for_key(&skyvern_key(&busy)).await;
    ctx.skyvern(skyvern_body(&queued))
        .await
        .assert(200, ACCEPTED);

    let started = Instant::now();
    let report = receiver.shutdown(Duration::from_millis(200)).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    let mut dead_lettered = report.dead_lettered.clone();
    dead_lettered.sort();
    let mut expected = vec![skyvern_key(&busy), skyvern_key(&queued)];
    expected.sort();
    assert_eq!(dead_lettered, expected);
    assert!(report.lost.is_empty() && report.left_pending.is_empty());
    // Each acknowledged body is kept whole, to be redriven.
    for id in [&busy, &queued] {
        let letter = letters
            .letters()
            .into_iter()
            .find(|l| l.dedup_key.as_deref() == Some(skyvern_key(id).as_str()))
            .expect("a dead letter per undrained delivery");
        assert_eq!(letter.body, skyvern_body(id));
        assert_eq!(
            letter.reason,
            runhook::dead_letter::DeadLetterReason::NotDrained
        );
        assert_eq!(letter.run_id.as_deref(), Some(id.as_str()));
    }
    assert_eq!(calls.finished(), 0);
    assert_eq!(calls.keys(), [skyvern_key(&busy)]);

    // The queued delivery's claim was released: a replay elsewhere can take it.
    let fingerprint = Fingerprint::of(&skyvern_body(&queued));
    let claim = store
        .claim(&skyvern_key(&queued), Duration::from_secs(60), fingerprint)
        .await
        .unwrap();
    assert!(claim.is_acquired(), "{claim:?}");

    ctx.skyvern(skyvern_body(&queued))
        .await
        .assert(503, SHUTTING_DOWN);
}

/// Scenario 10: The ack does not wait for the handler: a handler that sleeps 30 s, an answer in
/// well under the sender's timeout (bound: 2 s).
async fn ack_does_not_wait_for_the_handler(framework: Framework) {
    let calls = Calls::slow(Duration::from_secs(30));
    let (_receiver, ctx) = serve_skyvern(framework, &calls, |b| b).await;

    let id = unique("tsk_slow");
    let started = Instant::now();
    let reply = ctx.skyvern(skyvern_body(&id)).await;
    let took = started.elapsed();
    reply.assert(200, ACCEPTED);
    assert!(took < Duration::from_secs(2), "the ack took {took:?}");
    calls.wait_for_key(&skyvern_key(&id)).await;
    assert_eq!(calls.finished(), 0, "the handler is still sleeping");
}

/// The user's handler in the extractor-style tests, the same for both frameworks: records the
/// call, then, on the first call of a run whose id starts with
/// * `tsk_release`: releases the claim (`ClaimedEvent::release`) and answers 503;
/// * `tsk_drop`: drops the claim (documented to release it) and answers 503;
/// * `tsk_fail_late`: waits for the gate, drops the claim and answers 500;
///
/// and otherwise completes the claim and answers 200 `ok`.
async fn user_handler(calls: Arc<Calls>, claimed: ClaimedEvent) -> (u16, String) {
    let first = calls.record(&claimed.event) == 1;
    let run_id = claimed.event.run_id.clone().unwrap_or_default();
    if first && run_id.starts_with("tsk_release") {
        claimed.release().await;
        return (503, "gave up".into());
    }
    if first && run_id.starts_with("tsk_drop") {
        drop(claimed);
        return (503, "gave up".into());
    }
    if first && run_id.starts_with("tsk_fail_late") {
        let _ = calls.gate.subscribe().wait_for(|open| *open).await;
        drop(claimed);
        return (500, "failed".into());
    }
    match claimed.complete().await {
        Ok(()) => (200, "ok".into()),
        Err(e) => (500, e.to_string()),
    }
}

/// A server whose one Skyvern route is [`user_handler`] behind the framework's `Webhook`
/// extractor (axum: `.with_state(receiver)`; actix: `.app_data(receiver)`).
async fn extractor_server(
    framework: Framework,
    receiver: InlineReceiver,
    calls: Arc<Calls>,
) -> Server {
    match framework {
        Framework::Axum => {
            use runhook::axum::Webhook;
            let on_run = move |Webhook(claimed): Webhook| {
                let calls = calls.clone();
                async move {
                    let (status, text) = user_handler(calls, claimed).await;
                    (axum::http::StatusCode::from_u16(status).unwrap(), text)
                }
            };
            let app = axum::Router::new()
                .route(SKYVERN_ROUTE, axum::routing::post(on_run))
                .with_state(receiver);
            spawn_axum(app).await
        }
        Framework::Actix => {
            use runhook::actix::Webhook;
            let on_run = move |Webhook(claimed): Webhook| {
                let calls = calls.clone();
                async move {
                    let (status, text) = user_handler(calls, claimed).await;
                    let status = actix_web::http::StatusCode::from_u16(status).unwrap();
                    actix_web::HttpResponse::build(status).body(text)
                }
            };
            spawn_actix(Arc::new(move |cfg: &mut ServiceConfig| {
                cfg.app_data(receiver.clone())
                    .route(SKYVERN_ROUTE, actix_web::web::post().to(on_run.clone()));
            }))
        }
    }
}

/// Scenario 11: The extractor style: your handler runs for a genuine delivery and completes the
/// claim; a duplicate after completion is answered 200 without calling it; a forgery 401; a payload
/// whose fields do not parse 202 (dead-lettered, claim released); a claim your handler releases is
/// free again, so the sender's retry reaches your handler.
async fn extractor_style(framework: Framework) {
    let calls = Calls::immediate();
    let letters = Arc::new(MemoryDeadLetters::default());
    let receiver = skyvern_receiver()
        .dead_letters(letters.clone())
        .build_inline()
        .unwrap(); // the framework handler is the handler
    let server = extractor_server(framework, receiver.clone(), calls.clone()).await;
    let ctx = Ctx::new(server);

    let (id, body) = fresh_run("tsk_extract");
    ctx.skyvern(body.clone()).await.assert(200, "ok");
    assert_eq!(calls.keys(), [skyvern_key(&id)]);
    assert_eq!(&calls.events()[0].raw_body[..], &body[..]);

    ctx.skyvern(body.clone()).await.assert(200, DUPLICATE);
    let forged = sign_skyvern(&Secret::new("sk_attacker_key").unwrap(), &body);
    let reply = ctx
        .post(SKYVERN_ROUTE, &[(SIGNATURE, &forged)], body.clone())
        .await;
    assert_eq!(reply.status, 401, "{reply:?}");

    let bad_id = unique("tsk_extract_bad");
    let bad = format!(r#"{{"run_id":"{bad_id}","status":["completed"]}}"#).into_bytes();
    ctx.skyvern(bad.clone()).await.assert(202, FOR_REVIEW);
    let letters = letters.letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        letters[0].dedup_key.as_deref(),
        Some(&*skyvern_key(&bad_id))
    );
    assert_eq!(&letters[0].body[..], &bad[..]);

    assert_eq!(calls.keys(), [skyvern_key(&id)]);

    // Your handler releases the claim (gives up, answers 503): the retry is yours again.
    let give_up = unique("tsk_release");
    let body = skyvern_body(&give_up);
    ctx.skyvern(body.clone()).await.assert(503, "gave up");
    ctx.skyvern(body.clone()).await.assert(200, "ok");
    ctx.skyvern(body).await.assert(200, DUPLICATE);
    let key = skyvern_key(&give_up);
    assert_eq!(calls.keys(), [skyvern_key(&id), key.clone(), key]);

    assert_eq!(
        receiver.stats(),
        Stats {
            received: 7,
            accepted: 3,
            rejected: 2,
            rejected_unauthorized: 1,
            rejected_unparseable: 1,
            duplicates: 2,
            processed: 2,
            dead_lettered: 1,
            ..Stats::default()
        }
    );
}

/// WebRun (`Authorization` token) and TinyFish (secret last path segment) through the ready
/// handlers: genuine → 200 and one call each, wrong credentials → 401, duplicate → 200.
async fn webrun_and_tinyfish_deliveries(framework: Framework) {
    let calls = Calls::immediate();
    let one_worker = |provider, verifier: Box<dyn runhook::Verifier>| {
        Receiver::builder(provider, verifier)
            .handler(calls.handler())
            .workers(1)
            .retry(fast_retry())
            .build()
            .unwrap()
    };
    let webrun = one_worker(
        Provider::WebRun,
        Box::new(HeaderToken::authorization(
            Secret::new(WEBRUN_AUTH).unwrap(),
        )),
    );
    let tinyfish = one_worker(
        Provider::TinyFish,
        Box::new(PathSecret::last_segment(
            Secret::new(TINYFISH_SECRET).unwrap(),
        )),
    );
    let ctx = Ctx::start(
        framework,
        vec![
            (WEBRUN_ROUTE, webrun.clone()),
            (TINYFISH_ROUTE, tinyfish.clone()),
        ],
    )
    .await;

    let task = unique("task");
    let ping = format!(
        r#"{{"event":"task_completed","sessionId":"sess-1","taskId":"{task}","completedAt":"2025-06-01T12:00:00Z"}}"#
    );
    let webrun_key = format!("webrun:{task}");
    ctx.post(
        WEBRUN_ROUTE,
        &[("authorization", WEBRUN_AUTH)],
        ping.clone(),
    )
    .await
    .assert(200, ACCEPTED);
    calls.wait_for_key(&webrun_key).await;
    let reply = ctx
        .post(
            WEBRUN_ROUTE,
            &[("authorization", "Bearer webrun-pipeline-tokeN")],
            ping.clone(),
        )
        .await;
    assert_eq!(reply.status, 401, "{reply:?}");
    let reply = ctx.post(WEBRUN_ROUTE, &[], ping.clone()).await;
    assert_eq!(reply.status, 401, "{reply:?}");

    let run = unique("tf_run");
    let tinyfish_body = |run: &str| {
        format!(
            r#"{{"event":"run.completed","run_id":"{run}","status":"COMPLETED","data":{{"run_id":"{run}","status":"COMPLETED","result":{{"items":[1,2]}}}}}}"#
        )
    };
    let tinyfish_key = format!("tinyfish:{run}");
    let secret_path = format!("/webhooks/tinyfish/{TINYFISH_SECRET}");
    ctx.post(&secret_path, &[], tinyfish_body(&run))
        .await
        .assert(200, ACCEPTED);
    calls.wait_for_key(&tinyfish_key).await;
    let reply = ctx
        .post(
            "/webhooks/tinyfish/guessed-secret",
            &[],
            tinyfish_body(&run),
        )
        .await;
    assert_eq!(reply.status, 401, "{reply:?}");

    // Duplicates once processed: a second TinyFish run flushes the one-worker queue first.
    let run2 = unique("tf_run");
    ctx.post(&secret_path, &[], tinyfish_body(&run2))
        .await
        .assert(200, ACCEPTED);
    calls.wait_for_key(&format!("tinyfish:{run2}")).await;
    ctx.post(&secret_path, &[], tinyfish_body(&run))
        .await
        .assert(200, DUPLICATE);
    let reply = ctx
        .post(WEBRUN_ROUTE, &[("authorization", WEBRUN_AUTH)], ping)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.text, DUPLICATE);

    calls
        .wait_until("three calls returned", |c| c.finished() == 3)
        .await;
    let events = calls.events();
    assert_eq!(
        calls.keys(),
        [webrun_key, tinyfish_key, format!("tinyfish:{run2}")]
    );
    assert_eq!(events[0].provider, Provider::WebRun);
    assert_eq!(events[1].provider, Provider::TinyFish);
    assert_eq!(events[1].status, RunStatus::Completed);
    eventually("both routes processed their runs", || {
        webrun.stats().processed == 1 && tinyfish.stats().processed == 2
    })
    .await;
    assert_eq!((webrun.stats().rejected, tinyfish.stats().rejected), (2, 1));
    assert_eq!(
        (webrun.stats().duplicates, tinyfish.stats().duplicates),
        (1, 1)
    );
}

/// A handler that runs longer than the lease keeps its claim (the lease is renewed while it
/// runs): a duplicate sent after twice the lease is still a duplicate, with no second call.
async fn long_handler_keeps_its_claim(framework: Framework) {
    let lease = Duration::from_millis(600);
    let calls = Calls::gated();
    let (_receiver, ctx) = serve_skyvern(framework, &calls, |b| b.lease(lease).workers(1)).await;

    let (id, body) = fresh_run("tsk_long");
    ctx.skyvern(body.clone()).await.assert(200, ACCEPTED);
    calls.wait_for_key(&skyvern_key(&id)).await;
    tokio::time::sleep(lease * 2).await; // the first lease has lapsed: only renewal keeps it
    ctx.skyvern(body.clone()).await.assert(200, DUPLICATE);
    calls.open_gate();
    let sentinel = ctx.flush(&calls).await;
    ctx.skyvern(body).await.assert(200, DUPLICATE);
    assert_eq!(calls.keys(), [skyvern_key(&id), sentinel]);
}

/// A handler that fails is retried with backoff (a panic counts as a failure); one that
/// always fails is dead-lettered after the last attempt and its claim released, so the
/// same delivery sent again is processed again.
async fn failing_handler_is_retried_then_dead_lettered(framework: Framework) {
    let calls = Calls::immediate();
    let letters = Arc::new(MemoryDeadLetters::default());
    let handler = {
        let calls = calls.clone();
        move |event: Arc<RunEvent>| {
            let calls = calls.clone();
            async move {
                let attempt = calls.record(&event);
                let outcome = if event
                    .run_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with("tsk_flaky"))
                {
                    match attempt {
                        1 => panic!("the flaky handler panics on its first attempt"),
                        2 => Err(std::io::Error::other("flaky: second attempt fails")),
                        _ => Ok(()),
                    }
                } else {
                    Err(std::io::Error::other("broken: always fails"))
                };
                calls.finish();
                outcome
            }
        }
    };
    let receiver = skyvern_receiver()
        .handler(handler)
        .retry(fast_retry())
        .workers(1)
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    let ctx = Ctx::start(framework, vec![(SKYVERN_ROUTE, receiver.clone())]).await;

    let (flaky, broken) = (unique("tsk_flaky"), unique("tsk_broken"));
    ctx.skyvern(skyvern_body(&flaky))
        .await
        .assert(200, ACCEPTED);
    ctx.skyvern(skyvern_body(&broken))
        .await
        .assert(200, ACCEPTED);
    eventually("the broken run is dead-lettered", || {
        letters.letters().len() == 1
    })
    .await;
    let letter = &letters.letters()[0];
    assert_eq!(letter.dedup_key.as_deref(), Some(&*skyvern_key(&broken)));
    assert_eq!(&letter.body[..], &skyvern_body(&broken)[..]);
    let DeadLetterReason::HandlerFailed {
        attempts,
        last_error,
    } = &letter.reason
    else {
        panic!("unexpected reason {:?}", letter.reason);
    };
    assert_eq!(*attempts, 3);
    assert!(last_error.contains("broken: always fails"), "{last_error}");
    let (fk, bk) = (skyvern_key(&flaky), skyvern_key(&broken));
    assert_eq!(
        calls.keys(),
        [&fk, &fk, &fk, &bk, &bk, &bk].map(String::clone)
    );

    // The flaky run was processed once: a duplicate. The broken one's claim was released.
    ctx.skyvern(skyvern_body(&flaky))
        .await
        .assert(200, DUPLICATE);
    ctx.skyvern(skyvern_body(&broken))
        .await
        .assert(200, ACCEPTED);
    eventually("the broken run is dead-lettered again", || {
        letters.letters().len() == 2
    })
    .await;
    assert_eq!(calls.keys().iter().filter(|k| **k == bk).count(), 6);
    let stats = receiver.stats();
    assert_eq!(
        (stats.processed, stats.failed_attempts, stats.dead_lettered),
        (1, 2 + 3 + 3, 2)
    );
}

// ---------------------------------------------------------------------------------------------

per_framework!(
    genuine_delivery_is_acknowledged_and_processed_once,
    duplicate_after_processing_gets_200_and_no_second_call,
    concurrent_copies_give_exactly_one_call,
    forged_signature_gets_401,
    body_over_the_limit_gets_413,
    genuine_garbage_gets_202_and_is_dead_lettered,
    redis_down_gets_503,
    full_queue_gets_503_and_releases_the_claim,
    shutdown_drains_acknowledged_deliveries,
    shutdown_past_its_deadline_dead_letters_undrained_deliveries,
    ack_does_not_wait_for_the_handler,
    extractor_style,
    webrun_and_tinyfish_deliveries,
    long_handler_keeps_its_claim,
    failing_handler_is_retried_then_dead_lettered,
);

/// Regressions: each test reproduced a bug found in review (now fixed).
mod regressions {
    use super::*;
    use runhook::store::{Claim, StoreError, Token};

    /// `ShutdownReport::not_drained` says the undrained runs' claims "were released where
    /// possible, so a retry or replay can succeed". For the run a worker was handling when the
    /// deadline passed, the claim stays in flight for the whole lease, and the handler attempt
    /// (a task of its own) keeps running after the worker was aborted and the run reported as
    /// not drained: a replay after the lease would process the run a second time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_deadline_releases_the_busy_claim_and_stops_its_handler() {
        let calls = Calls::gated();
        let store = Arc::new(MemoryStore::new());
        let (receiver, ctx) = serve_skyvern(Framework::Axum, &calls, |b| {
            b.store(store.clone()).workers(1)
        })
        .await;

        let busy = unique("tsk_busy");
        ctx.skyvern(skyvern_body(&busy)).await.assert(200, ACCEPTED);
        calls.wait_for_key(&skyvern_key(&busy)).await;
        let report = receiver.shutdown(Duration::from_millis(200)).await;
        assert_eq!(report.dead_lettered, [skyvern_key(&busy)]);

        // The handler of a run reported as not drained must not go on.
        calls.open_gate();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            calls.finished(),
            0,
            "the aborted run's handler went on and finished"
        );

        // Its claim was released: a replay can succeed.
        let fingerprint = Fingerprint::of(&skyvern_body(&busy));
        let claim = store
            .claim(&skyvern_key(&busy), Duration::from_secs(60), fingerprint)
            .await
            .unwrap();
        assert!(claim.is_acquired(), "{claim:?}");
    }

    /// A memory store whose `release` takes 100 ms, as a remote store's call may.
    struct SlowRelease(MemoryStore);

    /// What a store call returns.
    type Outcome<T> = Result<T, StoreError>;

    #[async_trait::async_trait]
    impl IdempotencyStore for SlowRelease {
        // Forwarded as they are (short names keep each signature on one line).
        async fn claim(&self, key: &str, lease: Duration, fp: Fingerprint) -> Outcome<Claim> {
            self.0.claim(key, lease, fp).await
        }

        async fn complete(&self, key: &str, token: &Token, keep: Duration) -> Outcome<()> {
            self.0.complete(key, token, keep).await
        }

        async fn release(&self, key: &str, token: &Token) -> Result<(), StoreError> {
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.0.release(key, token).await
        }

        async fn renew(&self, key: &str, token: &Token, lease: Duration) -> Result<(), StoreError> {
            self.0.renew(key, token, lease).await
        }

        async fn state(&self, key: &str) -> Result<runhook::store::KeyState, StoreError> {
            self.0.state(key).await
        }
    }

    /// A dropped `ClaimedEvent` releases its claim in a background task, a moment later. A
    /// retry sent at once must not be lost: it is told to retry later (503, the run is still
    /// in flight and the extractor style never acks that), and a retry after the release
    /// reaches the handler. The store here makes the release take 100 ms.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_claim_is_free_for_an_immediate_retry() {
        for framework in [Framework::Axum, Framework::Actix] {
            let calls = Calls::immediate();
            let receiver = skyvern_receiver()
                .store(Arc::new(SlowRelease(MemoryStore::new())))
                .build_inline()
                .unwrap();
            let ctx = Ctx::new(extractor_server(framework, receiver, calls.clone()).await);

            // Released explicitly: the retry reaches the handler.
            let body = skyvern_body(&unique("tsk_release"));
            ctx.skyvern(body.clone()).await.assert(503, "gave up");
            ctx.skyvern(body).await.assert(200, "ok");

            // Dropped: an immediate retry is refused for now, never acked and lost...
            let body = skyvern_body(&unique("tsk_drop"));
            ctx.skyvern(body.clone()).await.assert(503, "gave up");
            let retry = ctx.skyvern(body.clone()).await;
            assert_eq!(
                retry.status, 503,
                "{framework:?}: the retry right after a dropped claim"
            );
            // ...and once the release has happened, the retry reaches the handler.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let retry = ctx.skyvern(body).await;
            assert_eq!(
                (retry.status, retry.text.as_str()),
                (200, "ok"),
                "{framework:?}: the retry after a dropped claim was released"
            );
        }
    }

    /// The response policy acks an in-flight duplicate 200 only when "the hand-off survives
    /// this process"; in the extractor style there is no hand-off: the run is in the user's
    /// handler, which may still fail and drop the claim. A receiver without a handler and the
    /// default (memory) store answers such a duplicate 200 all the same, so a sender retry
    /// that arrives while a slow handler runs (TinyFish: after its 10 s timeout) is
    /// acknowledged, the first attempt then fails, and the run is never processed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn extractor_in_flight_duplicate_is_not_acknowledged() {
        for framework in [Framework::Axum, Framework::Actix] {
            let calls = Calls::gated();
            let receiver = skyvern_receiver().build_inline().unwrap();
            let ctx = Ctx::new(extractor_server(framework, receiver, calls.clone()).await);
            let (id, body) = fresh_run("tsk_fail_late");
            let first = {
                let (client, url) = (ctx.client.clone(), ctx.url(SKYVERN_ROUTE));
                let (body, signature) = (body.clone(), skyvern_signature(&body));
                tokio::spawn(
                    async move { post(&client, &url, &[(SIGNATURE, &signature)], body).await },
                )
            };
            calls.wait_for_key(&skyvern_key(&id)).await;
            let retry = ctx.skyvern(body.clone()).await;
            calls.open_gate();
            first.await.unwrap().assert(500, "failed");
            assert_eq!(
                retry.status, 503,
                "{framework:?}: in-flight duplicate: {retry:?}"
            );
            assert!(retry.retry_after.is_some(), "{retry:?}");
        }
    }
}
