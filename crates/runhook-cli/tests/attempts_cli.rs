//! Skyvern workflow runs retried under one run id, against the real binary over loopback:
//! the interim event (attempt 1, `retry_pending: true`) and the final one (attempt 2) are each
//! handed on once with `attempt` and `final` in the event JSON (and `RUNHOOK_ATTEMPT`,
//! `RUNHOOK_FINAL` for `--exec`); replays of both are duplicates; `--skip-interim` and the
//! route key `skip_interim = true` run only the final one. Skyvern's public test-webhook key
//! is refused as a secret at startup.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{client, json_lines, scratch, skyvern_post, skyvern_route, start_serve, unique};
use common::{wait_for, Started as Serve};
use runhook_testkit::skyvern::{interim_body, retried_final_body};
use serde_json::{json, Value};

const KEY: &str = "sk_test_attempts_cli";
const ROUTE: &str = "/webhooks/skyvern";

async fn deliver(serve: &Serve, body: &[u8]) -> (u16, String) {
    let url = format!("{}{ROUTE}", serve.base);
    let response = skyvern_post(&client(), &url, KEY, body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn lines_when(path: &Path, n: usize) -> Vec<Value> {
    let what = format!("{n} lines in {}", path.display());
    wait_for(Duration::from_secs(15), &what, || {
        Some(json_lines(path)).filter(|lines| lines.len() >= n)
    })
    .await
}

async fn metric(serve: &Serve, name: &str) -> String {
    let url = format!("{}/metrics", serve.base);
    let text = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text.lines().find(|l| l.starts_with(name));
    line.unwrap_or_else(|| panic!("no {name} in {text}"))
        .to_string()
}

/// Sends a sentinel run behind everything so far and waits for its line: with one worker,
/// every earlier delivery was processed by then.
async fn drained(serve: &Serve, jsonl: &Path, lines_before: usize) -> Vec<Value> {
    let sentinel = unique("wr_sentinel");
    let (status, _) = deliver(serve, &retried_final_body(&sentinel, 1)).await;
    assert_eq!(status, 200);
    let lines = lines_when(jsonl, lines_before + 1).await;
    assert_eq!(lines.last().unwrap()["run_id"], json!(sentinel));
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_and_final_are_each_handed_on_once_and_say_which_is_final() {
    let dir = scratch("runhook-attempts");
    let jsonl = dir.join("events.jsonl");
    let mut args = skyvern_route(ROUTE);
    args.extend(["--jsonl", jsonl.to_str().unwrap(), "--workers", "1"]);
    let serve = start_serve(&dir, &args, &[("SKYVERN_API_KEY", KEY)]);
    let run = unique("wr_retried");
    let interim = interim_body(&run, 1, "2026-09-15T12:35:00");
    let last = retried_final_body(&run, 2);

    assert_eq!(deliver(&serve, &interim).await, (200, "accepted".into()));
    lines_when(&jsonl, 1).await;
    assert_eq!(deliver(&serve, &last).await, (200, "accepted".into()));
    let lines = lines_when(&jsonl, 2).await;
    assert_eq!(
        lines[0]["dedup_key"],
        json!(format!("skyvern:{run}#attempt-1"))
    );
    assert_eq!(
        (&lines[0]["attempt"], &lines[0]["final"]),
        (&json!(1), &json!(false))
    );
    assert_eq!(lines[0]["status"], "failed");
    assert_eq!(lines[1]["dedup_key"], json!(format!("skyvern:{run}")));
    assert_eq!(
        (&lines[1]["attempt"], &lines[1]["final"]),
        (&json!(2), &json!(true))
    );
    assert_eq!(lines[1]["status"], "completed");

    // The replays, and the final webhook re-driven under Skyvern's lease: duplicates.
    for body in [&interim, &last, &last] {
        let answer = deliver(&serve, body).await;
        assert_eq!(answer, (200, "duplicate: already received".into()));
    }
    let lines = drained(&serve, &jsonl, 2).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(metric(&serve, "runhook_duplicates_total")
        .await
        .ends_with(" 3"));
    serve.stop_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_interim_runs_only_the_final_event_by_flag_and_by_route_key() {
    let dir = scratch("runhook-skip-interim");
    let jsonl = dir.join("events.jsonl");
    let config = dir.join("runhook.toml");
    let by_key = format!(
        "workers = 1\n[handler]\njsonl = {:?}\n\n[[route]]\npath = {ROUTE:?}\nprovider = \"skyvern\"\n\
         secret_env = \"SKYVERN_API_KEY\"\nskip_interim = true\n",
        jsonl.to_str().unwrap()
    );
    std::fs::write(&config, by_key).unwrap();
    let mut by_flag = skyvern_route(ROUTE);
    by_flag.extend([
        "--jsonl",
        jsonl.to_str().unwrap(),
        "--workers",
        "1",
        "--skip-interim",
    ]);
    let config_args = ["--config", config.to_str().unwrap()];
    for args in [by_flag, config_args.to_vec()] {
        let _ = std::fs::remove_file(&jsonl);
        let serve = start_serve(&dir, &args, &[("SKYVERN_API_KEY", KEY)]);
        let run = unique("wr_skipped");
        let skipped = (200, "accepted: interim attempt, skipped".to_string());
        assert_eq!(
            deliver(&serve, &interim_body(&run, 1, "2026-09-15T12:35:00")).await,
            skipped
        );
        assert_eq!(
            deliver(&serve, &interim_body(&run, 2, "2026-09-15T12:40:00")).await,
            skipped
        );
        let last = retried_final_body(&run, 3);
        assert_eq!(deliver(&serve, &last).await, (200, "accepted".into()));
        let lines = drained(&serve, &jsonl, 1).await;
        assert_eq!(lines.len(), 2, "{args:?}: {lines:?}");
        assert_eq!(lines[0]["run_id"], json!(run));
        assert_eq!(
            (&lines[0]["attempt"], &lines[0]["final"]),
            (&json!(3), &json!(true))
        );
        let skipped = metric(&serve, "runhook_interim_skipped_total").await;
        assert!(skipped.ends_with(" 2"), "{skipped}");
        serve.stop_ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_handlers_get_the_attempt_and_whether_it_is_final() {
    let dir = scratch("runhook-attempts-exec");
    let out = dir.join("env.txt");
    let exec = format!(
        "echo \"$RUNHOOK_RUN_ID ${{RUNHOOK_ATTEMPT-unset}} $RUNHOOK_FINAL\" >> {}",
        out.display()
    );
    let mut args = skyvern_route(ROUTE);
    args.extend(["--exec", &exec, "--workers", "1"]);
    let serve = start_serve(&dir, &args, &[("SKYVERN_API_KEY", KEY)]);
    let run = unique("wr_exec");
    let plain = unique("tsk_plain");
    deliver(&serve, &interim_body(&run, 1, "2026-09-15T12:35:00")).await;
    deliver(&serve, &retried_final_body(&run, 2)).await;
    deliver(&serve, &runhook_testkit::skyvern::completed_body(&plain)).await;
    let lines = wait_for(Duration::from_secs(15), "three exec runs", || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        Some(lines).filter(|l| l.len() >= 3)
    })
    .await;
    assert_eq!(
        lines,
        [
            format!("{run} 1 false"),
            format!("{run} 2 true"),
            format!("{plain} unset true")
        ]
    );
    serve.stop_ok();
}

#[test]
fn skyverns_public_test_webhook_key_is_refused_at_startup() {
    let dir = scratch("runhook-placeholder");
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend(skyvern_route(ROUTE));
    args.extend(["--jsonl", "events.jsonl"]);
    let output = Command::new(env!("CARGO_BIN_EXE_runhook"))
        .args(&args)
        .current_dir(&dir)
        .env("SKYVERN_API_KEY", "test_api_key_placeholder")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("placeholder"), "{stderr}");
    assert!(
        !stderr.contains("test_api_key_placeholder"),
        "the key is not echoed: {stderr}"
    );
}

/// `runhook send --interim-attempts 2` plays a workflow run retried twice: two interim
/// webhooks, then the final one, all under one run id; the receiver hands on each once and
/// the last one says it is final.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_plays_a_retried_workflow_and_serve_hands_on_each_attempt_once() {
    let dir = scratch("runhook-attempts-send");
    let jsonl = dir.join("events.jsonl");
    let mut args = skyvern_route(ROUTE);
    args.extend(["--jsonl", jsonl.to_str().unwrap(), "--workers", "1"]);
    let serve = start_serve(&dir, &args, &[("SKYVERN_API_KEY", KEY)]);
    let run = unique("wr_played");
    let file = dir.join("final.json");
    std::fs::write(&file, retried_final_body(&run, 1)).unwrap();
    let url = format!("{}{ROUTE}", serve.base);
    let send = |extra: &[&str]| {
        let mut args = vec!["send", "--provider", "skyvern", "--secret-env", "SK"];
        args.extend(["--to", &url, "--interim-attempts", "2"]);
        args.extend(extra);
        args.push(file.to_str().unwrap());
        Command::new(env!("CARGO_BIN_EXE_runhook"))
            .args(&args)
            .env("SK", KEY)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = send(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for attempt in [
        "attempt 1 (interim)",
        "attempt 2 (interim)",
        "attempt 3 (final)",
    ] {
        assert!(stdout.contains(attempt), "{attempt} in {stdout}");
    }
    // The whole run played again (the sender's re-drive): duplicates, each answered 200.
    assert!(send(&[]).status.success());
    let lines = drained(&serve, &jsonl, 3).await;
    let played: Vec<(Value, Value, Value)> = lines[..3]
        .iter()
        .map(|l| {
            (
                l["dedup_key"].clone(),
                l["attempt"].clone(),
                l["final"].clone(),
            )
        })
        .collect();
    assert_eq!(
        played,
        [
            (
                json!(format!("skyvern:{run}#attempt-1")),
                json!(1),
                json!(false)
            ),
            (
                json!(format!("skyvern:{run}#attempt-2")),
                json!(2),
                json!(false)
            ),
            (json!(format!("skyvern:{run}")), json!(3), json!(true)),
        ]
    );
    assert_eq!(
        lines.len(),
        4,
        "the replays were handed on again: {lines:?}"
    );
    let tinyfish = Command::new(env!("CARGO_BIN_EXE_runhook"))
        .args([
            "send",
            "--provider",
            "tinyfish",
            "--to",
            &url,
            "--interim-attempts",
            "1",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(tinyfish.status.code(), Some(2));
    serve.stop_ok();
}
