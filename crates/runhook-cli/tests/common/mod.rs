//! What the `runhook serve` end-to-end tests share: unique ids, the Redis check, starting and
//! stopping the real binary on a free port, signed Skyvern deliveries, and reading what the
//! handlers wrote.

#![allow(dead_code)] // each test file uses its own subset

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use runhook::verify::sign_skyvern;
use runhook::Secret;

/// An id no other test (or earlier run against a shared Redis) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Panics, saying how to start one, unless Redis answers on 127.0.0.1:6379: a test that
/// needs Redis never passes without it.
pub fn require_redis() {
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:6379".parse().unwrap(),
        Duration::from_secs(1),
    )
    .is_ok();
    assert!(
        up,
        "this test needs Redis on 127.0.0.1:6379; start one with \
         `redis-server --daemonize yes --port 6379 --save \"\" --appendonly no`"
    );
}

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

    /// Sends SIGTERM, then waits at most `limit` for the exit.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "serve did not exit within {limit:?}"
            );
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

/// Starts `runhook serve --listen 127.0.0.1:0 ARGS` with `env`, logs to a file in `dir`, and
/// waits until it says where it listens.
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
    let stderr = dir.join(format!("{}.log", unique("serve")));
    let mut command = Command::new(env!("CARGO_BIN_EXE_runhook"));
    for name in removed {
        command.env_remove(name);
    }
    let mut child = command
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

/// A Skyvern run-completed body for `run_id`.
pub fn skyvern_body(run_id: &str) -> Vec<u8> {
    format!(
        r#"{{"run_id":"{run_id}","task_id":"{run_id}","status":"completed","output":{{"n":1}},"failure_reason":null}}"#
    )
    .into_bytes()
}

/// A JSON POST of `body` to `url`, signed the Skyvern way with `key`.
pub fn skyvern_post(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let signature = sign_skyvern(&Secret::new(key).unwrap(), body);
    client
        .post(url)
        .header("content-type", "application/json")
        .header("x-skyvern-signature", signature)
        .body(body.to_vec())
}

/// How many times each line occurs in `file` (absent: none).
pub fn line_counts(file: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

/// An async connection to the Redis on 127.0.0.1:6379.
pub async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}
