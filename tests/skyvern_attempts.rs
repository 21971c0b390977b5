//! Skyvern workflow runs retried under one run id (`webhook_on_retry: "every_attempt"`), over
//! real HTTP on axum and actix-web: the interim event (attempt 1, `retry_pending: true`) and
//! the final one (attempt 2, `completed`) each reach the handler once, the handler knows which
//! is final, replays of both are duplicates, and a route that skips interim events runs only
//! the final one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use runhook::payload::{RunEvent, RunPhase, RunStatus};
use runhook::receiver::Interim;
use runhook::{Receiver, Secret};
use runhook_testkit::skyvern::{interim_body, retried_final_body, signed_headers};
use runhook_testkit::{unique, wait_for};

#[macro_use]
#[path = "support/servers.rs"]
mod servers;
use servers::{post, serve, Framework, Reply};

const KEY: &str = "sk_attempts_test_key";
const ROUTE: &str = "/webhooks/skyvern";
const WAIT: Duration = Duration::from_secs(10);

/// Every event the handler got, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Arc<RunEvent>>>>);

impl Seen {
    fn receiver(&self, interim: Interim) -> Receiver {
        let seen = self.clone();
        Receiver::skyvern(Secret::new(KEY).unwrap())
            .interim(interim)
            .handler(move |event: Arc<RunEvent>| {
                let seen = seen.clone();
                async move {
                    seen.0.lock().unwrap().push(event);
                    Ok::<(), std::io::Error>(())
                }
            })
            .workers(1)
            .build()
            .unwrap()
    }

    fn of(&self, run_id: &str) -> Vec<Arc<RunEvent>> {
        let seen = self.0.lock().unwrap();
        let mine = seen.iter().filter(|e| e.run_id.as_deref() == Some(run_id));
        mine.cloned().collect()
    }

    async fn wait(&self, run_id: &str, count: usize) -> Vec<Arc<RunEvent>> {
        let what = format!("{count} events of {run_id}");
        wait_for(WAIT, what, || {
            Some(self.of(run_id)).filter(|e| e.len() >= count)
        })
        .await
    }
}

async fn deliver(client: &reqwest::Client, url: &str, body: &[u8]) -> Reply {
    let headers = signed_headers(KEY, body);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    post(client, url, &headers, body.to_vec()).await
}

async fn interim_then_final_each_once(framework: Framework) {
    let seen = Seen::default();
    let server = serve(framework, vec![(ROUTE, seen.receiver(Interim::Process))]).await;
    let url = server.url(ROUTE);
    let client = reqwest::Client::new();
    let run = unique("wr_retried");
    let interim = interim_body(&run, 1, "2026-09-15T12:35:00");
    let last = retried_final_body(&run, 2);

    deliver(&client, &url, &interim)
        .await
        .assert(200, "accepted");
    seen.wait(&run, 1).await;
    deliver(&client, &url, &last).await.assert(200, "accepted");
    let events = seen.wait(&run, 2).await;
    assert_eq!(events[0].attempt, Some(1));
    assert!(!events[0].phase.is_final());
    assert_eq!(events[0].status, RunStatus::Failed);
    assert_eq!(events[0].dedup_key, format!("skyvern:{run}#attempt-1"));
    assert_eq!(
        events[0].phase,
        RunPhase::Interim {
            next_attempt_at: Some("2026-09-15T12:35:00".into())
        }
    );
    assert_eq!(events[1].attempt, Some(2));
    assert!(events[1].phase.is_final());
    assert_eq!(events[1].status, RunStatus::Completed);
    assert_eq!(events[1].dedup_key, format!("skyvern:{run}"));

    // Replays of both (the final one re-driven under Skyvern's lease, too) are duplicates.
    for body in [&interim, &last, &interim, &last] {
        let reply = deliver(&client, &url, body).await;
        reply.assert(200, "duplicate: already received");
    }
    // A sentinel behind the replays on the one worker: once it ran, any extra call would show.
    let sentinel = unique("wr_sentinel");
    deliver(&client, &url, &retried_final_body(&sentinel, 1)).await;
    seen.wait(&sentinel, 1).await;
    assert_eq!(seen.of(&run).len(), 2);
}

async fn a_final_event_is_never_swallowed_by_an_interim_one(framework: Framework) {
    // The final event first (a reordered delivery), then the interim: still one each.
    let seen = Seen::default();
    let server = serve(framework, vec![(ROUTE, seen.receiver(Interim::Process))]).await;
    let url = server.url(ROUTE);
    let client = reqwest::Client::new();
    let run = unique("wr_reordered");
    deliver(&client, &url, &retried_final_body(&run, 2))
        .await
        .assert(200, "accepted");
    deliver(&client, &url, &interim_body(&run, 1, "2026-09-15T12:35:00"))
        .await
        .assert(200, "accepted");
    let events = seen.wait(&run, 2).await;
    let finals = events.iter().filter(|e| e.phase.is_final()).count();
    assert_eq!(finals, 1);
}

async fn skipped_interim_events_are_answered_but_not_run(framework: Framework) {
    let seen = Seen::default();
    let receiver = seen.receiver(Interim::Skip);
    let stats_of = receiver.clone();
    let server = serve(framework, vec![(ROUTE, receiver)]).await;
    let url = server.url(ROUTE);
    let client = reqwest::Client::new();
    let run = unique("wr_skipped");
    let reply = deliver(&client, &url, &interim_body(&run, 1, "2026-09-15T12:35:00")).await;
    reply.assert(200, "accepted: interim attempt, skipped");
    deliver(&client, &url, &retried_final_body(&run, 2))
        .await
        .assert(200, "accepted");
    let events = seen.wait(&run, 1).await;
    assert!(events[0].phase.is_final());
    // A second interim (attempt 2 of a longer policy) is skipped too; the final's replay is a
    // duplicate.
    let reply = deliver(&client, &url, &interim_body(&run, 2, "2026-09-15T12:40:00")).await;
    reply.assert(200, "accepted: interim attempt, skipped");
    let reply = deliver(&client, &url, &retried_final_body(&run, 2)).await;
    reply.assert(200, "duplicate: already received");
    let sentinel = unique("wr_sentinel");
    deliver(&client, &url, &retried_final_body(&sentinel, 1)).await;
    seen.wait(&sentinel, 1).await;
    assert_eq!(seen.of(&run).len(), 1);
    let stats = stats_of.stats();
    assert_eq!(stats.interim_skipped, 2);
    assert_eq!(stats.accepted, 2);
}

/// A forged interim event is refused like any other delivery.
async fn a_forged_interim_event_is_refused(framework: Framework) {
    let seen = Seen::default();
    let server = serve(framework, vec![(ROUTE, seen.receiver(Interim::Skip))]).await;
    let url = server.url(ROUTE);
    let client = reqwest::Client::new();
    let body = interim_body(&unique("wr_forged"), 1, "2026-09-15T12:35:00");
    let headers = signed_headers("sk_someone_else", &body);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = post(&client, &url, &headers, body).await;
    assert_eq!(reply.status, 401, "{reply:?}");
}

per_framework!(
    interim_then_final_each_once,
    a_final_event_is_never_swallowed_by_an_interim_one,
    skipped_interim_events_are_answered_but_not_run,
    a_forged_interim_event_is_refused,
);
