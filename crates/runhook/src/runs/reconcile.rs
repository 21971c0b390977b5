//! The reconciler: a background task per reconciling receiver that fetches the expected runs
//! whose webhook is late, and hands the finished ones to the receiver's own claim, hand-off and
//! handler. Each pass takes up to a batch of due expectations from the store (hiding them from
//! other instances for a while), and for each one:
//!
//! 1. a run already done (its webhook was processed) is forgotten without an API call; one in
//!    flight is looked at again later;
//! 2. otherwise the run is fetched: finished, it is claimed and handed off like a webhook
//!    ([`EventSource::Reconciled`]); not finished or unknown, it is fetched again with
//!    backoff, until the horizon, then dead-lettered `never_completed`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use runhook_core::payload::{EventSource, Provider, RunEvent};
use runhook_store::{Expectation, Expectations, IdempotencyStore, KeyState, StoreError, Window};

use super::{Fetched, RunSource};
use crate::dead_letter::DeadLetters;
use crate::dead_letter::{DeadLetter, DeadLetterReason};
use crate::stats::Counters;

/// How a receiver reconciles its expected runs; see [`ReceiverBuilder::reconcile`].
///
/// [`ReceiverBuilder::reconcile`]: crate::ReceiverBuilder::reconcile
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconcilePolicy {
    /// How long a webhook may take when its expectation gave no window
    /// ([`Window::RouteDefault`], as `runhook expect` registers without `--within`).
    pub after: Duration,
    /// How often the store is asked for due expectations (default 1 s).
    pub every: Duration,
    /// How long a taken expectation is hidden from other instances (default 30 s): if this one
    /// dies meanwhile, another takes it after that.
    pub hold: Duration,
    /// The pause before the first re-fetch of a run not finished yet (default 5 s), doubled
    /// each time up to `max_pause`.
    pub first_pause: Duration,
    /// The longest pause between fetches (default 5 min).
    pub max_pause: Duration,
    /// How long after its first due time a run may stay unfinished before it is given up and
    /// dead-lettered (default 24 h).
    pub horizon: Duration,
    /// The most expectations taken per pass (default 32).
    pub batch: usize,
}

impl ReconcilePolicy {
    /// The defaults, with `after` as the route's window.
    pub fn after(after: Duration) -> Self {
        Self {
            after,
            every: Duration::from_secs(1),
            hold: Duration::from_secs(30),
            first_pause: Duration::from_secs(5),
            max_pause: Duration::from_secs(300),
            horizon: Duration::from_secs(24 * 3600),
            batch: 32,
        }
    }

    /// The same, polling every `every`.
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every.max(Duration::from_millis(10));
        self
    }

    /// The same, re-fetching an unfinished run first after `first`, then doubling up to `max`.
    pub fn pauses(mut self, first: Duration, max: Duration) -> Self {
        self.first_pause = first;
        self.max_pause = max.max(first);
        self
    }

    /// The same, giving up `horizon` after a run's first due time.
    pub fn horizon(mut self, horizon: Duration) -> Self {
        self.horizon = horizon;
        self
    }

    fn pause_after(&self, checks: u32) -> Duration {
        let doubling = 1u32 << checks.saturating_sub(1).min(20);
        self.first_pause
            .saturating_mul(doubling)
            .min(self.max_pause)
    }
}

/// The periods of a background task of a receiver (the reconciler, the sweeper): the receiver
/// at each tick, until it is dropped or shuts down. A late tick is delayed, never bunched.
pub(crate) struct Periods {
    tick: tokio::time::Interval,
    receiver: Weak<dyn Submit>,
}

impl Periods {
    /// A period of `every`, the first at once.
    pub(crate) fn new(every: Duration, receiver: Weak<dyn Submit>) -> Self {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { tick, receiver }
    }

    /// Waits for the next period; `None` once the receiver is gone or shutting down.
    pub(crate) async fn next(&mut self) -> Option<Arc<dyn Submit>> {
        self.tick.tick().await;
        let receiver = self.receiver.upgrade()?;
        (!receiver.shutting_down()).then_some(receiver)
    }
}

/// What the reconciler does with a finished run: the receiver's claim and hand-off.
pub(crate) trait Submit: Send + Sync + 'static {
    /// Claims `event`'s run and hands it off, as the receive path does for a webhook.
    fn submit(&self, event: RunEvent) -> crate::handler::BoxFuture<'_, Submitted>;
    /// Whether the receiver is shutting down.
    fn shutting_down(&self) -> bool;
}

/// What became of a submitted run.
pub(crate) enum Submitted {
    /// Claimed and handed off: the handler will run.
    HandedOff,
    /// Someone else has it (its webhook, another instance), or it is done.
    Taken,
    /// The store or the hand-off refused for now.
    Refused(String),
}

/// What becomes of a due expectation, decided before the expectation store is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Done with: its run was handled (here, by its webhook, or given up on).
    Forget,
    /// Looked at again at this time.
    Reschedule(SystemTime),
}

/// Whether the dead-letter sink took a given-up run's letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Letter {
    /// Written: the run is given up.
    Written,
    /// Refused: the expectation is kept.
    Refused,
}

/// One receiver's reconciler.
pub(crate) struct Reconciler {
    pub provider: Provider,
    pub source: Arc<dyn RunSource>,
    pub store: Arc<dyn IdempotencyStore>,
    pub dead_letters: DeadLetters,
    pub counters: Arc<Counters>,
    pub policy: ReconcilePolicy,
}

impl Reconciler {
    /// Runs passes until the receiver is dropped or shuts down.
    pub async fn run(self, receiver: Weak<dyn Submit>) {
        let mut periods = Periods::new(self.policy.every, receiver);
        while let Some(receiver) = periods.next().await {
            if let Err(err) = self.pass(&*receiver).await {
                tracing::warn!(provider = %self.provider, error = %err, "reconciliation pass failed; trying again");
            }
        }
    }

    fn scope(&self) -> &'static str {
        self.provider.as_str()
    }

    /// One pass over the due expectations.
    async fn pass(&self, receiver: &dyn Submit) -> Result<(), StoreError> {
        let Some(expectations) = self.store.expectations() else {
            return Ok(());
        };
        let now = SystemTime::now();
        let due = expectations
            .take_due(self.scope(), now, self.policy.hold, self.policy.batch)
            .await?;
        for expectation in due {
            if let Err(err) = self.settle(receiver, expectations, expectation).await {
                tracing::warn!(provider = %self.provider, error = %err, "could not settle an expected run; it comes back after its hold");
            }
        }
        let waiting = expectations.waiting(self.scope()).await?;
        self.counters
            .expected_waiting
            .store(waiting as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Forgets, re-schedules, hands off or gives up on one due expectation: decides first,
    /// then acts on the store once.
    async fn settle(
        &self,
        receiver: &dyn Submit,
        expectations: &dyn Expectations,
        mut expectation: Expectation,
    ) -> Result<(), StoreError> {
        let next = self.decide(receiver, &mut expectation).await?;
        self.apply(expectations, &expectation, next).await
    }

    /// What to do with one due expectation (updating its window and check count on the way):
    /// looks at the store, and fetches and submits the run when no one has it.
    async fn decide(
        &self,
        receiver: &dyn Submit,
        expectation: &mut Expectation,
    ) -> Result<Next, StoreError> {
        // A registration without a window gets the route's now, without a fetch.
        if expectation.window == Window::RouteDefault {
            expectation.window = Window::Within(self.policy.after);
            return Ok(Next::Reschedule(expectation.first_due()));
        }
        match self.store.state(&expectation.dedup_key).await? {
            KeyState::Done => return Ok(Next::Forget),
            KeyState::InFlight => return Ok(Next::Reschedule(self.soon())),
            KeyState::Absent => {}
        }
        expectation.checks += 1;
        let last_answer = match self.source.fetch(&expectation.run_id).await {
            Ok(Fetched::Terminal(event)) => {
                return Ok(self.hand_off(receiver, expectation, *event).await);
            }
            Ok(Fetched::Pending { status }) => format!("still {status}"),
            Ok(Fetched::RetryPending(interim)) => {
                // Not over: look again once the next attempt has started, not before.
                let last_answer = "an attempt ended and a retry is pending".to_string();
                let next = self.not_finished(expectation, last_answer).await;
                return Ok(not_before(next, interim.phase.retry_not_before()));
            }
            Ok(Fetched::Unknown) => "the run API does not know the run (404)".to_string(),
            Err(err) => err.to_string(),
        };
        Ok(self.not_finished(expectation, last_answer).await)
    }

    /// A run not finished (or not known) yet: fetched again after a pause, or given up past
    /// the horizon.
    async fn not_finished(&self, expectation: &Expectation, last_answer: String) -> Next {
        let now = SystemTime::now();
        if now < expectation.first_due() + self.policy.horizon {
            return Next::Reschedule(now + self.policy.pause_after(expectation.checks));
        }
        match self.give_up(expectation, last_answer).await {
            Letter::Written => Next::Forget,
            // Not written: keep the expectation, and try again after a pause.
            Letter::Refused => Next::Reschedule(now + self.policy.first_pause),
        }
    }

    /// Submits a finished run as reconciled; forget it once someone has it.
    async fn hand_off(
        &self,
        receiver: &dyn Submit,
        expectation: &Expectation,
        mut event: RunEvent,
    ) -> Next {
        event.source = EventSource::Reconciled;
        match receiver.submit(event).await {
            Submitted::HandedOff => {
                Counters::bump(&self.counters.reconciled);
                tracing::info!(provider = %self.provider, run_id = %expectation.run_id, "no webhook came in time: reconciled the run from its run API");
                Next::Forget
            }
            Submitted::Taken => Next::Forget,
            Submitted::Refused(reason) => {
                tracing::warn!(provider = %self.provider, run_id = %expectation.run_id, %reason, "could not hand a reconciled run off; trying again soon");
                Next::Reschedule(self.soon())
            }
        }
    }

    /// Acts on the decision: the one place the expectation store is written.
    async fn apply(
        &self,
        expectations: &dyn Expectations,
        expectation: &Expectation,
        next: Next,
    ) -> Result<(), StoreError> {
        let scope = self.scope();
        match next {
            Next::Forget => expectations.forget(scope, &expectation.dedup_key).await,
            Next::Reschedule(at) => expectations.reschedule(scope, expectation, at).await,
        }
    }

    /// A short pause from now: the next look at a run in flight or refused.
    fn soon(&self) -> SystemTime {
        SystemTime::now() + self.policy.first_pause
    }

    /// Dead-letters a run that never finished within the horizon (no body: none came).
    async fn give_up(&self, expectation: &Expectation, last_answer: String) -> Letter {
        tracing::warn!(provider = %self.provider, run_id = %expectation.run_id, checks = expectation.checks, %last_answer, "an expected run never completed: giving up");
        let letter = DeadLetter {
            provider: Some(self.provider),
            dedup_key: Some(expectation.dedup_key.clone()),
            run_id: Some(expectation.run_id.clone()),
            reason: DeadLetterReason::NeverCompleted {
                checks: expectation.checks,
                last_answer,
            },
            attempts: 0,
            received_at: expectation.registered_at,
            headers: Vec::new(),
            body: bytes::Bytes::new(),
            source: EventSource::Reconciled,
            truncated: None,
        };
        match self.dead_letters.put(letter).await {
            Ok(()) => {
                Counters::bump(&self.counters.reconcile_given_up);
                Letter::Written
            }
            Err(_) => {
                tracing::warn!(provider = %self.provider, run_id = %expectation.run_id, "keeping the expectation of a run that never completed until its dead letter is written");
                Letter::Refused
            }
        }
    }
}

/// `next`, rescheduled no earlier than `at` (a pending retry's start).
fn not_before(next: Next, at: Option<SystemTime>) -> Next {
    match (next, at) {
        (Next::Reschedule(when), Some(at)) => Next::Reschedule(when.max(at)),
        (next, _) => next,
    }
}
