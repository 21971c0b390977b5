//! `runhook demo`: a receiver with a route per platform on a free localhost port, and the
//! deliveries each platform would send to it, good and bad, with what was answered and what
//! the handler processed. No configuration, no Redis. Two rows use a local stand-in for
//! TinyFish's run API ([`run_api`]): a run whose webhook never arrives, reconciled from it,
//! and a forged delivery that confirmation refuses.

mod run_api;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use clap::Args;
use http::{HeaderMap, HeaderName};
use runhook::canonical::SkyvernRequest;
use runhook::dead_letter::MemoryDeadLetters;
use runhook::payload::{EventSource, Provider, RunEvent};
use runhook::retry::RetryPolicy;
use runhook::runs::ReconcilePolicy;
use runhook::store::{
    Claim, Expectations, Fingerprint, IdempotencyStore, KeyState, MemoryStore, StoreError, Token,
};
use runhook::verify::{Clock as _, SystemClock};
use runhook::{Secret, Secrets};
use runhook_core::platform::Platform;

use super::canonicalize::reserialized_explanation_with;

use crate::deliver::{self, Attempt, AttemptResult, Credential, SenderKind};
use crate::serve::app::{self, ServedRoute, Shared};
use crate::serve::config::{Confirm, RouteSpec};

/// The demo's secrets: made up here, used only between this process and itself.
const SKYVERN_KEY: &str = "sk_demo_runhook_example";
const WEBRUN_AUTH: &str = "Bearer demo-webrun-token";
const TINYFISH_PATH: &str = "tf-demo-Q7x4Kpz";
const SMARTBROWSE_PATH: &str = "sb-demo-8x4KpzQ7";
const TINYFISH_API_KEY: &str = "tf_demo_api_key_Lw3";

/// The unsigned TinyFish route that confirms every delivery with the run API stand-in and
/// reconciles the expected runs.
const CONFIRM_PATH: &str = "/webhooks/tinyfish-confirmed";
/// A run the stand-in knows, finished, whose webhook never arrives.
const NEVER_ARRIVES_RUN: &str = "3b9e7c10-demo-4f2a-never-arrives";
/// A run nobody started: only a forger posts it.
const FORGED_RUN: &str = "0d6f1a22-demo-4c8b-forged";
/// How long the demo's expected run may wait for its webhook.
const WINDOW: Duration = Duration::from_millis(300);
/// How often the demo's reconciler looks for due runs.
const RECONCILE_EVERY: Duration = Duration::from_millis(100);

/// The bodies, as the platforms send them (see testdata/payloads).
const SKYVERN_COMPLETED: &str =
    include_str!("../../../../testdata/payloads/skyvern-task-completed.json");
const SKYVERN_FAILED: &str = include_str!("../../../../testdata/payloads/skyvern-task-failed.json");
const SKYVERN_TERMINATED: &str =
    include_str!("../../../../testdata/payloads/skyvern-terminated.json");
const TINYFISH_COMPLETED: &str =
    include_str!("../../../../testdata/payloads/tinyfish-completed.json");
const WEBRUN_FULL: &str = include_str!("../../../../testdata/payloads/webrun-full-response.json");
const WEBRUN_PING: &str = include_str!("../../../../testdata/payloads/webrun-just-ping.json");
const SMARTBROWSE_COMPLETED: &str =
    include_str!("../../../../testdata/payloads/smartbrowse-completed.json");
const SMARTBROWSE_FAILED: &str =
    include_str!("../../../../testdata/payloads/smartbrowse-failed.json");

/// Arguments of `runhook demo` (none).
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 every delivery got the expected answer and every run was \
processed exactly as expected, 1 otherwise, 2 the demo could not start."
)]
pub struct DemoArgs {}

/// What a scene does with its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    /// POSTs it as the platform's server would.
    Post,
    /// Never POSTs it: the run is expected instead, and its webhook "never arrives".
    NeverArrives,
}

/// One delivery of the script.
struct Scene {
    platform: Provider,
    what: &'static str,
    act: Act,
    path: String,
    headers: HeaderMap,
    body: Bytes,
    /// The statuses of each attempt, in order.
    expect_answers: &'static [u16],
    /// Handler calls for this delivery's run when the demo ends.
    expect_calls: usize,
    /// The reason code its run is dead-lettered with, if it is.
    expect_dead_letter: Option<&'static str>,
}

/// What happened to one scene.
struct Played {
    attempts: Vec<Attempt>,
    dedup_key: String,
}

/// Runs `runhook demo`.
pub fn run(_args: DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("runhook demo: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(demo()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("runhook demo: {message}");
            ExitCode::from(2)
        }
    }
}

async fn demo() -> Result<bool, String> {
    let started = Instant::now();
    let calls = Calls::default();
    let (api_base, api_server) = run_api::start(
        TINYFISH_API_KEY,
        HashMap::from([(
            NEVER_ARRIVES_RUN.to_string(),
            serde_json::json!({
                "run_id": NEVER_ARRIVES_RUN, "status": "COMPLETED", "goal": "Find the cheapest flight price",
                "result": {"route": "LIS-FAO", "price": 38.5}, "error": null,
            }),
        )]),
    )
    .await?;
    let dead_letters = Arc::new(MemoryDeadLetters::default());
    let routes = demo_routes(calls.clone(), dead_letters.clone(), &api_base)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on localhost: {e}"))?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    println!("runhook demo: a receiver on {base} (memory store, no Redis) with these routes:");
    for route in routes.iter() {
        println!("  POST {:<36} {}", route.path, route.receiver.provider());
    }
    println!(
        "Each delivery is made as the platform's server makes it today: its headers, its \
         timeout, its retries (see `runhook send --help`)."
    );
    println!(
        "{CONFIRM_PATH} confirms each delivery with a local stand-in for TinyFish's run API \
         ({api_base}) and reconciles the runs expected on it."
    );
    println!();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app::serve_until(
        listener,
        routes.clone(),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));

    let scenes = script()?;
    let client = reqwest::Client::new();
    let mut played = Vec::with_capacity(scenes.len());
    for scene in &scenes {
        let event = RunEvent::parse_summary(scene.platform, scene.body.clone())
            .map_err(|e| format!("demo body for {}: {e}", scene.platform))?;
        let dedup_key = event.dedup_key.clone();
        let attempts = match scene.act {
            Act::Post => {
                let url = format!("{base}{}", scene.path);
                let profile = SenderKind::Current.profile(scene.platform);
                deliver::deliver(
                    &client,
                    &url,
                    &scene.headers,
                    scene.body.clone(),
                    &profile,
                    |_| {},
                )
                .await
            }
            Act::NeverArrives => {
                expect(&routes, scene, event.run_id.as_deref().unwrap_or_default()).await?;
                Vec::new()
            }
        };
        played.push(Played {
            attempts,
            dedup_key,
        });
    }

    // The runs whose webhook never arrives are processed once their window has passed.
    let waited = Instant::now();
    let reconciled = |calls: &Calls| {
        scenes
            .iter()
            .zip(&played)
            .filter(|(scene, _)| scene.act == Act::NeverArrives)
            .all(|(_, played)| calls.snapshot().contains_key(&played.dedup_key))
    };
    while !reconciled(&calls) && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Stop the server; the shutdown drains every queue, so the handler calls are final.
    let _ = stop.send(());
    let reports = server
        .await
        .map_err(|e| format!("server task: {e}"))?
        .map_err(|e| format!("server: {e}"))?;
    let undrained: Vec<String> = reports
        .into_iter()
        .flat_map(|(_, report)| report.not_drained())
        .collect();

    api_server.abort();

    let calls = calls.snapshot();
    let letters: HashMap<String, &'static str> = dead_letters
        .letters()
        .into_iter()
        .filter_map(|letter| Some((letter.dedup_key?, letter.reason.code())))
        .collect();
    let all_expected = print_table(&scenes, &played, &calls, &letters);
    println!();
    if !undrained.is_empty() {
        println!("not processed before the deadline: {undrained:?}");
    }
    let ok = all_expected && undrained.is_empty();
    println!(
        "{} in {:.1} s",
        if ok {
            "every delivery was answered and processed as expected"
        } else {
            "UNEXPECTED OUTCOMES (marked above)"
        },
        started.elapsed().as_secs_f64()
    );
    Ok(ok)
}

/// Registers the expectation of `scene`'s run with the route it would have been posted to.
async fn expect(routes: &[ServedRoute], scene: &Scene, run_id: &str) -> Result<(), String> {
    let route = routes
        .iter()
        .find(|route| route.path == scene.path)
        .ok_or_else(|| format!("no demo route {}", scene.path))?;
    route
        .receiver
        .expect(run_id, WINDOW)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot expect run {run_id}: {e}"))
}

/// The routes: one per platform, a Skyvern route with the canonical fallback on, and a
/// TinyFish route confirming and reconciling with the run API at `api_base`.
fn demo_routes(
    calls: Calls,
    dead_letters: Arc<MemoryDeadLetters>,
    api_base: &str,
) -> Result<Arc<[ServedRoute]>, String> {
    let shared = Shared {
        store: Arc::new(OutageOnce::for_provider(Provider::TinyFish)),
        handler: Arc::new(move |event: Arc<RunEvent>| {
            let calls = calls.clone();
            async move {
                calls.record(&event.dedup_key, event.source);
                Ok::<(), std::io::Error>(())
            }
        }),
        dead_letters,
        workers: 2,
        queue_capacity: Some(64),
        retry: RetryPolicy::default(),
    };
    let mut proxied = RouteSpec::new("/webhooks/skyvern-behind-proxy", Provider::Skyvern, vec![]);
    proxied.canonical_fallback = true;
    let mut confirmed = RouteSpec::new(CONFIRM_PATH, Provider::TinyFish, vec![]);
    confirmed.unsigned = true;
    confirmed.confirm = Confirm::FetchFirst;
    confirmed.api_url = Some(api_base.to_string());
    confirmed.reconcile_after_secs = Some(1);
    let specs = [
        (
            RouteSpec::new("/webhooks/skyvern", Provider::Skyvern, vec![]),
            SKYVERN_KEY,
        ),
        (proxied, SKYVERN_KEY),
        (
            RouteSpec::new("/webhooks/tinyfish/{secret}", Provider::TinyFish, vec![]),
            TINYFISH_PATH,
        ),
        (
            RouteSpec::new("/webhooks/webrun", Provider::WebRun, vec![]),
            WEBRUN_AUTH,
        ),
        (
            RouteSpec::new(
                "/webhooks/smartbrowse/{secret}",
                Provider::SmartBrowse,
                vec![],
            ),
            SMARTBROWSE_PATH,
        ),
        (confirmed, TINYFISH_PATH),
    ];
    let policy = |after| ReconcilePolicy::after(after).every(RECONCILE_EVERY);
    specs
        .iter()
        .map(|(spec, secret)| {
            let runs = spec.runs_with(demo_secret(TINYFISH_API_KEY)?, policy)?;
            shared.route(spec, spec.verifier_with(demo_secret(secret)?.into())?, runs)
        })
        .collect()
}

fn demo_secret(value: &str) -> Result<Secret, String> {
    Secret::new(value).map_err(|e| e.to_string())
}

/// The deliveries, in order.
fn script() -> Result<Vec<Scene>, String> {
    let key = demo_secret(SKYVERN_KEY)?;
    let now = SystemClock.now_unix();
    let skyvern = |json: &str, key: &Secret| -> Result<(HeaderMap, Bytes), String> {
        let request =
            SkyvernRequest::from_json(key, json.as_bytes(), now).map_err(|e| e.to_string())?;
        let headers = deliver::platform_headers(
            Provider::Skyvern,
            &Credential::SkyvernKey(key.clone()),
            &request.body,
            now,
        );
        Ok((headers, Bytes::from(request.body)))
    };
    let (genuine_headers, genuine_body) = skyvern(SKYVERN_COMPLETED, &key)?;
    let (forged_headers, forged_body) =
        skyvern(SKYVERN_FAILED, &demo_secret("sk_attacker_guess")?)?;
    // A proxy that parses and re-serializes the JSON: same data, other bytes, Skyvern's
    // signature of the original bytes.
    let (proxied_headers, signed_body) = skyvern(SKYVERN_TERMINATED, &key)?;
    let proxied_body = reserialize(&signed_body)?;
    let header = |provider, value: &str| -> Result<HeaderMap, String> {
        let credential = Credential::header(
            HeaderName::from_static("authorization"),
            demo_secret(value)?,
        )?;
        Ok(deliver::platform_headers(provider, &credential, b"", now))
    };
    let unsigned = |provider| deliver::platform_headers(provider, &Credential::None, b"", now);
    let bytes = |text: &'static str| Bytes::from_static(text.as_bytes());

    Ok(vec![
        Scene {
            platform: Provider::Skyvern,
            act: Act::Post,
            what: "genuine, signed with the API key",
            path: "/webhooks/skyvern".into(),
            headers: genuine_headers.clone(),
            body: genuine_body.clone(),
            expect_answers: &[200],
            expect_calls: 1,
            expect_dead_letter: None,
        },
        Scene {
            platform: Provider::Skyvern,
            act: Act::Post,
            what: "manual replay of the same run",
            path: "/webhooks/skyvern".into(),
            headers: genuine_headers,
            body: genuine_body,
            expect_answers: &[200],
            expect_calls: 1,
            expect_dead_letter: None,
        },
        Scene {
            platform: Provider::Skyvern,
            act: Act::Post,
            what: "forged signature (wrong key)",
            path: "/webhooks/skyvern".into(),
            headers: forged_headers,
            body: forged_body,
            expect_answers: &[401],
            expect_calls: 0,
            expect_dead_letter: None,
        },
        Scene {
            platform: Provider::Skyvern,
            act: Act::Post,
            what: "body re-serialized by a proxy",
            path: "/webhooks/skyvern".into(),
            headers: proxied_headers.clone(),
            body: proxied_body.clone(),
            expect_answers: &[401],
            expect_calls: 1,
            expect_dead_letter: None,
        },
        Scene {
            platform: Provider::Skyvern,
            act: Act::Post,
            what: "same, canonical fallback on",
            path: "/webhooks/skyvern-behind-proxy".into(),
            headers: proxied_headers,
            body: proxied_body,
            expect_answers: &[200],
            expect_calls: 1,
            expect_dead_letter: None,
        },
        Scene {
            platform: Provider::TinyFish,
            act: Act::Post,
            what: "genuine; store down for the 1st try",
            path: format!("/webhooks/tinyfish/{TINYFISH_PATH}"),
            headers: unsigned(Provider::TinyFish),
            body: bytes(TINYFISH_COMPLETED),
            expect_answers: &[503, 200],
            expect_calls: 1,
            expect_dead_letter: None,
        },
        Scene {
            platform: Provider::WebRun,
            act: Act::Post,
            what: "genuine, Authorization matches",
            path: "/webhooks/webrun".into(),
            headers: header(Provider::WebRun, WEBRUN_AUTH)?,
            body: bytes(WEBRUN_FULL),
            expect_answers: &[200],
            expect_calls: 1,
            expect_dead_letter: None,
        },
        Scene {
            platform: Provider::WebRun,
            act: Act::Post,
            what: "Authorization mismatch",
            path: "/webhooks/webrun".into(),
            headers: header(Provider::WebRun, "Bearer stale-token")?,
            body: bytes(WEBRUN_PING),
            expect_answers: &[401],
            expect_calls: 0,
            expect_dead_letter: None,
        },
        Scene {
            platform: Provider::SmartBrowse,
            act: Act::Post,
            what: "genuine, on the secret path",
            path: format!("/webhooks/smartbrowse/{SMARTBROWSE_PATH}"),
            headers: unsigned(Provider::SmartBrowse),
            body: bytes(SMARTBROWSE_COMPLETED),
            expect_answers: &[200],
            expect_calls: 1,
            expect_dead_letter: None,
        },
        Scene {
            platform: Provider::SmartBrowse,
            act: Act::Post,
            what: "guessed path",
            path: "/webhooks/smartbrowse/guess".into(),
            headers: unsigned(Provider::SmartBrowse),
            body: bytes(SMARTBROWSE_FAILED),
            expect_answers: &[401],
            expect_calls: 0,
            expect_dead_letter: None,
        },
        Scene {
            platform: Provider::TinyFish,
            act: Act::NeverArrives,
            what: "started, its webhook never arrives",
            path: CONFIRM_PATH.into(),
            headers: unsigned(Provider::TinyFish),
            body: tinyfish_body(NEVER_ARRIVES_RUN),
            expect_answers: &[],
            expect_calls: 1,
            expect_dead_letter: None,
        },
        Scene {
            platform: Provider::TinyFish,
            act: Act::Post,
            what: "forged, unsigned, confirm on",
            path: CONFIRM_PATH.into(),
            headers: unsigned(Provider::TinyFish),
            body: tinyfish_body(FORGED_RUN),
            expect_answers: &[200],
            expect_calls: 0,
            expect_dead_letter: Some("not_confirmed"),
        },
    ])
}

/// A TinyFish run-completed webhook body for `run_id`.
fn tinyfish_body(run_id: &str) -> Bytes {
    let body = serde_json::json!({
        "event": "run.completed", "run_id": run_id, "status": "COMPLETED",
        "data": {"run_id": run_id, "status": "COMPLETED", "result": {"paid": true}, "error": null},
    });
    Bytes::from(body.to_string())
}

/// `body` parsed and written back pretty-printed, as a re-serializing proxy would.
fn reserialize(body: &[u8]) -> Result<Bytes, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    serde_json::to_vec_pretty(&value)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

/// Prints one row per scene; returns whether every row was as expected.
/// `calls` holds each run's handler calls (by source), `letters` each dead-lettered run's
/// reason code.
fn print_table(
    scenes: &[Scene],
    played: &[Played],
    calls: &HashMap<String, Vec<EventSource>>,
    letters: &HashMap<String, &'static str>,
) -> bool {
    println!(
        "{:>2}  {:<12} {:<37} {:<22} {:<13} as expected",
        "#", "platform", "delivery", "answered", "handler runs"
    );
    let mut all = true;
    for (i, (scene, played)) in scenes.iter().zip(played).enumerate() {
        let answers = match scene.act {
            Act::Post => answers(&played.attempts),
            Act::NeverArrives => "no webhook".to_string(),
        };
        let runs = calls.get(&played.dedup_key).map_or(&[][..], Vec::as_slice);
        let from = match scene.act {
            Act::Post => EventSource::Webhook,
            Act::NeverArrives => EventSource::Reconciled,
        };
        let letter = letters.get(&played.dedup_key).copied();
        let expected = answers_match(&played.attempts, scene.expect_answers)
            && runs.len() == scene.expect_calls
            && runs.iter().all(|source| *source == from)
            && letter == scene.expect_dead_letter;
        let calls = match runs.first() {
            Some(EventSource::Reconciled) => format!("{} reconciled", runs.len()),
            _ => runs.len().to_string(),
        };
        all &= expected;
        println!(
            "{:>2}  {:<12} {:<37} {:<22} {:<13} {}",
            i + 1,
            scene.platform.as_str(),
            scene.what,
            answers,
            calls,
            if expected {
                "yes".to_string()
            } else {
                format!(
                    "NO: expected {:?}, {} handler runs from {}, dead letter {:?}",
                    scene.expect_answers,
                    scene.expect_calls,
                    from.as_str(),
                    scene.expect_dead_letter
                )
            }
        );
        for line in run_api_explanation(scene, letter)
            .into_iter()
            .chain(explanations(scene, played))
        {
            println!("{:>17} {line}", "");
        }
    }
    all
}

/// What the run API did for a scene of the confirming route.
fn run_api_explanation(scene: &Scene, letter: Option<&str>) -> Option<String> {
    match (scene.act, letter) {
        (Act::NeverArrives, _) => Some(format!(
            "↳ expected for {} ms; no webhook came, so the reconciler fetched the run from \
             the run API and processed it",
            WINDOW.as_millis()
        )),
        (Act::Post, Some(code)) => Some(format!(
            "↳ confirm: the run API does not know this run: never processed, dead-lettered \
             {code}"
        )),
        (Act::Post, None) => None,
    }
}

/// `503 → 200 (+1.0 s)`: each attempt's status, and when the last one started.
fn answers(attempts: &[Attempt]) -> String {
    let statuses: Vec<String> = attempts
        .iter()
        .map(|a| match &a.result {
            AttemptResult::Status(status) => status.to_string(),
            other => other.to_string(),
        })
        .collect();
    match attempts.last() {
        Some(last) if attempts.len() > 1 => format!(
            "{} (+{:.1} s)",
            statuses.join(" → "),
            last.started_after.as_secs_f64()
        ),
        _ => statuses.join(" → "),
    }
}

fn answers_match(attempts: &[Attempt], expected: &[u16]) -> bool {
    attempts.len() == expected.len()
        && attempts
            .iter()
            .zip(expected)
            .all(|(a, want)| a.result == AttemptResult::Status(*want))
}

/// The receiver's reason for the last rejection (its answer's text) and, for a Skyvern
/// signature that fails only because the body was re-serialized, what `runhook verify` would
/// say about it.
fn explanations(scene: &Scene, played: &Played) -> Vec<String> {
    let Some(last) = played.attempts.last() else {
        return Vec::new();
    };
    let AttemptResult::Status(status @ 400..) = last.result else {
        return Vec::new();
    };
    let mut lines = vec![format!("↳ {status}: {}", last.reply.trim())];
    if !Platform::of(scene.platform).sender.retry_on.status(status) {
        lines.push(format!(
            "  {} does not retry a {status}: this run is not delivered again",
            scene.platform
        ));
    }
    if scene.platform == Provider::Skyvern {
        let keys = demo_secret(SKYVERN_KEY).ok().map(Secrets::from);
        let why =
            keys.and_then(|keys| reserialized_explanation_with(keys, &scene.headers, &scene.body));
        lines.extend(
            why.iter()
                .flat_map(|text| text.lines())
                .map(|l| format!("  {l}")),
        );
    }
    lines
}

/// Handler calls per de-duplication key, with where each event came from.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<HashMap<String, Vec<EventSource>>>>);

impl Calls {
    fn record(&self, key: &str, source: EventSource) {
        let mut calls = self.0.lock().unwrap_or_else(|e| e.into_inner());
        calls.entry(key.to_string()).or_default().push(source);
    }

    fn snapshot(&self) -> HashMap<String, Vec<EventSource>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A memory store that is "unavailable" for the first claim of one provider's runs: the
/// receiver answers 503 and the sender's retry schedule takes over.
struct OutageOnce {
    inner: MemoryStore,
    prefix: String,
    tripped: std::sync::atomic::AtomicBool,
}

impl OutageOnce {
    fn for_provider(provider: Provider) -> Self {
        Self {
            inner: MemoryStore::new(),
            prefix: format!("{provider}:"),
            tripped: Default::default(),
        }
    }
}

#[async_trait]
impl IdempotencyStore for OutageOnce {
    async fn claim(
        &self,
        key: &str,
        lease: Duration,
        fingerprint: Fingerprint,
    ) -> Result<Claim, StoreError> {
        use std::sync::atomic::Ordering;
        if key.starts_with(&self.prefix) && !self.tripped.swap(true, Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                reason: "demo: the store is briefly unreachable".into(),
            });
        }
        self.inner.claim(key, lease, fingerprint).await
    }

    async fn complete(
        &self,
        key: &str,
        token: &Token,
        keep_for: Duration,
    ) -> Result<(), StoreError> {
        self.inner.complete(key, token, keep_for).await
    }

    async fn release(&self, key: &str, token: &Token) -> Result<(), StoreError> {
        self.inner.release(key, token).await
    }

    async fn renew(&self, key: &str, token: &Token, lease: Duration) -> Result<(), StoreError> {
        self.inner.renew(key, token, lease).await
    }

    async fn state(&self, key: &str) -> Result<KeyState, StoreError> {
        self.inner.state(key).await
    }

    fn expectations(&self) -> Option<&dyn Expectations> {
        self.inner.expectations()
    }
}
