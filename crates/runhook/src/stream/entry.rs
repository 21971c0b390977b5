//! The stream's wire format, in one place: the field names of an entry and of a dead letter
//! (what each holds is in the module documentation, "Entries and dead letters"), the entry's
//! encoder and decoder, and the redrive script that turns a letter back into an entry, built
//! from the same names.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::Value;
use runhook_core::payload::{Confirmation, EventSource, PayloadError, Provider, RunEvent};
use runhook_store::Token;

/// Declares each name as a `&str` constant spelled as given.
macro_rules! names {
    ($($name:ident = $text:literal),* $(,)?) => {
        $(pub(crate) const $name: &str = $text;)*
    };
}

/// The field names of a stream entry.
pub(crate) mod field {
    names! {
        PROVIDER = "provider", KEY = "key", RUN_ID = "run_id", TOKEN = "token", AT = "at",
        BODY = "body", HEADERS = "headers", SOURCE = "source",
    }
    /// Every field, in the order they are written.
    #[cfg(test)]
    pub(crate) const ALL: [&str; 8] = [PROVIDER, KEY, RUN_ID, TOKEN, AT, BODY, HEADERS, SOURCE];
}

/// The field names of a dead letter in the dead-letter stream: the entry's own names where a
/// field holds the same thing; `dedup_key` (the entry's `key`), `reason` (for a person),
/// `reason_code` (for a program), `attempts`, `received_at` (RFC 3339) and `received_at_ms`
/// (the entry's `at`).
pub(crate) mod letter {
    pub(crate) use super::field::{BODY, HEADERS, PROVIDER, RUN_ID, SOURCE};
    names! {
        DEDUP_KEY = "dedup_key", REASON = "reason", REASON_CODE = "reason_code",
        ATTEMPTS = "attempts", RECEIVED_AT = "received_at", RECEIVED_AT_MS = "received_at_ms",
        BODY_LEN = "body_len", BODY_SHA256 = "body_sha256",
    }
}

/// One entry as the receive path writes it.
pub(crate) struct NewEntry<'a> {
    pub provider: Provider,
    pub key: &'a str,
    pub run_id: Option<&'a str>,
    /// `None` for a duplicate of a run in flight.
    pub token: Option<&'a Token>,
    pub received_at: SystemTime,
    pub body: &'a [u8],
    pub headers: &'a [(String, String)],
    /// `reconciled` when the body came from the run API.
    pub source: EventSource,
}

impl NewEntry<'_> {
    /// Hands each field and its value to `put`, in [`field::ALL`]'s order.
    ///
    /// # Errors
    /// When the headers cannot be written as JSON.
    pub(crate) fn encode(
        &self,
        mut put: impl FnMut(&'static str, &[u8]),
    ) -> serde_json::Result<()> {
        let headers = serde_json::to_string(self.headers)?;
        let token = self.token.map(Token::to_string).unwrap_or_default();
        put(field::PROVIDER, self.provider.as_str().as_bytes());
        put(field::KEY, self.key.as_bytes());
        put(field::RUN_ID, self.run_id.unwrap_or("").as_bytes());
        put(field::TOKEN, token.as_bytes());
        put(
            field::AT,
            epoch_millis(self.received_at).to_string().as_bytes(),
        );
        put(field::BODY, self.body);
        put(field::HEADERS, headers.as_bytes());
        put(field::SOURCE, self.source.as_str().as_bytes());
        Ok(())
    }
}

/// Milliseconds since the epoch (0 before it).
pub(crate) fn epoch_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

use crate::handoff::durable::Carried;
/// One entry as read back: the run, parsed as the receive path parsed it.
pub(crate) use crate::handoff::durable::ReadBack as Entry;

/// Why an entry is not one runhook wrote (or can read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Malformed {
    /// A field the entry must have is absent.
    #[error("the entry has no `{0}` field")]
    Missing(&'static str),
    /// A field holds something runhook never writes there.
    #[error("the entry's `{0}` field is invalid")]
    Invalid(&'static str),
    /// The body is not the provider's payload.
    #[error("the entry's body is not the provider's payload: {0}")]
    Unparseable(PayloadError),
    /// The body names another run than the entry's `key`.
    #[error("the entry's body is another run than its `key`")]
    OtherRun,
}

impl Entry {
    /// Reads an entry's fields, and parses its body as the receive path did.
    ///
    /// # Errors
    /// [`Malformed`], naming the field, when the entry is not one runhook wrote.
    pub(crate) fn decode(map: &HashMap<String, Value>) -> Result<Self, Malformed> {
        let fields = Fields(map);
        let provider = Provider::from_name(&fields.text(field::PROVIDER)?)
            .ok_or(Malformed::Invalid(field::PROVIDER))?;
        let key = Some(fields.text(field::KEY)?)
            .filter(|k| !k.is_empty())
            .ok_or(Malformed::Invalid(field::KEY))?;
        let claim = match fields.text(field::TOKEN)?.as_str() {
            "" => Carried::Nothing,
            hex => Carried::Token(hex.parse().map_err(|_| Malformed::Invalid(field::TOKEN))?),
        };
        let body = fields.bytes(field::BODY)?;
        let headers = serde_json::from_str(&fields.text(field::HEADERS)?)
            .map_err(|_| Malformed::Invalid(field::HEADERS))?;
        // Lenient: an entry without them is read as received now, by webhook.
        let received_at = fields
            .text(field::AT)
            .ok()
            .and_then(|ms| ms.parse::<u64>().ok())
            .map_or_else(SystemTime::now, |ms| UNIX_EPOCH + Duration::from_millis(ms));
        let source = fields
            .text(field::SOURCE)
            .ok()
            .and_then(|name| EventSource::from_name(&name))
            .unwrap_or(EventSource::Webhook);
        let mut event = RunEvent::parse_summary(provider, body).map_err(Malformed::Unparseable)?;
        if event.dedup_key != key {
            return Err(Malformed::OtherRun);
        }
        if source.is_from_run_api() {
            event.source = source;
            event.confirmation = Confirmation::Confirmed;
        }
        Ok(Self {
            event,
            claim,
            received_at,
            headers,
        })
    }
}

pub(crate) use crate::handoff::durable::Salvaged;

impl Salvaged {
    /// Whatever of the entry's provider, key, run id and body can be read.
    pub(crate) fn from_entry(map: &HashMap<String, Value>) -> Self {
        let fields = Fields(map);
        let text = |name| fields.text(name).ok().filter(|t| !t.is_empty());
        Self {
            provider: text(field::PROVIDER).and_then(|p| Provider::from_name(&p)),
            key: text(field::KEY),
            run_id: text(field::RUN_ID),
            body: fields.bytes(field::BODY).unwrap_or_default(),
        }
    }
}

/// An entry's (or a letter's) fields by name.
pub(crate) struct Fields<'a>(pub &'a HashMap<String, Value>);

impl Fields<'_> {
    /// The field as text.
    pub(crate) fn text(&self, name: &'static str) -> Result<String, Malformed> {
        let value = self.0.get(name).ok_or(Malformed::Missing(name))?;
        redis::from_redis_value_ref(value).map_err(|_| Malformed::Invalid(name))
    }

    /// The field's bytes.
    pub(crate) fn bytes(&self, name: &'static str) -> Result<Bytes, Malformed> {
        let value = self.0.get(name).ok_or(Malformed::Missing(name))?;
        redis::from_redis_value_ref::<Vec<u8>>(value)
            .map(Bytes::from)
            .map_err(|_| Malformed::Invalid(name))
    }
}

/// Moves dead letter `ARGV[1]` from `KEYS[1]` (the dead-letter stream) back into `KEYS[2]`
/// (the stream) as an entry without a token, in one step. Answers `{'moved', id}`, `{'gone'}`
/// when the letter is not there, or `{'incomplete'}` when it has no provider, key or body.
pub(crate) static REDRIVE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&redrive_lua()));

/// The redrive script's text, written from the field names of both formats.
fn redrive_lua() -> String {
    use field as e;
    use letter as l;
    let webhook = EventSource::Webhook.as_str();
    format!(
        r"
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return {{'gone'}} end
local f = {{}}
local fields = found[1][2]
for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
if (f['{lp}'] or '') == '' or (f['{lk}'] or '') == '' or f['{lb}'] == nil then
  return {{'incomplete'}}
end
local id = redis.call('XADD', KEYS[2], '*',
  '{ep}', f['{lp}'], '{ek}', f['{lk}'], '{er}', f['{lr}'] or '', '{et}', '',
  '{ea}', f['{la}'] or '0', '{eb}', f['{lb}'], '{eh}', f['{lh}'] or '[]',
  '{es}', f['{ls}'] or '{webhook}')
redis.call('XDEL', KEYS[1], ARGV[1])
return {{'moved', id}}
",
        lp = l::PROVIDER,
        lk = l::DEDUP_KEY,
        lr = l::RUN_ID,
        la = l::RECEIVED_AT_MS,
        lb = l::BODY,
        lh = l::HEADERS,
        ls = l::SOURCE,
        ep = e::PROVIDER,
        ek = e::KEY,
        er = e::RUN_ID,
        et = e::TOKEN,
        ea = e::AT,
        eb = e::BODY,
        eh = e::HEADERS,
        es = e::SOURCE,
    )
}

/// What the redrive script did with one letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Redriven {
    /// Appended to the stream as this entry, and removed from the dead letters.
    Moved(String),
    /// Not there (removed or redriven meanwhile).
    Gone,
    /// Kept: it has no provider, key or body (a malformed entry's letter).
    Incomplete,
}

impl redis::FromRedisValue for Redriven {
    fn from_redis_value(v: Value) -> Result<Self, redis::ParsingError> {
        let reply: Vec<String> = redis::from_redis_value(v)?;
        match reply.as_slice() {
            [moved, id] if moved == "moved" => Ok(Redriven::Moved(id.clone())),
            [gone] if gone == "gone" => Ok(Redriven::Gone),
            [incomplete] if incomplete == "incomplete" => Ok(Redriven::Incomplete),
            other => Err(format!("unexpected reply of the redrive script: {other:?}").into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(entry: &NewEntry<'_>) -> HashMap<String, Value> {
        let mut map = HashMap::new();
        entry
            .encode(|name, value| {
                map.insert(name.to_string(), Value::BulkString(value.to_vec()));
            })
            .unwrap();
        map
    }

    const BODY: &str = r#"{"run_id":"r1","task_id":"r1","status":"completed","output":null,"failure_reason":null}"#;

    fn new_entry<'a>(token: Option<&'a Token>, headers: &'a [(String, String)]) -> NewEntry<'a> {
        NewEntry {
            provider: Provider::Skyvern,
            key: "skyvern:r1",
            run_id: Some("r1"),
            token,
            received_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            body: BODY.as_bytes(),
            headers,
            source: EventSource::Reconciled,
        }
    }

    #[test]
    fn an_encoded_entry_decodes_to_the_same_run() {
        let token = Token::random();
        let headers = vec![("x-a".to_string(), "1".to_string())];
        let map = written(&new_entry(Some(&token), &headers));
        let mut names: Vec<&str> = map.keys().map(String::as_str).collect();
        let mut all = field::ALL.to_vec();
        names.sort_unstable();
        all.sort_unstable();
        assert_eq!(names, all, "encode writes every field, and only those");
        let entry = Entry::decode(&map).unwrap();
        assert_eq!(entry.event.dedup_key, "skyvern:r1");
        assert_eq!(entry.event.source, EventSource::Reconciled);
        assert_eq!(entry.event.confirmation, Confirmation::Confirmed);
        assert_eq!(entry.claim, Carried::Token(token));
        assert_eq!(entry.headers, headers);
        assert_eq!(
            entry.received_at,
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
        );
    }

    #[test]
    fn a_missing_or_invalid_field_is_named() {
        let map = written(&new_entry(None, &[]));
        for required in [
            field::PROVIDER,
            field::KEY,
            field::TOKEN,
            field::BODY,
            field::HEADERS,
        ] {
            let mut without = map.clone();
            without.remove(required);
            assert_eq!(
                Entry::decode(&without).err(),
                Some(Malformed::Missing(required))
            );
        }
        let mut bad = map.clone();
        bad.insert(field::TOKEN.into(), Value::BulkString(b"not-hex".to_vec()));
        assert_eq!(
            Entry::decode(&bad).err(),
            Some(Malformed::Invalid(field::TOKEN))
        );
        let mut other = map.clone();
        other.insert(field::KEY.into(), Value::BulkString(b"skyvern:r2".to_vec()));
        assert_eq!(Entry::decode(&other).err(), Some(Malformed::OtherRun));
        // The optional fields: an entry without them is a webhook's, received now.
        let mut old = map;
        old.remove(field::SOURCE);
        old.remove(field::AT);
        old.remove(field::RUN_ID);
        let entry = Entry::decode(&old).unwrap();
        assert_eq!(entry.event.source, EventSource::Webhook);
        assert_eq!(entry.claim, Carried::Nothing);
    }

    #[test]
    fn the_redrive_script_writes_every_entry_field_from_the_letter_fields() {
        let lua = redrive_lua();
        for name in field::ALL {
            assert!(lua.contains(&format!("'{name}', ")), "{name} not written");
        }
        for name in [
            letter::PROVIDER,
            letter::DEDUP_KEY,
            letter::RUN_ID,
            letter::RECEIVED_AT_MS,
            letter::BODY,
            letter::HEADERS,
            letter::SOURCE,
        ] {
            assert!(lua.contains(&format!("f['{name}']")), "{name} not read");
        }
    }

    #[test]
    fn salvage_reads_what_it_can() {
        let mut map = HashMap::new();
        map.insert(field::KEY.to_string(), Value::BulkString(b"k".to_vec()));
        map.insert(field::RUN_ID.to_string(), Value::BulkString(Vec::new()));
        let salvaged = Salvaged::from_entry(&map);
        assert_eq!(salvaged.key.as_deref(), Some("k"));
        assert_eq!(salvaged.run_id, None);
        assert_eq!(salvaged.provider, None);
        assert!(salvaged.body.is_empty());
    }
}
