//! The one place a dead letter is written from the receive path, the workers, the reconciler
//! and shutdown: put in the sink, counted, and logged when the sink refuses it (at most one
//! line per [`LOG_EVERY`](crate::log_every::LOG_EVERY), with the count of refusals since the
//! last).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{DeadLetter, DeadLetterSink};
use crate::log_every::LogEvery;
use crate::stats::Counters;

/// A route's dead-letter sink with its counters.
#[derive(Clone)]
pub(crate) struct DeadLetters {
    pub sink: Arc<dyn DeadLetterSink>,
    pub counters: Arc<Counters>,
    pub alarm: Arc<SinkAlarm>,
}

/// Whether the sink refused its last letter, and the rate limit of the log line saying so.
#[derive(Default)]
pub(crate) struct SinkAlarm {
    refusing: AtomicBool,
    log: LogEvery,
}

impl SinkAlarm {
    /// Whether the sink's last write was refused.
    pub fn refusing(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }

    /// Notes a refusal; true when it is time to log (then with the refusals since the last
    /// line).
    fn refused(&self) -> Option<u64> {
        self.refusing.store(true, Ordering::Relaxed);
        self.log.tick()
    }

    fn accepted(&self) {
        if self.refusing.swap(false, Ordering::Relaxed) {
            tracing::info!("the dead-letter sink takes letters again");
        }
    }
}

impl DeadLetters {
    /// A sink with its counters.
    pub fn new(sink: Arc<dyn DeadLetterSink>, counters: Arc<Counters>) -> Self {
        Self {
            sink,
            counters,
            alarm: Arc::default(),
        }
    }

    /// Puts `letter` in the sink and counts it; a refusal is counted and logged (rate
    /// limited, with the letter's key, never its body or headers) and returned, for the
    /// caller to decide what a refusal costs.
    pub async fn put(&self, letter: DeadLetter) -> Result<(), std::io::Error> {
        self.write(letter, Within::Budget).await
    }

    /// Puts `letter` in the sink even past its byte budget (acknowledged runs at shutdown).
    pub async fn put_past_budget(&self, letter: DeadLetter) -> Result<(), std::io::Error> {
        self.write(letter, Within::Sink).await
    }

    async fn write(&self, letter: DeadLetter, within: Within) -> Result<(), std::io::Error> {
        let key = letter.dedup_key.clone();
        let reason = letter.reason.to_string();
        let written = match within {
            Within::Budget => self.sink.put(letter).await,
            Within::Sink => self.sink.put_past_budget(letter).await,
        };
        match written {
            Ok(()) => {
                Counters::bump(&self.counters.dead_lettered);
                self.alarm.accepted();
                Ok(())
            }
            Err(err) => {
                Counters::bump(&self.counters.dead_letter_write_failures);
                if let Some(refusals) = self.alarm.refused() {
                    let parked = self.counters.parked.load(Ordering::Relaxed);
                    tracing::error!(key = key.as_deref(), %reason, error = %err, refusals, parked, "the dead-letter sink refuses letters; their deliveries are parked and tried again (see /readyz)");
                }
                Err(err)
            }
        }
    }
}

/// How far a write may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Within {
    /// The sink's byte budget.
    Budget,
    /// What the sink can take at all.
    Sink,
}
