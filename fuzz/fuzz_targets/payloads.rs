//! Every provider's payload parser on the same arbitrary body: `RunEvent::parse`,
//! `RunEvent::parse_summary` (then `payload()` and `result()`), and `DedupProbe::read`, the
//! reader the acknowledgement path claims with.
//!
//! Checked: no panic; the three readers agree: a full parse succeeds exactly when the summary
//! and the lazily read payload both do, with the same summary; whenever the summary reads a run,
//! the probe reads the same de-duplication key (the receiver claims with the probe's key, the
//! handler sees the event's); keys are `provider:run_id` with a non-blank id of at most
//! `MAX_RUN_ID_LEN` bytes; every payload error answers 202.
//!
//! Everything runs on a thread with a 1 MiB stack, half a tokio worker's (where handlers read
//! payloads), not on libFuzzer's 8 MiB main thread: recursion that needs a good part of a
//! worker's stack shows as a crash here, before it overflows one in production (or at once in
//! a debug build, whose frames are several times larger).
#![no_main]

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use runhook_core::payload::{
    json, DedupProbe, PayloadError, Provider, RunEvent, RunStatus, MAX_RUN_ID_LEN,
};
use sha2::{Digest as _, Sha256};

/// Half the stack of a tokio worker thread.
const STACK: usize = 1024 * 1024;

type Reply = std::thread::Result<()>;
/// The checker thread's inbox (inputs) and outbox (how each check ended).
type Channels = Mutex<(Sender<Vec<u8>>, Receiver<Reply>)>;

/// One long-lived thread with a [`STACK`]-byte stack that checks each input (spawning a thread
/// per input would slow the target several times over).
fn checker() -> &'static Channels {
    static CHECKER: OnceLock<Channels> = OnceLock::new();
    CHECKER.get_or_init(|| {
        let (inputs, inbox) = channel::<Vec<u8>>();
        let (outbox, replies) = channel::<Reply>();
        std::thread::Builder::new()
            .name("payloads-checker".into())
            .stack_size(STACK)
            .spawn(move || {
                for data in inbox {
                    let reply = std::panic::catch_unwind(|| check_all(&data));
                    if outbox.send(reply).is_err() {
                        return;
                    }
                }
            })
            .expect("a thread");
        Mutex::new((inputs, replies))
    })
}

fuzz_target!(|data: &[u8]| {
    let channels = checker().lock().unwrap_or_else(|p| p.into_inner());
    channels
        .0
        .send(data.to_vec())
        .expect("the checker thread is gone");
    let reply = channels.1.recv().expect("the checker thread is gone");
    // A panic on the checker is re-raised here, where libFuzzer sees it.
    if let Err(panic) = reply {
        std::panic::resume_unwind(panic);
    }
});

fn check_all(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    for provider in Provider::ALL {
        let probe = DedupProbe::read(provider, data);
        let summary = RunEvent::parse_summary(provider, body.clone());
        let full = RunEvent::parse(provider, body.clone());

        for err in [
            probe.as_ref().err(),
            summary.as_ref().err(),
            full.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        {
            check_error(err);
        }

        if let Ok(event) = &summary {
            assert_eq!(event.provider, provider);
            // webrun-ai names no run: the body's hash is its key, and its run id is absent.
            let key_id = match &event.run_id {
                Some(id) => id.clone(),
                None => {
                    assert_eq!(provider, Provider::WebRunAi);
                    hex::encode(Sha256::digest(data))
                }
            };
            // The run's key, or for an event that does not end the run (a job's progress, an
            // interim attempt) the run's key with a `#` qualifier.
            let run_key = format!("{provider}:{key_id}");
            assert!(
                event.dedup_key == run_key || event.dedup_key.starts_with(&format!("{run_key}#")),
                "{} is not keyed on {run_key}",
                event.dedup_key
            );
            assert!(!key_id.trim().is_empty());
            assert!(key_id.len() <= MAX_RUN_ID_LEN);
            assert_eq!(event.raw_body, body);
            if provider == Provider::WebRunAi {
                assert_eq!(event.run_id, None);
            }
            let _ = (event.status.as_str(), event.status.is_terminal());
            match &probe {
                Ok(probe) => {
                    assert_eq!(probe.dedup_key, event.dedup_key, "probe and event disagree");
                    assert_eq!(probe.run_id, event.run_id);
                }
                Err(err) => panic!(
                    "the summary reads {} but the probe fails: {err}",
                    event.dedup_key
                ),
            }
            if let Err(err) = event.payload() {
                check_error(err);
            }
            let _ = event.result();
            assert_eq!(full.is_ok(), event.payload().is_ok());
        } else {
            assert!(
                full.is_err(),
                "a full parse succeeded where the summary failed"
            );
        }

        if let (Ok(full), Ok(summary)) = (&full, &summary) {
            assert_eq!(full.dedup_key, summary.dedup_key);
            assert_eq!(full.status, summary.status);
            assert_eq!(full.event, summary.event);
            assert_eq!(full.error, summary.error);
            assert_eq!(full.timestamps, summary.timestamps);
            assert_eq!(full.payload().ok(), summary.payload().ok());
            assert_eq!(full.result(), summary.result());
        }
    }

    // The generic readers the payload models are built on.
    match json::from_body::<serde_json::Value>(data) {
        Ok(value) => {
            let object = json::object_from_body::<serde_json::Map<String, serde_json::Value>>(data);
            assert_eq!(object.is_ok(), value.is_object(), "{object:?}");
        }
        Err(err) => check_error(&err),
    }
    let text = String::from_utf8_lossy(data);
    let status = RunStatus::from_text(&text);
    let _ = (status.as_str(), status.to_string());
}

fn check_error(err: &PayloadError) {
    assert_eq!(err.status(), 202);
    let _ = err.to_string();
}
