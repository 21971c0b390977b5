//! The contract on a Redis stream, with a Redis store and the stream's own dead letters
//! (redriven into the stream). Every test has its own key prefix.

use std::sync::Arc;

use redis::streams::StreamRangeReply;
use runhook::dead_letter::{DeadLetterRecord, RedriveReport};
use runhook::payload::Provider;
use runhook::receiver::BackgroundBuilder;
use runhook::stream::RedisStreamQueue;
use runhook::{Handler, Receiver};

use crate::kit::{redis_url, Keys};
use crate::suite::{Backend, Stealing};

pub struct RedisStream {
    keys: Keys,
    store: Arc<Stealing>,
    queue: RedisStreamQueue,
}

impl RedisStream {
    async fn xlen(&self) -> usize {
        self.keys.xlen(self.queue.stream_key()).await
    }

    async fn pending(&self) -> usize {
        self.keys.pending(self.queue.stream_key()).await
    }
}

impl Backend for RedisStream {
    async fn new(test: &str) -> Self {
        let keys = Keys::new(test).await;
        let queue = RedisStreamQueue::builder(Provider::Skyvern)
            .stream_key(format!("{}stream", keys.prefix))
            .connect(&redis_url())
            .await
            .unwrap();
        Self {
            store: Stealing::new(Arc::new(keys.store().await)),
            queue,
            keys,
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

handoff_contract_tests!(crate::redis_stream::RedisStream);
