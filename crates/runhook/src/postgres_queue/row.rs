//! A job's row, in both directions: the receive path's job as the store writes it, and a
//! fetched row read back as the run it holds (or, when runhook cannot read it, what can be
//! salvaged for its dead letter).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use runhook_core::payload::{Confirmation, EventSource, PayloadError, Provider, RunEvent};
use runhook_store::sqlx::{postgres::PgRow, Row as _};
use runhook_store::{NewJob, Pickup, Token};

use crate::handoff::durable::{Carried, ReadBack};

/// Milliseconds since the epoch (0 before it).
pub(crate) fn epoch_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A claimed delivery's job: `headers` is its kept headers as JSON.
pub(crate) fn new_job<'a>(
    queue: &'a str,
    event: &'a RunEvent,
    received_at: SystemTime,
    headers: &'a str,
    pickup: Pickup<'a>,
) -> NewJob<'a> {
    NewJob {
        queue,
        provider: event.provider.as_str(),
        run_id: event.run_id.as_deref(),
        received_at_ms: epoch_millis(received_at),
        body: &event.raw_body,
        headers_json: headers,
        source: event.source.as_str(),
        pickup,
    }
}

/// One fetched job: its id, how many times it was handed out, and its run.
pub(crate) struct Fetched {
    pub id: i64,
    pub deliveries: u64,
    /// The run, or why it cannot be read and what can be salvaged of it.
    pub run: Result<ReadBack, (Unreadable, Salvaged)>,
}

/// Why a job's row does not hold a run runhook can process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unreadable {
    /// A column holds something runhook never writes there.
    #[error("the job's `{0}` is invalid")]
    Invalid(&'static str),
    /// The body is not the provider's payload.
    #[error("the job's body is not the provider's payload: {0}")]
    Unparseable(PayloadError),
    /// The body names another run than the job's `dedup_key`.
    #[error("the job's body is another run than its dedup_key")]
    OtherRun,
}

pub(crate) use crate::handoff::durable::Salvaged;

impl Fetched {
    /// Reads a row of the fetch statements.
    pub(crate) fn read(row: &PgRow) -> Result<Self, runhook_store::sqlx::Error> {
        let id: i64 = row.try_get("id")?;
        let deliveries: i32 = row.try_get("deliveries")?;
        Ok(Self {
            id,
            deliveries: u64::try_from(deliveries).unwrap_or(0),
            run: decode(row).map_err(|why| (why, Salvaged::from_row(row))),
        })
    }
}

fn decode(row: &PgRow) -> Result<ReadBack, Unreadable> {
    let text = |name: &'static str| -> Result<String, Unreadable> {
        row.try_get::<String, _>(name)
            .map_err(|_| Unreadable::Invalid(name))
    };
    let provider =
        Provider::from_name(&text("provider")?).ok_or(Unreadable::Invalid("provider"))?;
    let key = text("dedup_key")?;
    let token = match row.try_get::<Option<Vec<u8>>, _>("token") {
        Ok(None) => None,
        Ok(Some(bytes)) => {
            let bytes: [u8; 16] = bytes.try_into().map_err(|_| Unreadable::Invalid("token"))?;
            Some(Token::from_bytes(bytes))
        }
        Err(_) => return Err(Unreadable::Invalid("token")),
    };
    // `held`: the fetch renewed the claim with the job's token.
    let claim = match (token, row.try_get::<bool, _>("held").unwrap_or(false)) {
        (None, _) => Carried::Nothing,
        (Some(token), false) => Carried::Token(token),
        (Some(token), true) => Carried::Renewed {
            token,
            at: tokio::time::Instant::now(),
        },
    };
    let body: Vec<u8> = row
        .try_get("body")
        .map_err(|_| Unreadable::Invalid("body"))?;
    let headers =
        serde_json::from_str(&text("headers")?).map_err(|_| Unreadable::Invalid("headers"))?;
    let received_at = row
        .try_get::<i64, _>("received_at_ms")
        .ok()
        .and_then(|ms| u64::try_from(ms).ok())
        .map_or_else(SystemTime::now, |ms| UNIX_EPOCH + Duration::from_millis(ms));
    let source = text("source")
        .ok()
        .and_then(|name| EventSource::from_name(&name))
        .unwrap_or(EventSource::Webhook);
    let mut event =
        RunEvent::parse_summary(provider, Bytes::from(body)).map_err(Unreadable::Unparseable)?;
    if event.dedup_key != key {
        return Err(Unreadable::OtherRun);
    }
    if source.is_from_run_api() {
        event.source = source;
        event.confirmation = Confirmation::Confirmed;
    }
    Ok(ReadBack {
        event,
        claim,
        received_at,
        headers,
    })
}

impl Salvaged {
    /// What can be read of `row`.
    pub(crate) fn from_row(row: &PgRow) -> Self {
        Self {
            provider: row
                .try_get::<String, _>("provider")
                .ok()
                .and_then(|p| Provider::from_name(&p)),
            key: row.try_get("dedup_key").ok(),
            run_id: row.try_get::<Option<String>, _>("run_id").ok().flatten(),
            body: row
                .try_get::<Vec<u8>, _>("body")
                .map(Bytes::from)
                .unwrap_or_default(),
        }
    }
}
