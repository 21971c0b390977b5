//! A shard's completed records: an exact LRU cache laid out as one ring in recency order.

use hashbrown::HashTable;

use super::{Deadline, Digest, Done};

/// The completed records of a shard: bounded to `capacity` records, forgetting the least
/// recently seen first (an exact LRU cache).
///
/// Laid out for a large store whose records do not fit in the CPU caches, where a full
/// shard's every `push` evicts one record:
///
/// * the records live in `ring`, in recency order, oldest at `tail`. A new record is written
///   at the head and the evicted one is read at the tail, so both walk memory front to back,
///   which the hardware prefetcher streams: neither is a cache miss;
/// * `index`, a `hashbrown` table of 8-byte entries (ring position and 32 bits of the digest),
///   finds a digest's record. At 8 bytes an entry the tables stay small, and a lookup reads a
///   record only when the 32 bits match, so a claim of a new key (the common case) reads no
///   record at all;
/// * seeing a record again copies it to the head and points its index entry there; removing
///   a lapsed record drops its index entry. Either way the old ring entry is left *vacated*:
///   a ring entry holds a record exactly when an index entry points at its position, so no
///   flag is kept, and eviction, which looks the tail's index entry up anyway, skips vacated
///   entries for free;
/// * the ring has room for half as many entries again as the capacity. When vacated entries
///   fill that room, the ring is compacted in place (live records slid together, their index
///   entries repointed): O(ring) work at most once per `capacity / 2` vacated entries, O(1)
///   amortized per call.
///
/// Written here rather than taken from `lru`: a linked LRU list touches the evicted node, its
/// neighbour and the map's node, all cold in a large store, and allocates per record
/// (measured: the store's claim+complete twice as fast at 100 000 records with a queue of
/// keys beside a map of records; a slab of records beside a queue 1.2 times as fast again;
/// and this ring, which drops the slab's cold read of the evicted slot, faster again, see the
/// crate's `store` bench).
pub(super) struct DoneRecords {
    index: HashTable<IndexEntry>,
    /// Grows to `ring_len` entries as records arrive, then wraps.
    ring: Vec<Record>,
    ring_len: usize,
    /// The position of the oldest queued entry.
    tail: usize,
    /// Entries queued from `tail` (records and vacated entries).
    queued: usize,
    capacity: usize,
    /// How many records one eviction forgets at once (see [`EVICTION_BATCH`]).
    batch: usize,
}

/// The most records a full shard forgets at once. Evicting one record costs a cache miss in
/// the index; a batch issues its misses back to back, where the CPU overlaps them.
const EVICTION_BATCH: usize = 16;

/// One record's place in the index: its position in the ring.
type IndexEntry = u32;

/// One completed record.
#[derive(Clone, Copy)]
struct Record {
    digest: Digest,
    done: Done,
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
    pub(super) fn new(capacity: usize) -> Self {
        // Ring positions are u32: a shard holds at most about 2^31 records.
        let capacity = capacity.clamp(1, (u32::MAX / 2) as usize);
        let batch = (capacity / 64).clamp(1, EVICTION_BATCH);
        let ring_len = capacity + capacity.div_ceil(2);
        DoneRecords {
            index: HashTable::with_capacity(capacity),
            // Reserved, resident only as the ring fills.
            ring: Vec::with_capacity(ring_len),
            ring_len,
            tail: 0,
            queued: 0,
            capacity,
            batch,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// The record of `key` if its window is still open (marking it seen); a lapsed one is
    /// removed.
    pub(super) fn get_live(&mut self, key: Digest, now: Deadline) -> Option<&Done> {
        let pos = self.find(key)?;
        if self.ring[pos].done.expires <= now {
            self.unindex(pos);
            return None;
        }
        let pos = self.move_to_head(pos);
        Some(&self.ring[pos].done)
    }

    /// Records `key` as the most recently seen, evicting the least recently seen record when
    /// full.
    pub(super) fn push(&mut self, key: Digest, done: Done) {
        if let Some(pos) = self.find(key) {
            self.ring[pos].done = done;
            self.move_to_head(pos);
            return;
        }
        if self.len() >= self.capacity {
            for _ in 0..self.batch {
                self.evict_oldest();
            }
        }
        let pos = self.append(Record { digest: key, done });
        let ring = &self.ring;
        self.index
            .insert_unique(tag_hash(tag(key)), pos as u32, |&p| {
                tag_hash(tag(ring[p as usize].digest))
            });
    }

    /// The position of `key`'s record.
    fn find(&self, key: Digest) -> Option<usize> {
        let (ring, tag) = (&self.ring, tag(key));
        self.index
            .find(tag_hash(tag), |e| ring[*e as usize].digest == key)
            .map(|e| *e as usize)
    }

    /// Drops the index entry of the record at `pos`, leaving its ring entry vacated.
    fn unindex(&mut self, pos: usize) -> bool {
        let tag = tag(self.ring[pos].digest);
        match self.index.find_entry(tag_hash(tag), |&e| e as usize == pos) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Makes the record at `pos` the most recently seen; returns its new position.
    fn move_to_head(&mut self, pos: usize) -> usize {
        if pos == self.position(self.queued - 1) {
            return pos;
        }
        let record = self.ring[pos];
        // Appending may compact the ring, which moves the record (and its index entry), so
        // the entry is found again by digest afterwards.
        let head = self.append(record);
        let (ring, tag) = (&self.ring, tag(record.digest));
        let entry = self
            .index
            .find_mut(tag_hash(tag), |e| ring[*e as usize].digest == record.digest)
            .expect("a record being moved is indexed");
        *entry = head as u32;
        head
    }

    /// Forgets the least recently seen record. (A shard holding a record always finds one:
    /// every record is in the ring.)
    fn evict_oldest(&mut self) {
        while self.queued > 0 {
            let pos = self.tail;
            self.tail = self.position(1);
            self.queued -= 1;
            if self.unindex(pos) {
                return;
            }
        }
    }

    /// Writes `record` at the head of the ring, compacting it first if it is full; returns its
    /// position.
    fn append(&mut self, record: Record) -> usize {
        if self.queued == self.ring_len {
            self.compact();
        }
        let pos = self.position(self.queued);
        if pos == self.ring.len() {
            // Still filling: fewer than `ring_len` entries exist yet.
            self.ring.push(record);
        } else {
            self.ring[pos] = record;
        }
        self.queued += 1;
        pos
    }

    /// Slides the records together toward the tail, dropping vacated entries, and repoints
    /// their index entries.
    fn compact(&mut self) {
        let (mut read, mut write) = (self.tail, self.tail);
        let mut kept = 0;
        for _ in 0..self.queued {
            let record = self.ring[read];
            let tag = tag(record.digest);
            if let Some(entry) = self.index.find_mut(tag_hash(tag), |&e| e as usize == read) {
                *entry = write as u32;
                self.ring[write] = record;
                write = self.wrap(write + 1);
                kept += 1;
            }
            read = self.wrap(read + 1);
        }
        self.queued = kept;
    }

    /// The ring position `offset` entries after the tail.
    fn position(&self, offset: usize) -> usize {
        self.wrap(self.tail + offset)
    }

    /// A position of up to twice the ring's length brought back into it.
    fn wrap(&self, pos: usize) -> usize {
        if pos >= self.ring_len {
            pos - self.ring_len
        } else {
            pos
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fingerprint;

    fn done(expires: Deadline) -> Done {
        Done {
            fingerprint: Fingerprint::of(b"x"),
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
        // Many sightings: the ring is compacted, never past its length, and the order
        // survives it.
        for _ in 0..100 {
            assert!(records.get_live(2, 10).is_some());
            assert!(records.get_live(0, 10).is_some());
            assert!(records.queued <= records.ring_len && records.ring.len() <= records.ring_len);
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
        // Small stores evict one record at a time; 130 records evict two at once.
        for (capacity, batch) in [(1, 1), (2, 1), (5, 1), (130, 2)] {
            // A plain LRU model: a list of (key, expires), least recently seen first.
            let mut model: Vec<(Digest, Deadline)> = Vec::new();
            let mut records = DoneRecords::new(capacity);
            assert_eq!(records.batch, batch);
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
                // Keys share their low 32 bits (the tag) in pairs, as colliding tags do.
                let key = Digest::from(next() % (3 * capacity as u64 + 13)) << 64
                    | u128::from(next() % 2);
                if next() % 2 == 0 {
                    let expires = now + 1 + next() % 40;
                    model.retain(|(k, _)| *k != key);
                    if model.len() == capacity {
                        model.drain(..batch);
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
                    assert_eq!(got, want, "{key:x} at {now}, capacity {capacity}");
                }
                assert_eq!(records.len(), model.len());
                assert!(records.queued <= records.ring_len);
                assert!(records.ring.len() <= records.ring_len);
                assert!(records.ring_len <= capacity + capacity.div_ceil(2));
            }
        }
    }
}
