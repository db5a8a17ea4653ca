//! Reads for people without a uid: order summaries newest first, restricted by exact
//! matches on indexed fields (migrations/V5), and the dead-letter records.
//!
//! Every criterion is an equality on the expression its index is built on (see
//! [`statement`]), so each is answered by its index, and the page is cut by the keyset
//! `(ingested_at, order_uid) < cursor` on orders_ingested_at_uid_idx.
//! The statement text depends only on which fields are asked for, never on their values.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::metrics::Op;
use super::pool::{PgStore, db_error};
use crate::domain::browse::{
    Field, IndexError, MAX_MATCHES, OrderIndex, OrderSummary, RejectionRecord, Search,
};
use crate::domain::order::OrderUid;
use crate::domain::ports::{Position, StoreError};

/// Where `field` is held: the table, the alias the summary statement gives it, and the
/// expression its index is built on.
fn column(field: Field) -> (&'static str, &'static str, &'static str) {
    match field {
        Field::Uid => ("orders", "o", "o.order_uid"),
        Field::TrackNumber => ("orders", "o", "o.track_number"),
        Field::CustomerId => ("orders", "o", "o.customer_id"),
        Field::Transaction => ("payments", "p", "p.transaction"),
        Field::Phone => ("deliveries", "d", "d.phone"),
        Field::Email => ("deliveries", "d", r#"lower(d.email COLLATE "C")"#),
    }
}

/// The uids of orders whose `field` equals `$n`.
fn matching(field: Field, n: usize) -> String {
    let (table, alias, expr) = column(field);
    format!("SELECT {alias}.order_uid FROM {table} {alias} WHERE {expr} = ${n}")
}

/// The statement for `search` with a cursor or without, and its parameters' values in order.
///
/// Each criterion every match must meet is a condition on the joined row itself, so the
/// planner starts from that field's index and reaches the other tables by primary key (an
/// `IN (subquery)` would read the searched table twice). Criteria of which any may match are
/// one `IN (... UNION ...)`. Orders stored before V6 have no `item_count`: theirs are counted.
///
/// A search that restricts reads at most [`MAX_MATCHES`] + 1 matches (its indexes are hash
/// indexes: matches come in no time order, and all of them are sorted) and says how many it
/// read in a tenth column, counted before the page's `LIMIT`; the unrestricted list walks
/// orders_ingested_at_uid_idx backwards and stops at the page.
fn statement<'a>(search: &'a Search, before: Option<&'a Position>) -> (String, Vec<&'a str>) {
    let mut values: Vec<&str> = Vec::new();
    let mut conditions: Vec<String> = Vec::new();
    for c in &search.all {
        values.push(&c.value);
        conditions.push(format!("{} = ${}", column(c.field).2, values.len()));
    }
    if !search.any.is_empty() {
        let mut union = Vec::new();
        for c in &search.any {
            values.push(&c.value);
            union.push(matching(c.field, values.len()));
        }
        conditions.push(format!("o.order_uid IN ({})", union.join(" UNION ")));
    }
    let n = values.len();
    if before.is_some() {
        conditions.push(format!(
            "(o.ingested_at, o.order_uid) < (${}::timestamptz, ${}::text)",
            n + 1,
            n + 2
        ));
    }
    let limit = if before.is_some() { n + 3 } else { n + 1 };
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let (matched, cap) = if search.is_everything() {
        ("", String::new())
    } else {
        (", count(*) OVER ()", format!("LIMIT {}", MAX_MATCHES + 1))
    };
    let sql = format!(
        "SELECT s.ingested_at, s.order_uid, s.date_created, s.customer_id, s.name, s.city, \
                s.amount, s.currency, \
                coalesce(s.item_count::int8, \
                         (SELECT count(*) FROM items i WHERE i.order_uid = s.order_uid)){matched} \
         FROM (SELECT o.ingested_at, o.order_uid, o.date_created, o.customer_id, d.name, \
                      d.city, p.amount, p.currency, o.item_count \
               FROM orders o JOIN deliveries d USING (order_uid) \
                             JOIN payments p USING (order_uid) \
               {filter} {cap}) s \
         ORDER BY s.ingested_at DESC, s.order_uid DESC LIMIT ${limit}"
    );
    (sql, values)
}

fn summary(row: &Row) -> Result<(Position, OrderSummary), StoreError> {
    let raw: String = row.get(1);
    let uid = OrderUid::parse(raw.clone()).map_err(|e| StoreError::Unreadable {
        uid: raw.clone(),
        why: e.to_string(),
    })?;
    let stored_at: DateTime<Utc> = row.get(0);
    let summary = OrderSummary {
        order_uid: raw,
        date_created: row.get(2),
        stored_at,
        customer_id: row.get(3),
        name: row.get(4),
        city: row.get(5),
        amount: row.get(6),
        currency: row.get(7),
        items: row.get(8),
    };
    Ok((Position { stored_at, uid }, summary))
}

/// Dead-letter records newest first: of one uid (on dead_letters_order_uid_idx), or all (on
/// dead_letters_id_idx). Two statements, not one with `$1 IS NULL OR ...`, whose generic plan
/// could use neither index.
const REJECTIONS_OF: &str = r#"
SELECT id, sent_at, reason, detail, order_uid, message_key, topic, partition, "offset",
       message_time, message_key_sha256
FROM dead_letters WHERE order_uid = $1 AND id < $2 ORDER BY id DESC LIMIT $3
"#;
const REJECTIONS_ALL: &str = r#"
SELECT id, sent_at, reason, detail, order_uid, message_key, topic, partition, "offset",
       message_time, message_key_sha256
FROM dead_letters WHERE id < $1 ORDER BY id DESC LIMIT $2
"#;

fn rejection(row: &Row) -> RejectionRecord {
    let key: Option<Vec<u8>> = row.get(5);
    let whole: Option<Vec<u8>> = row.get(10);
    // A key kept as a prefix says so, with the hash of the whole to recognise it by.
    let key = key.map(|k| {
        let text = String::from_utf8_lossy(&k).into_owned();
        match &whole {
            Some(hash) => format!("{text}… (cut; sha256 {})", hex::encode(hash)),
            None => text,
        }
    });
    RejectionRecord {
        id: row.get(0),
        at: row.get(1),
        reason: row.get(2),
        detail: row.get(3),
        order_uid: row.get(4),
        key,
        topic: row.get(6),
        partition: row.get(7),
        offset: row.get(8),
        message_time: row.get(9),
    }
}

impl OrderIndex for PgStore {
    async fn summaries(
        &self,
        search: &Search,
        before: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<(Position, OrderSummary)>, IndexError> {
        let (matched, summaries) = self
            .timed(Op::Browse, async {
                let (sql, values) = statement(search, before);
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let before_uid = before.map(|p| p.uid.as_str());
                let mut params: Vec<&(dyn ToSql + Sync)> =
                    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                if let (Some(p), Some(uid)) = (before, before_uid.as_ref()) {
                    params.push(&p.stored_at);
                    params.push(uid);
                }
                params.push(&limit);
                let mut client = self.conn().await?;
                let statement = client.prepare_cached(&sql).await.map_err(db_error)?;
                let rows = client.query(&statement, &params).await.map_err(db_error)?;
                client.keep();
                // The count of matches read, on every row of a search that restricts.
                let matched = rows.first().and_then(|r| r.try_get::<_, i64>(9).ok());
                let summaries = rows.iter().map(summary).collect::<Result<Vec<_>, _>>()?;
                Ok((matched, summaries))
            })
            .await?;
        if matched.is_some_and(|n| n > MAX_MATCHES as i64) {
            return Err(IndexError::TooMany);
        }
        Ok(summaries)
    }

    async fn rejections(
        &self,
        uid: Option<&OrderUid>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<RejectionRecord>, StoreError> {
        self.timed(Op::Rejections, async {
            let before = before.unwrap_or(i64::MAX);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut client = self.conn().await?;
            let rows = match uid {
                Some(uid) => {
                    let statement = client
                        .prepare_cached(REJECTIONS_OF)
                        .await
                        .map_err(db_error)?;
                    let uid = uid.as_str();
                    client.query(&statement, &[&uid, &before, &limit]).await
                }
                None => {
                    let statement = client
                        .prepare_cached(REJECTIONS_ALL)
                        .await
                        .map_err(db_error)?;
                    client.query(&statement, &[&before, &limit]).await
                }
            }
            .map_err(db_error)?;
            client.keep();
            Ok(rows.iter().map(rejection).collect())
        })
        .await
    }
}
