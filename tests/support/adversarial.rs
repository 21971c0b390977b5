//! What the adversarial tests (`adversarial.rs`) and the peak-memory example
//! (`examples/adversarial_memory.rs`) share: the hostile bodies, real axum and actix-web
//! servers on loopback, and a raw HTTP/1.1 client for what reqwest will not send (a body
//! trickled a byte at a time, thousands of headers).
//!
//! Included in both with `#[path]`; neither uses every item.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use runhook::verify::sign_skyvern;
use runhook::{Receiver, Secret};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[path = "servers.rs"]
mod servers;
#[allow(unused_imports)] // the memory example does not read the answers
pub use servers::{answers, post, Framework, Reply, Server};

/// The Skyvern API key of every receiver here.
pub const SKYVERN_KEY: &str = "sk_adversarial_key";
/// The route every server serves.
pub const ROUTE: &str = "/webhooks/skyvern";
/// The Skyvern signature header.
pub const SIGNATURE: &str = "x-skyvern-signature";

/// The nesting depth the issue asks about.
pub const DEEP: usize = 100_000;
/// Length of the long string, in bytes.
pub const LONG_STRING: usize = 10 * 1024 * 1024;
/// Keys in the wide object.
pub const MANY_KEYS: usize = 1_000_000;

/// The signature Skyvern would send for `body`.
pub fn skyvern_signature(body: &[u8]) -> String {
    sign_skyvern(&Secret::new(SKYVERN_KEY).unwrap(), body)
}

/// A genuine Skyvern body whose `output` is `inner` (raw JSON text).
pub fn skyvern_body_with_output(run_id: &str, inner: &[u8]) -> Vec<u8> {
    let mut body = format!(r#"{{"run_id":"{run_id}","status":"completed","output":"#).into_bytes();
    body.extend_from_slice(inner);
    body.push(b'}');
    body
}

/// A small, ordinary Skyvern body.
pub fn skyvern_body(run_id: &str) -> Vec<u8> {
    skyvern_body_with_output(run_id, br#"{"price":29.99,"title":"caf\u00e9"}"#)
}

/// `depth` arrays nested in one another: `[[[...]]]`.
pub fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut text = vec![b'['; depth];
    text.resize(2 * depth, b']');
    text
}

/// `depth` objects nested in one another: `{"a":{"a":...{}...}}`.
pub fn nested_objects(depth: usize) -> Vec<u8> {
    let mut text = b"{\"a\":".repeat(depth);
    text.truncate(text.len() - 5);
    text.extend_from_slice(b"{}");
    text.resize(text.len() + depth - 1, b'}');
    text
}

/// A JSON string of `len` bytes of content (plus quotes): ASCII, one multi-byte character
/// (`é`, two bytes) and one escape (`\n`, two bytes) in every 64 bytes.
pub fn long_string(len: usize) -> Vec<u8> {
    let unit = {
        let mut unit = "x".repeat(60);
        unit.push('é');
        unit.push_str("\\n");
        unit
    };
    assert_eq!(unit.len(), 64);
    let mut text = Vec::with_capacity(len + 2);
    text.push(b'"');
    while text.len() + 64 <= len + 1 {
        text.extend_from_slice(unit.as_bytes());
    }
    text.resize(len + 1, b'y');
    text.push(b'"');
    text
}

/// The number of characters (after unescaping) of [`long_string`]`(len)`'s value.
pub fn long_string_chars(len: usize) -> usize {
    let units = len / 64;
    // Per unit: 60 `x`, `é` (one char), `\n` (one char).
    units * 62 + (len - units * 64)
}

/// A Skyvern body with `keys` extra top-level keys `"k0000000":0, ...` besides its run id.
pub fn many_keys_body(run_id: &str, keys: usize) -> Vec<u8> {
    let mut body = format!(r#"{{"run_id":"{run_id}","status":"completed""#).into_bytes();
    body.reserve(keys * 14);
    for i in 0..keys {
        body.extend_from_slice(format!(r#","k{i:07}":{}"#, i % 10).as_bytes());
    }
    body.push(b'}');
    body
}

/// A Skyvern body that repeats one key `times` times (Python keeps the last value).
pub fn repeated_key_body(run_id: &str, times: usize) -> Vec<u8> {
    let mut body = format!(r#"{{"run_id":"{run_id}","status":"completed""#).into_bytes();
    for i in 0..times {
        body.extend_from_slice(format!(r#","step_count":{i}"#).as_bytes());
    }
    body.push(b'}');
    body
}

// ---------------------------------------------------------------------------------------------
// Servers.

/// Serves `receiver` on [`ROUTE`] with runhook's ready handler for `framework`. For axum,
/// call inside a tokio runtime.
pub async fn serve(framework: Framework, receiver: Receiver) -> Server {
    servers::serve(framework, vec![(ROUTE, receiver)]).await
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client.

/// What a raw request got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReply {
    /// The status code, or `None` when the server closed the connection without one.
    pub status: Option<u16>,
    /// Everything read, lossily decoded, for messages.
    pub text: String,
    /// Whether the server closed the connection after answering.
    pub closed: bool,
}

/// The request head of a `POST` to [`ROUTE`] with `headers` (each `name: value`).
pub fn request_head(addr: SocketAddr, headers: &[(String, String)]) -> Vec<u8> {
    let mut head = format!("POST {ROUTE} HTTP/1.1\r\nhost: {addr}\r\n");
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Sends `request` (head and body) on a new connection while reading the answer; returns once
/// the server closed the connection or `wait` has passed after the first bytes of an answer.
pub async fn raw_request(addr: SocketAddr, request: Vec<u8>, wait: Duration) -> RawReply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // The server may answer (and close) before reading everything: keep writing in the
    // background and ignore a write error.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        write
    });
    let reply = read_reply(&mut read, wait).await;
    writer.abort();
    reply
}

/// Reads an answer from `read` until the server closes the connection, or `wait` after the
/// first bytes (an answer on a kept-alive connection), or 30 s without any answer.
pub async fn read_reply(
    read: &mut (impl tokio::io::AsyncRead + Unpin),
    wait: Duration,
) -> RawReply {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut closed = false;
    loop {
        let limit = if bytes.is_empty() {
            Duration::from_secs(30)
        } else {
            wait
        };
        match tokio::time::timeout(limit, read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    RawReply {
        status,
        text,
        closed,
    }
}

/// Sends a request head declaring a `len`-byte body, then the body one byte every `pause`, for
/// as long as the server reads it (at most `len` bytes), while waiting for the answer.
pub async fn trickle(addr: SocketAddr, len: usize, pause: Duration) -> RawReply {
    let body = skyvern_body_with_output("tsk_trickle", &long_string(len));
    let head = request_head(
        addr,
        &[
            ("content-type".into(), "application/json".into()),
            (SIGNATURE.into(), skyvern_signature(&body)),
            ("content-length".into(), body.len().to_string()),
        ],
    );
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(&head).await?;
        for byte in body {
            write.write_all(&[byte]).await?;
            write.flush().await?;
            tokio::time::sleep(pause).await;
        }
        Ok::<_, std::io::Error>(())
    });
    let reply = read_reply(&mut read, Duration::from_secs(5)).await;
    writer.abort();
    reply
}

/// Reads the process's peak resident set size (`VmHWM`) in KiB from `/proc/self/status`.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
