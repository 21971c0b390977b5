//! The embedded store: sharded, bounded, in-flight records pinned.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use siphasher::sip128::{Hasher128 as _, SipHasher13};

use crate::expect_memory::MemoryExpectations;
use crate::{
    check_duration, check_key, Claim, Expectations, Fingerprint, IdempotencyStore, KeyState,
    StoreError, Token,
};

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
///   record is forgotten (a very late duplicate of it would run again; size the capacity for
///   the dedup window).
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
/// about 90 to 100 bytes (its 64-byte slot, its 8-byte entry in a hash index reserved at
/// build, at a load near one half since tables grow by doubling, and its 16-byte place in the
/// recency queue, up to twice that when records are seen again); an in-flight claim costs 94
/// to 170 bytes depending on where its count falls between two table sizes.
/// A flood of unique keys past capacity does not grow it. With the defaults (100 000 done,
/// 10 000 in flight) a full store stays under about 20 MB.
///
/// # Sharding caveat
///
/// Capacity is divided evenly among shards, so under very uneven luck one shard can be full
/// while the store as a whole is not. The default shard count keeps at least 256 in-flight
/// slots per shard; [`MemoryStoreBuilder::shards`] overrides it (1 gives exact global bounds).
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    /// The secret key of the 128-bit SipHash digest of a key.
    digest: [u8; 16],
    /// Deadlines are kept as nanoseconds since this instant.
    base: Instant,
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

/// Nanoseconds since the store's `base` instant (enough for 584 years).
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
            digest: rand::random(),
            base: Instant::now(),
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
        let mut hasher = SipHasher13::new_with_key(&self.digest);
        hasher.write(key.as_bytes());
        hasher.finish128().as_u128()
    }

    /// The shard of a digest: its top bits (the maps inside use the low bits).
    fn shard(&self, digest: Digest) -> MutexGuard<'_, Shard> {
        let i = (digest >> 96) as usize & (self.shards.len() - 1);
        lock(&self.shards[i])
    }

    fn now(&self) -> Deadline {
        nanos(self.base.elapsed())
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
        let expires = now + nanos(lease);
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
                    expires_in: Some(Duration::from_nanos(held.expires - now)),
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
                expires: now + nanos(keep_for),
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
                held.expires = now + nanos(lease);
                Ok(())
            }
            _ => Err(StoreError::NotHolder),
        }
    }
}

/// The completed records of a shard: bounded to `capacity` records, forgetting the least
/// recently seen first (an exact LRU cache).
///
/// Laid out for a large store whose records do not fit in the CPU caches, where a full
/// shard's every `push` evicts one record:
///
/// * the records live in `slots`, a slab of 64-byte slots (one cache line each: digest,
///   fingerprint, expiry, stamp), and an evicted record's slot takes the new record, so
///   evicting and inserting touch one cold line, the one that eviction reads anyway;
/// * `index`, a `hashbrown` table of 8-byte entries (slot number and 32 bits of the digest),
///   finds a digest's slot. At 8 bytes an entry the tables of a 100 000-record store stay
///   in the L2 cache, and a lookup reads a slot only when the 32 bits match, so a claim of a
///   new key (the common case) reads no slot at all;
/// * the recency order is a queue of `(stamp, slot)` entries, oldest first; a record's
///   `stamp` names its one live entry. Seeing a record again appends a new entry and leaves
///   the old one dead (as does removing a lapsed record), and the queue is compacted when it
///   reaches twice the capacity, so it stays bounded and costs O(1) amortized per call.
///   Evicting reads the queue front to back, sequential memory.
///
/// Written here rather than taken from `lru`: a linked LRU list touches the evicted node, its
/// neighbour and the map's node, all cold in a large store, and allocates per record
/// (measured: the store's claim+complete twice as fast at 100 000 records with a queue of
/// keys beside a map of records, and this slab and index 1.2 times as fast again).
struct DoneRecords {
    index: HashTable<IndexEntry>,
    slots: Vec<Slot>,
    /// Slots of lapsed records, free for new ones (a full shard reuses evicted slots instead).
    free: Vec<u32>,
    order: VecDeque<QueueEntry>,
    capacity: usize,
    next_stamp: u64,
}

/// One record's place in the index.
#[derive(Clone, Copy)]
struct IndexEntry {
    slot: u32,
    /// The digest's low 32 bits, from which the table's hash is derived (so the table can
    /// rehash without reading slots) and checked before a slot is read.
    tag: u32,
}

/// One completed record, a cache line.
#[repr(align(64))]
struct Slot {
    digest: Digest,
    done: Done,
    /// The stamp of the record's live queue entry; [`FREE`] for a free slot.
    stamp: u64,
}

/// A free slot's stamp; `next_stamp` never reaches it.
const FREE: u64 = u64::MAX;

#[derive(Clone, Copy)]
struct QueueEntry {
    stamp: u64,
    slot: u32,
    /// The record's tag, so that evicting can look its index entry up at once, while the
    /// slot (a cache miss in a large store) is still being read.
    tag: u32,
}

/// The 32 bits of a digest the index keeps.
fn tag(digest: Digest) -> u32 {
    digest as u32
}

/// The index's hash of a tag: hashbrown takes the bucket from the low bits and a 7-bit
/// control byte from the top bits, so the tag's (uniformly random) bits are spread over both.
fn tag_hash(tag: u32) -> u64 {
    u64::from(tag).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl DoneRecords {
    fn new(capacity: usize) -> Self {
        // Slot numbers are u32: a shard holds at most 2^32 - 1 records (256 GiB of slots).
        let capacity = capacity.min(u32::MAX as usize);
        DoneRecords {
            index: HashTable::with_capacity(capacity),
            // Reserved, resident only as the slots fill.
            slots: Vec::with_capacity(capacity),
            free: Vec::new(),
            order: VecDeque::new(),
            capacity,
            next_stamp: 0,
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    /// The slot holding `key`'s record.
    fn find(&self, key: Digest) -> Option<u32> {
        let (slots, tag) = (&self.slots, tag(key));
        self.index
            .find(tag_hash(tag), |e| {
                e.tag == tag && slots[e.slot as usize].digest == key
            })
            .map(|e| e.slot)
    }

    /// Removes `slot`'s record, of tag `tag`, from the index (the caller reuses or frees the
    /// slot).
    fn unindex(&mut self, slot: u32, tag: u32) {
        if let Ok(entry) = self.index.find_entry(tag_hash(tag), |e| e.slot == slot) {
            entry.remove();
        }
    }

    /// The record of `key` if its window is still open (marking it seen); a lapsed one is
    /// removed.
    fn get_live(&mut self, key: Digest, now: Deadline) -> Option<&Done> {
        let slot = self.find(key)?;
        if self.slots[slot as usize].done.expires <= now {
            self.unindex(slot, tag(key));
            self.slots[slot as usize].stamp = FREE;
            self.free.push(slot);
            return None;
        }
        self.append(slot);
        Some(&self.slots[slot as usize].done)
    }

    /// Records `key` as the most recently seen, evicting the least recently seen record when
    /// full.
    fn push(&mut self, key: Digest, done: Done) {
        if let Some(slot) = self.find(key) {
            self.slots[slot as usize].done = done;
            self.append(slot);
            return;
        }
        let record = Slot {
            digest: key,
            done,
            stamp: FREE,
        };
        let evicted = if self.len() >= self.capacity {
            self.evict_oldest()
        } else {
            None
        };
        let slot = if let Some(slot) = evicted.or_else(|| self.free.pop()) {
            self.slots[slot as usize] = record;
            slot
        } else {
            // Below capacity with no free slot: fewer than `capacity` slots exist yet.
            let slot = self.slots.len() as u32;
            self.slots.push(record);
            slot
        };
        let tag = tag(key);
        self.index
            .insert_unique(tag_hash(tag), IndexEntry { slot, tag }, |e| tag_hash(e.tag));
        self.append(slot);
    }

    /// Forgets the least recently seen record; returns its slot, now unindexed. (Always
    /// `Some` when the shard holds a record: every record has its live entry in the queue.)
    fn evict_oldest(&mut self) -> Option<u32> {
        while let Some(QueueEntry { stamp, slot, tag }) = self.order.pop_front() {
            if self.slots[slot as usize].stamp == stamp {
                self.unindex(slot, tag);
                self.slots[slot as usize].stamp = FREE;
                return Some(slot);
            }
        }
        None
    }

    /// Appends a queue entry for `slot`'s record, compacting the queue first if it is full.
    fn append(&mut self, slot: u32) {
        if self.order.len() >= 2 * self.capacity {
            let slots = &self.slots;
            self.order
                .retain(|e| slots[e.slot as usize].stamp == e.stamp);
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let record = &mut self.slots[slot as usize];
        record.stamp = stamp;
        self.order.push_back(QueueEntry {
            stamp,
            slot,
            tag: tag(record.digest),
        });
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
        match self.in_flight.get(&key) {
            Some(held) if held.token == *token && held.expires > now => Ok(self
                .in_flight
                .remove(&key)
                .expect("the entry was just found")),
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

/// Durations are checked to be at most 30 years, far below `u64::MAX` nanoseconds.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
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

    fn done(expires: Deadline) -> Done {
        Done {
            fingerprint: fp("x"),
            expires,
        }
    }

    #[test]
    fn done_records_forget_the_least_recently_seen_and_stay_bounded() {
        let mut records = DoneRecords::new(3);
        for k in 0..3 {
            records.push(k, done(100));
        }
        // Seeing 0 again makes 1 the least recently seen.
        assert!(records.get_live(0, 10).is_some());
        records.push(3, done(100));
        assert!(records.get_live(1, 10).is_none());
        assert_eq!(records.len(), 3);
        // Many sightings: the order queue is compacted, never past twice the capacity, and
        // the order survives it.
        for _ in 0..100 {
            assert!(records.get_live(2, 10).is_some());
            assert!(records.get_live(0, 10).is_some());
            assert!(records.order.len() <= 6);
        }
        records.push(4, done(100));
        assert!(records.get_live(3, 10).is_none());
        assert!(records.get_live(2, 10).is_some() && records.get_live(0, 10).is_some());
        // A lapsed record is removed when looked up.
        records.push(5, done(20));
        assert!(records.get_live(5, 20).is_none());
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn done_records_match_a_reference_lru() {
        // A plain LRU model: a list of (key, expires), least recently seen first.
        let mut model: Vec<(Digest, Deadline)> = Vec::new();
        let mut records = DoneRecords::new(5);
        // A small xorshift: the test is deterministic.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut now = 0;
        for _ in 0..20_000 {
            now += next() % 3;
            let key = Digest::from(next() % 16) << 64 | u128::from(next() % 2);
            if next() % 2 == 0 {
                let expires = now + 1 + next() % 40;
                model.retain(|(k, _)| *k != key);
                if model.len() == 5 {
                    model.remove(0);
                }
                model.push((key, expires));
                records.push(key, done(expires));
            } else {
                let got = records.get_live(key, now).map(|d| d.expires);
                let want = match model.iter().position(|(k, _)| *k == key) {
                    Some(i) if model[i].1 > now => {
                        let seen = model.remove(i);
                        model.push(seen);
                        Some(seen.1)
                    }
                    Some(i) => {
                        model.remove(i);
                        None
                    }
                    None => None,
                };
                assert_eq!(got, want, "{key:x} at {now}");
            }
            assert_eq!(records.len(), model.len());
            assert!(records.order.len() <= 10 && records.slots.len() <= 5);
        }
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
