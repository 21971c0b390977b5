//! What the hand-off tests share beyond the workspace's test kit (unique names and the Redis
//! check come from `runhook_testkit`): signed Skyvern deliveries and waiting for a condition.
//! Also included by `tests/stream.rs`.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use runhook::store::Fingerprint;
use runhook::verify::sign_skyvern;
use runhook::Secret;
pub use runhook_testkit::{redis_url, require_redis, unique};

/// The Skyvern signing key of the tests' receivers.
pub const KEY: &str = "sk_test_handoff";

/// A Skyvern run-completed body for `run`.
pub fn body(run: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"run_id":"{run}","task_id":"{run}","status":"completed","output":{{"n":1}},"failure_reason":null}}"#
    ))
}

/// A delivery of `run`, signed with [`KEY`].
pub fn signed(run: &str) -> (HeaderMap, Bytes) {
    let body = body(run);
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-skyvern-signature",
        sign_skyvern(&Secret::new(KEY).unwrap(), &body)
            .parse()
            .unwrap(),
    );
    (headers, body)
}

/// The dedup key of Skyvern's `run`.
pub fn dedup_key(run: &str) -> String {
    format!("skyvern:{run}")
}

/// The fingerprint of `run`'s body.
pub fn fp(run: &str) -> Fingerprint {
    Fingerprint::of(&body(run))
}

/// Waits until `check` holds, failing the test with `what` after `within`.
pub async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One test's keys in Redis, all under one unique prefix, and a raw connection to look at
/// them.
#[cfg(feature = "redis")]
pub struct Keys {
    pub prefix: String,
    raw: redis::aio::MultiplexedConnection,
}

#[cfg(feature = "redis")]
impl Keys {
    /// A fresh prefix for `test` (failing the test when Redis is missing).
    pub async fn new(test: &str) -> Self {
        require_redis();
        let raw = redis::Client::open(redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        Self {
            prefix: format!("runhook-test-{}:", unique(test)),
            raw,
        }
    }

    /// A Redis store under this prefix.
    pub async fn store(&self) -> runhook::store::RedisStore {
        runhook::store::RedisStore::builder()
            .prefix(format!("{}idem:", self.prefix))
            .connect(&redis_url())
            .await
            .unwrap()
    }

    pub async fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let mut raw = self.raw.clone();
        cmd.query_async(&mut raw).await.unwrap()
    }

    pub async fn xlen(&self, key: &str) -> usize {
        self.cmd(redis::cmd("XLEN").arg(key)).await
    }

    /// How many entries of `stream` the group `runhook` holds pending.
    pub async fn pending(&self, stream: &str) -> usize {
        let reply: redis::streams::StreamPendingReply = self
            .cmd(redis::cmd("XPENDING").arg(stream).arg("runhook"))
            .await;
        reply.count()
    }

    /// Deletes every key under the prefix.
    pub async fn cleanup(&self) {
        let keys: Vec<String> = self
            .cmd(redis::cmd("KEYS").arg(format!("{}*", self.prefix)))
            .await;
        if !keys.is_empty() {
            let _: () = self.cmd(redis::cmd("DEL").arg(keys)).await;
        }
    }
}
