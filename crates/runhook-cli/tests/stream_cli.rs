//! Issue #9 end to end: two `runhook serve --queue redis-stream` processes sharing one Redis,
//! killed and restarted mid-burst ([`common::failover`]). Once with a 2 s lease (fast), once
//! with the defaults (30 s lease, take-over after ~33 s idle): that one also measures the
//! failover time.
//!
//! Needs Redis on 127.0.0.1:6379 (fails without).

use std::collections::HashSet;
use std::time::Duration;

mod common;
use common::failover::{kill_9_scenario, Queue};
use common::{delete_matching, redis, redis_url, require_redis, unique, xlen};

const GROUP: &str = "runhook";

/// A route's stream, `runhook:stream:<path>`, on the Redis the tests share.
struct Stream {
    key: String,
}

impl Queue for Stream {
    fn args(&self) -> Vec<String> {
        ["--store", &redis_url(), "--queue", "redis-stream"]
            .map(String::from)
            .to_vec()
    }

    fn read_batch(&self) -> usize {
        16
    }

    /// The run ids of the entries `consumer` had read and not acknowledged.
    async fn in_hands(&self, consumer: &str) -> HashSet<String> {
        let mut conn = redis().await;
        let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(&self.key)
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(10_000)
            .arg(consumer)
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut runs = HashSet::new();
        for (id, ..) in pending {
            let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
                .arg(&self.key)
                .arg(&id)
                .arg(&id)
                .query_async(&mut conn)
                .await
                .unwrap();
            for (_, fields) in entries {
                for pair in fields.chunks(2) {
                    if pair[0] == b"key" {
                        let key = String::from_utf8(pair[1].clone()).unwrap();
                        runs.insert(key.trim_start_matches("skyvern:").to_string());
                    }
                }
            }
        }
        runs
    }

    async fn backlog(&self) -> usize {
        xlen(&mut redis().await, &self.key).await
    }
}

async fn scenario(lease_secs: Option<&str>) -> Duration {
    require_redis();
    let tag = unique("e2e");
    let path = format!("/webhooks/{tag}/skyvern");
    let stream = Stream {
        key: format!("runhook:stream:{path}"),
    };
    let failover = kill_9_scenario(&stream, &tag, &path, lease_secs, Duration::from_secs(60)).await;
    // The stream and this test's claim records (kept 7 days by default).
    let mut conn = redis().await;
    let _: () = redis::cmd("DEL")
        .arg(&[stream.key.clone(), format!("{}:dead", stream.key)][..])
        .query_async(&mut conn)
        .await
        .unwrap();
    delete_matching(&mut conn, &format!("runhook:idem:skyvern:{tag}_*")).await;
    failover
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_one_of_two_instances_loses_nothing() {
    scenario(Some("2")).await;
}

/// The defaults (no `--lease-secs`): the killed instance's entries wait for the 30 s lease plus
/// 10% before another instance takes them over; every acknowledged run is processed within
/// 60 s of the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_with_default_lease_fails_over_within_a_minute() {
    let failover = scenario(None).await;
    eprintln!("failover (restart to last acknowledged run processed): {failover:.2?}");
}
