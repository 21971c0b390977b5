//! The unified run event as JSON, as `runhook parse` prints it and `runhook serve` hands it on.
//! `attempt` is the attempt's number (or `null`) and `final` says whether the event is the
//! run's outcome (`false` for an interim event: an attempt the platform will retry).

use runhook::canonical::parse_lenient;
use runhook::payload::{RawResult, RunEvent};
use serde_json::{json, Value};

/// What runhook read from the body: provider, keys, status, result and error.
pub fn summary(event: &RunEvent) -> Value {
    json!({
        "provider": event.provider.as_str(),
        "dedup_key": event.dedup_key,
        "run_id": event.run_id,
        "status": event.status.as_str(),
        "event": event.event,
        "attempt": event.attempt,
        "final": event.phase.is_final(),
        "result": event.result(),
        "error": event.error.as_ref().map(|e| json!({"message": e.message, "category": e.category})),
    })
}

/// The summary, where the event came from (`source`: `webhook` or `reconciled`) and whether
/// the run API confirmed it (`confirmed`), plus the whole body (`NaN` and over-long integers
/// kept as their text), for handlers that need more than runhook reads. A confirmed or
/// reconciled event's body is the run API's answer.
pub fn record(event: &RunEvent) -> Value {
    let mut record = summary(event);
    record["source"] = Value::from(event.source.as_str());
    record["confirmed"] = Value::from(event.confirmation.is_confirmed());
    let body = parse_lenient(&event.raw_body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&event.raw_body).into_owned()));
    record["body"] = body;
    record
}

/// [`record`] as one JSON line (with its `\n`), written without building the body as a
/// value: when the body is strict JSON (no `NaN`, no integer that may not fit in 64 bits), its
/// bytes go into the line as they are (line breaks dropped), and so does the result's slice of
/// them, which reading the summary already located ([`RunEvent::raw_result`]). Other bodies
/// take [`record`]'s lenient path. Either way the line holds the same JSON as [`record`],
/// numbers spelled as the sender spelled them (`0.0` stays `0.0`).
pub fn record_line(event: &RunEvent) -> Result<Vec<u8>, serde_json::Error> {
    let result: &[u8] = match event.raw_result() {
        RawResult::Json(result) => result,
        RawResult::Absent => b"null",
        RawResult::NotASlice => {
            let mut line = serde_json::to_vec(&record(event))?;
            line.push(b'\n');
            return Ok(line);
        }
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
    line.extend_from_slice(b",\"attempt\":");
    serde_json::to_writer(&mut line, &event.attempt)?;
    line.extend_from_slice(if event.phase.is_final() {
        b",\"final\":true"
    } else {
        b",\"final\":false"
    });
    line.extend_from_slice(b",\"result\":");
    push_one_line(&mut line, result);
    line.extend_from_slice(b",\"error\":");
    let error = event
        .error
        .as_ref()
        .map(|e| json!({"message": e.message, "category": e.category}));
    serde_json::to_writer(&mut line, &error)?;
    // Both are fixed ASCII words: no escaping needed.
    line.extend_from_slice(b",\"source\":\"");
    line.extend_from_slice(event.source.as_str().as_bytes());
    line.extend_from_slice(if event.confirmation.is_confirmed() {
        b"\",\"confirmed\":true"
    } else {
        b"\",\"confirmed\":false"
    });
    line.extend_from_slice(b",\"body\":");
    push_one_line(&mut line, &event.raw_body);
    line.extend_from_slice(b"}\n");
    Ok(line)
}

/// Appends JSON text without its line breaks: valid JSON has them only as whitespace between
/// tokens (a string holds them escaped), so dropping them keeps the same JSON on one line.
fn push_one_line(line: &mut Vec<u8>, mut json: &[u8]) {
    while let Some(at) = memchr::memchr2(b'\n', b'\r', json) {
        line.extend_from_slice(&json[..at]);
        json = &json[at + 1..];
    }
    line.extend_from_slice(json);
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
            let provider = [
                "browser-use",
                "webrun-ai",
                "skyvern",
                "tinyfish",
                "webrun",
                "smartbrowse",
                "browserbase",
                "firecrawl",
            ]
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
        // The repository's own fixture: a missing file fails the test, never shrinks it.
        all.push((
            Provider::Skyvern,
            include_bytes!("../../../testdata/skyvern-run-pretty.json").to_vec(),
        ));
        assert!(all.len() >= 16, "the fixtures are missing: {}", all.len());
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
            fast += usize::from(event.raw_result() != RawResult::NotASlice);
            assert_eq!(parsed["source"], "webhook");
            assert_eq!(parsed["confirmed"], false);
            assert_eq!(parsed["final"], event.phase.is_final());
            assert_eq!(
                parsed["attempt"],
                serde_json::to_value(event.attempt).unwrap()
            );
        }
        assert!(fast >= 8, "the fast path was taken only {fast} times");
    }

    #[test]
    fn a_reconciled_confirmed_event_says_so_on_both_paths() {
        use runhook::payload::{Confirmation, EventSource};
        let body = br#"{"run_id":"r","status":"COMPLETED","result":{"n":1}}"#;
        let mut event = RunEvent::parse_summary(Provider::TinyFish, &body[..]).unwrap();
        event.source = EventSource::Reconciled;
        event.confirmation = Confirmation::Confirmed;
        let parsed: Value = serde_json::from_slice(&record_line(&event).unwrap()).unwrap();
        assert_eq!(parsed, record(&event));
        assert_eq!(parsed["source"], "reconciled");
        assert_eq!(parsed["confirmed"], true);
    }

    #[test]
    fn an_interim_event_says_its_attempt_and_that_it_is_not_final_on_both_paths() {
        let interim = br#"{"run_id":"wr_1","status":"failed","attempt":1,"retry_pending":true,
            "next_attempt_at":"2026-09-15T12:35:00","output":null}"#;
        let last = br#"{"run_id":"wr_1","status":"completed","attempt":2,"output":{"n":2}}"#;
        let plain = br#"{"run_id":"tsk_1","status":"completed","output":{"n":NaN}}"#;
        for (body, attempt, fin) in [
            (&interim[..], json!(1), false),
            (&last[..], json!(2), true),
            (&plain[..], Value::Null, true),
        ] {
            let event = RunEvent::parse_summary(Provider::Skyvern, body).unwrap();
            let parsed: Value = serde_json::from_slice(&record_line(&event).unwrap()).unwrap();
            assert_eq!(parsed, record(&event));
            assert_eq!(
                (&parsed["attempt"], &parsed["final"]),
                (&attempt, &json!(fin))
            );
        }
    }

    #[test]
    fn non_finite_numbers_and_long_integers_take_the_lenient_path() {
        let body = br#"{"run_id":"r","status":"completed","output":{"x":NaN}}"#;
        let event = RunEvent::parse_summary(Provider::Skyvern, &body[..]).unwrap();
        assert_eq!(event.raw_result(), RawResult::NotASlice);
        let line = record_line(&event).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&line).unwrap(),
            record(&event)
        );
        let long = br#"{"run_id":"r","status":"completed","output":12345678901234567890123}"#;
        let event = RunEvent::parse_summary(Provider::Skyvern, &long[..]).unwrap();
        assert_eq!(event.raw_result(), RawResult::NotASlice);
    }
}
