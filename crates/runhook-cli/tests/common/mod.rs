//! What the `runhook serve` end-to-end tests share: unique ids, the Redis check, and starting
//! the real binary on a free port.

#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
pub struct Started {
    pub child: Child,
    pub base: String,
    pub stderr: PathBuf,
}

/// Starts `runhook serve --listen 127.0.0.1:0 ARGS` with `env`, logs to a file in `dir`, and
/// waits until it says where it listens.
pub fn start_serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Started {
    let stderr = dir.join(format!("{}.log", unique("serve")));
    let mut child = Command::new(env!("CARGO_BIN_EXE_runhook"))
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
