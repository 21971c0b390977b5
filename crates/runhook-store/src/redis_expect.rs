//! The Redis store's expectations (feature `redis`), shared by every instance.
//!
//! Per scope, two keys with the same hash tag (one cluster slot): a sorted set
//! `<expect prefix>{<scope>}` of dedup keys scored by when each is next due (Unix ms), and a
//! hash `<expect prefix>{<scope>}:runs` of their records. Each operation is one short Lua
//! script, so a take hides what it hands out in the same step that reads it.
//!
//! An expectation is handled at least once: an expectation whose handling reply was lost is
//! seen again after its hold; the claim the reconciler takes makes the processing itself
//! exactly once.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use redis::aio::ConnectionLike;
use redis::Script;

use crate::expect::{unix_ms, Expectation, Expectations, Expected};
use crate::redis_store::{Failure, RedisStore};
use crate::StoreError;

// KEYS: set, hash. ARGV: key, record, due ms, capacity. 1 recorded, 0 already, -1 full.
const EXPECT_LUA: &str = r"
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[4]) then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
";

// KEYS: set, hash. ARGV: now ms, hidden-until ms, limit. Flat {key, record, ...}; members
// without a record (forgotten halfway) are dropped.
const TAKE_LUA: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, key in ipairs(due) do
  local record = redis.call('HGET', KEYS[2], key)
  if record then
    redis.call('ZADD', KEYS[1], ARGV[2], key)
    out[#out + 1] = key
    out[#out + 1] = record
  else
    redis.call('ZREM', KEYS[1], key)
  end
end
return out
";

// KEYS: set, hash. ARGV: key, record, due ms. Only while the record exists.
const RESCHEDULE_LUA: &str = r"
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
";

// KEYS: set, hash. ARGV: key.
const FORGET_LUA: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('HDEL', KEYS[2], ARGV[1])
";

static EXPECT: LazyLock<Script> = LazyLock::new(|| Script::new(EXPECT_LUA));
static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(TAKE_LUA));
static RESCHEDULE: LazyLock<Script> = LazyLock::new(|| Script::new(RESCHEDULE_LUA));
static FORGET: LazyLock<Script> = LazyLock::new(|| Script::new(FORGET_LUA));

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// The scope's sorted set and hash.
    fn expect_keys(&self, scope: &str) -> (String, String) {
        let set = format!("{}{{{scope}}}", self.expect_prefix);
        let hash = format!("{set}:runs");
        (set, hash)
    }

    async fn run_script<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        match self.call(invocation.invoke_async(&mut conn)).await {
            Ok(value) => Ok(value),
            Err(Failure::Definite(e)) => Err(e),
            Err(Failure::Ambiguous(reason)) => Err(StoreError::Unavailable { reason }),
        }
    }
}

#[async_trait::async_trait]
impl<C> Expectations for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn expect(&self, scope: &str, expectation: &Expectation) -> Result<Expected, StoreError> {
        let (set, hash) = self.expect_keys(scope);
        let mut inv = EXPECT.prepare_invoke();
        inv.key(&set)
            .key(&hash)
            .arg(&expectation.dedup_key)
            .arg(expectation.encode())
            .arg(unix_ms(expectation.first_due()))
            .arg(self.max_expectations);
        match self.run_script::<i64>(inv).await? {
            1 => Ok(Expected::Recorded),
            0 => Ok(Expected::AlreadyExpected),
            _ => Err(StoreError::Full {
                capacity: self.max_expectations,
                retry_after: Duration::from_secs(60),
            }),
        }
    }

    async fn take_due(
        &self,
        scope: &str,
        now: SystemTime,
        hold: Duration,
        limit: usize,
    ) -> Result<Vec<Expectation>, StoreError> {
        let (set, hash) = self.expect_keys(scope);
        let mut inv = TAKE.prepare_invoke();
        inv.key(&set)
            .key(&hash)
            .arg(unix_ms(now))
            .arg(unix_ms(now + hold))
            .arg(limit.max(1));
        let flat: Vec<String> = self.run_script(inv).await?;
        let mut taken = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            match Expectation::decode(&pair[0], &pair[1]) {
                Some(expectation) => taken.push(expectation),
                None => {
                    tracing::warn!(key = %pair[0], "unreadable expectation record; forgetting it");
                    self.forget(scope, &pair[0]).await?;
                }
            }
        }
        Ok(taken)
    }

    async fn reschedule(
        &self,
        scope: &str,
        expectation: &Expectation,
        next_check: SystemTime,
    ) -> Result<(), StoreError> {
        let (set, hash) = self.expect_keys(scope);
        let mut inv = RESCHEDULE.prepare_invoke();
        inv.key(&set)
            .key(&hash)
            .arg(&expectation.dedup_key)
            .arg(expectation.encode())
            .arg(unix_ms(next_check));
        self.run_script::<i64>(inv).await.map(drop)
    }

    async fn forget(&self, scope: &str, dedup_key: &str) -> Result<(), StoreError> {
        let (set, hash) = self.expect_keys(scope);
        let mut inv = FORGET.prepare_invoke();
        inv.key(&set).key(&hash).arg(dedup_key);
        self.run_script::<i64>(inv).await.map(drop)
    }

    async fn waiting(&self, scope: &str) -> Result<usize, StoreError> {
        let (_, hash) = self.expect_keys(scope);
        let mut conn = self.conn.clone();
        let mut hlen = redis::cmd("HLEN");
        hlen.arg(&hash);
        match self.call(hlen.query_async::<usize>(&mut conn)).await {
            Ok(n) => Ok(n),
            Err(Failure::Definite(e)) => Err(e),
            Err(Failure::Ambiguous(reason)) => Err(StoreError::Unavailable { reason }),
        }
    }
}
