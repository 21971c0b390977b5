//! The hand-off contract (what happens to a claimed run between its 200 and its handler's
//! end, docs/ARCHITECTURE.md), one suite run against every hand-off through the public API: a
//! `Receiver` with a handler, with the in-process queue and with a Redis stream. A third
//! hand-off only has to pass it. The Redis side needs Redis on 127.0.0.1:6379 and fails
//! loudly without it; every test uses its own keys.

mod kit;
#[macro_use]
mod suite;
mod memory;
#[cfg(feature = "redis")]
mod redis_stream;
