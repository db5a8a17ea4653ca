//! PostgreSQL: connections and the pool ([`pool`]), the embedded migrations, the order
//! store's batch write ([`store`]), the dead-letter ledger ([`ledger`]) and reads for
//! lookup ([`reader`]).

pub mod ledger;
pub mod migrations;
pub mod pool;
pub mod reader;
pub mod store;

use anyhow::Context;
use tokio_postgres::{Client, NoTls};

use crate::config::DatabaseUrl;

/// One connection outside a pool, for administrative work such as migrations. The
/// connection task ends when the client is dropped.
pub async fn connect_once(
    config: &tokio_postgres::Config,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection closed with an error");
        }
    });
    Ok(client)
}

/// [`connect_once`] with an error that names the host and database, never the password.
pub async fn connect_named(url: &DatabaseUrl) -> anyhow::Result<Client> {
    connect_once(url.config())
        .await
        .with_context(|| format!("cannot connect to PostgreSQL, {url}"))
}
