//! Skyvern webhooks on axum: `POST /webhooks/skyvern`, signed with `SKYVERN_API_KEY`.
//!
//! Run: `SKYVERN_API_KEY=sk_... cargo run -p runhook-examples --example axum_skyvern`
//! (`PORT`, default 3000; `REDIS_URL` to use Redis as the idempotency store).

use runhook::Receiver;
use runhook_examples::{listen_addr, print_processed, secret_from_env, store_from_env};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let skyvern = Receiver::skyvern(secret_from_env("SKYVERN_API_KEY")?)
        .store(store_from_env().await?)
        .handler(print_processed)
        .build()?;
    let app = axum::Router::new().route("/webhooks/skyvern", runhook::axum::post(skyvern.clone()));
    let listener = tokio::net::TcpListener::bind(listen_addr()?).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let report = skyvern.shutdown(std::time::Duration::from_secs(10)).await;
    eprintln!("stopped; not drained: {:?}", report.not_drained());
    Ok(())
}
