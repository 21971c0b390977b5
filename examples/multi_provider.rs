//! All four platforms on one axum server:
//! - `POST /webhooks/skyvern`: signed with `SKYVERN_API_KEY`;
//! - `POST /webhooks/webrun`: `Authorization` equal to `WEBRUN_WEBHOOK_AUTH`;
//! - `POST /webhooks/smartbrowse`: `Authorization` equal to `SMARTBROWSE_WEBHOOK_TOKEN`;
//! - `POST /webhooks/tinyfish/{secret}`: the path segment equal to `TINYFISH_PATH_SECRET`
//!   (TinyFish signs nothing; the secret URL is the only proof).
//!
//! Run: `cargo run -p runhook-examples --example multi_provider` with those four variables set
//! (`PORT`, default 3000; `REDIS_URL` to use Redis as the idempotency store).

use std::sync::Arc;
use std::time::Duration;

use runhook::payload::Provider;
use runhook::store::IdempotencyStore;
use runhook::{HeaderToken, PathSecret, Receiver, SkyvernSignature, Verifier};
use runhook_examples::{listen_addr, print_processed, secret_from_env, store_from_env};

fn route(
    provider: Provider,
    verifier: impl Verifier + 'static,
    store: &Arc<dyn IdempotencyStore>,
) -> Result<Receiver, runhook::BuildError> {
    Receiver::builder(provider, verifier)
        .store(store.clone())
        .handler(print_processed)
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = store_from_env().await?;
    let receivers = [
        route(
            Provider::Skyvern,
            SkyvernSignature::new(secret_from_env("SKYVERN_API_KEY")?),
            &store,
        )?,
        route(
            Provider::WebRun,
            HeaderToken::authorization(secret_from_env("WEBRUN_WEBHOOK_AUTH")?),
            &store,
        )?,
        route(
            Provider::SmartBrowse,
            HeaderToken::authorization(secret_from_env("SMARTBROWSE_WEBHOOK_TOKEN")?),
            &store,
        )?,
        route(
            Provider::TinyFish,
            PathSecret::last_segment(secret_from_env("TINYFISH_PATH_SECRET")?),
            &store,
        )?,
    ];
    let [skyvern, webrun, smartbrowse, tinyfish] = receivers.clone();
    let app = axum::Router::new()
        .route("/webhooks/skyvern", runhook::axum::post(skyvern))
        .route("/webhooks/webrun", runhook::axum::post(webrun))
        .route("/webhooks/smartbrowse", runhook::axum::post(smartbrowse))
        .route("/webhooks/tinyfish/{secret}", runhook::axum::post(tinyfish));
    let listener = tokio::net::TcpListener::bind(listen_addr()?).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    for receiver in receivers {
        let report = receiver.shutdown(Duration::from_secs(10)).await;
        eprintln!(
            "{} stopped; not drained: {:?}",
            receiver.provider(),
            report.not_drained()
        );
    }
    Ok(())
}
