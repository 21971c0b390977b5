//! Whether the service a URL names accepts connections: what the tests that need Redis or
//! PostgreSQL check before they start, so that they fail loudly rather than pass without it.

use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

/// Whether something accepts a TCP connection within a second at `url`'s host and port
/// (`default_port` when the URL names none).
pub(crate) fn answers(url: &str, default_port: u16) -> bool {
    host_port(url, default_port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

/// `host:port` of `url` (`scheme://[user[:password]@]host[:port][/path][?query]`).
fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
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
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "127.0.0.1:5432",
            ),
            ("postgres://app@db?sslmode=require", "db:6379"),
        ] {
            assert_eq!(host_port(url, 6379), expected, "{url}");
        }
    }
}
