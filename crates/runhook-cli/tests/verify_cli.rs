//! `runhook verify` run as a real process: exit status 0 genuine, 1 rejected, 2 usage or
//! configuration error, with the precise reason printed.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use runhook_core::{sign_skyvern, sign_standard_webhooks, Secret};

const KEY_OLD: &str = "sk_cli_old_key";
const KEY_NEW: &str = "sk_cli_new_key";
const BODY: &[u8] = br#"{"run_id":"tsk_cli_1","status":"completed","step_count":4}"#;

/// Writes `body` to a fresh temporary file (unique per call, as tests run in parallel) and
/// returns its path.
fn body_file(name: &str, body: &[u8]) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("runhook-cli-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-{name}", NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, body).unwrap();
    path
}

fn runhook(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runhook"));
    command.args(args).stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn skyvern(signature_header: Option<&str>, body: &[u8], extra: &[&str]) -> Output {
    let path = body_file(
        &format!(
            "sky-{}.json",
            sign_skyvern(&Secret::new("x").unwrap(), body)
        ),
        body,
    );
    let header = signature_header.map(|s| format!("x-skyvern-signature: {s}"));
    let mut args = vec![
        "verify",
        "--scheme",
        "skyvern",
        "--secret-env",
        "RUNHOOK_TEST_OLD",
        "--secret-env",
        "RUNHOOK_TEST_NEW",
        "--body",
        path.to_str().unwrap(),
    ];
    if let Some(header) = &header {
        args.extend(["--header", header.as_str()]);
    }
    args.extend(extra);
    runhook(
        &args,
        &[("RUNHOOK_TEST_OLD", KEY_OLD), ("RUNHOOK_TEST_NEW", KEY_NEW)],
    )
}

#[test]
fn skyvern_genuine_names_the_matching_key() {
    let signature = sign_skyvern(&Secret::new(KEY_NEW).unwrap(), BODY);
    let out = skyvern(Some(&signature), BODY, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        stdout(&out).trim(),
        "genuine: scheme skyvern, key #1 ($RUNHOOK_TEST_NEW)"
    );
    assert!(!stdout(&out).contains(KEY_NEW));
}

#[test]
fn skyvern_rejections_say_why() {
    let signature = sign_skyvern(&Secret::new(KEY_NEW).unwrap(), BODY);
    let cases: [(Option<&str>, &[u8], &str); 5] = [
        (None, BODY, "rejected: header `x-skyvern-signature` is missing"),
        (Some("abc"), BODY, "rejected: header `x-skyvern-signature` is malformed: expected 64 hex digits, got 3 characters"),
        (Some(&"g".repeat(64)), BODY, "rejected: header `x-skyvern-signature` is malformed: expected 64 hex digits, found a non-hex character"),
        (Some(&signature), br#"{"run_id":"tsk_cli_2","status":"completed","step_count":4}"#, "rejected: the skyvern signature does not match the body with any accepted key"),
        (Some(&"0".repeat(64)), BODY, "rejected: the skyvern signature does not match the body with any accepted key"),
    ];
    for (header, body, expected) in cases {
        let out = skyvern(header, body, &[]);
        assert_eq!(out.status.code(), Some(1), "{header:?}");
        assert_eq!(stdout(&out).lines().next(), Some(expected), "{header:?}");
    }
}

#[test]
fn skyvern_trailing_newline_gets_a_hint() {
    let signature = sign_skyvern(&Secret::new(KEY_NEW).unwrap(), BODY);
    let mut body = BODY.to_vec();
    body.push(b'\n');
    let out = skyvern(Some(&signature), &body, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("ends with a newline"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn skyvern_timestamp_window_is_optional_and_explained() {
    let signature = sign_skyvern(&Secret::new(KEY_OLD).unwrap(), BODY);
    let path = body_file("sky-ts.json", BODY);
    let run = |ts: &str| {
        runhook(
            &[
                "verify",
                "--scheme",
                "skyvern",
                "--secret-env",
                "K",
                "--body",
                path.to_str().unwrap(),
                "--header",
                &format!("x-skyvern-signature: {signature}"),
                "--header",
                &format!("X-Skyvern-Timestamp: {ts}"),
                "--tolerance",
                "300",
                "--at",
                "1769873016",
            ],
            &[("K", KEY_OLD)],
        )
    };
    let ok = run("1769873100");
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("does not cover it"), "{}", stdout(&ok));
    let stale = run("1769800000");
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        stdout(&stale).contains("outside the 300 s tolerance"),
        "{}",
        stdout(&stale)
    );
    let absurd = run("99999999999999999999");
    assert_eq!(absurd.status.code(), Some(1));
    assert!(
        stdout(&absurd).contains("out of range"),
        "{}",
        stdout(&absurd)
    );
}

#[test]
fn header_token_checks_the_named_header() {
    let path = body_file("token.json", BODY);
    let run = |headers: &[&str]| {
        let mut args = vec![
            "verify",
            "--scheme",
            "header-token",
            "--secret-env",
            "TOKEN",
            "--header-name",
            "X-Recipe-Token",
            "--body",
            path.to_str().unwrap(),
        ];
        for h in headers {
            args.extend(["--header", h]);
        }
        runhook(&args, &[("TOKEN", "Bearer sb-token")])
    };
    let ok = run(&["x-recipe-token: Bearer sb-token"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).starts_with("genuine: scheme header-token, key #0 ($TOKEN)"));
    let wrong = run(&["x-recipe-token: Bearer sb-tokeX"]);
    assert_eq!(
        (wrong.status.code(), stdout(&wrong).trim()),
        (
            Some(1),
            "rejected: header `x-recipe-token` does not match any accepted token"
        )
    );
    let twice = run(&["x-recipe-token: Bearer sb-token", "X-Recipe-Token: other"]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(stdout(&twice).contains("more than once"));
    let missing = run(&["authorization: Bearer sb-token"]);
    assert_eq!(
        (missing.status.code(), stdout(&missing).trim()),
        (Some(1), "rejected: header `x-recipe-token` is missing")
    );
}

#[test]
fn path_secret_checks_the_segment() {
    let path = body_file("path.json", BODY);
    let run = |request_path: &str, extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--scheme",
            "path-secret",
            "--secret-env",
            "SEG",
            "--body",
            path.to_str().unwrap(),
            "--path",
            request_path,
        ];
        args.extend(extra);
        runhook(&args, &[("SEG", "8x4KpzQ7")])
    };
    assert_eq!(run("/webhooks/sb/8x4KpzQ7", &[]).status.code(), Some(0));
    assert_eq!(
        run("/webhooks/8x4KpzQ7/sb", &["--segment", "1"])
            .status
            .code(),
        Some(0)
    );
    let wrong = run("/webhooks/sb/8x4KpzQ", &[]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stdout(&wrong).contains("does not match"));
}

#[test]
fn standard_webhooks_checks_signature_and_time() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let key = Secret::from_standard_webhooks(secret).unwrap();
    let signature = sign_standard_webhooks(&key, "msg_1", 1_700_000_000, BODY);
    let path = body_file("sw.json", BODY);
    let run = |at: &str| {
        runhook(
            &[
                "verify",
                "--scheme",
                "standard-webhooks",
                "--secret-env",
                "WHSEC",
                "--body",
                path.to_str().unwrap(),
                "--header",
                "webhook-id: msg_1",
                "--header",
                "webhook-timestamp: 1700000000",
                "--header",
                &format!("webhook-signature: {signature}"),
                "--at",
                at,
            ],
            &[("WHSEC", secret)],
        )
    };
    let ok = run("1700000100");
    assert_eq!(ok.status.code(), Some(0), "{}{}", stdout(&ok), stderr(&ok));
    assert!(stdout(&ok).contains("message id msg_1"));
    let late = run("1700000400");
    assert_eq!(late.status.code(), Some(1));
    assert!(stdout(&late).contains("tolerance"));
}

/// `v1a` (ed25519) with a `whpk_` public key, beside a `whsec_` secret: the reference vector
/// of the core's tests (made with Python's `cryptography`) verifies; a forged one does not.
#[test]
fn standard_webhooks_v1a_verifies_with_a_public_key() {
    let public = "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
    let signature = "v1a,yoUrgEkc12aGqm0n4Sydmdz55xJfTz4AsAgieHFjmkR7LJtqVCZOQYzvvHjI5kAey+r4iaBGxTFRrl2iBQxtDQ==";
    let body = br#"{"test": 2432232314}"#;
    let path = body_file("sw-v1a.json", body);
    let run = |signature: &str| {
        runhook(
            &[
                "verify",
                "--scheme",
                "standard-webhooks",
                "--secret-env",
                "WHSEC",
                "--secret-env",
                "WHPK",
                "--body",
                path.to_str().unwrap(),
                "--header",
                "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek",
                "--header",
                "webhook-timestamp: 1614265330",
                "--header",
                &format!("webhook-signature: {signature}"),
                "--at",
                "1614265330",
            ],
            &[
                ("WHSEC", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                ("WHPK", public),
            ],
        )
    };
    let ok = run(signature);
    assert_eq!(ok.status.code(), Some(0), "{}{}", stdout(&ok), stderr(&ok));
    let mut forged = signature.to_string();
    forged.replace_range(8..12, "AAAA");
    let refused = run(&forged);
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
}

#[test]
fn body_can_come_from_standard_input() {
    let signature = sign_skyvern(&Secret::new(KEY_NEW).unwrap(), BODY);
    let mut child = Command::new(env!("CARGO_BIN_EXE_runhook"))
        .args([
            "verify",
            "--scheme",
            "skyvern",
            "--secret-env",
            "K",
            "--body",
            "-",
        ])
        .args(["--header", &format!("x-skyvern-signature: {signature}")])
        .env("K", KEY_NEW)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(BODY).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn configuration_errors_exit_2() {
    let path = body_file("usage.json", BODY);
    let body = path.to_str().unwrap();
    let base = [
        "verify",
        "--scheme",
        "skyvern",
        "--secret-env",
        "RUNHOOK_UNDER_TEST",
        "--body",
    ];
    // (extra arguments, environment, expected message)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 6] = [
        (
            &[body],
            &[],
            "environment variable RUNHOOK_UNDER_TEST is not set",
        ),
        (&[body], &[("RUNHOOK_UNDER_TEST", "")], "a secret is empty"),
        (
            &[body],
            &[("RUNHOOK_UNDER_TEST", "  \t ")],
            "a secret is whitespace only",
        ),
        (
            &[body, "--header", "no colon here"],
            &[("RUNHOOK_UNDER_TEST", "k")],
            "is not of the form `Name: value`",
        ),
        (
            &[body, "--header", "bad name: v"],
            &[("RUNHOOK_UNDER_TEST", "k")],
            "is not a valid header name",
        ),
        (
            &["/definitely/not/here.json"],
            &[("RUNHOOK_UNDER_TEST", "k")],
            "cannot read /definitely/not/here.json",
        ),
    ];
    for (extra, env, expected) in cases {
        let mut args = base.to_vec();
        args.extend(extra);
        let mut command = Command::new(env!("CARGO_BIN_EXE_runhook"));
        command.args(&args).env_remove("RUNHOOK_UNDER_TEST");
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?} {env:?}");
        assert!(
            stderr(&out).contains(expected),
            "{extra:?}: {}",
            stderr(&out)
        );
    }
    let no_secret = runhook(&["verify", "--scheme", "skyvern", "--body", body], &[]);
    assert_eq!(no_secret.status.code(), Some(2));
    let bad_whsec = runhook(
        &[
            "verify",
            "--scheme",
            "standard-webhooks",
            "--secret-env",
            "W",
            "--body",
            body,
        ],
        &[("W", "whsec_***")],
    );
    assert_eq!(bad_whsec.status.code(), Some(2));
    assert!(
        stderr(&bad_whsec).contains("whsec_"),
        "{}",
        stderr(&bad_whsec)
    );
}
