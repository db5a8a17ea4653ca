//! Reading orders back as JSON in one query: PostgreSQL assembles the nested document, we
//! re-encode it canonically (the same bytes the content hash was taken over).
//!
//! `date_created` is formatted in UTC by the query itself, so neither the server's nor the
//! session's `TimeZone` (with its historical offsets in seconds, which RFC 3339 cannot
//! write) changes what is read.

use std::ops::Bound;
use std::sync::LazyLock;

use metrics::counter;
use tokio_postgres::Row;

use super::metrics::Op;
use super::pool::{PgStore, db_error};
use crate::domain::metrics as m;
use crate::domain::order::{ContentHash, Order, OrderUid};
use crate::domain::ports::{OrderReader, Position, StoreError, StoredOrder};

const SELECT_ORDER_JSON: &str = r#"
SELECT o.order_uid, o.content_hash, json_build_object(
    'order_uid', o.order_uid, 'track_number', o.track_number, 'entry', o.entry,
    'delivery', json_build_object(
        'name', d.name, 'phone', d.phone, 'zip', d.zip, 'city', d.city,
        'address', d.address, 'region', d.region, 'email', d.email),
    'payment', json_build_object(
        'transaction', p.transaction, 'request_id', p.request_id, 'currency', p.currency,
        'provider', p.provider, 'amount', p.amount, 'payment_dt', p.payment_dt, 'bank', p.bank,
        'delivery_cost', p.delivery_cost, 'goods_total', p.goods_total,
        'custom_fee', p.custom_fee),
    'items', (SELECT coalesce(json_agg(json_build_object(
                  'chrt_id', i.chrt_id, 'track_number', i.track_number, 'price', i.price,
                  'rid', i.rid, 'name', i.name, 'sale', i.sale, 'size', i.size,
                  'total_price', i.total_price, 'nm_id', i.nm_id, 'brand', i.brand,
                  'status', i.status) ORDER BY i.position), '[]')
              FROM items i WHERE i.order_uid = o.order_uid),
    'locale', o.locale, 'internal_signature', o.internal_signature,
    'customer_id', o.customer_id, 'delivery_service', o.delivery_service,
    'shardkey', o.shardkey, 'sm_id', o.sm_id,
    -- to_char writes 1 BC as 0001: a date before year 1 becomes null, which does not read.
    'date_created', CASE WHEN o.date_created >= '0001-01-01 00:00:00+00' THEN
        to_char(o.date_created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END,
    'oof_shard', o.oof_shard)::text,
    o.ingested_at
FROM {orders} o
JOIN deliveries d USING (order_uid)
JOIN payments p USING (order_uid)
"#;

/// The lookup of one order by its uid (`$1`), as JSON. Public so that a benchmark can run
/// the same statement alone, as its baseline.
pub static FIND_ORDER_SQL: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE o.order_uid = $1", select_from("orders")));

/// [`SELECT_ORDER_JSON`] over `orders`: the table, or a subquery that picks some of it.
fn select_from(orders: &str) -> String {
    SELECT_ORDER_JSON.replace("{orders}", orders)
}

/// The position held by columns `at` (ingested_at) and `uid` of a row.
fn position(row: &Row, at: usize, uid: usize) -> Result<Position, StoreError> {
    let raw: String = row.get(uid);
    let uid = OrderUid::parse(raw.clone()).map_err(|e| StoreError::Unreadable {
        uid: raw,
        why: e.to_string(),
    })?;
    Ok(Position {
        stored_at: row.get(at),
        uid,
    })
}

fn stored(row: &Row) -> Result<StoredOrder, StoreError> {
    let uid: String = row.get(0);
    let hash: Vec<u8> = row.get(1);
    let text: &str = row.get(2);
    let order: Order = serde_json::from_str(text).map_err(|e| StoreError::Unreadable {
        uid: uid.clone(),
        why: format!("it does not read back as an order: {e}"),
    })?;
    let json = order.to_json();
    let hash = ContentHash(hash.try_into().map_err(|_| StoreError::Unreadable {
        uid: uid.clone(),
        why: "its content hash is malformed".to_owned(),
    })?);
    if ContentHash::of_json(&json) != hash {
        tracing::warn!(%uid, "stored order differs from its content hash");
    }
    let uid = OrderUid::parse(uid.clone()).map_err(|e| StoreError::Unreadable {
        uid,
        why: e.to_string(),
    })?;
    Ok(StoredOrder { uid, json, hash })
}

impl OrderReader for PgStore {
    async fn find(&self, uid: &OrderUid) -> Result<Option<StoredOrder>, StoreError> {
        self.timed(Op::Find, async {
            let mut client = self.conn().await?;
            let sql = FIND_ORDER_SQL.as_str();
            let statement = client.prepare_cached(sql).await.map_err(db_error)?;
            let row = client
                .query_opt(&statement, &[&uid.as_str()])
                .await
                .map_err(db_error)?;
            client.keep();
            let found = row.as_ref().map(stored).transpose();
            if matches!(found, Err(StoreError::Unreadable { .. })) {
                counter!(m::ORDERS_UNREADABLE).increment(1);
            }
            found
        })
        .await
    }

    async fn newest_start(&self, n: usize) -> Result<Option<Position>, StoreError> {
        self.timed(Op::Latest, async {
            let mut client = self.conn().await?;
            let skip = i64::try_from(n.saturating_sub(1)).unwrap_or(i64::MAX);
            let row = client
                .query_opt(
                    "SELECT ingested_at, order_uid FROM orders \
                     ORDER BY ingested_at DESC, order_uid DESC OFFSET $1 LIMIT 1",
                    &[&skip],
                )
                .await
                .map_err(db_error)?;
            let row = match row {
                Some(row) => Some(row),
                // Fewer than `n` stored: all of them, from the oldest.
                None => client
                    .query_opt(
                        "SELECT ingested_at, order_uid FROM orders \
                         ORDER BY ingested_at, order_uid LIMIT 1",
                        &[],
                    )
                    .await
                    .map_err(db_error)?,
            };
            client.keep();
            row.map(|row| position(&row, 0, 1)).transpose()
        })
        .await
    }

    async fn page(
        &self,
        from: Bound<&Position>,
        limit: usize,
    ) -> Result<Vec<(Position, StoredOrder)>, StoreError> {
        self.timed(Op::Latest, async {
            let mut client = self.conn().await?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let (from, op) = match from {
                Bound::Included(p) => (Some(p), ">="),
                Bound::Excluded(p) => (Some(p), ">"),
                Bound::Unbounded => (None, ""),
            };
            // The page's orders first, then their rows: joined to the whole child tables,
            // the planner would scan them for every page.
            let order = "ORDER BY ingested_at, order_uid";
            let rows = match from {
                Some(p) => {
                    let page = format!(
                        "(SELECT * FROM orders WHERE (ingested_at, order_uid) {op} ($1, $2) \
                         {order} LIMIT $3)"
                    );
                    let sql = format!("{} ORDER BY o.ingested_at, o.order_uid", select_from(&page));
                    let uid = p.uid.as_str();
                    client.query(&sql, &[&p.stored_at, &uid, &limit]).await
                }
                None => {
                    let page = format!("(SELECT * FROM orders {order} LIMIT $1)");
                    let sql = format!("{} ORDER BY o.ingested_at, o.order_uid", select_from(&page));
                    client.query(&sql, &[&limit]).await
                }
            }
            .map_err(db_error)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let at = position(row, 3, 0)?;
                match stored(row) {
                    Ok(order) => out.push((at, order)),
                    // One bad row must not keep the service from ever becoming ready.
                    Err(e) => {
                        counter!(m::ORDERS_UNREADABLE).increment(1);
                        tracing::error!(error = %e, "skipping a stored order that cannot be read");
                    }
                }
            }
            client.keep();
            Ok(out)
        })
        .await
    }
}
