//! `runhook serve --store postgres://…` and `runhook migrate`, as real processes against the
//! real PostgreSQL (`RUNHOOK_TEST_POSTGRES_URL`, default the local server), each test in a
//! schema of its own: nothing is created until `migrate` (or `serve --migrate`) is run; two
//! instances on one schema process each run once, whichever instance each copy reaches;
//! `runhook expect` records runs there.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

mod common;
use common::{
    client, json_lines, scratch, skyvern_body, skyvern_post, skyvern_route, start_serve, unique,
    wait_for,
};
use runhook_testkit::{postgres_url, require_postgres, unique_schema};

const KEY: &str = "sk_test_postgres_cli";

fn runhook(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runhook"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn migrate_applies_once_and_serve_refuses_an_unmigrated_schema() {
    require_postgres();
    let url = postgres_url();
    let schema = unique_schema("cli_migrate");
    let dir = scratch("runhook-postgres-migrate");

    // Not migrated: serve stops at start, saying how to migrate, and creates nothing.
    let events = dir.join("events.jsonl");
    let mut args = skyvern_route("/hook");
    args.extend(["--store", &url, "--postgres-schema", &schema]);
    args.extend(["--jsonl", events.to_str().unwrap()]);
    let refused = Command::new(env!("CARGO_BIN_EXE_runhook"))
        .current_dir(&dir)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(&args)
        .env("SKYVERN_API_KEY", KEY)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("runhook migrate"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        !text(&refused.stderr).contains("postgres@"),
        "the URL's user is not logged whole: {}",
        text(&refused.stderr)
    );

    let first = runhook(&["migrate", "--store", &url, "--postgres-schema", &schema]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(
        text(&first.stdout),
        format!(
            "applied migration 1 to schema {schema}\napplied migration 2 to schema {schema}\n\
             applied migration 3 to schema {schema}\n"
        )
    );
    let again = runhook(&["migrate", "--store", &url, "--postgres-schema", &schema]);
    assert_eq!(
        text(&again.stdout),
        format!("schema {schema} is up to date\n")
    );
    let not_postgres = runhook(&["migrate", "--store", "redis://127.0.0.1:6379"]);
    assert_eq!(not_postgres.status.code(), Some(2));
    let bad_schema = runhook(&["migrate", "--store", &url, "--postgres-schema", "x; DROP"]);
    assert_eq!(bad_schema.status.code(), Some(2));

    // Migrated: serve starts.
    let serve = start_serve(&dir, &args, &[("SKYVERN_API_KEY", KEY)]);
    serve.stop_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_schema_process_each_run_once() {
    require_postgres();
    let url = postgres_url();
    let schema = unique_schema("cli_two");
    let dir = scratch("runhook-postgres-two");
    let (a_events, b_events) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    let start = |events: &std::path::Path, migrate: bool| {
        let mut args = skyvern_route("/hook");
        args.extend(["--store", &url, "--postgres-schema", &schema]);
        args.extend(["--jsonl", events.to_str().unwrap()]);
        if migrate {
            args.push("--migrate");
        }
        start_serve(&dir, &args, &[("SKYVERN_API_KEY", KEY)])
    };
    let a = start(&a_events, true);
    let b = start(&b_events, false);
    let client = client();
    let runs: Vec<String> = (0..60).map(|_| unique("wr_pg")).collect();
    // Every run delivered to both instances at once, then once more to each (retries).
    for round in 0..2 {
        let mut sends = Vec::new();
        for run in &runs {
            let body = skyvern_body(run);
            for base in [&a.base, &b.base] {
                let request = skyvern_post(&client, &format!("{base}/hook"), KEY, &body);
                sends.push(tokio::spawn(async move { request.send().await }));
            }
        }
        for send in sends {
            let status = send.await.unwrap().unwrap().status().as_u16();
            // A copy whose twin is still running may be asked to retry; never refused.
            assert!(status == 200 || status == 503, "round {round}: {status}");
        }
    }
    // The copies answered 503 are retried, as Skyvern would, until every run is done.
    let url_a = format!("{}/hook", a.base);
    for run in &runs {
        let body = skyvern_body(run);
        let mut status = 0;
        for _ in 0..150 {
            let request = skyvern_post(&client, &url_a, KEY, &body);
            status = request.send().await.unwrap().status().as_u16();
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, 200, "{run} never accepted");
    }
    let processed = |events: &std::path::Path| {
        if events.exists() {
            json_lines(events)
        } else {
            Vec::new()
        }
    };
    wait_for(Duration::from_secs(15), "every run processed", || {
        (processed(&a_events).len() + processed(&b_events).len() >= runs.len()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in processed(&a_events)
        .iter()
        .chain(processed(&b_events).iter())
    {
        *counts
            .entry(line["run_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for run in &runs {
        assert_eq!(
            counts.get(run),
            Some(&1),
            "{run} processed {:?} times",
            counts.get(run)
        );
    }
    assert_eq!(counts.len(), runs.len());
    a.stop_ok();
    b.stop_ok();
}

#[test]
fn expect_records_runs_in_the_postgres_store() {
    require_postgres();
    let url = postgres_url();
    let schema = unique_schema("cli_expect");
    let migrated = runhook(&["migrate", "--store", &url, "--postgres-schema", &schema]);
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    let expect = |run: &str| {
        runhook(&[
            "expect",
            "--store",
            &url,
            "--postgres-schema",
            &schema,
            "--provider",
            "tinyfish",
            "--within",
            "600",
            run,
        ])
    };
    let run = unique("tf_pg");
    let first = expect(&run);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(text(&first.stdout), format!("recorded tinyfish {run}\n"));
    let again = expect(&run);
    assert_eq!(
        text(&again.stdout),
        format!("already expected tinyfish {run}\n")
    );
}
