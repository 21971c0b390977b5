//! The three handlers `runhook serve` offers: append to a JSON-lines file, run a command, or
//! forward to a URL ([`super::forward`]). Each gets the event as one JSON object ([`crate::event_json::record_line`]).

use std::process::Stdio;
use std::sync::Arc;

use runhook::payload::RunEvent;
use runhook::{Handler, HandlerError};

use tokio::io::AsyncWriteExt as _;

use super::config::{ExecSpec, HandlerKind, JsonlSpec, ServeConfig, ServeConfigError};
use super::forward::{self, ForwardSettings};
use crate::event_json;

/// The handler `config` names, ready to run. A JSON-lines file is opened (created if needed)
/// now, so that a path that cannot be written fails at start rather than at the first event.
pub fn build(config: &ServeConfig) -> Result<Arc<dyn Handler>, ServeConfigError> {
    match &config.handler {
        HandlerKind::Jsonl(JsonlSpec { path, fsync }) => {
            super::jsonl::handler(path, *fsync, &config.store)
        }
        HandlerKind::Exec(spec) => Ok(exec(spec.clone())),
        HandlerKind::Forward(url) => Ok(forward::handler(
            url,
            &ForwardSettings::of(config)?,
            config.proxy.as_deref(),
        )?),
    }
}

/// Runs `sh -c command` with the event JSON on standard input and `RUNHOOK_PROVIDER`,
/// `RUNHOOK_RUN_ID` (unset when the platform names no run), `RUNHOOK_DEDUP_KEY`,
/// `RUNHOOK_STATUS` and `RUNHOOK_SOURCE` (`webhook` or `reconciled`) in its environment, which
/// otherwise holds only `PATH`, `HOME`, `LANG`, `TZ` and the variables the user named
/// ([`ExecSpec::pass_env`]). A non-zero exit is a failed attempt. The command runs in a process
/// group of its own: when the attempt times out, the whole group is killed, not only `sh`.
fn exec(spec: ExecSpec) -> Arc<dyn Handler> {
    let passed: Arc<[(String, std::ffi::OsString)]> = ExecSpec::ALWAYS_PASSED
        .iter()
        .map(|name| name.to_string())
        .chain(spec.pass_env.iter().cloned())
        .filter_map(|name| std::env::var_os(&name).map(|value| (name, value)))
        .collect();
    let command = spec.command;
    Arc::new(move |event: Arc<RunEvent>| {
        let (command, passed) = (command.clone(), passed.clone());
        async move {
            let input = event_json::record_line(&event)?;
            let mut child = tokio::process::Command::new("sh");
            child
                .arg("-c")
                .arg(&command)
                .env_clear()
                .envs(passed.iter().map(|(name, value)| (name, value)))
                .env("RUNHOOK_PROVIDER", event.provider.as_str())
                .env("RUNHOOK_DEDUP_KEY", &event.dedup_key)
                .env("RUNHOOK_STATUS", event.status.as_str())
                .env("RUNHOOK_SOURCE", event.source.as_str())
                .env("RUNHOOK_FINAL", bool_text(event.phase.is_final()));
            // Unset when the platform numbers no attempts.
            if let Some(attempt) = event.attempt {
                child.env("RUNHOOK_ATTEMPT", attempt.to_string());
            }
            // Unset, not empty or a hash, when the platform names no run (webrun-ai).
            if let Some(run_id) = &event.run_id {
                child.env("RUNHOOK_RUN_ID", run_id);
            }
            #[cfg(unix)]
            child.process_group(0);
            let mut child = child
                .stdin(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start `sh -c {command}`: {e}"))?;
            let group = ProcessGroup::of(&child);
            if let Some(mut stdin) = child.stdin.take() {
                // A command that does not read its input closes the pipe early: not a failure.
                match stdin.write_all(&input).await {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                    _ => {}
                }
            }
            let status = child.wait().await?;
            group.finished();
            if status.success() {
                Ok::<(), HandlerError>(())
            } else {
                Err(format!("command exited with {status}").into())
            }
        }
    })
}

/// The process group of a command being run: killed whole (SIGKILL to the group) if the
/// attempt is dropped before the command ended (a timeout, a lost claim, a shutdown), so that
/// what the command started in the background dies with it.
struct ProcessGroup {
    #[cfg(unix)]
    leader: Option<rustix::process::Pid>,
}

impl ProcessGroup {
    fn of(child: &tokio::process::Child) -> Self {
        #[cfg(unix)]
        {
            let leader = child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw);
            Self { leader }
        }
        #[cfg(not(unix))]
        {
            let _ = child;
            Self {}
        }
    }

    /// The command ended by itself: nothing to kill.
    fn finished(mut self) {
        #[cfg(unix)]
        {
            self.leader = None;
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(leader) = self.leader {
            let _ = rustix::process::kill_process_group(leader, rustix::process::Signal::KILL);
        }
    }
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
            HandlerKind::Jsonl(JsonlSpec {
                path: path.clone(),
                fsync: super::super::config::JsonlFsync::Auto,
            }),
        ))
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }
}

/// `true` or `false`, as the event JSON spells a boolean.
fn bool_text(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}
