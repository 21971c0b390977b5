//! Authentication over real HTTP: real axum and actix-web servers on loopback, a real client,
//! and the runhook-core schemes reading each framework's own header map without copying.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use runhook::actix::ActixHeaders;
use runhook::verify::{sign_skyvern, Delivery};
use runhook::{HeaderToken, PathSecret, Secret, Secrets, SkyvernSignature, Verifier};

#[path = "support/servers.rs"]
mod servers;

const SKYVERN_KEY: &str = "sk_e2e_key";
const WEBRUN_AUTH: &str = "Bearer webrun-e2e-token";
const PATH_SECRET: &str = "pz7Qm2Kx9sLw";

/// The schemes every test server uses, one per route.
struct Schemes {
    skyvern: SkyvernSignature,
    webrun: HeaderToken,
    smartbrowse: PathSecret,
}

fn schemes() -> Arc<Schemes> {
    let old = Secret::new("sk_retired_key").unwrap();
    let current = Secret::new(SKYVERN_KEY).unwrap();
    Arc::new(Schemes {
        skyvern: SkyvernSignature::new(Secrets::new([old, current]).unwrap()),
        webrun: HeaderToken::authorization(Secret::new(WEBRUN_AUTH).unwrap()),
        smartbrowse: PathSecret::last_segment(Secret::new(PATH_SECRET).unwrap()),
    })
}

/// What a route answers: 200 with the matched key index, or the rejection's status and reason.
fn answer(result: Result<runhook::verify::Verified, runhook::verify::AuthError>) -> (u16, String) {
    match result {
        Ok(v) => (200, format!("key {}", v.key_index.unwrap_or(usize::MAX))),
        Err(e) => (e.status().as_u16(), e.to_string()),
    }
}

fn scheme_for<'a>(schemes: &'a Schemes, path: &str) -> &'a dyn Verifier {
    if path.starts_with("/webhooks/skyvern") {
        &schemes.skyvern
    } else if path.starts_with("/webhooks/webrun") {
        &schemes.webrun
    } else {
        &schemes.smartbrowse
    }
}

async fn start_axum() -> SocketAddr {
    let schemes = schemes();
    let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let schemes = schemes.clone();
        async move {
            let delivery = Delivery::new(&headers, &body).with_path(uri.path());
            let (status, text) = answer(scheme_for(&schemes, uri.path()).verify(&delivery));
            (StatusCode::from_u16(status).unwrap(), text)
        }
    };
    let app = axum::Router::new().fallback(axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn start_actix() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let schemes = schemes();
            let server = actix_web::HttpServer::new(move || {
                let schemes = schemes.clone();
                actix_web::App::new().default_service(actix_web::web::post().to(
                    move |req: actix_web::HttpRequest, body: actix_web::web::Bytes| {
                        let schemes = schemes.clone();
                        async move {
                            let headers = ActixHeaders(req.headers());
                            let delivery = Delivery::new(&headers, &body).with_path(req.path());
                            let (status, text) =
                                answer(scheme_for(&schemes, req.path()).verify(&delivery));
                            actix_web::HttpResponse::build(
                                actix_web::http::StatusCode::from_u16(status).unwrap(),
                            )
                            .body(text)
                        }
                    },
                ))
            })
            .workers(1)
            .bind("127.0.0.1:0")
            .unwrap();
            tx.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
        });
    });
    rx.recv().unwrap()
}

async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    let reply = servers::post(&reqwest::Client::new(), &url, headers, body).await;
    (reply.status, reply.text)
}

/// Runs the same deliveries against one server and checks every answer.
async fn exercise(addr: SocketAddr) {
    let body = r#"{"run_id":"tsk_e2e_1","status":"completed","output":{"price":29.99,"title":"caf\u00e9 ☕"}}"#
        .as_bytes()
        .to_vec();
    let signature = sign_skyvern(&Secret::new(SKYVERN_KEY).unwrap(), &body);

    // One byte changed in the body.
    let mut tampered = body.clone();
    tampered[12] ^= 1;
    // The classic pitfall: the same JSON re-serialized by a JSON library no longer verifies.
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let reserialized = serde_json::to_vec(&value).unwrap();
    assert_ne!(reserialized, body);
    let secret_path = format!("/webhooks/smartbrowse/{PATH_SECRET}");
    let (skyvern, webrun) = ("/webhooks/skyvern", "/webhooks/webrun");
    let signed: &[(&str, &str)] = &[("x-skyvern-signature", &signature)];
    let twice: &[(&str, &str)] = &[
        ("authorization", WEBRUN_AUTH),
        ("authorization", "Bearer other"),
    ];
    // (path, headers, body, status, what the answer says)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Vec<u8>, u16, Says);
    let cases: [Case; 9] = [
        // Genuine: accepted with the current key (index 1 of the rotation list).
        (
            skyvern,
            &[("X-Skyvern-Signature", &signature)],
            body.clone(),
            200,
            Says::Exactly("key 1"),
        ),
        (skyvern, signed, tampered, 401, Says::Anything),
        (
            skyvern,
            signed,
            reserialized,
            401,
            Says::Part("does not match"),
        ),
        // Missing signature header: rejected with the precise reason.
        (
            skyvern,
            &[],
            body.clone(),
            401,
            Says::Exactly("header `x-skyvern-signature` is missing"),
        ),
        // WebRun bearer token: exact value accepted, anything else refused.
        (
            webrun,
            &[("authorization", WEBRUN_AUTH)],
            b"{}".to_vec(),
            200,
            Says::Anything,
        ),
        (
            webrun,
            &[("authorization", "Bearer webrun-e2e-tokeN")],
            b"{}".to_vec(),
            401,
            Says::Anything,
        ),
        (
            webrun,
            twice,
            b"{}".to_vec(),
            401,
            Says::Part("more than once"),
        ),
        // SmartBrowse secret path.
        (&secret_path, &[], b"{}".to_vec(), 200, Says::Anything),
        (
            "/webhooks/smartbrowse/guess",
            &[],
            b"{}".to_vec(),
            401,
            Says::Anything,
        ),
    ];
    for (path, headers, sent, expected, says) in cases {
        let (status, text) = post(addr, path, headers, sent).await;
        assert_eq!(status, expected, "{path} {headers:?}: {text}");
        match says {
            Says::Exactly(exact) => assert_eq!(text, exact, "{path}"),
            Says::Part(part) => assert!(text.contains(part), "{path}: {text}"),
            Says::Anything => {}
        }
    }
}

/// What an answer's text must be.
enum Says {
    Exactly(&'static str),
    Part(&'static str),
    Anything,
}

#[tokio::test]
async fn axum_server_authenticates_on_raw_bytes() {
    exercise(start_axum().await).await;
}

#[tokio::test]
async fn actix_server_authenticates_on_raw_bytes() {
    exercise(start_actix()).await;
}
