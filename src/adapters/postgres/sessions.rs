//! Web sign-in sessions (migrations/V8): a row per signed-in browser, found by the SHA-256
//! of its cookie's secret.

use chrono::{DateTime, Utc};

use super::metrics::Op;
use super::pool::{PgStore, db_error};
use crate::domain::ports::StoreError;

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub subject: String,
    pub name: String,
    pub client: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

impl PgStore {
    /// Stores a new session (and drops those expired an hour ago, so the table stays small).
    pub async fn insert_session(&self, id_hash: &[u8], row: &SessionRow) -> Result<(), StoreError> {
        self.timed(Op::Sessions, async {
            let mut client = self.conn().await?;
            client
                .execute(
                    "INSERT INTO sessions (id_hash, subject, name, client, scopes, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &id_hash,
                        &row.subject,
                        &row.name,
                        &row.client,
                        &row.scopes,
                        &row.expires_at,
                    ],
                )
                .await
                .map_err(db_error)?;
            client
                .execute(
                    "DELETE FROM sessions WHERE expires_at < now() - interval '1 hour'",
                    &[],
                )
                .await
                .map_err(db_error)?;
            client.keep();
            Ok(())
        })
        .await
    }

    /// The unexpired session whose cookie hashes to `id_hash`.
    pub async fn live_session(&self, id_hash: &[u8]) -> Result<Option<SessionRow>, StoreError> {
        self.timed(Op::Sessions, async {
            let mut client = self.conn().await?;
            let statement = client
                .prepare_cached(
                    "SELECT subject, name, client, scopes, expires_at FROM sessions \
                     WHERE id_hash = $1 AND expires_at > now()",
                )
                .await
                .map_err(db_error)?;
            let row = client
                .query_opt(&statement, &[&id_hash])
                .await
                .map_err(db_error)?;
            client.keep();
            Ok(row.map(|r| SessionRow {
                subject: r.get(0),
                name: r.get(1),
                client: r.get(2),
                scopes: r.get(3),
                expires_at: r.get(4),
            }))
        })
        .await
    }

    /// Ends the session whose cookie hashes to `id_hash`; whether there was one.
    pub async fn delete_session(&self, id_hash: &[u8]) -> Result<bool, StoreError> {
        self.timed(Op::Sessions, async {
            let mut client = self.conn().await?;
            let n = client
                .execute("DELETE FROM sessions WHERE id_hash = $1", &[&id_hash])
                .await
                .map_err(db_error)?;
            client.keep();
            Ok(n == 1)
        })
        .await
    }
}
