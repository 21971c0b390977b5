//! The two middleware examples (`axum_middleware`, `actix_middleware`) as a user runs them:
//! each example binary is started as its own process on a free port and driven over real
//! HTTP. What its endpoint processed is read from its standard output (`processed skyvern
//! <run_id>`, one line per call that got through).
//!
//! Each binary is brought up to date before it starts.

mod support;

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runhook_testkit::fixture::SKYVERN_COMPLETED_DELIVERY;
use runhook_testkit::skyvern::signature;
use runhook_testkit::{free_port, redis_url, require_redis, unique, wait_for};
use serde_json::Value;
use support::{example_binary, spawn_listening};

const KEY: &str = "sk_test_middleware_examples";
const ROUTE: &str = "/webhooks/skyvern";
/// How long anything may take before a test fails: generous, it bounds only a broken run.
const WAIT: Duration = Duration::from_secs(30);

/// One running example process; killed when dropped.
struct Example {
    child: Child,
    base: String,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Example {
    /// Starts example `name` (with Redis as its store when `redis` is set) and waits until it
    /// accepts connections.
    fn start(name: &str, redis: Store) -> Self {
        let port = free_port();
        let mut command = Command::new(example_binary(name));
        command.env("SKYVERN_API_KEY", KEY).env_remove("REDIS_URL");
        if let Store::Redis = redis {
            require_redis();
            command.env("REDIS_URL", redis_url());
        }
        let stdout = Arc::default();
        let child = spawn_listening(command, name, port, WAIT, Arc::clone(&stdout));
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stdout,
        }
    }

    /// How many times the endpoint processed `run_id`, once every call answered so far has
    /// printed: a marker run is delivered and waited for first (standard output is ordered).
    async fn processed(&self, run_id: &str) -> usize {
        let marker = unique("marker");
        assert_eq!(self.post_signed(&skyvern_body(&marker)).await.0, 200);
        let line = |id: &str| format!("processed skyvern {id}");
        wait_for(WAIT, "the marker run printed", || {
            let lines = self.stdout.lock().unwrap();
            lines
                .contains(&line(&marker))
                .then(|| lines.iter().filter(|l| **l == line(run_id)).count())
        })
        .await
    }

    async fn post(&self, body: Vec<u8>, signature: Option<&str>) -> (u16, String) {
        let mut request = reqwest::Client::new()
            .post(format!("{}{ROUTE}", self.base))
            .header("content-type", "application/json")
            .timeout(WAIT)
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-skyvern-signature", signature);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    async fn post_signed(&self, body: &[u8]) -> (u16, String) {
        self.post(body.to_vec(), Some(&signature(KEY, body))).await
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the example keeps its claims.
#[derive(Clone, Copy)]
enum Store {
    Memory,
    Redis,
}

/// The example delivery in `examples/deliveries/` (a real Skyvern body, pretty-printed as
/// Skyvern sends it) with `run_id` as its run.
fn skyvern_body(run_id: &str) -> Vec<u8> {
    let mut body: Value = serde_json::from_str(SKYVERN_COMPLETED_DELIVERY).unwrap();
    body["run_id"] = run_id.into();
    body["task_id"] = run_id.into();
    serde_json::to_vec_pretty(&body).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The scenarios, each run against both examples.

async fn genuine_once_duplicate_answered_without_a_call(name: &str, store: Store) {
    let example = Example::start(name, store);
    let run = unique("run");
    let body = skyvern_body(&run);
    assert_eq!(example.post_signed(&body).await.0, 200);
    let (status, answer) = example.post_signed(&body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(example.processed(&run).await, 1);
}

async fn fifty_concurrent_copies_are_handled_once(name: &str) {
    let example = Arc::new(Example::start(name, Store::Memory));
    let run = unique("burst");
    let body = skyvern_body(&run);
    let copies: Vec<_> = (0..50)
        .map(|_| {
            let (example, body) = (example.clone(), body.clone());
            tokio::spawn(async move { example.post_signed(&body).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for copy in copies {
        statuses.push(copy.await.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    assert_eq!(example.processed(&run).await, 1);
}

async fn bad_signatures_get_401_and_are_never_handled(name: &str) {
    let example = Example::start(name, Store::Memory);
    let run = unique("forged");
    let body = skyvern_body(&run);
    let forged = signature("sk_not_the_key", &body);
    assert_eq!(example.post(body.clone(), Some(&forged)).await.0, 401);
    assert_eq!(example.post(body.clone(), None).await.0, 401);
    // The same JSON re-serialized (compact) no longer carries the signature of its bytes.
    let genuine = signature(KEY, &body);
    let compact = serde_json::to_vec(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
    assert_ne!(compact, body);
    assert_eq!(example.post(compact, Some(&genuine)).await.0, 401);
    assert_eq!(example.processed(&run).await, 0);
}

async fn a_failed_endpoint_lets_the_retry_run(name: &str) {
    let example = Example::start(name, Store::Memory);
    let run = unique("fail_once_");
    let body = skyvern_body(&run);
    assert_eq!(example.post_signed(&body).await.0, 500);
    assert_eq!(example.processed(&run).await, 0);
    assert_eq!(example.post_signed(&body).await.0, 200);
    assert_eq!(example.post_signed(&body).await.0, 200);
    assert_eq!(example.processed(&run).await, 1);
}

async fn three_mib_gets_a_readable_413(name: &str) {
    let example = Example::start(name, Store::Memory);
    let run = unique("big");
    let mut body = skyvern_body(&run);
    let padding = format!(r#","padding":"{}"}}"#, "x".repeat(3 * 1024 * 1024));
    body.pop(); // the closing brace
    body.extend_from_slice(padding.as_bytes());
    let (status, answer) = example.post_signed(&body).await;
    assert_eq!(status, 413);
    assert!(answer.contains("body larger than"), "{answer}");
    assert_eq!(example.processed(&run).await, 0);
}

macro_rules! both_examples {
    ($($scenario:ident),* $(,)?) => {
        mod axum_middleware {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario("axum_middleware").await;
                }
            )*
        }
        mod actix_middleware {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario("actix_middleware").await;
                }
            )*
        }
    };
}

async fn genuine_once_with_the_memory_store(name: &str) {
    genuine_once_duplicate_answered_without_a_call(name, Store::Memory).await;
}

async fn genuine_once_with_redis(name: &str) {
    genuine_once_duplicate_answered_without_a_call(name, Store::Redis).await;
}

both_examples!(
    genuine_once_with_the_memory_store,
    genuine_once_with_redis,
    fifty_concurrent_copies_are_handled_once,
    bad_signatures_get_401_and_are_never_handled,
    a_failed_endpoint_lets_the_retry_run,
    three_mib_gets_a_readable_413,
);
