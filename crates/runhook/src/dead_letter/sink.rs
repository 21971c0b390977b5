//! Where dead letters go: the sink trait, and the bounded in-memory sink.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::DeadLetter;
use crate::handler::BoxFuture;

/// Somewhere to keep dead letters.
pub trait DeadLetterSink: Send + Sync + 'static {
    /// Stores `letter`. An error means it was not stored: the caller keeps the delivery (its
    /// claim, its stream entry) and tries again later.
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>>;

    /// Stores `letter` even past the sink's byte budget (a budget bounds steady growth; an
    /// acknowledged run set aside at shutdown must never be lost to it). An error means the
    /// sink cannot take it at all. By default the same as [`DeadLetterSink::put`].
    fn put_past_budget(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        self.put(letter)
    }
}

/// The error a sink answers when a letter would take it past its byte budget.
pub(crate) fn over_budget(what: &str, max_bytes: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::StorageFull,
        format!("{what} is at its byte budget ({max_bytes} bytes)"),
    )
}

/// Keeps dead letters in memory, at most `capacity` of them and at most
/// [`max_bytes`](MemoryDeadLetters::max_bytes) of bodies and headers. A full sink refuses new
/// letters (the workers park their deliveries and try again in the background) rather than
/// dropping old ones: take them out with [`MemoryDeadLetters::take`]. Write-only unless you
/// take them: `runhook serve` never uses it.
#[derive(Debug)]
pub struct MemoryDeadLetters {
    capacity: usize,
    max_bytes: Option<u64>,
    letters: Mutex<Held>,
}

/// The letters held and their size.
#[derive(Debug, Default)]
struct Held {
    letters: VecDeque<DeadLetter>,
    bytes: u64,
}

impl MemoryDeadLetters {
    /// A sink holding at most `capacity` letters (at least 1), with no byte budget.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            max_bytes: None,
            letters: Mutex::new(Held::default()),
        }
    }

    /// Refuses a letter that would take the letters held past `max_bytes` (their bodies and
    /// headers counted), unless written past the budget
    /// ([`DeadLetterSink::put_past_budget`]).
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = Some(max_bytes);
        self
    }

    /// The bytes of bodies and headers held now.
    pub fn bytes_held(&self) -> u64 {
        self.lock().bytes
    }

    /// A copy of the letters held, oldest first.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.lock().letters.iter().cloned().collect()
    }

    /// Removes and returns every letter held, oldest first.
    pub fn take(&self) -> Vec<DeadLetter> {
        let mut held = self.lock();
        held.bytes = 0;
        held.letters.drain(..).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.letters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self, letter: DeadLetter, budget: Budget) -> Result<(), std::io::Error> {
        let mut held = self.lock();
        let size = letter.size();
        if budget == Budget::Enforced {
            if held.letters.len() >= self.capacity {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    format!(
                        "the in-memory dead-letter sink is full ({} letters)",
                        self.capacity
                    ),
                ));
            }
            if let Some(max) = self.max_bytes {
                if held.bytes.saturating_add(size) > max {
                    return Err(over_budget("the in-memory dead-letter sink", max));
                }
            }
        }
        held.bytes = held.bytes.saturating_add(size);
        held.letters.push_back(letter);
        Ok(())
    }
}

/// Whether a write keeps to the sink's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    /// Refused past the budget.
    Enforced,
    /// Written past it (shutdown).
    Exceeded,
}

impl Default for MemoryDeadLetters {
    fn default() -> Self {
        Self::new(1000)
    }
}

impl DeadLetterSink for MemoryDeadLetters {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        let result = self.store(letter, Budget::Enforced);
        Box::pin(async move { result })
    }

    fn put_past_budget(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        let result = self.store(letter, Budget::Exceeded);
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::letter;

    #[test]
    fn a_full_memory_sink_refuses_rather_than_drops() {
        let sink = MemoryDeadLetters::new(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            sink.put(letter(b"a")).await.unwrap();
            assert!(sink.put(letter(b"b")).await.is_err());
            assert_eq!(sink.letters()[0].body, &b"a"[..]);
            assert_eq!(sink.take().len(), 1);
            sink.put(letter(b"c")).await.unwrap();
        });
    }

    #[test]
    fn a_byte_budget_refuses_until_written_past_it() {
        let one = letter(&[b'x'; 100]).size();
        let sink = MemoryDeadLetters::new(10).max_bytes(one * 2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            sink.put(letter(&[b'x'; 100])).await.unwrap();
            sink.put(letter(&[b'x'; 100])).await.unwrap();
            let refused = sink.put(letter(&[b'x'; 100])).await.unwrap_err();
            assert_eq!(refused.kind(), std::io::ErrorKind::StorageFull);
            sink.put_past_budget(letter(&[b'x'; 100])).await.unwrap();
            assert_eq!(sink.bytes_held(), one * 3);
            assert_eq!(sink.take().len(), 3);
            assert_eq!(sink.bytes_held(), 0);
        });
    }
}
