//! Dead letters the sink refused, parked so that a full or failing sink never takes a worker:
//! the worker hands the job (its letter, its claim) here and goes on with the next one. One
//! task per receiver keeps every parked claim renewed (and the stream entry's idle time
//! reset), and tries the letters again with a doubling pause (0.5 s to 30 s). A written
//! letter releases its claim and tells whoever waits on its [`ParkTicket`] (the stream
//! acknowledges its entry then).
//!
//! The parked set has a bound (the hand-off's capacity): when it is full, a worker keeps its
//! job and waits as before, so memory stays bounded. At shutdown the set is closed: its
//! letters are written past the sink's byte budget (the budget bounds steady growth; it must
//! never cost an acknowledged run), and what the sink cannot take at all is handed back.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use runhook_store::{IdempotencyStore, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::handoff::Job;
use crate::stats::Counters;
use crate::worker::Touch;

/// The first pause before a parked letter is tried again.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// The longest pause between two tries.
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

/// The handle workers park jobs with.
pub(crate) struct Parked {
    commands: mpsc::UnboundedSender<Command>,
    bound: u64,
    counters: Arc<Counters>,
}

/// Resolves once a parked job's letter is written (`true`), or when it never will be by
/// this process (`false`: handed back at shutdown). Only the Redis stream waits on it (to
/// acknowledge its entry then); the in-process queue has nothing to acknowledge.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct ParkTicket(oneshot::Receiver<()>);

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl ParkTicket {
    /// Waits for the letter's fate.
    pub async fn written(self) -> bool {
        self.0.await.is_ok()
    }
}

/// The parked set is at its bound (or stopped): the letter is handed back.
pub(crate) struct ParkRefused;

/// What the set settles its jobs with, for the task.
pub(crate) struct Settings {
    pub store: Arc<dyn IdempotencyStore>,
    pub dead_letters: DeadLetters,
    pub lease: Duration,
    pub bound: usize,
}

impl Parked {
    /// An empty set, and its task (spawned on the current runtime).
    pub fn start(settings: Settings) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        let counters = settings.dead_letters.counters.clone();
        let retrier = Retrier {
            store: settings.store,
            dead_letters: settings.dead_letters,
            lease: settings.lease,
            jobs: VecDeque::new(),
            budget: Budget::Kept,
        };
        tokio::spawn(retrier.run(receiver));
        Self {
            commands,
            bound: settings.bound.max(1) as u64,
            counters,
        }
    }

    /// How many jobs are parked now.
    pub fn len(&self) -> u64 {
        self.counters.parked.load(Ordering::Relaxed)
    }

    /// Parks `job` with its refused `letter`; `touch` is called with each renewal of its
    /// claim.
    pub fn park(
        &self,
        letter: DeadLetter,
        job: Job,
        touch: Option<Touch>,
    ) -> Result<ParkTicket, ParkRefused> {
        let bound = self.bound;
        let room = self
            .counters
            .parked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < bound).then_some(n + 1)
            });
        if room.is_err() {
            return Err(ParkRefused);
        }
        let (written, ticket) = oneshot::channel();
        let job = ParkedJob {
            renew_at: job.held_since,
            letter,
            job,
            touch,
            written,
            claim: ClaimState::Held,
        };
        if self.commands.send(Command::Park(Box::new(job))).is_err() {
            self.counters.parked.fetch_sub(1, Ordering::AcqRel);
            return Err(ParkRefused);
        }
        Ok(ParkTicket(ticket))
    }

    /// Shutting down: from now on parked letters are written past the sink's byte budget,
    /// at once.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }

    /// Tries every parked letter once more (past the budget), stops the task, and hands back
    /// the jobs whose letter the sink could not take at all, with their claims still held.
    pub async fn stop(&self) -> Vec<Job> {
        let (reply, back) = oneshot::channel();
        if self.commands.send(Command::Stop(reply)).is_err() {
            return Vec::new();
        }
        back.await.unwrap_or_default()
    }
}

enum Command {
    Park(Box<ParkedJob>),
    Close,
    Stop(oneshot::Sender<Vec<Job>>),
}

/// Whether this process still holds a parked job's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimState {
    Held,
    /// A renewal found another holder: the letter is still written, the claim left alone.
    Lost,
}

/// Whether the sink's byte budget applies to the letters written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    Kept,
    /// Shutting down: written past it.
    Exceeded,
}

struct ParkedJob {
    letter: DeadLetter,
    job: Job,
    touch: Option<Touch>,
    written: oneshot::Sender<()>,
    claim: ClaimState,
    /// When its claim is renewed next (the task sets it a third of the lease past the last
    /// renewal when the job arrives).
    renew_at: Instant,
}

/// The task: owns the parked jobs.
struct Retrier {
    store: Arc<dyn IdempotencyStore>,
    dead_letters: DeadLetters,
    lease: Duration,
    jobs: VecDeque<ParkedJob>,
    budget: Budget,
}

impl Retrier {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut pause = FIRST_PAUSE;
        let mut next_try = Instant::now();
        loop {
            let wake = self.next_renewal().min(next_try);
            tokio::select! {
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Park(job)) => {
                        // The worker has just tried: wait the pause, unless shutting down.
                        if self.jobs.is_empty() && self.budget == Budget::Kept {
                            next_try = Instant::now() + pause;
                        }
                        if self.budget == Budget::Exceeded {
                            next_try = Instant::now();
                        }
                        let mut job = *job;
                        job.renew_at = job.job.held_since + self.lease / 3;
                        self.jobs.push_back(job);
                    }
                    Some(Command::Close) => {
                        self.budget = Budget::Exceeded;
                        next_try = Instant::now();
                    }
                    Some(Command::Stop(reply)) => {
                        self.budget = Budget::Exceeded;
                        self.write_all().await;
                        let _ = reply.send(self.hand_back());
                        return;
                    }
                },
                () = tokio::time::sleep_until(wake), if !self.jobs.is_empty() => {}
            }
            self.renew_due().await;
            if !self.jobs.is_empty() && Instant::now() >= next_try {
                pause = match self.write_all().await {
                    Progress::Some => FIRST_PAUSE,
                    Progress::None => (pause * 2).min(LONGEST_PAUSE),
                };
                next_try = Instant::now() + pause;
            }
        }
    }

    /// When the first parked claim is due for renewal (a third of the lease after its last).
    fn next_renewal(&self) -> Instant {
        self.jobs
            .iter()
            .filter(|p| p.claim == ClaimState::Held)
            .map(|p| p.renew_at)
            .min()
            .unwrap_or_else(|| Instant::now() + self.lease / 3)
    }

    /// Renews every claim due, and resets its stream entry's idle time.
    async fn renew_due(&mut self) {
        let every = self.lease / 3;
        let now = Instant::now();
        for parked in self.jobs.iter_mut() {
            if parked.claim == ClaimState::Lost || parked.renew_at > now {
                continue;
            }
            match self
                .store
                .renew(parked.job.key(), &parked.job.token, self.lease)
                .await
            {
                Ok(()) => {
                    parked.job.held_since = now;
                    parked.renew_at = now + every;
                }
                Err(StoreError::NotHolder) => {
                    tracing::warn!(key = %parked.job.key(), "a parked dead letter's claim was taken; keeping the letter to write");
                    parked.claim = ClaimState::Lost;
                }
                Err(err) => {
                    tracing::warn!(key = %parked.job.key(), error = %err, "could not renew a parked dead letter's claim");
                    // Tried again soon rather than a third of the lease later.
                    parked.renew_at = now + (every / 4).max(Duration::from_millis(10));
                }
            }
            if let Some(touch) = &parked.touch {
                touch().await;
            }
        }
    }

    /// Writes parked letters in order until the sink refuses one.
    async fn write_all(&mut self) -> Progress {
        let mut progress = Progress::None;
        while let Some(parked) = self.jobs.pop_front() {
            let written = match self.budget {
                Budget::Kept => self.dead_letters.put(parked.letter.clone()).await,
                Budget::Exceeded => {
                    self.dead_letters
                        .put_past_budget(parked.letter.clone())
                        .await
                }
            };
            if written.is_err() {
                self.jobs.push_front(parked);
                break;
            }
            progress = Progress::Some;
            if parked.claim == ClaimState::Held {
                if let Err(err) = self
                    .store
                    .release(parked.job.key(), &parked.job.token)
                    .await
                {
                    tracing::warn!(key = %parked.job.key(), error = %err, "could not release a claim");
                }
            }
            self.dead_letters
                .counters
                .parked
                .fetch_sub(1, Ordering::AcqRel);
            let _ = parked.written.send(());
        }
        progress
    }

    /// The jobs left, for the hand-off to report.
    fn hand_back(&mut self) -> Vec<Job> {
        let left: Vec<Job> = self.jobs.drain(..).map(|p| p.job).collect();
        self.dead_letters
            .counters
            .parked
            .fetch_sub(left.len() as u64, Ordering::AcqRel);
        left
    }
}

/// Whether a pass wrote anything.
enum Progress {
    Some,
    None,
}
