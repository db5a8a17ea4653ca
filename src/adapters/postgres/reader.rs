//! Reading orders back as JSON in one query: PostgreSQL assembles the nested document, we
//! re-encode it canonically (the same bytes the content hash was taken over).
//!
//! `date_created` is formatted in UTC by the query itself, so neither the server's nor the
//! session's `TimeZone` (with its historical offsets in seconds, which RFC 3339 cannot
//! write) changes what is read.

use futures::TryStreamExt;
use metrics::counter;
use tokio_postgres::Row;

use super::metrics::Op;
use super::pool::{PgStore, db_error};
use crate::domain::metrics as m;
use crate::domain::order::{ContentHash, Order, OrderUid};
use crate::domain::ports::{OrderReader, StoreError, StoredOrder};

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
    'oof_shard', o.oof_shard)::text
FROM orders o
JOIN deliveries d USING (order_uid)
JOIN payments p USING (order_uid)
"#;

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
            let sql = format!("{SELECT_ORDER_JSON} WHERE o.order_uid = $1");
            let statement = client.prepare_cached(&sql).await.map_err(db_error)?;
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

    async fn latest(&self, n: usize) -> Result<Vec<StoredOrder>, StoreError> {
        self.timed(Op::Latest, async {
            let mut client = self.conn().await?;
            let sql = format!("{SELECT_ORDER_JSON} ORDER BY o.ingested_at DESC LIMIT $1");
            let limit = i64::try_from(n).unwrap_or(i64::MAX);
            let rows = client.query_raw(&sql, [limit]).await.map_err(db_error)?;
            futures::pin_mut!(rows);
            let mut out = Vec::with_capacity(n.min(1 << 20));
            while let Some(row) = rows.try_next().await.map_err(db_error)? {
                match stored(&row) {
                    Ok(order) => out.push(order),
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
