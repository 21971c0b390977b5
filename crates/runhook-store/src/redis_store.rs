//! The Redis store (feature `redis`): shared by every receiver process.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script};

use crate::{
    check_duration, check_key, Claim, Fingerprint, IdempotencyStore, KeyState, StoreError, Token,
};

mod stream;

pub use stream::{ClaimAppended, StreamAppend, StreamEntry};

/// Default key prefix.
const DEFAULT_PREFIX: &str = "runhook:idem:";
/// Default timeout of one call.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

// Stored values, all ASCII: a state letter, the holder's token (32 hex digits), the body's
// fingerprint (32 hex digits). In flight: `i<token><fp>`, done: `d<token><fp>`. The done record
// keeps the completing token so that a `complete` whose reply was lost can be confirmed.
const HELD_LEN: usize = 1 + Token::HEX_LEN;
const VALUE_LEN: usize = HELD_LEN + Fingerprint::HEX_LEN;

// KEYS[1]: key. ARGV[1]: `i<token>`. ARGV[2]: `d<token>`. ARGV[3]: done window in ms.
const COMPLETE_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2] .. string.sub(v, #ARGV[1] + 1), 'PX', ARGV[3])
  return 1
end
return 0
";

/// How often a claim whose reply was lost is tried to be released while Redis does not answer.
const LOST_CLAIM_RETRY: Duration = Duration::from_millis(250);

// KEYS[1]: key. ARGV[1]: `i<token>`.
const RELEASE_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

// KEYS[1]: key. ARGV[1]: `i<token>`. ARGV[2]: lease in ms.
const RENEW_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

// The claim's slow path, after a plain `SET NX` found the key taken: claim again or read the
// holder, atomically, so a key released in between cannot make the answer vanish.
// KEYS[1]: key. ARGV[1]: value. ARGV[2]: lease in ms. Nil when acquired, else {value, pttl}.
const CLAIM_OR_READ_LUA: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
";

// KEYS[1]: key. Value (or nil) and remaining time to live in ms, read atomically.
const READ_LUA: &str = r"
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
";

static COMPLETE: LazyLock<Script> = LazyLock::new(|| Script::new(COMPLETE_LUA));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW_LUA));
static CLAIM_OR_READ: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM_OR_READ_LUA));
static READ: LazyLock<Script> = LazyLock::new(|| Script::new(READ_LUA));

/// The Redis idempotency store: one record per key, shared by every receiver process.
///
/// # Commands
///
/// * claim: `SET <prefix><key> i<token><fingerprint> NX PX <lease>`; only when the key is
///   taken, a short script repeats the `SET NX` or else reads the value and remaining time
///   (`GET` + `PTTL`) in one atomic step, to say in flight or done, same body or not (a
///   separate `GET` could find the key just released and have nothing to report);
/// * complete, release, renew: a short Lua script that acts only if the stored value starts
///   with `i<token>` (compare-and-set), turning it into `d<token><fingerprint>` with the done
///   window, deleting it, or extending its lease.
///
/// Everything works on Redis 6 and 7 (no `SET … NX GET`, no functions).
///
/// # Failures
///
/// Every Redis call is bounded by [`RedisStoreBuilder::timeout`] and mapped to a typed
/// [`StoreError`] (`Unavailable` answers 503). A call that timed out or lost its connection
/// may still have been applied; the store then reads the record back (one more call, with the
/// same timeout) and decides from the token it finds: its own token means "acquired" or
/// "not yet applied, try once more", another state means the call lost. So a call returns
/// within about twice the timeout. Only if the read-back fails too is the outcome unknown, and
/// the error is `Unavailable`: an unconfirmed claim then simply lapses with its lease.
///
/// The default connection is a [`ConnectionManager`]: one multiplexed connection, reconnected
/// in the background after a failure.
///
/// # Running Redis for it
///
/// * Set `maxmemory-policy noeviction` (the default): every record has a TTL, so any
///   `volatile-*` or `allkeys-*` policy could evict an in-flight claim and let a second run
///   start. With `noeviction` a full Redis refuses the write and the claim fails with
///   `Unavailable` (503): the sender retries later, and no second run starts.
/// * Replication is asynchronous: a claim acknowledged by a primary that fails before
///   replicating it can be lost on failover, and a duplicate delivered right then could run
///   twice. `WAIT` is not used; the window is that of Redis itself.
///
/// # Redis Cluster
///
/// Every command and script touches exactly one key and names it in `KEYS`, so each call is
/// single-slot and a cluster routes it to the key's owner; no `{hash tag}` is needed for the
/// store's own sake. Give [`RedisStoreBuilder::with_connection`] a cluster connection (the
/// `redis` crate's `cluster-async` feature, `ClusterConnection`). Script loading on a node that
/// lacks the script is handled (`NOSCRIPT` → `SCRIPT LOAD` → retry). The crate's tests run
/// claims, renewals and completions on keys of different slots, and the 64-way claim race,
/// through a cluster connection to a one-node cluster started for the test (a multi-node
/// cluster, with `MOVED` redirections, is not tested).
///
/// # Example
///
/// ```no_run
/// # async fn demo() -> Result<(), runhook_store::StoreError> {
/// use std::time::Duration;
/// use runhook_store::RedisStore;
///
/// let store = RedisStore::builder()
///     .prefix("myapp:webhooks:")
///     .timeout(Duration::from_millis(500))
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore<C = ConnectionManager> {
    pub(crate) conn: C,
    prefix: String,
    pub(crate) expect_prefix: String,
    pub(crate) max_expectations: usize,
    timeout: Duration,
    max_key_len: usize,
}

/// Configures a [`RedisStore`]; start with [`RedisStore::builder`].
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    prefix: String,
    expect_prefix: Option<String>,
    max_expectations: usize,
    timeout: Duration,
    max_key_len: usize,
    reconnect_attempts: usize,
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        RedisStoreBuilder {
            prefix: DEFAULT_PREFIX.to_owned(),
            expect_prefix: None,
            max_expectations: crate::DEFAULT_MAX_EXPECTATIONS,
            timeout: DEFAULT_TIMEOUT,
            max_key_len: crate::DEFAULT_MAX_KEY_LEN,
            reconnect_attempts: 2,
        }
    }
}

impl RedisStoreBuilder {
    /// The prefix put before every key (default `runhook:idem:`). Use one per application
    /// sharing a Redis.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The prefix of the expectation keys (default: the claim prefix with a trailing
    /// `idem:` replaced by `expect:`, else with `expect:` appended: `runhook:expect:`).
    pub fn expectations_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.expect_prefix = Some(prefix.into());
        self
    }

    /// How many expected runs each scope (platform) may hold (default
    /// [`DEFAULT_MAX_EXPECTATIONS`](crate::DEFAULT_MAX_EXPECTATIONS), at least 1).
    pub fn max_expectations(mut self, max: usize) -> Self {
        self.max_expectations = max.max(1);
        self
    }

    /// The time one Redis call may take (default 1 s; at least 1 ms). Also the connection
    /// timeout of [`connect`](Self::connect).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The longest key accepted, in bytes, prefix not counted (default
    /// [`crate::DEFAULT_MAX_KEY_LEN`]).
    pub fn max_key_len(mut self, max_key_len: usize) -> Self {
        self.max_key_len = max_key_len.max(1);
        self
    }

    /// How many times the [`ConnectionManager`] retries a failed reconnection before the
    /// next call starts a new round (default 2). Calls never wait longer than the timeout.
    pub fn reconnect_attempts(mut self, attempts: usize) -> Self {
        self.reconnect_attempts = attempts;
        self
    }

    /// Connects to `url` (`redis://host:port/db`, `rediss://…` needs the `redis` crate's TLS
    /// features) with an auto-reconnecting [`ConnectionManager`].
    ///
    /// # Errors
    /// [`StoreError::InvalidConfig`] for a malformed URL, [`StoreError::Unavailable`] when no
    /// connection could be made within the timeout.
    pub async fn connect(self, url: &str) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::InvalidConfig {
            reason: format!("Redis URL: {e}"),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None)
            .set_number_of_retries(self.reconnect_attempts)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(
            self.timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| StoreError::Unavailable {
            reason: format!("no connection to Redis within {:?}", self.timeout),
        })?
        .map_err(|e| StoreError::Unavailable {
            reason: format!("connecting to Redis: {e}"),
        })?;
        Ok(self.with_connection(conn))
    }

    /// Uses a connection made elsewhere: a [`ConnectionManager`] with your own settings, a
    /// `MultiplexedConnection`, or a cluster connection. It must reconnect by itself if the
    /// store is to survive outages.
    pub fn with_connection<C>(self, conn: C) -> RedisStore<C>
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let expect_prefix =
            self.expect_prefix
                .unwrap_or_else(|| match self.prefix.strip_suffix("idem:") {
                    Some(base) => format!("{base}expect:"),
                    None => format!("{}expect:", self.prefix),
                });
        RedisStore {
            conn,
            expect_prefix,
            max_expectations: self.max_expectations,
            prefix: self.prefix,
            timeout: self.timeout,
            max_key_len: self.max_key_len,
        }
    }
}

impl RedisStore {
    /// Starts configuring a store.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::default()
    }

    /// Connects to `url` with the default settings (prefix `runhook:idem:`, 1 s timeout).
    ///
    /// # Errors
    /// As [`RedisStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        RedisStoreBuilder::default().connect(url).await
    }
}

impl<C> std::fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("max_key_len", &self.max_key_len)
            .finish_non_exhaustive()
    }
}

/// How a Redis call failed.
pub(crate) enum Failure {
    /// The command cannot have been applied (refused connection, error reply).
    Definite(StoreError),
    /// The command may have been applied: timeout or a connection lost after sending.
    Ambiguous(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Done,
}

/// A decoded record.
struct Stored {
    state: State,
    token: Token,
    fingerprint: Fingerprint,
    expires_in: Option<Duration>,
}

#[derive(Clone, Copy)]
enum Cas {
    Complete { keep_ms: u64 },
    Release,
    Renew { lease_ms: u64 },
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// The prefix put before every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The timeout of one Redis call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn full_key(&self, key: &str) -> Result<String, StoreError> {
        check_key(key, self.max_key_len)?;
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        Ok(k)
    }

    pub(crate) async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(Failure::Ambiguous(format!(
                "no reply from Redis within {:?}",
                self.timeout
            ))),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(e)),
        }
    }

    /// Reads a record and its remaining time to live, atomically. A failed read changed
    /// nothing, so any failure is definite.
    async fn read(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = READ.prepare_invoke();
        inv.key(key);
        let (value, pttl): (Option<Vec<u8>>, i64) =
            match self.call(inv.invoke_async(&mut conn)).await {
                Ok(v) => v,
                Err(Failure::Definite(e)) => return Err(e),
                Err(Failure::Ambiguous(reason)) => return Err(StoreError::Unavailable { reason }),
            };
        value.map(|v| decode_with_ttl(&v, pttl)).transpose()
    }

    /// After a claim's reply was lost: reads the record back. `None` when the key is absent
    /// (the claim was not applied).
    async fn resolve_claim(
        &self,
        key: &str,
        token: Token,
        fingerprint: Fingerprint,
        lease: Duration,
        reason: &str,
    ) -> Result<Option<Claim>, StoreError> {
        tracing::debug!(key, %reason, "claim may have been lost; reading the record back");
        let back = match self.read(key).await {
            Ok(back) => back,
            Err(e) => {
                self.release_lost_claim(key, token, lease);
                return Err(read_back_failed(reason, e));
            }
        };
        Ok(back.map(|s| {
            if s.state == State::InFlight && s.token == token {
                Claim::Acquired(token)
            } else {
                duplicate(&s, fingerprint)
            }
        }))
    }

    /// A claim whose reply was lost and could not be read back may still be applied later
    /// (Redis paused, then resumed with the command queued): it would hold the run for a
    /// whole `lease` with a token nobody has, and every retry of the delivery would find it
    /// in flight. It is released in the background with the token only this claim knew, as
    /// soon as Redis answers again, for at most `lease`. The release is a compare-and-set:
    /// it changes nothing when the claim was never applied or another holds the key.
    fn release_lost_claim(&self, key: &str, token: Token, lease: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (key, held) = (key.to_owned(), prefixed(b'i', &token));
        let (conn, timeout) = (self.conn.clone(), self.timeout);
        runtime.spawn(async move {
            let deadline = tokio::time::Instant::now() + lease;
            while tokio::time::Instant::now() < deadline {
                let mut conn = conn.clone();
                let mut inv = RELEASE.prepare_invoke();
                inv.key(&key).arg(&held[..]);
                let released = tokio::time::timeout(timeout, inv.invoke_async::<i64>(&mut conn));
                match released.await {
                    Ok(Ok(1)) => {
                        tracing::info!(key, "released a claim whose reply had been lost");
                        return;
                    }
                    Ok(Ok(_)) => return,
                    Ok(Err(_)) | Err(_) => {
                        tokio::time::sleep(LOST_CLAIM_RETRY).await;
                    }
                }
            }
        });
    }

    async fn cas(&self, key: &str, token: &Token, op: Cas) -> Result<(), StoreError> {
        let key = self.full_key(key)?;
        let held = prefixed(b'i', token);
        let done = prefixed(b'd', token);
        let mut last = String::new();
        // A second attempt only after a lost reply showed the record still ours, untouched.
        for _ in 0..2 {
            let mut conn = self.conn.clone();
            let inv = match op {
                Cas::Complete { keep_ms } => {
                    let mut inv = COMPLETE.prepare_invoke();
                    inv.key(&key).arg(&held[..]).arg(&done[..]).arg(keep_ms);
                    inv
                }
                Cas::Release => {
                    let mut inv = RELEASE.prepare_invoke();
                    inv.key(&key).arg(&held[..]);
                    inv
                }
                Cas::Renew { lease_ms } => {
                    let mut inv = RENEW.prepare_invoke();
                    inv.key(&key).arg(&held[..]).arg(lease_ms);
                    inv
                }
            };
            let reason = match self.call(inv.invoke_async::<i64>(&mut conn)).await {
                Ok(1) => return Ok(()),
                Ok(_) => return Err(StoreError::NotHolder),
                Err(Failure::Definite(e)) => return Err(e),
                Err(Failure::Ambiguous(reason)) => reason,
            };
            let back = self
                .read(&key)
                .await
                .map_err(|e| read_back_failed(&reason, e))?;
            tracing::debug!(key, %reason, "store call may have been lost; read back the record");
            match (op, back) {
                (_, Some(s)) if s.state == State::InFlight && s.token == *token => {
                    // Not applied (or, for renew, maybe applied): doing it again is safe.
                    last = reason;
                    continue;
                }
                (Cas::Complete { .. }, Some(s)) if s.state == State::Done && s.token == *token => {
                    return Ok(())
                }
                // Gone: our delete went through (or the lease lapsed); either way not held.
                (Cas::Release, None) => return Ok(()),
                _ => return Err(StoreError::NotHolder),
            }
        }
        Err(StoreError::Unavailable {
            reason: format!("{last}, twice"),
        })
    }
}

#[async_trait::async_trait]
impl<C> IdempotencyStore for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn is_shared(&self) -> bool {
        true
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        match self
            .call(redis::cmd("PING").query_async::<String>(&mut conn))
            .await
        {
            Ok(_) => Ok(()),
            Err(Failure::Definite(e)) => Err(e),
            Err(Failure::Ambiguous(reason)) => Err(StoreError::Unavailable { reason }),
        }
    }

    async fn state(&self, key: &str) -> Result<KeyState, StoreError> {
        let key = self.full_key(key)?;
        Ok(match self.read(&key).await? {
            None => KeyState::Absent,
            Some(stored) if stored.state == State::Done => KeyState::Done,
            Some(_) => KeyState::InFlight,
        })
    }

    fn expectations(&self) -> Option<&dyn crate::Expectations> {
        Some(self)
    }

    async fn claim(
        &self,
        key: &str,
        lease: Duration,
        fingerprint: Fingerprint,
    ) -> Result<Claim, StoreError> {
        let key = self.full_key(key)?;
        check_duration("lease", lease)?;
        let lease_ms = millis(lease);
        let token = Token::random();
        let value = held_value(token, fingerprint);

        let mut conn = self.conn.clone();
        let mut set = redis::cmd("SET");
        set.arg(&key)
            .arg(&value[..])
            .arg("NX")
            .arg("PX")
            .arg(lease_ms);
        match self
            .call(set.query_async::<Option<redis::Value>>(&mut conn))
            .await
        {
            Ok(Some(_)) => return Ok(Claim::Acquired(token)),
            Ok(None) => {}
            Err(Failure::Definite(e)) => return Err(e),
            Err(Failure::Ambiguous(reason)) => {
                if let Some(claim) = self
                    .resolve_claim(&key, token, fingerprint, lease, &reason)
                    .await?
                {
                    return Ok(claim);
                }
            }
        }
        // Taken (or, after a lost reply, found absent): claim again or read the holder.
        let mut inv = CLAIM_OR_READ.prepare_invoke();
        inv.key(&key).arg(&value[..]).arg(lease_ms);
        match self
            .call(inv.invoke_async::<Option<(Vec<u8>, i64)>>(&mut conn))
            .await
        {
            Ok(None) => Ok(Claim::Acquired(token)),
            Ok(Some((value, pttl))) => Ok(duplicate(&decode_with_ttl(&value, pttl)?, fingerprint)),
            Err(Failure::Definite(e)) => Err(e),
            Err(Failure::Ambiguous(reason)) => self
                .resolve_claim(&key, token, fingerprint, lease, &reason)
                .await?
                .ok_or(StoreError::Unavailable {
                    reason: format!("{reason}; the claim was not applied"),
                }),
        }
    }

    async fn complete(
        &self,
        key: &str,
        token: &Token,
        keep_for: Duration,
    ) -> Result<(), StoreError> {
        check_duration("keep_for", keep_for)?;
        let keep_ms = millis(keep_for);
        self.cas(key, token, Cas::Complete { keep_ms }).await
    }

    async fn release(&self, key: &str, token: &Token) -> Result<(), StoreError> {
        self.cas(key, token, Cas::Release).await
    }

    async fn renew(&self, key: &str, token: &Token, lease: Duration) -> Result<(), StoreError> {
        check_duration("lease", lease)?;
        let lease_ms = millis(lease);
        self.cas(key, token, Cas::Renew { lease_ms }).await
    }
}

fn duplicate(s: &Stored, fingerprint: Fingerprint) -> Claim {
    let same_payload = s.fingerprint == fingerprint;
    match s.state {
        State::InFlight => Claim::InFlight {
            same_payload,
            expires_in: s.expires_in,
        },
        State::Done => Claim::Done { same_payload },
    }
}

/// The record of a claim in flight: `i<token><fingerprint>`.
fn held_value(token: Token, fingerprint: Fingerprint) -> [u8; VALUE_LEN] {
    let mut value = [0u8; VALUE_LEN];
    value[..HELD_LEN].copy_from_slice(&prefixed(b'i', &token));
    value[HELD_LEN..].copy_from_slice(&fingerprint.hex());
    value
}

fn prefixed(state: u8, token: &Token) -> [u8; HELD_LEN] {
    let mut out = [0u8; HELD_LEN];
    out[0] = state;
    out[1..].copy_from_slice(&token.hex());
    out
}

fn decode_with_ttl(value: &[u8], pttl: i64) -> Result<Stored, StoreError> {
    let mut stored = decode(value)?;
    stored.expires_in = u64::try_from(pttl)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis);
    Ok(stored)
}

fn decode(value: &[u8]) -> Result<Stored, StoreError> {
    let corrupt = || StoreError::Corrupt {
        detail: format!(
            "{} bytes starting {:?}",
            value.len(),
            String::from_utf8_lossy(&value[..value.len().min(8)])
        ),
    };
    if value.len() != VALUE_LEN {
        return Err(corrupt());
    }
    let state = match value[0] {
        b'i' => State::InFlight,
        b'd' => State::Done,
        _ => return Err(corrupt()),
    };
    let text = std::str::from_utf8(&value[1..]).map_err(|_| corrupt())?;
    let token = text[..Token::HEX_LEN].parse().map_err(|_| corrupt())?;
    let fingerprint = text[Token::HEX_LEN..].parse().map_err(|_| corrupt())?;
    Ok(Stored {
        state,
        token,
        fingerprint,
        expires_in: None,
    })
}

/// Whole milliseconds, rounded up (durations are already checked to be within range).
fn millis(d: Duration) -> u64 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

fn classify(e: RedisError) -> Failure {
    if e.is_connection_refusal() {
        return Failure::Definite(StoreError::Unavailable {
            reason: format!("Redis refused the connection: {e}"),
        });
    }
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
        return Failure::Ambiguous(format!("Redis connection failed: {e}"));
    }
    match e.kind() {
        ErrorKind::UnexpectedReturnType | ErrorKind::Parse => {
            Failure::Definite(StoreError::Corrupt {
                detail: e.to_string(),
            })
        }
        _ if e.code() == Some("WRONGTYPE") => Failure::Definite(StoreError::Corrupt {
            detail: e.to_string(),
        }),
        _ => Failure::Definite(StoreError::Unavailable {
            reason: format!("Redis answered with an error: {e}"),
        }),
    }
}

fn read_back_failed(reason: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Unavailable { reason: r } => StoreError::Unavailable {
            reason: format!("{reason}; reading the record back failed too: {r}"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let t = Token::random();
        let fp = Fingerprint::of(b"x");
        let mut v = Vec::from(prefixed(b'd', &t));
        v.extend_from_slice(&fp.hex());
        let s = decode(&v).unwrap();
        assert!(s.state == State::Done && s.token == t && s.fingerprint == fp);
        assert!(matches!(decode(b"OK"), Err(StoreError::Corrupt { .. })));
        v[0] = b'x';
        assert!(matches!(decode(&v), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn millis_round_up() {
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::from_micros(1500)), 2);
    }
}
