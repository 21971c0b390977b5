//! Replays of a run still in flight, against the real binary over loopback with the stream
//! hand-off: a captured signed delivery sent again and again (Skyvern's signatures never
//! expire) is acknowledged without appending its body each time. At most one copy of a run
//! waits in the stream besides the run's own entry, so replays cannot fill Redis or the
//! backlog, and other runs are still taken.
//!
//! Needs Redis on 127.0.0.1:6379 (fails without).

use std::path::Path;
use std::time::Duration;

mod common;
use common::{
    delete_matching, line_counts, redis, require_redis, scratch, skyvern_post, skyvern_route,
    start_serve, unique, xlen, Started as Serve,
};

const SKYVERN_KEY: &str = "sk_test_replays_cli";
const ROUTE: &str = "/webhooks/skyvern";
const REPLAYS: usize = 400;
const CONCURRENCY: usize = 16;

/// A signed Skyvern body of about 1 MiB for `run`.
fn big_body(run: &str) -> Vec<u8> {
    let blob = "x".repeat(1 << 20);
    format!(r#"{{"run_id":"{run}","task_id":"{run}","status":"completed","output":{{"blob":"{blob}"}}}}"#)
        .into_bytes()
}

/// A handler that notes the run started, waits for `release` to exist, then records the run.
fn held_exec(dir: &Path) -> String {
    format!(
        "echo \"$RUNHOOK_RUN_ID\" >> {started}; while [ ! -f {release} ]; do sleep 0.05; done; \
         echo \"$RUNHOOK_RUN_ID\" >> {calls}",
        started = dir.join("started.txt").display(),
        release = dir.join("release").display(),
        calls = dir.join("calls.txt").display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_of_a_run_in_flight_append_it_at_most_once() {
    require_redis();
    let dir = scratch("runhook-replays");
    let prefix = unique("replays");
    let stream = format!("{prefix}:stream:{ROUTE}");
    let exec = held_exec(&dir);
    let redis_url = common::redis_url();
    let mut args = skyvern_route(ROUTE);
    args.extend(["--store", &redis_url, "--queue", "redis-stream"]);
    args.extend(["--redis-prefix", &prefix, "--queue-capacity", "300"]);
    // A duplicate's copy read while its run is still running stays pending until a takeover
    // (the lease and a tenth): a short lease lets the stream drain within the test.
    args.extend(["--lease-secs", "3"]);
    args.extend(["--exec", &exec]);
    let serve: Serve = start_serve(&dir, &args, &[("SKYVERN_API_KEY", SKYVERN_KEY)]);
    let url = format!("{}{ROUTE}", serve.base);
    let client = common::client();
    let mut conn = redis().await;

    let run = unique("replayed");
    let body = big_body(&run);
    let first = skyvern_post(&client, &url, SKYVERN_KEY, &body).send().await;
    assert_eq!(first.unwrap().status().as_u16(), 200, "{}", serve.logs());
    runhook_testkit::wait_until(
        Duration::from_secs(10),
        format_args!("the run's handler started\n{}", serve.logs()),
        || line_counts(&dir.join("started.txt")).contains_key(&run),
    )
    .await;

    // The run is in flight: replay its delivery, CONCURRENCY at a time.
    let mut statuses = Vec::with_capacity(REPLAYS);
    for _ in 0..REPLAYS / CONCURRENCY {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENCY {
            batch.spawn(skyvern_post(&client, &url, SKYVERN_KEY, &body).send());
        }
        while let Some(answer) = batch.join_next().await {
            statuses.push(answer.unwrap().unwrap().status().as_u16());
        }
    }
    assert!(
        statuses.iter().all(|&s| s == 200),
        "{statuses:?}\n{}",
        serve.logs()
    );
    // The run's own entry (running) and at most one copy for all its replays.
    let length = xlen(&mut conn, &stream).await;
    eprintln!("the stream holds {length} entries after {REPLAYS} replays of a run in flight");
    assert!(
        length <= 2,
        "the stream holds {length} entries after {REPLAYS} replays"
    );

    // Another genuine run is still taken.
    let other = unique("other");
    let answer = skyvern_post(&client, &url, SKYVERN_KEY, &big_body(&other))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200, "{}", serve.logs());

    std::fs::write(dir.join("release"), b"").unwrap();
    let calls = dir.join("calls.txt");
    runhook_testkit::wait_until(
        Duration::from_secs(20),
        format_args!("both runs processed\n{}", serve.logs()),
        || {
            let counts = line_counts(&calls);
            counts.contains_key(&run) && counts.contains_key(&other)
        },
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while xlen(&mut conn, &stream).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream did not drain\n{}",
            serve.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serve.stop_ok();
    let counts = line_counts(&calls);
    assert_eq!(counts.get(&run), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&other), Some(&1), "{counts:?}");
    delete_matching(&mut conn, &format!("{prefix}:*")).await;
}
