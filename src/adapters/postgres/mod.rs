//! PostgreSQL: the URL and its TLS ([`url`]), connections and the pool ([`pool`]), the
//! embedded migrations, the order store's batch write ([`store`]), the dead-letter ledger
//! ([`ledger`]), reads for lookup ([`reader`]) for people without a uid ([`browse`]);
//! who may read, and who read what ([`access`], [`sessions`]).

pub mod access;
pub mod browse;
pub mod ledger;
pub mod metrics;
pub mod migrations;
pub mod pool;
pub mod reader;
pub mod sessions;
pub mod store;
pub mod url;

use anyhow::Context;
use tokio_postgres::Client;

pub use self::url::DatabaseUrl;

/// One connection outside a pool, for administrative work such as migrations, with the TLS
/// the URL asks for. The connection task ends when the client is dropped.
pub async fn connect_once(
    url: &DatabaseUrl,
) -> anyhow::Result<Result<Client, tokio_postgres::Error>> {
    let tls = url.connector()?;
    let (client, connection) = match url.config().connect(tls).await {
        Ok(pair) => pair,
        Err(e) => return Ok(Err(e)),
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection closed with an error");
        }
    });
    Ok(Ok(client))
}

/// [`connect_once`] with an error that names the host and database, never the password.
pub async fn connect_named(url: &DatabaseUrl) -> anyhow::Result<Client> {
    connect_once(url)
        .await?
        .with_context(|| format!("cannot connect to PostgreSQL, {url}"))
}
