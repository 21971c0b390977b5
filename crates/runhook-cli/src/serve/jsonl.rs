//! The `--jsonl` handler: each event appended as one line, and flushed to disk (`fsync`) before
//! the run is recorded done when the store keeps done runs across a crash.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use runhook::payload::RunEvent;
use runhook::{Handler, HandlerError};

use super::config::{JsonlFsync, ServeConfigError, StoreSpec};
use crate::event_json;

/// Appends each event as one line, to a file created with mode `0600` on unix (an existing
/// file keeps its mode). Each line is written whole, with one `write` under a lock, so
/// concurrent workers never interleave them: an append of a few kilobytes lands in the page
/// cache in microseconds, far less than a hop to tokio's blocking pool would cost. With
/// `fsync` on, the handler returns only once the line is on disk ([`Synced`]).
pub fn handler(
    path: &Path,
    fsync: JsonlFsync,
    store: &StoreSpec,
) -> Result<Arc<dyn Handler>, ServeConfigError> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    // Events hold whole payloads: readable by the owner only (when created here).
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(path)
        .map_err(|source| ServeConfigError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let syncs = fsync.syncs_with(store);
    tracing::info!(file = %path.display(), fsync = syncs, "appending each event to a JSON-lines file");
    let file = Arc::new(Synced::new(file));
    Ok(Arc::new(move |event: Arc<RunEvent>| {
        let file = file.clone();
        async move {
            let line = event_json::record_line(&event)?;
            let written = file.append(&line)?;
            if syncs {
                file.sync_through(written).await?;
            }
            Ok::<(), HandlerError>(())
        }
    }))
}

/// An append-only file whose appends are flushed to disk in groups: a worker waiting for its
/// line to be on disk either runs the `fsync` that covers it and every line written before
/// it, or finds that another worker's `fsync` already did. Many workers then share one
/// `fsync` (about half a millisecond here) instead of queueing one each.
struct Synced {
    file: Mutex<File>,
    /// Lines appended so far.
    written: AtomicU64,
    /// Lines known to be on disk; the lock is held by the `fsync` under way.
    synced: tokio::sync::Mutex<u64>,
}

impl Synced {
    fn new(file: File) -> Self {
        Self {
            file: Mutex::new(file),
            written: AtomicU64::new(0),
            synced: tokio::sync::Mutex::new(0),
        }
    }

    /// Appends `line` whole; its number (counting from 1).
    fn append(&self, line: &[u8]) -> std::io::Result<u64> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(line)?;
        Ok(self.written.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// Returns once line `number` is on disk.
    async fn sync_through(&self, number: u64) -> std::io::Result<()> {
        let mut synced = self.synced.lock().await;
        if *synced >= number {
            return Ok(());
        }
        // Every line written by now is covered by this fsync.
        let covered = self.written.load(Ordering::Acquire);
        let file = self
            .file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_clone()?;
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(std::io::Error::other)??;
        *synced = covered;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Workers appending at once each return only once an fsync that covers their line has
    /// finished, and every line is written whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_their_fsyncs_and_each_returns_synced() {
        let dir = std::env::temp_dir().join(format!("runhook-jsonl-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .unwrap();
        let synced = Arc::new(Synced::new(file));
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..200u64 {
            let synced = synced.clone();
            tasks.spawn(async move {
                let number = synced.append(format!("line {n}\n").as_bytes()).unwrap();
                synced.sync_through(number).await.unwrap();
                // Returned: the fsync that covers it has finished.
                assert!(*synced.synced.lock().await >= number);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(text.lines().count(), 200);
    }

    #[test]
    fn auto_syncs_only_with_a_store_whose_done_runs_outlive_a_crash() {
        let redis = StoreSpec::Redis("redis://127.0.0.1:6379".into());
        assert!(JsonlFsync::Auto.syncs_with(&redis));
        assert!(!JsonlFsync::Auto.syncs_with(&StoreSpec::Memory));
        assert!(JsonlFsync::Always.syncs_with(&StoreSpec::Memory));
        assert!(!JsonlFsync::Never.syncs_with(&redis));
    }
}
