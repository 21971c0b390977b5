//! End-to-end tests of `runhook serve --forward`: the real binary forwarding to local
//! targets over real HTTP and TLS (a CA made here, trusted through `SSL_CERT_FILE`),
//! `Retry-After`, redirects, what errors show of the URL, and the limits toward the target.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, Uri};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

mod common;
use common::{
    post_json, start_serve_without, tinyfish_forward_route, unique, wait_for, Started as Serve,
    WithLogs,
};

const TINYFISH_PATH: &str = "tfFw9KpzQ7forward";

/// The variables that would make the forward trust other certificates than the test says.
const TRUST_VARIABLES: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("runhook-forward-{name}"))
}

/// `runhook serve` on a TinyFish path-secret route forwarding to `forward`, with `extra`
/// flags and `env`; the trust-store variables are never inherited.
fn serve(dir: &Path, forward: &str, extra: &[&str], env: &[(&str, &str)]) -> Serve {
    let mut args = tinyfish_forward_route(forward);
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
    env.push(("TINYFISH_PATH_SECRET", TINYFISH_PATH));
    start_serve_without(dir, &args, &env, &TRUST_VARIABLES)
}

/// Posts a TinyFish run-completed delivery for `run` to `serve`; returns the status.
async fn deliver(serve: &Serve, run: &str) -> u16 {
    let body = format!(
        r#"{{"event":"run.completed","run_id":"{run}","status":"COMPLETED","data":{{"id":"{run}"}}}}"#
    );
    let url = format!("{}/hooks/tinyfish/{TINYFISH_PATH}", serve.base);
    post_json(&reqwest::Client::new(), &url, body.as_bytes()).await
}

/// One request the target got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    dedup_key: String,
    at: Instant,
}

/// How the target answers its `n`th request (0-based).
type Answer = Arc<dyn Fn(usize) -> Response + Send + Sync>;

/// A local forward target: keeps every request, answers with `answer` after `hold`, and
/// notes the most requests it had in flight at once.
#[derive(Clone)]
struct Target {
    hits: Arc<Mutex<Vec<Hit>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    handshake_failures: Arc<AtomicUsize>,
}

impl Target {
    fn new() -> Self {
        Self {
            hits: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            handshake_failures: Arc::default(),
        }
    }

    fn app(&self, answer: Answer, hold: Duration) -> axum::Router {
        let target = self.clone();
        axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let target = target.clone();
            let answer = answer.clone();
            async move {
                let now = target.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                target.max_in_flight.fetch_max(now, Ordering::SeqCst);
                let n = {
                    let mut hits = target.hits.lock().unwrap();
                    hits.push(Hit {
                        path: uri.path().to_string(),
                        dedup_key: headers
                            .get("x-runhook-dedup-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string(),
                        at: Instant::now(),
                    });
                    hits.len() - 1
                };
                tokio::time::sleep(hold).await;
                target.in_flight.fetch_sub(1, Ordering::SeqCst);
                answer(n)
            }
        })
    }

    /// Serves plain HTTP on a free port; returns its address.
    async fn serve_http(&self, answer: Answer, hold: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = self.app(answer, hold);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }

    /// Serves plain HTTP (as [`Target::serve_http`]) and starts `serve` forwarding to it with
    /// `extra` flags.
    async fn forwarded_from(
        &self,
        dir: &Path,
        answer: Answer,
        hold: Duration,
        extra: &[&str],
    ) -> Serve {
        let address = self.serve_http(answer, hold).await;
        serve(dir, &format!("http://{address}/events"), extra, &[])
    }

    /// Serves HTTPS with `identity` on a free port; returns its address.
    async fn serve_https(&self, identity: &Identity, answer: Answer) -> SocketAddr {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![identity.leaf.clone()], identity.key.clone_key())
            .unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = tcp.local_addr().unwrap();
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            handshake_failures: self.handshake_failures.clone(),
        };
        let app = self.app(answer, Duration::ZERO);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The requests got, once there are at least `n` (waits up to `limit`).
    async fn hits_when(&self, n: usize, limit: Duration, serve: &Serve) -> Vec<Hit> {
        let what = format!("{n} requests at the target");
        wait_for(limit, WithLogs(&what, serve), || {
            Some(self.hits()).filter(|hits| hits.len() >= n)
        })
        .await
    }
}

/// A TCP listener that completes a TLS handshake before handing a connection to axum, and
/// counts the handshakes that failed (a client that refused the certificate).
struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_failures: Arc<AtomicUsize>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, address)) = self.tcp.accept().await else {
                continue;
            };
            match self.acceptor.accept(tcp).await {
                Ok(tls) => return (tls, address),
                Err(_) => {
                    self.handshake_failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A CA made for one test, and a certificate for `localhost` it signed.
struct Identity {
    ca_pem: String,
    leaf: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn identity() -> Identity {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "runhook forward test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    Identity {
        ca_pem: ca.pem(),
        leaf: leaf.der().clone(),
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    }
}

fn answer(f: impl Fn(usize) -> Response + Send + Sync + 'static) -> Answer {
    Arc::new(f)
}

fn ok() -> Answer {
    answer(|_| StatusCode::OK.into_response())
}

/// The dead letters file's text, once it has at least `n` lines (waits up to 20 s).
async fn dead_letters_when(path: &Path, n: usize, serve: &Serve) -> String {
    wait_for(
        Duration::from_secs(20),
        WithLogs("a dead letter", serve),
        || {
            Some(std::fs::read_to_string(path).unwrap_or_default())
                .filter(|text| text.lines().count() >= n)
        },
    )
    .await
}

/// The flags that make `serve` give up after two attempts (50 ms apart) into `letters`.
fn two_attempts_into(letters: &Path) -> Vec<&str> {
    vec![
        "--max-attempts",
        "2",
        "--retry-backoff-ms",
        "50",
        "--dead-letters",
        letters.to_str().unwrap(),
    ]
}

#[tokio::test]
async fn forward_over_https_trusts_the_ca_in_ssl_cert_file() {
    let dir = scratch("tls");
    let identity = identity();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &identity.ca_pem).unwrap();
    let target = Target::new();
    let address = target.serve_https(&identity, ok()).await;
    let url = format!("https://localhost:{}/events", address.port());
    let serve = serve(
        &dir,
        &url,
        &[],
        &[("SSL_CERT_FILE", ca_file.to_str().unwrap())],
    );
    let run = unique("tls_run");
    assert_eq!(deliver(&serve, &run).await, 200);
    let hits = target.hits_when(1, Duration::from_secs(15), &serve).await;
    assert_eq!(hits[0].path, "/events");
    assert_eq!(hits[0].dedup_key, format!("tinyfish:{run}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(target.hits().len(), 1, "delivered once, over TLS");
    assert_eq!(target.handshake_failures.load(Ordering::SeqCst), 0);
    let mut serve = serve;
    assert!(serve.terminate(Duration::from_secs(20)).success());
}

#[tokio::test]
async fn forward_over_https_refuses_an_unknown_ca_and_dead_letters_the_run() {
    let dir = scratch("tls-unknown");
    let identity = identity();
    let target = Target::new();
    let address = target.serve_https(&identity, ok()).await;
    let url = format!("https://localhost:{}/events", address.port());
    let letters = dir.join("dead.jsonl");
    // No SSL_CERT_FILE: the platform's trust store, which does not know this CA.
    let serve = serve(&dir, &url, &two_attempts_into(&letters), &[]);
    let run = unique("tls_unknown_run");
    assert_eq!(deliver(&serve, &run).await, 200);
    let text = dead_letters_when(&letters, 1, &serve).await;
    let letter: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(letter["run_id"], run.as_str());
    assert_eq!(letter["reason_code"], "handler_failed");
    assert_eq!(letter["attempts"], 2);
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("certificate"), "{reason}");
    assert!(
        target.hits().is_empty(),
        "a request got through: {:?}",
        target.hits()
    );
    assert!(
        target.handshake_failures.load(Ordering::SeqCst) >= 2,
        "each attempt is a refused handshake"
    );
}

/// The target answers its first request `status` with `Retry-After: retry_after`, then 200;
/// returns the time between the two attempts, with `--retry-backoff-ms 100`.
async fn gap_after(
    status: StatusCode,
    retry_after: impl Fn() -> String + Send + Sync + 'static,
) -> Duration {
    let dir = scratch("retry-after");
    let target = Target::new();
    let first = answer(move |n| {
        if n == 0 {
            (status, [(http::header::RETRY_AFTER, retry_after())]).into_response()
        } else {
            StatusCode::OK.into_response()
        }
    });
    let serve = target
        .forwarded_from(&dir, first, Duration::ZERO, &["--retry-backoff-ms", "100"])
        .await;
    assert_eq!(deliver(&serve, &unique("retry_after_run")).await, 200);
    let hits = target.hits_when(2, Duration::from_secs(20), &serve).await;
    hits[1].at - hits[0].at
}

#[tokio::test]
async fn a_429_with_retry_after_delays_the_next_attempt() {
    let gap = gap_after(StatusCode::TOO_MANY_REQUESTS, || "2".into()).await;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(10), "retried after {gap:?}");
}

#[tokio::test]
async fn a_503_with_retry_after_delays_the_next_attempt() {
    let gap = gap_after(StatusCode::SERVICE_UNAVAILABLE, || "2".into()).await;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(10), "retried after {gap:?}");
}

#[tokio::test]
async fn a_503_with_an_http_date_delays_the_next_attempt() {
    // Written when the 503 is answered (not before `serve` has started, which on a busy
    // machine can take longer than the margin): whole seconds, so 3 s from then is between 2
    // and 3 s away.
    let date = || httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
    let gap = gap_after(StatusCode::SERVICE_UNAVAILABLE, date).await;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(10), "retried after {gap:?}");
}

#[tokio::test]
async fn a_500_with_retry_after_keeps_the_backoff() {
    // Retry-After counts on 429 and 503 only.
    let gap = gap_after(StatusCode::INTERNAL_SERVER_ERROR, || "5".into()).await;
    assert!(gap < Duration::from_secs(2), "retried after {gap:?}");
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let dir = scratch("redirect");
    let target = Target::new();
    let redirect =
        answer(|_| (StatusCode::FOUND, [(http::header::LOCATION, "/elsewhere")]).into_response());
    let letters = dir.join("dead.jsonl");
    let serve = target
        .forwarded_from(&dir, redirect, Duration::ZERO, &two_attempts_into(&letters))
        .await;
    assert_eq!(deliver(&serve, &unique("redirect_run")).await, 200);
    let text = dead_letters_when(&letters, 1, &serve).await;
    assert!(text.contains("redirects are not followed"), "{text}");
    assert!(text.contains("302"), "{text}");
    let paths: Vec<String> = target.hits().into_iter().map(|h| h.path).collect();
    assert_eq!(
        paths,
        ["/events", "/events"],
        "the redirect target saw a request"
    );
}

#[tokio::test]
async fn errors_and_dead_letters_never_show_the_path_or_query() {
    let dir = scratch("redact");
    // A port nobody listens on: every attempt fails inside reqwest, whose errors carry the
    // URL unless told not to.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/hook/s3cr3t?token=abc");
    let letters = dir.join("dead.jsonl");
    let mut serve = serve(&dir, &url, &two_attempts_into(&letters), &[]);
    let run = unique("redact_run");
    assert_eq!(deliver(&serve, &run).await, 200);
    let text = dead_letters_when(&letters, 1, &serve).await;
    assert!(serve.terminate(Duration::from_secs(20)).success());
    let logs = serve.logs();
    let origin = format!("http://127.0.0.1:{port}");
    assert!(
        text.contains(&origin),
        "the dead letter names the origin: {text}"
    );
    assert!(text.contains(&run), "{text}");
    assert!(
        logs.contains(&origin),
        "the startup line names the origin:\n{logs}"
    );
    assert!(logs.contains("handler attempt failed"), "{logs}");
    for shown in [&text, &logs] {
        assert!(
            !shown.contains("s3cr3t"),
            "the URL's path was shown:\n{shown}"
        );
        assert!(
            !shown.contains("abc"),
            "the URL's query was shown:\n{shown}"
        );
    }
}

/// `n` runs delivered to `serve` (with `extra` flags) forwarding to a target that answers 200
/// after `hold`; the target and the requests it got, once all `n` came.
async fn forward_runs(name: &str, hold: Duration, extra: &[&str], n: usize) -> (Target, Vec<Hit>) {
    let dir = scratch(name);
    let target = Target::new();
    let serve = target.forwarded_from(&dir, ok(), hold, extra).await;
    for _ in 0..n {
        assert_eq!(deliver(&serve, &unique(&format!("{name}_run"))).await, 200);
    }
    let hits = target.hits_when(n, Duration::from_secs(20), &serve).await;
    (target, hits)
}

#[tokio::test]
async fn the_concurrency_limit_holds() {
    let extra = ["--workers", "6", "--forward-concurrency", "2"];
    let (target, hits) = forward_runs("concurrency", Duration::from_millis(300), &extra, 6).await;
    assert_eq!(hits.len(), 6);
    assert_eq!(
        target.max_in_flight.load(Ordering::SeqCst),
        2,
        "the target's most requests at once"
    );
    // Three rounds of two, 300 ms each.
    let span = hits[5].at - hits[0].at;
    assert!(span >= Duration::from_millis(500), "all in {span:?}");
}

#[tokio::test]
async fn the_rate_limit_spaces_requests() {
    let extra = ["--workers", "8", "--forward-rate-per-sec", "4"];
    let (_target, hits) = forward_runs("rate", Duration::ZERO, &extra, 8).await;
    let times: Vec<Instant> = hits.iter().map(|h| h.at).collect();
    // Eight requests 250 ms apart take 1.75 s.
    let span = times[7] - times[0];
    assert!(
        span >= Duration::from_millis(1400),
        "eight requests in {span:?}"
    );
    // No one-second window holds more than the rate (and one at its edge).
    for (i, start) in times.iter().enumerate() {
        let within = times[i..]
            .iter()
            .filter(|t| **t - *start < Duration::from_secs(1))
            .count();
        assert!(within <= 5, "{within} requests within a second");
    }
}

/// The environment's proxy variables are ignored (the forward URL, which may hold a secret,
/// and the events never reach a proxy nobody chose); `--proxy` sends through one. (Two
/// threads: the targets keep answering while the test waits for serve to exit.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_is_used_only_when_given_with_proxy() {
    let dir = scratch("proxy");
    let (target, proxy) = (Target::new(), Target::new());
    let target_at = target.serve_http(ok(), Duration::ZERO).await;
    let proxy_at = proxy.serve_http(ok(), Duration::ZERO).await;
    let forward = format!("http://{target_at}/events");
    let proxy_url = format!("http://{proxy_at}");
    let from_env = [
        ("HTTP_PROXY", proxy_url.as_str()),
        ("http_proxy", proxy_url.as_str()),
    ];

    let serve_direct = serve(&dir, &forward, &[], &from_env);
    assert_eq!(deliver(&serve_direct, &unique("direct_run")).await, 200);
    target
        .hits_when(1, Duration::from_secs(10), &serve_direct)
        .await;
    assert!(proxy.hits().is_empty(), "HTTP_PROXY was honoured");
    serve_direct.stop_ok();

    let serve_proxied = serve(&dir, &forward, &["--proxy", &proxy_url], &[]);
    assert_eq!(deliver(&serve_proxied, &unique("proxied_run")).await, 200);
    proxy
        .hits_when(1, Duration::from_secs(10), &serve_proxied)
        .await;
    assert_eq!(
        target.hits().len(),
        1,
        "the proxied request went straight to the target"
    );
    serve_proxied.stop_ok();
}
