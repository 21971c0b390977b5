//! The store contract (the idempotency states of the crate docs and docs/ARCHITECTURE.md), one
//! suite run against every backend, plus backend-specific tests. Redis tests use `REDIS_URL`
//! (default `redis://127.0.0.1:6379`); with `CI=true` a missing Redis fails them, elsewhere they
//! skip with a loud message. Postgres tests use `RUNHOOK_TEST_POSTGRES_URL` (default the
//! local server, trust authentication) and fail loudly without it.

#[macro_use]
mod suite;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
