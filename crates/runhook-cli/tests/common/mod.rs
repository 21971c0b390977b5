//! What the `runhook serve` end-to-end tests share: unique ids, the Redis check, starting and
//! stopping the real binary on a free port, signed Skyvern deliveries, and reading what the
//! handlers wrote.

#![allow(dead_code, unused_imports)] // each test file uses its own subset

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use runhook_testkit::skyvern::{completed_body as skyvern_body, signed_post as skyvern_post};
pub use runhook_testkit::{redis_url, require_redis, temp_dir as scratch, unique, wait_for};
use serde_json::Value;

pub mod failover;

/// A `runhook serve` just started: the process, its base URL, and the file its logs go to.
/// Killed when dropped.
pub struct Started {
    pub child: Child,
    pub base: String,
    pub stderr: PathBuf,
}

impl Started {
    /// What it has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (within 20 s) and the logs.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let status = self.terminate(Duration::from_secs(20));
        (status, self.logs())
    }

    /// [`Started::stop`], asserting a clean exit.
    pub fn stop_ok(self) {
        let (status, logs) = self.stop();
        assert!(status.success(), "{status:?}\n{logs}");
    }

    /// Sends SIGTERM, then waits at most `limit` for the exit.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.signal("TERM");
        match self.wait_exit(limit) {
            Some(status) => status,
            None => panic!("serve did not exit within {limit:?}"),
        }
    }

    /// Sends the signal `name` (`TERM`, `INT`, `HUP`...) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Its exit status, when it exits within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if started.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `runhook serve --listen 127.0.0.1:0 ARGS` with `env`, in `dir` (its working
/// directory), logs to a file there, and waits until it says where it listens.
pub fn start_serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Started {
    start_serve_without(dir, args, env, &[])
}

/// [`start_serve`], with the variables named in `removed` taken out of the environment it
/// inherits.
pub fn start_serve_without(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    removed: &[&str],
) -> Started {
    launch(
        Command::new(env!("CARGO_BIN_EXE_runhook")),
        dir,
        args,
        env,
        removed,
    )
}

/// [`start_serve`] through `sh -c 'ulimit ULIMIT && exec runhook serve ...'`: the process
/// started is `serve` itself, under the limit `ulimit` sets (`-Sn 1024`: a soft open-files
/// limit of 1 024).
pub fn start_serve_under_ulimit(
    dir: &Path,
    ulimit: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Started {
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!("ulimit {ulimit} && exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_runhook"),
    ]);
    launch(command, dir, args, env, &[])
}

/// Runs `command serve --listen 127.0.0.1:0 ARGS`, logs to a file in `dir`, and waits until
/// it says where it listens.
fn launch(
    mut command: Command,
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    removed: &[&str],
) -> Started {
    let stderr = dir.join(format!("{}.log", unique("serve")));
    for name in removed {
        command.env_remove(name);
    }
    // In `dir`: the default dead-letter file (runhook-dead-letters.jsonl) lands there.
    let mut child = command
        .current_dir(dir)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = match line.trim().strip_prefix("listening on ") {
        Some(base) => base.to_string(),
        None => panic!(
            "serve did not start: {line:?}\n{}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        ),
    };
    Started {
        child,
        base,
        stderr,
    }
}

/// How many times each line occurs in `file` (absent: none).
pub fn line_counts(file: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

/// What a wait waited for, followed by the logs of `serve` when the wait fails.
pub struct WithLogs<'a>(pub &'a str, pub &'a Started);

impl std::fmt::Display for WithLogs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n{}", self.0, self.1.logs())
    }
}

/// A connection to the tests' Redis (see [`runhook_testkit::redis`]).
pub async fn redis() -> redis::aio::MultiplexedConnection {
    runhook_testkit::redis::connection().await
}

/// Every key matching `pattern`.
pub async fn keys(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        found.extend(batch);
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

/// Deletes every key matching `pattern`.
pub async fn delete_matching(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) {
    let found = keys(conn, pattern).await;
    if !found.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(found)
            .query_async(conn)
            .await
            .unwrap();
    }
}

/// The length of the stream at `key`.
pub async fn xlen(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> usize {
    redis::cmd("XLEN").arg(key).query_async(conn).await.unwrap()
}

/// The JSON lines of `file` (absent: none).
pub fn json_lines(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The `serve` flags of a Skyvern route at `path` whose key is in `SKYVERN_API_KEY`.
pub fn skyvern_route(path: &str) -> Vec<&str> {
    vec![
        "--path",
        path,
        "--provider",
        "skyvern",
        "--secret-env",
        "SKYVERN_API_KEY",
    ]
}

/// The `serve` flags of a TinyFish route (path secret in `TINYFISH_PATH_SECRET`) forwarding
/// each run to `forward`.
pub fn tinyfish_forward_route(forward: &str) -> Vec<&str> {
    vec![
        "--path",
        "/hooks/tinyfish/{secret}",
        "--provider",
        "tinyfish",
        "--secret-env",
        "TINYFISH_PATH_SECRET",
        "--forward",
        forward,
    ]
}

/// A client whose requests give up after 10 s.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// POSTs `body` with `headers` to `url`; the status.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> u16 {
    let mut request = client.post(url).body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

/// POSTs `body` as JSON to `url`; the status.
pub async fn post_json(client: &reqwest::Client, url: &str, body: &[u8]) -> u16 {
    post(client, url, &[("content-type", "application/json")], body).await
}

/// Runs `runhook ARGS`; its output (whatever the exit).
pub fn runhook(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runhook"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `runhook ARGS` with `env` added to its environment; its output (whatever the exit).
pub fn runhook_with_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runhook"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}
