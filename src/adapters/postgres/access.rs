//! The audit trail and the API keys' table (migrations/V7).

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, Row};

use super::metrics::Op;
use super::pool::{PgStore, db_error};
use crate::domain::guard::{Action, AuditQuery, AuditRecord, AuditTrail, Recorded};
use crate::domain::ports::StoreError;

/// Every record of a group in one statement: the records as one JSON array (PostgreSQL turns
/// its arrays into `text[]`).
const INSERT_AUDIT: &str = "INSERT INTO audit_log \
    (subject, client, via, action, route, order_uid, fields, value_hashes, results, request_id) \
    SELECT subject, client, via, action, route, order_uid, fields, value_hashes, results, \
           request_id \
    FROM jsonb_to_recordset($1::text::jsonb) AS r(subject text, client text, via text, \
         action text, route text, order_uid text, fields text[], value_hashes text[], \
         results bigint, request_id text)";

/// Most records one statement writes.
const MAX_GROUP: usize = 512;

const READ_AUDIT: &str = "SELECT id, at, subject, client, via, action, route, order_uid, fields, \
    value_hashes, results, request_id FROM audit_log \
    WHERE ($1::text IS NULL OR subject = $1) AND ($2::timestamptz IS NULL OR at >= $2) AND id < $3 \
    ORDER BY id DESC LIMIT $4";

fn audit_row(row: &Row) -> (i64, AuditRecord) {
    let via: String = row.get(4);
    let action: String = row.get(5);
    let record = AuditRecord {
        at: Some(row.get(1)),
        subject: row.get(2),
        client: row.get(3),
        via: ["anonymous", "api_key", "token", "session"]
            .into_iter()
            .find(|v| *v == via)
            .unwrap_or("unknown"),
        action: Action::parse(&action).unwrap_or(Action::Search),
        route: row.get(6),
        order_uid: row.get(7),
        fields: row.get(8),
        value_hashes: row.get(9),
        results: row.get(10),
        request_id: row.get(11),
    };
    (row.get(0), record)
}

/// Reads the trail on one connection (for `order-svc audit` and for `GET /audit`).
pub async fn read_audit(
    client: &Client,
    query: &AuditQuery,
) -> Result<Vec<(i64, AuditRecord)>, tokio_postgres::Error> {
    let since = query.since;
    let before = query.before.unwrap_or(i64::MAX);
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let rows = client
        .query(READ_AUDIT, &[&query.subject, &since, &before, &limit])
        .await?;
    Ok(rows.iter().map(audit_row).collect())
}

/// Deletes the records older than `before` (the retention); returns how many.
pub async fn purge_audit(
    client: &mut Client,
    before: DateTime<Utc>,
) -> Result<u64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL order_svc.audit_purge = 'on'")
        .await?;
    let n = tx
        .execute("DELETE FROM audit_log WHERE at < $1", &[&before])
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// A record on its way, and where to say whether it was written.
type Pending = (AuditRecord, oneshot::Sender<Result<(), String>>);

/// The audit trail, written in groups: each read hands its record to one writer task and
/// waits for the commit that holds it, so the record is durable before the data leaves.
/// While one group is being written the next gathers, so under load a statement carries the
/// records of many concurrent requests (one round trip and one commit for all of them)
/// instead of each request paying its own.
#[derive(Clone)]
pub struct PgAuditTrail {
    store: PgStore,
    tx: mpsc::Sender<Pending>,
}

impl PgAuditTrail {
    /// The trail on `store`, with its writer task started.
    pub fn start(store: PgStore) -> Self {
        let (tx, mut rx) = mpsc::channel::<Pending>(MAX_GROUP * 4);
        let writer = store.clone();
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(MAX_GROUP);
            while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
                let (records, waiters): (Vec<_>, Vec<_>) = group.drain(..).unzip();
                let result = writer
                    .insert_audit(&records)
                    .await
                    .map_err(|e| e.to_string());
                for waiter in waiters {
                    let _ = waiter.send(result.clone());
                }
            }
        });
        Self { store, tx }
    }
}

impl PgStore {
    /// Writes `records` in one statement (one transaction).
    async fn insert_audit(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        let json = serde_json::to_string(records)
            .map_err(|e| StoreError::Unknown(anyhow::anyhow!("audit records as JSON: {e}")))?;
        self.timed(Op::Audit, async {
            let mut client = self.conn().await?;
            let statement = client
                .prepare_cached(INSERT_AUDIT)
                .await
                .map_err(db_error)?;
            client
                .execute(&statement, &[&json])
                .await
                .map_err(db_error)?;
            client.keep();
            Ok(())
        })
        .await
    }
}

impl AuditTrail for PgAuditTrail {
    fn record(&self, record: AuditRecord) -> Recorded<'_, ()> {
        // The request's wait for its group's commit, as a span of the request (the group's
        // statement has a trace of its own: it serves many requests).
        let span = if crate::adapters::trace::tracing_enabled() {
            tracing::info_span!("audit record", otel.kind = "internal")
        } else {
            tracing::Span::none()
        };
        Box::pin(tracing::Instrument::instrument(
            async move {
                let (done, written) = oneshot::channel();
                let gone =
                    || StoreError::Unavailable(anyhow::anyhow!("the audit writer has stopped"));
                self.tx.send((record, done)).await.map_err(|_| gone())?;
                written
                    .await
                    .map_err(|_| gone())?
                    .map_err(|why| StoreError::Unavailable(anyhow::anyhow!(why)))
            },
            span,
        ))
    }

    fn read(&self, query: AuditQuery) -> Recorded<'_, Vec<(i64, AuditRecord)>> {
        Box::pin(self.store.timed(Op::Audit, async move {
            let mut client = self.store.conn().await?;
            let rows = read_audit(&client, &query).await.map_err(db_error)?;
            client.keep();
            Ok(rows)
        }))
    }
}

/// An API key's row, without its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

fn key_row(row: &Row) -> KeyRow {
    KeyRow {
        id: row.get(0),
        name: row.get(1),
        scopes: row.get(2),
        created_at: row.get(3),
        revoked_at: row.get(4),
        last_used_at: row.get(5),
    }
}

const KEY_COLUMNS: &str = "id, name, scopes, created_at, revoked_at, last_used_at";

/// Stores a new key; `Ok(false)` when a key of that name exists already.
pub async fn insert_key(
    client: &Client,
    id: &str,
    name: &str,
    secret_hash: &[u8],
    scopes: &[&str],
) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "INSERT INTO api_keys (id, name, secret_hash, scopes) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
            &[&id, &name, &secret_hash, &scopes],
        )
        .await?;
    Ok(n == 1)
}

/// Every key, oldest first.
pub async fn list_keys(client: &Client) -> Result<Vec<KeyRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, name"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(key_row).collect())
}

/// Revokes the key named `name`; whether one was live.
pub async fn revoke_key(client: &Client, name: &str) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
            &[&name],
        )
        .await?;
    Ok(n == 1)
}

impl PgStore {
    /// The live key with this id: its row and the hash of its secret.
    pub async fn live_key(&self, id: &str) -> Result<Option<(KeyRow, Vec<u8>)>, StoreError> {
        self.timed(Op::Keys, async {
            let mut client = self.conn().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS}, secret_hash FROM api_keys \
                     WHERE id = $1 AND revoked_at IS NULL"
                ))
                .await
                .map_err(db_error)?;
            let row = client
                .query_opt(&statement, &[&id])
                .await
                .map_err(db_error)?;
            client.keep();
            Ok(row.map(|r| (key_row(&r), r.get(6))))
        })
        .await
    }

    /// Records that the key `id` was used now.
    pub async fn key_used(&self, id: &str) -> Result<(), StoreError> {
        self.timed(Op::Keys, async {
            let mut client = self.conn().await?;
            client
                .execute(
                    "UPDATE api_keys SET last_used_at = now() WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(db_error)?;
            client.keep();
            Ok(())
        })
        .await
    }
}
