//! The background-handler examples (`axum_skyvern`, `actix_webrun`, `multi_provider`) as a
//! user runs them: each started as its own process on a free port, sent genuine deliveries
//! over real HTTP, and held to their contract: one line `processed <provider> <run_id>` per
//! run (the platform's run id, never the de-duplication key), none for a duplicate.

mod support;

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runhook_testkit::skyvern::{completed_body, signature};
use runhook_testkit::{free_port, unique, wait_for};
use support::{example_binary, spawn_listening};

const SKYVERN_KEY: &str = "sk_test_printing_examples";
const WEBRUN_AUTH: &str = "Bearer webrun-printing-examples";
const SMARTBROWSE_TOKEN: &str = "Bearer smartbrowse-printing-examples";
const TINYFISH_SECRET: &str = "tfPrintingExamples7";
const WAIT: Duration = Duration::from_secs(30);

/// One running example process, its standard output collected; killed when dropped.
struct Example {
    child: Child,
    base: String,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Example {
    fn start(name: &str) -> Self {
        let port = free_port();
        let mut command = Command::new(example_binary(name));
        command
            .env("SKYVERN_API_KEY", SKYVERN_KEY)
            .env("WEBRUN_WEBHOOK_AUTH", WEBRUN_AUTH)
            .env("SMARTBROWSE_WEBHOOK_TOKEN", SMARTBROWSE_TOKEN)
            .env("TINYFISH_PATH_SECRET", TINYFISH_SECRET)
            .env_remove("REDIS_URL");
        let stdout = Arc::default();
        let child = spawn_listening(command, name, port, WAIT, Arc::clone(&stdout));
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stdout,
        }
    }

    async fn post(&self, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> u16 {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .timeout(WAIT)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.unwrap().status().as_u16()
    }

    async fn skyvern(&self, run_id: &str) -> u16 {
        let body = completed_body(run_id);
        let signed = [("x-skyvern-signature", signature(SKYVERN_KEY, &body))];
        self.post("/webhooks/skyvern", &signed, body).await
    }

    /// Every line printed so far, once `line` is among them.
    async fn printed(&self, line: &str) -> Vec<String> {
        wait_for(WAIT, format!("`{line}` printed"), || {
            let lines = self.stdout.lock().unwrap();
            lines.iter().any(|l| l == line).then(|| lines.clone())
        })
        .await
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn axum_skyvern_prints_the_run_id_once_per_run() {
    let example = Example::start("axum_skyvern");
    let run = unique("tsk_v2_print");
    assert_eq!(example.skyvern(&run).await, 200);
    assert_eq!(example.skyvern(&run).await, 200, "a duplicate");
    let marker = unique("tsk_v2_marker");
    assert_eq!(example.skyvern(&marker).await, 200);
    let lines = example
        .printed(&format!("processed skyvern {marker}"))
        .await;
    let mine: Vec<_> = lines.iter().filter(|l| l.contains(&run)).collect();
    assert_eq!(mine, [&format!("processed skyvern {run}")]);
}

#[tokio::test]
async fn actix_webrun_prints_the_task_id() {
    let example = Example::start("actix_webrun");
    let task = unique("task_print");
    let body = format!(r#"{{"event":"task_completed","sessionId":"s1","taskId":"{task}"}}"#);
    let auth = [("authorization", WEBRUN_AUTH.to_string())];
    assert_eq!(
        example
            .post("/webhooks/webrun", &auth, body.into_bytes())
            .await,
        200
    );
    let lines = example.printed(&format!("processed webrun {task}")).await;
    assert!(!lines.iter().any(|l| l.contains("webrun:")), "{lines:?}");
}

#[tokio::test]
async fn multi_provider_prints_each_platforms_run_id() {
    let example = Example::start("multi_provider");
    let skyvern = unique("wr_print");
    assert_eq!(example.skyvern(&skyvern).await, 200);
    let tinyfish = unique("tf-print");
    let body = format!(
        r#"{{"event":"run.completed","run_id":"{tinyfish}","status":"COMPLETED","data":{{"result":{{"n":1}}}}}}"#
    );
    let path = format!("/webhooks/tinyfish/{TINYFISH_SECRET}");
    assert_eq!(example.post(&path, &[], body.into_bytes()).await, 200);
    example
        .printed(&format!("processed skyvern {skyvern}"))
        .await;
    let lines = example
        .printed(&format!("processed tinyfish {tinyfish}"))
        .await;
    assert!(!lines.iter().any(|l| l.contains(':')), "{lines:?}");
}
