//! `runhook demo` end to end: the real binary starts its receiver and plays the script.

use std::process::Command;

#[test]
fn demo_plays_every_scene_as_expected() {
    let output = Command::new(env!("CARGO_BIN_EXE_runhook"))
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.trim_start()
                .split(' ')
                .next()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .collect();
    assert_eq!(rows.len(), 21, "{stdout}");
    assert!(rows.iter().all(|r| r.ends_with(" yes")), "{stdout}");
    for platform in [
        "skyvern",
        "tinyfish",
        "webrun",
        "smartbrowse",
        "browserbase",
        "firecrawl",
        "browser-use",
    ] {
        assert!(
            rows.iter().any(|r| r.contains(platform)),
            "{platform}: {stdout}"
        );
    }
    let tinyfish = rows.iter().find(|r| r.contains("tinyfish")).unwrap();
    assert!(tinyfish.contains("503 → 200"), "{tinyfish}");
    assert!(stdout.contains("re-serialized"), "{stdout}");
    // A retried Skyvern workflow: the interim and the final webhook each run the handler once
    // (each under its own key); the final one re-driven later is a duplicate of it.
    for what in ["attempt 1 (interim)", "attempt 2 (final)", "re-driven"] {
        let row = rows.iter().find(|r| r.contains(what)).unwrap();
        assert!(row.contains(" 200 ") && row.contains(" 1 "), "{row}");
    }
    // A run whose webhook never arrives is processed once, from the run API.
    let missed = rows.iter().find(|r| r.contains("never arrives")).unwrap();
    assert!(
        missed.contains("no webhook") && missed.contains("1 reconciled"),
        "{missed}"
    );
    // A forged unsigned delivery is acknowledged, never processed, and dead-lettered.
    let forged = rows.iter().find(|r| r.contains("confirm on")).unwrap();
    assert!(forged.contains(" 200 "), "{forged}");
    assert!(
        stdout.contains("never processed, dead-lettered not_confirmed"),
        "{stdout}"
    );
    // Skyvern's server retries a 403, never a 401: a forgery is not redelivered.
    assert!(stdout.contains("skyvern does not retry a 401"), "{stdout}");
    assert!(
        stdout.contains("every delivery was answered and processed as expected"),
        "{stdout}"
    );
    for secret in [
        "sk_demo_runhook_example",
        "demo-webrun-token",
        "tf_demo_api_key_Lw3",
    ] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} printed"
        );
    }
}
