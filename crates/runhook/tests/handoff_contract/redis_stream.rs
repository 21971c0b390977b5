//! The contract on a Redis stream, with a Redis store and the stream's own dead letters
//! (redriven into the stream). Every test has its own key prefix.

use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamPendingReply, StreamRangeReply};
use runhook::dead_letter::{DeadLetterRecord, RedriveReport};
use runhook::payload::Provider;
use runhook::receiver::BackgroundBuilder;
use runhook::store::RedisStore;
use runhook::stream::RedisStreamQueue;
use runhook::{Handler, Receiver};

use crate::kit::{require_redis, unique, URL};
use crate::suite::{Backend, Stealing};

pub struct RedisStream {
    prefix: String,
    store: Arc<Stealing>,
    queue: RedisStreamQueue,
    raw: MultiplexedConnection,
}

impl RedisStream {
    async fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let mut raw = self.raw.clone();
        cmd.query_async(&mut raw).await.unwrap()
    }

    async fn xlen(&self) -> usize {
        self.cmd(redis::cmd("XLEN").arg(self.queue.stream_key()))
            .await
    }

    async fn pending(&self) -> usize {
        let reply: StreamPendingReply = self
            .cmd(
                redis::cmd("XPENDING")
                    .arg(self.queue.stream_key())
                    .arg(self.queue.group()),
            )
            .await;
        reply.count()
    }
}

impl Backend for RedisStream {
    async fn new(test: &str) -> Self {
        require_redis();
        let prefix = format!("runhook-test-{}:", unique(test));
        let store = RedisStore::builder()
            .prefix(format!("{prefix}idem:"))
            .connect(URL)
            .await
            .unwrap();
        let queue = RedisStreamQueue::builder(Provider::Skyvern)
            .stream_key(format!("{prefix}stream"))
            .connect(URL)
            .await
            .unwrap();
        let raw = redis::Client::open(URL)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        Self {
            prefix,
            store: Stealing::new(Arc::new(store)),
            queue,
            raw,
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
        let keys: Vec<String> = self
            .cmd(redis::cmd("KEYS").arg(format!("{}*", self.prefix)))
            .await;
        if !keys.is_empty() {
            let _: () = self.cmd(redis::cmd("DEL").arg(keys)).await;
        }
    }
}

handoff_contract_tests!(crate::redis_stream::RedisStream);
