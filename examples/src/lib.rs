//! What the runnable examples share: configuration from the environment and a handler that
//! reports each processed run. See the `[[example]]` entries in Cargo.toml.

use std::collections::HashSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use runhook::payload::RunEvent;
use runhook::store::{IdempotencyStore, MemoryStore, RedisStore};
use runhook::{Receiver, Secret, Secrets};

/// `127.0.0.1:$PORT`, port 3000 unless `PORT` says otherwise.
pub fn listen_addr() -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT={port} is not a port"))?,
        Err(_) => 3000,
    };
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Serves `app` on [`listen_addr`] (saying where on standard error) until Ctrl-C.
pub async fn serve_axum(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(listen_addr()?).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Shuts each of `receivers` down (10 s to drain each), saying what was not drained.
pub async fn shut_down(receivers: &[Receiver]) {
    for receiver in receivers {
        let report = receiver.shutdown(std::time::Duration::from_secs(10)).await;
        eprintln!(
            "{} stopped; not drained: {:?}",
            receiver.provider(),
            report.not_drained()
        );
    }
}

/// The secret in environment variable `var` (refusing an unset or empty one).
pub fn secret_from_env(var: &str) -> Result<Secrets, Box<dyn std::error::Error>> {
    let value = std::env::var(var).map_err(|_| format!("set {var}"))?;
    Ok(Secret::new(value)
        .map_err(|e| format!("{var}: {e}"))?
        .into())
}

/// The Redis store when `REDIS_URL` is set, else the memory store of this process.
pub async fn store_from_env() -> Result<Arc<dyn IdempotencyStore>, Box<dyn std::error::Error>> {
    Ok(match std::env::var("REDIS_URL") {
        Ok(url) => Arc::new(RedisStore::connect(&url).await?),
        Err(_) => Arc::new(MemoryStore::new()),
    })
}

/// `builder` with [`store_from_env`]'s store and [`print_processed`] as its handler, built.
pub async fn printing_receiver(
    builder: runhook::ReceiverBuilder,
) -> Result<Receiver, Box<dyn std::error::Error>> {
    Ok(builder
        .store(store_from_env().await?)
        .handler(print_processed)
        .build()?)
}

/// The examples' handler: prints `processed <provider> <run_id>` (the platform's own run id;
/// `-` for a body that names none, WebRun's `ai_response`) and flushes stdout.
pub async fn print_processed(event: Arc<RunEvent>) -> Result<(), std::io::Error> {
    let mut out = std::io::stdout().lock();
    let run_id = event.run_id.as_deref().unwrap_or("-");
    writeln!(out, "processed {} {run_id}", event.provider)?;
    out.flush()
}

/// The part of a run's body the middleware examples read with their framework's JSON
/// extractor.
#[derive(Debug, serde::Deserialize)]
pub struct RunBody {
    /// The platform's run id.
    pub run_id: String,
}

/// The middleware examples' endpoint logic: prints `processed skyvern <run_id>`, except that
/// a run whose id starts with `fail_once_` fails the first time it is seen, printing nothing.
#[derive(Debug, Default)]
pub struct FailOnce {
    failed: Mutex<HashSet<String>>,
}

/// The endpoint failed this time on purpose (a `fail_once_` run seen for the first time).
#[derive(Debug)]
pub struct FailedOnPurpose;

impl FailOnce {
    /// Whether `run_id` is a `fail_once_` run seen for the first time by this process (it
    /// fails now, and only now).
    pub fn first_failure(&self, run_id: &str) -> bool {
        if !run_id.starts_with("fail_once_") {
            return false;
        }
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.insert(run_id.to_string())
    }

    /// Processes `body`: `Err` the first time a `fail_once_` run is seen, else prints it.
    pub fn process(&self, body: &RunBody) -> Result<(), FailedOnPurpose> {
        if self.first_failure(&body.run_id) {
            return Err(FailedOnPurpose);
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "processed skyvern {}", body.run_id);
        let _ = out.flush();
        Ok(())
    }
}
