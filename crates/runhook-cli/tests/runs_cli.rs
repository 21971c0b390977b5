//! Issue #15 end to end: the real `runhook serve` against a local stand-in of each platform's
//! run API, with Redis: expected runs whose webhook never comes are reconciled once, a webhook
//! and a reconciliation racing for one run are processed once, confirm hands the handler the
//! API's data and refuses runs the API does not know, and two instances share the work.
//! Runs are counted from the jsonl files.
//!
//! Needs Redis on 127.0.0.1:6379 (fails without).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use runhook::payload::Provider;
use serde_json::{json, Value};

mod common;
#[path = "../../runhook/tests/support/run_api.rs"]
mod run_api;

use common::{
    json_lines, post_json, redis, redis_url, require_redis, scratch, skyvern_post, start_serve,
    unique, Started,
};
use run_api::RunApi;
use runhook_testkit::wait_until as wait_for;

const TF_KEY: &str = "tf_api_key_runs_cli";
const SB_KEY: &str = "sb_api_key_runs_cli";
const SK_KEY: &str = "sk_api_key_runs_cli";
const SKYVERN_WEBHOOK_KEY: &str = "sk_webhook_key_runs_cli";

/// The run API keys and the Skyvern signing key, as `serve` reads them.
const ENV: [(&str, &str); 4] = [
    ("TF_API_KEY", TF_KEY),
    ("SB_API_KEY", SB_KEY),
    ("SK_API_KEY", SK_KEY),
    ("SKYVERN_KEY", SKYVERN_WEBHOOK_KEY),
];

/// A fresh directory and Redis prefix for one test.
struct Setup {
    dir: PathBuf,
    prefix: String,
}

impl Setup {
    fn new(name: &str) -> Self {
        require_redis();
        let dir = scratch(&format!("runhook-runs-{name}"));
        Self {
            dir,
            prefix: unique(&format!("runs_{name}")),
        }
    }

    /// Starts `serve` with `routes` (TOML `[[route]]` tables), writing to `jsonl`.
    fn serve(&self, jsonl: &str, routes: &str) -> Started {
        self.serve_with(jsonl, "", routes)
    }

    /// [`Setup::serve`] with `top` (top-level TOML keys) added.
    fn serve_with(&self, jsonl: &str, top: &str, routes: &str) -> Started {
        let config = format!(
            "store = \"{}\"\nredis_prefix = \"{}\"\ndead_letters = \"{}\"\n\
             retry_backoff_ms = 100\n{top}\n[handler]\njsonl = \"{}\"\n{routes}",
            redis_url(),
            self.prefix,
            self.dir.join("dead.jsonl").display(),
            self.dir.join(jsonl).display(),
        );
        let path = self.dir.join(format!("{}.toml", unique("runhook")));
        std::fs::write(&path, config).unwrap();
        start_serve(&self.dir, &["--config", path.to_str().unwrap()], &ENV)
    }

    /// `runhook expect` for `run_ids`, with `--within` when given; its standard output.
    fn expect(&self, provider: &str, run_ids: &[String], within: Option<u64>) -> String {
        let mut command = Command::new(env!("CARGO_BIN_EXE_runhook"));
        command.args([
            "expect",
            "--store",
            &redis_url(),
            "--redis-prefix",
            &self.prefix,
            "--provider",
            provider,
        ]);
        if let Some(secs) = within {
            command.args(["--within", &secs.to_string()]);
        }
        let output = command.args(run_ids).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Expectations of `provider` still in Redis.
    async fn waiting(&self, provider: &str) -> usize {
        let mut redis = redis().await;
        redis::cmd("ZCARD")
            .arg(format!("{}:expect:{{{provider}}}", self.prefix))
            .query_async(&mut redis)
            .await
            .unwrap()
    }

    /// Waits (at most `limit`) until no expectation of `provider` is left.
    async fn wait_settled(&self, provider: &str, limit: Duration) {
        let started = Instant::now();
        while self.waiting(provider).await > 0 {
            assert!(started.elapsed() < limit, "{provider} expectations left");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most `limit.0`, for `limit.1`) until `done` holds, then (at most `settle`)
    /// until no expectation of `providers` is left, then `quiet` more for any late event.
    async fn settle(
        &self,
        limit: (Duration, &str),
        done: impl FnMut() -> bool,
        providers: &[&str],
        settle: Duration,
        quiet: Duration,
    ) {
        wait_for(limit.0, limit.1, done).await;
        for provider in providers {
            self.wait_settled(provider, settle).await;
        }
        tokio::time::sleep(quiet).await;
    }

    /// [`Setup::settle`] for one TinyFish `run` in `events.jsonl`: processed within
    /// `within_secs`, the expectations settled within `settle_secs`, 1.5 s of quiet.
    async fn run_settled(&self, run: &str, within_secs: u64, settle_secs: u64) {
        self.settle(
            (Duration::from_secs(within_secs), "the run processed"),
            || self.processed("events.jsonl").contains_key(run),
            &["tinyfish"],
            Duration::from_secs(settle_secs),
            Duration::from_millis(1500),
        )
        .await;
    }

    /// [`Setup::settle`] for TinyFish `runs` in `events.jsonl`: all processed within 10 s,
    /// the expectations settled within 10 s, 1.5 s of quiet.
    async fn runs_settled(&self, runs: &[String], what: &str) {
        self.settle(
            (Duration::from_secs(10), what),
            || self.processed("events.jsonl").len() == runs.len(),
            &["tinyfish"],
            Duration::from_secs(10),
            Duration::from_millis(1500),
        )
        .await;
    }

    /// Scripts each TinyFish run in `runs` as completed on `api`, then expects them all
    /// within `within_secs`; what `expect` said.
    fn expect_completed(&self, api: &RunApi, runs: &[String], within_secs: u64) -> String {
        for run in runs {
            api.script_statuses(run, &["COMPLETED"]);
        }
        self.expect("tinyfish", runs, Some(within_secs))
    }

    /// The processed events in `jsonl`, by run id.
    fn processed(&self, jsonl: &str) -> HashMap<String, Vec<Value>> {
        events(&self.dir.join(jsonl))
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn events(file: &Path) -> HashMap<String, Vec<Value>> {
    let mut by_run: HashMap<String, Vec<Value>> = HashMap::new();
    for event in json_lines(file) {
        let run_id = event["run_id"].as_str().unwrap().to_string();
        by_run.entry(run_id).or_default().push(event);
    }
    by_run
}

/// A fresh [`Setup`], a TinyFish run API stand-in, and `serve` on one TinyFish route
/// (`/tinyfish`, writing `events.jsonl`) with `extra` TOML keys.
async fn tinyfish_setup(name: &str, extra: &str) -> (Setup, RunApi, Started) {
    let setup = Setup::new(name);
    let api = RunApi::start(Provider::TinyFish, TF_KEY).await;
    let serve = setup.serve("events.jsonl", &tinyfish_route("/tinyfish", &api, extra));
    (setup, api, serve)
}

/// An unsigned TinyFish route at `path` on the run API at `api`, with `extra` TOML keys.
fn tinyfish_route(path: &str, api: &RunApi, extra: &str) -> String {
    format!(
        "[[route]]\npath = \"{path}\"\nprovider = \"tinyfish\"\nunsigned = true\n\
         api_url = \"{}\"\napi_key_env = \"TF_API_KEY\"\n{extra}\n",
        api.base
    )
}

/// A TinyFish webhook body for `run_id`, its result marking it as the POSTed one.
fn tinyfish_webhook(run_id: &str) -> Vec<u8> {
    json!({
        "event": "run.completed", "run_id": run_id, "status": "COMPLETED",
        "data": {"run_id": run_id, "status": "COMPLETED", "result": {"from": "webhook"}, "error": null},
    })
    .to_string()
    .into_bytes()
}

async fn post(url: &str, body: Vec<u8>) -> u16 {
    post_with(&reqwest::Client::new(), url, body).await
}

async fn post_with(client: &reqwest::Client, url: &str, body: Vec<u8>) -> u16 {
    post_json(client, url, &body).await
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| unique(&format!("{prefix}{i}"))).collect()
}

async fn metrics(serve: &Started) -> String {
    reqwest::get(format!("{}/metrics", serve.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expected_run_whose_webhook_never_comes_is_reconciled_once() {
    let (setup, api, serve) = tinyfish_setup("missed", "reconcile_after_secs = 1").await;
    let run = unique("tf_missed");
    api.script_statuses(&run, &["COMPLETED"]);
    // No --within: the route's reconcile_after_secs.
    let said = setup.expect("tinyfish", std::slice::from_ref(&run), None);
    assert_eq!(said.trim(), format!("recorded tinyfish {run}"));
    let again = setup.expect("tinyfish", std::slice::from_ref(&run), None);
    assert_eq!(again.trim(), format!("already expected tinyfish {run}"));

    setup.run_settled(&run, 10, 5).await;
    let processed = setup.processed("events.jsonl");
    let events = &processed[&run];
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["source"], "reconciled");
    assert_eq!(events[0]["confirmed"], true);
    assert_eq!(events[0]["result"], json!({"from": "run-api"}));
    let calls = api.calls(&run);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls.iter().all(|c| c.key.as_deref() == Some(TF_KEY)));
    assert_eq!(calls[0].path, format!("/v1/runs/{run}"));
    let text = metrics(&serve).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("runhook_reconciled_total{") && l.ends_with(" 1")),
        "{text}"
    );
    assert!(
        !serve.logs().contains(TF_KEY),
        "the API key was logged:\n{}",
        serve.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_still_running_is_processed_only_once_it_is_terminal() {
    let (setup, api, _serve) = tinyfish_setup("running", "reconcile_after_secs = 1").await;
    let run = unique("tf_running");
    api.script_statuses(&run, &["RUNNING", "COMPLETED"]);
    setup.expect("tinyfish", std::slice::from_ref(&run), Some(1));
    wait_for(Duration::from_secs(10), "the first fetch", || {
        !api.calls(&run).is_empty()
    })
    .await;
    // The reconciler waits 5 s before fetching an unfinished run again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!setup.processed("events.jsonl").contains_key(&run));
    assert_eq!(api.calls(&run).len(), 1);

    setup.run_settled(&run, 15, 5).await;
    let events = &setup.processed("events.jsonl")[&run];
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["status"], "completed");
    assert_eq!(events[0]["source"], "reconciled");
    assert_eq!(api.calls(&run).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_in_time_is_processed_once_without_an_api_call() {
    let (setup, api, serve) = tinyfish_setup("intime", "reconcile_after_secs = 1").await;
    let runs = ids("tf_intime", 5);
    // Had the reconciler fetched them, they would have been processed from the API.
    setup.expect_completed(&api, &runs, 2);
    for run in &runs {
        let status = post(&format!("{}/tinyfish", serve.base), tinyfish_webhook(run)).await;
        assert_eq!(status, 200);
    }
    // Past their due time, the reconciler forgets them without fetching.
    setup.runs_settled(&runs, "the webhooks processed").await;
    let processed = setup.processed("events.jsonl");
    for run in &runs {
        let events = &processed[run];
        assert_eq!(events.len(), 1, "{run}: {events:?}");
        assert_eq!(events[0]["source"], "webhook");
        assert_eq!(events[0]["confirmed"], false);
        assert_eq!(events[0]["result"], json!({"from": "webhook"}));
    }
    let calls = api.all_calls();
    assert!(calls.is_empty(), "{calls:?}");
    println!(
        "API calls per expected run whose webhook came in time: 0 ({} runs)",
        runs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_racing_its_reconciliation_is_processed_once() {
    let (setup, api, serve) = tinyfish_setup("race", "reconcile_after_secs = 1").await;
    let runs = ids("tf_race", 30);
    setup.expect_completed(&api, &runs, 1);
    // The webhooks arrive spread around the due time, while the reconciler polls.
    let url = format!("{}/tinyfish", serve.base);
    let mut posts = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let (url, body) = (url.clone(), tinyfish_webhook(run));
        posts.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500 + 60 * i as u64)).await;
            post(&url, body).await
        }));
    }
    for p in posts {
        assert_eq!(p.await.unwrap(), 200);
    }
    setup.runs_settled(&runs, "every run processed").await;
    let processed = setup.processed("events.jsonl");
    let mut sources: HashMap<String, usize> = HashMap::new();
    for run in &runs {
        let events = &processed[run];
        assert_eq!(events.len(), 1, "{run}: {events:?}");
        *sources
            .entry(events[0]["source"].as_str().unwrap().into())
            .or_default() += 1;
    }
    println!("race: processed once each, by source {sources:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_smartbrowse_and_skyvern_runs_are_each_reconciled_once() {
    let setup = Setup::new("others");
    let smartbrowse = RunApi::start(Provider::SmartBrowse, SB_KEY).await;
    let skyvern = RunApi::start(Provider::Skyvern, SK_KEY).await;
    let routes = format!(
        "[[route]]\npath = \"/smartbrowse\"\nprovider = \"smartbrowse\"\nunsigned = true\n\
         api_url = \"{}\"\napi_key_env = \"SB_API_KEY\"\nreconcile_after_secs = 1\n\
         [[route]]\npath = \"/skyvern\"\nprovider = \"skyvern\"\nsecret_env = \"SKYVERN_KEY\"\n\
         api_url = \"{}\"\napi_key_env = \"SK_API_KEY\"\nreconcile_after_secs = 1\n",
        smartbrowse.base, skyvern.base
    );
    let serve = setup.serve("events.jsonl", &routes);
    let sb_run = unique("sb_missed");
    let sk_run = unique("wr_missed");
    smartbrowse.script_statuses(&sb_run, &["completed"]);
    skyvern.script_statuses(&sk_run, &["completed"]);
    setup.expect("smartbrowse", std::slice::from_ref(&sb_run), Some(1));
    setup.expect("skyvern", std::slice::from_ref(&sk_run), Some(1));
    // A webhook for another Skyvern run on the same route is processed as usual.
    let other = unique("wr_webhook");
    let status = skyvern_post(
        &reqwest::Client::new(),
        &format!("{}/skyvern", serve.base),
        SKYVERN_WEBHOOK_KEY,
        &common::skyvern_body(&other),
    )
    .send()
    .await
    .unwrap()
    .status();
    assert_eq!(status, 200);

    setup
        .settle(
            (Duration::from_secs(10), "both runs processed"),
            || {
                let processed = setup.processed("events.jsonl");
                processed.contains_key(&sb_run) && processed.contains_key(&sk_run)
            },
            &["smartbrowse", "skyvern"],
            Duration::from_secs(5),
            Duration::from_millis(1500),
        )
        .await;
    let processed = setup.processed("events.jsonl");
    for (run, provider, api, key) in [
        (&sb_run, "smartbrowse", &smartbrowse, SB_KEY),
        (&sk_run, "skyvern", &skyvern, SK_KEY),
    ] {
        let events = &processed[run];
        assert_eq!(events.len(), 1, "{provider}: {events:?}");
        assert_eq!(events[0]["provider"], provider);
        assert_eq!(events[0]["source"], "reconciled");
        assert_eq!(events[0]["status"], "completed");
        let calls = api.calls(run);
        assert_eq!(calls.len(), 1, "{provider}: {calls:?}");
        assert_eq!(calls[0].key.as_deref(), Some(key));
    }
    assert_eq!(processed[&other][0]["source"], "webhook");
    assert_eq!(
        smartbrowse.calls(&sb_run)[0].path,
        format!("/v1/smartbrowse/runs/{sb_run}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_hands_over_the_api_data_and_refuses_runs_it_does_not_know() {
    let (setup, api, serve) = tinyfish_setup("confirm", "confirm = true").await;
    let known = unique("tf_known");
    let forged = unique("tf_forged");
    api.script_statuses(&known, &["COMPLETED"]);
    let url = format!("{}/tinyfish", serve.base);
    assert_eq!(post(&url, tinyfish_webhook(&known)).await, 200);
    assert_eq!(post(&url, tinyfish_webhook(&forged)).await, 200);

    wait_for(Duration::from_secs(10), "the known run processed", || {
        setup.processed("events.jsonl").contains_key(&known)
    })
    .await;
    let dead = setup.dir.join("dead.jsonl");
    let list = || {
        let output = Command::new(env!("CARGO_BIN_EXE_runhook"))
            .args(["dead-letters", "list", "--file", dead.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    wait_for(
        Duration::from_secs(10),
        "the forged run dead-lettered",
        || dead.exists() && list().contains(&forged),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let processed = setup.processed("events.jsonl");
    let events = &processed[&known];
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["confirmed"], true);
    assert_eq!(events[0]["source"], "webhook");
    assert_eq!(events[0]["result"], json!({"from": "run-api"}));
    assert_eq!(
        events[0]["body"]["data"]["result"],
        json!({"from": "run-api"})
    );
    assert!(!processed.contains_key(&forged), "{processed:?}");
    let letters: Vec<Value> = list()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["run_id"], forged.as_str());
    assert_eq!(letters[0]["reason_code"], "not_confirmed");
    assert_eq!(api.calls(&known).len(), 1);
    assert!(api
        .calls(&forged)
        .iter()
        .all(|c| c.key.as_deref() == Some(TF_KEY)));
    let text = metrics(&serve).await;
    for line in [
        "runhook_confirmed_total{",
        "runhook_confirm_failures_total{",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(line) && l.ends_with(" 1")),
            "{line}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_the_api_never_reports_finished_is_dead_lettered_not_confirmed() {
    let setup = Setup::new("unfinished");
    let api = RunApi::start(Provider::TinyFish, TF_KEY).await;
    let serve = setup.serve_with(
        "events.jsonl",
        "max_attempts = 2",
        &tinyfish_route("/tinyfish", &api, "confirm = true"),
    );
    let run = unique("tf_unfinished");
    api.script_statuses(&run, &["RUNNING"]);
    let url = format!("{}/tinyfish", serve.base);
    assert_eq!(post(&url, tinyfish_webhook(&run)).await, 200);
    let dead = setup.dir.join("dead.jsonl");
    wait_for(Duration::from_secs(10), "the run dead-lettered", || {
        std::fs::read_to_string(&dead).is_ok_and(|text| text.contains(&run))
    })
    .await;
    let letter: Value =
        serde_json::from_str(std::fs::read_to_string(&dead).unwrap().trim()).unwrap();
    assert_eq!(letter["reason_code"], "not_confirmed", "{letter}");
    assert!(
        letter["reason"].as_str().unwrap().contains("RUNNING"),
        "{letter}"
    );
    assert!(setup.processed("events.jsonl").is_empty());
    assert_eq!(api.calls(&run).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_reconcile_many_expected_runs_once_in_all() {
    const RUNS: usize = 100;
    let setup = Setup::new("two");
    let api = RunApi::start(Provider::TinyFish, TF_KEY).await;
    let route = tinyfish_route("/tinyfish", &api, "reconcile_after_secs = 1");
    let _a = setup.serve("a.jsonl", &route);
    let _b = setup.serve("b.jsonl", &route);
    let runs = ids("tf_many", RUNS);
    let said = setup.expect_completed(&api, &runs, 1);
    assert_eq!(
        said.lines().filter(|l| l.starts_with("recorded ")).count(),
        RUNS
    );

    let total = || setup.processed("a.jsonl").len() + setup.processed("b.jsonl").len();
    setup
        .settle(
            (Duration::from_secs(20), "every run processed"),
            || total() >= RUNS,
            &["tinyfish"],
            Duration::from_secs(10),
            Duration::from_millis(2000),
        )
        .await;
    let (a, b) = (setup.processed("a.jsonl"), setup.processed("b.jsonl"));
    for run in &runs {
        let times = a.get(run).map_or(0, Vec::len) + b.get(run).map_or(0, Vec::len);
        assert_eq!(times, 1, "{run} processed {times} times");
    }
    let calls = api.all_calls();
    println!(
        "two instances: {} and {} runs; {} API calls for {RUNS} expected runs ({:.2} per run)",
        a.len(),
        b.len(),
        calls.len(),
        calls.len() as f64 / RUNS as f64
    );
    for run in &runs {
        assert_eq!(api.calls(run).len(), 1, "{run} fetched more than once");
    }
}

/// The latency confirm adds, from POST to the jsonl line, median over N runs each way: one
/// `serve` with a plain and a confirming unsigned TinyFish route, on Redis, against the local
/// stand-in (so: one loopback HTTP fetch). Printed; run with `--nocapture` to see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_latency_from_post_to_processed() {
    const N: usize = 30;
    let setup = Setup::new("latency");
    let api = RunApi::start(Provider::TinyFish, TF_KEY).await;
    let routes = format!(
        "[[route]]\npath = \"/plain\"\nprovider = \"tinyfish\"\nunsigned = true\n{}",
        tinyfish_route("/checked", &api, "confirm = true")
    );
    let serve = setup.serve("events.jsonl", &routes);
    let file = setup.dir.join("events.jsonl");
    let client = reqwest::Client::new();
    let mut medians = Vec::new();
    for route in ["/plain", "/checked"] {
        let mut took = Vec::with_capacity(N);
        for run in ids("tf_latency", N) {
            api.script_statuses(&run, &["COMPLETED"]);
            let needle = format!("\"run_id\":\"{run}\"");
            let (url, body) = (format!("{}{route}", serve.base), tinyfish_webhook(&run));
            let started = Instant::now();
            assert_eq!(post_with(&client, &url, body).await, 200);
            while !std::fs::read_to_string(&file)
                .unwrap_or_default()
                .contains(&needle)
            {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "{run} not processed"
                );
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            took.push(started.elapsed());
        }
        took.sort();
        medians.push(took[N / 2]);
    }
    let processed = setup.processed("events.jsonl");
    assert_eq!(processed.len(), 2 * N);
    let confirmed = processed
        .values()
        .filter(|e| e[0]["confirmed"] == true)
        .count();
    assert_eq!(confirmed, N);
    assert_eq!(api.all_calls().len(), N);
    println!(
        "POST to jsonl line, median of {N}: {:.2} ms plain, {:.2} ms with confirm (+{:.2} ms)",
        medians[0].as_secs_f64() * 1e3,
        medians[1].as_secs_f64() * 1e3,
        (medians[1].as_secs_f64() - medians[0].as_secs_f64()) * 1e3
    );
}

/// `runhook serve ARGS` that must refuse to start: its standard error.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_runhook"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--jsonl", "/dev/null"])
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUNHOOK_UNSET_KEY")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn serve_refuses_run_api_settings_that_cannot_work() {
    // (provider, flags after `--path /t --provider P --unsigned`, what the error must say)
    let cases: [(&str, &[&str], &str); 5] = [
        (
            "webrun",
            &["--confirm", "--api-key-env", "TF_API_KEY"],
            "WebRun documents no run API",
        ),
        ("tinyfish", &["--confirm"], "give api_key_env"),
        (
            "tinyfish",
            &["--confirm", "--api-key-env", "RUNHOOK_UNSET_KEY"],
            "RUNHOOK_UNSET_KEY is not set",
        ),
        (
            "tinyfish",
            &["--reconcile-after-secs", "5", "--api-key-env", "TF_API_KEY"],
            "needs a shared store",
        ),
        (
            "tinyfish",
            &[
                "--confirm",
                "--api-key-env",
                "TF_API_KEY",
                "--api-url",
                "ftp://user:hunter2@example.com",
            ],
            "api_url",
        ),
    ];
    for (provider, flags, says) in cases {
        let path = if provider == "webrun" { "/w" } else { "/t" };
        let route = ["--path", path, "--provider", provider, "--unsigned"];
        let stderr = refused(&[&route[..], flags].concat(), &ENV);
        assert!(stderr.contains(says), "{stderr}");
        // The URL's password is never shown.
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert!(!stderr.contains(TF_KEY), "the key leaked: {stderr}");
    }
}

#[test]
fn expect_refuses_webrun_and_a_memory_store() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_runhook"))
            .arg("expect")
            .args(args)
            .output()
            .unwrap()
    };
    let webrun = run(&["--store", &redis_url(), "--provider", "webrun", "r1"]);
    assert_eq!(webrun.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&webrun.stderr).contains("no run API"));
    let memory = run(&["--store", "memory", "--provider", "tinyfish", "r1"]);
    assert_eq!(memory.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&memory.stderr).contains("redis://"));
}
