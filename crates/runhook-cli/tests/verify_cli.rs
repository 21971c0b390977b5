//! `runhook verify` run as a real process: exit status 0 genuine, 1 rejected, 2 usage or
//! configuration error, with the precise reason printed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
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

/// `runhook verify --scheme SCHEME (--secret-env S)… --body BODY MORE` with `env`.
fn verify(
    scheme: &str,
    secret_envs: &[&str],
    body: &Path,
    more: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut args = vec!["verify", "--scheme", scheme];
    for name in secret_envs {
        args.extend(["--secret-env", name]);
    }
    args.extend(["--body", body.to_str().unwrap()]);
    args.extend_from_slice(more);
    runhook(&args, env)
}

/// Asserts `out` exited `code` and printed `text` on its standard output.
fn assert_says(out: &Output, code: i32, text: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}{}",
        stdout(out),
        stderr(out)
    );
    assert!(stdout(out).contains(text), "{}", stdout(out));
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
    let mut more = Vec::new();
    if let Some(header) = &header {
        more.extend(["--header", header.as_str()]);
    }
    more.extend(extra);
    verify(
        "skyvern",
        &["RUNHOOK_TEST_OLD", "RUNHOOK_TEST_NEW"],
        &path,
        &more,
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
    assert_says(&out, 1, "ends with a newline");
}

#[test]
fn skyvern_timestamp_window_is_optional_and_explained() {
    let signature = sign_skyvern(&Secret::new(KEY_OLD).unwrap(), BODY);
    let path = body_file("sky-ts.json", BODY);
    let run = |ts: &str| {
        let more = [
            "--header",
            &format!("x-skyvern-signature: {signature}"),
            "--header",
            &format!("X-Skyvern-Timestamp: {ts}"),
            "--tolerance",
            "300",
            "--at",
            "1769873016",
        ];
        verify("skyvern", &["K"], &path, &more, &[("K", KEY_OLD)])
    };
    for (timestamp, code, says) in [
        ("1769873100", 0, "does not cover it"),
        ("1769800000", 1, "outside the 300 s tolerance"),
        ("99999999999999999999", 1, "out of range"),
    ] {
        assert_says(&run(timestamp), code, says);
    }
}

#[test]
fn header_token_checks_the_named_header() {
    let path = body_file("token.json", BODY);
    let run = |headers: &[&str]| {
        let mut more = vec!["--header-name", "X-Recipe-Token"];
        for h in headers {
            more.extend(["--header", h]);
        }
        verify(
            "header-token",
            &["TOKEN"],
            &path,
            &more,
            &[("TOKEN", "Bearer sb-token")],
        )
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
    assert_says(&twice, 1, "more than once");
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
        let more = [&["--path", request_path], extra].concat();
        verify(
            "path-secret",
            &["SEG"],
            &path,
            &more,
            &[("SEG", "8x4KpzQ7")],
        )
    };
    assert_eq!(run("/webhooks/sb/8x4KpzQ7", &[]).status.code(), Some(0));
    assert_eq!(
        run("/webhooks/8x4KpzQ7/sb", &["--segment", "1"])
            .status
            .code(),
        Some(0)
    );
    let wrong = run("/webhooks/sb/8x4KpzQ", &[]);
    assert_says(&wrong, 1, "does not match");
}

/// The `--header` flags of a Standard Webhooks delivery, checked `--at` the time `at`.
fn standard_webhooks_flags(id: &str, timestamp: &str, signature: &str, at: &str) -> Vec<String> {
    let headers = [
        format!("webhook-id: {id}"),
        format!("webhook-timestamp: {timestamp}"),
        format!("webhook-signature: {signature}"),
    ];
    let mut flags: Vec<String> = headers
        .into_iter()
        .flat_map(|h| ["--header".to_owned(), h])
        .collect();
    flags.extend(["--at".to_owned(), at.to_owned()]);
    flags
}

#[test]
fn standard_webhooks_checks_signature_and_time() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let key = Secret::from_standard_webhooks(secret).unwrap();
    let signature = sign_standard_webhooks(&key, "msg_1", 1_700_000_000, BODY);
    let path = body_file("sw.json", BODY);
    let run = |at: &str| {
        let flags = standard_webhooks_flags("msg_1", "1700000000", &signature, at);
        let more: Vec<&str> = flags.iter().map(String::as_str).collect();
        verify(
            "standard-webhooks",
            &["WHSEC"],
            &path,
            &more,
            &[("WHSEC", secret)],
        )
    };
    assert_says(&run("1700000100"), 0, "message id msg_1");
    assert_says(&run("1700000400"), 1, "tolerance");
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
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let flags = standard_webhooks_flags(id, "1614265330", signature, "1614265330");
        let more: Vec<&str> = flags.iter().map(String::as_str).collect();
        verify(
            "standard-webhooks",
            &["WHSEC", "WHPK"],
            &path,
            &more,
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
    let bad_whsec = verify(
        "standard-webhooks",
        &["W"],
        &path,
        &[],
        &[("W", "whsec_***")],
    );
    assert_eq!(bad_whsec.status.code(), Some(2));
    assert!(
        stderr(&bad_whsec).contains("whsec_"),
        "{}",
        stderr(&bad_whsec)
    );
}
