//! Browserbase and Firecrawl through the real `runhook serve`: deliveries built as each
//! platform builds them (from its documentation's recipe, computed here independently of
//! runhook) are processed once; forged, tampered, stale and wrong-key ones are 401.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod common;
use base64::Engine as _;
use common::{client, json_lines, start_serve, unique, wait_for, Started as Serve};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// Browserbase's signing secret as its API returns it (`whsec_` and base64).
const BROWSERBASE_SECRET: &str = "whsec_cHJvdmlkZXJzLWNsaS1icm93c2VyYmFzZS1rZXk=";
const FIRECRAWL_SECRET: &str = "fc_providers_cli_secret";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The Standard Webhooks headers for `body`: `v1,` base64 HMAC of `{id}.{ts}.{body}` keyed by
/// the secret's decoded bytes, under the `prefix` header family (`webhook` or `svix`).
fn standard_webhooks(
    secret: &str,
    prefix: &str,
    id: &str,
    ts: u64,
    body: &[u8],
) -> Vec<(String, String)> {
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(secret.trim_start_matches("whsec_")).unwrap();
    let ts_text = ts.to_string();
    let mac = hmac(&key, &[id.as_bytes(), b".", ts_text.as_bytes(), b".", body]);
    vec![
        (format!("{prefix}-id"), id.to_string()),
        (format!("{prefix}-timestamp"), ts_text),
        (
            format!("{prefix}-signature"),
            format!("v1,{}", engine.encode(mac)),
        ),
    ]
}

fn firecrawl(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    let signature = format!("sha256={}", hex::encode(hmac(secret.as_bytes(), &[body])));
    vec![("X-Firecrawl-Signature".into(), signature)]
}

fn start(dir: &Path, provider: &str, events: &Path) -> Serve {
    let env = [
        ("BROWSERBASE_SECRET", BROWSERBASE_SECRET),
        ("FIRECRAWL_SECRET", FIRECRAWL_SECRET),
    ];
    let var = match provider {
        "browserbase" => "BROWSERBASE_SECRET",
        _ => "FIRECRAWL_SECRET",
    };
    let args = [
        "--path",
        "/hook",
        "--provider",
        provider,
        "--secret-env",
        var,
        "--jsonl",
        events.to_str().unwrap(),
    ];
    start_serve(dir, &args, &env)
}

async fn post(serve: &Serve, headers: &[(String, String)], body: &[u8]) -> u16 {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let url = format!("{}/hook", serve.base);
    common::post(&client(), &url, &headers, body).await
}

/// The dedup keys of the events written so far, once `count` have been.
async fn keys_after(events: &Path, count: usize) -> Vec<String> {
    wait_for(Duration::from_secs(10), format!("{count} events"), || {
        (events.exists() && json_lines(events).len() >= count).then_some(())
    })
    .await;
    json_lines(events)
        .iter()
        .map(|line| line["dedup_key"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn browserbase_genuine_is_processed_once_and_forgeries_are_401() {
    let dir = common::scratch("runhook-providers-browserbase");
    let events = dir.join("events.jsonl");
    let serve = start(&dir, "browserbase", &events);
    let invocation = unique("inv");
    let body = format!(
        r#"{{"id":"evt_{invocation}","type":"functions.invocations.completed","resourceId":"{invocation}","createdAt":"2026-11-02T08:02:11Z","data":{{"status":"COMPLETED","results":{{"n":1}}}}}}"#
    )
    .into_bytes();
    let ts = now();
    let genuine = standard_webhooks(BROWSERBASE_SECRET, "webhook", "msg_1", ts, &body);
    assert_eq!(post(&serve, &genuine, &body).await, 200);
    // The sender's retry of the same delivery, and the same delivery under Svix's names.
    assert_eq!(post(&serve, &genuine, &body).await, 200);
    let svix = standard_webhooks(BROWSERBASE_SECRET, "svix", "msg_1", ts, &body);
    assert_eq!(post(&serve, &svix, &body).await, 200);

    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let wrong_key = "whsec_d3Jvbmcta2V5LWZvci1icm93c2VyYmFzZQ==";
    let stale = ts - 600;
    let refused = [
        ("tampered", genuine.clone(), tampered),
        (
            "wrong key",
            standard_webhooks(wrong_key, "webhook", "msg_1", ts, &body),
            body.clone(),
        ),
        (
            "stale",
            standard_webhooks(BROWSERBASE_SECRET, "webhook", "msg_1", stale, &body),
            body.clone(),
        ),
        ("unsigned", Vec::new(), body.clone()),
        (
            "another id",
            {
                let mut headers = genuine.clone();
                headers[0].1 = "msg_2".into();
                headers
            },
            body.clone(),
        ),
    ];
    for (what, headers, body) in refused {
        assert_eq!(post(&serve, &headers, &body).await, 401, "{what}");
    }
    let keys = keys_after(&events, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(json_lines(&events).len(), 1, "{keys:?}");
    assert_eq!(keys, [format!("browserbase:{invocation}")]);
    serve.stop_ok();
}

#[tokio::test]
async fn firecrawl_pages_and_the_end_are_each_processed_once_and_forgeries_are_401() {
    let dir = common::scratch("runhook-providers-firecrawl");
    let events = dir.join("events.jsonl");
    let serve = start(&dir, "firecrawl", &events);
    let job = unique("crawl");
    let event = |kind: &str, webhook_id: &str| {
        format!(
            r#"{{"success":true,"type":"{kind}","id":"{job}","webhookId":"{webhook_id}","data":[],"metadata":{{}}}}"#
        )
        .into_bytes()
    };
    let page = event("crawl.page", "w-page-1");
    let completed = event("crawl.completed", "w-done");
    for body in [&page, &page, &completed, &completed] {
        let headers = firecrawl(FIRECRAWL_SECRET, body);
        assert_eq!(post(&serve, &headers, body).await, 200);
    }
    let mut tampered = completed.clone();
    tampered[5] ^= 1;
    let refused = [
        (
            "tampered",
            firecrawl(FIRECRAWL_SECRET, &completed),
            tampered,
        ),
        (
            "wrong key",
            firecrawl("fc_guess", &completed),
            completed.clone(),
        ),
        ("unsigned", Vec::new(), completed.clone()),
        (
            "no prefix",
            vec![(
                "X-Firecrawl-Signature".into(),
                firecrawl(FIRECRAWL_SECRET, &completed)[0]
                    .1
                    .trim_start_matches("sha256=")
                    .to_string(),
            )],
            completed.clone(),
        ),
    ];
    for (what, headers, body) in refused {
        assert_eq!(post(&serve, &headers, &body).await, 401, "{what}");
    }
    let mut keys = keys_after(&events, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(json_lines(&events).len(), 2, "{keys:?}");
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("firecrawl:{job}"),
            format!("firecrawl:{job}#w-page-1")
        ]
    );
    serve.stop_ok();
}
