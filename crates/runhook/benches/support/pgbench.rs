//! PostgreSQL's own rate, the benches' yardstick: `pgbench` running a single `INSERT` of the
//! delivery body per transaction into `<schema>.pgbench_ledger (run_id text, body text)`.

use std::process::Command;

use std::time::{SystemTime, UNIX_EPOCH};

use super::CONCURRENCY;

/// A schema name of this run's own, for its tables (dropped at its end).
pub fn bench_schema() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("rh_bench_{}_{nanos}", std::process::id())
}

/// A pgbench script inserting `body` once per transaction, written to a temporary file.
pub fn pgbench_script(schema: &str, body: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{schema}.sql"));
    let literal = body.replace('\'', "''");
    std::fs::write(
        &path,
        format!(
            "INSERT INTO \"{schema}\".pgbench_ledger (run_id, body) VALUES (md5(random()::text), '{literal}');\n"
        ),
    )
    .unwrap();
    path
}

/// pgbench's transactions per second: 32 clients, 10 s, the script at `script`.
pub fn run_pgbench(url: &str, script: &std::path::Path) -> f64 {
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &CONCURRENCY.to_string(),
            "-j",
            "2",
            "-T",
            "10",
            "-f",
        ])
        .arg(script)
        .arg(url)
        .output()
        .expect("pgbench (Debian's postgresql-contrib / postgresql-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no tps in pgbench's output: {text}"))
}
