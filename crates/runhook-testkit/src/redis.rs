//! The Redis the tests share: where it is, a check that fails the test loudly without it, and
//! a connection to it.

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
    assert!(
        crate::listening::answers(&url, 6379),
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
