//! The background side: a bounded in-process queue and a pool of tokio workers that run the
//! handler with retries, complete the claim on success, and dead-letter (releasing the claim)
//! after the last failed attempt.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::RngExt as _;
use runhook_core::payload::{Provider, RunEvent};
use runhook_store::{IdempotencyStore, Token};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dead_letter::{DeadLetter, DeadLetterReason, DeadLetterSink};
use crate::handler::{BoxFuture, Handler};

/// How failed handler attempts are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, including the first (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub initial_backoff: Duration,
    /// The longest delay between attempts.
    pub max_backoff: Duration,
    /// How long one attempt may run before it counts as failed.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 1 s doubling to at most 60 s, with 5 minutes per attempt.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt number `attempt` (1-based): exponential, capped, with
    /// jitter (a random point in the upper half) so that retries of many runs spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let half = full / 2;
        half + full
            .saturating_sub(half)
            .mul_f64(rand::rng().random::<f64>())
    }
}

/// Called in the same tick that renews a running job's lease, by the hand-off that needs to
/// hear that the job is still alive (the Redis stream resets its entry's idle time, so that
/// the entry is not taken over while its handler runs or backs off).
pub(crate) type Touch = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// One acknowledged delivery waiting for a worker.
pub(crate) struct Job {
    pub provider: Provider,
    pub key: String,
    pub token: Token,
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
    /// The canonical bytes that were signed, when the body matched only in canonical form
    /// (boxed: rare, and it keeps a refused hand-off's `Err` small).
    pub signed_body: Option<Box<Bytes>>,
}

/// Counters of what the receiver did, for metrics and tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Deliveries received.
    pub received: AtomicU64,
    /// Deliveries acknowledged and handed off.
    pub accepted: AtomicU64,
    /// Deliveries rejected (401, 413, 503, ...).
    pub rejected: AtomicU64,
    /// Rejected as not genuine (401).
    pub rejected_unauthorized: AtomicU64,
    /// Rejected for a body over the limit (413).
    pub rejected_too_large: AtomicU64,
    /// Genuine but not the provider's payload: dead-lettered and answered 202.
    pub rejected_unparseable: AtomicU64,
    /// Refused for now (503): store, resolver or queue unavailable, or shutting down.
    pub rejected_unavailable: AtomicU64,
    /// Genuine duplicates answered without a second handler call.
    pub duplicates: AtomicU64,
    /// Duplicates whose body differs from the first delivery's.
    pub duplicates_with_other_body: AtomicU64,
    /// Handler runs that succeeded.
    pub processed: AtomicU64,
    /// Handler attempts that failed.
    pub failed_attempts: AtomicU64,
    /// Deliveries sent to the dead-letter sink.
    pub dead_lettered: AtomicU64,
    /// Deliveries whose signature matched only the body's canonical form.
    pub canonical_fallback_matches: AtomicU64,
}

/// A counters snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Deliveries received.
    pub received: u64,
    /// Deliveries acknowledged and handed off.
    pub accepted: u64,
    /// Deliveries rejected, for any reason (the sum of the `rejected_*` counts and
    /// misconfiguration).
    pub rejected: u64,
    /// Rejected as not genuine (401).
    pub rejected_unauthorized: u64,
    /// Rejected for a body over the limit (413).
    pub rejected_too_large: u64,
    /// Genuine but not the provider's payload: dead-lettered and answered 202.
    pub rejected_unparseable: u64,
    /// Refused for now (503): store, resolver or queue unavailable, or shutting down.
    pub rejected_unavailable: u64,
    /// Genuine duplicates.
    pub duplicates: u64,
    /// Duplicates whose body differs from the first.
    pub duplicates_with_other_body: u64,
    /// Handler runs that succeeded.
    pub processed: u64,
    /// Handler attempts that failed.
    pub failed_attempts: u64,
    /// Deliveries dead-lettered.
    pub dead_lettered: u64,
    /// Deliveries whose signature matched only the body's canonical form (a proxy or framework
    /// re-serialized them; see `SkyvernSignature::with_canonical_fallback`).
    pub canonical_fallback_matches: u64,
    /// Deliveries waiting in the queue now. For a Redis stream: the consumer group's backlog
    /// (entries not yet read plus those read and not acknowledged, by every instance), read
    /// every 2 s, best effort.
    pub queue_depth: u64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the workers share.
pub(crate) struct WorkerContext {
    pub store: Arc<dyn IdempotencyStore>,
    pub handler: Arc<dyn Handler>,
    pub dead_letters: Arc<dyn DeadLetterSink>,
    pub retry: RetryPolicy,
    pub lease: Duration,
    pub keep_for: Duration,
    pub counters: Arc<Counters>,
    /// The jobs workers are processing now, with their claim tokens and the running handler
    /// attempt, so that a shutdown past its deadline can stop them and release their claims.
    pub busy: Mutex<HashMap<String, Busy>>,
}

/// A job a worker is processing.
pub(crate) struct Busy {
    token: Token,
    attempt: Option<tokio::task::AbortHandle>,
}

/// The queue and its workers.
pub(crate) struct Dispatcher {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    pub context: Arc<WorkerContext>,
    capacity: usize,
}

/// Why a job could not be queued.
pub(crate) enum Refused {
    Full,
    Closed,
    /// The hand-off's backend (Redis) failed or timed out; the reason is logged where it
    /// happened.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Unavailable,
}

impl Dispatcher {
    pub fn start(context: WorkerContext, capacity: usize, workers: usize) -> Self {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let queue = Arc::new(tokio::sync::Mutex::new(receiver));
        let context = Arc::new(context);
        let handles = (0..workers.max(1))
            .map(|_| tokio::spawn(work(queue.clone(), context.clone())))
            .collect();
        Self {
            sender: Mutex::new(Some(sender)),
            queue,
            workers: Mutex::new(handles),
            context,
            capacity: capacity.max(1),
        }
    }

    /// Queues `job` without waiting; a full or closed queue gives the job back.
    pub fn try_send(&self, job: Job) -> Result<(), (Refused, Job)> {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(sender) = sender else {
            return Err((Refused::Closed, job));
        };
        sender.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(job) => (Refused::Full, job),
            mpsc::error::TrySendError::Closed(job) => (Refused::Closed, job),
        })
    }

    pub fn depth(&self) -> usize {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        sender.as_ref().map_or(0, |s| self.capacity - s.capacity())
    }

    /// Stops taking jobs, lets the workers drain the queue until `deadline`, then stops them.
    /// Returns the keys of the jobs that were not processed: those still queued and those
    /// whose handler was still running (stopped now). Their claims are released so that the
    /// sender's retry, or a manual replay, can win.
    pub async fn shutdown(&self, deadline: Duration) -> Vec<String> {
        drop(self.sender.lock().unwrap_or_else(|p| p.into_inner()).take());
        let mut handles: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        let drained = tokio::time::timeout(deadline, async {
            for handle in handles.iter_mut() {
                let _ = handle.await;
            }
        })
        .await
        .is_ok();
        if drained {
            return Vec::new();
        }
        for handle in &handles {
            handle.abort();
        }
        for handle in handles {
            let _ = handle.await;
        }
        // The workers are stopped: nothing changes `busy` or the queue any more.
        let mut left = abandon_busy(&self.context).await;
        let mut queue = self.queue.lock().await;
        while let Ok(job) = queue.try_recv() {
            release_undrained(&self.context, &job.key, &job.token).await;
            left.push(job.key);
        }
        left
    }
}

/// After the workers were stopped past a shutdown deadline: stops the handler attempts still
/// running and releases their claims, so that a retry, a replay or (for a stream) another
/// instance's takeover can win. Returns their keys.
pub(crate) async fn abandon_busy(ctx: &WorkerContext) -> Vec<String> {
    let busy: Vec<(String, Busy)> = ctx
        .busy
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    let mut left = Vec::with_capacity(busy.len());
    for (key, job) in busy {
        if let Some(attempt) = job.attempt {
            attempt.abort();
        }
        release_undrained(ctx, &key, &job.token).await;
        left.push(key);
    }
    left
}

async fn release_undrained(ctx: &WorkerContext, key: &str, token: &Token) {
    if let Err(err) = ctx.store.release(key, token).await {
        tracing::warn!(%key, error = %err, "could not release the claim of an undrained delivery");
    }
}

async fn work(queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>, ctx: Arc<WorkerContext>) {
    loop {
        let job = { queue.lock().await.recv().await };
        let Some(job) = job else { return };
        run_job(&ctx, job, None).await;
    }
}

/// Processes one claimed job, whichever hand-off it came from: handler attempts with retries
/// and backoff (the lease renewed, and `touch` called, all along), then
/// `complete`, or after the last failed attempt a dead letter and `release`. The job is listed
/// in `busy` meanwhile, for a shutdown past its deadline.
pub(crate) async fn run_job(ctx: &WorkerContext, job: Job, touch: Option<Touch>) {
    ctx.busy.lock().unwrap_or_else(|p| p.into_inner()).insert(
        job.key.clone(),
        Busy {
            token: job.token,
            attempt: None,
        },
    );
    let key = job.key.clone();
    process(ctx, &job, touch.as_ref()).await;
    ctx.busy
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key);
}

async fn process(ctx: &WorkerContext, job: &Job, touch: Option<&Touch>) {
    // Only the summary now: the typed payload is read if and when the handler asks for it.
    let event = match RunEvent::parse_summary(job.provider, job.body.clone()) {
        Ok(mut event) => {
            event.signed_body = job.signed_body.as_deref().cloned();
            Arc::new(event)
        }
        Err(err) => {
            tracing::warn!(key = %job.key, error = %err, "genuine delivery is not the provider's payload; dead-lettering it");
            let reason = DeadLetterReason::Unparseable(err.to_string());
            dead_letter(ctx, job, reason).await;
            return;
        }
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match run_attempt(ctx, job, touch, event.clone()).await {
            Ok(()) => {
                if let Err(err) = ctx.store.complete(&job.key, &job.token, ctx.keep_for).await {
                    tracing::warn!(key = %job.key, error = %err, "processed, but the claim could not be completed");
                }
                Counters::bump(&ctx.counters.processed);
                return;
            }
            Err(error) => error,
        };
        Counters::bump(&ctx.counters.failed_attempts);
        tracing::warn!(key = %job.key, attempt, error = %error, "handler attempt failed");
        if attempt >= ctx.retry.max_attempts.max(1) {
            let reason = DeadLetterReason::HandlerFailed {
                attempts: attempt,
                last_error: error,
            };
            dead_letter(ctx, job, reason).await;
            return;
        }
        // Keep the claim (and the stream entry) while backing off: a backoff longer than the
        // lease must not let another worker start the run meanwhile.
        keep_held(
            ctx,
            job,
            touch,
            tokio::time::sleep(ctx.retry.backoff(attempt)),
        )
        .await;
    }
}

/// Runs `work` while renewing the job's lease every third of it (and calling the job's
/// `touch` in the same tick), so that a long handler or a long backoff keeps its claim.
async fn keep_held<T>(
    ctx: &WorkerContext,
    job: &Job,
    touch: Option<&Touch>,
    work: impl Future<Output = T>,
) -> T {
    let renew_every = ctx.lease / 3;
    let mut renew =
        tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = renew.tick() => {
                if let Err(err) = ctx.store.renew(&job.key, &job.token, ctx.lease).await {
                    tracing::warn!(key = %job.key, error = %err, "could not renew the lease of a running job");
                }
                if let Some(touch) = touch {
                    touch().await;
                }
            }
        }
    }
}

/// One handler attempt, bounded by the attempt timeout, with a panic counted as a failure, and
/// the lease renewed while it runs so that a long handler keeps its claim.
async fn run_attempt(
    ctx: &WorkerContext,
    job: &Job,
    touch: Option<&Touch>,
    event: Arc<RunEvent>,
) -> Result<(), String> {
    let handler = ctx.handler.clone();
    let attempt = tokio::spawn(async move { handler.handle(event).await });
    if let Some(busy) = ctx
        .busy
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(&job.key)
    {
        busy.attempt = Some(attempt.abort_handle());
    }
    let abort = attempt.abort_handle();
    let bounded = tokio::time::timeout(ctx.retry.attempt_timeout, attempt);
    match keep_held(ctx, job, touch, bounded).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(error))) => Err(error.to_string()),
        Ok(Err(join)) if join.is_panic() => Err("the handler panicked".into()),
        Ok(Err(join)) => Err(join.to_string()),
        Err(_elapsed) => {
            abort.abort();
            Err(format!(
                "the handler did not finish within {:?}",
                ctx.retry.attempt_timeout
            ))
        }
    }
}

async fn dead_letter(ctx: &WorkerContext, job: &Job, reason: DeadLetterReason) {
    Counters::bump(&ctx.counters.dead_lettered);
    let letter = DeadLetter {
        provider: job.provider.as_str(),
        dedup_key: Some(job.key.clone()),
        reason,
        headers: job.headers.clone(),
        body: job.body.clone(),
    };
    if let Err(err) = ctx.dead_letters.put(letter).await {
        tracing::error!(key = %job.key, error = %err, "could not write a dead letter");
    }
    // Release the claim so that a later delivery of the same run can succeed.
    if let Err(err) = ctx.store.release(&job.key, &job.token).await {
        tracing::warn!(key = %job.key, error = %err, "could not release the claim of a dead-lettered delivery");
    }
}
