//! What the example tests share: an example's binary, brought up to date, and an example
//! started as its own process with its standard output collected.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runhook_testkit::wait_until_blocking;

/// The example's binary, brought up to date first: `cargo test --test <one of these>` alone
/// builds no examples, and a stale binary would test old code.
pub fn example_binary(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let profile_dir = test_exe.parent().unwrap().parent().unwrap();
    let built = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "runhook-examples", "--example", name])
        .status()
        .unwrap();
    assert!(built.success(), "cargo build --example {name} failed");
    profile_dir.join("examples").join(name)
}

/// Starts `command` (example `name`, told to listen on `port`), appending its standard output
/// to `printed` line by line, and waits (at most `wait`) until it accepts connections.
pub fn spawn_listening(
    mut command: Command,
    name: &str,
    port: u16,
    wait: Duration,
    printed: Arc<Mutex<Vec<String>>>,
) -> Child {
    let mut child = command
        .env("PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = printed;
    let pipe = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
    wait_until_blocking(wait, format!("{name} to listen"), || {
        assert!(child.try_wait().unwrap().is_none(), "{name} exited early");
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    child
}
