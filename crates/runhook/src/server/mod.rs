//! A hardened HTTP/1 server for the receivers (feature `server`): any tower service, an axum
//! `Router` included, on a [`tokio::net::TcpListener`], with the limits a public endpoint needs
//! and `axum::serve` alone does not set.
//!
//! `axum::serve` runs hyper without a timer, so a client that sends its headers one byte a
//! second holds its connection (and a file descriptor) for as long as it likes; it sets no
//! idle timeout, no connection cap, and lets a request head buffer ~400 KB. A few thousand such
//! clients exhaust the process's descriptors and nothing is answered any more. [`serve`] and
//! [`Server`] add, with the defaults of [`ConnectionLimits`]:
//!
//! - a header-read timeout (10 s), which also ends kept-alive connections left idle that long;
//! - an idle timeout (60 s without a byte either way, a stalled body or an unread answer);
//! - a cap on a request head's bytes (64 KiB, 431 past it);
//! - a connection cap derived from the open-files limit, raised to its hard limit at start
//!   (past the cap a connection is accepted and closed at once; the others go on);
//! - accept errors (`EMFILE`, ...) that pause accepting briefly instead of spinning or ending
//!   the server;
//! - a graceful shutdown with a deadline ([`Server::run_until`]).
//!
//! ```no_run
//! # async fn example(router: axum::Router) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! runhook::server::serve(listener, router).await
//! # }
//! ```

mod connection;
mod fd_limit;
mod idle;
mod limits;

use std::future::Future;
use std::sync::Arc;

use crate::log_every::LogEvery;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use connection::Phase;
pub use fd_limit::{FD_RESERVE, MAX_DERIVED_CONNECTIONS};
pub use limits::{
    ConnectionLimits, FdLimit, MaxConnections, DEFAULT_ACCEPT_ERROR_PAUSE,
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_HEADER_BYTES, MIN_HEADER_BYTES,
};

/// The error type a served service and its bodies may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `service` on `listener` with the default [`ConnectionLimits`], until the process
/// ends. The one call that replaces `axum::serve(listener, router)`.
pub async fn serve<S, B>(listener: TcpListener, service: S) -> std::io::Result<()>
where
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
    Server::new(listener, service)
        .run_until(std::future::pending(), std::future::pending())
        .await
}

/// A service on a listener, with [`ConnectionLimits`]; run it with [`Server::run_until`].
pub struct Server<S> {
    listener: TcpListener,
    service: S,
    limits: ConnectionLimits,
}

impl<S> std::fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener.local_addr().ok())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<S, B> Server<S>
where
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
    /// `service` on `listener` with the default limits.
    pub fn new(listener: TcpListener, service: S) -> Self {
        Self {
            listener,
            service,
            limits: ConnectionLimits::default(),
        }
    }

    /// Replaces the limits.
    pub fn limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves until `stop` completes, then stops accepting (the listener is closed) and lets
    /// each connection finish the request under way without keeping it alive; returns once
    /// every connection has ended, or when `close` completes, at which point those still open
    /// are closed. Give `close` the drain deadline (or a second signal); it is polled only
    /// once `stop` has completed.
    ///
    /// Errors only if the listener's address cannot be read; accept errors pause accepting
    /// (see [`ConnectionLimits::accept_error_pause`]) and never end the server.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()>,
        close: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let Self {
            listener,
            service,
            limits,
        } = self;
        let address = listener.local_addr()?;
        let cap = limits
            .apply_to_process()
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        tracing::info!(%address, max_connections = cap, header_read_timeout = ?limits.header_read_timeout_value(), idle_timeout = ?limits.idle_timeout_value(), "accepting connections");
        let permits = Arc::new(Semaphore::new(cap));
        let (phase, watching) = watch::channel(Phase::Serving);
        let http1 = connection::http1(&limits);
        let mut stop = std::pin::pin!(stop);
        let (refused, failed) = (LogEvery::default(), LogEvery::default());
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut stop => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        drop(stream);
                        if let Some(count) = refused.tick() {
                            tracing::warn!(
                                max_connections = cap,
                                refused = count,
                                "connection cap reached: closing new connections at once"
                            );
                        }
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection::serve(
                        http1.clone(),
                        stream,
                        service.clone(),
                        limits.idle_timeout_value(),
                        watching.clone(),
                        permit,
                    ));
                }
                Err(error) if is_per_connection(&error) => {}
                Err(error) => {
                    if let Some(count) = failed.tick() {
                        tracing::warn!(%error, errors = count, "cannot accept connections; pausing");
                    }
                    tokio::select! {
                        () = &mut stop => break,
                        () = tokio::time::sleep(limits.accept_error_pause_value()) => {}
                    }
                }
            }
        }
        drop(listener);
        phase.send_replace(Phase::Draining);
        let all = u32::try_from(cap).unwrap_or(u32::MAX);
        tokio::select! {
            _ = permits.acquire_many(all) => return Ok(()),
            () = close => {}
        }
        let open = cap - permits.available_permits();
        if open > 0 {
            tracing::warn!(open, "closing the connections still open");
        }
        phase.send_replace(Phase::Closing);
        let _ = permits.acquire_many(all).await;
        Ok(())
    }
}

/// Errors of one connection that was being accepted (it is gone; accept the next at once).
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}
