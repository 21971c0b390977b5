//! What each platform sends when a run finishes, typed, and [`RunEvent`]: one view across all
//! of them so that a handler is written once.
//!
//! Parsing is lenient where senders vary and strict where de-duplication depends on it: unknown
//! fields are kept (each payload has an `extra` map), missing optional fields are fine, and only
//! the run id (what de-duplication needs) is required. Bodies carrying `NaN`, `Infinity` or
//! integers beyond 64 bits (which Skyvern genuinely sends) parse; see [`json`] for how those
//! values are represented.

mod browser_use;
mod browserbase;
mod firecrawl;
pub mod json;
mod phase;
mod progress;
mod run_api;
mod skyvern;
mod smartbrowse;
mod tinyfish;
mod webrun;

use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

pub use browser_use::{BrowserUseEvent, BrowserUseTask};
pub use browserbase::BrowserbaseEvent;
pub use firecrawl::FirecrawlEvent;
use phase::Attempt;
pub use phase::{parse_iso8601, RunPhase};
pub use run_api::{from_run_api, ApiRun, RunApiError};
pub use skyvern::{SkyvernAttempt, SkyvernRun};
pub use smartbrowse::SmartBrowseRun;
pub use tinyfish::{TinyFishError, TinyFishRun, TinyFishRunData, TinyFishStep};
pub use webrun::{WebRunData, WebRunFullResponse, WebRunPayload, WebRunPing, WebRunUsage};

/// Longest run id accepted, in bytes. Ids of every documented sender are far shorter; the bound
/// keeps de-duplication keys (and the memory of idempotency stores) small.
pub const MAX_RUN_ID_LEN: usize = 256;

/// The platforms runhook understands, and the payload kind each route receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// Skyvern task and workflow runs.
    Skyvern,
    /// TinyFish runs (`run.completed`, `run.failed`, `run.cancelled`).
    TinyFish,
    /// WebRun with `submittedData` `full_response` or `just_ping` (both carry `taskId`).
    WebRun,
    /// WebRun with `submittedData` `ai_response`: the user's own schema output, with no id.
    WebRunAi,
    /// SmartBrowse recipe runs.
    SmartBrowse,
    /// Browserbase events (Functions invocations, sessions), signed with Standard Webhooks.
    Browserbase,
    /// Firecrawl crawl, batch scrape, extract and agent job events.
    Firecrawl,
    /// Browser Use task status updates (`agent.task.status_update`).
    BrowserUse,
}

impl Provider {
    /// Every provider, in a stable order.
    pub const ALL: [Provider; 8] = [
        Provider::Skyvern,
        Provider::TinyFish,
        Provider::WebRun,
        Provider::WebRunAi,
        Provider::SmartBrowse,
        Provider::Browserbase,
        Provider::Firecrawl,
        Provider::BrowserUse,
    ];

    /// The provider's name as used in de-duplication keys and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Skyvern => "skyvern",
            Provider::TinyFish => "tinyfish",
            Provider::WebRun => "webrun",
            Provider::WebRunAi => "webrun-ai",
            Provider::SmartBrowse => "smartbrowse",
            Provider::Browserbase => "browserbase",
            Provider::Firecrawl => "firecrawl",
            Provider::BrowserUse => "browser-use",
        }
    }

    /// The provider named `name` (as [`Provider::as_str`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The de-duplication key of run `id`: `<provider>:<id>` (for `webrun-ai`, `id` is the
    /// body's hash). Webhooks, expectations and dead letters all key a run this way.
    ///
    /// ```
    /// use runhook_core::payload::Provider;
    /// assert_eq!(Provider::Skyvern.dedup_key("wr_1"), "skyvern:wr_1");
    /// ```
    pub fn dedup_key(self, id: &str) -> String {
        format!("{}:{id}", self.as_str())
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run's outcome, across platforms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunStatus {
    /// Finished and produced its result.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped by a person or the platform (Skyvern `canceled`, TinyFish `CANCELLED`).
    Cancelled,
    /// Stopped by the agent itself (Skyvern `terminated`).
    Terminated,
    /// Ran out of time (Skyvern `timed_out`).
    TimedOut,
    /// A status runhook does not know, with the sender's original text.
    Unknown(String),
}

impl RunStatus {
    /// Maps a sender's status or event text (any case; `run.` prefix ignored) to a status.
    pub fn from_text(text: &str) -> Self {
        let lower = text.trim().to_ascii_lowercase();
        let name = lower.strip_prefix("run.").unwrap_or(&lower);
        match name {
            "completed" | "task_completed" => RunStatus::Completed,
            "failed" => RunStatus::Failed,
            "cancelled" | "canceled" => RunStatus::Cancelled,
            "terminated" => RunStatus::Terminated,
            "timed_out" => RunStatus::TimedOut,
            _ => RunStatus::Unknown(text.to_string()),
        }
    }

    /// Like [`RunStatus::from_text`]; a missing status is `Unknown` with empty text.
    pub(crate) fn from_optional(text: Option<&str>) -> Self {
        text.map_or(RunStatus::Unknown(String::new()), RunStatus::from_text)
    }

    /// Whether the run is over. Every known status is terminal: senders only call when a run
    /// ends. `Unknown` is not, so that a handler does not act on a state it cannot interpret.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, RunStatus::Unknown(_))
    }

    /// The status as `runhook parse` prints it: `completed`, `failed`, `cancelled`,
    /// `terminated`, `timed_out` or `unknown`.
    pub fn as_str(&self) -> &str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Terminated => "terminated",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Unknown(_) => "unknown",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run failed, across platforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError {
    /// The sender's error message.
    pub message: String,
    /// The sender's category of error, where it gives one (TinyFish: `AGENT_FAILURE`, ...).
    pub category: Option<String>,
}

impl RunError {
    /// An `error` field as a sender wrote it (Firecrawl, Browser Use): a non-blank string is
    /// the message, any other JSON value its text; absent, `null` or blank is no error.
    pub(super) fn from_json(error: Option<Value>) -> Option<Self> {
        let message = match error {
            Some(Value::String(message)) if !message.trim().is_empty() => message,
            Some(Value::Null) | Some(Value::String(_)) | None => return None,
            Some(other) => other.to_string(),
        };
        Some(RunError {
            message,
            category: None,
        })
    }
}

/// When the run happened, as the sender wrote it (Skyvern's times carry no zone; they are UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunTimestamps {
    /// When the run was created.
    pub created_at: Option<String>,
    /// When the run started executing.
    pub started_at: Option<String>,
    /// When the run finished (or the sender's completion / event time).
    pub finished_at: Option<String>,
}

/// The typed payload as the platform sent it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ProviderPayload {
    /// A Skyvern task or workflow run.
    Skyvern(Box<SkyvernRun>),
    /// A TinyFish run event.
    TinyFish(Box<TinyFishRun>),
    /// A WebRun `full_response` or `just_ping`.
    WebRun(WebRunPayload),
    /// A WebRun `ai_response`: the user's schema output, as sent.
    WebRunAi(Value),
    /// A SmartBrowse run event.
    SmartBrowse(Box<SmartBrowseRun>),
    /// A Browserbase event.
    Browserbase(Box<BrowserbaseEvent>),
    /// A Firecrawl job event.
    Firecrawl(Box<FirecrawlEvent>),
    /// A Browser Use task status update or ping.
    BrowserUse(Box<BrowserUseEvent>),
}

/// A platform's typed payload, for [`RunEvent::payload_as`]: [`SkyvernRun`], [`TinyFishRun`],
/// [`WebRunPayload`] or [`SmartBrowseRun`]. Sealed: the set follows [`ProviderPayload`].
pub trait PayloadOf: sealed::Sealed + Sized {
    /// The platform whose payload this is.
    const PROVIDER: Provider;

    /// This type's payload inside `payload`, if `payload` is this platform's.
    fn of(payload: &ProviderPayload) -> Option<&Self>;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! payload_of {
    ($type:ty, $provider:ident, |$payload:ident| $extract:expr) => {
        impl sealed::Sealed for $type {}

        impl PayloadOf for $type {
            const PROVIDER: Provider = Provider::$provider;

            fn of($payload: &ProviderPayload) -> Option<&Self> {
                $extract
            }
        }
    };
}

payload_of!(SkyvernRun, Skyvern, |payload| match payload {
    ProviderPayload::Skyvern(run) => Some(run),
    _ => None,
});
payload_of!(TinyFishRun, TinyFish, |payload| match payload {
    ProviderPayload::TinyFish(run) => Some(run),
    _ => None,
});
payload_of!(WebRunPayload, WebRun, |payload| match payload {
    ProviderPayload::WebRun(webrun) => Some(webrun),
    _ => None,
});
payload_of!(SmartBrowseRun, SmartBrowse, |payload| match payload {
    ProviderPayload::SmartBrowse(run) => Some(run),
    _ => None,
});
payload_of!(BrowserbaseEvent, Browserbase, |payload| match payload {
    ProviderPayload::Browserbase(event) => Some(event),
    _ => None,
});
payload_of!(FirecrawlEvent, Firecrawl, |payload| match payload {
    ProviderPayload::Firecrawl(event) => Some(event),
    _ => None,
});
payload_of!(BrowserUseEvent, BrowserUse, |payload| match payload {
    ProviderPayload::BrowserUse(event) => Some(event),
    _ => None,
});

/// Why [`RunEvent::payload_as`] has no payload of the asked type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadAsError {
    /// The body is not the provider's payload.
    #[error("{0}")]
    Unparseable(PayloadError),
    /// The event is another platform's.
    #[error("the event is {actual}'s, not {wanted}'s")]
    OtherProvider {
        /// The event's platform.
        actual: Provider,
        /// The platform of the type asked for.
        wanted: Provider,
    },
}

/// How a run reached the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// The platform's webhook delivered it.
    Webhook,
    /// No webhook came in time: a reconciler fetched the run from the platform's run API.
    Reconciled,
    /// No webhook came: a sweep of the platform's recent runs found it finished.
    Swept,
}

impl EventSource {
    /// `webhook`, `reconciled` or `swept`, as event JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Webhook => "webhook",
            EventSource::Reconciled => "reconciled",
            EventSource::Swept => "swept",
        }
    }

    /// The source [`EventSource::as_str`] spells `name`; `None` for any other text.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Webhook, Self::Reconciled, Self::Swept]
            .into_iter()
            .find(|source| source.as_str() == name)
    }

    /// Whether the run's data came from the platform's run API (confirmed by it), not from a
    /// POSTed body.
    pub fn is_from_run_api(self) -> bool {
        matches!(self, EventSource::Reconciled | EventSource::Swept)
    }
}

/// Whether a run's data was confirmed with the platform's run API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// The data is the POSTed body's, as authenticated by the route's scheme.
    Unconfirmed,
    /// The data is what the platform's run API returned for the run.
    Confirmed,
}

impl Confirmation {
    /// Whether the data came from the run API.
    pub fn is_confirmed(self) -> bool {
        self == Confirmation::Confirmed
    }
}

/// One finished run, whatever platform reported it.
///
/// The summary fields are read when the event is made; the typed payload (with the run's
/// result, which can be large) is read in full by [`RunEvent::parse`], or on first use after
/// [`RunEvent::parse_summary`], so that a handler that needs only the id and status never pays
/// for building the rest.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunEvent {
    /// Which platform sent it.
    pub provider: Provider,
    /// The idempotency key, scoped by provider: `skyvern:<run_id>`, `tinyfish:<run_id>`,
    /// `webrun:<taskId>`, `webrun-ai:<hex sha256 of the body>`, `smartbrowse:<run_id>`,
    /// `browserbase:<resourceId>`, `firecrawl:<id>`, `browser-use:<task_id>`. A Browserbase or
    /// Firecrawl event that does not end its job (`crawl.page`, `agent.action`, `…started`)
    /// is keyed `<provider>:<id>#<its delivery id>`, and a Browser Use status that does not
    /// end its task `browser-use:<task_id>#<status>` (a ping: `browser-use:test#<its time>`),
    /// so that it never takes the place of the job's end;
    /// an interim event has its attempt's own key, `skyvern:<run_id>#attempt-<n>`
    /// ([`Provider::attempt_dedup_key`]).
    pub dedup_key: String,
    /// The platform's own run id; `None` for `webrun-ai`, whose `ai_response` body carries
    /// none (its [`dedup_key`](RunEvent::dedup_key) is the body's hash instead: see
    /// [`RunIdentity`]). An `Option` rather than the hash, so that nothing shows or sends a
    /// hash as if the platform had named the run with it.
    pub run_id: Option<String>,
    /// The run's outcome (an interim event's: the attempt's).
    pub status: RunStatus,
    /// Which attempt of the run this reports, when the platform numbers them (Skyvern
    /// workflow runs with a retry policy; 1 for the first).
    pub attempt: Option<u32>,
    /// Whether this is the run's outcome or an attempt's that the platform will retry.
    pub phase: RunPhase,
    /// The platform's own event name (`run.completed`, `completed`, `task_completed`), if any.
    pub event: Option<String>,
    /// Why it failed, if it did.
    pub error: Option<RunError>,
    /// When it happened.
    pub timestamps: RunTimestamps,
    /// The body exactly as received.
    pub raw_body: Bytes,
    /// When the delivery's signature matched only the body's canonical form
    /// ([`BodyMatch::Canonical`](crate::BodyMatch::Canonical)): the canonical bytes the sender
    /// signed. `None` when the raw body is what was signed (or nothing was). Set by the
    /// receiver; not carried through a Redis stream hand-off.
    pub signed_body: Option<Bytes>,
    /// How the run reached the receiver: its webhook, or a reconciliation that fetched it
    /// from the platform's run API.
    pub source: EventSource,
    /// Whether this is the run as the platform's run API gave it (confirmed), rather than as
    /// the POSTed body said.
    pub confirmation: Confirmation,
    /// The typed payload, read on first use.
    payload: OnceLock<Result<ProviderPayload, PayloadError>>,
    /// WebRun's answer parsed out of its string (the only result not stored in the payload).
    parsed_message: OnceLock<Option<Value>>,
    /// Where the result lies in `raw_body`.
    result_span: ResultSpan,
}

impl RunEvent {
    /// Parses `body` as `provider`'s payload, in full: any field of the wrong type is an error.
    ///
    /// ```
    /// use runhook_core::payload::{Provider, RunEvent, RunStatus};
    ///
    /// let body = br#"{"event":"run.failed","run_id":"r-1","status":"FAILED",
    ///     "data":{"error":{"message":"Site blocked access","category":"AGENT_FAILURE"},"result":null}}"#;
    /// let event = RunEvent::parse(Provider::TinyFish, &body[..])?;
    /// assert_eq!(event.dedup_key, "tinyfish:r-1");
    /// assert_eq!(event.status, RunStatus::Failed);
    /// assert_eq!(event.error.unwrap().category.as_deref(), Some("AGENT_FAILURE"));
    /// # Ok::<(), runhook_core::payload::PayloadError>(())
    /// ```
    pub fn parse(provider: Provider, body: impl Into<Bytes>) -> Result<Self, PayloadError> {
        let event = Self::parse_summary(provider, body)?;
        let payload = parse_payload(provider, &event.raw_body)?;
        let _ = event.payload.set(Ok(payload));
        Ok(event)
    }

    /// Parses only the summary fields (id, status, event, error, timestamps), checking that
    /// the body is JSON; the typed payload is read on first use of [`RunEvent::payload`] or
    /// [`RunEvent::result`], and an error in it is reported there.
    pub fn parse_summary(provider: Provider, body: impl Into<Bytes>) -> Result<Self, PayloadError> {
        let raw_body: Bytes = body.into();
        // A progress event's key qualifier (Browserbase, Firecrawl): see `dedup_key`.
        let mut progress = None;
        // Only platforms that retry runs under one id fill it in.
        let mut attempt = Attempt::default();
        let parts = match provider {
            Provider::Skyvern => skyvern::summary(&raw_body, &mut attempt)?,
            Provider::TinyFish => tinyfish::summary(&raw_body)?,
            Provider::WebRun => webrun::summary(&raw_body)?,
            Provider::WebRunAi => webrun::ai_summary(&raw_body, body_sha256_hex(&raw_body))?,
            Provider::SmartBrowse => smartbrowse::summary(&raw_body)?,
            Provider::Browserbase => keyed(browserbase::summary(&raw_body)?, &mut progress),
            Provider::Firecrawl => keyed(firecrawl::summary(&raw_body)?, &mut progress),
            Provider::BrowserUse => keyed(browser_use::summary(&raw_body)?, &mut progress),
        };
        check_run_id(&parts.run_id, parts.id_field)?;
        let mut dedup_key =
            provider.attempt_dedup_key(&parts.run_id, attempt.number, &attempt.phase);
        if let Some(qualifier) = progress {
            check_run_id(&qualifier, "id")?;
            dedup_key = format!("{dedup_key}#{qualifier}");
        }
        Ok(RunEvent {
            provider,
            dedup_key,
            run_id: provider.identity().own_id(parts.run_id),
            status: parts.status,
            attempt: attempt.number,
            phase: attempt.phase,
            event: parts.event,
            error: parts.error,
            timestamps: parts.timestamps,
            result_span: parts.result,
            raw_body,
            signed_body: None,
            source: EventSource::Webhook,
            confirmation: Confirmation::Unconfirmed,
            payload: OnceLock::new(),
            parsed_message: OnceLock::new(),
        })
    }

    /// The run's result as the sender wrote it, sliced out of [`RunEvent::raw_body`] without a
    /// second parse, when the body is strict JSON.
    ///
    /// ```
    /// use runhook_core::payload::{Provider, RawResult, RunEvent};
    ///
    /// let body = br#"{"run_id":"wr_1","status":"completed","output":{"price": 1.50}}"#;
    /// let event = RunEvent::parse_summary(Provider::Skyvern, &body[..])?;
    /// assert_eq!(event.raw_result(), RawResult::Json(br#"{"price": 1.50}"#));
    /// # Ok::<(), runhook_core::payload::PayloadError>(())
    /// ```
    pub fn raw_result(&self) -> RawResult<'_> {
        match &self.result_span {
            ResultSpan::Slice(span) => match self.raw_body.get(span.clone()) {
                Some(json) => RawResult::Json(json),
                None => RawResult::NotASlice,
            },
            ResultSpan::Absent => RawResult::Absent,
            ResultSpan::NotASlice => RawResult::NotASlice,
        }
    }

    /// The typed payload of the platform `T` belongs to, without matching on
    /// [`ProviderPayload`] (read now if it was not yet).
    ///
    /// ```
    /// use runhook_core::payload::{PayloadAsError, Provider, RunEvent, SkyvernRun, TinyFishRun};
    ///
    /// let body = br#"{"run_id":"wr_1","status":"completed","output":{"n":1}}"#;
    /// let event = RunEvent::parse_summary(Provider::Skyvern, &body[..])?;
    /// let run: &SkyvernRun = event.payload_as()?;
    /// assert_eq!(run.output, Some(serde_json::json!({"n": 1})));
    /// assert!(matches!(
    ///     event.payload_as::<TinyFishRun>(),
    ///     Err(PayloadAsError::OtherProvider { actual: Provider::Skyvern, wanted: Provider::TinyFish })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload_as<T: PayloadOf>(&self) -> Result<&T, PayloadAsError> {
        let payload = self
            .payload()
            .map_err(|err| PayloadAsError::Unparseable(err.clone()))?;
        T::of(payload).ok_or(PayloadAsError::OtherProvider {
            actual: self.provider,
            wanted: T::PROVIDER,
        })
    }

    /// The typed payload as the platform sent it (read now if it was not yet).
    pub fn payload(&self) -> Result<&ProviderPayload, &PayloadError> {
        self.payload
            .get_or_init(|| parse_payload(self.provider, &self.raw_body))
            .as_ref()
    }

    /// What the run produced: Skyvern's `output`, TinyFish's `data.result`, WebRun's
    /// `data.message` (parsed when it is JSON, else the text), the whole `ai_response` body.
    /// SmartBrowse's `result` when the run was fetched from its run API (its webhook carries
    /// counts only). `None` when the sender gave none (or `null`), and when the payload does
    /// not parse ([`RunEvent::payload`] says why).
    pub fn result(&self) -> Option<&Value> {
        let result = match self.payload().ok()? {
            ProviderPayload::Skyvern(run) => run.output.as_ref(),
            ProviderPayload::TinyFish(run) => run.data.as_ref().and_then(|d| d.result.as_ref()),
            ProviderPayload::WebRun(payload) => self
                .parsed_message
                .get_or_init(|| webrun::message_result(payload))
                .as_ref(),
            ProviderPayload::WebRunAi(output) => Some(output),
            ProviderPayload::SmartBrowse(run) => run.extra.get("result"),
            ProviderPayload::Browserbase(event) => {
                event.data.as_ref().and_then(|data| data.get("results"))
            }
            ProviderPayload::Firecrawl(event) => event.data.as_ref(),
            ProviderPayload::BrowserUse(event) => event.payload.output.as_ref(),
        };
        result.filter(|value| !value.is_null())
    }
}

fn parse_payload(provider: Provider, body: &[u8]) -> Result<ProviderPayload, PayloadError> {
    match provider {
        Provider::Skyvern => skyvern::payload(body),
        Provider::TinyFish => tinyfish::payload(body),
        Provider::WebRun => webrun::payload(body),
        Provider::WebRunAi => webrun::ai_payload(body),
        Provider::SmartBrowse => smartbrowse::payload(body),
        Provider::Browserbase => browserbase::payload(body),
        Provider::Firecrawl => firecrawl::payload(body),
        Provider::BrowserUse => browser_use::payload(body),
    }
}

/// `parts`, its progress qualifier moved to `progress`.
fn keyed((parts, qualifier): (Parts, Option<String>), progress: &mut Option<String>) -> Parts {
    *progress = qualifier;
    parts
}

/// Just what de-duplication needs from a body, read without building the rest: the
/// acknowledgement path uses it; the background worker parses the whole [`RunEvent`] later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupProbe {
    /// The idempotency key, as [`RunEvent::dedup_key`] would give it.
    pub dedup_key: String,
    /// The platform's run id, as [`RunEvent::run_id`] would give it (`None` for `webrun-ai`).
    pub run_id: Option<String>,
}

impl DedupProbe {
    /// Reads `body`'s run id as `provider` sends it. The whole body is checked to be JSON, but
    /// only the id is kept; a body this accepts can still fail [`RunEvent::parse`] on a field of
    /// the wrong type.
    ///
    /// ```
    /// use runhook_core::payload::{DedupProbe, Provider};
    /// let probe = DedupProbe::read(Provider::WebRun, br#"{"event":"task_completed","taskId":"t9"}"#)?;
    /// assert_eq!(probe.dedup_key, "webrun:t9");
    /// # Ok::<(), runhook_core::payload::PayloadError>(())
    /// ```
    pub fn read(provider: Provider, body: &[u8]) -> Result<Self, PayloadError> {
        #[derive(serde::Deserialize)]
        struct RunId {
            run_id: String,
            attempt: Option<u32>,
            retry_pending: Option<bool>,
        }
        #[derive(serde::Deserialize)]
        struct TaskId {
            #[serde(rename = "taskId")]
            task_id: String,
        }
        let (run_id, field, attempt, phase) = match provider {
            Provider::Skyvern => {
                let read = json::object_from_body::<RunId>(body)?;
                let phase = RunPhase::of(read.retry_pending, None);
                (read.run_id, "run_id", read.attempt, phase)
            }
            // Only Skyvern retries runs under one id: the others' bodies name no attempt.
            Provider::TinyFish | Provider::SmartBrowse => {
                let read = json::object_from_body::<RunId>(body)?;
                (read.run_id, "run_id", None, RunPhase::Final)
            }
            Provider::WebRun => {
                let task_id = json::object_from_body::<TaskId>(body)?.task_id;
                (task_id, "taskId", None, RunPhase::Final)
            }
            Provider::WebRunAi => (body_sha256_hex(body), "body", None, RunPhase::Final),
            // The key may carry a progress qualifier: read as the event reads it.
            Provider::Browserbase | Provider::Firecrawl | Provider::BrowserUse => {
                let event = RunEvent::parse_summary(provider, Bytes::copy_from_slice(body))?;
                return Ok(Self {
                    dedup_key: event.dedup_key,
                    run_id: event.run_id,
                });
            }
        };
        check_run_id(&run_id, field)?;
        Ok(Self {
            dedup_key: provider.attempt_dedup_key(&run_id, attempt, &phase),
            run_id: provider.identity().own_id(run_id),
        })
    }
}

/// Where a platform's deliveries get the identity their de-duplication key is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunIdentity {
    /// The platform's own run id, read from this field of the body (`run_id`, `taskId`).
    RunId {
        /// The field's name.
        field: &'static str,
    },
    /// The payload names no run (WebRun's `ai_response`): the body's hex SHA-256 stands in,
    /// in the de-duplication key only; [`RunEvent::run_id`] is `None`.
    BodyHash,
}

impl RunIdentity {
    /// `id` as the platform's own run id, or `None` when it is a stand-in.
    fn own_id(self, id: String) -> Option<String> {
        match self {
            RunIdentity::RunId { .. } => Some(id),
            RunIdentity::BodyHash => None,
        }
    }
}

impl Provider {
    /// Where this platform's de-duplication key comes from.
    ///
    /// ```
    /// use runhook_core::payload::{Provider, RunIdentity};
    /// assert_eq!(Provider::WebRun.identity(), RunIdentity::RunId { field: "taskId" });
    /// assert_eq!(Provider::WebRunAi.identity(), RunIdentity::BodyHash);
    /// ```
    pub const fn identity(self) -> RunIdentity {
        match self {
            Provider::Skyvern | Provider::TinyFish | Provider::SmartBrowse => {
                RunIdentity::RunId { field: "run_id" }
            }
            Provider::WebRun => RunIdentity::RunId { field: "taskId" },
            Provider::Browserbase => RunIdentity::RunId {
                field: "resourceId",
            },
            Provider::Firecrawl => RunIdentity::RunId { field: "id" },
            Provider::BrowserUse => RunIdentity::RunId {
                field: "payload.task_id",
            },
            Provider::WebRunAi => RunIdentity::BodyHash,
        }
    }
}

fn check_run_id(run_id: &str, field: &str) -> Result<(), PayloadError> {
    if run_id.trim().is_empty() {
        return Err(PayloadError::InvalidField {
            path: field.into(),
            reason: "is empty".into(),
        });
    }
    if run_id.len() > MAX_RUN_ID_LEN {
        return Err(PayloadError::RunIdTooLong {
            field: field.into(),
            run_id: run_id.into(),
        });
    }
    // No handler could pass such an id on (a header, an environment variable, a command's
    // argument), and a run API would read `.` and `..` as its own path: genuine, but set aside.
    if run_id.chars().any(char::is_control) {
        return Err(PayloadError::InvalidField {
            path: field.into(),
            reason: "contains a control character".into(),
        });
    }
    if matches!(run_id, "." | "..") {
        return Err(PayloadError::InvalidField {
            path: field.into(),
            reason: "is a relative path segment (`.` or `..`)".into(),
        });
    }
    Ok(())
}

/// What each provider module extracts for the unified view.
struct Parts {
    /// The run id, or the stand-in for a platform without one ([`RunIdentity::BodyHash`]).
    run_id: String,
    /// The field the run id came from, for error messages.
    id_field: &'static str,
    status: RunStatus,
    event: Option<String>,
    error: Option<RunError>,
    timestamps: RunTimestamps,
    /// Where the result lies in the body.
    result: ResultSpan,
}

/// Where the run's result lies in the body, as reading the summary found it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ResultSpan {
    /// These bytes of a strict-JSON body.
    Slice(Range<usize>),
    /// The body is strict JSON and holds no result (or `null`).
    Absent,
    /// Not known as a slice of a strict-JSON body (see [`RawResult::NotASlice`]).
    NotASlice,
}

impl ResultSpan {
    /// Where `result`, read from `body` by a strict parse, lies in it.
    fn of(body: &[u8], result: Option<&serde_json::value::RawValue>) -> Self {
        let Some(text) = result.map(serde_json::value::RawValue::get) else {
            return Self::Absent;
        };
        if text == "null" {
            return Self::Absent;
        }
        // The text borrows from `body`: its offset is the distance between their addresses,
        // and a span inside the body's range is those very bytes (no comparison needed).
        let start = text.as_ptr().addr().wrapping_sub(body.as_ptr().addr());
        match start.checked_add(text.len()) {
            Some(end) if end <= body.len() => Self::Slice(start..end),
            _ => Self::NotASlice,
        }
    }
}

/// The run's result as the sender wrote it, found while the summary was read (no second
/// parse): what a handler that passes the result on unchanged can copy as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawResult<'a> {
    /// The result's JSON text, a slice of [`RunEvent::raw_body`]; the body is strict JSON.
    Json(&'a [u8]),
    /// The body is strict JSON and the sender gave no result (absent or `null`), or the
    /// provider sends none (SmartBrowse).
    Absent,
    /// No slice to give: the body holds `NaN`, `Infinity` or an integer that may not fit in
    /// 64 bits (it was read leniently), or the provider's result is not a slice of the body
    /// (WebRun's answer is JSON inside a string). [`RunEvent::result`] has it as a value.
    NotASlice,
}

fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// A genuine body that is not the provider's payload. The receiver answers `202 Accepted` and
/// keeps the delivery whole for a person to look at: it is never dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The body is not JSON that the sender could have produced.
    #[error("the body is not valid JSON: {reason}")]
    NotJson {
        /// What is wrong, with the position where useful.
        reason: String,
    },
    /// The body is JSON but not an object.
    #[error("the body is JSON but not an object")]
    NotAnObject,
    /// A field the payload needs is absent (or `null`).
    #[error("required field `{field}` is missing")]
    MissingField {
        /// The field's path, e.g. `run_id`.
        field: String,
    },
    /// The run id is longer than [`MAX_RUN_ID_LEN`]: the run is genuine, but its id cannot be
    /// a de-duplication key.
    #[error("field `{field}` is longer than {MAX_RUN_ID_LEN} bytes ({} bytes)", run_id.len())]
    RunIdTooLong {
        /// The field the id came from, e.g. `run_id`.
        field: String,
        /// The id, whole (bounded by the body limit), so that the run can be found by it.
        run_id: String,
    },
    /// A field is present but of the wrong type or value.
    #[error("field `{path}` {reason}")]
    InvalidField {
        /// The field's path, e.g. `data.num_of_steps`.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl PayloadError {
    /// The status a receiver answers: `202 Accepted` (the genuine body is kept, not dropped).
    pub fn status(&self) -> StatusCode {
        StatusCode::ACCEPTED
    }
}
