//! Where the Postgres store keeps its tables (a schema of their own, named by the user), and
//! the embedded migrations that create them, applied only when asked.

use sqlx::{Executor as _, PgPool};

use crate::StoreError;

/// The schema runhook's tables live in unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "runhook";

/// The migrations, in order: each runs once, in one transaction, recorded in
/// `<schema>.runhook_migrations`. `{schema}` is replaced by the quoted schema name.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE {schema}.claims (
    key          text        PRIMARY KEY,
    done         boolean     NOT NULL,
    token        bytea       NOT NULL,
    fingerprint  bytea       NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX claims_expires_at ON {schema}.claims (expires_at);
CREATE TABLE {schema}.expectations (
    scope        text        NOT NULL,
    dedup_key    text        NOT NULL,
    run_id       text        NOT NULL,
    registered_ms bigint     NOT NULL,
    window_ms    bigint,
    checks       integer     NOT NULL,
    due_ms       bigint      NOT NULL,
    PRIMARY KEY (scope, dedup_key)
);
CREATE INDEX expectations_due ON {schema}.expectations (scope, due_ms);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE {schema}.jobs (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue          text        NOT NULL,
    dedup_key      text        NOT NULL,
    provider       text        NOT NULL,
    run_id         text,
    token          bytea,
    received_at_ms bigint      NOT NULL,
    body           bytea       NOT NULL,
    headers        text        NOT NULL,
    source         text        NOT NULL,
    deliveries     integer     NOT NULL DEFAULT 0,
    locked_until   timestamptz,
    locked_by      text,
    enqueued_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_fresh ON {schema}.jobs (queue, id) WHERE locked_until IS NULL;
CREATE INDEX jobs_locked ON {schema}.jobs (queue, locked_until) WHERE locked_until IS NOT NULL;
CREATE TABLE {schema}.dead_letters (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue          text        NOT NULL,
    dedup_key      text,
    provider       text,
    reason_code    text        NOT NULL,
    received_at_ms bigint      NOT NULL,
    letter         jsonb       NOT NULL,
    dead_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_queue ON {schema}.dead_letters (queue, id);
"#,
    ),
    (
        3,
        r#"
DO $$
BEGIN
    IF (SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression') THEN
        EXECUTE 'ALTER TABLE {schema}.jobs ALTER COLUMN body SET COMPRESSION lz4';
    END IF;
END
$$;
ALTER TABLE {schema}.jobs SET (toast_tuple_target = 4096);
"#,
    ),
];

/// The version the code needs: the last migration's.
pub(crate) const CURRENT_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// A schema name checked to be a plain lowercase identifier (`[a-z_][a-z0-9_]*`, at most 63
/// bytes), so that it can be written into SQL quoted, never from untrusted text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schema {
    quoted: String,
    name: String,
}

impl Schema {
    pub(crate) fn new(name: &str) -> Result<Self, StoreError> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(StoreError::InvalidConfig {
                reason: format!(
                    "schema name `{name}`: use lowercase letters, digits and `_` (not first a \
                     digit), at most 63 bytes"
                ),
            });
        }
        Ok(Self {
            quoted: format!("\"{name}\""),
            name: name.to_string(),
        })
    }

    /// The name as given.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// `sql` with every `{schema}` replaced by the quoted name.
    pub(crate) fn sql(&self, sql: &str) -> String {
        sql.replace("{schema}", &self.quoted)
    }
}

/// The version recorded in the schema, 0 when it holds none (or does not exist).
pub(crate) async fn applied_version(pool: &PgPool, schema: &Schema) -> Result<i32, sqlx::Error> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
         WHERE table_schema = $1 AND table_name = 'runhook_migrations')",
    )
    .bind(schema.name())
    .fetch_one(pool)
    .await?;
    if !exists {
        return Ok(0);
    }
    let version: Option<i32> =
        sqlx::query_scalar(&schema.sql("SELECT max(version) FROM {schema}.runhook_migrations"))
            .fetch_one(pool)
            .await?;
    Ok(version.unwrap_or(0))
}

/// Applies the migrations not yet applied, under a transaction-scoped advisory lock so that
/// instances starting together apply each once. Returns the versions it applied.
pub(crate) async fn migrate(pool: &PgPool, schema: &Schema) -> Result<Vec<i32>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('runhook-migrate:' || $1))")
        .bind(schema.name())
        .execute(&mut *tx)
        .await?;
    tx.execute(
        schema
            .sql(
                "CREATE SCHEMA IF NOT EXISTS {schema}; \
                 CREATE TABLE IF NOT EXISTS {schema}.runhook_migrations ( \
                     version integer PRIMARY KEY, \
                     applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .as_str(),
    )
    .await?;
    let done: Option<i32> =
        sqlx::query_scalar(&schema.sql("SELECT max(version) FROM {schema}.runhook_migrations"))
            .fetch_one(&mut *tx)
            .await?;
    let done = done.unwrap_or(0);
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > done) {
        tx.execute(schema.sql(sql).as_str()).await?;
        sqlx::query(&schema.sql("INSERT INTO {schema}.runhook_migrations (version) VALUES ($1)"))
            .bind(version)
            .execute(&mut *tx)
            .await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert_eq!(
            Schema::new("runhook").unwrap().sql("{schema}.t"),
            "\"runhook\".t"
        );
        assert!(Schema::new("rh_2026").is_ok());
        for bad in ["", "Runhook", "1st", "a-b", "a\"; DROP", &"x".repeat(64)] {
            assert!(Schema::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(CURRENT_VERSION, MIGRATIONS.last().unwrap().0);
    }
}
