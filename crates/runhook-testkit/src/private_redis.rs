//! A `redis-server` of one test's own, on a free loopback port, without persistence: for tests
//! that stop, stall or restart Redis, which they must never do to the shared one.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` started for one test, killed when dropped. A missing `redis-server` fails
/// the test loudly (`bash .ci/run` installs it).
pub struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    /// Starts `redis-server` on a free port with `--save '' --appendonly no` and `extra`
    /// arguments, and waits (at most 5 s) until it accepts connections.
    pub fn start(extra: &[&str]) -> Self {
        let port = crate::free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("this test needs redis-server on PATH (bash .ci/run installs it): {e}")
            });
        let mut redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = redis.child.try_wait() {
                panic!("redis-server exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server not listening on {port} within 5 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// Its URL, `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the process (SIGSTOP): connections stay open, nothing is answered, as in a long
    /// pause of the server or a network partition.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {name} redis-server");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // A paused server would not die of SIGKILL any later, but be sure it is running.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
