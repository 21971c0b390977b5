//! The demo's script: its made-up secrets and runs, and the deliveries each platform would
//! send, good and bad, each with the answers, handler runs and dead letter it should come to.
//! Data only: [`super`] plays it, [`super::table`] prints what became of it.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use runhook::canonical::{CanonicalError, SkyvernRequest};
use runhook::payload::Provider;
use runhook::verify::{Clock as _, ConfigError, SystemClock};
use runhook::Secret;

use crate::deliver::{self, Credential, NotAHeaderValue};

/// The demo's secrets: made up here, used only between this process and itself.
pub const SKYVERN_KEY: &str = "sk_demo_runhook_example";
pub const WEBRUN_AUTH: &str = "Bearer demo-webrun-token";
pub const TINYFISH_PATH: &str = "tf-demo-Q7x4Kpz";
pub const SMARTBROWSE_PATH: &str = "sb-demo-8x4KpzQ7";
pub const TINYFISH_API_KEY: &str = "tf_demo_api_key_Lw3";
/// Browserbase's signing secret, in its `whsec_` form (base64 of `runhook-demo-browserbase-key`).
pub const BROWSERBASE_SECRET: &str = "whsec_cnVuaG9vay1kZW1vLWJyb3dzZXJiYXNlLWtleQ==";
pub const FIRECRAWL_SECRET: &str = "fc_demo_webhook_secret_T4q";
pub const BROWSER_USE_SECRET: &str = "bu_demo_webhook_secret_M8r";

/// The unsigned TinyFish route that confirms every delivery with the run API stand-in and
/// reconciles the expected runs.
pub const CONFIRM_PATH: &str = "/webhooks/tinyfish-confirmed";
/// A run the stand-in knows, finished, whose webhook never arrives.
pub const NEVER_ARRIVES_RUN: &str = "3b9e7c10-demo-4f2a-never-arrives";
/// A run nobody started: only a forger posts it.
const FORGED_RUN: &str = "0d6f1a22-demo-4c8b-forged";
/// How long the demo's expected run may wait for its webhook.
pub const WINDOW: Duration = Duration::from_millis(300);
/// How often the demo's reconciler looks for due runs.
pub const RECONCILE_EVERY: Duration = Duration::from_millis(100);

/// The bodies, as the platforms send them (see testdata/payloads).
const SKYVERN_COMPLETED: &str =
    include_str!("../../../../../testdata/payloads/skyvern-task-completed.json");
const SKYVERN_FAILED: &str =
    include_str!("../../../../../testdata/payloads/skyvern-task-failed.json");
const SKYVERN_TERMINATED: &str =
    include_str!("../../../../../testdata/payloads/skyvern-terminated.json");
const SKYVERN_INTERIM: &str =
    include_str!("../../../../../testdata/payloads/skyvern-workflow-interim.json");
const SKYVERN_RETRIED_COMPLETED: &str =
    include_str!("../../../../../testdata/payloads/skyvern-workflow-retried-completed.json");
const TINYFISH_COMPLETED: &str =
    include_str!("../../../../../testdata/payloads/tinyfish-completed.json");
const WEBRUN_FULL: &str =
    include_str!("../../../../../testdata/payloads/webrun-full-response.json");
const WEBRUN_PING: &str = include_str!("../../../../../testdata/payloads/webrun-just-ping.json");
const SMARTBROWSE_COMPLETED: &str =
    include_str!("../../../../../testdata/payloads/smartbrowse-completed.json");
const SMARTBROWSE_FAILED: &str =
    include_str!("../../../../../testdata/payloads/smartbrowse-failed.json");
const BROWSER_USE_FINISHED: &str =
    include_str!("../../../../../testdata/payloads/browser-use-task-finished.json");
const BROWSER_USE_STOPPED: &str =
    include_str!("../../../../../testdata/payloads/browser-use-task-stopped-camel.json");
const BROWSERBASE_COMPLETED: &str =
    include_str!("../../../../../testdata/payloads/browserbase-invocation-completed.json");
const BROWSERBASE_FAILED: &str =
    include_str!("../../../../../testdata/payloads/browserbase-invocation-failed.json");
const FIRECRAWL_COMPLETED: &str =
    include_str!("../../../../../testdata/payloads/firecrawl-crawl-completed.json");
const FIRECRAWL_FAILED: &str =
    include_str!("../../../../../testdata/payloads/firecrawl-agent-failed.json");

/// Why the script could not be written (its secrets and bodies are constants: a bug).
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// A made-up secret was refused.
    #[error(transparent)]
    Secret {
        /// Why.
        #[from]
        source: ConfigError,
    },
    /// A Skyvern body could not be signed.
    #[error(transparent)]
    Sign {
        /// Why.
        #[from]
        source: CanonicalError,
    },
    /// A header credential was refused.
    #[error(transparent)]
    Credential {
        /// Why.
        #[from]
        source: NotAHeaderValue,
    },
    /// A body could not be re-serialized.
    #[error(transparent)]
    Json {
        /// Why.
        #[from]
        source: serde_json::Error,
    },
}

/// What a scene does with its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// POSTs it as the platform's server would.
    Post,
    /// Never POSTs it: the run is expected instead, and its webhook "never arrives".
    NeverArrives,
}

/// One delivery of the script.
pub struct Scene {
    pub platform: Provider,
    pub what: &'static str,
    pub act: Act,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The statuses of each attempt, in order.
    pub expect_answers: &'static [u16],
    /// Handler calls for this delivery's run when the demo ends.
    pub expect_calls: usize,
    /// The reason code its run is dead-lettered with, if it is.
    pub expect_dead_letter: Option<&'static str>,
}

/// A delivery's headers and body.
type Request = (HeaderMap, Bytes);

impl Scene {
    /// `request` POSTed to `path`: answered 200 and processed once unless [`Scene::answered`]
    /// says otherwise.
    fn post(
        platform: Provider,
        what: &'static str,
        path: impl Into<String>,
        request: Request,
    ) -> Self {
        let (headers, body) = request;
        Self {
            platform,
            what,
            act: Act::Post,
            path: path.into(),
            headers,
            body,
            expect_answers: &[200],
            expect_calls: 1,
            expect_dead_letter: None,
        }
    }

    /// The same, expected to be answered `answers` and processed `calls` times.
    fn answered(mut self, answers: &'static [u16], calls: usize) -> Self {
        self.expect_answers = answers;
        self.expect_calls = calls;
        self
    }

    /// The same, never POSTed: its run is expected, and reconciled once.
    fn never_arrives(mut self) -> Self {
        self.act = Act::NeverArrives;
        self.answered(&[], 1)
    }

    /// The same, its run expected to be dead-lettered with the reason `code`.
    fn dead_lettered(mut self, code: &'static str) -> Self {
        self.expect_dead_letter = Some(code);
        self
    }
}

/// The deliveries, in order.
pub fn script() -> Result<Vec<Scene>, ScriptError> {
    let now = SystemClock.now_unix();
    let mut scenes = skyvern_scenes(now)?;
    scenes.extend(header_and_path_scenes(now)?);
    scenes.extend(run_api_scenes(now));
    scenes.extend(signing_platform_scenes(now)?);
    Ok(scenes)
}

/// Browserbase's Standard Webhooks, Firecrawl's and Browser Use's signatures: genuine, and
/// signed with a guessed key.
fn signing_platform_scenes(now: i64) -> Result<Vec<Scene>, ScriptError> {
    let signed = |provider, credential: Credential, body| -> Result<Request, ScriptError> {
        let body = bytes(body);
        let headers = deliver::platform_headers(provider, &credential, &body, now);
        Ok((headers, body))
    };
    let browserbase = |key: &str, body| {
        let key = Secret::from_standard_webhooks(key)?;
        signed(
            Provider::Browserbase,
            Credential::StandardWebhooksKey(key),
            body,
        )
    };
    let firecrawl = |key: &str, body| {
        let credential = Credential::FirecrawlKey(demo_secret(key)?);
        signed(Provider::Firecrawl, credential, body)
    };
    let browser_use = |key: &str, body| {
        let credential = Credential::BrowserUseKey(demo_secret(key)?);
        signed(Provider::BrowserUse, credential, body)
    };
    let guessed = "whsec_Z3Vlc3NlZC1ieS1hbi1hdHRhY2tlcg==";
    Ok(vec![
        Scene::post(
            Provider::Browserbase,
            "genuine, Standard Webhooks",
            "/webhooks/browserbase",
            browserbase(BROWSERBASE_SECRET, BROWSERBASE_COMPLETED)?,
        ),
        Scene::post(
            Provider::Browserbase,
            "forged signature (wrong key)",
            "/webhooks/browserbase",
            browserbase(guessed, BROWSERBASE_FAILED)?,
        )
        .answered(&[401], 0),
        Scene::post(
            Provider::Firecrawl,
            "genuine, x-firecrawl-signature",
            "/webhooks/firecrawl",
            firecrawl(FIRECRAWL_SECRET, FIRECRAWL_COMPLETED)?,
        ),
        Scene::post(
            Provider::Firecrawl,
            "forged signature (wrong key)",
            "/webhooks/firecrawl",
            firecrawl("fc_attacker_guess", FIRECRAWL_FAILED)?,
        )
        .answered(&[401], 0),
        Scene::post(
            Provider::BrowserUse,
            "genuine, x-browser-use-signature",
            "/webhooks/browser-use",
            browser_use(BROWSER_USE_SECRET, BROWSER_USE_FINISHED)?,
        ),
        Scene::post(
            Provider::BrowserUse,
            "forged signature (wrong key)",
            "/webhooks/browser-use",
            browser_use("bu_attacker_guess", BROWSER_USE_STOPPED)?,
        )
        .answered(&[401], 0),
    ])
}

/// Skyvern's signed deliveries: genuine, replayed, forged, and re-serialized by a proxy.
fn skyvern_scenes(now: i64) -> Result<Vec<Scene>, ScriptError> {
    let key = demo_secret(SKYVERN_KEY)?;
    let genuine = signed_by_skyvern(SKYVERN_COMPLETED, &key, now)?;
    let forged = signed_by_skyvern(SKYVERN_FAILED, &demo_secret("sk_attacker_guess")?, now)?;
    // A proxy that parses and re-serializes the JSON: same data, other bytes, Skyvern's
    // signature of the original bytes.
    let (proxied_headers, signed_body) = signed_by_skyvern(SKYVERN_TERMINATED, &key, now)?;
    let proxied = (proxied_headers, reserialize(&signed_body)?);
    // A workflow retried under one run id (`webhook_on_retry: "every_attempt"`): attempt 1's
    // interim webhook, attempt 2's final one, and the final one again, re-driven under
    // Skyvern's delivery lease.
    let interim = signed_by_skyvern(SKYVERN_INTERIM, &key, now)?;
    let last = signed_by_skyvern(SKYVERN_RETRIED_COMPLETED, &key, now)?;
    let post = |what, path, request| Scene::post(Provider::Skyvern, what, path, request);
    Ok(vec![
        post(
            "genuine, signed with the API key",
            "/webhooks/skyvern",
            genuine.clone(),
        ),
        post(
            "manual replay of the same run",
            "/webhooks/skyvern",
            genuine,
        ),
        post("forged signature (wrong key)", "/webhooks/skyvern", forged).answered(&[401], 0),
        post(
            "body re-serialized by a proxy",
            "/webhooks/skyvern",
            proxied.clone(),
        )
        .answered(&[401], 1),
        post(
            "same, canonical fallback on",
            "/webhooks/skyvern-behind-proxy",
            proxied,
        ),
        post(
            "retried workflow: attempt 1 (interim)",
            "/webhooks/skyvern",
            interim,
        ),
        post(
            "retried workflow: attempt 2 (final)",
            "/webhooks/skyvern",
            last.clone(),
        ),
        post("final webhook re-driven (lease)", "/webhooks/skyvern", last),
    ])
}

/// TinyFish through a store outage, WebRun's header token, SmartBrowse's secret path.
fn header_and_path_scenes(now: i64) -> Result<Vec<Scene>, ScriptError> {
    let with_header = |value: &str| -> Result<HeaderMap, ScriptError> {
        let credential = Credential::header(
            HeaderName::from_static("authorization"),
            demo_secret(value)?,
        )?;
        Ok(deliver::platform_headers(
            Provider::WebRun,
            &credential,
            b"",
            now,
        ))
    };
    let tinyfish = (unsigned(Provider::TinyFish, now), bytes(TINYFISH_COMPLETED));
    let webrun = (with_header(WEBRUN_AUTH)?, bytes(WEBRUN_FULL));
    let stale = (with_header("Bearer stale-token")?, bytes(WEBRUN_PING));
    let smartbrowse = |body| (unsigned(Provider::SmartBrowse, now), bytes(body));
    let secret_path = format!("/webhooks/smartbrowse/{SMARTBROWSE_PATH}");
    Ok(vec![
        Scene::post(
            Provider::TinyFish,
            "genuine; store down for the 1st try",
            format!("/webhooks/tinyfish/{TINYFISH_PATH}"),
            tinyfish,
        )
        .answered(&[503, 200], 1),
        Scene::post(
            Provider::WebRun,
            "genuine, Authorization matches",
            "/webhooks/webrun",
            webrun,
        ),
        Scene::post(
            Provider::WebRun,
            "Authorization mismatch",
            "/webhooks/webrun",
            stale,
        )
        .answered(&[401], 0),
        Scene::post(
            Provider::SmartBrowse,
            "genuine, on the secret path",
            secret_path,
            smartbrowse(SMARTBROWSE_COMPLETED),
        ),
        Scene::post(
            Provider::SmartBrowse,
            "guessed path",
            "/webhooks/smartbrowse/guess",
            smartbrowse(SMARTBROWSE_FAILED),
        )
        .answered(&[401], 0),
    ])
}

/// The confirming TinyFish route: a run whose webhook never arrives, and a forged delivery.
fn run_api_scenes(now: i64) -> Vec<Scene> {
    let tinyfish = |run_id| (unsigned(Provider::TinyFish, now), tinyfish_body(run_id));
    vec![
        Scene::post(
            Provider::TinyFish,
            "started, its webhook never arrives",
            CONFIRM_PATH,
            tinyfish(NEVER_ARRIVES_RUN),
        )
        .never_arrives(),
        Scene::post(
            Provider::TinyFish,
            "forged, unsigned, confirm on",
            CONFIRM_PATH,
            tinyfish(FORGED_RUN),
        )
        .answered(&[200], 0)
        .dead_lettered("not_confirmed"),
    ]
}

/// `value` as a demo secret.
pub fn demo_secret(value: &str) -> Result<Secret, ScriptError> {
    Ok(Secret::new(value)?)
}

/// `json` as Skyvern sends it: in its canonical form, signed with `key` at `now`.
fn signed_by_skyvern(json: &str, key: &Secret, now: i64) -> Result<Request, CanonicalError> {
    let request = SkyvernRequest::from_json(key, json.as_bytes(), now)?;
    let headers = deliver::platform_headers(
        Provider::Skyvern,
        &Credential::SkyvernKey(key.clone()),
        &request.body,
        now,
    );
    Ok((headers, Bytes::from(request.body)))
}

/// The headers `provider` sends with no credential.
fn unsigned(provider: Provider, now: i64) -> HeaderMap {
    deliver::platform_headers(provider, &Credential::None, b"", now)
}

fn bytes(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
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
fn reserialize(body: &[u8]) -> Result<Bytes, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_slice(body)?;
    serde_json::to_vec_pretty(&value).map(Bytes::from)
}
