//! Orders written by binary `COPY` straight into the four tables: the baseline of
//! `bench-ingest` (the most PostgreSQL can take, with no Kafka, JSON or validation at all),
//! and the fast way for a benchmark to fill a database.

#![allow(dead_code)] // each benchmark uses a part

use std::time::Instant;

use order_svc::domain::order::Order;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

/// Orders with everything COPY needs computed beforehand (content hashes, item counts and
/// positions), so that a timed COPY times only the writing.
pub struct Rows {
    pub orders: Vec<Order>,
    hashes: Vec<Vec<u8>>,
    counts: Vec<i32>,
    positions: Vec<Vec<i32>>,
}

impl Rows {
    pub fn new(orders: Vec<Order>) -> Self {
        let hashes = orders.iter().map(|o| o.content_hash().0.to_vec()).collect();
        let counts: Vec<i32> = orders.iter().map(|o| o.items.len() as i32).collect();
        let positions = counts.iter().map(|&n| (0..n).collect()).collect();
        Self {
            orders,
            hashes,
            counts,
            positions,
        }
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }
}

/// Writes `rows` into the database at `url` over `connections` connections at once, each
/// its share in one transaction; returns orders per second.
pub async fn copy_parallel(url: &str, rows: &Rows, connections: usize) -> anyhow::Result<f64> {
    let mut clients = Vec::new();
    for _ in 0..connections.max(1) {
        let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(conn);
        clients.push(client);
    }
    let share = rows.len().div_ceil(clients.len());
    let started = Instant::now();
    let writes = clients.iter_mut().enumerate().map(|(i, client)| {
        let from = (i * share).min(rows.len());
        let to = ((i + 1) * share).min(rows.len());
        copy_orders(client, rows, from..to)
    });
    futures::future::try_join_all(writes).await?;
    Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
}

/// Rows `range` of `rows` by binary COPY into the four tables, in one transaction.
pub async fn copy_orders(
    client: &mut Client,
    rows: &Rows,
    range: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    let (t, i) = (Type::TEXT, Type::INT8);
    let orders = &rows.orders[range.clone()];
    let hashes = &rows.hashes[range.clone()];
    let counts = &rows.counts[range.clone()];
    let positions = &rows.positions[range];
    let tx = client.transaction().await?;
    copy_rows(
        &tx,
        "orders (order_uid, track_number, entry, locale, internal_signature, customer_id, delivery_service, shardkey, sm_id, date_created, oof_shard, content_hash, item_count)",
        &[t.clone(), t.clone(), t.clone(), t.clone(), t.clone(), t.clone(), t.clone(), t.clone(), i.clone(), Type::TIMESTAMPTZ, t.clone(), Type::BYTEA, Type::INT4],
        orders.iter().zip(hashes).zip(counts).map(|((o, h), n)| -> Vec<&(dyn ToSql + Sync)> {
            vec![&o.order_uid, &o.track_number, &o.entry, &o.locale, &o.internal_signature, &o.customer_id, &o.delivery_service, &o.shardkey, &o.sm_id, &o.date_created, &o.oof_shard, h, n]
        }),
    )
    .await?;
    copy_rows(
        &tx,
        "deliveries (order_uid, name, phone, zip, city, address, region, email)",
        &[
            t.clone(),
            t.clone(),
            t.clone(),
            t.clone(),
            t.clone(),
            t.clone(),
            t.clone(),
            t.clone(),
        ],
        orders.iter().map(|o| -> Vec<&(dyn ToSql + Sync)> {
            let d = &o.delivery;
            vec![
                &o.order_uid,
                &d.name,
                &d.phone,
                &d.zip,
                &d.city,
                &d.address,
                &d.region,
                &d.email,
            ]
        }),
    )
    .await?;
    copy_rows(
        &tx,
        "payments (order_uid, transaction, request_id, currency, provider, amount, payment_dt, bank, delivery_cost, goods_total, custom_fee)",
        &[t.clone(), t.clone(), t.clone(), t.clone(), t.clone(), i.clone(), i.clone(), t.clone(), i.clone(), i.clone(), i.clone()],
        orders.iter().map(|o| -> Vec<&(dyn ToSql + Sync)> {
            let p = &o.payment;
            vec![&o.order_uid, &p.transaction, &p.request_id, &p.currency, &p.provider, &p.amount, &p.payment_dt, &p.bank, &p.delivery_cost, &p.goods_total, &p.custom_fee]
        }),
    )
    .await?;
    copy_rows(
        &tx,
        "items (order_uid, position, chrt_id, track_number, price, rid, name, sale, size, total_price, nm_id, brand, status)",
        &[t.clone(), Type::INT4, i.clone(), t.clone(), i.clone(), t.clone(), t.clone(), i.clone(), t.clone(), i.clone(), i.clone(), t.clone(), i.clone()],
        orders.iter().zip(positions).flat_map(|(o, pos)| {
            o.items.iter().zip(pos).map(move |(it, p)| -> Vec<&(dyn ToSql + Sync)> {
                vec![&o.order_uid, p, &it.chrt_id, &it.track_number, &it.price, &it.rid, &it.name, &it.sale, &it.size, &it.total_price, &it.nm_id, &it.brand, &it.status]
            })
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// `COPY table (columns) FROM STDIN BINARY` of `rows`.
async fn copy_rows<'a>(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    types: &[Type],
    rows: impl Iterator<Item = Vec<&'a (dyn ToSql + Sync)>>,
) -> anyhow::Result<()> {
    let sink = tx
        .copy_in(&format!("COPY {table} FROM STDIN BINARY"))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, types);
    tokio::pin!(writer);
    for row in rows {
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}
