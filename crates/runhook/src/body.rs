//! Reading a request body under the receiver's limits ([`crate::Receiver::read_body`]), shared
//! by every adapter: they only turn their body type into a stream of chunks and the result into
//! their response.
//!
//! A body over the limit is not simply left unread: a server that answers and closes a socket
//! with unread data makes the kernel send a reset, and a sender that writes its whole body
//! before reading (Python's `http.client`, httpx) then sees a broken pipe instead of the 413,
//! and retries it as a network error. So past the limit the rest of the body is read and
//! discarded, at most [`MAX_DRAIN_BYTES`] more bytes and for at most [`MAX_DRAIN_TIME`] (never
//! past the body read timeout), and only then refused, closing the connection. A body that
//! declares a `Content-Length` beyond the limit plus [`MAX_DRAIN_BYTES`] is refused at once:
//! it could not be drained anyway, so its sender may well see a reset.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use runhook_core::{single_header, HeaderLookup, SingleHeader};
use tokio::time::Instant;

use crate::budget::Charge;

/// The request's declared body length: its one valid `Content-Length`, or `None` (absent,
/// repeated with different values, or not a number), for [`Receiver::read_body`].
///
/// [`Receiver::read_body`]: crate::Receiver::read_body
pub fn content_length(headers: &dyn HeaderLookup) -> Option<u64> {
    match single_header(headers, "content-length") {
        SingleHeader::One(value) => std::str::from_utf8(value).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// The most bytes past the body limit that are read and discarded before a 413 (8 MiB).
pub(crate) const MAX_DRAIN_BYTES: u64 = 8 * 1024 * 1024;

/// The longest time spent discarding a body over the limit before a 413 (3 s); never longer
/// than what is left of the body read timeout.
pub(crate) const MAX_DRAIN_TIME: Duration = Duration::from_secs(3);

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// Larger than the limit (what could be drained of it was): answer 413 and close.
    TooLarge,
    /// Not received in full within the read timeout: answer 408 and close.
    TimedOut,
    /// The transport failed while reading (a malformed chunk, a closed connection).
    Broken,
    /// The pre-authentication budget cannot hold more: answer 503 and close.
    OverBudget,
}

/// What to do with a body before reading any of it, from its declared `Content-Length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Within the limit, or of unknown length: read it.
    Read,
    /// Over the limit but drainable: discard it, then refuse.
    Drain,
    /// Beyond what is drained: refuse without reading.
    RefuseNow,
}

fn plan(declared: Option<u64>, limit: usize) -> Plan {
    let limit = limit as u64;
    match declared {
        Some(len) if len > limit.saturating_add(MAX_DRAIN_BYTES) => Plan::RefuseNow,
        Some(len) if len > limit => Plan::Drain,
        _ => Plan::Read,
    }
}

/// Reads `chunks` whole, at most `limit` bytes within `read_timeout` (counted from now); a
/// body over the limit is drained as the module docs say before [`ReadError::TooLarge`].
/// `declared` is the request's `Content-Length`, if it has a valid one. What is left of `chunks`
/// afterwards is unread (an adapter may hold it until its answer is sent). Each chunk is
/// charged to `charge` as it arrives; past what the budget holds the body is dropped and
/// [`ReadError::OverBudget`] returned at once.
pub(crate) async fn read_limited<S, E>(
    chunks: &mut S,
    declared: Option<u64>,
    limit: usize,
    read_timeout: Duration,
    charge: &mut Charge,
) -> Result<Bytes, ReadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    read_with(
        chunks,
        declared,
        limit,
        read_timeout,
        MAX_DRAIN_TIME,
        charge,
    )
    .await
}

/// [`read_limited`] with another drain time (tests).
async fn read_with<S, E>(
    chunks: &mut S,
    declared: Option<u64>,
    limit: usize,
    read_timeout: Duration,
    drain_time: Duration,
    charge: &mut Charge,
) -> Result<Bytes, ReadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let deadline = Instant::now() + read_timeout;
    match plan(declared, limit) {
        Plan::RefuseNow => return Err(ReadError::TooLarge),
        Plan::Drain => {
            drain(chunks, deadline.min(Instant::now() + drain_time)).await;
            return Err(ReadError::TooLarge);
        }
        Plan::Read => {}
    }
    // A declared length is within the limit here; a huge limit does not make a huge
    // allocation up front.
    let capacity = declared.map_or(8 * 1024, |len| len.min(4 * 1024 * 1024) as usize);
    let mut body = BytesMut::with_capacity(capacity);
    loop {
        let next = tokio::time::timeout_at(deadline, chunks.next()).await;
        match next {
            Err(_elapsed) => return Err(ReadError::TimedOut),
            Ok(None) => return Ok(body.freeze()),
            Ok(Some(Err(_))) => return Err(ReadError::Broken),
            Ok(Some(Ok(chunk))) => {
                if body.len() + chunk.len() > limit {
                    drop(body);
                    drain(chunks, deadline.min(Instant::now() + drain_time)).await;
                    return Err(ReadError::TooLarge);
                }
                if !charge.grow(body.len(), body.len() + chunk.len()) {
                    return Err(ReadError::OverBudget);
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
}

/// Reads and discards the rest of `chunks`: until it ends or fails, [`MAX_DRAIN_BYTES`] are
/// discarded, or `deadline` comes, whichever is first.
async fn drain<S, E>(chunks: &mut S, deadline: Instant)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut discarded = 0u64;
    while discarded <= MAX_DRAIN_BYTES {
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(Some(Ok(chunk))) => discarded += chunk.len() as u64,
            Ok(None | Some(Err(_))) | Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(
        pieces: Vec<Result<Bytes, ()>>,
    ) -> impl Stream<Item = Result<Bytes, ()>> + Send + 'static {
        futures_util::stream::iter(pieces)
    }

    fn chunks(total: usize, size: usize) -> Vec<Result<Bytes, ()>> {
        (0..total.div_ceil(size))
            .map(|i| Ok(Bytes::from(vec![b'x'; size.min(total - i * size)])))
            .collect()
    }

    #[test]
    fn plan_follows_the_declared_length() {
        assert_eq!(plan(None, 10), Plan::Read);
        assert_eq!(plan(Some(10), 10), Plan::Read);
        assert_eq!(plan(Some(11), 10), Plan::Drain);
        assert_eq!(plan(Some(10 + MAX_DRAIN_BYTES), 10), Plan::Drain);
        assert_eq!(plan(Some(11 + MAX_DRAIN_BYTES), 10), Plan::RefuseNow);
        assert_eq!(plan(Some(u64::MAX), usize::MAX), Plan::Read);
    }

    #[tokio::test]
    async fn reads_a_body_up_to_the_limit() {
        let read = |chunks| async move {
            read_limited(
                &mut stream(chunks),
                None,
                100,
                Duration::from_secs(1),
                &mut Charge::none(),
            )
            .await
        };
        assert_eq!(read(chunks(100, 7)).await.map(|b| b.len()), Ok(100));
        assert_eq!(read(chunks(101, 7)).await, Err(ReadError::TooLarge));
        assert_eq!(read(vec![Err(())]).await, Err(ReadError::Broken));
    }

    #[tokio::test]
    async fn drains_at_most_the_bound() {
        // An endless body: the drain stops after the bound, not at its end.
        let consumed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = consumed.clone();
        let mut endless = futures_util::stream::repeat_with(move || {
            counter.fetch_add(1024, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, ()>(Bytes::from_static(&[0u8; 1024]))
        });
        let result = read_limited(
            &mut endless,
            None,
            4096,
            Duration::from_secs(10),
            &mut Charge::none(),
        )
        .await;
        assert_eq!(result, Err(ReadError::TooLarge));
        let consumed = consumed.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            consumed <= 4096 + MAX_DRAIN_BYTES + 2 * 1024,
            "consumed {consumed} bytes"
        );
        assert!(consumed > MAX_DRAIN_BYTES, "consumed {consumed} bytes");
    }

    #[tokio::test]
    async fn a_stalled_body_times_out_and_a_stalled_drain_still_refuses() {
        let ms = Duration::from_millis;
        let stalled = || Box::pin(stream(chunks(200, 10)).chain(futures_util::stream::pending()));
        let started = Instant::now();
        let result = read_with(
            &mut stalled(),
            None,
            1000,
            ms(200),
            ms(50),
            &mut Charge::none(),
        )
        .await;
        assert_eq!(result, Err(ReadError::TimedOut));
        assert!(started.elapsed() >= ms(200));

        // Over the limit: drained for the drain time, then refused.
        let started = Instant::now();
        let result = read_with(
            &mut stalled(),
            None,
            100,
            ms(5000),
            ms(200),
            &mut Charge::none(),
        )
        .await;
        assert_eq!(result, Err(ReadError::TooLarge));
        let took = started.elapsed();
        assert!(took >= ms(200) && took < ms(2000), "{took:?}");

        // Never past the read timeout, declared or found while reading.
        for declared in [Some(300), None] {
            let started = Instant::now();
            let result = read_with(
                &mut stalled(),
                declared,
                100,
                ms(200),
                ms(5000),
                &mut Charge::none(),
            )
            .await;
            assert_eq!(result, Err(ReadError::TooLarge));
            let took = started.elapsed();
            assert!(took >= ms(200) && took < ms(2000), "{took:?}");
        }
    }
}
