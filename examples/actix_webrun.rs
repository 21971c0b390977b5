//! WebRun webhooks on actix-web: `POST /webhooks/webrun`, whose `Authorization` must be the
//! `auth` value configured in WebRun (`WEBRUN_WEBHOOK_AUTH`, e.g. `Bearer ...`).
//!
//! Run: `WEBRUN_WEBHOOK_AUTH='Bearer ...' cargo run -p runhook-examples --example actix_webrun`
//! (`PORT`, default 3000; `REDIS_URL` to use Redis as the idempotency store).

use runhook::Receiver;
use runhook_examples::{listen_addr, printing_receiver, secret_from_env, shut_down};

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let webrun =
        printing_receiver(Receiver::webrun(secret_from_env("WEBRUN_WEBHOOK_AUTH")?)).await?;
    let routes = webrun.clone();
    let addr = listen_addr()?;
    eprintln!("listening on http://{addr}");
    actix_web::HttpServer::new(move || {
        actix_web::App::new().route("/webhooks/webrun", runhook::actix::post(routes.clone()))
    })
    .bind(addr)?
    .run()
    .await?;
    shut_down(&[webrun]).await;
    Ok(())
}
