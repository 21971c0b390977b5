//! What one [`Server`](super::Server) tolerates from its clients: its settings and their
//! defaults.

use std::time::Duration;

use super::fd_limit;

/// The default [`ConnectionLimits::header_read_timeout`]: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`ConnectionLimits::idle_timeout`]: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default [`ConnectionLimits::max_header_bytes`]: 64 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// The smallest [`ConnectionLimits::max_header_bytes`] hyper accepts (8 KiB); smaller values are
/// raised to it.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;
/// The default [`ConnectionLimits::accept_error_pause`]: 100 ms.
pub const DEFAULT_ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Whether the server raises the process's soft limit on open files (`RLIMIT_NOFILE`) to its
/// hard limit when it starts, as Go's runtime and many servers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FdLimit {
    /// Raise the soft limit to the hard limit (the default). Only the soft limit moves; a
    /// failure is logged and the server goes on with the limit it has.
    #[default]
    RaiseToHard,
    /// Leave the process's limits as they are.
    Keep,
}

/// How many connections the server holds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxConnections {
    /// Derived when the server starts (the default): the soft open-files limit (after
    /// [`FdLimit`] applied) minus [`FD_RESERVE`](super::FD_RESERVE) descriptors kept for the
    /// process's own files, Redis connections and child processes, at least 16 and at most
    /// [`MAX_DERIVED_CONNECTIONS`](super::MAX_DERIVED_CONNECTIONS).
    #[default]
    Derived,
    /// Exactly this many (at least 1).
    Exactly(usize),
}

/// The limits a [`Server`](super::Server) puts on its connections. Build with
/// `ConnectionLimits::default()` and the setters:
///
/// ```
/// use std::time::Duration;
/// use runhook::server::ConnectionLimits;
///
/// let limits = ConnectionLimits::default()
///     .header_read_timeout(Duration::from_secs(5))
///     .max_connections(2_000);
/// assert_eq!(limits.header_read_timeout_value(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_header_bytes: usize,
    max_connections: MaxConnections,
    fd_limit: FdLimit,
    accept_error_pause: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_connections: MaxConnections::Derived,
            fd_limit: FdLimit::RaiseToHard,
            accept_error_pause: DEFAULT_ACCEPT_ERROR_PAUSE,
        }
    }
}

impl ConnectionLimits {
    /// How long a request's head (request line and headers) may take to arrive, counted from
    /// when the server starts waiting for it; this includes the wait for the next request on
    /// a kept-alive connection. Past it the connection is closed. Default 10 s.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a connection may stay silent (no byte read or written) at any point, a
    /// stalled body or a client that does not read its answer included; past it the
    /// connection is closed. Default 60 s. It also bounds a request whose service stays
    /// silent that long.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The most bytes buffered while reading a request's head (hyper's `max_buf_size`); a
    /// longer head is refused with 431. Default 64 KiB, at least 8 KiB.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes.max(MIN_HEADER_BYTES);
        self
    }

    /// At most this many connections at once; past it a new connection is accepted and closed
    /// at once, and the others go on being served. Default: [`MaxConnections::Derived`].
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = MaxConnections::Exactly(connections.max(1));
        self
    }

    /// Whether the soft open-files limit is raised at start. Default [`FdLimit::RaiseToHard`].
    pub fn fd_limit(mut self, fd_limit: FdLimit) -> Self {
        self.fd_limit = fd_limit;
        self
    }

    /// How long accepting pauses after an error such as `EMFILE` (too many open files) before
    /// trying again. Default 100 ms.
    pub fn accept_error_pause(mut self, pause: Duration) -> Self {
        self.accept_error_pause = pause;
        self
    }

    /// The header-read timeout.
    pub fn header_read_timeout_value(&self) -> Duration {
        self.header_read_timeout
    }

    /// The idle timeout.
    pub fn idle_timeout_value(&self) -> Duration {
        self.idle_timeout
    }

    /// The cap on a request head's bytes.
    pub fn max_header_bytes_value(&self) -> usize {
        self.max_header_bytes
    }

    /// The connection cap as configured.
    pub fn max_connections_value(&self) -> MaxConnections {
        self.max_connections
    }

    /// Whether the open-files limit is raised.
    pub fn fd_limit_value(&self) -> FdLimit {
        self.fd_limit
    }

    /// The pause after an accept error.
    pub fn accept_error_pause_value(&self) -> Duration {
        self.accept_error_pause
    }

    /// Applies [`FdLimit`] to the process and returns the connection cap to enforce.
    pub(super) fn apply_to_process(&self) -> usize {
        let soft = match self.fd_limit {
            FdLimit::RaiseToHard => fd_limit::raise_to_hard(),
            FdLimit::Keep => fd_limit::soft(),
        };
        match self.max_connections {
            MaxConnections::Exactly(n) => n,
            MaxConnections::Derived => fd_limit::derived_max_connections(soft),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_replace_the_defaults_and_keep_values_hyper_accepts() {
        let limits = ConnectionLimits::default();
        assert_eq!(limits.header_read_timeout_value(), Duration::from_secs(10));
        assert_eq!(limits.idle_timeout_value(), Duration::from_secs(60));
        assert_eq!(limits.max_header_bytes_value(), 64 * 1024);
        assert_eq!(limits.max_connections_value(), MaxConnections::Derived);
        assert_eq!(limits.fd_limit_value(), FdLimit::RaiseToHard);
        let set = limits
            .header_read_timeout(Duration::from_secs(3))
            .idle_timeout(Duration::from_secs(4))
            .max_header_bytes(100)
            .max_connections(0)
            .fd_limit(FdLimit::Keep);
        assert_eq!(set.header_read_timeout_value(), Duration::from_secs(3));
        assert_eq!(set.idle_timeout_value(), Duration::from_secs(4));
        assert_eq!(set.max_header_bytes_value(), MIN_HEADER_BYTES);
        assert_eq!(set.max_connections_value(), MaxConnections::Exactly(1));
        assert_eq!(set.apply_to_process(), 1);
    }
}
