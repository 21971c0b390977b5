//! The reader of one receiver on its queue: it waits for free workers, takes over jobs whose
//! lock lapsed (each alone), fetches fresh ones, and sleeps until a job is announced (by this
//! process, or by `NOTIFY` from another), or the poll interval passed.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use runhook_store::sqlx::postgres::PgListener;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::job::spawn_job;
use super::queue::{announcement, Due, CHANNEL};
use super::row::Fetched;
use super::workers::{lock, Shared};
use crate::handoff::arrival::Arrival;

/// How often the reader counts the backlog (`Stats::queue_depth`, and the capacity check's
/// estimate), and how often once the estimate is past half the capacity.
const DEPTH_EVERY: Duration = Duration::from_secs(2);
const DEPTH_EVERY_WHEN_FILLING: Duration = Duration::from_millis(250);
/// Pause after a failed fetch before the next one.
const ERROR_PAUSE: Duration = Duration::from_millis(500);
/// The shortest pause between two announcements of this instance's new jobs.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(20);

/// The reader's loop was told to stop.
struct Stopped;

/// What ended a wait for jobs.
enum Woken {
    /// A job may be there (announced, or the poll interval passed).
    Job,
    /// The listener failed: it is made again at the next wait.
    ListenerFailed,
    Stop,
}

/// The reader task of one receiver.
pub(crate) struct Reader {
    sh: Arc<Shared>,
    scan_every: Duration,
    next_scan: Instant,
    next_depth: Instant,
    suspects: VecDeque<Fetched>,
    /// Fresh jobs fetched ahead of free workers, oldest first.
    ahead: VecDeque<Fetched>,
    /// Whether the last fetch came back short (the queue held no more fresh jobs then).
    drained: bool,
    /// Hears other instances' announcements; made on first use, again after a failure.
    listener: Option<PgListener>,
    /// This queue's announcement payload.
    payload: String,
}

impl Reader {
    pub(crate) fn new(sh: Arc<Shared>) -> Self {
        let now = Instant::now();
        let payload = announcement(sh.queue.store().schema(), sh.queue.name());
        Self {
            scan_every: (sh.lock / 10).clamp(Duration::from_millis(100), Duration::from_secs(5)),
            sh,
            // At start, look at once for jobs a crashed predecessor left.
            next_scan: now,
            next_depth: now,
            suspects: VecDeque::new(),
            ahead: VecDeque::new(),
            drained: true,
            listener: None,
            payload,
        }
    }

    /// Reads until the receiver shuts down; announces this instance's new jobs meanwhile.
    pub(crate) async fn run(mut self) {
        let announcer = tokio::spawn(announce(self.sh.clone()));
        while !self.sh.stopping() {
            if self.step().await.is_err() {
                break;
            }
        }
        announcer.abort();
    }

    /// One turn: a suspect alone, or fresh jobs for the workers free now, each started as soon
    /// as a worker is free. No worker is held while the reader fetches or sleeps: a delivery
    /// that finds one free runs at once, without being fetched back.
    async fn step(&mut self) -> Result<(), Stopped> {
        if let Some(suspect) = self.suspects.pop_front() {
            return self.run_alone(suspect).await;
        }
        self.maintain().await;
        if self.ahead.is_empty() {
            // Jobs are fetched only for free workers: a job fetched is handed out (its count
            // of deliveries raised), and one that waits here for a worker is handed out for
            // nothing if this process dies meanwhile (of a poison run, say).
            let free = self.free_workers().await?;
            self.take_over_lapsed(free).await;
            if !self.suspects.is_empty() || self.sh.stopping() {
                return Ok(());
            }
            if let Err(err) = self.fetch_ahead(free).await {
                tracing::warn!(queue = %self.sh.queue.name(), error = %err, "fetching jobs failed");
                return self.pause(ERROR_PAUSE).await;
            }
        }
        while let Some(job) = self.ahead.pop_front() {
            let permit = self.free_worker().await?;
            spawn_job(&self.sh, job, Arrival::Fresh, permit);
        }
        if self.drained {
            self.wait_for_jobs().await?;
        }
        Ok(())
    }

    /// Fetches fresh jobs for `free` workers (at most a read batch) in one statement: a fetch
    /// is a commit, and one per worker would bound the workers by the database's commit time.
    /// They count as running here from now on (a takeover scan skips them; a shutdown ends
    /// their locks).
    async fn fetch_ahead(&mut self, free: usize) -> Result<(), super::PostgresQueueError> {
        let sh = &self.sh;
        let wanted = free.clamp(1, sh.queue.inner.read_batch);
        let rows = sh
            .queue
            .fetch(Due::Fresh(sh.ctx.lease), wanted, sh.lock)
            .await?;
        self.drained = rows.len() < wanted;
        let mut running = lock(&sh.running);
        for row in rows {
            match Fetched::read(&row) {
                Ok(job) => {
                    running.insert(job.id);
                    self.ahead.push_back(job);
                }
                Err(err) => {
                    tracing::error!(queue = %sh.queue.name(), error = %err, "a fetched job's row could not be read")
                }
            }
        }
        Ok(())
    }

    /// Runs a taken-over job with every worker's permit, so that nothing else runs beside it.
    async fn run_alone(&mut self, suspect: Fetched) -> Result<(), Stopped> {
        let sh = &self.sh;
        let every_worker = tokio::select! {
            all = sh.permits.clone().acquire_many_owned(sh.workers) => all.map_err(|_| Stopped)?,
            _ = sh.stopped.notified() => return Err(Stopped),
        };
        let arrival = Arrival::TakenOver {
            deliveries: suspect.deliveries,
        };
        spawn_job(sh, suspect, arrival, every_worker);
        Ok(())
    }

    /// Waits until a worker is free, and says how many are, without holding any.
    async fn free_workers(&mut self) -> Result<usize, Stopped> {
        let permit = self.free_worker().await?;
        let free = 1 + self.sh.permits.available_permits();
        drop(permit);
        Ok(free)
    }

    /// Waits for a free worker, keeping the backlog figure fresh meanwhile.
    async fn free_worker(&mut self) -> Result<OwnedSemaphorePermit, Stopped> {
        let sh = self.sh.clone();
        loop {
            tokio::select! {
                permit = sh.permits.clone().acquire_owned() => return permit.map_err(|_| Stopped),
                _ = sh.stopped.notified() => return Err(Stopped),
                _ = tokio::time::sleep_until(self.next_depth) => self.refresh_depth().await,
            }
        }
    }

    /// Drops finished tasks, and counts the backlog when due.
    async fn maintain(&mut self) {
        self.sh.reap();
        if Instant::now() >= self.next_depth {
            self.refresh_depth().await;
        }
    }

    async fn refresh_depth(&mut self) {
        let sh = &self.sh;
        let filling = sh.estimated_backlog().saturating_mul(2) >= sh.capacity as u64;
        let every = match filling {
            true => DEPTH_EVERY_WHEN_FILLING,
            false => DEPTH_EVERY,
        };
        self.next_depth = Instant::now() + every;
        // What happens here while the count runs is counted twice or not at all: it is an
        // estimate, made exact at the next count.
        let (enqueued, deleted) = (
            sh.enqueued_since.load(Ordering::Relaxed),
            sh.deleted_since.load(Ordering::Relaxed),
        );
        match sh.queue.backlog().await {
            Ok(depth) => {
                sh.depth.store(depth, Ordering::Relaxed);
                sh.enqueued_since.fetch_sub(enqueued, Ordering::Relaxed);
                sh.deleted_since.fetch_sub(deleted, Ordering::Relaxed);
            }
            Err(err) => tracing::debug!(error = %err, "could not count the queue's backlog"),
        }
    }

    /// When a scan is due, takes over up to `count` jobs whose lock lapsed, as suspects.
    async fn take_over_lapsed(&mut self, count: usize) {
        let now = Instant::now();
        if now < self.next_scan {
            return;
        }
        self.next_scan = now + self.scan_every;
        let sh = &self.sh;
        let rows = match sh.queue.fetch(Due::Lapsed, count, sh.lock).await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(queue = %sh.queue.name(), error = %err, "takeover scan failed");
                return;
            }
        };
        if rows.len() >= count {
            self.next_scan = Instant::now();
        }
        let running = lock(&sh.running);
        for row in rows {
            let job = match Fetched::read(&row) {
                Ok(job) => job,
                Err(err) => {
                    tracing::error!(queue = %sh.queue.name(), error = %err, "a taken-over job's row could not be read");
                    continue;
                }
            };
            // One of this process's own, whose lock lapsed while it ran: it is locked again
            // now, and its worker goes on.
            if running.contains(&job.id) {
                continue;
            }
            tracing::info!(queue = %sh.queue.name(), id = job.id, deliveries = job.deliveries, "taking over a job whose lock lapsed");
            self.suspects.push_back(job);
        }
    }

    /// Sleeps until a job is announced, the poll interval passed, a takeover scan is due, or
    /// the stop signal.
    async fn wait_for_jobs(&mut self) -> Result<(), Stopped> {
        let sh = self.sh.clone();
        let until = (Instant::now() + sh.queue.inner.poll).min(self.next_scan);
        self.listen().await;
        let mut listener = self.listener.take();
        let payload = self.payload.as_str();
        // `false` when the listener failed: it is made again at the next wait.
        let heard = async {
            let Some(listener) = listener.as_mut() else {
                return std::future::pending().await;
            };
            loop {
                match listener.recv().await {
                    Ok(note) if note.payload() == payload => return true,
                    Ok(_) => {}
                    Err(err) => {
                        tracing::debug!(error = %err, "the listener failed; polling until it is back");
                        return false;
                    }
                }
            }
        };
        let woken = tokio::select! {
            _ = sh.wake.notified() => Woken::Job,
            listening = heard => if listening { Woken::Job } else { Woken::ListenerFailed },
            () = tokio::time::sleep_until(until) => Woken::Job,
            _ = sh.stopped.notified() => Woken::Stop,
        };
        match woken {
            Woken::Job => {}
            Woken::ListenerFailed => listener = None,
            Woken::Stop => return Err(Stopped),
        }
        self.listener = listener;
        Ok(())
    }

    /// Makes the listener if there is none.
    async fn listen(&mut self) {
        if self.listener.is_some() {
            return;
        }
        let pool = self.sh.queue.store().pool();
        let listener = async {
            let mut listener = PgListener::connect_with(pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, runhook_store::sqlx::Error>(listener)
        };
        match tokio::time::timeout(Duration::from_secs(2), listener).await {
            Ok(Ok(listener)) => self.listener = Some(listener),
            Ok(Err(err)) => tracing::debug!(error = %err, "could not LISTEN; polling"),
            Err(_) => tracing::debug!("LISTEN timed out; polling"),
        }
    }

    /// Waits `pause`, or until the stop signal.
    async fn pause(&self, pause: Duration) -> Result<(), Stopped> {
        tokio::select! {
            () = tokio::time::sleep(pause) => Ok(()),
            _ = self.sh.stopped.notified() => Err(Stopped),
        }
    }
}

/// Announces this instance's new jobs to the others (`NOTIFY`), at most every
/// [`ANNOUNCE_EVERY`]: one notification stands for every job enqueued meanwhile.
async fn announce(sh: Arc<Shared>) {
    loop {
        sh.announce.notified().await;
        if sh.stopping() {
            return;
        }
        sh.queue.announce().await;
        tokio::time::sleep(ANNOUNCE_EVERY).await;
    }
}
