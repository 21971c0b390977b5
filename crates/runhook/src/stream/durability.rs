//! What the Redis a stream lives on keeps of what it is given: read once at connect, and said
//! in the log when it can lose acknowledged deliveries (security review 2026-12-07, M2: a
//! restart without persistence lost 448 acknowledged deliveries with no error logged).

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::call::bounded;

/// Reads `appendonly` and `maxmemory-policy` and warns about each setting under which Redis
/// can drop entries answered 200: no AOF (a restart loses the stream), or an eviction policy
/// (memory pressure deletes keys: entries, claims). A Redis that refuses `CONFIG GET` (most
/// managed services) is only noted at debug level: their persistence is theirs to state.
pub(crate) async fn warn_if_it_can_lose_entries(
    conn: &ConnectionManager,
    timeout: Duration,
    stream: &str,
) {
    if setting(conn, timeout, "appendonly").await.as_deref() == Some("no") {
        tracing::warn!(stream, "Redis runs without AOF persistence (appendonly no): a restart loses every entry answered 200 and not yet processed; set appendonly yes");
    }
    let policy = setting(conn, timeout, "maxmemory-policy").await;
    if let Some(policy) = policy.filter(|p| p != "noeviction") {
        tracing::warn!(stream, %policy, "Redis may evict keys under memory pressure: entries answered 200 and claims can vanish; set maxmemory-policy noeviction");
    }
}

/// The value of Redis setting `name`, if Redis tells.
async fn setting(conn: &ConnectionManager, timeout: Duration, name: &str) -> Option<String> {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET").arg(name);
    let mut conn = conn.clone();
    match bounded(timeout, cmd.query_async::<Vec<String>>(&mut conn)).await {
        Ok(pair) => pair.into_iter().nth(1),
        Err(err) => {
            tracing::debug!(setting = name, error = %err, "could not read a Redis setting");
            None
        }
    }
}
