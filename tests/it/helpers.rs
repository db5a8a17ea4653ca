//! Shared test plumbing: a database of each test's own, and the binary under test.

use std::process::{Command, Output};

use tokio_postgres::{Client, NoTls};

/// A server-level URL whose database the tests may use to create their own.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database name no other test uses. It does not exist until something creates it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn unique() -> Self {
        let name = format!("it_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_url();
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Self { name, url }
    }

    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }
}

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to {url}: {e} (is PostgreSQL running? `just test-services`)")
        });
    tokio::spawn(connection);
    client
}

/// The binary under test, run from a temporary directory so that a developer's `.env`
/// cannot leak into it, with no inherited order-svc settings.
pub fn order_svc() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_order-svc"));
    cmd.current_dir(std::env::temp_dir());
    for (key, _) in std::env::vars() {
        let ours = [
            "DATABASE_URL",
            "KAFKA_",
            "HTTP_ADDR",
            "GENERATE_",
            "INGEST_",
            "PRODUCE_",
            "VALIDATION_",
            "LOG_FORMAT",
        ];
        if ours.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs and returns stdout and stderr as text, with the exit status.
pub fn run(cmd: &mut Command) -> (Output, String, String) {
    let output = cmd.output().expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}
