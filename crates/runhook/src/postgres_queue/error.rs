//! What the Postgres queue's calls can fail with.

use runhook_store::sqlx;

/// Why a [`PostgresQueue`](super::PostgresQueue) call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresQueueError {
    /// The queue's configuration cannot work (an empty name, a schema not migrated).
    #[error("invalid Postgres queue configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// Postgres failed or did not answer in time.
    #[error("Postgres unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },
}

impl PostgresQueueError {
    /// A database error as the queue reports it: a missing table is a schema not migrated.
    pub(crate) fn unavailable(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            // undefined_table, invalid_schema_name
            if matches!(db.code().as_deref(), Some("42P01") | Some("3F000")) {
                return Self::InvalidConfig {
                    reason: format!("Postgres: {db}: run `runhook migrate --store <url>`"),
                };
            }
        }
        Self::Unavailable {
            reason: format!("Postgres: {e}"),
        }
    }
}
