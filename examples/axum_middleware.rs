//! runhook as middleware in front of an axum endpoint you already have: the tower layer on
//! `POST /webhooks/skyvern`, signed with `SKYVERN_API_KEY`.
//!
//! The layer verifies the signature on the raw bytes and claims the run; the endpoint below is
//! ordinary axum code that reads the body with `axum::Json`. It prints `processed skyvern
//! <run_id>` and answers 200; a run whose id starts with `fail_once_` is answered 500 the
//! first time it is seen (nothing printed), so the layer releases the claim and the sender's
//! retry runs it again.
//!
//! Run: `SKYVERN_API_KEY=sk_... cargo run -p runhook-examples --example axum_middleware`
//! (`PORT`, default 3000; `REDIS_URL` to use Redis as the idempotency store).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::{routing::post, Json, Router};
use runhook::tower::WebhookLayer;
use runhook::Receiver;
use runhook_examples::{secret_from_env, serve_axum, store_from_env, FailOnce, RunBody};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let skyvern = Receiver::skyvern(secret_from_env("SKYVERN_API_KEY")?)
        .store(store_from_env().await?)
        .build_inline()?;
    let fail_once = Arc::new(FailOnce::default());
    // What the layer learned (the verified key, the dedup key, the parsed event) is also in
    // the request's extensions: add `Extension(run): Extension<runhook::receiver::VerifiedRun>`.
    let endpoint = move |Json(body): Json<RunBody>| {
        let fail_once = fail_once.clone();
        async move {
            match fail_once.process(&body) {
                Ok(()) => StatusCode::OK,
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
            }
        }
    };
    let app = Router::new()
        .route("/webhooks/skyvern", post(endpoint))
        .layer(WebhookLayer::new(skyvern));
    serve_axum(app).await
}
