//! One accepted connection, served by hyper's HTTP/1 connection with a timer until it ends,
//! falls silent, or the server closes it.

use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::idle::{Activity, Watched};
use super::{BoxError, ConnectionLimits};

/// Where the server is in its life, as each connection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Serving requests.
    Serving,
    /// Shutting down: finish the request under way, then close (no keep-alive).
    Draining,
    /// Past the deadline: close now.
    Closing,
}

/// hyper's HTTP/1 settings for `limits`.
pub(super) fn http1(limits: &ConnectionLimits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout_value())
        .max_buf_size(limits.max_header_bytes_value())
        .keep_alive(true);
    builder
}

/// Serves `stream` with `service` until it ends, stays silent for `idle`, or `phase` says
/// close; `permit` (its place under the connection cap) is given back when it ends.
pub(super) async fn serve<S, B>(
    http1: hyper::server::conn::http1::Builder,
    stream: TcpStream,
    service: S,
    idle: Duration,
    mut phase: watch::Receiver<Phase>,
    permit: OwnedSemaphorePermit,
) where
    S: tower_service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let activity = Activity::new();
    let io = TokioIo::new(Watched::new(stream, activity.clone()));
    let connection = http1.serve_connection(io, TowerToHyperService::new(service));
    let mut connection = std::pin::pin!(connection);
    let mut draining = false;
    loop {
        let now = *phase.borrow_and_update();
        match now {
            Phase::Closing => break,
            Phase::Draining if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            _ => {}
        }
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "connection ended with an error");
                }
                break;
            }
            () = activity.silent_for(idle) => {
                tracing::debug!("connection silent past the idle timeout: closing it");
                break;
            }
            changed = phase.changed() => {
                if changed.is_err() {
                    // The server is gone: close.
                    break;
                }
            }
        }
    }
    drop(permit);
}
