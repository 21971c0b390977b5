//! `runhook demo`: a receiver with a route per platform on a free localhost port, and the
//! deliveries each platform would send to it, good and bad, with what was answered and what
//! the handler processed. No configuration, no Redis. Two rows use a local stand-in for
//! TinyFish's run API ([`run_api`]): a run whose webhook never arrives, reconciled from it,
//! and a forged delivery that confirmation refuses.
//!
//! The script is data ([`script`]), the receiver is [`routes`], the table is [`table`]; this
//! file plays the one at the other.

mod routes;
mod run_api;
mod script;
mod table;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use runhook::dead_letter::MemoryDeadLetters;
use runhook::payload::{EventSource, PayloadError, Provider, RunEvent};
use runhook::store::StoreError;
use runhook::ShutdownReport;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::deliver::{self, Attempt, SenderKind};
use crate::serve::app::{self, AppError, ServedRoute};
use crate::serve::config::ServeConfigError;
use script::{Act, Scene, ScriptError, CONFIRM_PATH, NEVER_ARRIVES_RUN, TINYFISH_API_KEY, WINDOW};

/// Why the demo could not start or finish (exit status 2).
#[derive(Debug, thiserror::Error)]
enum DemoError {
    /// A localhost port could not be had.
    #[error("{context}: {source}")]
    Listen {
        /// What the port was for.
        context: &'static str,
        /// Why not.
        source: std::io::Error,
    },
    /// A listener's address could not be read.
    #[error(transparent)]
    Address(std::io::Error),
    /// The provider table gives TinyFish no run API.
    #[error("TinyFish has no run API in the provider table")]
    NoRunApi,
    /// A route's settings were refused.
    #[error(transparent)]
    Config {
        /// Why.
        #[from]
        source: ServeConfigError,
    },
    /// A route could not be served.
    #[error(transparent)]
    App {
        /// Why.
        #[from]
        source: AppError,
    },
    /// The script could not be written.
    #[error(transparent)]
    Script {
        /// Why.
        #[from]
        source: ScriptError,
    },
    /// A scene's body is not its platform's payload.
    #[error("demo body for {platform}: {source}")]
    Body {
        /// The scene's platform.
        platform: Provider,
        /// Why not.
        source: PayloadError,
    },
    /// A scene names a path no route serves.
    #[error("no demo route {0}")]
    NoRoute(String),
    /// A run could not be expected.
    #[error("cannot expect run {run_id}: {source}")]
    Expect {
        /// The run.
        run_id: String,
        /// Why not.
        source: StoreError,
    },
    /// The server task failed.
    #[error("server task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The server failed.
    #[error("server: {0}")]
    Server(std::io::Error),
}

/// Arguments of `runhook demo` (none).
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 every delivery got the expected answer and every run was \
processed exactly as expected, 1 otherwise, 2 the demo could not start."
)]
pub struct DemoArgs {}

/// What happened to one scene.
struct Played {
    attempts: Vec<Attempt>,
    dedup_key: String,
}

/// The demo's server, running until `stop` is sent.
struct Server {
    stop: app::StopSender,
    task: JoinHandle<std::io::Result<Vec<(String, ShutdownReport)>>>,
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

/// Starts the receiver and the run API stand-in, plays the script, waits for the
/// reconciler, stops, and prints the table; whether everything was as expected.
async fn demo() -> Result<bool, DemoError> {
    let started = Instant::now();
    let calls = Calls::default();
    let (api_base, api_server) = start_run_api().await?;
    let dead_letters = Arc::new(MemoryDeadLetters::default());
    let routes = routes::demo_routes(calls.clone(), dead_letters.clone(), &api_base)?;
    let (listener, base) = bind_localhost("cannot listen on localhost").await?;
    introduce(&base, &api_base, &routes);
    let server = serve(listener, routes.clone());

    let scenes = script::script()?;
    let played = play(&scenes, &routes, &base).await?;
    wait_for_reconciled(&scenes, &played, &calls).await;

    // Stop the server; the shutdown drains every queue, so the handler calls are final.
    let undrained = stop(server).await?;
    api_server.abort();
    let letters: HashMap<String, &'static str> = dead_letters
        .letters()
        .into_iter()
        .filter_map(|letter| Some((letter.dedup_key?, letter.reason.code())))
        .collect();
    let all_expected = table::print_table(&scenes, &played, &calls.snapshot(), &letters);
    Ok(conclude(all_expected, &undrained, started))
}

/// The run API stand-in, knowing the run whose webhook never arrives, finished.
async fn start_run_api() -> Result<(String, JoinHandle<()>), DemoError> {
    let run = serde_json::json!({
        "run_id": NEVER_ARRIVES_RUN, "status": "COMPLETED", "goal": "Find the cheapest flight price",
        "result": {"route": "LIS-FAO", "price": 38.5}, "error": null,
    });
    run_api::start(
        TINYFISH_API_KEY,
        HashMap::from([(NEVER_ARRIVES_RUN.to_string(), run)]),
    )
    .await
}

/// A listener on a free localhost port, and its base URL; `context` starts the message when
/// the port cannot be had.
async fn bind_localhost(context: &'static str) -> Result<(TcpListener, String), DemoError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| DemoError::Listen { context, source })?;
    let address = listener.local_addr().map_err(DemoError::Address)?;
    Ok((listener, format!("http://{address}")))
}

/// Says what is about to happen: the routes, how deliveries are made, the run API.
fn introduce(base: &str, api_base: &str, routes: &[ServedRoute]) {
    println!("runhook demo: a receiver on {base} (memory store, no Redis) with these routes:");
    for route in routes {
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
}

/// Serves `routes` on `listener` in the background.
fn serve(listener: TcpListener, routes: Arc<[ServedRoute]>) -> Server {
    let (stop, signals) = app::StopSignals::new();
    let task = tokio::spawn(app::serve_until(
        listener,
        routes,
        signals,
        Duration::from_secs(5),
        runhook::server::ConnectionLimits::default(),
    ));
    Server { stop, task }
}

/// Stops `server`; the runs its routes did not process before their drain deadline.
async fn stop(server: Server) -> Result<Vec<String>, DemoError> {
    let _ = server.stop.send(1);
    let reports = server.task.await?.map_err(DemoError::Server)?;
    Ok(reports
        .into_iter()
        .flat_map(|(_, report)| report.not_drained())
        .collect())
}

/// Plays each scene at the receiver on `base`, in order.
async fn play(
    scenes: &[Scene],
    routes: &[ServedRoute],
    base: &str,
) -> Result<Vec<Played>, DemoError> {
    let client = reqwest::Client::new();
    let mut played = Vec::with_capacity(scenes.len());
    for scene in scenes {
        let event =
            RunEvent::parse_summary(scene.platform, scene.body.clone()).map_err(|source| {
                DemoError::Body {
                    platform: scene.platform,
                    source,
                }
            })?;
        let attempts = match scene.act {
            Act::Post => {
                let url = format!("{base}{}", scene.path);
                let mut profile = SenderKind::Current.profile(scene.platform);
                // As many attempts as the scene plays: Browserbase and Firecrawl retry a 401
                // too, minutes later.
                profile.attempts = profile
                    .attempts
                    .min(scene.expect_answers.len().max(1) as u32);
                let body = scene.body.clone();
                deliver::deliver(&client, &url, &scene.headers, body, &profile, |_| {}).await
            }
            Act::NeverArrives => {
                expect(routes, scene, event.run_id.as_deref().unwrap_or_default()).await?;
                Vec::new()
            }
        };
        played.push(Played {
            attempts,
            dedup_key: event.dedup_key,
        });
    }
    Ok(played)
}

/// Registers the expectation of `scene`'s run with the route it would have been posted to.
async fn expect(routes: &[ServedRoute], scene: &Scene, run_id: &str) -> Result<(), DemoError> {
    let route = routes
        .iter()
        .find(|route| route.path == scene.path)
        .ok_or_else(|| DemoError::NoRoute(scene.path.clone()))?;
    route
        .receiver
        .expect(run_id, WINDOW)
        .await
        .map(|_| ())
        .map_err(|source| DemoError::Expect {
            run_id: run_id.into(),
            source,
        })
}

/// Waits (5 s at most) until the runs whose webhook never arrives are processed, once their
/// window has passed.
async fn wait_for_reconciled(scenes: &[Scene], played: &[Played], calls: &Calls) {
    let waited = Instant::now();
    let reconciled = || {
        scenes
            .iter()
            .zip(played)
            .filter(|(scene, _)| scene.act == Act::NeverArrives)
            .all(|(_, played)| calls.snapshot().contains_key(&played.dedup_key))
    };
    while !reconciled() && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Prints the last lines; whether the demo went as expected.
fn conclude(all_expected: bool, undrained: &[String], started: Instant) -> bool {
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
    ok
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
