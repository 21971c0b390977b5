//! `runhook dead-letters`: list the deliveries a receiver set aside, and hand them back.
//!
//! Letters live in a JSON-lines file (`serve --dead-letters FILE`), in a route's dead-letter
//! stream (`<prefix>:stream:<route>:dead`, with `serve --queue redis-stream` and no
//! `--dead-letters`), or in the route's rows of `<schema>.dead_letters` (with
//! `serve --queue postgres`). A file's letters are redriven here, through the handler of a
//! runhook.toml; a stream's or a table's are moved back into the route's queue, where the
//! running `runhook serve` instances process them.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use runhook::dead_letter::{DeadLetterRecord, JsonLinesDeadLetters, RedriveReport};
use runhook::payload::Provider;
use runhook::postgres_queue::{PostgresQueue, PostgresQueueError};
use runhook::store::{PostgresStore, StoreError, DEFAULT_SCHEMA};
use runhook::stream::{ListedDeadLetter, RedisStreamDeadLetters, RedisStreamQueue, StreamError};

use super::serve::store_label;
use crate::serve::app::{open_store, stream_key, AppError, StoreNames};
use crate::serve::config::{ServeConfig, ServeConfigError};
use crate::serve::handlers;

/// Exit status when letters were kept (a redrive that did not hand everything back).
const KEPT: u8 = 1;
/// Exit status for a usage error, an unreadable file or an unreachable Redis.
const USAGE: u8 = 2;
/// The default namespace of the Redis keys, as `runhook serve` uses it.
const DEFAULT_PREFIX: &str = runhook::stream::DEFAULT_NAMESPACE;

/// Arguments of `runhook dead-letters`.
#[derive(Debug, Args)]
#[command(
    after_help = "List a file: runhook dead-letters list --file dead.jsonl\n\
List a route's dead-letter stream: runhook dead-letters list --store redis://127.0.0.1:6379 --path /webhooks/skyvern\n\
List a route's dead letters in Postgres: runhook dead-letters list --store postgres://app@127.0.0.1:5432/app --path /webhooks/skyvern\n\
Redrive a stream's letters: runhook dead-letters redrive --store redis://127.0.0.1:6379 --path /webhooks/skyvern\n\
Redrive a file's letters: runhook dead-letters redrive --file dead.jsonl --config runhook.toml"
)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Print every dead letter as one JSON object per line: provider, dedup_key, run_id,
    /// reason, reason_code, attempts, received_at, headers (credentials never kept), and the
    /// body (`body` when UTF-8, else `body_base64`); stream letters also carry their entry
    /// `id`.
    #[command(
        after_help = "Exit status: 0 listed (possibly none), 2 usage error, unreadable file or unreachable Redis."
    )]
    List(ListArgs),
    /// Hand dead letters back. From a stream (--store, --path): move them into the route's
    /// stream, where running `runhook serve` instances process each once under a fresh claim.
    /// From a file (--file, --config): run the config's [handler] on each (claiming it in the
    /// config's Redis store, if any), and rewrite the file atomically without those that
    /// succeeded.
    #[command(
        after_help = "Exit status: 0 every chosen letter handed back, 1 some kept (printed with why), \
2 usage error, unreadable file or unreachable Redis."
    )]
    Redrive(RedriveArgs),
}

/// Where the letters are: a file, or a route's dead-letter stream.
#[derive(Debug, Args)]
struct SourceArgs {
    /// A dead-letter file written by `runhook serve --dead-letters FILE`.
    #[arg(long, value_name = "FILE", required_unless_present = "store", conflicts_with_all = ["store", "path", "redis_prefix", "postgres_schema"])]
    file: Option<PathBuf>,
    /// The Redis the route's stream lives on, e.g. redis://127.0.0.1:6379, or the Postgres
    /// of its queue, e.g. postgres://app@127.0.0.1:5432/app.
    #[arg(long, value_name = "URL", requires = "path")]
    store: Option<String>,
    /// The route's path as configured in `runhook serve` (with `{secret}`, not the secret).
    #[arg(long, value_name = "ROUTE", requires = "store")]
    path: Option<String>,
    /// The namespace `runhook serve` was given with --redis-prefix [default: runhook].
    #[arg(
        long,
        value_name = "PREFIX",
        requires = "store",
        conflicts_with = "postgres_schema"
    )]
    redis_prefix: Option<String>,
    /// The schema `runhook serve` was given with --postgres-schema [default: runhook].
    #[arg(long, value_name = "SCHEMA", requires = "store")]
    postgres_schema: Option<String>,
}

/// Arguments of `runhook dead-letters list`.
#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    source: SourceArgs,
}

/// Arguments of `runhook dead-letters redrive`.
#[derive(Debug, Args)]
struct RedriveArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// With --file: the runhook.toml whose [handler] (and Redis `store`, with its
    /// `redis_prefix`) processes the letters.
    #[arg(
        long,
        value_name = "FILE",
        requires = "file",
        required_unless_present = "store"
    )]
    config: Option<PathBuf>,
    /// Only the letter with this dedup key; repeat for several [default: every letter].
    #[arg(long = "dedup-key", value_name = "KEY")]
    dedup_keys: Vec<String>,
}

/// Why letters could not be listed or redriven (exit status 2).
#[derive(Debug, thiserror::Error)]
enum DeadLettersError {
    /// Neither a file nor a stream.
    #[error("give --file FILE, or --store redis://... (or postgres://...) and --path ROUTE")]
    NoSource,
    /// `--store` is neither a Redis nor a Postgres URL (shown without credentials).
    #[error("--store {0}: expected a redis://, rediss://, postgres:// or postgresql:// URL")]
    NotRedis(String),
    /// The Postgres store cannot be opened (the URL shown without credentials).
    #[error("{label}: {source}")]
    PostgresStore {
        /// The store, without credentials.
        label: String,
        /// Why not.
        source: StoreError,
    },
    /// The route's Postgres queue cannot be used.
    #[error("the dead letters of {queue} in Postgres: {source}")]
    PostgresQueue {
        /// The route (the queue's name).
        queue: String,
        /// Why not.
        source: PostgresQueueError,
    },
    /// An empty Redis prefix, or one with spaces.
    #[error("the Redis prefix must be non-empty, without spaces")]
    RedisPrefix,
    /// `redrive --file` without `--config`.
    #[error("redrive --file needs --config runhook.toml (its [handler] processes the letters)")]
    NoConfig,
    /// The file does not exist.
    #[error("{}: no such file", .0.display())]
    NoSuchFile(PathBuf),
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The file's redrive failed.
    #[error("{}: {source}", path.display())]
    RedriveFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `--config` cannot be read or cannot run, or its handler cannot be made ready.
    #[error(transparent)]
    Config(#[from] ServeConfigError),
    /// The store of `--config` cannot be used.
    #[error(transparent)]
    Store(#[from] AppError),
    /// The dead-letter stream cannot be reached (the URL shown without credentials).
    #[error("{label}: {source}")]
    Connect {
        /// The store, without credentials.
        label: String,
        /// Why not.
        source: StreamError,
    },
    /// The dead-letter stream cannot be listed.
    #[error("cannot list {stream}:dead: {source}")]
    List {
        /// The route's stream.
        stream: String,
        /// Why not.
        source: StreamError,
    },
    /// The route's stream cannot be used.
    #[error("cannot use the stream {stream}: {source}")]
    Stream {
        /// The route's stream.
        stream: String,
        /// Why not.
        source: StreamError,
    },
    /// The stream's redrive failed.
    #[error("redriving {stream}:dead: {source}")]
    RedriveStream {
        /// The route's stream.
        stream: String,
        /// Why.
        source: StreamError,
    },
    /// Standard output cannot be written.
    #[error("cannot write: {0}")]
    Write(std::io::Error),
}

/// Where the letters are, checked.
enum Source {
    File(PathBuf),
    Stream {
        url: String,
        /// The route's stream, `<prefix>:stream:<path>`.
        stream: String,
    },
    Postgres {
        url: String,
        schema: String,
        /// The route's queue: its path.
        queue: String,
    },
}

impl Source {
    fn from_args(args: &SourceArgs) -> Result<Self, DeadLettersError> {
        if let Some(file) = &args.file {
            return Ok(Source::File(file.clone()));
        }
        let (Some(url), Some(path)) = (&args.store, &args.path) else {
            return Err(DeadLettersError::NoSource);
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Source::Postgres {
                url: url.clone(),
                schema: (args.postgres_schema.as_deref())
                    .unwrap_or(DEFAULT_SCHEMA)
                    .to_string(),
                queue: path.clone(),
            });
        }
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(DeadLettersError::NotRedis(store_label(url)));
        }
        let prefix = args.redis_prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
        if prefix.is_empty() || prefix.contains(char::is_whitespace) {
            return Err(DeadLettersError::RedisPrefix);
        }
        Ok(Source::Stream {
            url: url.clone(),
            stream: stream_key(prefix, path),
        })
    }
}

/// Runs `runhook dead-letters`.
pub fn run(args: DeadLettersArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let outcome = match args.action {
        Action::List(args) => runtime.block_on(list(&args)),
        Action::Redrive(args) => runtime.block_on(redrive(&args)),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => fail(&error.to_string()),
    }
}

async fn list(args: &ListArgs) -> Result<ExitCode, DeadLettersError> {
    let letters: Vec<(Option<String>, DeadLetterRecord)> = match Source::from_args(&args.source)? {
        Source::File(path) => read_file(&path)?
            .into_iter()
            .map(|record| (None, record))
            .collect(),
        Source::Stream { url, stream } => list_stream(&url, &stream)
            .await?
            .into_iter()
            .map(|letter| (Some(letter.id), letter.record))
            .collect(),
        Source::Postgres { url, schema, queue } => {
            let queue = postgres_queue(&url, &schema, &queue).await?;
            list_postgres(&queue)
                .await?
                .into_iter()
                .map(|letter| (Some(letter.id.to_string()), letter.record))
                .collect()
        }
    };
    let mut out = std::io::stdout().lock();
    write_letters(&mut out, &letters).map_err(DeadLettersError::Write)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes each letter as one JSON line, with its stream entry `id` when it has one.
fn write_letters(
    out: &mut impl Write,
    letters: &[(Option<String>, DeadLetterRecord)],
) -> std::io::Result<()> {
    for (id, record) in letters {
        let mut object = serde_json::to_value(record).map_err(std::io::Error::other)?;
        if let (Some(id), Some(map)) = (id, object.as_object_mut()) {
            map.insert("id".into(), id.clone().into());
        }
        writeln!(out, "{object}")?;
    }
    out.flush()
}

async fn redrive(args: &RedriveArgs) -> Result<ExitCode, DeadLettersError> {
    let (report, present) = match Source::from_args(&args.source)? {
        Source::File(path) => redrive_file(&path, args).await?,
        Source::Stream { url, stream } => redrive_stream(&url, &stream, args).await?,
        Source::Postgres { url, schema, queue } => {
            redrive_postgres(&postgres_queue(&url, &schema, &queue).await?, args).await?
        }
    };
    let missing: Vec<&String> = args
        .dedup_keys
        .iter()
        .filter(|k| !present.contains(k.as_str()))
        .collect();
    let mut out = std::io::stdout().lock();
    let kept = write_report(&mut out, &report, &missing).map_err(DeadLettersError::Write)?;
    Ok(if kept {
        ExitCode::from(KEPT)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs the handler of `--config` on the letters of the file at `path`; what became of them,
/// and the dedup keys the file held.
async fn redrive_file(
    path: &Path,
    args: &RedriveArgs,
) -> Result<(RedriveReport, HashSet<String>), DeadLettersError> {
    let Some(config) = &args.config else {
        return Err(DeadLettersError::NoConfig);
    };
    let present = keys_of(read_file(path)?.iter());
    let config = ServeConfig::from_file(config)?;
    let handler = handlers::build(&config)?;
    let store = match config.store.is_shared() {
        true => Some(open_store(&config.store, &StoreNames::of(&config)).await?),
        false => None,
    };
    let report = runhook::dead_letter::redrive_file(path, &args.dedup_keys, handler, store)
        .await
        .map_err(|source| DeadLettersError::RedriveFile {
            path: path.to_path_buf(),
            source,
        })?;
    Ok((report, present))
}

/// Moves the letters of `stream`'s dead-letter stream back into it; what became of them, and
/// the dedup keys the dead-letter stream held.
async fn redrive_stream(
    url: &str,
    stream: &str,
    args: &RedriveArgs,
) -> Result<(RedriveReport, HashSet<String>), DeadLettersError> {
    let letters = list_stream(url, stream).await?;
    let present = keys_of(letters.iter().map(|l| &l.record));
    if letters.is_empty() {
        // Nothing to move: do not create the stream and group of a mistyped route.
        return Ok((RedriveReport::default(), present));
    }
    let stream_error = |source| DeadLettersError::Stream {
        stream: stream.into(),
        source,
    };
    // The provider only names a default stream key; the key is given here.
    let queue = RedisStreamQueue::builder(Provider::Skyvern)
        .stream_key(stream.to_string())
        .connect(url)
        .await
        .map_err(stream_error)?;
    let report = queue.redrive(&args.dedup_keys).await.map_err(|source| {
        DeadLettersError::RedriveStream {
            stream: stream.into(),
            source,
        }
    })?;
    if !report.redriven.is_empty() {
        println!("handed back to {stream}: a running `runhook serve` for the route processes them");
    }
    Ok((report, present))
}

/// The queue of the route `name` in `schema` of the Postgres at `url` (checked to be
/// migrated; nothing is created).
async fn postgres_queue(
    url: &str,
    schema: &str,
    name: &str,
) -> Result<PostgresQueue, DeadLettersError> {
    let store = PostgresStore::builder()
        .schema(schema)
        .max_connections(2)
        .connect(url)
        .await
        .map_err(|source| DeadLettersError::PostgresStore {
            label: store_label(url),
            source,
        })?;
    // The provider only names a default queue; the name is given here.
    PostgresQueue::builder(Provider::Skyvern)
        .name(name)
        .build(store)
        .map_err(|source| DeadLettersError::PostgresQueue {
            queue: name.into(),
            source,
        })
}

/// The letters of the route's Postgres queue.
async fn list_postgres(
    queue: &PostgresQueue,
) -> Result<Vec<runhook::postgres_queue::ListedPostgresLetter>, DeadLettersError> {
    (queue.dead_letters().list().await).map_err(|source| DeadLettersError::PostgresQueue {
        queue: queue.name().into(),
        source,
    })
}

/// Moves the letters of the route's Postgres queue back into it (each in one transaction);
/// what became of them, and the dedup keys the dead letters held.
async fn redrive_postgres(
    queue: &PostgresQueue,
    args: &RedriveArgs,
) -> Result<(RedriveReport, HashSet<String>), DeadLettersError> {
    let letters = list_postgres(queue).await?;
    let present = keys_of(letters.iter().map(|l| &l.record));
    let report = (queue.redrive(&args.dedup_keys).await).map_err(|source| {
        DeadLettersError::PostgresQueue {
            queue: queue.name().into(),
            source,
        }
    })?;
    if !report.redriven.is_empty() {
        println!(
            "handed back to the queue {}: a running `runhook serve` for the route processes them",
            queue.name()
        );
    }
    Ok((report, present))
}

/// Prints what a redrive did; returns whether anything was kept or not found.
fn write_report(
    out: &mut impl Write,
    report: &RedriveReport,
    missing: &[&String],
) -> std::io::Result<bool> {
    for key in &report.redriven {
        writeln!(out, "redriven {key}")?;
    }
    for key in &report.already_done {
        writeln!(
            out,
            "already done {key} (removed without running the handler)"
        )?;
    }
    for (key, why) in &report.kept {
        writeln!(
            out,
            "kept {}: {why}",
            key.as_deref().unwrap_or("(no dedup key)")
        )?;
    }
    for key in missing {
        writeln!(out, "not found {key}: no dead letter has this dedup key")?;
    }
    writeln!(
        out,
        "{} redriven, {} already done, {} kept, {} not found",
        report.redriven.len(),
        report.already_done.len(),
        report.kept.len(),
        missing.len()
    )?;
    out.flush()?;
    Ok(!report.kept.is_empty() || !missing.is_empty())
}

fn keys_of<'a>(records: impl Iterator<Item = &'a DeadLetterRecord>) -> HashSet<String> {
    records.filter_map(|r| r.dedup_key.clone()).collect()
}

/// The letters of a file that must exist (a mistyped path is an error, not an empty list).
fn read_file(path: &Path) -> Result<Vec<DeadLetterRecord>, DeadLettersError> {
    if !path.exists() {
        return Err(DeadLettersError::NoSuchFile(path.to_path_buf()));
    }
    JsonLinesDeadLetters::read(path).map_err(|source| DeadLettersError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// The letters in the dead-letter stream of the route's `stream`.
async fn list_stream(url: &str, stream: &str) -> Result<Vec<ListedDeadLetter>, DeadLettersError> {
    let letters = RedisStreamDeadLetters::connect(url, format!("{stream}:dead"))
        .await
        .map_err(|source| DeadLettersError::Connect {
            label: store_label(url),
            source,
        })?;
    letters
        .list()
        .await
        .map_err(|source| DeadLettersError::List {
            stream: stream.into(),
            source,
        })
}

fn fail(message: &str) -> ExitCode {
    eprintln!("runhook dead-letters: {message}");
    ExitCode::from(USAGE)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use runhook::dead_letter::{DeadLetter, DeadLetterReason, DeadLetterSink};

    use super::*;

    fn letter(body: &[u8]) -> DeadLetter {
        DeadLetter {
            provider: Some(Provider::Skyvern),
            dedup_key: Some("skyvern:run_bin".into()),
            run_id: Some("run_bin".into()),
            reason: DeadLetterReason::NotDrained,
            attempts: 0,
            received_at: SystemTime::now(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: bytes::Bytes::copy_from_slice(body),
            source: runhook::payload::EventSource::Webhook,
            truncated: None,
        }
    }

    /// A letter written by the real file sink with a non-UTF-8 body lists as `body_base64`
    /// (no `body`), and decodes back to the same bytes; a UTF-8 one lists as `body`.
    #[tokio::test]
    async fn list_file_shows_binary_bodies_as_base64() {
        let dir = std::env::temp_dir().join(format!(
            "runhook-dead-letters-unit-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dead.jsonl");
        let binary: &[u8] = &[0xff, 0xfe, 0x00, b'{', 0x80];
        let sink = JsonLinesDeadLetters::new(&path);
        sink.put(letter(binary)).await.unwrap();
        sink.put(letter(br#"{"run_id":"run_text"}"#)).await.unwrap();

        let letters: Vec<_> = read_file(&path)
            .unwrap()
            .into_iter()
            .map(|r| (None, r))
            .collect();
        let mut out = Vec::new();
        write_letters(&mut out, &letters).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].get("body").is_none(), "{}", lines[0]);
        assert_eq!(lines[0]["body_base64"], "//4Ae4A=");
        assert_eq!(lines[0]["reason_code"], "not_drained");
        assert_eq!(lines[0]["dedup_key"], "skyvern:run_bin");
        assert!(lines[0].get("id").is_none());
        let record: DeadLetterRecord = serde_json::from_value(lines[0].clone()).unwrap();
        assert_eq!(&record.body_bytes().unwrap()[..], binary);
        assert_eq!(lines[1]["body"], r#"{"run_id":"run_text"}"#);
        assert!(lines[1].get("body_base64").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A file that does not exist is a usage error rather than an empty listing.
    #[test]
    fn missing_file_is_an_error() {
        let err = read_file(Path::new("/nonexistent/runhook/dead.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such file"), "{err}");
    }
}
