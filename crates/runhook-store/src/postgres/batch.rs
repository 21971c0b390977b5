//! Group commit for the store's hottest statements: calls of one kind made at once are
//! gathered into one statement (one round trip, one commit) while earlier batches run.
//!
//! Written here rather than taken from a crate: what it needs is a channel, a drain and a
//! semaphore, and the batching crates on crates.io either run on a timer (adding latency at low
//! load, where this sends each call at once) or bring their own runtime assumptions.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

/// A call waiting for its batch, and where its answer goes.
type Waiting<Req, Resp> = (Req, oneshot::Sender<Resp>);

/// Runs calls in batches of at most `max_batch`, with at most `in_flight` batches running at
/// once: a call made while every batch slot is busy waits and joins the next batch, so that
/// batches grow with the load and a lone call goes at once. The store batches its hottest
/// statements with it, and so does the `runhook` crate's Postgres queue.
pub struct Batcher<Req, Resp> {
    calls: mpsc::UnboundedSender<Waiting<Req, Resp>>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the batcher's task (inside a tokio runtime); `run` answers one batch, an answer
    /// per call, in order. The task ends when the batcher is dropped.
    pub fn start<F, Fut>(max_batch: usize, in_flight: usize, run: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Resp>> + Send + 'static,
    {
        let (calls, mut waiting) = mpsc::unbounded_channel::<Waiting<Req, Resp>>();
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        let run = Arc::new(run);
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = waiting.recv().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match waiting.try_recv() {
                        Ok(call) => batch.push(call),
                        Err(_) => break,
                    }
                }
                let run = run.clone();
                tokio::spawn(async move {
                    let (requests, replies): (Vec<Req>, Vec<oneshot::Sender<Resp>>) =
                        batch.into_iter().unzip();
                    let answers = run(requests).await;
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(answer);
                    }
                    drop(slot);
                });
            }
        });
        Self { calls }
    }

    /// Runs `request` in the next batch; `None` when the batcher's task is gone (its runtime
    /// shut down) or the batch's runner gave no answer for it.
    pub async fn call(&self, request: Req) -> Option<Resp> {
        let (reply, answer) = oneshot::channel();
        self.calls.send((request, reply)).ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn calls_made_while_a_batch_runs_join_the_next_and_each_gets_its_answer() {
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = batches.clone();
        let batcher = Arc::new(Batcher::start(8, 1, move |requests: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                requests.into_iter().map(|r| r * 10).collect()
            }
        }));
        let calls: Vec<_> = (0..20u32)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { (i, batcher.call(i).await) })
            })
            .collect();
        for call in calls {
            let (i, answer) = call.await.unwrap();
            assert_eq!(answer, Some(i * 10));
        }
        let batches = batches.load(Ordering::SeqCst);
        assert!((3..20).contains(&batches), "{batches} batches for 20 calls");
    }
}
