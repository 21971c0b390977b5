//! The one place a dead letter is written from the receive path, the workers, the reconciler
//! and shutdown: put in the sink, counted, and logged when the sink refuses it.

use std::sync::Arc;

use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::stats::Counters;

/// A route's dead-letter sink with its counters.
#[derive(Clone)]
pub(crate) struct DeadLetters {
    pub sink: Arc<dyn DeadLetterSink>,
    pub counters: Arc<Counters>,
}

impl DeadLetters {
    /// Puts `letter` in the sink and counts it; a refusal is logged (with the letter's key,
    /// never its body or headers) and returned, for the caller to decide what a refusal
    /// costs.
    pub async fn put(&self, letter: DeadLetter) -> Result<(), std::io::Error> {
        let key = letter.dedup_key.clone();
        let reason = letter.reason.to_string();
        match self.sink.put(letter).await {
            Ok(()) => {
                Counters::bump(&self.counters.dead_lettered);
                Ok(())
            }
            Err(err) => {
                tracing::error!(key = key.as_deref(), %reason, error = %err, "could not write a dead letter");
                Err(err)
            }
        }
    }
}
