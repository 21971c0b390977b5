//! Real axum and actix-web servers on loopback (serving runhook's ready handlers, or any app),
//! and a macro that runs a scenario once per framework. Included with `#[path]` by the tests
//! (and `support/adversarial.rs`) that use it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::web::ServiceConfig;
use runhook::Receiver;

/// The plain bodies of the response policy's answers (`Outcome::body_text`); the 503s, which
/// ask for a retry, in [`answers::retry_later`].
pub mod answers {
    #[allow(unused_imports)] // not every test reads the 503s
    pub use self::retry_later::*;

    /// 200: accepted, handed to the handler.
    pub const ACCEPTED: &str = "accepted";
    /// 200: a run already received.
    pub const DUPLICATE: &str = "duplicate: already received";
    /// 202: genuine, but not the provider's payload.
    pub const FOR_REVIEW: &str = "accepted for review: not a recognised payload";
    /// 202: genuine, but its run id cannot be a key.
    pub const UNUSABLE_ID: &str = "accepted for review: the run id cannot be used";

    /// The 503s.
    pub mod retry_later {
        /// The store or the queue cannot take it now.
        pub const UNAVAILABLE: &str = "temporarily unavailable, retry later";
        /// The receiver is shutting down.
        pub const SHUTTING_DOWN: &str = "shutting down, retry later";
    }
}

/// The routes the tests serve: Skyvern's, WebRun's, and TinyFish's with its path secret (the
/// same pattern syntax in axum 0.8 and actix-web 4).
pub mod routes {
    /// Skyvern's route.
    pub const SKYVERN_ROUTE: &str = "/webhooks/skyvern";
    /// WebRun's route.
    pub const WEBRUN_ROUTE: &str = "/webhooks/webrun";
    /// TinyFish's route, the secret its last segment.
    pub const TINYFISH_ROUTE: &str = "/webhooks/tinyfish/{secret}";
}

/// An HTTP answer: its status, its `Retry-After` if any, and its text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub text: String,
}

impl Reply {
    /// Asserts the status and the text.
    #[track_caller]
    pub fn assert(&self, status: u16, text: &str) {
        assert_eq!(
            (self.status, self.text.as_str()),
            (status, text),
            "{self:?}"
        );
    }

    /// `Retry-After` as whole seconds; fails when absent.
    #[track_caller]
    pub fn retry_after_secs(&self) -> u64 {
        let value = self.retry_after.as_deref().unwrap_or_else(|| {
            panic!("expected a Retry-After header: {self:?}");
        });
        value
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After is not a number of seconds: {self:?}"))
    }
}

/// POSTs `body` with `headers` to `url`; the answer.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut request = client.post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url} failed: {e:?}"));
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    Reply {
        status,
        retry_after,
        text,
    }
}

/// The framework a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    /// `runhook::axum::post` on `axum::serve`.
    Axum,
    /// `runhook::actix::post` on an actix-web `HttpServer` with one worker.
    Actix,
}

/// A server on 127.0.0.1, stopped when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Stop,
}

enum Stop {
    Axum(tokio::task::AbortHandle),
    Actix(actix_web::dev::ServerHandle),
}

impl Drop for Server {
    fn drop(&mut self) {
        match &self.stop {
            Stop::Axum(task) => task.abort(),
            // The stop command is sent at once; the returned future only waits for it.
            Stop::Actix(handle) => drop(handle.stop(false)),
        }
    }
}

impl Server {
    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// An axum server running `app`. Call inside a tokio runtime.
pub async fn spawn_axum(app: axum::Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        addr,
        stop: Stop::Axum(task.abort_handle()),
    }
}

/// What sets up an actix-web app.
pub type Configure = Arc<dyn Fn(&mut ServiceConfig) + Send + Sync>;

/// An actix-web server (its own system, on its own thread) whose app is set up by `configure`.
pub fn spawn_actix(configure: Configure) -> Server {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                let configure = configure.clone();
                actix_web::App::new().configure(move |cfg| configure(cfg))
            })
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
            let addr = server.addrs()[0];
            let server = server.run();
            tx.send((addr, server.handle())).unwrap();
            let _ = server.await;
        });
    });
    let (addr, handle) = rx.recv().unwrap();
    Server {
        addr,
        stop: Stop::Actix(handle),
    }
}

/// A server whose routes are runhook's ready handlers (`runhook::{axum,actix}::post`).
pub async fn serve(framework: Framework, routes: Vec<(&'static str, Receiver)>) -> Server {
    match framework {
        Framework::Axum => {
            let app = routes
                .into_iter()
                .fold(axum::Router::new(), |app, (pattern, receiver)| {
                    app.route(pattern, runhook::axum::post(receiver))
                });
            spawn_axum(app).await
        }
        Framework::Actix => spawn_actix(Arc::new(move |cfg: &mut ServiceConfig| {
            for (pattern, receiver) in &routes {
                cfg.route(pattern, runhook::actix::post(receiver.clone()));
            }
        })),
    }
}

/// Declares each scenario as one test per framework: `axum_server::NAME`, `actix_server::NAME`.
#[allow(unused_macros)] // not every includer declares tests with it
macro_rules! per_framework {
    ($($scenario:ident),* $(,)?) => {
        mod axum_server {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(Framework::Axum).await;
                }
            )*
        }
        mod actix_server {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(Framework::Actix).await;
                }
            )*
        }
    };
}
