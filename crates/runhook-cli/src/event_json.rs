//! The unified run event as JSON, as `runhook parse` prints it and `runhook serve` hands it on.

use runhook::canonical::parse_lenient;
use runhook::payload::RunEvent;
use serde_json::{json, Value};

/// What runhook read from the body: provider, keys, status, result and error.
pub fn summary(event: &RunEvent) -> Value {
    json!({
        "provider": event.provider.as_str(),
        "dedup_key": event.dedup_key,
        "run_id": event.run_id,
        "status": event.status.as_str(),
        "event": event.event,
        "result": event.result(),
        "error": event.error.as_ref().map(|e| json!({"message": e.message, "category": e.category})),
    })
}

/// The summary plus the whole body as sent (`NaN` and over-long integers kept as their text),
/// for handlers that need more than runhook reads.
pub fn record(event: &RunEvent) -> Value {
    let mut record = summary(event);
    let body = parse_lenient(&event.raw_body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&event.raw_body).into_owned()));
    record["body"] = body;
    record
}

/// [`record`] as one JSON line (with its `\n`), written without building the body as a
/// value: when the body is plain JSON (no `NaN`, no integer that may not fit in 64 bits), its
/// bytes go into the line as they are (line breaks dropped), and so does the result's slice of
/// them. Other bodies take [`record`]'s lenient path. Either way the line holds the same JSON
/// as [`record`], numbers spelled as the sender spelled them (`0.0` stays `0.0`).
pub fn record_line(event: &RunEvent) -> Result<Vec<u8>, serde_json::Error> {
    let Some(result) = raw_result(event) else {
        let mut line = serde_json::to_vec(&record(event))?;
        line.push(b'\n');
        return Ok(line);
    };
    let mut line = Vec::with_capacity(event.raw_body.len() + result.len() + 256);
    line.extend_from_slice(b"{\"provider\":");
    serde_json::to_writer(&mut line, event.provider.as_str())?;
    line.extend_from_slice(b",\"dedup_key\":");
    serde_json::to_writer(&mut line, &event.dedup_key)?;
    line.extend_from_slice(b",\"run_id\":");
    serde_json::to_writer(&mut line, &event.run_id)?;
    line.extend_from_slice(b",\"status\":");
    serde_json::to_writer(&mut line, event.status.as_str())?;
    line.extend_from_slice(b",\"event\":");
    serde_json::to_writer(&mut line, &event.event)?;
    line.extend_from_slice(b",\"result\":");
    push_one_line(&mut line, result.as_bytes());
    line.extend_from_slice(b",\"error\":");
    let error = event
        .error
        .as_ref()
        .map(|e| json!({"message": e.message, "category": e.category}));
    serde_json::to_writer(&mut line, &error)?;
    line.extend_from_slice(b",\"body\":");
    push_one_line(&mut line, &event.raw_body);
    line.extend_from_slice(b"}\n");
    Ok(line)
}

/// Appends JSON text without its line breaks: valid JSON has them only as whitespace between
/// tokens (a string holds them escaped), so dropping them keeps the same JSON on one line.
fn push_one_line(line: &mut Vec<u8>, json: &[u8]) {
    line.extend(json.iter().copied().filter(|b| !matches!(b, b'\n' | b'\r')));
}

/// The result's JSON text, sliced out of a plain-JSON body (`"null"` when absent or null),
/// or `None` when the body needs the lenient path (or the provider's result is not a slice of
/// its body: WebRun's message is JSON inside a string).
fn raw_result(event: &RunEvent) -> Option<&str> {
    use runhook::payload::Provider;
    use serde::Deserialize;
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    struct Skyvern<'a> {
        #[serde(borrow)]
        output: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct TinyFish<'a> {
        #[serde(borrow)]
        data: Option<TinyFishData<'a>>,
    }
    #[derive(Deserialize)]
    struct TinyFishData<'a> {
        #[serde(borrow)]
        result: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Nothing {}

    let body = &event.raw_body[..];
    if may_need_lenient(body) {
        return None;
    }
    let result = match event.provider {
        Provider::Skyvern => serde_json::from_slice::<Skyvern>(body).ok()?.output,
        Provider::TinyFish => serde_json::from_slice::<TinyFish>(body)
            .ok()?
            .data
            .and_then(|d| d.result),
        Provider::WebRunAi => Some(serde_json::from_slice::<&RawValue>(body).ok()?),
        Provider::SmartBrowse => {
            serde_json::from_slice::<Nothing>(body).ok()?;
            None
        }
        _ => return None,
    };
    Some(result.map_or("null", RawValue::get))
}

/// Whether the body may hold what only the lenient parser reads: `NaN`/`Infinity` (strict
/// JSON refuses the body then), or an integer of 19 digits or more (which strict parsing
/// would round).
fn may_need_lenient(body: &[u8]) -> bool {
    let mut digits = 0;
    let mut letters_n_or_i = false;
    for &b in body {
        if b.is_ascii_digit() {
            digits += 1;
            if digits >= 19 {
                return true;
            }
        } else {
            digits = 0;
            letters_n_or_i |= b == b'N' || b == b'I';
        }
    }
    // Only then can a non-finite token be there; strict JSON tells (the fast path's own
    // parse would also refuse it, this keeps the rule in one place).
    letters_n_or_i && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use runhook::payload::Provider;

    fn fixtures() -> Vec<(Provider, Vec<u8>)> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/payloads");
        let mut all = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let provider = ["webrun-ai", "skyvern", "tinyfish", "webrun", "smartbrowse"]
                .into_iter()
                .find(|p| name.starts_with(&format!("{p}-")))
                .and_then(Provider::from_name)
                .unwrap();
            let provider = if name.starts_with("webrun-ai") {
                Provider::WebRunAi
            } else {
                provider
            };
            all.push((provider, std::fs::read(&path).unwrap()));
        }
        all.push((
            Provider::Skyvern,
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/fixtures/skyvern-run-pretty.json"
            ))
            .unwrap_or_default(),
        ));
        all.retain(|(_, body)| !body.is_empty());
        all
    }

    /// Equal JSON, numbers compared by value: the lenient parser writes a whole float (`0.0`)
    /// as an integer, the raw body keeps the sender's spelling.
    fn same_json(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
            }
            _ => a == b,
        }
    }

    #[test]
    fn the_fast_line_is_the_same_json_as_the_record() {
        let mut fast = 0;
        for (provider, body) in fixtures() {
            let Ok(event) = RunEvent::parse_summary(provider, body.clone()) else {
                continue;
            };
            let line = record_line(&event).unwrap();
            assert_eq!(line.last(), Some(&b'\n'));
            assert!(!line[..line.len() - 1].contains(&b'\n'), "one line");
            let parsed: Value = serde_json::from_slice(&line).unwrap();
            assert!(
                same_json(&parsed, &record(&event)),
                "{provider}: {parsed} != {}",
                record(&event)
            );
            fast += usize::from(raw_result(&event).is_some());
        }
        assert!(fast >= 8, "the fast path was taken only {fast} times");
    }

    #[test]
    fn non_finite_numbers_and_long_integers_take_the_lenient_path() {
        let body = br#"{"run_id":"r","status":"completed","output":{"x":NaN}}"#;
        let event = RunEvent::parse_summary(Provider::Skyvern, &body[..]).unwrap();
        assert!(raw_result(&event).is_none());
        let line = record_line(&event).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&line).unwrap(),
            record(&event)
        );
        let long = br#"{"run_id":"r","status":"completed","output":12345678901234567890123}"#;
        let event = RunEvent::parse_summary(Provider::Skyvern, &long[..]).unwrap();
        assert!(raw_result(&event).is_none());
    }
}
