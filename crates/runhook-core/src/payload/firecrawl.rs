//! Firecrawl webhook events: `{success, type, id, webhookId, data, metadata, error}` for crawl,
//! batch scrape, extract and agent jobs (`crawl.completed`, `agent.failed`, …).

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::json::{self, Read};
use super::progress;
use super::{Parts, ProviderPayload, ResultSpan, RunError, RunTimestamps};
use crate::payload::PayloadError;

/// A Firecrawl webhook body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FirecrawlEvent {
    /// Whether the job (or page) succeeded.
    pub success: Option<bool>,
    /// The event: `crawl.started`, `crawl.page`, `crawl.completed`, `batch_scrape.…`,
    /// `extract.…`, `agent.started`, `agent.action`, `agent.completed`, `agent.failed`,
    /// `agent.cancelled`.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// The job's id (as `POST /crawl` and the others return it); the de-duplication key.
    pub id: String,
    /// This delivery's id, the same on every retry of it.
    #[serde(rename = "webhookId")]
    pub webhook_id: Option<String>,
    /// The pages or the job's output.
    pub data: Option<Value>,
    /// The metadata given in the job's webhook configuration, returned as given.
    pub metadata: Option<Value>,
    /// Why the job failed, when it did.
    pub error: Option<Value>,
    /// Fields not listed above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct Summary<R> {
    #[serde(rename = "type")]
    event_type: Option<String>,
    id: String,
    #[serde(rename = "webhookId")]
    webhook_id: Option<String>,
    data: Option<R>,
    error: Option<Value>,
}

/// The unified view's parts, and the progress qualifier of the key (see [`progress`]).
pub(super) fn summary(body: &[u8]) -> Result<(Parts, Option<String>), PayloadError> {
    match json::object_from_body_either::<Summary<&RawValue>, Summary<IgnoredAny>>(body)? {
        Read::Strict(event) => {
            let result = ResultSpan::of(body, event.data);
            Ok(parts(event, result))
        }
        Read::Lenient(event) => Ok(parts(event, ResultSpan::NotASlice)),
    }
}

fn parts<R>(event: Summary<R>, result: ResultSpan) -> (Parts, Option<String>) {
    let event_type = event.event_type.unwrap_or_default();
    let status = progress::status_of_type(&event_type);
    let qualifier = progress::qualifier(&status, event.webhook_id.as_deref(), &event_type);
    let error = RunError::from_json(event.error);
    let parts = Parts {
        run_id: event.id,
        id_field: "id",
        status,
        event: Some(event_type).filter(|t| !t.is_empty()),
        error,
        timestamps: RunTimestamps::default(),
        result,
    };
    (parts, qualifier)
}

pub(super) fn payload(body: &[u8]) -> Result<ProviderPayload, PayloadError> {
    Ok(ProviderPayload::Firecrawl(Box::new(
        json::object_from_body(body)?,
    )))
}
