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
}

/// Keeps dead letters in memory, at most `capacity` of them. A full sink refuses new letters
/// (the deliveries wait with their workers) rather than dropping old ones: take them out with
/// [`MemoryDeadLetters::take`].
#[derive(Debug)]
pub struct MemoryDeadLetters {
    capacity: usize,
    letters: Mutex<VecDeque<DeadLetter>>,
}

impl MemoryDeadLetters {
    /// A sink holding at most `capacity` letters (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            letters: Mutex::new(VecDeque::new()),
        }
    }

    /// A copy of the letters held, oldest first.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.lock().iter().cloned().collect()
    }

    /// Removes and returns every letter held, oldest first.
    pub fn take(&self) -> Vec<DeadLetter> {
        self.lock().drain(..).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<DeadLetter>> {
        self.letters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for MemoryDeadLetters {
    fn default() -> Self {
        Self::new(1000)
    }
}

impl DeadLetterSink for MemoryDeadLetters {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        let mut letters = self.lock();
        let result = if letters.len() >= self.capacity {
            Err(std::io::Error::other(format!(
                "the in-memory dead-letter sink is full ({} letters)",
                self.capacity
            )))
        } else {
            letters.push_back(letter);
            Ok(())
        };
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
}
