//! The contract against `RedisStore` on a real Redis, and the failure cases: an outage of a
//! server started by the test, replies lost after the command was applied, a one-node
//! cluster.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use runhook_store::{Claim, RedisStore, StoreError};
use runhook_testkit::redis::HOW_TO_START;
use runhook_testkit::{free_port, redis_url, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::suite::{acquire, fp, Store, KEEP, LONG};

/// A prefix no other test or run shares, so tests run in parallel and again.
fn unique_prefix(test: &str) -> String {
    format!("runhook-test:{}:", unique(test))
}

/// Fails the test on a missing Redis (a test that cannot run must not pass), saying how to
/// start one. Callers still return afterwards, so that the signature stays `()`.
fn missing(what: &str, test: &str) {
    panic!("Redis test `{test}`: {what}. Start Redis with `{HOW_TO_START}` (or set REDIS_URL)");
}

async fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
    RedisStore::builder()
        .prefix(prefix)
        .timeout(timeout)
        .connect(url)
        .await
}

/// The shared Redis under a fresh prefix.
async fn shared_store(test: &str) -> Option<Store> {
    let url = redis_url();
    match connect(&url, &unique_prefix(test), Duration::from_secs(2)).await {
        Ok(store) => Some(Arc::new(store)),
        Err(e) => {
            missing(&format!("Redis at {url} is unreachable ({e})"), test);
            None
        }
    }
}

mod contract {
    contract_tests!(super::shared_store);
}

async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The value at `key` and its time to live in milliseconds.
async fn value_and_pttl(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> (String, i64) {
    redis::pipe()
        .cmd("GET")
        .arg(key)
        .cmd("PTTL")
        .arg(key)
        .query_async(raw)
        .await
        .unwrap()
}

#[tokio::test]
async fn records_live_under_the_prefix_with_their_ttls() {
    let test = "records_under_prefix";
    let url = redis_url();
    let prefix = unique_prefix(test);
    let Ok(store) = connect(&url, &prefix, Duration::from_secs(2)).await else {
        missing("Redis is unreachable", test);
        return;
    };
    assert_eq!(store.prefix(), prefix);
    let store: Store = Arc::new(store);
    let mut raw = raw_connection(&url).await;
    let key = format!("{prefix}skyvern:wr_1");

    let token = acquire(&store, "skyvern:wr_1", LONG, "body").await;
    let (value, pttl) = value_and_pttl(&mut raw, &key).await;
    assert!(value.starts_with(&format!("i{token}")), "{value}");
    assert!(value.ends_with(&fp("body").to_string()), "{value}");
    assert!(pttl > 25_000 && pttl <= 30_000, "{pttl}");

    store
        .complete("skyvern:wr_1", &token, Duration::from_secs(5))
        .await
        .unwrap();
    let (value, pttl) = value_and_pttl(&mut raw, &key).await;
    assert!(value.starts_with(&format!("d{token}")), "{value}");
    assert!(pttl > 3_000 && pttl <= 5_000, "{pttl}");

    // A value some other program wrote under our prefix is reported, not misread.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}foreign"))
        .arg("hello")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut raw)
        .await
        .unwrap();
    let err = store.claim("foreign", LONG, fp("b")).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn malformed_url_is_a_config_error() {
    let err = RedisStore::connect("not a url").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidConfig { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// A redis-server of the test's own.

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts `redis-server` on `port` with no persistence; `None` when the binary is missing.
    fn start(port: u16, extra: &[&str]) -> Option<Server> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn assert_unavailable(
    result: Result<impl std::fmt::Debug, StoreError>,
    started: Instant,
    bound: Duration,
) {
    let elapsed = started.elapsed();
    match result {
        Err(e @ StoreError::Unavailable { .. }) => {
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(e.retry_after().is_some());
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(elapsed <= bound, "took {elapsed:?}, more than {bound:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_fast_with_unavailable_and_recovers_after_restart() {
    let test = "outage";
    let port = free_port();
    let Some(mut server) = Server::start(port, &[]) else {
        missing("redis-server is not installed", test);
        return;
    };
    let timeout = Duration::from_millis(500);
    // A call may spend one timeout on the command and one reading the record back.
    let bound = timeout * 2 + Duration::from_millis(500);
    let store: Store = Arc::new(
        connect(&server.url(), &unique_prefix(test), timeout)
            .await
            .unwrap(),
    );
    let token = acquire(&store, "run-1", LONG, "b").await;

    server.stop();
    for _ in 0..3 {
        let t = Instant::now();
        assert_unavailable(store.claim("run-2", LONG, fp("b")).await, t, bound);
        let t = Instant::now();
        assert_unavailable(store.complete("run-1", &token, KEEP).await, t, bound);
        let t = Instant::now();
        assert_unavailable(store.release("run-1", &token).await, t, bound);
    }

    let _server = Server::start(port, &[]).expect("redis-server restarts");
    let deadline = Instant::now() + Duration::from_secs(15);
    let claim = loop {
        match store.claim("run-3", LONG, fp("b")).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "store did not recover after restart: {e}"
                );
                assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let token = claim.token().expect("a fresh server has no record");
    store.complete("run-3", &token, KEEP).await.unwrap();
}

/// Redis paused (SIGSTOP) with a claim queued: the claim's reply is lost and so is its read
/// back, so the caller answers 503; when Redis goes on, the claim is applied with a token
/// nobody has. The store releases it as soon as Redis answers, so the sender's retry claims the
/// run at once instead of finding it in flight for the whole lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_applied_after_its_reply_was_lost_is_released_when_redis_returns() {
    let test = "lost_claim";
    let redis = runhook_testkit::PrivateRedis::start(&[]);
    let timeout = Duration::from_millis(300);
    let store: Store = Arc::new(
        connect(&redis.url(), &unique_prefix(test), timeout)
            .await
            .unwrap(),
    );
    redis.pause();
    let lost = store.claim("run-lost", LONG, fp("b")).await;
    assert!(
        matches!(lost, Err(StoreError::Unavailable { .. })),
        "{lost:?}"
    );
    redis.resume();
    // Within a couple of seconds, not LONG: the lost claim was released.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match store.claim("run-lost", LONG, fp("b")).await {
            Ok(Claim::Acquired(_)) => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "the run stayed claimed by the lost claim: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Replies lost after the command was applied: a TCP relay that, when armed, holds the next
// reply from Redis longer than the store's timeout (later replies queue behind it).

struct Relay {
    port: u16,
    stall: Arc<AtomicBool>,
}

async fn relay_to(upstream: String, hold: Duration) -> Relay {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stall = Arc::new(AtomicBool::new(false));
    let armed = stall.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
            });
            let armed = armed.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if armed.swap(false, Ordering::SeqCst) {
                        tokio::time::sleep(hold).await;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Relay { port, stall }
}

/// `host:port` of a `redis://[user:pass@]host:port[/db]` URL.
fn redis_addr(url: &str) -> Option<String> {
    let rest = url.strip_prefix("redis://")?;
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit('@').next()?;
    host_port.contains(':').then(|| host_port.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_is_resolved_by_reading_the_token_back() {
    let test = "lost_reply";
    let url = redis_url();
    let Some(addr) = redis_addr(&url) else {
        missing(
            &format!("REDIS_URL {url} is not of the form redis://host:port"),
            test,
        );
        return;
    };
    let prefix = unique_prefix(test);
    let Ok(direct) = connect(&url, &prefix, Duration::from_secs(2)).await else {
        missing("Redis is unreachable", test);
        return;
    };
    let direct: Store = Arc::new(direct);
    let timeout = Duration::from_millis(400);
    let relay = relay_to(addr.clone(), Duration::from_millis(650)).await;
    // The same URL (credentials, database) through the relay.
    let relayed_url = url.replacen(&addr, &format!("127.0.0.1:{}", relay.port), 1);
    let relayed: Store = Arc::new(connect(&relayed_url, &prefix, timeout).await.unwrap());
    // Warm up: the scripts are loaded, the connection is up.
    let t = acquire(&relayed, "warm", LONG, "b").await;
    relayed.complete("warm", &t, KEEP).await.unwrap();
    assert!(relayed.claim("warm", LONG, fp("b")).await.is_ok());

    // The SET is applied, its reply comes after the timeout: the read-back finds our token.
    relay.stall.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let token = match relayed.claim("run-1", LONG, fp("b")).await {
        Ok(Claim::Acquired(t)) => t,
        other => panic!("expected Acquired after reading back, got {other:?}"),
    };
    assert!(started.elapsed() >= timeout, "the reply was not held");
    // It really is the stored token: another connection sees it in flight, and it completes.
    assert!(matches!(
        direct.claim("run-1", LONG, fp("b")).await.unwrap(),
        Claim::InFlight { .. }
    ));

    // The completing script runs, its reply is late: the read-back finds our done record.
    relay.stall.store(true, Ordering::SeqCst);
    let started = Instant::now();
    relayed.complete("run-1", &token, KEEP).await.unwrap();
    assert!(started.elapsed() >= timeout, "the reply was not held");
    assert_eq!(
        direct.claim("run-1", LONG, fp("b")).await.unwrap(),
        Claim::Done { same_payload: true }
    );

    // Same for a release.
    let token = acquire(&relayed, "run-2", LONG, "b").await;
    relay.stall.store(true, Ordering::SeqCst);
    let started = Instant::now();
    relayed.release("run-2", &token).await.unwrap();
    assert!(started.elapsed() >= timeout, "the reply was not held");
    acquire(&direct, "run-2", LONG, "b").await;
}

// ---------------------------------------------------------------------------------------------
// Redis Cluster: every call is single-key, so a cluster connection routes it.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_holds_on_a_one_node_cluster() {
    let test = "cluster";
    let port = free_port();
    let conf: PathBuf =
        std::env::temp_dir().join(format!("runhook-nodes-{port}-{}.conf", std::process::id()));
    let conf_arg = conf.to_string_lossy().into_owned();
    let Some(server) = Server::start(
        port,
        &[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &conf_arg,
        ],
    ) else {
        missing("redis-server is not installed", test);
        return;
    };
    let mut admin = raw_connection(&server.url()).await;
    // CLUSTER ADDSLOTS with every slot (ADDSLOTSRANGE is Redis 7 only).
    let mut addslots = redis::cmd("CLUSTER");
    addslots.arg("ADDSLOTS");
    for slot in 0..16384u16 {
        addslots.arg(slot);
    }
    let _: () = addslots.query_async(&mut admin).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut admin)
            .await
            .unwrap();
        if info.contains("cluster_state:ok") {
            break;
        }
        assert!(Instant::now() < deadline, "cluster did not come up: {info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let conn = redis::cluster::ClusterClient::new(vec![server.url()])
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let store: Store = Arc::new(
        RedisStore::builder()
            .prefix(unique_prefix(test))
            .timeout(Duration::from_secs(2))
            .with_connection(conn),
    );
    // Keys in different slots; scripts are loaded on first use (NOSCRIPT → SCRIPT LOAD).
    for key in ["skyvern:wr_1", "tinyfish:run_2", "{tagged}:3"] {
        let token = acquire(&store, key, LONG, "b").await;
        assert!(matches!(
            store.claim(key, LONG, fp("b")).await.unwrap(),
            Claim::InFlight {
                same_payload: true,
                ..
            }
        ));
        store.renew(key, &token, LONG).await.unwrap();
        store.complete(key, &token, KEEP).await.unwrap();
        assert_eq!(
            store.claim(key, LONG, fp("other")).await.unwrap(),
            Claim::Done {
                same_payload: false
            }
        );
    }
    crate::suite::one_winner_among_64_concurrent_claims(store).await;
    drop(server);
    let _ = std::fs::remove_file(conf);
}

/// The stream hand-off's scripts: a claim and its entry written together or not at all, a
/// done mark that removes its entry (and can be repeated), and the renewal of many claims.
#[tokio::test]
async fn claim_and_append_write_both_or_nothing_and_complete_and_remove_settles_the_entry() {
    use runhook_store::{ClaimAppended, IdempotencyStore, StreamAppend, StreamEntry, Token};
    let prefix = unique_prefix("stream_steps");
    let url = redis_url();
    let store = connect(&url, &prefix, Duration::from_secs(2))
        .await
        .unwrap_or_else(|e| panic!("Redis at {url}: {e}. Start it with `{HOW_TO_START}`"));
    let mut raw = raw_connection(&url).await;
    let stream = format!("{prefix}stream");
    let _: redis::Value = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut raw)
        .await
        .unwrap();
    let xlen = |raw: &mut redis::aio::MultiplexedConnection| {
        let mut raw = raw.clone();
        let stream = stream.clone();
        async move {
            redis::cmd("XLEN")
                .arg(&stream)
                .query_async::<usize>(&mut raw)
                .await
                .unwrap()
        }
    };
    let fields: [(&str, &[u8]); 2] = [("key", b"run-1"), ("body", b"{}")];
    let append = |capacity| StreamAppend {
        stream: &stream,
        capacity,
        fields: &fields,
    };

    // Won: the claim and the entry.
    let token = Token::random();
    let first = store
        .claim_and_append("run-1", token, LONG, fp("a"), &append(2))
        .await
        .unwrap();
    assert_eq!(first, ClaimAppended::Appended);
    assert_eq!(xlen(&mut raw).await, 1);
    // Taken: a duplicate writes nothing.
    let again = store
        .claim_and_append("run-1", Token::random(), LONG, fp("a"), &append(2))
        .await
        .unwrap();
    assert!(
        matches!(
            again,
            ClaimAppended::Taken(Claim::InFlight {
                same_payload: true,
                ..
            })
        ),
        "{again:?}"
    );
    assert_eq!(xlen(&mut raw).await, 1);
    // Full: neither the claim nor the entry.
    let full = store
        .claim_and_append("run-2", Token::random(), LONG, fp("b"), &append(1))
        .await
        .unwrap();
    assert_eq!(full, ClaimAppended::Full);
    assert_eq!(xlen(&mut raw).await, 1);
    let claimed = IdempotencyStore::claim(&store, "run-2", LONG, fp("b")).await;
    assert!(
        claimed.unwrap().is_acquired(),
        "nothing of run-2 was written"
    );

    // Renewals: the holder's token renews, another's does not.
    let renewed = store
        .renew_many(&[("run-1", token), ("run-2", Token::random())], LONG)
        .await
        .unwrap();
    assert_eq!(renewed, [true, false]);

    // The entry is read by the group, then settled with its run's done mark.
    type Read = Vec<(String, Vec<(String, Vec<Vec<u8>>)>)>;
    let read: Read = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("c")
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut raw)
        .await
        .unwrap();
    let id = read[0].1[0].0.clone();
    let entry = StreamEntry {
        stream: &stream,
        group: "g",
        id: &id,
    };
    let other = store
        .complete_and_remove("run-1", &Token::random(), KEEP, &entry)
        .await;
    assert!(matches!(other, Err(StoreError::NotHolder)), "{other:?}");
    assert_eq!(xlen(&mut raw).await, 1, "another token removes nothing");
    for _ in 0..2 {
        // Repeated after a lost reply: the same answer.
        store
            .complete_and_remove("run-1", &token, KEEP, &entry)
            .await
            .unwrap();
    }
    assert_eq!(xlen(&mut raw).await, 0);
    let (pending, ..): (usize, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(&stream)
        .arg("g")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(pending, 0, "the entry was acknowledged");
    assert!(matches!(
        store
            .claim_and_append("run-1", Token::random(), LONG, fp("a"), &append(2))
            .await
            .unwrap(),
        ClaimAppended::Taken(Claim::Done { same_payload: true })
    ));
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .arg(format!("{prefix}run-1"))
        .arg(format!("{prefix}run-2"))
        .query_async(&mut raw)
        .await
        .unwrap();
}
