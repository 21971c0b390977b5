//! End-to-end tests of `runhook dead-letters`: the real binary, real HTTP and a real Redis.
//! A poison run that kills its own `serve` is set aside after a bounded number of deliveries,
//! listed from its dead-letter stream and redriven once; a shutdown past its drain deadline
//! leaves the unprocessed runs in a file, and a file redrive processes each once.
//!
//! Needs Redis on 127.0.0.1:6379: the tests fail without it.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{
    delete_matching, line_counts, redis, redis_url, require_redis, runhook, scratch, skyvern_body,
    skyvern_post, skyvern_route, start_serve, unique, Started as Serve,
};
use runhook_testkit::wait_until_blocking as wait_for;

const SKYVERN_KEY: &str = "sk_test_dead_letters_cli";

impl Serve {
    fn start(dir: &Path, args: &[String]) -> Self {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        start_serve(dir, &args, &[("SKYVERN_API_KEY", SKYVERN_KEY)])
    }
}

/// Posts a signed Skyvern delivery; returns the status code.
fn post(base: &str, path: &str, body: &[u8]) -> u16 {
    try_post(base, path, body).unwrap_or_else(|e| panic!("POST {base}{path}: {e}"))
}

/// Posts a signed Skyvern delivery; the status code, or the error.
fn try_post(base: &str, path: &str, body: &[u8]) -> Result<u16, reqwest::Error> {
    block_on(async {
        skyvern_post(
            &reqwest::Client::new(),
            &format!("{base}{path}"),
            SKYVERN_KEY,
            body,
        )
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status().as_u16())
    })
}

/// Runs `runhook dead-letters ARGS`: exit code, standard output, standard error.
fn dead_letters(args: &[&str]) -> (i32, String, String) {
    let out = runhook(&[&["dead-letters"], args].concat());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `dead-letters list ARGS`, each line parsed; panics unless it exits 0.
fn list(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["list"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = dead_letters(&all);
    assert_eq!(code, 0, "list failed: {stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Deletes every Redis key starting with `prefix`.
fn delete_keys(prefix: &str) {
    block_on(async { delete_matching(&mut redis().await, &format!("{prefix}*")).await });
}

/// Runs `future` to its end on a runtime of its own (these tests are synchronous).
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A run whose handler kills its own `serve` (SIGKILL to `$PPID`) on every delivery is set
/// aside as poison after a bounded number of deliveries, while the other runs are processed
/// exactly once; `list` shows it with its body, and after a fix `redrive` hands it back to
/// the stream, where it is processed once and leaves the dead letters.
#[test]
fn poison_run_is_set_aside_listed_and_redriven_once() {
    require_redis();
    let started = Instant::now();
    const MAX_DELIVERIES: usize = 3;
    let tag = unique("poison");
    let dir = scratch(&format!("runhook-dead-letters-{tag}"));
    let prefix = format!("dltest_{tag}");
    let path = format!("/webhooks/{tag}/skyvern");
    let calls = dir.join("calls.log");
    let attempts = dir.join("attempts.log");
    let poison = format!("{tag}_poison");
    let good: Vec<String> = (0..4).map(|i| format!("{tag}_good{i}")).collect();

    let crashing = format!(
        r#"if [ "$RUNHOOK_RUN_ID" = "{poison}" ]; then echo "attempt $PPID" >> {attempts}; kill -9 $PPID; sleep 5; exit 1; fi; echo "$RUNHOOK_RUN_ID" >> {calls}"#,
        attempts = attempts.display(),
        calls = calls.display(),
    );
    let store = redis_url();
    let max_deliveries = MAX_DELIVERIES.to_string();
    let args = |exec: &str| -> Vec<String> {
        let mut args = skyvern_route(&path);
        args.extend([
            "--exec",
            exec,
            "--store",
            &store,
            "--queue",
            "redis-stream",
            "--lease-secs",
            "2",
            "--redis-prefix",
            &prefix,
            "--max-deliveries",
            &max_deliveries,
            // One worker: the poison run never shares its process with another run.
            "--workers",
            "1",
        ]);
        args.into_iter().map(str::to_owned).collect()
    };
    let crash_args = args(&crashing);
    let mut serve = Serve::start(&dir, &crash_args);
    let mut pids: HashSet<u32> = HashSet::from([serve.child.id()]);

    // Two good runs processed first, then the poison run, then two more behind it.
    for run in &good[..2] {
        assert_eq!(post(&serve.base, &path, &skyvern_body(run)), 200);
    }
    wait_for(Duration::from_secs(20), "the first good runs", || {
        line_counts(&calls).len() == 2
    });
    assert_eq!(post(&serve.base, &path, &skyvern_body(&poison)), 200);
    for run in &good[2..] {
        // The instance may already be dead: try the restarted one.
        let mut sent = false;
        for _ in 0..100 {
            if serve.child.try_wait().unwrap().is_some() {
                serve = Serve::start(&dir, &crash_args);
                pids.insert(serve.child.id());
            }
            match try_post(&serve.base, &path, &skyvern_body(run)) {
                Ok(200) => {
                    sent = true;
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        assert!(sent, "{run} was never acknowledged");
    }

    // The orchestrator: restart serve whenever it dies, until the poison run is set aside.
    let dead_key = format!("{prefix}:stream:{path}:dead");
    let mut conn = redis::Client::open(store.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut restarts = 0;
    let orchestrated = Instant::now();
    loop {
        let letters: usize = redis::cmd("XLEN").arg(&dead_key).query(&mut conn).unwrap();
        if letters > 0 {
            break;
        }
        assert!(
            orchestrated.elapsed() < Duration::from_secs(90),
            "the poison run was not set aside within 90 s ({restarts} restarts); logs:\n{}",
            serve.logs()
        );
        if serve.child.try_wait().unwrap().is_some() {
            serve = Serve::start(&dir, &crash_args);
            pids.insert(serve.child.id());
            restarts += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let set_aside_after = orchestrated.elapsed();
    let attempt_lines = std::fs::read_to_string(&attempts).unwrap_or_default();
    let deliveries = attempt_lines.lines().count();
    eprintln!(
        "deliveries before set aside: {deliveries} (max_deliveries {MAX_DELIVERIES}), \
         {restarts} restarts, set aside {set_aside_after:?} after the last good run was sent"
    );
    for line in attempt_lines.lines() {
        let ppid: u32 = line.strip_prefix("attempt ").unwrap().parse().unwrap();
        assert!(
            pids.contains(&ppid),
            "$PPID {ppid} is not a serve process: {pids:?}"
        );
    }
    assert!(
        (MAX_DELIVERIES..=MAX_DELIVERIES + 1).contains(&deliveries),
        "the poison run was handed out {deliveries} times"
    );

    wait_for(Duration::from_secs(20), "every good run", || {
        line_counts(&calls).len() == good.len()
    });
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "serve died again"
    );

    let source = [
        "--store",
        &store,
        "--path",
        &path,
        "--redis-prefix",
        &prefix,
    ];
    let letters = list(&source);
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter["reason_code"], "poison", "{letter}");
    assert_eq!(letter["run_id"].as_str(), Some(poison.as_str()));
    assert_eq!(letter["dedup_key"], format!("skyvern:{poison}"));
    assert_eq!(
        letter["body"].as_str().unwrap().as_bytes(),
        skyvern_body(&poison)
    );
    assert!(
        letter["id"].as_str().is_some_and(|id| id.contains('-')),
        "{letter}"
    );
    assert!(letter["received_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let printed = letter.to_string();
    assert!(
        !printed.contains("x-skyvern-signature") && !printed.contains(SKYVERN_KEY),
        "a credential was listed: {printed}"
    );

    // The fix: a handler that does not crash; the letter goes back to the stream.
    let (status, logs) = serve.stop();
    assert!(status.success(), "{status:?}\n{logs}");
    let fixed = format!(r#"echo "$RUNHOOK_RUN_ID" >> {}"#, calls.display());
    let serve = Serve::start(&dir, &args(&fixed));
    let mut redrive = vec!["redrive"];
    redrive.extend_from_slice(&source);
    let (code, stdout, stderr) = dead_letters(&redrive);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("redriven skyvern:{poison}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 redriven, 0 already done, 0 kept"),
        "{stdout}"
    );
    wait_for(Duration::from_secs(20), "the redriven run", || {
        line_counts(&calls).contains_key(&poison)
    });
    assert!(list(&source).is_empty(), "the letter is still listed");
    // Time for a second run to show up, were there one.
    std::thread::sleep(Duration::from_secs(1));
    let counts = line_counts(&calls);
    for run in good.iter().chain([&poison]) {
        assert_eq!(counts.get(run), Some(&1), "{run}: {counts:?}");
    }
    assert_eq!(counts.len(), good.len() + 1, "{counts:?}");
    let (status, logs) = serve.stop();
    assert!(status.success(), "{status:?}\n{logs}");
    delete_keys(&prefix);
    eprintln!("poison test took {:?}", started.elapsed());
}

/// SIGTERM while handlers (3 s each) run and jobs wait, with a 1 s drain deadline: serve
/// exits 1, and every acknowledged run is either processed or in the dead-letter file with
/// its exact body, never both. A redrive through a failing handler keeps them (exit 1); one
/// by dedup key takes only that one; a full redrive processes the rest once and empties the
/// file; a letter whose run the Redis store has done is removed without a handler call.
#[test]
fn undrained_runs_are_dead_lettered_and_redriven_from_the_file() {
    require_redis();
    let started = Instant::now();
    let tag = unique("drain");
    let dir = scratch(&format!("runhook-dead-letters-{tag}"));
    let path = format!("/webhooks/{tag}/skyvern");
    let processed = dir.join("processed.log");
    let dead = dir.join("dead.jsonl");
    let runs: Vec<String> = (0..12).map(|i| format!("{tag}_{i}")).collect();
    let slow = format!(
        r#"sleep 3; echo "$RUNHOOK_RUN_ID" >> {}"#,
        processed.display()
    );
    let mut args = skyvern_route(&path);
    args.extend(["--exec", &slow, "--dead-letters", dead.to_str().unwrap()]);
    args.extend(["--drain-timeout", "1", "--workers", "4"]);
    let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    let serve = Serve::start(&dir, &args);
    for run in &runs {
        assert_eq!(post(&serve.base, &path, &skyvern_body(run)), 200, "{run}");
    }
    // The first four finish after ~3 s; the next four are then running, four more queued.
    wait_for(Duration::from_secs(15), "the first handlers", || {
        !line_counts(&processed).is_empty()
    });
    let stopping = Instant::now();
    let (status, logs) = serve.stop();
    eprintln!("serve exited {:?} after SIGTERM", stopping.elapsed());
    assert_eq!(status.code(), Some(1), "{logs}");
    // A handler still running after the exit would append within 3 s: wait for it.
    std::thread::sleep(Duration::from_millis(3500));

    let done = line_counts(&processed);
    assert!(done.values().all(|&n| n == 1), "{done:?}");
    let file = ["--file", dead.to_str().unwrap()];
    let letters = list(&file);
    let mut lettered = HashSet::new();
    for letter in &letters {
        let run = letter["run_id"].as_str().unwrap().to_string();
        assert_eq!(letter["reason_code"], "not_drained", "{letter}");
        assert_eq!(
            letter["body"].as_str().unwrap().as_bytes(),
            skyvern_body(&run),
            "{letter}"
        );
        assert!(
            !done.contains_key(&run),
            "{run} processed and dead-lettered"
        );
        assert!(lettered.insert(run), "lettered twice: {letter}");
    }
    eprintln!(
        "after SIGTERM: {} processed, {} dead-lettered",
        done.len(),
        lettered.len()
    );
    assert!(!lettered.is_empty());
    for run in &runs {
        assert!(
            done.contains_key(run) || lettered.contains(run),
            "{run} acknowledged, then lost"
        );
    }

    // A handler that fails: everything kept, exit 1, the file untouched.
    let before = std::fs::read(&dead).unwrap();
    let failing = dir.join("failing.toml");
    std::fs::write(&failing, config_toml("", &path, "exit 3")).unwrap();
    let (code, stdout, stderr) = dead_letters(&[
        "redrive",
        "--file",
        dead.to_str().unwrap(),
        "--config",
        failing.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "0 redriven, 0 already done, {} kept",
            lettered.len()
        )),
        "{stdout}"
    );
    assert_eq!(std::fs::read(&dead).unwrap(), before);

    let quick = format!(r#"echo "$RUNHOOK_RUN_ID" >> {}"#, processed.display());
    let config = dir.join("runhook.toml");
    // With a Redis store: each redriven run is claimed and completed there.
    let prefix = format!("dltest_{tag}");
    let top = format!("store = {:?}\nredis_prefix = {prefix:?}\n", redis_url());
    std::fs::write(&config, config_toml(&top, &path, &quick)).unwrap();
    let redrive = |keys: &[&str]| {
        let mut args = vec![
            "redrive",
            "--file",
            dead.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ];
        for key in keys {
            args.extend(["--dedup-key", key]);
        }
        dead_letters(&args)
    };
    // One by its dedup key, and one key that is not there: exit 1, only that one taken.
    let first = letters[0]["dedup_key"].as_str().unwrap().to_string();
    let (code, stdout, stderr) = redrive(&[&first, "skyvern:not-a-letter"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("redriven {first}")), "{stdout}");
    assert!(
        stdout.contains("not found skyvern:not-a-letter"),
        "{stdout}"
    );
    assert_eq!(list(&file).len(), lettered.len() - 1);

    let (code, stdout, stderr) = redrive(&[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "{} redriven, 0 already done, 0 kept",
            lettered.len() - 1
        )),
        "{stdout}"
    );
    assert!(list(&file).is_empty());
    let counts = line_counts(&processed);
    for run in &runs {
        assert_eq!(counts.get(run), Some(&1), "{run}: {counts:?}");
    }
    assert_eq!(counts.len(), runs.len());

    // The same letter again (a copy restored from a backup, say): the store says its run is
    // done, so it is removed without running the handler.
    let again = String::from_utf8(before)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    std::fs::write(&dead, format!("{again}\n")).unwrap();
    let (code, stdout, stderr) = redrive(&[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("0 redriven, 1 already done, 0 kept"),
        "{stdout}"
    );
    assert!(list(&file).is_empty());
    assert_eq!(line_counts(&processed), counts);
    delete_keys(&prefix);
    eprintln!("drain test took {:?}", started.elapsed());
}

/// A runhook.toml with one Skyvern route and an `exec` handler, and `top` (store settings)
/// before the tables.
fn config_toml(top: &str, path: &str, exec: &str) -> String {
    format!(
        "{top}\n[handler]\nexec = {exec:?}\n\n[[route]]\npath = {path:?}\nprovider = \"skyvern\"\nsecret_env = \"SKYVERN_API_KEY\"\n"
    )
}

/// Usage errors exit 2 with a clear message: a missing file, a URL that is not Redis,
/// a file redrive without a config; an unreachable Redis too, its password never shown.
#[test]
fn usage_errors_exit_2() {
    let (code, _, stderr) = dead_letters(&["list", "--file", "/nonexistent/runhook/dead.jsonl"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no such file"), "{stderr}");
    let (code, _, stderr) = dead_letters(&["list", "--store", "http://x", "--path", "/a"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("expected a redis://"), "{stderr}");
    let (code, _, stderr) = dead_letters(&["redrive", "--file", "dead.jsonl"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--config"), "{stderr}");
    let (code, _, stderr) = dead_letters(&[
        "list",
        "--store",
        "redis://:hunter2@127.0.0.1:1",
        "--path",
        "/a",
    ]);
    assert_eq!(code, 2);
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
}
