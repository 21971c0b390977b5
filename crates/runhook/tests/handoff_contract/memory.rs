//! The contract on the in-process queue, with a memory store and dead letters in a JSON-lines
//! file (redriven with `redrive_file`).

use std::path::PathBuf;
use std::sync::Arc;

use runhook::dead_letter::{redrive_file, DeadLetterRecord, JsonLinesDeadLetters, RedriveReport};
use runhook::receiver::BackgroundBuilder;
use runhook::store::{IdempotencyStore, MemoryStore};
use runhook::{Handler, Receiver};

use crate::kit::unique;
use crate::suite::{Backend, Stealing};

pub struct Memory {
    store: Arc<Stealing>,
    dir: PathBuf,
    letters: PathBuf,
}

impl Backend for Memory {
    async fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(&format!("runhook-handoff-{test}")));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            store: Stealing::new(Arc::new(MemoryStore::new())),
            letters: dir.join("dead.jsonl"),
            dir,
        }
    }

    fn store(&self) -> Arc<Stealing> {
        self.store.clone()
    }

    fn configure(&self, builder: BackgroundBuilder) -> BackgroundBuilder {
        builder.dead_letters(Arc::new(JsonLinesDeadLetters::new(&self.letters)))
    }

    async fn backlog(&self, receiver: &Receiver) -> usize {
        receiver.stats().queue_depth as usize
    }

    async fn settled(&self, receiver: &Receiver) -> bool {
        receiver.stats().queue_depth == 0
    }

    async fn kept(&self) -> Vec<String> {
        // The in-process queue keeps nothing past a shutdown: it dead-letters the rest.
        Vec::new()
    }

    async fn letters(&self) -> Vec<DeadLetterRecord> {
        if !self.letters.exists() {
            return Vec::new();
        }
        JsonLinesDeadLetters::read(&self.letters).unwrap()
    }

    async fn redrive(&self, handler: Arc<dyn Handler>) -> RedriveReport {
        let store: Arc<dyn IdempotencyStore> = self.store.clone();
        redrive_file(&self.letters, &[], handler, Some(store))
            .await
            .unwrap()
    }

    async fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

handoff_contract_tests!(crate::memory::Memory);
