//! The Redis the tests share: where it is, a check that fails the test loudly without it, and
//! a connection to it.

use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

/// The Redis the tests use unless `REDIS_URL` names another.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// How to start the Redis the tests need.
pub const HOW_TO_START: &str =
    "redis-server --daemonize yes --port 6379 --save \"\" --appendonly no";

/// `REDIS_URL` if set, else [`DEFAULT_URL`].
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Panics, saying how to start one, unless the Redis at [`redis_url`] accepts a connection
/// within a second: a test that needs Redis never passes without it.
pub fn require_redis() {
    let url = redis_url();
    let up = host_port(&url)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
    assert!(
        up,
        "this test needs Redis at {url} and nothing answers there; start one with\n  \
         {HOW_TO_START}\n(or set REDIS_URL)"
    );
}

/// An async connection to the Redis at [`redis_url`] (after [`require_redis`]).
pub async fn connection() -> ::redis::aio::MultiplexedConnection {
    require_redis();
    ::redis::Client::open(redis_url())
        .expect("a valid REDIS_URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a connection to Redis")
}

/// `host:port` of a `redis://[user[:password]@]host[:port][/db]` URL (port 6379 if absent).
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        host.to_owned()
    } else {
        format!("{host}:6379")
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn host_port_of_a_url() {
        for (url, expected) in [
            ("redis://127.0.0.1:6379", "127.0.0.1:6379"),
            ("redis://localhost", "localhost:6379"),
            ("redis://user:pw@db.local:7000/2", "db.local:7000"),
        ] {
            assert_eq!(host_port(url), expected, "{url}");
        }
    }
}
