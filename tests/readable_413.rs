//! A body over the limit is answered with a 413 the sender can read: real axum and actix-web
//! servers serving runhook's ready handlers with the default 2 MiB limit, and a raw blocking
//! TCP client that writes its whole request before reading anything, as Python's
//! `http.client` and httpx do. Without draining, the server would close the socket with the
//! body unread, the kernel would send a reset, and the client would see a broken pipe.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runhook::payload::{Provider, RunEvent};
use runhook::receiver::DEFAULT_BODY_LIMIT;
use runhook::{Receiver, Secret, SkyvernSignature};

#[macro_use]
#[path = "support/servers.rs"]
mod servers;
use servers::{Framework, Server};

const ROUTE: &str = "/webhooks/skyvern";
/// What runhook drains past the limit (runhook's `body::MAX_DRAIN_BYTES`).
const DRAIN_BOUND: usize = 8 * 1024 * 1024;
const MIB: usize = 1024 * 1024;

/// A Skyvern receiver with the default limits.
fn receiver() -> Receiver {
    Receiver::builder(
        Provider::Skyvern,
        SkyvernSignature::new(Secret::new("sk_413_key").unwrap()),
    )
    .handler(|_: Arc<RunEvent>| async { Ok::<(), std::io::Error>(()) })
    .build()
    .unwrap()
}

async fn serve(framework: Framework, receiver: Receiver) -> Server {
    servers::serve(framework, vec![(ROUTE, receiver)]).await
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
}

fn head(framing: &str) -> Vec<u8> {
    format!(
        "POST {ROUTE} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         x-skyvern-signature: {}\r\n{framing}\r\n",
        "0".repeat(64)
    )
    .into_bytes()
}

/// `len` bytes of body (what they are does not matter: it is refused before anything else).
fn body(len: usize) -> Vec<u8> {
    vec![b'x'; len]
}

/// `body` in chunked framing, 64 KiB chunks, with the final empty chunk.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 1000 + 16);
    for chunk in body.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Reads the answer until the server closes the connection.
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) => panic!(
            "reading the answer failed ({e}); read so far: {:?}",
            String::from_utf8_lossy(&answer)
        ),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[track_caller]
fn assert_413_and_close(answer: &str) {
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer:?}"
    );
    assert!(
        answer.ends_with(&format!("body larger than {DEFAULT_BODY_LIMIT} bytes")),
        "{answer:?}"
    );
}

/// Writes the whole `request` before reading anything, then reads the answer to its end.
async fn write_all_then_read(addr: SocketAddr, request: Vec<u8>) -> String {
    tokio::task::spawn_blocking(move || {
        let mut stream = connect(addr);
        stream
            .write_all(&request)
            .unwrap_or_else(|e| panic!("writing the whole request failed: {e}"));
        read_to_close(&mut stream)
    })
    .await
    .unwrap()
}

async fn content_length_body_over_the_limit_gets_a_readable_413(framework: Framework) {
    let body = body(3 * MIB);
    let mut request = head(&format!("Content-Length: {}\r\n", body.len()));
    request.extend_from_slice(&body);
    request_gets_a_readable_413(framework, request).await;
}

async fn chunked_body_over_the_limit_gets_a_readable_413(framework: Framework) {
    let mut request = head("Transfer-Encoding: chunked\r\n");
    request.extend_from_slice(&chunked(&body(3 * MIB)));
    request_gets_a_readable_413(framework, request).await;
}

/// `request`, written whole, gets a readable 413 and a closed connection, counted once.
async fn request_gets_a_readable_413(framework: Framework, request: Vec<u8>) {
    let receiver = receiver();
    let server = serve(framework, receiver.clone()).await;
    let answer = write_all_then_read(server.addr, request).await;
    assert_413_and_close(&answer);
    assert_eq!(receiver.stats().rejected_too_large, 1);
}

/// A declared length beyond what is drained is refused at once, without waiting for a byte of
/// the body, and the connection is closed.
async fn declared_length_beyond_the_drain_bound_is_refused_at_once(framework: Framework) {
    let receiver = receiver();
    let server = serve(framework, receiver.clone()).await;
    let addr = server.addr;
    let (answer, took) = tokio::task::spawn_blocking(move || {
        let mut stream = connect(addr);
        let declared = DEFAULT_BODY_LIMIT + DRAIN_BOUND + 1;
        let started = Instant::now();
        stream
            .write_all(&head(&format!("Content-Length: {declared}\r\n")))
            .unwrap();
        (read_to_close(&mut stream), started.elapsed())
    })
    .await
    .unwrap();
    assert_413_and_close(&answer);
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    assert_eq!(receiver.stats().rejected_too_large, 1);
}

/// An endless chunked body: the server reads at most the limit plus the drain bound (plus what
/// the sockets buffer), then answers and closes; the sender's writes then fail. A server that
/// drained without bound would never fail the writes; one that stopped reading without
/// closing would make a write time out.
///
/// actix-web itself reads and discards for its `client_disconnect_timeout` (1 s by default)
/// before it closes, so for actix-web only the time is bounded, not the bytes.
async fn endless_body_is_not_read_without_bound(framework: Framework) {
    let receiver = receiver();
    let server = serve(framework, receiver.clone()).await;
    let addr = server.addr;
    let (written, took, error) = tokio::task::spawn_blocking(move || {
        let mut stream = connect(addr);
        stream
            .write_all(&head("Transfer-Encoding: chunked\r\n"))
            .unwrap();
        let chunk = chunked(&body(64 * 1024));
        let chunk = &chunk[..chunk.len() - 5]; // without the final empty chunk
        let started = Instant::now();
        let mut written = 0usize;
        while started.elapsed() < Duration::from_secs(10) {
            if let Err(e) = stream.write_all(chunk) {
                return (written, started.elapsed(), Some(e));
            }
            written += chunk.len();
        }
        (written, started.elapsed(), None)
    })
    .await
    .unwrap();
    let error = error.unwrap_or_else(|| panic!("the server took {written} bytes in {took:?}"));
    assert!(
        !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "the server stopped reading but kept the connection open: {error}"
    );
    // The drain time (3 s) is not reached: the bytes bound comes first on loopback.
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    if let Framework::Axum = framework {
        let slack = 16 * MIB; // socket buffers on both sides, the server's read buffer
        assert!(
            written <= DEFAULT_BODY_LIMIT + DRAIN_BOUND + slack,
            "the server read {written} bytes"
        );
    }
    assert!(
        written > DEFAULT_BODY_LIMIT,
        "refused after {written} bytes only"
    );
    assert_eq!(receiver.stats().rejected_too_large, 1);
}

per_framework!(
    content_length_body_over_the_limit_gets_a_readable_413,
    chunked_body_over_the_limit_gets_a_readable_413,
    declared_length_beyond_the_drain_bound_is_refused_at_once,
    endless_body_is_not_read_without_bound,
);
