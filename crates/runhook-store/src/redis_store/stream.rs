//! The Redis stream hand-off's steps that touch a claim and the stream at once, each one
//! script (one round trip, applied whole or not at all): a delivery's claim with its entry,
//! and a processed run's done mark with its entry's removal. The claim key and the stream must
//! live on one Redis (in a cluster, in one slot).

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::Script;

use super::{decode_with_ttl, duplicate, held_value, millis, prefixed, Failure, RedisStore};
use crate::{check_duration, Claim, Fingerprint, StoreError, Token};

/// KEYS[1]: the claim. KEYS[2]: the stream. ARGV[1]: the claim's value, ARGV[2]: its lease in
/// ms, ARGV[3]: the stream's capacity, ARGV[4..]: the entry's fields and values. `{1}` when the
/// run was claimed and its entry appended; `{2, value, pttl}` when the run is taken (nothing
/// written); `{3}` when the stream holds its capacity (nothing written).
const CLAIM_AND_APPEND_LUA: &str = r"
local held = redis.call('GET', KEYS[1])
if held then return {2, held, redis.call('PTTL', KEYS[1])} end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[3]) then return {3} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
return {1}
";

/// KEYS[1]: the claim. KEYS[2]: the stream. ARGV[1]: `i<token>`, ARGV[2]: `d<token>`, ARGV[3]:
/// the done window in ms, ARGV[4]: the consumer group, ARGV[5]: the entry's id. As the store's
/// complete, and when it applies (or applied before: the record is done with this token), the
/// entry acknowledged and deleted. 1 when applied.
const COMPLETE_AND_REMOVE_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local head = string.sub(v, 1, #ARGV[1])
if head == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2] .. string.sub(v, #ARGV[1] + 1), 'PX', ARGV[3])
elseif head ~= ARGV[2] then
  return 0
end
redis.call('XACK', KEYS[2], ARGV[4], ARGV[5])
redis.call('XDEL', KEYS[2], ARGV[5])
return 1
";

/// KEYS: claim keys. ARGV[1]: the lease in ms; ARGV[1 + i]: `i<token>` for KEYS[i]. Renews
/// each claim still held with its token; 1 for each renewed, 0 for the others.
const RENEW_MANY_LUA: &str = r"
local renewed = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v and string.sub(v, 1, #ARGV[i + 1]) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    renewed[i] = 1
  else
    renewed[i] = 0
  end
end
return renewed
";

static RENEW_MANY: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW_MANY_LUA));
static CLAIM_AND_APPEND: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM_AND_APPEND_LUA));
static COMPLETE_AND_REMOVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(COMPLETE_AND_REMOVE_LUA));

/// The stream entry [`RedisStore::claim_and_append`] writes when it wins the claim.
#[derive(Debug, Clone, Copy)]
pub struct StreamAppend<'a> {
    /// The stream's key, on the store's Redis.
    pub stream: &'a str,
    /// Nothing is written while the stream holds this many entries.
    pub capacity: u64,
    /// The entry's fields and values, in order (the claim's token among them, as the caller's
    /// readers expect it).
    pub fields: &'a [(&'a str, &'a [u8])],
}

/// What [`RedisStore::claim_and_append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimAppended {
    /// The run was claimed with the caller's token and its entry appended, together.
    Appended,
    /// Nothing was written: the run is done, or another delivery holds it
    /// ([`Claim::Done`] or [`Claim::InFlight`], never [`Claim::Acquired`]).
    Taken(Claim),
    /// Nothing was written: the stream holds its capacity.
    Full,
}

/// Where a stream entry is, for [`RedisStore::complete_and_remove`].
#[derive(Debug, Clone, Copy)]
pub struct StreamEntry<'a> {
    /// The stream's key, on the store's Redis.
    pub stream: &'a str,
    /// The consumer group that read it.
    pub group: &'a str,
    /// The entry's id.
    pub id: &'a str,
}

/// An integer reply's value.
fn int(value: &redis::Value) -> Option<i64> {
    redis::from_redis_value(value.clone()).ok()
}

/// A reply of the claim-and-append script that it never gives.
fn corrupt(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        detail: format!("unexpected reply to the claim-and-append script: {detail}"),
    }
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Claims `key` with `token` for `lease` and, when the claim is won, appends `entry` to its
    /// stream **in the same script**: the claim and the entry are written together, or neither
    /// is. A run already done or in flight, or a stream at its capacity, writes nothing.
    ///
    /// When the reply is lost (a timeout, a connection lost after sending), the claim is read
    /// back: held with `token`, the entry was appended with it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Redis fails and the outcome cannot be read back, and
    /// the validation errors for a bad key or duration.
    pub async fn claim_and_append(
        &self,
        key: &str,
        token: Token,
        lease: Duration,
        fingerprint: Fingerprint,
        entry: &StreamAppend<'_>,
    ) -> Result<ClaimAppended, StoreError> {
        let key = self.full_key(key)?;
        check_duration("lease", lease)?;
        let value = held_value(token, fingerprint);
        let mut inv = CLAIM_AND_APPEND.prepare_invoke();
        inv.key(&key)
            .key(entry.stream)
            .arg(&value[..])
            .arg(millis(lease))
            .arg(entry.capacity);
        for (field, value) in entry.fields {
            inv.arg(*field).arg(*value);
        }
        let mut conn = self.conn.clone();
        let reply = self
            .call(inv.invoke_async::<Vec<redis::Value>>(&mut conn))
            .await;
        match reply {
            Ok(reply) => match &reply[..] {
                [code] if int(code) == Some(1) => Ok(ClaimAppended::Appended),
                [code] if int(code) == Some(3) => Ok(ClaimAppended::Full),
                [code, value, pttl] if int(code) == Some(2) => {
                    let value: Vec<u8> = redis::from_redis_value(value.clone()).map_err(corrupt)?;
                    let pttl = int(pttl).unwrap_or(-1);
                    let held = decode_with_ttl(&value, pttl)?;
                    Ok(ClaimAppended::Taken(duplicate(&held, fingerprint)))
                }
                other => Err(corrupt(format!("{other:?}"))),
            },
            Err(Failure::Definite(e)) => Err(e),
            Err(Failure::Ambiguous(reason)) => {
                match self
                    .resolve_claim(&key, token, fingerprint, lease, &reason)
                    .await?
                {
                    Some(Claim::Acquired(_)) => Ok(ClaimAppended::Appended),
                    Some(taken) => Ok(ClaimAppended::Taken(taken)),
                    None => Err(StoreError::Unavailable {
                        reason: format!("{reason}; the claim was not applied"),
                    }),
                }
            }
        }
    }

    /// [`renew`](crate::IdempotencyStore::renew) for many claims in one script: for each
    /// `(key, token)`, whether its claim was still held with `token` (and is renewed for
    /// `lease`). The stream's reader renews the claims its read carries at once, so that its
    /// workers need not renew them one by one. Every key must live on the store's Redis (in a
    /// cluster, in one slot).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Redis fails (nothing is known renewed), and the
    /// validation errors for a bad key or duration.
    pub async fn renew_many(
        &self,
        claims: &[(&str, Token)],
        lease: Duration,
    ) -> Result<Vec<bool>, StoreError> {
        check_duration("lease", lease)?;
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = RENEW_MANY.prepare_invoke();
        inv.arg(millis(lease));
        for (key, token) in claims {
            inv.key(self.full_key(key)?).arg(&prefixed(b'i', token)[..]);
        }
        let mut conn = self.conn.clone();
        match self.call(inv.invoke_async::<Vec<i64>>(&mut conn)).await {
            Ok(renewed) if renewed.len() == claims.len() => {
                Ok(renewed.into_iter().map(|r| r == 1).collect())
            }
            Ok(other) => Err(StoreError::Corrupt {
                detail: format!("{} answers to {} renewals", other.len(), claims.len()),
            }),
            Err(Failure::Definite(e)) => Err(e),
            Err(Failure::Ambiguous(reason)) => Err(StoreError::Unavailable { reason }),
        }
    }

    /// [`complete`](crate::IdempotencyStore::complete), and when it applies, the stream
    /// `entry` acknowledged (`XACK`) and deleted (`XDEL`) **in the same script**: a processed
    /// run's entry is gone exactly when its run is recorded done.
    ///
    /// Idempotent: called again after a lost reply, it finds the record done with `token`
    /// and removes the entry again.
    ///
    /// # Errors
    /// As `complete`: [`StoreError::NotHolder`] when the claim is not `token`'s (the entry is
    /// kept).
    pub async fn complete_and_remove(
        &self,
        key: &str,
        token: &Token,
        keep_for: Duration,
        entry: &StreamEntry<'_>,
    ) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        check_duration("keep_for", keep_for)?;
        let mut inv = COMPLETE_AND_REMOVE.prepare_invoke();
        inv.key(&full)
            .key(entry.stream)
            .arg(&prefixed(b'i', token)[..])
            .arg(&prefixed(b'd', token)[..])
            .arg(millis(keep_for))
            .arg(entry.group)
            .arg(entry.id);
        let mut conn = self.conn.clone();
        match self.call(inv.invoke_async::<i64>(&mut conn)).await {
            Ok(1) => Ok(()),
            Ok(_) => Err(StoreError::NotHolder),
            Err(Failure::Definite(e)) => Err(e),
            // Lost reply: calling again is safe (a record done with this token counts as
            // applied).
            Err(Failure::Ambiguous(reason)) => Err(StoreError::Unavailable { reason }),
        }
    }
}
