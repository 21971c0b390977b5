//! Skyvern webhooks on axum: `POST /webhooks/skyvern`, signed with `SKYVERN_API_KEY`.
//!
//! Run: `SKYVERN_API_KEY=sk_... cargo run -p runhook-examples --example axum_skyvern`
//! (`PORT`, default 3000; `REDIS_URL` to use Redis as the idempotency store).

use runhook::Receiver;
use runhook_examples::{printing_receiver, secret_from_env, serve_axum, shut_down};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let skyvern = printing_receiver(Receiver::skyvern(secret_from_env("SKYVERN_API_KEY")?)).await?;
    let app = axum::Router::new().route("/webhooks/skyvern", runhook::axum::post(skyvern.clone()));
    serve_axum(app).await?;
    shut_down(&[skyvern]).await;
    Ok(())
}
