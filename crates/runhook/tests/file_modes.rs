//! Files runhook creates hold whole delivery bodies: they are created readable by their owner
//! only.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use bytes::Bytes;
use runhook::dead_letter::JsonLinesDeadLetters;
use runhook::payload::{Provider, RunEvent};
use runhook::{Receiver, Unsigned};

#[tokio::test]
async fn a_new_dead_letter_file_is_private_to_its_owner() {
    let dir = std::env::temp_dir().join(format!("runhook-dl-mode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dead-letters.jsonl");
    let _ = std::fs::remove_file(&path);
    let receiver = Receiver::builder(Provider::Skyvern, Unsigned::accept_without_authentication())
        .dead_letters(Arc::new(JsonLinesDeadLetters::new(&path)))
        .handler(|_: Arc<RunEvent>| async { Ok::<(), std::io::Error>(()) })
        .build()
        .unwrap();
    let headers: [(&str, &str); 0] = [];
    let outcome = receiver
        .receive(&headers, "/", Bytes::from_static(b"{not json"))
        .await;
    assert_eq!(outcome.status.as_u16(), 202, "{outcome:?}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    let written = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(mode, 0o600, "mode {mode:o}");
    assert_eq!(written.lines().count(), 1, "{written}");
}
