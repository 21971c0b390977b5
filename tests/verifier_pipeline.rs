//! What the receiver does with the verifier beyond accept/reject, over real axum and actix-web
//! servers and a real HTTP client: the canonical fallback (run off the async workers, counted,
//! and its signed bytes handed to the handler), and the verifier's credential headers kept
//! out of dead letters.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runhook::canonical::canonicalize;
use runhook::dead_letter::MemoryDeadLetters;
use runhook::payload::{Provider, RunEvent};
use runhook::receiver::DEFAULT_BODY_LIMIT;
use runhook::verify::{sign_skyvern, AuthError, Delivery, Verified};
use runhook::{HeaderToken, Receiver, Secret, SkyvernSignature, Unsigned, Verifier};
use tokio::sync::Notify;

#[macro_use]
#[path = "support/servers.rs"]
mod servers;
use runhook_testkit::skyvern::SIGNATURE_HEADER as SIGNATURE;
use runhook_testkit::unique;
use servers::routes::*;
use servers::{serve, Framework};

const SKYVERN_KEY: &str = "sk_verifier_pipeline_key";

/// Every handler call, in order.
#[derive(Default)]
struct Calls {
    events: Mutex<Vec<Arc<RunEvent>>>,
    changed: Notify,
}

impl Calls {
    fn handler(self: &Arc<Self>) -> impl runhook::Handler {
        let calls = self.clone();
        move |event: Arc<RunEvent>| {
            let calls = calls.clone();
            async move {
                calls.events.lock().unwrap().push(event);
                calls.changed.notify_waiters();
                Ok::<(), std::io::Error>(())
            }
        }
    }

    /// The call for `run_id`, waiting for it at most 10 s.
    async fn wait_for(&self, run_id: &str) -> Arc<RunEvent> {
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let events = self.events.lock().unwrap().clone();
                if let Some(event) = events
                    .into_iter()
                    .find(|e| e.run_id.as_deref() == Some(run_id))
                {
                    return event;
                }
                changed.await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no handler call for {run_id}"))
    }
}

async fn post(url: String, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let reply = servers::post(&client, &url, headers, body).await;
    (reply.status, reply.text)
}

/// A body re-serialized on its way (spaces, `30.0`, an escaped character) is accepted through
/// the canonical fallback: counted once, and the handler gets the canonical bytes Skyvern
/// signed. Exact and forged deliveries are not counted.
async fn reserialized_body_is_accepted_through_the_fallback(framework: Framework) {
    let calls = Arc::new(Calls::default());
    let key = Secret::new(SKYVERN_KEY).unwrap();
    let receiver = Receiver::builder(
        Provider::Skyvern,
        SkyvernSignature::new(key.clone()).with_canonical_fallback(),
    )
    .handler(calls.handler())
    .build()
    .unwrap();
    let server = serve(framework, vec![(SKYVERN_ROUTE, receiver.clone())]).await;

    let id = unique("tsk_reserialized");
    let reserialized = format!(
        "{{ \"run_id\": \"{id}\", \"status\": \"completed\",\n  \"output\": {{ \"price\": 30.0, \"title\": \"caf\\u00e9\" }} }}"
    );
    let canonical = canonicalize(reserialized.as_bytes()).unwrap();
    let expected = format!(
        r#"{{"run_id":"{id}","status":"completed","output":{{"price":30,"title":"café"}}}}"#
    );
    assert_eq!(canonical, expected.as_bytes());
    let signature = sign_skyvern(&key, &canonical);
    let answer = post(
        server.url(SKYVERN_ROUTE),
        &[(SIGNATURE, &signature)],
        reserialized.clone().into_bytes(),
    )
    .await;
    assert_eq!(answer, (200, "accepted".to_string()));
    let event = calls.wait_for(&id).await;
    assert_eq!(event.signed_body.as_deref(), Some(&canonical[..]));
    assert_eq!(&event.raw_body[..], reserialized.as_bytes());
    assert_eq!(receiver.stats().canonical_fallback_matches, 1);

    // The exact bytes: accepted, not counted, no signed body.
    let exact_id = unique("tsk_exact");
    let exact = format!(r#"{{"run_id":"{exact_id}","status":"completed"}}"#).into_bytes();
    let signature = sign_skyvern(&key, &exact);
    let answer = post(server.url(SKYVERN_ROUTE), &[(SIGNATURE, &signature)], exact).await;
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_eq!(calls.wait_for(&exact_id).await.signed_body, None);

    // Forged: refused, not counted.
    let forged = "0".repeat(64);
    let answer = post(
        server.url(SKYVERN_ROUTE),
        &[(SIGNATURE, &forged)],
        reserialized.into_bytes(),
    )
    .await;
    assert_eq!(answer.0, 401, "{answer:?}");
    let stats = receiver.stats();
    assert_eq!(stats.canonical_fallback_matches, 1);
    assert_eq!(stats.rejected_unauthorized, 1);
}

/// A scheme whose exact check always fails and whose fallback takes 1.5 s.
struct SlowFallback;

impl Verifier for SlowFallback {
    fn verify(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        std::thread::sleep(Duration::from_millis(1500));
        Unsigned::accept_without_authentication().verify(delivery)
    }

    fn verify_exact(&self, _delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        Err(AuthError::NoSchemeMatched(Vec::new()))
    }

    fn has_fallback(&self) -> bool {
        true
    }
}

/// On a single-threaded runtime (server and client alike), a slow fallback does not hold up
/// another route: it runs on the blocking pool. (Run inline, it would stall the only thread,
/// and the other request, for 1.5 s.)
async fn slow_fallback_does_not_block_the_async_workers(framework: Framework) {
    let calls = Arc::new(Calls::default());
    let slow = Receiver::builder(Provider::Skyvern, SlowFallback)
        .handler(calls.handler())
        .build()
        .unwrap();
    let fast = Receiver::builder(Provider::Skyvern, Unsigned::accept_without_authentication())
        .handler(calls.handler())
        .build()
        .unwrap();
    let server = serve(
        framework,
        vec![(SKYVERN_ROUTE, slow.clone()), (WEBRUN_ROUTE, fast)],
    )
    .await;
    let slow_id = unique("tsk_slow");
    let slow_body = format!(r#"{{"run_id":"{slow_id}","status":"completed"}}"#).into_bytes();
    // Measured from before the slow request: a stalled thread would also delay this sleep.
    let started = Instant::now();
    let slow_request = tokio::spawn(post(server.url(SKYVERN_ROUTE), &[], slow_body));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fast_body = format!(
        r#"{{"run_id":"{}","status":"completed"}}"#,
        unique("tsk_fast")
    );
    let answer = post(server.url(WEBRUN_ROUTE), &[], fast_body.into_bytes()).await;
    let took = started.elapsed();
    assert_eq!(answer.0, 200, "{answer:?}");
    assert!(
        took < Duration::from_millis(1000),
        "the other route was answered after {took:?}"
    );
    assert_eq!(slow_request.await.unwrap().0, 200);
    calls.wait_for(&slow_id).await;
}

/// A genuine delivery that is not the provider's payload is dead-lettered without the
/// verifier's custom credential header, its value, or `set-cookie`.
async fn custom_credential_header_stays_out_of_dead_letters(framework: Framework) {
    const HEADER: &str = "x-hook-auth";
    const TOKEN: &str = "hook-credential-value-7Qm2";
    let letters = Arc::new(MemoryDeadLetters::default());
    let calls = Arc::new(Calls::default());
    let receiver = Receiver::builder(
        Provider::WebRun,
        HeaderToken::new("X-Hook-Auth", Secret::new(TOKEN).unwrap()).unwrap(),
    )
    .dead_letters(letters.clone())
    .handler(calls.handler())
    .build()
    .unwrap();
    let server = serve(framework, vec![(WEBRUN_ROUTE, receiver.clone())]).await;
    let no_task_id = br#"{"event":"task_completed","sessionId":"s-1"}"#.to_vec();
    let answer = post(
        server.url(WEBRUN_ROUTE),
        &[
            (HEADER, TOKEN),
            ("set-cookie", "session=leaked-cookie"),
            ("x-request-id", "req-credential-1"),
        ],
        no_task_id.clone(),
    )
    .await;
    assert_eq!(answer.0, 202, "{answer:?}");
    let letters = letters.letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(&letter.body[..], &no_task_id[..]);
    assert!(
        letter
            .headers
            .iter()
            .any(|(n, v)| n == "x-request-id" && v == "req-credential-1"),
        "{letter:?}"
    );
    for (name, value) in &letter.headers {
        assert!(
            !name.eq_ignore_ascii_case(HEADER) && !name.eq_ignore_ascii_case("set-cookie"),
            "credential header `{name}` kept: {letter:?}"
        );
        assert!(
            !value.contains(TOKEN) && !value.contains("leaked-cookie"),
            "credential value kept: {letter:?}"
        );
    }
}

#[test]
fn fallback_bound_defaults_to_the_body_limit() {
    assert_eq!(
        SkyvernSignature::DEFAULT_CANONICAL_MAX_LEN,
        DEFAULT_BODY_LIMIT
    );
}

per_framework!(
    reserialized_body_is_accepted_through_the_fallback,
    custom_credential_header_stays_out_of_dead_letters,
);

mod single_worker {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn axum_slow_fallback_does_not_block_the_async_workers() {
        slow_fallback_does_not_block_the_async_workers(Framework::Axum).await;
    }
}
