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

use runhook::payload::Provider;
use runhook::store::IdempotencyStore;
use runhook::{HeaderToken, PathSecret, Receiver, SkyvernSignature, Verifier};
use runhook_examples::{print_processed, secret_from_env, serve_axum, shut_down, store_from_env};

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
    let skyvern = SkyvernSignature::new(secret_from_env("SKYVERN_API_KEY")?);
    let webrun = HeaderToken::authorization(secret_from_env("WEBRUN_WEBHOOK_AUTH")?);
    let smartbrowse = HeaderToken::authorization(secret_from_env("SMARTBROWSE_WEBHOOK_TOKEN")?);
    let tinyfish = PathSecret::last_segment(secret_from_env("TINYFISH_PATH_SECRET")?);
    let receivers = [
        route(Provider::Skyvern, skyvern, &store)?,
        route(Provider::WebRun, webrun, &store)?,
        route(Provider::SmartBrowse, smartbrowse, &store)?,
        route(Provider::TinyFish, tinyfish, &store)?,
    ];
    let [skyvern, webrun, smartbrowse, tinyfish] = receivers.clone();
    let app = axum::Router::new()
        .route("/webhooks/skyvern", runhook::axum::post(skyvern))
        .route("/webhooks/webrun", runhook::axum::post(webrun))
        .route("/webhooks/smartbrowse", runhook::axum::post(smartbrowse))
        .route("/webhooks/tinyfish/{secret}", runhook::axum::post(tinyfish));
    serve_axum(app).await?;
    shut_down(&receivers).await;
    Ok(())
}
