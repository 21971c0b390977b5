//! `runhook serve --exec` against the real binary over loopback: the command sees only an
//! allow-listed environment (never the route's secrets or the run API key), and a command
//! that outlives its attempt is killed with everything it started.

use std::path::Path;
use std::time::Duration;

mod common;
use common::{client, skyvern_post, skyvern_route, start_serve, unique, Started as Serve};

const SKYVERN_KEY: &str = "sk_test_exec_cli_secret";
const ROUTE: &str = "/webhooks/skyvern";

/// Posts one signed run; asserts it was acknowledged.
async fn acknowledged_run(serve: &Serve, name: &str) -> String {
    let run = unique(name);
    let body = runhook_testkit::skyvern::completed_body(&run);
    let url = format!("{}{ROUTE}", serve.base);
    let answer = skyvern_post(&client(), &url, SKYVERN_KEY, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200, "{}", serve.logs());
    run
}

fn started(dir: &Path, handler: &[&str], extra_env: &[(&str, &str)]) -> Serve {
    let mut args = skyvern_route(ROUTE);
    args.extend(handler);
    let mut env = vec![("SKYVERN_API_KEY", SKYVERN_KEY)];
    env.extend(extra_env);
    start_serve(dir, &args, &env)
}

#[tokio::test]
async fn the_command_gets_an_allow_listed_environment() {
    let dir = common::scratch("runhook-exec-env");
    let seen = dir.join("env.txt");
    let exec = format!("env > {}", seen.display());
    let serve = started(
        &dir,
        &["--exec", &exec, "--exec-env", "NAMED_FOR_EXEC"],
        &[("NAMED_FOR_EXEC", "passed"), ("NOT_NAMED", "kept-out")],
    );
    let run = acknowledged_run(&serve, "env").await;
    runhook_testkit::wait_until(Duration::from_secs(10), "the command ran", || {
        std::fs::read_to_string(&seen).is_ok_and(|env| env.contains("RUNHOOK_RUN_ID"))
    })
    .await;
    serve.stop_ok();
    let env = std::fs::read_to_string(&seen).unwrap();
    assert!(env.contains(&format!("RUNHOOK_RUN_ID={run}")), "{env}");
    assert!(env.contains("NAMED_FOR_EXEC=passed"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    assert!(
        !env.contains(SKYVERN_KEY),
        "the secret reached the command:\n{env}"
    );
    assert!(!env.contains("SKYVERN_API_KEY"), "{env}");
    assert!(!env.contains("kept-out"), "{env}");
}

#[tokio::test]
async fn a_timed_out_command_is_killed_with_what_it_started() {
    let dir = common::scratch("runhook-exec-group");
    // A background child that would outlive `sh`, recognisable by its argument (seconds, with
    // this process's id as decimals).
    let marker = format!("77.{}", std::process::id());
    let exec = format!("sleep {marker} & wait");
    let config = dir.join("runhook.toml");
    std::fs::write(
        &config,
        format!(
            "handler_timeout_secs = 1\nmax_attempts = 1\n\n[handler]\nexec = \"{exec}\"\n\n\
             [[route]]\npath = \"{ROUTE}\"\nprovider = \"skyvern\"\nsecret_env = \"SKYVERN_API_KEY\"\n"
        ),
    )
    .unwrap();
    let serve = start_serve(
        &dir,
        &["--config", config.to_str().unwrap()],
        &[("SKYVERN_API_KEY", SKYVERN_KEY)],
    );
    acknowledged_run(&serve, "group").await;
    let running = || {
        let out = std::process::Command::new("pgrep")
            .args(["-f", &format!("sleep {marker}")])
            .output()
            .unwrap();
        !out.stdout.is_empty()
    };
    runhook_testkit::wait_until(Duration::from_secs(10), "the command started", running).await;
    runhook_testkit::wait_until(
        Duration::from_secs(10),
        "the timed-out command's background child killed",
        || !running(),
    )
    .await;
    serve.stop();
}

#[test]
fn a_zero_handler_timeout_is_refused() {
    let dir = common::scratch("runhook-exec-zero");
    let config = dir.join("runhook.toml");
    std::fs::write(
        &config,
        format!(
            "handler_timeout_secs = 0\n\n[handler]\nexec = \"true\"\n\n\
             [[route]]\npath = \"{ROUTE}\"\nprovider = \"skyvern\"\nsecret_env = \"SKYVERN_API_KEY\"\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runhook"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("SKYVERN_API_KEY", SKYVERN_KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("handler_timeout_secs"), "{stderr}");
}
