//! What the benchmarks share: their settings from the environment, and the databases they
//! make and drop on the tests' PostgreSQL.

#![allow(dead_code)] // each benchmark uses a part

pub mod copy;
pub mod load;

use std::process::{Command, Stdio};

/// A setting from the environment, or its default.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The tests' PostgreSQL, as a URL of its `postgres` database.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The tests' Kafka-protocol broker.
pub fn brokers() -> String {
    std::env::var("TEST_KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "127.0.0.1:19092".into())
}

/// The URL of database `db` on the server of `admin_url`.
pub fn database_url(admin_url: &str, db: &str) -> String {
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    format!("{base}/{db}")
}

/// Creates database `db` and applies the migrations, with `bin migrate`.
pub fn migrated(bin: &str, url: &str) -> anyhow::Result<()> {
    let status = Command::new(bin)
        .arg("migrate")
        .env("DATABASE_URL", url)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "migrate failed");
    Ok(())
}

/// Writes `count` orders generated from `seed` to `file`, with `bin generate`.
pub fn generate(bin: &str, count: usize, seed: u64, file: &std::path::Path) -> anyhow::Result<()> {
    let status = Command::new(bin)
        .args([
            "generate",
            "--count",
            &count.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(file)
        .status()?;
    anyhow::ensure!(status.success(), "generate failed");
    Ok(())
}

/// Drops database `db`, whoever is still connected to it.
pub fn drop_database(admin_url: &str, db: &str) {
    let _ = Command::new("psql")
        .args([
            admin_url,
            "-qc",
            &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
        ])
        .status();
}

/// The resident memory (VmRSS) of process `pid`, in MiB; 0 when it cannot be read.
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// BENCH_ENV: extra `NAME=value` settings for the measured `serve`, space-separated (to
/// try a setting without a rebuild).
pub fn bench_env() -> anyhow::Result<Vec<(String, String)>> {
    std::env::var("BENCH_ENV")
        .unwrap_or_default()
        .split_whitespace()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("BENCH_ENV: {pair} is not NAME=value"))
        })
        .collect()
}

/// A benchmark's `main`: under `cargo bench`, runs `bench` on one thread (the load's: the other
/// core is the server's); under `cargo test`, only says how to run it.
pub fn main_on_one_thread<F>(
    name: &str,
    command: &str,
    bench: impl FnOnce() -> F,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    if !std::env::args().any(|a| a == "--bench") {
        println!("{name} benchmark skipped: run it with `{command}`");
        return Ok(());
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}

/// A free local address for `serve`'s HTTP.
pub fn free_addr() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// `bin serve` on the database at `url` and on `topic` (its dead letters on `{topic}.dlq`,
/// its group named after it), answering on `addr`, logging warnings only. The caller adds
/// its own settings, then BENCH_ENV's.
pub fn serve_command(bin: &str, url: &str, topic: &str, addr: std::net::SocketAddr) -> Command {
    let mut command = Command::new(bin);
    command
        .arg("serve")
        // Measured without credentials or budgets; `bench-http` measures tokens apart.
        .env("AUTH_ANONYMOUS_SCOPES", "all")
        .env("RATE_LOOKUPS_PER_SECOND", "0")
        .env("RATE_SEARCHES_PER_SECOND", "0")
        .env("DATABASE_URL", url)
        .env("KAFKA_BROKERS", brokers())
        .env("KAFKA_TOPIC", topic)
        .env("KAFKA_DLQ_TOPIC", format!("{topic}.dlq"))
        .env("KAFKA_GROUP_ID", topic)
        .env("HTTP_ADDR", addr.to_string())
        .env("RUST_LOG", "warn");
    command
}

/// Runs `sql` on the database at `url` with psql; its output, trimmed.
pub fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql").args([url, "-qAtc", sql]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "psql failed: {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
