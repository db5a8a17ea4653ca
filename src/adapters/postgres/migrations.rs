//! The SQL migrations in `migrations/`, embedded in the binary and applied by refinery.

use anyhow::Context;
use tokio_postgres::error::SqlState;

use super::url::DatabaseUrl;
use super::{connect_named, connect_once};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// What [`run`] did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub created_database: bool,
    /// `V1__orders` style names, in the order applied.
    pub applied: Vec<String>,
}

/// Creates the database when it does not exist, then applies the pending migrations.
pub async fn run(url: &DatabaseUrl) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut client = match connect_once(url).await? {
        Ok(client) => client,
        Err(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {
            create_database(url).await?;
            outcome.created_database = true;
            connect_named(url).await?
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot connect to PostgreSQL, {url}"));
        }
    };
    let report = embedded::migrations::runner()
        .run_async(&mut client)
        .await
        .with_context(|| format!("cannot apply the migrations to {url}"))?;
    outcome.applied = report
        .applied_migrations()
        .iter()
        .map(|m| format!("V{}__{}", m.version(), m.name()))
        .collect();
    Ok(outcome)
}

/// Connects to the server's `postgres` database with the same credentials and creates ours.
async fn create_database(url: &DatabaseUrl) -> anyhow::Result<()> {
    let admin = url.with_dbname("postgres");
    let client = connect_once(&admin).await?.with_context(|| {
        format!(
            "database {} does not exist and the server's `postgres` database at {} cannot be \
             reached to create it",
            url.dbname(),
            url.host()
        )
    })?;
    let quoted = format!("\"{}\"", url.dbname().replace('"', "\"\""));
    match client
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await
    {
        Ok(()) => Ok(()),
        // Another `migrate` created it in the meantime: what we wanted.
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {url}")),
    }
}
