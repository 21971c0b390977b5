//! The contract every hand-off keeps, written once against a [`Backend`]: exactly once under
//! duplicate deliveries, a lost lease never counted processed, the attempts cap, dead letters
//! and their redrive, a shutdown past its deadline, and backpressure.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runhook::dead_letter::{
    DeadLetter, DeadLetterRecord, DeadLetterSink, MemoryDeadLetters, RedriveReport,
};
use runhook::handler::BoxFuture;
use runhook::payload::{Provider, RunEvent};
use runhook::receiver::BackgroundBuilder;
use runhook::retry::RetryPolicy;
use runhook::store::{
    Claim, Expectations, Fingerprint, IdempotencyStore, KeyState, StoreError, Token,
};
use runhook::{Handler, HandlerError, Receiver, Secret, SkyvernSignature};

pub use crate::kit::{body, dedup_key, eventually, fp, signed, unique, KEY};

/// One hand-off under test, with its own store, dead letters and keys.
#[allow(async_fn_in_trait)]
pub trait Backend: Sized {
    /// A fresh hand-off for `test`; panics when a service it needs is missing.
    async fn new(test: &str) -> Self;
    /// The store the receiver claims runs in.
    fn store(&self) -> Arc<Stealing>;
    /// Gives the receiver this hand-off's dead letters and, for a hand-off of its own, the
    /// hand-off.
    fn configure(&self, builder: BackgroundBuilder) -> BackgroundBuilder;
    /// Runs acknowledged and not yet taken by a worker.
    async fn backlog(&self, receiver: &Receiver) -> usize;
    /// Whether everything handed off was settled and nothing is left in the hand-off.
    async fn settled(&self, receiver: &Receiver) -> bool;
    /// The dedup keys of the runs the hand-off still holds (for another instance).
    async fn kept(&self) -> Vec<String>;
    /// The dead letters.
    async fn letters(&self) -> Vec<DeadLetterRecord>;
    /// Hands every dead letter back, to be processed by `handler` (the receiver's).
    async fn redrive(&self, handler: Arc<dyn Handler>) -> RedriveReport;
    /// What only this hand-off promises after a run's claim was lost mid-handler.
    async fn after_lost_lease(&self) {}
    /// Removes what the test left behind.
    async fn cleanup(&self) {}
}

/// What the receiver is built with, beyond its backend.
pub struct Settings {
    pub lease: Duration,
    pub workers: usize,
    pub max_attempts: u32,
    pub queue_capacity: Option<usize>,
    /// A dead-letter sink in place of the backend's.
    pub dead_letters: Option<Arc<dyn DeadLetterSink>>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(5),
            workers: 4,
            max_attempts: 2,
            queue_capacity: None,
            dead_letters: None,
        }
    }
}

/// A Skyvern receiver with `probe` as its handler, on `backend`.
pub fn receiver(backend: &impl Backend, settings: Settings, probe: &Probe) -> Receiver {
    let verifier = SkyvernSignature::new(Secret::new(KEY).unwrap());
    let builder = Receiver::builder(Provider::Skyvern, verifier)
        .store(backend.store())
        .lease(settings.lease)
        .handler(probe.clone())
        .workers(settings.workers)
        .retry(RetryPolicy {
            max_attempts: settings.max_attempts,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            attempt_timeout: Duration::from_secs(30),
        });
    let builder = match settings.queue_capacity {
        Some(capacity) => builder.queue_capacity(capacity),
        None => builder,
    };
    let builder = backend.configure(builder);
    let builder = match settings.dead_letters {
        Some(sink) => builder.dead_letters(sink),
        None => builder,
    };
    builder.build().unwrap()
}

/// A fresh `B` for `test`, and a receiver on it with `settings` and `probe`.
pub async fn start<B: Backend>(test: &str, settings: Settings, probe: &Probe) -> (B, Receiver) {
    let backend = B::new(test).await;
    let receiver = receiver(&backend, settings, probe);
    (backend, receiver)
}

/// Delivers `run`, signed, and checks it was acknowledged (200).
pub async fn deliver_acked(receiver: &Receiver, run: &str) {
    let (headers, body) = signed(run);
    let outcome = receiver.receive(&headers, "/h", body).await;
    assert_eq!(outcome.status, 200, "{outcome:?}");
}

/// The test's handler: it waits at its gate (if closed), records the call, and fails while
/// broken.
#[derive(Clone, Default)]
pub struct Probe(Arc<ProbeState>);

#[derive(Default)]
pub struct ProbeState {
    gate: Option<Arc<tokio::sync::Semaphore>>,
    broken: AtomicBool,
    /// Calls begun, waiting at the gate or past it.
    entered: AtomicU32,
    calls: Mutex<Vec<String>>,
    succeeded: Mutex<Vec<String>>,
}

impl Probe {
    /// A handler that waits for [`Probe::open`] before each call.
    pub fn gated() -> Self {
        Self(Arc::new(ProbeState {
            gate: Some(Arc::new(tokio::sync::Semaphore::new(0))),
            ..ProbeState::default()
        }))
    }

    /// A handler that fails until [`Probe::fix`].
    pub fn broken() -> Self {
        let probe = Self::default();
        probe.0.broken.store(true, Ordering::SeqCst);
        probe
    }

    pub fn open(&self, calls: usize) {
        if let Some(gate) = &self.0.gate {
            gate.add_permits(calls);
        }
    }

    pub fn fix(&self) {
        self.0.broken.store(false, Ordering::SeqCst);
    }

    /// How many calls began (at the gate or past it).
    pub fn entered(&self) -> u32 {
        self.0.entered.load(Ordering::SeqCst)
    }

    /// The run ids of every call, failed ones included.
    pub fn calls(&self) -> Vec<String> {
        self.0.calls.lock().unwrap().clone()
    }

    /// The run ids of the calls that succeeded.
    pub fn succeeded(&self) -> Vec<String> {
        self.0.succeeded.lock().unwrap().clone()
    }
}

impl Handler for Probe {
    fn handle(&self, event: Arc<RunEvent>) -> BoxFuture<'static, Result<(), HandlerError>> {
        let state = self.0.clone();
        state.entered.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if let Some(gate) = &state.gate {
                gate.acquire().await.unwrap().forget();
            }
            let run = event.run_id.clone().unwrap_or_default();
            state.calls.lock().unwrap().push(run.clone());
            if state.broken.load(Ordering::SeqCst) {
                return Err("downstream is down".into());
            }
            state.succeeded.lock().unwrap().push(run);
            Ok(())
        })
    }
}

/// A store that can take a run's claim away from its holder: at the holder's next renewal,
/// the claim is released with the holder's own token and claimed by a thief.
pub struct Stealing {
    inner: Arc<dyn IdempotencyStore>,
    marked: Mutex<HashSet<String>>,
    thieves: Mutex<Vec<(String, Claim)>>,
}

impl Stealing {
    pub fn new(inner: Arc<dyn IdempotencyStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            marked: Mutex::default(),
            thieves: Mutex::default(),
        })
    }

    /// Takes `key` away from its holder at its next renewal.
    pub fn steal(&self, key: &str) {
        self.marked.lock().unwrap().insert(key.to_string());
    }

    /// What the thief's claim of `key` got, once it was made.
    pub fn thief(&self, key: &str) -> Option<Claim> {
        let thieves = self.thieves.lock().unwrap();
        thieves.iter().find(|(k, _)| k == key).map(|(_, c)| *c)
    }
}

/// What a store answers.
type Answer<T> = Result<T, StoreError>;

#[async_trait::async_trait]
impl IdempotencyStore for Stealing {
    async fn claim(&self, key: &str, lease: Duration, fp: Fingerprint) -> Answer<Claim> {
        self.inner.claim(key, lease, fp).await
    }

    async fn complete(&self, key: &str, token: &Token, keep: Duration) -> Answer<()> {
        self.inner.complete(key, token, keep).await
    }

    async fn release(&self, key: &str, token: &Token) -> Answer<()> {
        self.inner.release(key, token).await
    }

    async fn renew(&self, key: &str, token: &Token, lease: Duration) -> Answer<()> {
        let stolen = self.marked.lock().unwrap().remove(key);
        if stolen {
            self.inner.release(key, token).await?;
            let fingerprint = Fingerprint::of(b"the thief's");
            let thief = self
                .inner
                .claim(key, Duration::from_secs(30), fingerprint)
                .await?;
            self.thieves.lock().unwrap().push((key.to_string(), thief));
        }
        self.inner.renew(key, token, lease).await
    }

    async fn state(&self, key: &str) -> Answer<KeyState> {
        self.inner.state(key).await
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    fn expectations(&self) -> Option<&dyn Expectations> {
        self.inner.expectations()
    }
}

/// What a delivery of `run` finds in the store now (claiming it for 1 s if free).
pub async fn claim_now(backend: &impl Backend, run: &str) -> Claim {
    backend
        .store()
        .claim(&dedup_key(run), Duration::from_secs(1), fp(run))
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The cases.

/// Many deliveries of the same runs, at once: every one is answered 200, and each run reaches
/// the handler once.
pub async fn duplicates_reach_the_handler_once<B: Backend>(test: &str) {
    let probe = Probe::default();
    let (backend, receiver) = start::<B>(test, Settings::default(), &probe).await;
    let runs: Vec<String> = (0..5).map(|i| unique(&format!("run{i}"))).collect();
    let mut deliveries = tokio::task::JoinSet::new();
    for run in runs.iter().flat_map(|run| std::iter::repeat_n(run, 12)) {
        let (receiver, (headers, body)) = (receiver.clone(), signed(run));
        deliveries.spawn(async move { receiver.receive(&headers, "/h", body).await });
    }
    while let Some(outcome) = deliveries.join_next().await {
        let outcome = outcome.unwrap();
        assert_eq!(outcome.status, 200, "{outcome:?}");
    }
    eventually("every run processed", Duration::from_secs(15), async || {
        probe.succeeded().len() >= runs.len() && backend.settled(&receiver).await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = probe.calls();
    seen.sort();
    let mut expected = runs.clone();
    expected.sort();
    assert_eq!(seen, expected, "each run handled exactly once");
    assert_eq!(receiver.stats().processed, runs.len() as u64);
    for run in &runs {
        assert!(matches!(claim_now(&backend, run).await, Claim::Done { .. }));
    }
    assert!(receiver.shutdown(Duration::from_secs(5)).await.drained());
    backend.cleanup().await;
}

/// The claim taken away while the handler waits: the attempt stops, and the run is never
/// counted processed.
pub async fn a_lost_claim_stops_the_attempt_and_is_never_counted_as_processed<B: Backend>(
    test: &str,
) {
    let probe = Probe::gated();
    let settings = Settings {
        lease: Duration::from_millis(900),
        ..Settings::default()
    };
    let (backend, receiver) = start::<B>(test, settings, &probe).await;
    let run = unique("lost");
    deliver_acked(&receiver, &run).await;
    // While the handler waits, someone else takes the run over.
    tokio::time::sleep(Duration::from_millis(100)).await;
    backend.store().steal(&dedup_key(&run));
    eventually(
        "the renewal finds another holder",
        Duration::from_secs(5),
        async || receiver.stats().lost_leases == 1,
    )
    .await;
    let thief = backend.store().thief(&dedup_key(&run));
    assert!(thief.is_some_and(|c| c.is_acquired()));
    probe.open(10);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(probe.calls().is_empty(), "the stopped attempt went on");
    assert_eq!(receiver.stats().processed, 0);
    backend.after_lost_lease().await;
    receiver.shutdown(Duration::from_secs(2)).await;
    backend.cleanup().await;
}

/// A handler that always fails is called the configured number of times, then the run is a
/// dead letter (with its body, without credentials), its claim released, processed zero
/// times.
pub async fn a_failing_run_is_dead_lettered_after_its_attempts<B: Backend>(test: &str) {
    let probe = Probe::broken();
    let settings = Settings {
        max_attempts: 3,
        ..Settings::default()
    };
    let (backend, receiver) = start::<B>(test, settings, &probe).await;
    let run = unique("failing");
    deliver_acked(&receiver, &run).await;
    eventually("dead-lettered", Duration::from_secs(10), async || {
        receiver.stats().dead_lettered == 1 && backend.settled(&receiver).await
    })
    .await;
    assert_eq!(probe.calls(), vec![run.clone(); 3]);
    let stats = receiver.stats();
    assert_eq!((stats.processed, stats.dead_lettered), (0, 1));
    let letter = &backend.letters().await[0];
    assert_eq!(letter.provider.as_deref(), Some("skyvern"));
    assert_eq!(letter.dedup_key.as_deref(), Some(dedup_key(&run).as_str()));
    assert_eq!(letter.reason_code, "handler_failed");
    assert_eq!(letter.attempts, 3);
    assert!(
        letter.reason.contains("downstream is down"),
        "{}",
        letter.reason
    );
    assert_eq!(letter.body_bytes().unwrap(), body(&run));
    assert!(letter
        .headers
        .iter()
        .all(|(name, _)| name != "x-skyvern-signature"));
    // Released (just after the letter was counted): a later delivery of the run is
    // processed again.
    eventually(
        "the claim is released",
        Duration::from_secs(5),
        async || claim_now(&backend, &run).await.is_acquired(),
    )
    .await;
    receiver.shutdown(Duration::from_secs(5)).await;
    backend.cleanup().await;
}

/// A dead letter redriven once the handler is fixed is processed once, and leaves the dead
/// letters; a second redrive finds nothing.
pub async fn a_redriven_dead_letter_is_processed_once<B: Backend>(test: &str) {
    let probe = Probe::broken();
    let (backend, receiver) = start::<B>(test, Settings::default(), &probe).await;
    let run = unique("redriven");
    deliver_acked(&receiver, &run).await;
    eventually(
        "dead-lettered, the claim released",
        Duration::from_secs(10),
        async || {
            receiver.stats().dead_lettered == 1
                && backend.settled(&receiver).await
                && matches!(
                    backend.store().state(&dedup_key(&run)).await,
                    Ok(KeyState::Absent)
                )
        },
    )
    .await;
    probe.fix();
    let handler: Arc<dyn Handler> = Arc::new(probe.clone());
    let report = backend.redrive(handler.clone()).await;
    assert_eq!(report.redriven, vec![dedup_key(&run)]);
    assert!(report.kept.is_empty(), "{report:?}");
    eventually(
        "the redriven run is processed",
        Duration::from_secs(10),
        async || probe.succeeded().len() == 1 && backend.settled(&receiver).await,
    )
    .await;
    assert!(backend.letters().await.is_empty());
    let again = backend.redrive(handler).await;
    assert!(again.redriven.is_empty() && again.already_done.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(probe.succeeded(), vec![run.clone()]);
    assert!(matches!(
        claim_now(&backend, &run).await,
        Claim::Done { .. }
    ));
    receiver.shutdown(Duration::from_secs(5)).await;
    backend.cleanup().await;
}

/// A shutdown past its deadline stops the running handler, reports what it did not finish,
/// and loses nothing: every acknowledged run is in the dead letters or still held by the
/// hand-off, and the running run's claim is released.
pub async fn a_shutdown_past_its_deadline_reports_the_rest_and_loses_nothing<B: Backend>(
    test: &str,
) {
    shutdown_reports_the_rest_and_loses_nothing::<B>(test, false).await;
}

/// A shutdown cut short (`shutdown_or`, a second stop signal say) long before its deadline
/// ends at once, exactly as one past its deadline.
pub async fn a_shutdown_cut_short_reports_the_rest_and_loses_nothing<B: Backend>(test: &str) {
    shutdown_reports_the_rest_and_loses_nothing::<B>(test, true).await;
}

/// The shutdown ends 200 ms in: at its deadline, or `cut` short of a 60 s one.
async fn shutdown_reports_the_rest_and_loses_nothing<B: Backend>(test: &str, cut: bool) {
    let probe = Probe::gated();
    let settings = Settings {
        workers: 1,
        ..Settings::default()
    };
    let (backend, receiver) = start::<B>(test, settings, &probe).await;
    let runs: Vec<String> = (0..3).map(|i| unique(&format!("left{i}"))).collect();
    for run in &runs {
        deliver_acked(&receiver, run).await;
    }
    eventually("one run is running", Duration::from_secs(5), async || {
        probe.entered() == 1
    })
    .await;
    let began = std::time::Instant::now();
    let report = if cut {
        let second = tokio::time::sleep(Duration::from_millis(200));
        receiver.shutdown_or(Duration::from_secs(60), second).await
    } else {
        receiver.shutdown(Duration::from_millis(200)).await
    };
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert!(report.lost.is_empty(), "{report:?}");
    assert!(!report.drained());
    assert!(probe.calls().is_empty());
    let mut accounted: HashSet<String> = backend.kept().await.into_iter().collect();
    let letters = backend.letters().await;
    accounted.extend(letters.iter().filter_map(|l| l.dedup_key.clone()));
    for key in report.not_drained() {
        assert!(
            accounted.contains(&key),
            "{key} reported, but neither kept nor a letter"
        );
    }
    for run in &runs {
        assert!(accounted.contains(&dedup_key(run)), "{run} lost");
    }
    let running: Vec<&String> = runs
        .iter()
        .filter(|run| report.not_drained().contains(&dedup_key(run)))
        .collect();
    assert!(!running.is_empty(), "{report:?}");
    for run in running {
        assert!(
            claim_now(&backend, run).await.is_acquired(),
            "{run} still claimed"
        );
    }
    backend.cleanup().await;
}

/// A full hand-off answers 503 with Retry-After and releases the claim; every acknowledged
/// run is processed (none dropped), and the refused ones are processed once when retried.
pub async fn a_full_backlog_answers_503_and_never_drops_an_acknowledged_run<B: Backend>(
    test: &str,
) {
    let capacity = 20;
    // The one worker waits at the gate: every delivery stays in the hand-off meanwhile.
    let probe = Probe::gated();
    let settings = Settings {
        lease: Duration::from_secs(30),
        workers: 1,
        queue_capacity: Some(capacity),
        ..Settings::default()
    };
    let (backend, receiver) = start::<B>(test, settings, &probe).await;
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for i in 0..100 {
        let run = unique(&format!("run{i}"));
        let (headers, body) = signed(&run);
        let outcome = receiver.receive(&headers, "/h", body).await;
        match outcome.status.as_u16() {
            200 => acked.push(run),
            503 => {
                assert!(outcome.retry_after.is_some(), "503 without Retry-After");
                refused.push(run);
            }
            other => panic!("unexpected status {other}"),
        }
        assert!(backend.backlog(&receiver).await <= capacity);
    }
    // At most the capacity (plus the one the worker took and holds) were acknowledged.
    assert!(acked.len() <= capacity + 1, "acked {}", acked.len());
    assert!(acked.len() >= capacity, "acked {}", acked.len());
    assert_eq!(acked.len() + refused.len(), 100);
    // A refused delivery's claim was released: its retry can win.
    let claim = claim_now(&backend, &refused[0]).await;
    assert!(claim.is_acquired(), "{claim:?}");
    backend
        .store()
        .release(&dedup_key(&refused[0]), &claim.token().unwrap())
        .await
        .unwrap();
    // Open the gate: every acknowledged run is processed, none lost to trimming.
    probe.open(10_000);
    eventually(
        "every acknowledged run processed",
        Duration::from_secs(20),
        async || probe.calls().len() == acked.len() && backend.backlog(&receiver).await == 0,
    )
    .await;
    // The senders retry the refused ones: each is processed once.
    for run in &refused {
        let (headers, body) = signed(run);
        let mut status = 503;
        for _ in 0..50 {
            status = receiver
                .receive(&headers, "/h", body.clone())
                .await
                .status
                .as_u16();
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status, 200, "retry of {run}");
    }
    eventually(
        "every retried run processed",
        Duration::from_secs(20),
        async || probe.calls().len() == acked.len() + refused.len(),
    )
    .await;
    let mut seen = probe.calls();
    seen.sort();
    let mut expected: Vec<String> = acked.iter().chain(&refused).cloned().collect();
    expected.sort();
    assert_eq!(seen, expected, "each run processed exactly once");
    receiver.shutdown(Duration::from_secs(5)).await;
    backend.cleanup().await;
}

/// A sink that refuses its first `failures` letters, then keeps them in memory.
struct Flaky {
    failures: AtomicU32,
    kept: MemoryDeadLetters,
}

impl DeadLetterSink for Flaky {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        let refuse = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            return Box::pin(async { Err(std::io::Error::other("disk full")) });
        }
        self.kept.put(letter)
    }
}

/// A dead-letter sink that refuses letters never costs a delivery: the run stays claimed
/// while the letter is tried again, until it is kept; then the claim is released.
pub async fn a_failing_dead_letter_sink_keeps_the_claim_and_retries_until_the_letter_is_kept<
    B: Backend,
>(
    test: &str,
) {
    let sink = Arc::new(Flaky {
        failures: AtomicU32::new(2),
        kept: MemoryDeadLetters::default(),
    });
    let probe = Probe::broken();
    let settings = Settings {
        max_attempts: 1,
        dead_letters: Some(sink.clone()),
        ..Settings::default()
    };
    let (backend, receiver) = start::<B>(test, settings, &probe).await;
    let run = unique("flaky");
    deliver_acked(&receiver, &run).await;
    eventually("no failed write", Duration::from_secs(5), async || {
        receiver.stats().dead_letter_write_failures >= 1
    })
    .await;
    // While the sink refuses, the run stays claimed: no other delivery may start it, and
    // nothing is released or dropped.
    let claim = claim_now(&backend, &run).await;
    assert!(matches!(claim, Claim::InFlight { .. }), "{claim:?}");
    assert!(sink.kept.letters().is_empty());
    eventually(
        "the letter was never kept",
        Duration::from_secs(10),
        async || receiver.stats().dead_lettered >= 1,
    )
    .await;
    let letters = sink.kept.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].body, body(&run));
    assert_eq!(letters[0].run_id.as_deref(), Some(run.as_str()));
    assert_eq!(receiver.stats().dead_letter_write_failures, 2);
    // Kept: the claim is released so that a later delivery can run it again.
    eventually(
        "the claim is released",
        Duration::from_secs(5),
        async || claim_now(&backend, &run).await.is_acquired(),
    )
    .await;
    assert!(receiver.shutdown(Duration::from_secs(5)).await.drained());
    backend.cleanup().await;
}

/// A sink that refuses every letter while shut, then keeps them in memory.
struct Gate {
    open: AtomicBool,
    kept: MemoryDeadLetters,
}

impl DeadLetterSink for Gate {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        if !self.open.load(Ordering::SeqCst) {
            return Box::pin(async { Err(std::io::Error::other("sink full")) });
        }
        self.kept.put(letter)
    }
}

/// A sink that refuses letters parks their jobs (claims held) and frees the workers: the
/// other runs keep being processed, readiness names the sink, and once the sink takes
/// letters again every parked one is written and its claim released.
pub async fn a_refusing_sink_parks_the_job_and_the_others_keep_being_processed<B: Backend>(
    test: &str,
) {
    let sink = Arc::new(Gate {
        open: AtomicBool::new(false),
        kept: MemoryDeadLetters::default(),
    });
    let probe = Probe::broken();
    let settings = Settings {
        workers: 2,
        max_attempts: 1,
        dead_letters: Some(sink.clone()),
        ..Settings::default()
    };
    let (backend, receiver) = start::<B>(test, settings, &probe).await;
    // Twice as many failing runs as workers: with the workers waiting on the sink, the
    // good runs below would never run.
    let bad: Vec<String> = (0..4).map(|i| unique(&format!("bad{i}"))).collect();
    for run in &bad {
        deliver_acked(&receiver, run).await;
    }
    eventually(
        "every bad run parked",
        Duration::from_secs(10),
        async || receiver.stats().dead_letters_parked == 4,
    )
    .await;
    let readiness = receiver.readiness().await;
    assert!(
        readiness
            .problems
            .contains(&runhook::receiver::NotReady::SinkRefusing { parked: 4 }),
        "{readiness:?}"
    );
    for run in &bad {
        let claim = claim_now(&backend, run).await;
        assert!(matches!(claim, Claim::InFlight { .. }), "{run}: {claim:?}");
    }
    probe.fix();
    let good: Vec<String> = (0..6).map(|i| unique(&format!("good{i}"))).collect();
    for run in &good {
        deliver_acked(&receiver, run).await;
    }
    eventually(
        "every good run processed",
        Duration::from_secs(10),
        async || probe.succeeded().len() == good.len(),
    )
    .await;
    assert_eq!(receiver.stats().dead_letters_parked, 4);
    sink.open.store(true, Ordering::SeqCst);
    eventually(
        "every parked letter written",
        Duration::from_secs(10),
        async || receiver.stats().dead_letters_parked == 0,
    )
    .await;
    let mut kept: Vec<String> = sink
        .kept
        .letters()
        .into_iter()
        .filter_map(|l| l.run_id)
        .collect();
    kept.sort();
    let mut expected = bad.clone();
    expected.sort();
    assert_eq!(kept, expected);
    eventually("ready again", Duration::from_secs(5), async || {
        receiver.readiness().await.is_ready()
    })
    .await;
    for run in &bad {
        let released = claim_now(&backend, run).await;
        assert!(released.is_acquired(), "{run}: {released:?}");
    }
    eventually(
        "the hand-off is settled",
        Duration::from_secs(10),
        async || backend.settled(&receiver).await,
    )
    .await;
    assert!(receiver.shutdown(Duration::from_secs(5)).await.drained());
    backend.cleanup().await;
}

/// Every case of the contract, as tests on the backend `$backend`.
macro_rules! handoff_contract_tests {
    ($backend:ty) => {
        handoff_contract_tests!(@each $backend,
            duplicates_reach_the_handler_once,
            a_lost_claim_stops_the_attempt_and_is_never_counted_as_processed,
            a_failing_run_is_dead_lettered_after_its_attempts,
            a_redriven_dead_letter_is_processed_once,
            a_shutdown_past_its_deadline_reports_the_rest_and_loses_nothing,
            a_shutdown_cut_short_reports_the_rest_and_loses_nothing,
            a_full_backlog_answers_503_and_never_drops_an_acknowledged_run,
            a_failing_dead_letter_sink_keeps_the_claim_and_retries_until_the_letter_is_kept,
            a_refusing_sink_parks_the_job_and_the_others_keep_being_processed,
        );
    };
    (@each $backend:ty, $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                crate::suite::$case::<$backend>(stringify!($case)).await;
            }
        )*
    };
}
