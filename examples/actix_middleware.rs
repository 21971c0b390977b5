//! runhook as middleware in front of an actix-web endpoint you already have:
//! `WebhookLayer` wrapping `POST /webhooks/skyvern`, signed with `SKYVERN_API_KEY`.
//!
//! The middleware verifies the signature on the raw bytes and claims the run; the endpoint
//! below is ordinary actix-web code that reads the body with `web::Json`. It prints
//! `processed skyvern <run_id>` and answers 200; a run whose id starts with `fail_once_` is
//! answered 500 the first time it is seen (nothing printed), so the middleware releases the
//! claim and the sender's retry runs it again.
//!
//! Run: `SKYVERN_API_KEY=sk_... cargo run -p runhook-examples --example actix_middleware`
//! (`PORT`, default 3000; `REDIS_URL` to use Redis as the idempotency store).

use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use runhook::actix::WebhookLayer;
use runhook::Receiver;
use runhook_examples::{listen_addr, secret_from_env, store_from_env, FailOnce, RunBody};

async fn endpoint(fail_once: web::Data<FailOnce>, body: web::Json<RunBody>) -> HttpResponse {
    match fail_once.process(&body) {
        Ok(()) => HttpResponse::Ok().finish(),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let skyvern = Receiver::skyvern(secret_from_env("SKYVERN_API_KEY")?)
        .store(store_from_env().await?)
        .build_inline()?;
    let fail_once = web::Data::from(Arc::new(FailOnce::default()));
    let addr = listen_addr()?;
    eprintln!("listening on http://{addr}");
    HttpServer::new(move || {
        App::new().app_data(fail_once.clone()).service(
            web::resource("/webhooks/skyvern")
                .wrap(WebhookLayer::new(skyvern.clone()))
                .route(web::post().to(endpoint)),
        )
    })
    .bind(addr)?
    .run()
    .await?;
    Ok(())
}
