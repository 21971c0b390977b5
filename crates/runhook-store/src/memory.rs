//! The embedded store: sharded, bounded, in-flight records pinned.

use std::collections::hash_map::{Entry, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use siphasher::sip128::SipHasher13;

mod clock;
mod done;

use crate::expect_memory::MemoryExpectations;
use crate::{
    check_duration, check_key, Claim, Expectations, Fingerprint, IdempotencyStore, KeyState,
    StoreError, Token,
};
use clock::Clock;
use done::DoneRecords;

/// Completed records kept by default.
const DEFAULT_CAPACITY: usize = 100_000;
/// In-flight claims allowed by default.
const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;
/// A shard is not made smaller than this many in-flight slots by the default shard count, so
/// that one unlucky shard does not refuse claims long before the store as a whole is full.
const MIN_IN_FLIGHT_PER_SHARD: usize = 256;

/// The embedded idempotency store: the default, for a single receiver process.
///
/// # Layout
///
/// The store is split into shards (a power of two), each behind its own mutex, so that
/// concurrent calls on different keys rarely wait for each other. Each shard keeps:
///
/// * in-flight claims in a plain hash map that nothing evicts: when a shard holds its share of
///   [`max_in_flight`](MemoryStoreBuilder::max_in_flight), lapsed leases are swept, and if none
///   has lapsed the claim fails with [`StoreError::Full`] (503). A second concurrent run is
///   never allowed to make room;
/// * completed records in an LRU cache of its share of
///   [`capacity`](MemoryStoreBuilder::capacity): when it is full the least recently seen done
///   records are forgotten (a very late duplicate of one would run again; size the capacity
///   for the dedup window). A large shard forgets up to 1/64 of its share at once, at most
///   16 records, so a full store holds at least 98 % of its capacity.
///
/// Keeping the two apart is how in-flight entries stay pinned: an LRU has no pinning, and
/// skipping pinned entries at eviction time would make a full cache's eviction cost grow with
/// the number of pinned entries. Leases and done windows expire lazily (checked when the key
/// is touched, and for leases also when a full shard is swept); memory stays bounded because
/// both maps are bounded, whatever the keys.
///
/// # Keys
///
/// A key is not stored: the store keeps its 128-bit digest, SipHash-1-3 with a 128-bit output
/// under a random key drawn when the store is built (the keyed hash std's `HashMap` relies on
/// against flooding, in its 128-bit form: one pass over the key). So every record has the same
/// small size whatever the key's length, nothing is allocated per key, and a sender cannot
/// choose keys that collide without knowing the secret hash key. Two distinct keys share a digest with probability about
/// n² / 2¹²⁹ for n records: about 10⁻²⁷ for a million. The digest also picks the shard.
///
/// # Memory
///
/// Measured with `examples/bytes_per_entry.rs` in this crate (resident memory grown by
/// filling a store, divided by its records; keys do not matter): a completed record costs
/// about 55 bytes while the store fills and 75 to 85 once records have been evicted (its
/// 48-byte entry in a recency ring that has room for half as many entries again, resident
/// once the ring has wrapped, and its 4-byte entry in a hash index reserved at build); an
/// in-flight claim costs 94 to 170 bytes depending on where its count falls between two table
/// sizes.
/// A flood of unique keys past capacity does not grow it. With the defaults (100 000 done,
/// 10 000 in flight) a full store stays under about 11 MB.
///
/// # Sharding caveat
///
/// Capacity is divided evenly among shards, so under very uneven luck one shard can be full
/// while the store as a whole is not. The default shard count keeps at least 256 in-flight
/// slots per shard; [`MemoryStoreBuilder::shards`] overrides it (1 gives exact global bounds).
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    /// The 128-bit SipHash of a key, under a secret key drawn at build.
    digest: SipHasher13,
    /// Deadlines are kept as nanoseconds on this clock.
    clock: Clock,
    max_key_len: usize,
    capacity: usize,
    max_in_flight: usize,
    expectations: MemoryExpectations,
}

/// Configures a [`MemoryStore`]; start with [`MemoryStore::builder`].
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    capacity: usize,
    max_in_flight: usize,
    shards: Option<usize>,
    max_key_len: usize,
    max_expectations: usize,
}

/// Counts of what a [`MemoryStore`] holds right now (lapsed records included until swept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MemoryStats {
    /// In-flight claims held.
    pub in_flight: usize,
    /// Completed records remembered.
    pub done: usize,
}

/// A key's 128-bit keyed digest (see [`MemoryStore`], "Keys").
type Digest = u128;

/// Nanoseconds since the store was built, on its [`Clock`] (enough for 584 years).
type Deadline = u64;

/// The digests are already uniformly random under a secret key, so the maps use their low
/// bits as the hash instead of hashing them again.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if something other than a `u128` is hashed; fold it in anyway.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, digest: u128) {
        self.0 = digest as u64;
    }
}

type DigestBuild = BuildHasherDefault<DigestHasher>;

struct Lease {
    token: Token,
    fingerprint: Fingerprint,
    expires: Deadline,
}

#[derive(Clone, Copy)]
struct Done {
    fingerprint: Fingerprint,
    expires: Deadline,
}

struct Shard {
    in_flight: HashMap<Digest, Lease, DigestBuild>,
    done: DoneRecords,
    max_in_flight: usize,
    /// No lease in `in_flight` expires before this (a lower bound; `None` when empty).
    /// Lets a full shard answer `Full` without scanning.
    earliest_expiry: Option<Deadline>,
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        MemoryStoreBuilder {
            capacity: DEFAULT_CAPACITY,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            shards: None,
            max_key_len: crate::DEFAULT_MAX_KEY_LEN,
            max_expectations: crate::DEFAULT_MAX_EXPECTATIONS,
        }
    }
}

impl MemoryStoreBuilder {
    /// How many completed records to remember (default 100 000, at least 1). The least
    /// recently seen is forgotten when full.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// How many claims may be in flight at once (default 10 000, at least 1). Beyond it,
    /// claims fail with [`StoreError::Full`].
    pub fn max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight.max(1);
        self
    }

    /// The number of shards, rounded up to a power of two (at least 1). The default is four
    /// per available CPU, at most 64, reduced until each shard has at least 256 in-flight
    /// slots.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards.max(1).next_power_of_two());
        self
    }

    /// The longest key accepted, in bytes (default [`crate::DEFAULT_MAX_KEY_LEN`]).
    pub fn max_key_len(mut self, max_key_len: usize) -> Self {
        self.max_key_len = max_key_len.max(1);
        self
    }

    /// How many expected runs each scope (platform) may hold (default
    /// [`DEFAULT_MAX_EXPECTATIONS`](crate::DEFAULT_MAX_EXPECTATIONS), at least 1); beyond it,
    /// [`Expectations::expect`] answers [`StoreError::Full`].
    pub fn max_expectations(mut self, max: usize) -> Self {
        self.max_expectations = max.max(1);
        self
    }

    /// Builds the store. The hash index of done records is reserved up front (resident only
    /// as it fills); records are allocated as they arrive.
    pub fn build(self) -> MemoryStore {
        let shards = self.shards.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
            let mut n = (cpus * 4).next_power_of_two().min(64);
            while n > 1 && self.max_in_flight / n < MIN_IN_FLIGHT_PER_SHARD {
                n /= 2;
            }
            n
        });
        let done_per_shard = self.capacity.div_ceil(shards);
        let in_flight_per_shard = self.max_in_flight.div_ceil(shards);
        let shards = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    in_flight: HashMap::default(),
                    done: DoneRecords::new(done_per_shard),
                    max_in_flight: in_flight_per_shard,
                    earliest_expiry: None,
                })
            })
            .collect();
        MemoryStore {
            shards,
            digest: SipHasher13::new_with_key(&rand::random()),
            clock: Clock::new(),
            max_key_len: self.max_key_len,
            capacity: self.capacity,
            max_in_flight: self.max_in_flight,
            expectations: MemoryExpectations::new(self.max_expectations),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .field("capacity", &self.capacity)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_key_len", &self.max_key_len)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// A store with the default bounds (100 000 done records, 10 000 in flight).
    pub fn new() -> Self {
        MemoryStoreBuilder::default().build()
    }

    /// Starts configuring a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// What the store holds right now, summed over shards.
    pub fn stats(&self) -> MemoryStats {
        self.shards.iter().fold(MemoryStats::default(), |acc, s| {
            let s = lock(s);
            MemoryStats {
                in_flight: acc.in_flight + s.in_flight.len(),
                done: acc.done + s.done.len(),
            }
        })
    }

    fn digest(&self, key: &str) -> Digest {
        self.digest.hash(key.as_bytes()).as_u128()
    }

    /// The shard of a digest: its top bits (the maps inside use the low bits).
    fn shard(&self, digest: Digest) -> MutexGuard<'_, Shard> {
        let i = (digest >> 96) as usize & (self.shards.len() - 1);
        lock(&self.shards[i])
    }

    fn now(&self) -> Deadline {
        self.clock.now()
    }

    fn claim_now(
        &self,
        key: &str,
        lease: Duration,
        fingerprint: Fingerprint,
    ) -> Result<Claim, StoreError> {
        check_key(key, self.max_key_len)?;
        check_duration("lease", lease)?;
        let key = self.digest(key);
        let now = self.now();
        let expires = self.clock.deadline(now, lease);
        let mut shard = self.shard(key);
        let shard = &mut *shard;

        if let Some(done) = shard.done.get_live(key, now) {
            return Ok(Claim::Done {
                same_payload: done.fingerprint == fingerprint,
            });
        }

        if let Some(held) = shard.in_flight.get_mut(&key) {
            if held.expires > now {
                return Ok(Claim::InFlight {
                    same_payload: held.fingerprint == fingerprint,
                    expires_in: Some(self.clock.remaining(now, held.expires)),
                });
            }
            // The lease lapsed: the key is claimable again; reuse the entry.
            let token = Token::random();
            *held = Lease {
                token,
                fingerprint,
                expires,
            };
            shard.note_expiry(expires);
            return Ok(Claim::Acquired(token));
        }

        if shard.in_flight.len() >= shard.max_in_flight {
            shard.sweep(now);
            if shard.in_flight.len() >= shard.max_in_flight {
                let wait = shard.earliest_expiry.map_or(Duration::ZERO, |e| {
                    Duration::from_nanos(e.saturating_sub(now))
                });
                return Err(StoreError::Full {
                    capacity: self.max_in_flight,
                    retry_after: round_up_to_second(wait),
                });
            }
        }

        let token = Token::random();
        shard.in_flight.insert(
            key,
            Lease {
                token,
                fingerprint,
                expires,
            },
        );
        shard.note_expiry(expires);
        Ok(Claim::Acquired(token))
    }

    fn complete_now(&self, key: &str, token: &Token, keep_for: Duration) -> Result<(), StoreError> {
        check_key(key, self.max_key_len)?;
        check_duration("keep_for", keep_for)?;
        let key = self.digest(key);
        let now = self.now();
        let mut shard = self.shard(key);
        let lease = shard.take_held(key, token, now)?;
        // At capacity this evicts the least recently seen done record.
        shard.done.push(
            key,
            Done {
                fingerprint: lease.fingerprint,
                expires: self.clock.deadline(now, keep_for),
            },
        );
        Ok(())
    }

    fn release_now(&self, key: &str, token: &Token) -> Result<(), StoreError> {
        check_key(key, self.max_key_len)?;
        let key = self.digest(key);
        let now = self.now();
        self.shard(key).take_held(key, token, now).map(drop)
    }

    fn state_now(&self, key: &str) -> Result<KeyState, StoreError> {
        check_key(key, self.max_key_len)?;
        let key = self.digest(key);
        let now = self.now();
        let mut shard = self.shard(key);
        if shard.done.get_live(key, now).is_some() {
            return Ok(KeyState::Done);
        }
        Ok(match shard.in_flight.get(&key) {
            Some(held) if held.expires > now => KeyState::InFlight,
            _ => KeyState::Absent,
        })
    }

    fn renew_now(&self, key: &str, token: &Token, lease: Duration) -> Result<(), StoreError> {
        check_key(key, self.max_key_len)?;
        check_duration("lease", lease)?;
        let key = self.digest(key);
        let now = self.now();
        let mut shard = self.shard(key);
        match shard.in_flight.get_mut(&key) {
            Some(held) if held.token == *token && held.expires > now => {
                // Extending a lease keeps `earliest_expiry` a valid lower bound.
                held.expires = self.clock.deadline(now, lease);
                Ok(())
            }
            _ => Err(StoreError::NotHolder),
        }
    }
}

impl Shard {
    /// Removes and returns the in-flight record if `token` holds it with a live lease.
    fn take_held(
        &mut self,
        key: Digest,
        token: &Token,
        now: Deadline,
    ) -> Result<Lease, StoreError> {
        match self.in_flight.entry(key) {
            Entry::Occupied(held) if held.get().token == *token && held.get().expires > now => {
                Ok(held.remove())
            }
            _ => Err(StoreError::NotHolder),
        }
    }

    fn note_expiry(&mut self, expires: Deadline) {
        self.earliest_expiry = Some(match self.earliest_expiry {
            Some(e) if e <= expires => e,
            _ => expires,
        });
    }

    /// Drops lapsed leases, if any can have lapsed, and recomputes the earliest expiry.
    fn sweep(&mut self, now: Deadline) {
        if self.earliest_expiry.is_some_and(|e| e > now) {
            return;
        }
        self.in_flight.retain(|_, lease| lease.expires > now);
        self.earliest_expiry = self.in_flight.values().map(|l| l.expires).min();
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // No code path panics while holding the lock with the maps half-updated; a poisoned
    // lock can only come from a panic outside our updates, so its data is still consistent.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn round_up_to_second(d: Duration) -> Duration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

#[async_trait::async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim(
        &self,
        key: &str,
        lease: Duration,
        fingerprint: Fingerprint,
    ) -> Result<Claim, StoreError> {
        self.claim_now(key, lease, fingerprint)
    }

    async fn complete(
        &self,
        key: &str,
        token: &Token,
        keep_for: Duration,
    ) -> Result<(), StoreError> {
        self.complete_now(key, token, keep_for)
    }

    async fn release(&self, key: &str, token: &Token) -> Result<(), StoreError> {
        self.release_now(key, token)
    }

    async fn renew(&self, key: &str, token: &Token, lease: Duration) -> Result<(), StoreError> {
        self.renew_now(key, token, lease)
    }

    async fn state(&self, key: &str) -> Result<KeyState, StoreError> {
        self.state_now(key)
    }

    fn expectations(&self) -> Option<&dyn Expectations> {
        Some(&self.expectations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(60);

    fn fp(s: &str) -> Fingerprint {
        Fingerprint::of(s.as_bytes())
    }

    #[test]
    fn default_shards_keep_enough_in_flight_slots_each() {
        let store = MemoryStore::builder().max_in_flight(300).build();
        assert_eq!(store.shard_count(), 1);
        let store = MemoryStore::builder().shards(5).build();
        assert_eq!(store.shard_count(), 8);
    }

    #[test]
    fn full_shard_refuses_and_sweeps_lapsed_leases() {
        let store = MemoryStore::builder().max_in_flight(2).shards(1).build();
        let short = Duration::from_millis(30);
        assert!(store.claim_now("a", short, fp("a")).unwrap().is_acquired());
        assert!(store.claim_now("b", short, fp("b")).unwrap().is_acquired());
        let err = store.claim_now("c", LEASE, fp("c")).unwrap_err();
        assert!(
            matches!(err, StoreError::Full { capacity: 2, .. }),
            "{err:?}"
        );
        std::thread::sleep(Duration::from_millis(40));
        // Both leases lapsed: the sweep frees their slots.
        assert!(store.claim_now("c", LEASE, fp("c")).unwrap().is_acquired());
        assert_eq!(store.stats().in_flight, 1);
    }

    #[test]
    fn earliest_expiry_is_recomputed_after_a_sweep() {
        let store = MemoryStore::builder().max_in_flight(2).shards(1).build();
        assert!(store
            .claim_now("a", Duration::from_millis(20), fp("a"))
            .unwrap()
            .is_acquired());
        assert!(store.claim_now("b", LEASE, fp("b")).unwrap().is_acquired());
        std::thread::sleep(Duration::from_millis(30));
        assert!(store.claim_now("c", LEASE, fp("c")).unwrap().is_acquired());
        // Full again, and nothing lapses for a minute: the hint says so.
        match store.claim_now("d", LEASE, fp("d")) {
            Err(StoreError::Full { retry_after, .. }) => {
                assert!(retry_after >= Duration::from_secs(59), "{retry_after:?}")
            }
            other => panic!("expected Full, got {other:?}"),
        }
    }
}
