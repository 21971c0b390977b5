//! The PostgreSQL the tests share: where it is, a check that fails the test loudly without
//! it, and a schema name of each test's own.

/// The database the tests use unless `RUNHOOK_TEST_POSTGRES_URL` names another (trust
/// authentication on loopback, as these machines and `.ci/run` set it up).
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How to get the PostgreSQL the tests need.
pub const HOW_TO_START: &str =
    "apt-get install postgresql && pg_ctlcluster 15 main start (trust auth on 127.0.0.1), or set RUNHOOK_TEST_POSTGRES_URL";

/// `RUNHOOK_TEST_POSTGRES_URL` if set, else [`DEFAULT_URL`].
pub fn postgres_url() -> String {
    std::env::var("RUNHOOK_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Panics, saying how to get one, unless something accepts a connection on the host and port
/// of [`postgres_url`] within a second: a test that needs PostgreSQL never passes without it.
pub fn require_postgres() {
    let url = postgres_url();
    assert!(
        crate::listening::answers(&url, 5432),
        "this test needs PostgreSQL at {url} and nothing answers there: {HOW_TO_START}"
    );
}

/// A schema name no other test or run uses: `rh_` and a lowercase unique suffix.
pub fn unique_schema(test: &str) -> String {
    let name = crate::unique(test).to_ascii_lowercase();
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    // Postgres identifiers hold 63 bytes: keep the unique tail.
    let tail = &cleaned[cleaned.len().saturating_sub(59)..];
    format!("rh_{tail}")
}
