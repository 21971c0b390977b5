//! The middleware forms over real HTTP: `runhook::tower::WebhookLayer` on an axum router and
//! `runhook::actix::WebhookLayer` on an actix-web resource, each in front of an ordinary
//! handler that reads the body with the framework's own JSON extractor. Every scenario runs
//! once per framework.

#[path = "support/servers.rs"]
#[macro_use]
mod servers;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use runhook::payload::Provider;
use runhook::receiver::VerifiedRun;
use runhook::verify::sign_skyvern;
use runhook::{InlineReceiver, Receiver, Secret, SkyvernSignature};
use serde_json::{json, Value};
use servers::{spawn_actix, spawn_axum, Framework, Server};

const KEY: &str = "sk_test_middleware";
const PATH: &str = "/webhooks/skyvern";

/// What the inner handler saw, one entry per call.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    run_id: String,
    /// The body as the framework's JSON extractor read it.
    body: Value,
    key_index: Option<usize>,
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// The inner handler's answer for a run: `flaky-*` runs fail (500) on their first call,
/// `slow-*` runs take 600 ms; every other call answers 200.
fn inner_status(calls: &Calls, run: &VerifiedRun, body: Value) -> u16 {
    let run_id = run_id(run);
    let mut calls = calls.lock().unwrap();
    let earlier = calls.iter().filter(|c| c.run_id == run_id).count();
    calls.push(Call {
        run_id: run_id.to_string(),
        body,
        key_index: run.verified.key_index,
    });
    if run_id.starts_with("flaky") && earlier == 0 {
        500
    } else {
        200
    }
}

fn slow(run: &VerifiedRun) -> bool {
    run_id(run).starts_with("slow")
}

/// The run's id (these tests use platforms that name their runs).
fn run_id(run: &VerifiedRun) -> &str {
    run.event.run_id.as_deref().unwrap_or_default()
}

fn receiver() -> InlineReceiver {
    Receiver::builder(
        Provider::Skyvern,
        SkyvernSignature::new(Secret::new(KEY).unwrap()),
    )
    .build_inline()
    .unwrap()
}

async fn serve(framework: Framework, calls: Calls) -> Server {
    let receiver = receiver();
    match framework {
        Framework::Axum => {
            use axum::{http::StatusCode, routing::post, Extension, Json};
            let handler = move |Extension(run): Extension<VerifiedRun>, Json(body): Json<Value>| {
                let calls = calls.clone();
                async move {
                    if slow(&run) {
                        tokio::time::sleep(Duration::from_millis(600)).await;
                    }
                    StatusCode::from_u16(inner_status(&calls, &run, body)).unwrap()
                }
            };
            let app = axum::Router::new()
                .route(PATH, post(handler))
                .layer(runhook::tower::WebhookLayer::new(receiver));
            spawn_axum(app).await
        }
        Framework::Actix => spawn_actix(Arc::new(move |cfg| {
            use actix_web::{web, HttpMessage as _, HttpRequest, HttpResponse};
            let calls = calls.clone();
            let handler = move |request: HttpRequest, body: web::Json<Value>| {
                let calls = calls.clone();
                async move {
                    let run = request.extensions().get::<VerifiedRun>().cloned().unwrap();
                    if slow(&run) {
                        tokio::time::sleep(Duration::from_millis(600)).await;
                    }
                    let status = inner_status(&calls, &run, body.into_inner());
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .finish()
                }
            };
            cfg.service(
                web::resource(PATH)
                    .wrap(runhook::actix::WebhookLayer::new(receiver.clone()))
                    .route(web::post().to(handler)),
            );
        })),
    }
}

fn body(run_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"run_id": run_id, "status": "completed", "output": {"n": 1}}))
        .unwrap()
}

async fn deliver(server: &Server, body: &[u8], signature: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url(PATH))
        .header("content-type", "application/json")
        .header("x-skyvern-signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn deliver_signed(server: &Server, body: &[u8]) -> reqwest::Response {
    deliver(
        server,
        body,
        &sign_skyvern(&Secret::new(KEY).unwrap(), body),
    )
    .await
}

fn calls_of(calls: &Calls, run_id: &str) -> Vec<Call> {
    let calls = calls.lock().unwrap();
    calls
        .iter()
        .filter(|c| c.run_id == run_id)
        .cloned()
        .collect()
}

/// A genuine delivery reaches the handler once, with the same bytes (its JSON extractor reads
/// them) and what authenticated it; its duplicate is answered 200 without a second call.
async fn genuine_once_then_duplicate(framework: Framework) {
    let calls = Calls::default();
    let server = serve(framework, calls.clone()).await;
    let sent = body("wr_mw_1");
    assert_eq!(deliver_signed(&server, &sent).await.status(), 200);
    let seen = calls_of(&calls, "wr_mw_1");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].body,
        serde_json::from_slice::<Value>(&sent).unwrap()
    );
    assert_eq!(seen[0].key_index, Some(0));

    assert_eq!(deliver_signed(&server, &sent).await.status(), 200);
    assert_eq!(
        calls_of(&calls, "wr_mw_1").len(),
        1,
        "the duplicate ran the handler"
    );
}

/// A forged delivery is answered 401 and never reaches the handler.
async fn forged_never_reaches_the_handler(framework: Framework) {
    let calls = Calls::default();
    let server = serve(framework, calls.clone()).await;
    let sent = body("wr_mw_forged");
    let forged = sign_skyvern(&Secret::new("sk_not_the_key").unwrap(), &sent);
    let response = deliver(&server, &sent, &forged).await;
    assert_eq!(response.status(), 401);
    assert!(calls.lock().unwrap().is_empty());
}

/// A handler that answers 500 releases the claim: the sender's retry runs it again, and once
/// it answered 200 the run is done.
async fn failure_releases_the_claim(framework: Framework) {
    let calls = Calls::default();
    let server = serve(framework, calls.clone()).await;
    let sent = body("flaky-1");
    assert_eq!(deliver_signed(&server, &sent).await.status(), 500);
    assert_eq!(deliver_signed(&server, &sent).await.status(), 200);
    assert_eq!(deliver_signed(&server, &sent).await.status(), 200);
    assert_eq!(calls_of(&calls, "flaky-1").len(), 2);
}

/// A duplicate arriving while the handler still runs is told to retry (503, `Retry-After`);
/// after the first one finished it is a plain duplicate.
async fn in_flight_duplicate_is_asked_to_retry(framework: Framework) {
    let calls = Calls::default();
    let server = Arc::new(serve(framework, calls.clone()).await);
    let sent = body("slow-1");
    let first = {
        let (server, sent) = (server.clone(), sent.clone());
        tokio::spawn(async move { deliver_signed(&server, &sent).await.status() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let duplicate = deliver_signed(&server, &sent).await;
    assert_eq!(duplicate.status(), 503);
    let retry_after: u64 = duplicate.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(deliver_signed(&server, &sent).await.status(), 200);
    assert_eq!(calls_of(&calls, "slow-1").len(), 1);
}

per_framework!(
    genuine_once_then_duplicate,
    forged_never_reaches_the_handler,
    failure_releases_the_claim,
    in_flight_duplicate_is_asked_to_retry,
);

/// The receiver itself is a tower service: `Router::route_service` acknowledges and runs the
/// receiver's own handler in the background, once per run.
#[tokio::test]
async fn the_receiver_is_a_tower_service() {
    let processed = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = processed.clone();
    let receiver = Receiver::builder(
        Provider::Skyvern,
        SkyvernSignature::new(Secret::new(KEY).unwrap()),
    )
    .handler(move |event: Arc<runhook::payload::RunEvent>| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap()
                .push(event.run_id.clone().unwrap_or_default());
            Ok::<(), std::io::Error>(())
        }
    })
    .build()
    .unwrap();
    let app = axum::Router::new().route_service(PATH, receiver.clone());
    let server = spawn_axum(app).await;
    let sent = body("wr_service_1");
    assert_eq!(deliver_signed(&server, &sent).await.status(), 200);
    assert_eq!(deliver_signed(&server, &sent).await.status(), 200);
    let forged = deliver(&server, &sent, "v1,AAAA").await;
    assert_eq!(forged.status(), 401);
    let report = receiver.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained());
    assert_eq!(*processed.lock().unwrap(), vec!["wr_service_1".to_string()]);
}
