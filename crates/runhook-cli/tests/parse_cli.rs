//! `runhook parse` run as a real process on the payload fixtures.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn fixture(name: &str) -> String {
    format!(
        "{}/../../testdata/payloads/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn parse(provider: &str, file: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runhook"))
        .args(["parse", "--provider", provider, file])
        .output()
        .unwrap()
}

fn parsed(provider: &str, name: &str) -> Value {
    let out = parse(provider, &fixture(name));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn prints_the_unified_event_with_its_fields_in_order() {
    let out = parse("tinyfish", &fixture("tinyfish-failed.json"));
    let text = String::from_utf8(out.stdout).unwrap();
    let keys: Vec<&str> = [
        "provider",
        "dedup_key",
        "run_id",
        "status",
        "event",
        "attempt",
        "final",
        "result",
        "error",
    ]
    .to_vec();
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| text.find(&format!("\"{k}\"")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value,
        json!({
            "provider": "tinyfish",
            "dedup_key": "tinyfish:7f1c2e94-0d1a-4b7e-9c55-2d6a8f3b1e02",
            "run_id": "7f1c2e94-0d1a-4b7e-9c55-2d6a8f3b1e02",
            "status": "failed",
            "event": "run.failed",
            "attempt": null,
            "final": true,
            "result": null,
            "error": {"message": "Login wall blocked the agent", "category": "AGENT_FAILURE"}
        })
    );
}

#[test]
fn every_provider_parses_its_fixtures() {
    let cases = [
        (
            "skyvern",
            "skyvern-workflow-timed-out.json",
            "skyvern:wr_511223344556677020",
            "timed_out",
        ),
        (
            "skyvern",
            "skyvern-terminated.json",
            "skyvern:tsk_v2_511223344556677030",
            "terminated",
        ),
        (
            "skyvern",
            "skyvern-canceled.json",
            "skyvern:tsk_v2_511223344556677040",
            "cancelled",
        ),
        (
            "tinyfish",
            "tinyfish-completed.json",
            "tinyfish:7f1c2e94-0d1a-4b7e-9c55-2d6a8f3b1e01",
            "completed",
        ),
        (
            "webrun",
            "webrun-full-response.json",
            "webrun:task_m42",
            "completed",
        ),
        (
            "webrun",
            "webrun-just-ping.json",
            "webrun:task_m43",
            "completed",
        ),
        (
            "smartbrowse",
            "smartbrowse-cancelled.json",
            "smartbrowse:Qx7Lm2Pa9Rv",
            "cancelled",
        ),
    ];
    for (provider, name, key, status) in cases {
        let value = parsed(provider, name);
        assert_eq!(value["dedup_key"], key, "{name}");
        assert_eq!(value["status"], status, "{name}");
        assert_eq!(value["provider"], provider, "{name}");
    }
    let ai = parsed("webrun-ai", "webrun-ai-response.json");
    assert!(ai["dedup_key"].as_str().unwrap().starts_with("webrun-ai:"));
    assert_eq!(ai["event"], Value::Null);
    assert_eq!(ai["result"]["title"], "Desk lamp");
    let nan = parsed("skyvern", "skyvern-nonfinite-and-bigint.json");
    assert_eq!(nan["result"]["score"], "NaN");
}

#[test]
fn reads_standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runhook"))
        .args(["parse", "--provider", "smartbrowse"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"event":"failed","run_id":"sb1","status":"failed","error":"boom"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["error"], json!({"message": "boom", "category": null}));
}

#[test]
fn wrong_payloads_exit_1_with_the_reason() {
    let out = parse("tinyfish", &fixture("webrun-just-ping.json"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("not a tinyfish payload: required field `run_id` is missing"),
        "{err}"
    );
    let out = parse("skyvern", "/no/such/file.json");
    assert_eq!(out.status.code(), Some(2));
    let out = parse("github", &fixture("webrun-just-ping.json"));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn webrun_ai_has_no_run_id_and_is_keyed_by_the_body_hash() {
    use sha2::{Digest as _, Sha256};

    let file = fixture("webrun-ai-response.json");
    let ai = parsed("webrun-ai", "webrun-ai-response.json");
    // Present and null: the platform names no run; the hash is only the key.
    assert_eq!(ai.get("run_id"), Some(&Value::Null), "{ai}");
    let hash = hex::encode(Sha256::digest(std::fs::read(file).unwrap()));
    assert_eq!(ai["dedup_key"], format!("webrun-ai:{hash}"));
    // A platform that names its runs still prints the id.
    let webrun = parsed("webrun", "webrun-full-response.json");
    assert!(webrun["run_id"].is_string(), "{webrun}");
}
