//! The whole receiving pipeline, `Receiver::receive` (and `InlineReceiver::claim_event`), on
//! arbitrary headers, path and body, against receivers configured as an application would,
//! with their background workers running between deliveries.
//!
//! Flags: bits 0-2 choose the route:
//!
//! | | provider | authentication | notes |
//! |---|---|---|---|
//! | 0 | Skyvern | `SkyvernSignature` with the canonical fallback | |
//! | 1 | TinyFish | `Unsigned` | |
//! | 2 | WebRun | `Authorization: Bearer webrun-fuzz-token` | |
//! | 3 | WebRun `ai_response` | the same token | |
//! | 4 | SmartBrowse | secret last path segment `s3cr3t-segment`, or the token | |
//! | 5 | SmartBrowse | Standard Webhooks (clock fixed at 1614265330) | |
//! | 6 | Skyvern | `SkyvernSignature` | inline style (`InlineReceiver::claim_event`), no handler |
//! | 7 | TinyFish | `Unsigned` | 512-byte body limit; store of 64 runs, 8 in flight |
//!
//! Bit 3 signs the delivery correctly (Skyvern and Standard Webhooks routes), so that the
//! fuzzer reaches past authentication; bit 4 completes an extractor claim (else it is dropped,
//! which releases it).
//!
//! Checked: no panic or hang; the status is one of the response policy's (200, 202, 401, 413,
//! 503) and matches what happened; a 503 carries `Retry-After`; each call counts as exactly one
//! received delivery; memory stays bounded (libFuzzer's `-rss_limit_mb`) while distinct runs
//! and dead letters pile up.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use runhook::payload::{Provider, RunEvent};
use runhook::store::{IdempotencyStore, MemoryStore};
use runhook::verify::{sign_skyvern, FixedClock};
use runhook::{
    AnyOf, HeaderToken, InlineReceiver, Outcome, OutcomeKind, PathSecret, Receiver,
    ReceiverBuilder, Secret, SkyvernSignature, StandardWebhooks, Unsigned,
};
use runhook_fuzz::{hmac_sha256, Message};
use tokio::runtime::Runtime;

const SKYVERN_KEY: &str = "sk_fuzz_current_key";
const TOKEN: &str = "Bearer webrun-fuzz-token";
const PATH_SECRET: &str = "s3cr3t-segment";
const STANDARD_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STANDARD_NOW: i64 = 1_614_265_330;

struct Harness {
    runtime: Runtime,
    receivers: Vec<Route>,
}

/// A route's receiver: the background style, or the inline one (extractor, middleware).
enum Route {
    Background(Receiver),
    Inline(InlineReceiver),
}

impl Route {
    fn received(&self) -> u64 {
        match self {
            Route::Background(receiver) => receiver.stats().received,
            Route::Inline(receiver) => receiver.stats().received,
        }
    }
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime");
        let receivers = runtime.block_on(async { routes().into_iter().map(build).collect() });
        Harness { runtime, receivers }
    })
}

fn secret(value: &str) -> Secret {
    Secret::new(value).unwrap()
}

fn routes() -> Vec<(ReceiverBuilder, bool)> {
    let token = || HeaderToken::authorization(secret(TOKEN));
    let small_store: Arc<dyn IdempotencyStore> = Arc::new(
        MemoryStore::builder()
            .capacity(64)
            .max_in_flight(8)
            .shards(1)
            .build(),
    );
    vec![
        (
            Receiver::builder(
                Provider::Skyvern,
                SkyvernSignature::new(secret(SKYVERN_KEY)).with_canonical_fallback(),
            ),
            true,
        ),
        (
            Receiver::builder(
                Provider::TinyFish,
                Unsigned::accept_without_authentication(),
            ),
            true,
        ),
        (Receiver::builder(Provider::WebRun, token()), true),
        (Receiver::builder(Provider::WebRunAi, token()), true),
        (
            Receiver::builder(
                Provider::SmartBrowse,
                AnyOf::new(vec![
                    Box::new(PathSecret::last_segment(secret(PATH_SECRET))),
                    Box::new(token()),
                ])
                .unwrap(),
            ),
            true,
        ),
        (
            Receiver::builder(
                Provider::SmartBrowse,
                StandardWebhooks::new(Secret::from_standard_webhooks(STANDARD_KEY).unwrap())
                    .with_clock(FixedClock(STANDARD_NOW)),
            ),
            true,
        ),
        (
            Receiver::builder(
                Provider::Skyvern,
                SkyvernSignature::new(secret(SKYVERN_KEY)),
            ),
            false,
        ),
        (
            Receiver::builder(
                Provider::TinyFish,
                Unsigned::accept_without_authentication(),
            )
            .body_limit(512)
            .store(small_store),
            true,
        ),
    ]
}

fn build((builder, with_handler): (ReceiverBuilder, bool)) -> Route {
    let builder = builder.lease(Duration::from_secs(60));
    if !with_handler {
        return Route::Inline(builder.build_inline().expect("an inline receiver"));
    }
    let receiver = builder
        .handler(|event: Arc<RunEvent>| async move {
            // Reads the whole payload, as a real handler would.
            let _ = event.result();
            Ok::<(), std::io::Error>(())
        })
        .workers(2)
        .build()
        .expect("a receiver");
    Route::Background(receiver)
}

fuzz_target!(|data: &[u8]| {
    let Some(mut message) = Message::parse(data) else {
        return;
    };
    let route = usize::from(message.flags & 7);
    if message.flag(3) {
        sign(route, &mut message);
    }
    let harness = harness();
    let receiver = &harness.receivers[route];
    let body = Bytes::copy_from_slice(&message.body);
    let before = receiver.received();
    harness.runtime.block_on(async {
        match receiver {
            Route::Inline(receiver) => match receiver
                .claim_event(&message.headers, &message.path, body)
                .await
            {
                Ok(claimed) => {
                    assert_eq!(claimed.event.provider, Provider::Skyvern);
                    if message.flag(4) {
                        claimed
                            .complete()
                            .await
                            .expect("the memory store completes");
                    }
                }
                Err(outcome) => {
                    check(&outcome);
                    assert!(!matches!(outcome.kind, OutcomeKind::Accepted));
                }
            },
            Route::Background(receiver) => check(
                &receiver
                    .receive(&message.headers, &message.path, body)
                    .await,
            ),
        }
        // Let the workers (and released claims) run before the next delivery.
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    });
    assert_eq!(receiver.received(), before + 1);
});

/// Signs the delivery as its sender would, with what the route accepts.
fn sign(route: usize, message: &mut Message<'_>) {
    match route {
        0 | 6 => {
            let signature = sign_skyvern(&secret(SKYVERN_KEY), &message.body);
            message.set_header(SkyvernSignature::SIGNATURE_HEADER, signature);
        }
        5 => {
            let key = Secret::from_standard_webhooks(STANDARD_KEY).unwrap();
            let (Some(id), Some(ts)) = (
                message.single("webhook-id"),
                message.single("webhook-timestamp"),
            ) else {
                return;
            };
            let mac = hmac_sha256(key.expose(), &[id, b".", ts, b".", &message.body]);
            let value = format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(mac)
            );
            message.set_header("webhook-signature", value);
        }
        _ => {}
    }
}

/// The status is the response policy's for what happened.
fn check(outcome: &Outcome) {
    let status = outcome.status.as_u16();
    match &outcome.kind {
        OutcomeKind::Accepted => assert_eq!(status, 200),
        OutcomeKind::Duplicate { in_flight, .. } => {
            assert!(
                status == 200 || (*in_flight && status == 503),
                "{outcome:?}"
            );
        }
        OutcomeKind::Unauthorized(_) => assert_eq!(status, 401),
        OutcomeKind::TooLarge { .. } => assert_eq!(status, 413),
        OutcomeKind::Unparseable(_) | OutcomeKind::UnusableKey(_) => assert_eq!(status, 202),
        OutcomeKind::Unavailable(_) => assert_eq!(status, 503),
        other => panic!("unexpected outcome {other:?}"),
    }
    if status == 503 {
        assert!(outcome.retry_after.is_some(), "503 without Retry-After");
    }
    if matches!(
        outcome.kind,
        OutcomeKind::Accepted | OutcomeKind::Duplicate { .. }
    ) {
        assert!(outcome.probe.is_some());
    }
    let _ = outcome.body_text();
}
