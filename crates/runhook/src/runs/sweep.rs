//! The sweeper: a background task per sweeping receiver that lists the platform's recent
//! finished runs and hands those whose webhook was never processed to the receiver's own
//! claim, hand-off and handler ([`EventSource::Swept`]), with nothing registered beforehand.
//!
//! Every `every`, one instance per provider and store takes the turn (a claim on
//! `sweep:<provider>` in the idempotency store, recorded done for `every` when the sweep
//! ends, so no other instance sweeps before the next period). The sweep pages through the runs
//! created within `window`, newest first, and for each finished run:
//!
//! 1. a run done or in flight in the store (its webhook came) is skipped, with no API call;
//! 2. otherwise the run is taken from the list when the list holds whole runs (TinyFish), or
//!    fetched by id (Skyvern), and submitted like a webhook: the claim makes a webhook and a
//!    sweep racing for one run process it once.
//!
//! Pages are asked for one at a time, `page_pause` apart; a 429 or any error ends the sweep
//! (the next period starts over: what was handed off is done by then).

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use runhook_core::payload::{EventSource, Provider, RunEvent};
use runhook_store::{Claim, Fingerprint, IdempotencyStore, KeyState, StoreError, Token};

use super::reconcile::{Periods, Submit, Submitted};
use super::{FetchError, Fetched, RunSource};
use crate::handler::BoxFuture;
use crate::stats::Counters;

/// How a receiver sweeps its platform's recent runs; see
/// [`ReceiverBuilder::sweep`](crate::ReceiverBuilder::sweep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepPolicy {
    /// How often a sweep runs (across every instance sharing the store).
    pub every: Duration,
    /// How far back a sweep looks: runs created within this much of now.
    pub window: Duration,
    /// The pause between two pages of the list.
    pub page_pause: Duration,
}

impl SweepPolicy {
    /// A sweep every `every` over the runs created in the last `window`, pages 200 ms apart.
    pub fn new(every: Duration, window: Duration) -> Self {
        Self {
            every: every.max(Duration::from_millis(10)),
            window,
            page_pause: Duration::from_millis(200),
        }
    }

    /// The same, with `pause` between two pages.
    pub fn page_pause(mut self, pause: Duration) -> Self {
        self.page_pause = pause;
        self
    }
}

/// One finished run of a list page.
#[derive(Debug, Clone)]
pub enum Listed {
    /// The list holds the whole run, in its webhook's shape: no fetch needed.
    Whole(Box<RunEvent>),
    /// The list names the run; it is fetched by id when needed.
    Named {
        /// The run's id.
        run_id: String,
    },
}

impl Listed {
    /// The run's id.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            Listed::Whole(event) => event.run_id.as_deref(),
            Listed::Named { run_id } => Some(run_id),
        }
    }
}

/// One page of a platform's recent finished runs (runs not finished are left out).
#[derive(Debug, Clone, Default)]
pub struct ListedPage {
    /// The finished runs on the page.
    pub runs: Vec<Listed>,
    /// What to ask for the next page; `None` on the last.
    pub next: Option<String>,
}

/// Lists a platform's recent runs, page by page, and fetches one run by id;
/// [`RunApiClient`](super::RunApiClient) is the real one.
pub trait RunLister: RunSource {
    /// The page after `next` (the first when `None`) of the runs created since `since`,
    /// newest first.
    fn list_page<'a>(
        &'a self,
        since: SystemTime,
        next: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ListedPage, FetchError>>;
}

/// One receiver's sweeper.
pub(crate) struct Sweeper {
    pub provider: Provider,
    pub lister: Arc<dyn RunLister>,
    pub store: Arc<dyn IdempotencyStore>,
    pub counters: Arc<Counters>,
    pub policy: SweepPolicy,
}

impl Sweeper {
    /// Sweeps every period until the receiver is dropped or shuts down.
    pub async fn run(self, receiver: Weak<dyn Submit>) {
        let mut periods = Periods::new(self.policy.every, receiver);
        while let Some(receiver) = periods.next().await {
            let Some(turn) = self.take_turn().await else {
                continue;
            };
            if let Err(err) = self.sweep(&*receiver).await {
                tracing::warn!(provider = %self.provider, error = %err, "sweep ended early; the next one starts over");
            }
            self.end_turn(&turn).await;
        }
    }

    /// The store key whose claim is the turn to sweep this provider.
    fn turn_key(&self) -> String {
        format!("sweep:{}", self.provider)
    }

    /// This instance's turn to sweep, unless another instance swept within the period.
    async fn take_turn(&self) -> Option<Token> {
        let lease = self.policy.every.max(Duration::from_secs(30));
        let claim = self
            .store
            .claim(&self.turn_key(), lease, Fingerprint::of(b"sweep"))
            .await;
        match claim {
            Ok(Claim::Acquired(token)) => Some(token),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(provider = %self.provider, error = %err, "could not take the turn to sweep");
                None
            }
        }
    }

    /// Marks the turn taken for the rest of the period.
    async fn end_turn(&self, turn: &Token) {
        let key = self.turn_key();
        if let Err(err) = self.store.complete(&key, turn, self.policy.every).await {
            tracing::debug!(provider = %self.provider, error = %err, "could not record the sweep's turn");
        }
    }

    /// One sweep over the runs created within the window.
    async fn sweep(&self, receiver: &dyn Submit) -> Result<(), SweepError> {
        let since = SystemTime::now() - self.policy.window;
        let mut next: Option<String> = None;
        loop {
            let page = self.lister.list_page(since, next.as_deref()).await?;
            for listed in page.runs {
                self.settle(receiver, listed).await?;
            }
            match page.next {
                Some(token) => next = Some(token),
                None => return Ok(()),
            }
            tokio::time::sleep(self.policy.page_pause).await;
        }
    }

    /// Skips a run its webhook brought, or submits it as swept.
    async fn settle(&self, receiver: &dyn Submit, listed: Listed) -> Result<(), SweepError> {
        let Some(run_id) = listed.run_id().map(str::to_owned) else {
            return Ok(());
        };
        let key = self.provider.dedup_key(&run_id);
        if self.store.state(&key).await? != KeyState::Absent {
            return Ok(());
        }
        let mut event = match listed {
            Listed::Whole(event) => *event,
            Listed::Named { .. } => match self.lister.fetch(&run_id).await? {
                Fetched::Terminal(event) => *event,
                // Listed as finished, but not (yet) for its own endpoint, or a retry of it is
                // still to come: the next sweep.
                Fetched::Pending { .. } | Fetched::RetryPending(_) | Fetched::Unknown => {
                    return Ok(())
                }
            },
        };
        event.source = EventSource::Swept;
        match receiver.submit(event).await {
            Submitted::HandedOff => {
                Counters::bump(&self.counters.swept);
                tracing::info!(provider = %self.provider, %run_id, "no webhook came: a sweep found the run finished and handed it off");
            }
            Submitted::Taken => {}
            Submitted::Refused(reason) => {
                tracing::warn!(provider = %self.provider, %run_id, %reason, "could not hand a swept run off; the next sweep tries again");
            }
        }
        Ok(())
    }
}

/// Why a sweep ended early.
#[derive(Debug, thiserror::Error)]
enum SweepError {
    /// The run API failed (or asked to slow down).
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
