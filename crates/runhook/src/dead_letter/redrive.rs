//! Redrive from a dead-letter file: run a handler on letters again, then rewrite the file
//! without those that succeeded. (A Redis stream's letters are redriven into the stream
//! itself: [`RedisStreamQueue::redrive`](crate::stream::RedisStreamQueue::redrive).)

use std::collections::HashSet;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::Path;
use std::sync::Arc;

use runhook_core::payload::{Confirmation, PayloadError, RunEvent};
use runhook_store::{Claim, Fingerprint, IdempotencyStore, StoreError};

use super::{open_locked, parse_lines, DeadLetterRecord};
use crate::handler::{Handler, HandlerError};
use runhook_store::DEFAULT_DEDUP_WINDOW;

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedriveReport {
    /// Dedup keys of the letters handed back (processed by the handler, or appended to the
    /// stream), and removed from the dead letters.
    pub redriven: Vec<String>,
    /// Dedup keys of letters whose run was already done: removed without a handler call.
    pub already_done: Vec<String>,
    /// Letters kept, each with why (the handler failed again, the run is in flight elsewhere,
    /// the body is not the provider's payload, ...).
    pub kept: Vec<(Option<String>, String)>,
}

impl RedriveReport {
    /// Whether a redrive of `keys` (every letter when empty) moves `record` now: `false` when
    /// it is not one of `keys`, or when it cannot be redriven (then it is reported kept, with
    /// why).
    pub(crate) fn takes(&mut self, record: &DeadLetterRecord, keys: &[String]) -> bool {
        let key = record.dedup_key.as_ref();
        if !keys.is_empty() && !key.is_some_and(|k| keys.contains(k)) {
            return false;
        }
        if let Some(why) = record.not_redrivable() {
            self.kept.push((key.cloned(), why.into()));
            return false;
        }
        true
    }
}

/// Runs `handler` on each letter of the dead-letter file at `path` whose dedup key is in
/// `keys` (every letter when `keys` is empty), and rewrites the file, atomically, without the
/// letters that succeeded. With a `store`, each run is claimed first, so that a run processed
/// meanwhile (or in flight elsewhere) is not processed again, and completed after its handler
/// succeeded.
///
/// Letters appended to the file while this runs are kept: the file is locked while it is
/// read and while it is rewritten (writers take the same lock), and only the lines handled
/// here are removed.
///
/// # Errors
/// I/O errors on the file, and a line that is not a dead letter.
pub async fn redrive_file(
    path: &Path,
    keys: &[String],
    handler: Arc<dyn Handler>,
    store: Option<Arc<dyn IdempotencyStore>>,
) -> Result<RedriveReport, std::io::Error> {
    let text = read_locked(path).await?;
    let mut report = RedriveReport::default();
    let mut done_lines: HashSet<String> = HashSet::new();
    for (line, record) in text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .zip(parse_lines(&text)?)
    {
        if !report.takes(&record, keys) {
            continue;
        }
        let key = record.dedup_key.clone();
        match redrive_one(&record, handler.as_ref(), store.as_deref()).await {
            Ok(Redriven::Processed) => {
                report.redriven.push(key.unwrap_or_default());
                done_lines.insert(line.to_string());
            }
            Ok(Redriven::AlreadyDone) => {
                report.already_done.push(key.unwrap_or_default());
                done_lines.insert(line.to_string());
            }
            Err(why) => report.kept.push((key, why.to_string())),
        }
    }
    if !done_lines.is_empty() {
        rewrite_without(path, done_lines).await?;
    }
    Ok(report)
}

enum Redriven {
    Processed,
    AlreadyDone,
}

/// Why a letter was kept.
#[derive(Debug, thiserror::Error)]
enum Kept {
    #[error("unknown provider {0:?}")]
    UnknownProvider(Option<String>),
    #[error("{0}")]
    Body(std::io::Error),
    #[error("{0}")]
    Unparseable(PayloadError),
    #[error("{0}")]
    Store(StoreError),
    #[error("the run is in flight elsewhere")]
    InFlight,
    #[error("{0}")]
    HandlerFailed(HandlerError),
}

/// The letter's run, as it reached the receiver (a reconciled run stays reconciled).
fn event_of(record: &DeadLetterRecord) -> Result<(RunEvent, bytes::Bytes), Kept> {
    let provider = record
        .provider()
        .ok_or_else(|| Kept::UnknownProvider(record.provider.clone()))?;
    let body = record.body_bytes().map_err(Kept::Body)?;
    let mut event = RunEvent::parse_summary(provider, body.clone()).map_err(Kept::Unparseable)?;
    let source = record.source();
    if source.is_from_run_api() {
        event.source = source;
        event.confirmation = Confirmation::Confirmed;
    }
    Ok((event, body))
}

async fn redrive_one(
    record: &DeadLetterRecord,
    handler: &dyn Handler,
    store: Option<&dyn IdempotencyStore>,
) -> Result<Redriven, Kept> {
    let (event, body) = event_of(record)?;
    let lease = crate::receiver::DEFAULT_LEASE;
    let token = match store {
        None => None,
        Some(store) => match store
            .claim(&event.dedup_key, lease, Fingerprint::of(&body))
            .await
            .map_err(Kept::Store)?
        {
            Claim::Acquired(token) => Some(token),
            Claim::Done { .. } => return Ok(Redriven::AlreadyDone),
            Claim::InFlight { .. } => return Err(Kept::InFlight),
        },
    };
    let key = event.dedup_key.clone();
    let outcome = handler.handle(Arc::new(event)).await;
    if let (Some(store), Some(token)) = (store, token) {
        let settled = match &outcome {
            Ok(()) => store.complete(&key, &token, DEFAULT_DEDUP_WINDOW).await,
            Err(_) => store.release(&key, &token).await,
        };
        if let Err(err) = settled {
            tracing::warn!(%key, error = %err, "could not settle the claim of a redriven letter");
        }
    }
    outcome
        .map(|()| Redriven::Processed)
        .map_err(Kept::HandlerFailed)
}

async fn read_locked(path: &Path) -> Result<String, std::io::Error> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || locked_text(&path).map(|(_file, text)| text))
        .await
        .map_err(std::io::Error::other)?
}

/// The file at `path`, locked against writers (held while the returned file lives), and its
/// whole text.
fn locked_text(path: &Path) -> Result<(std::fs::File, String), std::io::Error> {
    let mut file = open_locked(path)?;
    let mut text = String::new();
    file.seek(std::io::SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    Ok((file, text))
}

/// Rewrites `path` without the lines in `remove` (each removed once), under the writers'
/// lock: the current content is read again, filtered, written to a temporary file beside it
/// with mode 0600, synced, and renamed over it.
async fn rewrite_without(path: &Path, remove: HashSet<String>) -> Result<(), std::io::Error> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let (file, text) = locked_text(&path)?;
        let mut remove = remove;
        let mut kept = String::with_capacity(text.len());
        for line in text.lines() {
            if !remove.remove(line) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        let mut temp_name = path.as_os_str().to_owned();
        temp_name.push(".redrive-tmp");
        let temp = std::path::PathBuf::from(temp_name);
        let mut options = std::fs::OpenOptions::new();
        options.create(true).write(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options.open(&temp)?;
        out.write_all(kept.as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&temp, &path)?;
        // `file` (the old inode) stays locked until here: a writer waiting for the lock then
        // finds the name points elsewhere and opens the new file.
        drop(file);
        Ok(())
    })
    .await
    .map_err(std::io::Error::other)?
}
