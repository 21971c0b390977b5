//! Browser Use through the real `runhook serve`, `verify` and `sign`, against Browser Use's own
//! signing code: `create_webhook_signature` and `verify_webhook_event_signature` from its
//! official Python SDK (`browser-use-sdk` 2.0.15, the last release that ships them, installed
//! in a virtual environment under the target directory).
//!
//! Genuine deliveries are sent as a Python sender would post them (`json.dumps` with its
//! default spacing, keys in insertion order), signed over their sorted-key form by the SDK:
//! each task's end and each progress status is processed once; tampered, wrong-key, stale,
//! moved-timestamp and unsigned deliveries are 401.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod common;
use common::{client, json_lines, start_serve, unique, wait_for, Started as Serve};
use hmac::{Hmac, Mac as _};
use runhook_testkit::python;
use sha2::Sha256;

const SECRET: &str = "bu_browser_use_cli_secret_V2k";

/// The interpreter of a virtual environment holding Browser Use's SDK (made once per target
/// directory, then reused).
fn official_sdk() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("venv-browser-use");
        python::venv(
            &dir,
            &["browser-use-sdk==2.0.15"],
            &["browser_use_sdk.lib.webhooks"],
        )
    })
}

/// Builds a delivery as Browser Use does: argv's payload (a JSON file) posted as
/// `json.dumps(payload)`, signed by the SDK at argv's timestamp. Prints the signature, then
/// the body on the next line.
const SDK_SIGN: &str = r#"
import json, sys
from browser_use_sdk.lib.webhooks import create_webhook_signature
secret, timestamp, path = sys.argv[1:4]
payload = json.load(open(path, "rb"))
print(create_webhook_signature(body=payload, timestamp=timestamp, secret=secret))
print(json.dumps(payload))
"#;

/// Verifies argv's body file with the SDK; prints `verified` or `refused`.
const SDK_VERIFY: &str = r#"
import sys
from browser_use_sdk.lib.webhooks import verify_webhook_event_signature
secret, signature, timestamp, path = sys.argv[1:5]
body = open(path, "rb").read().decode("utf-8")
event = verify_webhook_event_signature(body=body, expected_signature=signature, timestamp=timestamp, secret=secret)
print("refused" if event is None else "verified")
"#;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn scratch_file(body: &[u8]) -> PathBuf {
    let path = common::scratch("browser-use-cli").join(format!("{}.json", unique("body")));
    std::fs::write(&path, body).unwrap();
    path
}

/// A delivery of `payload` signed by Browser Use's SDK with `secret` at `timestamp`: its
/// headers and the body as sent.
fn sdk_delivery(secret: &str, timestamp: u64, payload: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let file = scratch_file(payload.as_bytes());
    let ts = timestamp.to_string();
    let out = python::run_script(
        official_sdk(),
        SDK_SIGN,
        &[secret, &ts, file.to_str().unwrap()],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (signature, body) = stdout.split_once('\n').unwrap();
    let headers = vec![
        ("X-Browser-Use-Signature".to_string(), signature.to_string()),
        ("X-Browser-Use-Timestamp".to_string(), ts),
    ];
    (headers, body.trim_end_matches('\n').as_bytes().to_vec())
}

fn sdk_verifies(signature: &str, timestamp: &str, body: &[u8]) -> bool {
    let file = scratch_file(body);
    let out = python::run_script(
        official_sdk(),
        SDK_VERIFY,
        &[SECRET, signature, timestamp, file.to_str().unwrap()],
    );
    String::from_utf8(out.stdout).unwrap().trim() == "verified"
}

fn status_update(task: &str, status: &str, metadata: &str) -> String {
    format!(
        r#"{{"type": "agent.task.status_update", "timestamp": "2026-12-07T09:14:03Z", "payload": {{"task_id": "{task}", "session_id": "sess-{task}", "status": "{status}", "metadata": {metadata}}}}}"#
    )
}

fn start(dir: &Path, events: &Path) -> Serve {
    let args = [
        "--path",
        "/hook",
        "--provider",
        "browser-use",
        "--secret-env",
        "BU_SECRET",
        "--jsonl",
        events.to_str().unwrap(),
    ];
    start_serve(dir, &args, &[("BU_SECRET", SECRET)])
}

async fn post(serve: &Serve, headers: &[(String, String)], body: &[u8]) -> u16 {
    let mut headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    headers.push(("content-type", "application/json"));
    let url = format!("{}/hook", serve.base);
    common::post(&client(), &url, &headers, body).await
}

#[tokio::test]
async fn deliveries_signed_by_the_official_sdk_are_processed_once_and_forgeries_are_401() {
    let dir = common::scratch("runhook-browser-use");
    let events = dir.join("events.jsonl");
    let serve = start(&dir, &events);
    let task = unique("task");
    let ts = now();

    let (started_headers, started) =
        sdk_delivery(SECRET, ts, &status_update(&task, "started", "{}"));
    // Non-ASCII text, whole and huge floats, nested keys out of order: the sorted-key form
    // Python signs is rebuilt exactly, or this is refused.
    let metadata = r#"{"zeta": "café ☕ 𝄞", "price": 5.0, "big": 1e20, "tiny": 1e-7, "alpha": {"b": [1, 2.50], "a": null}}"#;
    let (finished_headers, finished) =
        sdk_delivery(SECRET, ts, &status_update(&task, "finished", metadata));
    assert!(
        finished.windows(2).any(|w| w == b", "),
        "sent with Python's default spacing, not in the signed form"
    );
    for (headers, body) in [
        (&started_headers, &started),
        (&finished_headers, &finished),
        // The sender's retry of each: duplicates, answered 200.
        (&started_headers, &started),
        (&finished_headers, &finished),
    ] {
        assert_eq!(post(&serve, headers, body).await, 200);
    }

    // The older form: the HMAC of the raw body in `X-Webhook-Signature`.
    let legacy_task = unique("legacy");
    let legacy = status_update(&legacy_task, "finished", "{}").into_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&legacy);
    let legacy_headers = vec![(
        "X-Webhook-Signature".to_string(),
        hex::encode(mac.finalize().into_bytes()),
    )];
    assert_eq!(post(&serve, &legacy_headers, &legacy).await, 200);

    let tampered = String::from_utf8(finished.clone())
        .unwrap()
        .replace("finished", "stopped")
        .into_bytes();
    let (wrong_key, _) = sdk_delivery(
        "bu_wrong_secret",
        ts,
        &status_update(&task, "finished", metadata),
    );
    let (stale, stale_body) =
        sdk_delivery(SECRET, ts - 600, &status_update(&task, "stopped", "{}"));
    let mut moved = finished_headers.clone();
    moved[1].1 = (ts + 1).to_string();
    let refused = [
        ("tampered", finished_headers.clone(), tampered),
        ("wrong key", wrong_key, finished.clone()),
        ("stale", stale, stale_body),
        ("timestamp moved", moved, finished.clone()),
        ("unsigned", Vec::new(), finished.clone()),
    ];
    for (what, headers, body) in refused {
        assert_eq!(post(&serve, &headers, &body).await, 401, "{what}");
    }

    wait_for(Duration::from_secs(10), "3 events", || {
        (events.exists() && json_lines(&events).len() >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = json_lines(&events);
    let mut keys: Vec<&str> = lines
        .iter()
        .map(|line| line["dedup_key"].as_str().unwrap())
        .collect();
    keys.sort();
    let mut expected = vec![
        format!("browser-use:{legacy_task}"),
        format!("browser-use:{task}"),
        format!("browser-use:{task}#started"),
    ];
    expected.sort();
    assert_eq!(keys, expected);
    let end = lines
        .iter()
        .find(|line| line["dedup_key"] == format!("browser-use:{task}"))
        .unwrap();
    assert_eq!(end["status"], "completed");
    assert_eq!(end["provider"], "browser-use");
    serve.stop_ok();
}

#[test]
fn runhook_sign_is_verified_by_the_sdk_and_runhook_verify_accepts_the_sdk() {
    let task = unique("task");
    let payload = status_update(&task, "finished", r#"{"note": "naïve", "n": 3.0}"#);
    let body = scratch_file(payload.as_bytes());
    let out = common::runhook_with_env(
        &[
            "sign",
            "--scheme",
            "browser-use",
            "--secret-env",
            "BU_SECRET",
            "--timestamp",
            "1796640000",
            body.to_str().unwrap(),
        ],
        &[("BU_SECRET", SECRET)],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    let (head, sent) = printed.split_once("\n\n").unwrap();
    assert_eq!(
        sent.as_bytes(),
        payload.as_bytes(),
        "the body is sent as given"
    );
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {head}"))
            .to_string()
    };
    let signature = header("x-browser-use-signature");
    assert_eq!(header("x-browser-use-timestamp"), "1796640000");
    assert!(sdk_verifies(&signature, "1796640000", sent.as_bytes()));
    assert!(!sdk_verifies(&signature, "1796640001", sent.as_bytes()));

    // The other way: the SDK signs, `runhook verify` accepts (and refuses another key).
    let ts = now();
    let (headers, sdk_body) = sdk_delivery(SECRET, ts, &payload);
    let sdk_file = scratch_file(&sdk_body);
    let verify = |var_value: &str| {
        let mut args = vec![
            "verify".to_string(),
            "--scheme".into(),
            "browser-use".into(),
            "--secret-env".into(),
            "BU_SECRET".into(),
            "--body".into(),
            sdk_file.to_str().unwrap().into(),
        ];
        for (name, value) in &headers {
            args.push("--header".into());
            args.push(format!("{name}: {value}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::runhook_with_env(&args, &[("BU_SECRET", var_value)])
    };
    let accepted = verify(SECRET);
    assert_eq!(accepted.status.code(), Some(0), "{accepted:?}");
    let report = String::from_utf8(accepted.stdout).unwrap();
    assert!(report.contains("genuine: scheme browser-use"), "{report}");
    assert_eq!(verify("bu_other").status.code(), Some(1));
}
