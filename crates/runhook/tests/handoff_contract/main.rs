//! The hand-off contract (what happens to a claimed run between its 200 and its handler's
//! end, docs/ARCHITECTURE.md), one suite run against every hand-off through the public API: a
//! `Receiver` with a handler, with the in-process queue, a Redis stream and a Postgres queue.
//! Another hand-off only has to pass it. The Redis side needs Redis on 127.0.0.1:6379, the
//! Postgres side PostgreSQL on 127.0.0.1:5432; each fails loudly without it; every test uses
//! its own keys or schema.

mod kit;
#[macro_use]
mod suite;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis_stream;
