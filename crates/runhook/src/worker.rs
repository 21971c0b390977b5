//! The worker core that both hand-offs share: one claimed job at a time, handler attempts with
//! retries and backoff while the claim is held, then `complete`, or a dead letter and
//! `release`. A lost claim stops the attempt; a dead-letter sink that refuses the letter keeps
//! the job, parked ([`crate::parked`]) so that the worker goes on with the next one.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt as _;
use runhook_core::payload::RunEvent;
use runhook_store::{Claim, Fingerprint, IdempotencyStore, StoreError, Token};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::dead_letter::{DeadLetter, DeadLetterReason, DeadLetters};
use crate::handler::{BoxFuture, Handler};
use crate::handoff::Job;
use crate::parked::{ParkTicket, Parked};
use crate::retry::{RetryAfter, RetryPolicy};
use crate::runs::{FetchError, Fetched, RunSource};
use crate::stats::Counters;
use crate::unrecorded::Unrecorded;

/// Called in the same tick that renews a running job's lease, by the hand-off that needs to
/// hear that the job is still alive (the Redis stream resets its entry's idle time, so that
/// the entry is not taken over while its handler runs or backs off).
pub(crate) type Touch = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Writes a processed run's done mark (key, token, how long to keep it) in place of the
/// store's `complete`, for a hand-off that settles its entry in the same write (the Postgres
/// queue deletes its job with the mark).
pub(crate) type RecordDone = Arc<
    dyn Fn(String, Token, Duration) -> BoxFuture<'static, Result<(), StoreError>> + Send + Sync,
>;

/// What a durable hand-off gives the worker of one of its entries.
pub(crate) struct Durable {
    /// Keeps the entry from being taken over while its run is processed.
    pub touch: Touch,
    /// The worker slot, held until the entry is settled.
    pub slot: OwnedSemaphorePermit,
    /// How the done mark is written, when not by the store's `complete`.
    pub record: Option<RecordDone>,
}

/// How a worker let go of a job.
pub(crate) enum Settled {
    /// The handler succeeded and the run is recorded as done (or, when the completion could
    /// not be recorded, the handler at least succeeded).
    Processed,
    /// The handler succeeded and the hand-off's [`RecordDone`] recorded the run done, which
    /// removed its entry in the same write.
    ProcessedAndRemoved,
    /// The job is in the dead letters and its claim released.
    DeadLettered,
    /// The sink refused the job's letter: it is parked with its claim, and written (then the
    /// claim released) in the background; the ticket says when.
    Parked(#[cfg_attr(not(feature = "redis"), allow(dead_code))] ParkTicket),
    /// Someone else holds the run now (its claim lapsed or was taken): the job was stopped
    /// and nothing was recorded. The hand-off keeps the job for whoever holds the run.
    LostLease,
    /// The run was already done, or is held by another delivery of it: nothing to do.
    NotOurs,
}

/// The first pause before recording a processed run again, doubling up to
/// [`COMPLETE_RETRY_MAX`].
const COMPLETE_RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest pause between attempts to record a processed run.
const COMPLETE_RETRY_MAX: Duration = Duration::from_secs(1);

/// The claim was lost while the job waited or ran.
#[derive(Debug)]
pub(crate) struct LeaseLost;

/// What the workers share.
pub(crate) struct WorkerContext {
    pub store: Arc<dyn IdempotencyStore>,
    pub handler: Arc<dyn Handler>,
    pub dead_letters: DeadLetters,
    pub retry: RetryPolicy,
    pub lease: Duration,
    pub keep_for: Duration,
    pub counters: Arc<Counters>,
    /// With confirmation on: where each run is fetched before its handler runs.
    pub confirm: Option<Arc<dyn RunSource>>,
    /// The jobs workers are processing now, so that a shutdown past its deadline can
    /// dead-letter or release them.
    pub busy: Mutex<HashMap<String, Busy>>,
    /// Runs processed here whose completion the store has not recorded yet.
    pub unrecorded: Unrecorded,
    /// How many workers there are.
    pub workers: usize,
    /// Jobs whose dead letter the sink refused, tried again in the background.
    pub parked: Parked,
}

/// A job a worker is processing.
pub(crate) struct Busy {
    pub job: Job,
    /// When the worker took it.
    pub since: Instant,
}

/// Workers that look stuck: every one of them busy, each on the same job for longer than
/// the attempt timeout, while deliveries wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stuck {
    /// Busy workers.
    pub workers: usize,
    /// How long the most recent of them has held its job.
    pub for_at_least: Duration,
}

impl WorkerContext {
    fn busy(&self) -> std::sync::MutexGuard<'_, HashMap<String, Busy>> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The jobs that were running when the workers were stopped (their handler attempts ran
    /// on the workers' tasks, so they stopped with them), with their current tokens.
    pub fn stop_busy(&self) -> Vec<Job> {
        self.busy().drain().map(|(_, busy)| busy.job).collect()
    }

    /// Whether the workers look stuck while `waiting` deliveries wait (see [`Stuck`]).
    pub fn stuck(&self, waiting: u64) -> Option<Stuck> {
        if waiting == 0 {
            return None;
        }
        let busy = self.busy();
        if busy.len() < self.workers.max(1) {
            return None;
        }
        let shortest = busy.values().map(|b| b.since.elapsed()).min()?;
        (shortest > self.retry.attempt_timeout).then_some(Stuck {
            workers: busy.len(),
            for_at_least: shortest,
        })
    }

    /// Releases `job`'s claim (best effort), so that a retry, a replay or a takeover wins at
    /// once.
    pub async fn release(&self, job: &Job) {
        if let Err(err) = self.store.release(job.key(), &job.token).await {
            tracing::warn!(key = %job.key(), error = %err, "could not release a claim");
        }
    }

    /// Makes sure `job` still holds its run before a worker starts it: a job that waited
    /// longer than a third of the lease renews its claim, and one whose claim lapsed claims
    /// the run anew.
    pub async fn hold(&self, job: &mut Job) -> Result<(), Settled> {
        if job.held_since.elapsed() < self.lease / 3 {
            return Ok(());
        }
        match self.store.renew(job.key(), &job.token, self.lease).await {
            Ok(()) => {
                job.held_since = Instant::now();
                Ok(())
            }
            Err(StoreError::NotHolder) => self.reclaim(job).await,
            Err(err) => {
                tracing::warn!(key = %job.key(), error = %err, "could not renew the claim of a waiting job; processing it on the claim it has");
                Ok(())
            }
        }
    }

    /// Claims `job`'s run again after its claim was lost.
    pub async fn reclaim(&self, job: &mut Job) -> Result<(), Settled> {
        match self
            .store
            .claim(job.key(), self.lease, Fingerprint::of(&job.event.raw_body))
            .await
        {
            Ok(Claim::Acquired(token)) => {
                job.token = token;
                job.held_since = Instant::now();
                Ok(())
            }
            Ok(Claim::Done { .. }) | Ok(Claim::InFlight { .. }) => Err(Settled::NotOurs),
            Err(err) => {
                tracing::warn!(key = %job.key(), error = %err, "could not claim the run again");
                Err(Settled::LostLease)
            }
        }
    }
}

/// Processes one claimed job, whichever hand-off it came from (see the module docs). The job
/// is listed in `busy` meanwhile, for a shutdown past its deadline.
pub(crate) async fn run_job(ctx: &WorkerContext, job: Job, durable: Option<Durable>) -> Settled {
    let (touch, slot, record) = match durable {
        Some(Durable {
            touch,
            slot,
            record,
        }) => (Some(touch), Some(slot), record),
        None => (None, None, None),
    };
    let key = job.key().to_string();
    ctx.busy().insert(
        key.clone(),
        Busy {
            job: job.clone(),
            since: Instant::now(),
        },
    );
    let mut worker = Worker {
        ctx,
        job,
        touch: touch.as_ref(),
        slot,
        record,
    };
    let outcome = if ctx.unrecorded.contains(&key) {
        // Processed here already; only its completion is missing (see `Worker::complete`).
        tracing::info!(%key, "the run was processed here and its completion not yet recorded: recording it instead of running it again");
        Ok(worker.record_done().await)
    } else {
        worker.process().await
    };
    let settled = match outcome {
        Ok(settled) => settled,
        Err(LeaseLost) => {
            Counters::bump(&ctx.counters.lost_leases);
            tracing::warn!(%key, "the claim was lost while the job ran: stopped it, nothing recorded");
            Settled::LostLease
        }
    };
    ctx.busy().remove(&key);
    settled
}

/// Dead-letters a claimed job without running its handler (a poison stream entry, a job whose
/// claim kept being lost), with the same retries as any dead letter.
pub(crate) async fn dead_letter_job(
    ctx: &WorkerContext,
    job: Job,
    reason: DeadLetterReason,
    touch: Option<Touch>,
) -> Settled {
    let mut worker = Worker {
        ctx,
        job,
        touch: touch.as_ref(),
        slot: None,
        record: None,
    };
    match worker.dead_letter(reason, 0).await {
        Ok(settled) => settled,
        Err(LeaseLost) => {
            Counters::bump(&ctx.counters.lost_leases);
            Settled::LostLease
        }
    }
}

/// What confirmation made of a job's run.
enum Confirm {
    /// The run to hand the handler: confirmed, or as received when confirmation is off.
    Ready(Arc<RunEvent>),
    /// The run API does not know the run: never processed.
    Unknown,
    /// Not confirmed this time (not finished, the API failed): a failed attempt.
    NotYet(Failure),
}

/// Where an attempt failed.
enum Stage {
    /// Confirming the run with its run API.
    Confirm,
    /// In the handler.
    Handler,
}

/// Why an attempt failed, and how long the handler asked the next one to wait at least
/// ([`RetryAfter`]).
struct Failure {
    message: String,
    retry_after: Option<Duration>,
}

impl Failure {
    fn plain(message: String) -> Self {
        Self {
            message,
            retry_after: None,
        }
    }
}

/// How long from now until `at` (`None` when it is unknown or past).
fn until(at: Option<std::time::SystemTime>) -> Option<Duration> {
    at?.duration_since(std::time::SystemTime::now()).ok()
}

/// A finished attempt's result, a panic counted as a failure.
fn attempt_result(
    out: Result<Result<(), crate::HandlerError>, Box<dyn std::any::Any + Send>>,
) -> Result<(), Failure> {
    match out {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(Failure {
            message: error.to_string(),
            retry_after: RetryAfter::hint_of(&error),
        }),
        Err(_panic) => Err(Failure::plain("the handler panicked".into())),
    }
}

struct Worker<'a> {
    ctx: &'a WorkerContext,
    job: Job,
    touch: Option<&'a Touch>,
    /// The durable hand-offs' worker slot, held until the job is settled.
    #[allow(dead_code)] // held for its drop
    slot: Option<OwnedSemaphorePermit>,
    /// Writes the done mark in place of the store's `complete`.
    record: Option<RecordDone>,
}

impl Worker<'_> {
    async fn process(&mut self) -> Result<Settled, LeaseLost> {
        let ctx = self.ctx;
        let mut event = self.job.event.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (ran, stage) = match self.confirmed(&event).await? {
                Confirm::Ready(ready) => {
                    event = ready;
                    (self.attempt(event.clone()).await?, Stage::Handler)
                }
                Confirm::Unknown => {
                    let reason = DeadLetterReason::NotConfirmed {
                        reason: "the run API does not know the run (404)".into(),
                    };
                    // The platform does not know it: nobody vouches for the body, so only
                    // its prefix and digest are kept.
                    let letter = self.job.dead_letter(reason, attempt - 1).unauthenticated();
                    return self.write_letter(letter).await;
                }
                Confirm::NotYet(failure) => (Err(failure), Stage::Confirm),
            };
            let failure = match ran {
                Ok(()) => return self.complete().await,
                Err(failure) => failure,
            };
            Counters::bump(&ctx.counters.failed_attempts);
            let retry_after_ms = failure.retry_after.map(|d| d.as_millis() as u64);
            tracing::warn!(key = %self.job.key(), attempt, error = %failure.message, retry_after_ms, "handler attempt failed");
            if attempt >= ctx.retry.max_attempts.max(1) {
                let reason = match stage {
                    // The run API never confirmed the run: the handler never saw it.
                    Stage::Confirm => DeadLetterReason::NotConfirmed {
                        reason: failure.message,
                    },
                    Stage::Handler => DeadLetterReason::HandlerFailed {
                        attempts: attempt,
                        last_error: failure.message,
                    },
                };
                return self.dead_letter(reason, attempt).await;
            }
            // The handler's hint (its upstream's Retry-After) lengthens the pause, never
            // shortens it.
            let pause = ctx
                .retry
                .backoff(attempt)
                .max(failure.retry_after.unwrap_or_default());
            // Keep the claim (and the stream entry) while backing off: a backoff longer than
            // the lease must not let another worker start the run meanwhile.
            self.keep_held(tokio::time::sleep(pause)).await?;
        }
    }

    /// With confirmation on, the run as its platform's run API has it (fetched with the claim
    /// held); an event already confirmed (a reconciled run) is not fetched again.
    async fn confirmed(&mut self, event: &Arc<RunEvent>) -> Result<Confirm, LeaseLost> {
        let ctx = self.ctx;
        let Some(source) = ctx.confirm.clone() else {
            return Ok(Confirm::Ready(event.clone()));
        };
        if event.confirmation.is_confirmed() {
            return Ok(Confirm::Ready(event.clone()));
        }
        // Only platforms with a run API confirm, and each of them names its runs.
        let Some(run_id) = event.run_id.clone() else {
            return Ok(Confirm::Unknown);
        };
        let fetched = self.keep_held(source.fetch(&run_id)).await?;
        let not_yet = |message: String, retry_after| {
            Counters::bump(&ctx.counters.confirm_failures);
            Ok(Confirm::NotYet(Failure {
                message,
                retry_after,
            }))
        };
        if !event.phase.is_final() {
            return Ok(self.confirmed_interim(event, fetched));
        }
        match fetched {
            Ok(Fetched::Terminal(fetched)) => {
                Counters::bump(&ctx.counters.confirmed);
                let mut fetched = *fetched;
                fetched.source = event.source;
                Ok(Confirm::Ready(Arc::new(fetched)))
            }
            Ok(Fetched::Unknown) => {
                Counters::bump(&ctx.counters.confirm_failures);
                tracing::warn!(key = %self.job.key(), "the run API does not know this run: not processed");
                Ok(Confirm::Unknown)
            }
            Ok(Fetched::Pending { status }) => not_yet(
                format!("not confirmed yet: the run API says it is still {status}"),
                None,
            ),
            Ok(Fetched::RetryPending(interim)) => not_yet(
                format!(
                    "not confirmed yet: the run API says attempt {} ended and a retry is pending",
                    interim.attempt.map_or("?".into(), |n| n.to_string())
                ),
                until(interim.phase.retry_not_before()),
            ),
            Err(FetchError::Status {
                status,
                retry_after,
            }) => not_yet(
                format!("could not confirm: the run API answered HTTP {status}"),
                retry_after,
            ),
            Err(err) => not_yet(format!("could not confirm: {err}"), None),
        }
    }

    /// Confirms an interim event (an attempt the platform retries): the API's answer for that
    /// same attempt is handed on; once the run has moved past it (a later attempt, or over),
    /// the API no longer shows the attempt and the delivered event is handed on as it came.
    fn confirmed_interim(
        &self,
        event: &Arc<RunEvent>,
        fetched: Result<Fetched, FetchError>,
    ) -> Confirm {
        let counters = &self.ctx.counters;
        match fetched {
            Ok(Fetched::RetryPending(fetched)) if fetched.attempt == event.attempt => {
                Counters::bump(&counters.confirmed);
                let mut fetched = *fetched;
                fetched.source = event.source;
                Confirm::Ready(Arc::new(fetched))
            }
            Ok(Fetched::Unknown) => {
                Counters::bump(&counters.confirm_failures);
                tracing::warn!(key = %self.job.key(), "the run API does not know this run: not processed");
                Confirm::Unknown
            }
            Ok(Fetched::RetryPending(_) | Fetched::Terminal(_)) => {
                tracing::debug!(key = %self.job.key(), "the run has moved past this attempt: its interim event is handed on unconfirmed");
                Confirm::Ready(event.clone())
            }
            Ok(Fetched::Pending { status }) => {
                Counters::bump(&counters.confirm_failures);
                Confirm::NotYet(Failure::plain(format!(
                    "not confirmed yet: the run API says it is still {status}"
                )))
            }
            Err(err) => {
                Counters::bump(&counters.confirm_failures);
                let retry_after = match &err {
                    FetchError::Status { retry_after, .. } => *retry_after,
                    _ => None,
                };
                Confirm::NotYet(Failure {
                    message: format!("could not confirm: {err}"),
                    retry_after,
                })
            }
        }
    }

    /// Records the run as done after its handler succeeded (see [`Worker::record_done`]).
    /// The worker slot is held until then: a suspect that runs alone (all slots) must never
    /// start while another run's completion is unrecorded, or its crash would run that one
    /// again.
    async fn complete(&mut self) -> Result<Settled, LeaseLost> {
        Ok(self.record_done().await)
    }

    /// Records the processed run as done, for as long as the worker lives: a store that does
    /// not answer (Redis paused longer than the lease, a partition) must not make the run look
    /// unprocessed, or its takeover would run it again. Meanwhile the run is listed in
    /// [`Unrecorded`], so that a worker of this process that gets it again records it instead
    /// of running it. A claim that lapsed meanwhile is taken again and completed; one that
    /// another holder has now is left to it (a holder in this process records it; one in
    /// another process may run it again: the window "What a 200 means" states).
    async fn record_done(&mut self) -> Settled {
        let ctx = self.ctx;
        let key = self.job.key().to_string();
        let mut pause = COMPLETE_RETRY_FIRST;
        let mut unrecorded = false;
        let settled = loop {
            let recorded = match &self.record {
                Some(record) => record(key.clone(), self.job.token, ctx.keep_for).await,
                None => {
                    (ctx.store)
                        .complete(&key, &self.job.token, ctx.keep_for)
                        .await
                }
            };
            let err = match recorded {
                Ok(()) if self.record.is_some() => break Settled::ProcessedAndRemoved,
                Ok(()) => break Settled::Processed,
                Err(StoreError::NotHolder) => match self.claim_again_to_complete().await {
                    Ok(Some(())) => continue,
                    Ok(None) => break Settled::Processed,
                    Err(err) => err,
                },
                Err(err) => err,
            };
            if !err.is_transient() {
                tracing::error!(%key, error = %err, "processed, but the store refuses to record the run as done: a later delivery of it may run again");
                break Settled::Processed;
            }
            if !unrecorded {
                unrecorded = true;
                ctx.unrecorded.insert(&key);
                tracing::warn!(%key, error = %err, "processed, but the run could not be recorded as done yet; trying until the store answers");
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(COMPLETE_RETRY_MAX);
        };
        if unrecorded {
            ctx.unrecorded.remove(&key);
            tracing::info!(%key, "the processed run is recorded as done now");
        }
        Counters::bump(&ctx.counters.processed);
        settled
    }

    /// After a completion found the claim gone: claims the run again to record it.
    /// `Some(())`: claimed, complete with the new token; `None`: nothing left to record (it is
    /// done, or someone else holds it now).
    async fn claim_again_to_complete(&mut self) -> Result<Option<()>, StoreError> {
        let ctx = self.ctx;
        let fingerprint = Fingerprint::of(&self.job.event.raw_body);
        match ctx
            .store
            .claim(self.job.key(), ctx.lease, fingerprint)
            .await?
        {
            Claim::Acquired(token) => {
                self.job.token = token;
                self.job.held_since = Instant::now();
                Ok(Some(()))
            }
            Claim::Done { .. } => Ok(None),
            Claim::InFlight { .. } => {
                tracing::warn!(key = %self.job.key(), "processed, and while its completion was not recorded another holder claimed the run: it may run again");
                Ok(None)
            }
        }
    }

    /// Writes the job's dead letter, then releases the claim so that a later delivery of
    /// the run can succeed. A sink that refuses it (full, at its budget, failing) parks the
    /// job with its claim, for the background task to write; when the parked set is full
    /// too, the worker keeps the job and tries again (with the claim held) until either
    /// takes it.
    async fn dead_letter(
        &mut self,
        reason: DeadLetterReason,
        attempts: u32,
    ) -> Result<Settled, LeaseLost> {
        let letter = self.job.dead_letter(reason, attempts);
        self.write_letter(letter).await
    }

    /// Writes `letter` (see [`Worker::dead_letter`]).
    async fn write_letter(&mut self, letter: DeadLetter) -> Result<Settled, LeaseLost> {
        let ctx = self.ctx;
        let mut pause = Duration::from_millis(500);
        loop {
            if ctx.dead_letters.put(letter.clone()).await.is_ok() {
                ctx.release(&self.job).await;
                return Ok(Settled::DeadLettered);
            }
            let touch = self.touch.cloned();
            match ctx.parked.park(letter.clone(), self.job.clone(), touch) {
                Ok(ticket) => return Ok(Settled::Parked(ticket)),
                Err(_full) => {
                    tracing::debug!(key = %self.job.key(), retry_in_ms = pause.as_millis() as u64, "the parked dead letters are at their bound; keeping the delivery and trying again");
                    self.keep_held(tokio::time::sleep(pause)).await?;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// One handler attempt, bounded by the attempt timeout, with a panic counted as a failure,
    /// and the claim held while it runs. A lost claim stops the attempt (the handler's future
    /// is dropped). The attempt runs on the worker's own task: a handler that finishes at its
    /// first poll (most fast handlers) costs no timer, no spawn and no extra task hop.
    async fn attempt(&mut self, event: Arc<RunEvent>) -> Result<Result<(), Failure>, LeaseLost> {
        let ctx = self.ctx;
        let handler = AssertUnwindSafe(ctx.handler.handle(event)).catch_unwind();
        tokio::pin!(handler);
        let at_once = std::future::poll_fn(|cx| match handler.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending => Poll::Ready(None),
        })
        .await;
        if let Some(out) = at_once {
            return Ok(attempt_result(out));
        }
        let bounded = tokio::time::timeout(ctx.retry.attempt_timeout, handler);
        Ok(match self.keep_held(bounded).await? {
            Ok(out) => attempt_result(out),
            Err(_elapsed) => Err(Failure::plain(format!(
                "the handler did not finish within {:?}",
                ctx.retry.attempt_timeout
            ))),
        })
    }

    /// Runs `work` while renewing the job's claim every third of the lease (and calling the
    /// job's `touch` in the same tick). Gives up with [`LeaseLost`] when a renewal finds
    /// another holder, or when renewals have failed for a whole lease. A renewal that hangs
    /// (the store paused) never hides the end of `work`: both are polled together.
    async fn keep_held<T>(&mut self, work: impl Future<Output = T>) -> Result<T, LeaseLost> {
        let ctx = self.ctx;
        let renew_every = ctx.lease / 3;
        tokio::pin!(work);
        let mut next = self.job.held_since + renew_every;
        loop {
            let (key, token, touch) = (self.job.key(), &self.job.token, self.touch);
            let renewal = async move {
                tokio::time::sleep_until(next).await;
                // The lease counts from when the renewal is sent, not from its reply.
                let sent = Instant::now();
                let renewed = ctx.store.renew(key, token, ctx.lease).await;
                if let Some(touch) = touch {
                    touch().await;
                }
                (sent, renewed)
            };
            let (sent, renewed) = tokio::select! {
                biased;
                out = &mut work => return Ok(out),
                renewed = renewal => renewed,
            };
            let now = Instant::now();
            match renewed {
                Ok(()) => {
                    self.job.held_since = sent;
                    next = sent + renew_every;
                }
                Err(StoreError::NotHolder) => return Err(LeaseLost),
                Err(err) => {
                    if now.duration_since(self.job.held_since) >= ctx.lease {
                        return Err(LeaseLost);
                    }
                    tracing::warn!(key = %self.job.key(), error = %err, "could not renew the claim of a running job");
                    // Try again soon, not a whole third of the lease later.
                    next = now + (renew_every / 4).max(Duration::from_millis(10));
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
