//! `runhook canonicalize`, `runhook sign`, and `runhook verify`'s explanation of a
//! re-serialized Skyvern body, run as real processes.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use runhook_core::{sign_skyvern, Secret};

const VECTORS: &str = runhook_testkit::fixture::SKYVERN_CANONICAL_VECTORS;

fn runhook(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runhook"));
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // Written from another thread: the output may fill the pipe before the input is consumed.
    // A command that exits before reading (a missing secret) closes the pipe: not an error.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

#[test]
fn each_line_reproduces_every_vector_case() {
    let cases: Vec<serde_json::Value> = VECTORS
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let mut input = Vec::new();
    for case in &cases {
        input.extend_from_slice(case["input"].as_str().unwrap().as_bytes());
        input.push(b'\n');
    }
    let output = runhook(&["canonicalize", "--each-line", "-"], &[], &input);
    assert_eq!(output.status.code(), Some(0));
    let lines: Vec<&[u8]> = output.stdout.split(|&b| b == b'\n').collect();
    assert_eq!(
        lines.len(),
        cases.len() + 1,
        "one line per case, then the final newline"
    );
    assert_eq!(lines[cases.len()], b"");
    for (n, (case, line)) in cases.iter().zip(&lines).enumerate() {
        match (case["canonical"].as_str(), case["error"].as_str()) {
            (Some(canonical), _) => assert_eq!(*line, canonical.as_bytes(), "case {}", n + 1),
            (None, Some(kind)) => {
                let line = String::from_utf8_lossy(line);
                assert!(
                    line.starts_with(&format!("error: {kind}: ")),
                    "case {}: {line}",
                    n + 1
                );
            }
            (None, None) => panic!("case {} has neither canonical nor error", n + 1),
        }
    }
}

#[test]
fn each_line_splits_on_newline_only() {
    // CR is JSON whitespace and U+2028 is an ordinary character: neither ends a line.
    let input = "{\"a\": 1.0}\r\n\"\u{2028}\"\n\n[1,]";
    let output = runhook(&["canonicalize", "--each-line"], &[], input.as_bytes());
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "{\"a\":1}\n\"\u{2028}\"\nerror: JSONDecodeError: expecting a value at byte 0\n\
         error: JSONDecodeError: expecting a value at byte 3\n"
    );
    let none = runhook(&["canonicalize", "--each-line"], &[], b"");
    assert_eq!((none.status.code(), none.stdout.len()), (Some(0), 0));
}

#[test]
fn whole_document_is_written_exactly() {
    let output = runhook(
        &["canonicalize"],
        &[],
        b"{ \"price\": 5.0, \"ratio\": 0.00001, \"score\": NaN }\n",
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(output.stdout, br#"{"price":5,"ratio":1e-05,"score":NaN}"#);

    let invalid = runhook(&["canonicalize", "-"], &[], br#"{"a":"\udc00"}"#);
    assert_eq!(invalid.status.code(), Some(1));
    assert!(invalid.stdout.is_empty());
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("UnicodeEncodeError"));

    let missing = runhook(&["canonicalize", "/nonexistent/body.json"], &[], b"");
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn sign_prints_headers_blank_line_and_exact_body() {
    let env = [("RUNHOOK_SIGN_KEY", "sk_test")];
    let args = [
        "sign",
        "--scheme",
        "skyvern",
        "--secret-env",
        "RUNHOOK_SIGN_KEY",
        "--timestamp",
        "1769873016",
    ];
    let output = runhook(&args, &env, b"{ \"a\" : \"9999999999\" }");
    assert_eq!(output.status.code(), Some(0));
    // The signature Skyvern's own code made for this body with this key (the vectors).
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "Content-Type: application/json\n\
         x-skyvern-signature: ac5b83d792a77b9575a19cd006c883f1a21eb07a8ecea9b56b405226796a8ea2\n\
         x-skyvern-timestamp: 1769873016\n\
         \n\
         {\"a\":\"9999999999\"}"
    );

    let unsignable = runhook(&args, &env, b"{\"a\":1,}");
    assert_eq!(unsignable.status.code(), Some(1));
    for env in [
        &[][..],
        &[("RUNHOOK_SIGN_KEY", "")],
        &[("RUNHOOK_SIGN_KEY", "  ")],
    ] {
        let output = runhook(&args, env, b"{}");
        assert_eq!(output.status.code(), Some(2), "{env:?}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn verify_explains_a_reserialized_body() {
    let key = "sk_cli_canonical";
    let signature = sign_skyvern(
        &Secret::new(key).unwrap(),
        br#"{"run_id":"wr_1","steps":3,"score":NaN}"#,
    );
    let dir = std::env::temp_dir().join(format!("runhook-canonical-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let verify = |name: &str, body: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        let header = format!("x-skyvern-signature: {signature}");
        let args = [
            "verify",
            "--scheme",
            "skyvern",
            "--secret-env",
            "RUNHOOK_CANON_KEY",
            "--body",
            path.to_str().unwrap(),
            "--header",
            &header,
        ];
        runhook(&args, &[("RUNHOOK_CANON_KEY", key)], b"")
    };

    let reserialized = verify(
        "reserialized.json",
        b"{\n  \"run_id\": \"wr_1\",\n  \"steps\": 3.0,\n  \"score\": NaN\n}\n",
    );
    assert_eq!(reserialized.status.code(), Some(1));
    let text = String::from_utf8(reserialized.stdout).unwrap();
    assert!(text.starts_with("rejected: "), "{text}");
    assert!(text.contains("canonical form does"), "{text}");
    assert!(text.contains("re-serialized on its way"), "{text}");

    let forged = verify("forged.json", br#"{"run_id":"wr_1","steps":4,"score":NaN}"#);
    assert_eq!(forged.status.code(), Some(1));
    assert!(!String::from_utf8(forged.stdout)
        .unwrap()
        .contains("canonical form"));
}
