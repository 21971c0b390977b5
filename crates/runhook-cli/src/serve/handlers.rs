//! The three handlers `runhook serve` offers: append to a JSON-lines file, run a command, or
//! forward to a URL ([`super::forward`]). Each gets the event as one JSON object ([`crate::event_json::record_line`]).

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use runhook::payload::RunEvent;
use runhook::{Handler, HandlerError};

use tokio::io::AsyncWriteExt as _;

use super::config::{HandlerKind, ServeConfig, ServeConfigError};
use super::forward::{self, ForwardSettings};
use crate::event_json;

/// The handler `config` names, ready to run. A JSON-lines file is opened (created if needed)
/// now, so that a path that cannot be written fails at start rather than at the first event.
pub fn build(config: &ServeConfig) -> Result<Arc<dyn Handler>, ServeConfigError> {
    match &config.handler {
        HandlerKind::Jsonl(path) => jsonl(path),
        HandlerKind::Exec(command) => Ok(exec(command.clone())),
        HandlerKind::Forward(url) => Ok(forward::handler(url, &ForwardSettings::of(config)?)?),
    }
}

/// Appends each event as one line, to a file created with mode `0600` on unix (an existing
/// file keeps its mode). Each line is written whole, with one `write` under a
/// lock, so concurrent workers never interleave them. The file is written synchronously: an
/// append of a few kilobytes lands in the page cache in microseconds, far less than a hop to
/// tokio's blocking pool would cost.
fn jsonl(path: &Path) -> Result<Arc<dyn Handler>, ServeConfigError> {
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
    let file = Arc::new(std::sync::Mutex::new(file));
    Ok(Arc::new(move |event: Arc<RunEvent>| {
        let file = file.clone();
        async move {
            let line = event_json::record_line(&event)?;
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(&line)?;
            Ok::<(), HandlerError>(())
        }
    }))
}

/// Runs `sh -c command` with the event JSON on standard input and `RUNHOOK_PROVIDER`,
/// `RUNHOOK_RUN_ID` (unset when the platform names no run), `RUNHOOK_DEDUP_KEY`,
/// `RUNHOOK_STATUS` and `RUNHOOK_SOURCE` (`webhook` or `reconciled`) in its environment. A non-zero
/// exit is a failed attempt; a command still running when the attempt times out is killed.
fn exec(command: String) -> Arc<dyn Handler> {
    Arc::new(move |event: Arc<RunEvent>| {
        let command = command.clone();
        async move {
            let input = event_json::record_line(&event)?;
            let mut child = tokio::process::Command::new("sh");
            child
                .arg("-c")
                .arg(&command)
                .env("RUNHOOK_PROVIDER", event.provider.as_str())
                .env("RUNHOOK_DEDUP_KEY", &event.dedup_key)
                .env("RUNHOOK_STATUS", event.status.as_str())
                .env("RUNHOOK_SOURCE", event.source.as_str());
            // Unset, not empty or a hash, when the platform names no run (webrun-ai).
            match &event.run_id {
                Some(run_id) => child.env("RUNHOOK_RUN_ID", run_id),
                None => child.env_remove("RUNHOOK_RUN_ID"),
            };
            let mut child = child
                .stdin(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start `sh -c {command}`: {e}"))?;
            if let Some(mut stdin) = child.stdin.take() {
                // A command that does not read its input closes the pipe early: not a failure.
                match stdin.write_all(&input).await {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                    _ => {}
                }
            }
            let status = child.wait().await?;
            if status.success() {
                Ok::<(), HandlerError>(())
            } else {
                Err(format!("command exited with {status}").into())
            }
        }
    })
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_new_jsonl_file_is_private_to_its_owner() {
        let dir = std::env::temp_dir().join(format!("runhook-jsonl-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let _ = std::fs::remove_file(&path);
        let route = super::super::config::RouteSpec::new(
            "/hook",
            runhook::payload::Provider::Skyvern,
            vec!["K".into()],
        );
        build(&ServeConfig::new(
            vec![route],
            HandlerKind::Jsonl(path.clone()),
        ))
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }
}
