//! An entry runhook cannot read: kept whole in the dead letters with what can be salvaged of
//! it.

use std::collections::HashMap;

use redis::Value;

use super::entry::{Malformed, Salvaged};
use super::shared::Shared;
use crate::handoff::arrival::Next;

/// An entry runhook did not write (or cannot read): dead-lettered whole, then acknowledged.
/// If the letter cannot be written, the entry stays pending and is tried again later.
pub(super) async fn foreign_entry(
    sh: &Shared,
    id: &str,
    map: &HashMap<String, Value>,
    why: Malformed,
) -> Next {
    tracing::error!(stream = %sh.queue.stream_key(), %id, %why, "a stream entry runhook cannot read; dead-lettering it");
    let letter = Salvaged::from_entry(map).letter(id.to_string());
    if sh.ctx.dead_letters.put(letter).await.is_err() {
        // Counted and logged by the writer; the entry stays pending and is tried again later.
        return Next::LeavePending;
    }
    Next::Acknowledge
}
