//! Regression: a body nested as deep as the lenient reader accepts (up to `MAX_DEPTH`, which a
//! genuine Skyvern body can approach: Python allows about 500 levels) overflowed the stack
//! when its typed payload was read: turning the lenient `Value` into the payload type recursed
//! once per level with large frames, needing more than 1 MiB of stack at 1000 levels in a
//! release build and more than 4 MiB in a debug one (a tokio worker has 2 MiB). Found by the
//! adversarial tests (`tests/adversarial.rs`, deep nesting inside a field, read by a handler).
//!
//! Every provider's payload (and the lenient reader itself) must now read such a body on a
//! thread with only 512 KiB of stack, whatever the build profile, and deeper bodies must be
//! refused as deep, never crash.

use runhook_core::canonical::MAX_DEPTH;
use runhook_core::payload::{json, Provider, RunEvent};
use serde_json::Value;

/// The caller's stack: a quarter of a tokio worker's.
const STACK: usize = 512 * 1024;

fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut text = vec![b'['; depth];
    text.resize(2 * depth, b']');
    text
}

fn nested_objects(depth: usize) -> Vec<u8> {
    let mut text = b"{\"a\":".repeat(depth);
    text.truncate(text.len() - 5);
    text.extend_from_slice(b"{}");
    text.resize(text.len() + depth - 1, b'}');
    text
}

/// A body of each provider's shape whose field `field` holds `inner`, with a `NaN` so that it
/// takes the lenient path even where `serde_json`'s own limit would not send it there.
fn body(field: &str, inner: &[u8]) -> Vec<u8> {
    let mut body = format!(
        r#"{{"run_id":"r1","taskId":"t1","event":"run.completed","status":"COMPLETED","score":NaN,"{field}":"#
    )
    .into_bytes();
    body.extend_from_slice(inner);
    body.push(b'}');
    body
}

/// Runs `f` on a thread with a [`STACK`]-byte stack.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn payloads_nested_to_the_limit_read_on_a_small_stack() {
    on_small_stack(|| {
        // The body's own object is the first level.
        let inner_levels = MAX_DEPTH - 1;
        for inner in [nested_arrays(inner_levels), nested_objects(inner_levels)] {
            for (provider, field) in [
                (Provider::Skyvern, "output"),
                (Provider::TinyFish, "data"),
                (Provider::WebRun, "data"),
                (Provider::WebRunAi, "output"),
                (Provider::SmartBrowse, "extra_field"),
            ] {
                let body = body(field, &inner);
                let event = RunEvent::parse(provider, body.clone());
                // TinyFish's and WebRun's `data` is a typed object: an array is a type error,
                // nested objects are unknown fields of it; either way, no crash.
                if let Ok(event) = &event {
                    assert!(event.payload().is_ok());
                    let _ = event.result();
                }
                if matches!(provider, Provider::Skyvern | Provider::WebRunAi) {
                    let event = event.unwrap_or_else(|e| panic!("{provider}: {e}"));
                    let result = event.result().expect("the deep value is the result");
                    assert!(matches!(result, Value::Array(_) | Value::Object(_)));
                }
            }
            let value: Value = json::from_body(&body("output", &inner)).unwrap();
            assert!(value["output"].is_array() || value["output"].is_object());
        }
    });
}

#[test]
fn deeper_than_the_limit_is_refused_not_a_crash() {
    on_small_stack(|| {
        for inner in [nested_arrays(MAX_DEPTH), nested_objects(100_000)] {
            for provider in Provider::ALL {
                let body = body("output", &inner);
                match RunEvent::parse(provider, body) {
                    Ok(event) => {
                        // WebRun reads only its own fields; `ai_response` keeps text it cannot
                        // read as JSON as a string.
                        assert!(matches!(provider, Provider::WebRunAi), "{provider}");
                        assert!(event.result().is_some_and(Value::is_string));
                    }
                    Err(err) => assert!(
                        err.to_string().contains("nesting deeper than")
                            || provider == Provider::WebRun,
                        "{provider}: {err}"
                    ),
                }
            }
        }
    });
}
