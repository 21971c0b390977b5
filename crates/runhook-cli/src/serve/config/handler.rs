//! Where `runhook serve` sends processed events: the `[handler]` table or a handler flag.

use std::path::PathBuf;

use serde::Deserialize;

use super::StoreSpec;

use super::ServeConfigError;
use crate::serve::forward::ForwardUrl;

/// Where processed events go: exactly one of the three.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSpec {
    /// Append each event as one JSON line to this file.
    pub jsonl: Option<PathBuf>,
    /// With `jsonl`: when each line is flushed to disk before its run is recorded done.
    #[serde(default)]
    pub jsonl_fsync: JsonlFsync,
    /// Run this shell command with the event JSON on standard input.
    pub exec: Option<String>,
    /// With `exec`: variables of serve's environment the command also gets, besides `PATH`,
    /// `HOME`, `LANG`, `TZ` and the `RUNHOOK_*` ones.
    #[serde(default)]
    pub exec_env: Vec<String>,
    /// POST the event JSON to this URL.
    pub forward: Option<String>,
}

/// Without the forward URL, whose path or query may hold a secret.
impl std::fmt::Debug for HandlerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerSpec")
            .field("jsonl", &self.jsonl)
            .field("jsonl_fsync", &self.jsonl_fsync)
            .field("exec", &self.exec)
            .field("exec_env", &self.exec_env)
            .field("forward", &self.forward.as_ref().map(|_| "<url>"))
            .finish()
    }
}

/// Reads a `[handler]` table as the one handler it must name.
pub(super) fn from_spec<'de, D: serde::Deserializer<'de>>(de: D) -> Result<HandlerKind, D::Error> {
    HandlerSpec::deserialize(de)?
        .kind()
        .map_err(serde::de::Error::custom)
}

/// The one handler a [`HandlerSpec`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerKind {
    /// Append JSON lines to a file.
    Jsonl(JsonlSpec),
    /// Run a shell command per event.
    Exec(ExecSpec),
    /// POST each event to a URL (shown by its origin only).
    Forward(ForwardUrl),
}

impl HandlerSpec {
    /// The handler named, or why the spec does not name exactly one.
    pub fn kind(&self) -> Result<HandlerKind, ServeConfigError> {
        let named = [
            self.jsonl.clone().map(|path| {
                HandlerKind::Jsonl(JsonlSpec {
                    path,
                    fsync: self.jsonl_fsync,
                })
            }),
            self.exec
                .clone()
                .map(|command| ExecSpec::new(command, self.exec_env.clone()))
                .transpose()?
                .map(HandlerKind::Exec),
            self.forward
                .as_deref()
                .map(ForwardUrl::parse)
                .transpose()?
                .map(HandlerKind::Forward),
        ];
        let mut named = named.into_iter().flatten();
        match (named.next(), named.next()) {
            (Some(kind), None) => Ok(kind),
            (None, _) => Err(ServeConfigError::NoHandler),
            (Some(_), Some(_)) => Err(ServeConfigError::MoreThanOne),
        }
    }
}

/// A command run per event, and the variables of serve's environment it may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// The shell command (`sh -c`).
    pub command: String,
    /// Variables passed on from serve's environment besides [`ExecSpec::ALWAYS_PASSED`]:
    /// nothing else reaches the command (not the secrets, not the run API key).
    pub pass_env: Vec<String>,
}

impl ExecSpec {
    /// Variables every command gets from serve's environment (when set), besides the
    /// `RUNHOOK_*` ones runhook sets per event.
    pub const ALWAYS_PASSED: [&'static str; 4] = ["PATH", "HOME", "LANG", "TZ"];

    /// `command`, passed `pass_env` besides the usual ones; refuses a name that cannot be a
    /// variable's.
    pub fn new(command: String, pass_env: Vec<String>) -> Result<Self, ServeConfigError> {
        let valid = |name: &str| {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if let Some(bad) = pass_env.iter().find(|name| !valid(name)) {
            return Err(ServeConfigError::ExecEnvName(bad.clone()));
        }
        Ok(Self { command, pass_env })
    }
}

/// A JSON-lines file events are appended to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonlSpec {
    /// The file.
    pub path: PathBuf,
    /// When lines are flushed to disk.
    pub fsync: JsonlFsync,
}

/// Whether each line is flushed to disk (`fsync`) before its run is recorded done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum JsonlFsync {
    /// When the store keeps done runs across a crash (Redis): a run recorded done is then on
    /// disk too. With the memory store a crash forgets the done runs and the queue anyway, and
    /// the line stays in the page cache.
    #[default]
    Auto,
    /// Always: every line is on disk before its run is recorded done.
    Always,
    /// Never: lines reach the disk when the kernel writes them back (a machine crash may lose
    /// the last seconds of lines whose runs are recorded done).
    Never,
}

impl JsonlFsync {
    /// Whether lines are flushed with `store` in use.
    pub fn syncs_with(self, store: &StoreSpec) -> bool {
        match self {
            JsonlFsync::Always => true,
            JsonlFsync::Never => false,
            JsonlFsync::Auto => !matches!(store, StoreSpec::Memory),
        }
    }
}
