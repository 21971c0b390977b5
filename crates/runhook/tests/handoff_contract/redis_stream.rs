//! The contract on a Redis stream, with a Redis store and the stream's own dead letters
//! (redriven into the stream), in both of its forms: the claim and the append as two calls,
//! and as one script (`claim_in`). Every test has its own key prefix.

use std::sync::Arc;

use redis::streams::StreamRangeReply;
use runhook::dead_letter::{DeadLetterRecord, RedriveReport};
use runhook::payload::Provider;
use runhook::receiver::BackgroundBuilder;
use runhook::store::RedisStore;
use runhook::stream::{RedisStreamQueue, RedisStreamQueueBuilder};
use runhook::{Handler, Receiver};

use crate::kit::{redis_url, Keys};
use crate::suite::{Backend, Stealing};

/// How the receive path claims a run on the stream.
pub trait Claims: Send + Sync + 'static {
    /// The stream's builder, told where runs are claimed when it claims them itself.
    fn configure(builder: RedisStreamQueueBuilder, store: RedisStore) -> RedisStreamQueueBuilder;
}

/// The store's claim, then the stream's `XADD`.
pub struct Apart;

impl Claims for Apart {
    fn configure(builder: RedisStreamQueueBuilder, _: RedisStore) -> RedisStreamQueueBuilder {
        builder
    }
}

/// The claim and the entry in one script ([`RedisStreamQueueBuilder::claim_in`]).
pub struct WithEntries;

impl Claims for WithEntries {
    fn configure(builder: RedisStreamQueueBuilder, store: RedisStore) -> RedisStreamQueueBuilder {
        builder.claim_in(store)
    }
}

pub struct RedisStream<C: Claims = Apart> {
    keys: Keys,
    store: Arc<Stealing>,
    queue: RedisStreamQueue,
    claims: std::marker::PhantomData<C>,
}

impl<C: Claims> RedisStream<C> {
    async fn xlen(&self) -> usize {
        self.keys.xlen(self.queue.stream_key()).await
    }

    async fn pending(&self) -> usize {
        self.keys.pending(self.queue.stream_key()).await
    }
}

impl<C: Claims> Backend for RedisStream<C> {
    async fn new(test: &str) -> Self {
        let keys = Keys::new(test).await;
        let store = keys.store().await;
        let builder = RedisStreamQueue::builder(Provider::Skyvern)
            .stream_key(format!("{}stream", keys.prefix));
        let queue = C::configure(builder, store.clone())
            .connect(&redis_url())
            .await
            .unwrap();
        Self {
            store: Stealing::new(Arc::new(store)),
            queue,
            keys,
            claims: std::marker::PhantomData,
        }
    }
    fn store(&self) -> Arc<Stealing> {
        self.store.clone()
    }

    fn configure(&self, builder: BackgroundBuilder) -> BackgroundBuilder {
        builder.redis_stream(self.queue.clone())
    }

    async fn backlog(&self, _receiver: &Receiver) -> usize {
        self.xlen().await
    }

    async fn settled(&self, _receiver: &Receiver) -> bool {
        self.xlen().await == 0 && self.pending().await == 0
    }

    async fn kept(&self) -> Vec<String> {
        let entries: StreamRangeReply = self
            .keys
            .cmd(
                redis::cmd("XRANGE")
                    .arg(self.queue.stream_key())
                    .arg("-")
                    .arg("+"),
            )
            .await;
        entries
            .ids
            .iter()
            .filter_map(|entry| entry.get::<String>("key"))
            .collect()
    }

    async fn letters(&self) -> Vec<DeadLetterRecord> {
        let listed = self.queue.dead_letters().list().await.unwrap();
        listed.into_iter().map(|letter| letter.record).collect()
    }

    async fn redrive(&self, _handler: Arc<dyn Handler>) -> RedriveReport {
        // Into the stream, where the running receiver processes it.
        self.queue.redrive(&[]).await.unwrap()
    }

    async fn after_lost_lease(&self) {
        // The entry stays pending for whoever holds the run.
        assert_eq!(self.pending().await, 1);
    }

    async fn cleanup(&self) {
        self.keys.cleanup().await;
    }
}

handoff_contract_tests!(crate::redis_stream::RedisStream<crate::redis_stream::Apart>);

/// The same contract with each run claimed in the script that appends its entry.
mod claimed_with_entries {
    handoff_contract_tests!(crate::redis_stream::RedisStream<crate::redis_stream::WithEntries>);
}
