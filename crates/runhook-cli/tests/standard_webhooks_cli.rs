//! `runhook sign --scheme standard-webhooks` and `runhook verify --scheme standard-webhooks`, as
//! real processes, against each other and against the official Python libraries (`svix` and
//! `standardwebhooks`, installed in a virtual environment under the target directory).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use runhook_testkit::python;

/// 32 random bytes as a `whsec_` secret (with its `=` padding, as Svix's dashboard shows it).
const SECRET: &str = "whsec_K2GcD3u7qCq3YDsvYxH0uCsnhV9QAaIVzCx35MjWnvQ=";
const BODY: &[u8] = br#"{"type":"session.completed","data":{"id":"sess_1","note":"caf\u00e9"}}"#;

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
    // A command that exits before reading (a usage error) closes the pipe: not an error.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What `runhook sign` printed: the headers in order, then the body after the blank line.
struct Printed {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn sign(secret: &str, id: &str, timestamp: Option<&str>, body: &[u8]) -> Printed {
    let mut args = vec!["sign", "--scheme", "standard-webhooks"];
    args.extend(["--secret-env", "SW_SECRET", "--id", id]);
    if let Some(timestamp) = timestamp {
        args.extend(["--timestamp", timestamp]);
    }
    let out = runhook(&args, &[("SW_SECRET", secret)], body);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let split = out
        .stdout
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("a blank line after the headers");
    let headers = text(&out.stdout[..split])
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(": ").expect("`name: value`");
            (name.to_owned(), value.to_owned())
        })
        .collect();
    Printed {
        headers,
        body: out.stdout[split + 2..].to_vec(),
    }
}

/// `runhook verify --scheme standard-webhooks` of `body` with `headers`, checked `--at` `at`.
fn verify(secret: &str, headers: &[(String, String)], body: &[u8], at: &str) -> Output {
    let flags: Vec<String> = headers
        .iter()
        .flat_map(|(name, value)| ["--header".to_owned(), format!("{name}: {value}")])
        .collect();
    let mut args = vec!["verify", "--scheme", "standard-webhooks"];
    args.extend(["--secret-env", "SW_SECRET", "--body", "-", "--at", at]);
    args.extend(flags.iter().map(String::as_str));
    runhook(&args, &[("SW_SECRET", secret)], body)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn sign_prints_the_three_headers_and_the_body_unchanged() {
    let printed = sign(SECRET, "msg_2Lq", Some("1700000000"), BODY);
    let names: Vec<&str> = printed.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
    );
    assert_eq!(printed.headers[0].1, "msg_2Lq");
    assert_eq!(printed.headers[1].1, "1700000000");
    // The reference value, computed independently with Python's hmac and base64 over
    // `msg_2Lq.1700000000.` and the body.
    assert_eq!(
        printed.headers[2].1,
        "v1,PiLnsklALdOeBbYEPf16M7ZBnZuSok7s8UxkuVvFJdQ="
    );
    assert_eq!(
        printed.body, BODY,
        "the body is signed and printed as given"
    );
}

#[test]
fn verify_accepts_what_sign_printed_and_nothing_else() {
    let printed = sign(SECRET, "msg_rt", Some("1700000000"), BODY);
    let genuine = verify(SECRET, &printed.headers, &printed.body, "1700000060");
    assert_eq!(genuine.status.code(), Some(0), "{}", text(&genuine.stdout));
    assert!(text(&genuine.stdout).contains("message id msg_rt"));

    let mut tampered = printed.body.clone();
    tampered[10] ^= 1;
    let out = verify(SECRET, &printed.headers, &tampered, "1700000060");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));

    let stale = verify(SECRET, &printed.headers, &printed.body, "1700000400");
    assert_eq!(stale.status.code(), Some(1), "{}", text(&stale.stdout));

    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let wrong_key = verify(other, &printed.headers, &printed.body, "1700000060");
    assert_eq!(
        wrong_key.status.code(),
        Some(1),
        "{}",
        text(&wrong_key.stdout)
    );

    // The same secret without its `=` padding signs the same.
    let unpadded = sign(
        SECRET.trim_end_matches('='),
        "msg_rt",
        Some("1700000000"),
        BODY,
    );
    assert_eq!(unpadded.headers, printed.headers);
}

#[test]
fn sign_refuses_what_it_cannot_print_faithfully() {
    let usage = |args: &[&str], env: &[(&str, &str)]| {
        let out = runhook(args, env, BODY);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{:?}: {}",
            args,
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty());
        text(&out.stderr)
    };
    let env = [("SW_SECRET", SECRET), ("SK_KEY", "sk_test_key")];
    let base = [
        "sign",
        "--scheme",
        "standard-webhooks",
        "--secret-env",
        "SW_SECRET",
    ];
    assert!(usage(&base, &env).contains("needs --id"));
    let spaced = [&base[..], &["--id", "msg 1"]].concat();
    assert!(usage(&spaced, &env).contains("--id"));
    let empty = [&base[..], &["--id", ""]].concat();
    assert!(usage(&empty, &env).contains("--id"));
    let not_whsec = [
        "sign",
        "--scheme",
        "standard-webhooks",
        "--secret-env",
        "SK_KEY",
    ];
    let not_whsec = [&not_whsec[..], &["--id", "msg_1"]].concat();
    assert!(usage(&not_whsec, &env).contains("SK_KEY"));
    let skyvern = [
        "sign",
        "--scheme",
        "skyvern",
        "--secret-env",
        "SK_KEY",
        "--id",
        "m",
    ];
    assert!(usage(&skyvern, &env).contains("--id"));
}

/// The interpreter of a virtual environment holding the official libraries (made once per
/// target directory, then reused).
fn official_libraries() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("venv-standard-webhooks");
        python::venv(
            &dir,
            &["svix==2.9.1", "standardwebhooks==1.3.0"],
            &["svix", "standardwebhooks"],
        )
    })
}

/// Signs argv's body file as Svix's library does; prints the `svix-signature` value.
const SVIX_SIGN: &str = r#"
import datetime, sys
from svix.webhooks import Webhook
secret, msg_id, timestamp, path = sys.argv[1:5]
body = open(path, "rb").read().decode("utf-8")
when = datetime.datetime.fromtimestamp(int(timestamp), tz=datetime.timezone.utc)
print(Webhook(secret).sign(msg_id, when, body))
"#;

/// Verifies argv's body file and headers (a JSON object) with both official libraries;
/// prints one line for each: `verified` or `refused: <why>`.
const VERIFY_BOTH: &str = r#"
import json, sys
import standardwebhooks.webhooks as sw
import svix.webhooks as svix
secret, path, headers = sys.argv[1:4]
body = open(path, "rb").read()
headers = json.loads(headers)
for name, verifier, error in [
    ("standardwebhooks", sw.Webhook(secret), sw.WebhookVerificationError),
    ("svix", svix.Webhook(secret), svix.WebhookVerificationError),
]:
    try:
        verifier.verify(body, headers)
        print(name, "verified")
    except error as e:
        print(name, "refused:", e)
"#;

fn scratch_file(name: &str, body: &[u8]) -> PathBuf {
    let path = runhook_testkit::temp_dir("sw-python").join(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn svix_library_signatures_with_svix_headers_verify_in_runhook() {
    let python = official_libraries();
    let body_file = scratch_file("body.json", BODY);
    let timestamp = now().to_string();
    let signed = python::run_script(
        python,
        SVIX_SIGN,
        &[
            SECRET,
            "msg_svix_1",
            &timestamp,
            body_file.to_str().unwrap(),
        ],
    );
    let signature = text(&signed.stdout).trim().to_owned();
    assert!(signature.starts_with("v1,"), "{signature}");
    let headers = vec![
        ("svix-id".to_owned(), "msg_svix_1".to_owned()),
        ("svix-timestamp".to_owned(), timestamp.clone()),
        ("svix-signature".to_owned(), signature),
    ];
    let genuine = verify(SECRET, &headers, BODY, &timestamp);
    assert_eq!(genuine.status.code(), Some(0), "{}", text(&genuine.stdout));
    assert!(text(&genuine.stdout).contains("message id msg_svix_1"));
    // And the svix library's signature is refused for a body it did not sign.
    let mut tampered = BODY.to_vec();
    tampered[3] ^= 1;
    let forged = verify(SECRET, &headers, &tampered, &timestamp);
    assert_eq!(forged.status.code(), Some(1), "{}", text(&forged.stdout));
}

#[test]
fn runhook_sign_output_verifies_in_both_official_libraries() {
    let python = official_libraries();
    let printed = sign(SECRET, "msg_rh_1", None, BODY);
    let body_file = scratch_file("body.json", &printed.body);
    let check = |headers: &[(String, String)]| {
        let object: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(n, v)| (n.clone(), serde_json::Value::from(v.as_str())))
            .collect();
        let headers = serde_json::Value::Object(object).to_string();
        let out = python::run_script(
            python,
            VERIFY_BOTH,
            &[SECRET, body_file.to_str().unwrap(), &headers],
        );
        text(&out.stdout)
    };
    assert_eq!(
        check(&printed.headers),
        "standardwebhooks verified\nsvix verified\n"
    );
    // The libraries do check: one changed character of the signature is refused by both.
    let mut forged = printed.headers.clone();
    let signature = &mut forged[2].1;
    let last = signature.pop().unwrap();
    signature.push(if last == 'A' { 'B' } else { 'A' });
    let said = check(&forged);
    assert!(
        said.starts_with("standardwebhooks refused:") && said.contains("\nsvix refused:"),
        "{said}"
    );
}
