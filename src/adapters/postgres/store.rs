//! The order store: the orders, deliveries, payments and items of a whole batch written in
//! one idempotent statement.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use super::metrics::Op;
use super::pool::{PgStore, db_error};
use crate::domain::ports::{OrderStore, StoreError, StoreOutcome};
use crate::domain::validate::CheckedOrder;

/// Writes the orders, deliveries, payments and items of a whole batch in ONE statement (so
/// one implicit transaction): arrays in, `UNNEST` out, `ON CONFLICT DO NOTHING` on the uid,
/// and the child rows only for the orders that were really new.
const INSERT_BATCH: &str = r#"
WITH new_orders AS (
    INSERT INTO orders (order_uid, track_number, entry, locale, internal_signature, customer_id,
                        delivery_service, shardkey, sm_id, date_created, oof_shard, content_hash,
                        item_count)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::int8[], $10::timestamptz[], $11::text[],
                         $12::bytea[], $43::int4[])
    ON CONFLICT (order_uid) DO NOTHING
    RETURNING order_uid
), new_deliveries AS (
    INSERT INTO deliveries (order_uid, name, phone, zip, city, address, region, email)
    SELECT d.* FROM UNNEST($1::text[], $13::text[], $14::text[], $15::text[], $16::text[],
                           $17::text[], $18::text[], $19::text[])
         AS d(order_uid, name, phone, zip, city, address, region, email)
    JOIN new_orders USING (order_uid)
), new_payments AS (
    INSERT INTO payments (order_uid, transaction, request_id, currency, provider, amount,
                          payment_dt, bank, delivery_cost, goods_total, custom_fee)
    SELECT p.* FROM UNNEST($1::text[], $20::text[], $21::text[], $22::text[], $23::text[],
                           $24::int8[], $25::int8[], $26::text[], $27::int8[], $28::int8[],
                           $29::int8[])
         AS p(order_uid, transaction, request_id, currency, provider, amount, payment_dt, bank,
              delivery_cost, goods_total, custom_fee)
    JOIN new_orders USING (order_uid)
), new_items AS (
    INSERT INTO items (order_uid, position, chrt_id, track_number, price, rid, name, sale, size,
                       total_price, nm_id, brand, status)
    SELECT i.* FROM UNNEST($30::text[], $31::int4[], $32::int8[], $33::text[], $34::int8[],
                           $35::text[], $36::text[], $37::int8[], $38::text[], $39::int8[],
                           $40::int8[], $41::text[], $42::int8[])
         AS i(order_uid, position, chrt_id, track_number, price, rid, name, sale, size,
              total_price, nm_id, brand, status)
    JOIN new_orders USING (order_uid)
)
SELECT order_uid FROM new_orders
"#;

const EXISTING_HASHES: &str =
    "SELECT order_uid, content_hash FROM orders WHERE order_uid = ANY($1::text[])";

/// One array per parameter of [`INSERT_BATCH`], borrowed from the orders; [`Self::params`]
/// lists them in the statement's order ($1, $2, ...).
#[derive(Default)]
struct BatchColumns<'a> {
    order_uid: Vec<&'a str>,
    track_number: Vec<&'a str>,
    entry: Vec<&'a str>,
    locale: Vec<&'a str>,
    internal_signature: Vec<&'a str>,
    customer_id: Vec<&'a str>,
    delivery_service: Vec<&'a str>,
    shardkey: Vec<&'a str>,
    sm_id: Vec<i64>,
    date_created: Vec<DateTime<Utc>>,
    oof_shard: Vec<&'a str>,
    content_hash: Vec<&'a [u8]>,
    item_count: Vec<i32>,
    delivery_name: Vec<&'a str>,
    delivery_phone: Vec<&'a str>,
    delivery_zip: Vec<&'a str>,
    delivery_city: Vec<&'a str>,
    delivery_address: Vec<&'a str>,
    delivery_region: Vec<&'a str>,
    delivery_email: Vec<&'a str>,
    transaction: Vec<&'a str>,
    request_id: Vec<&'a str>,
    currency: Vec<&'a str>,
    provider: Vec<&'a str>,
    amount: Vec<i64>,
    payment_dt: Vec<i64>,
    bank: Vec<&'a str>,
    delivery_cost: Vec<i64>,
    goods_total: Vec<i64>,
    custom_fee: Vec<i64>,
    item_order_uid: Vec<&'a str>,
    item_position: Vec<i32>,
    item_chrt_id: Vec<i64>,
    item_track_number: Vec<&'a str>,
    item_price: Vec<i64>,
    item_rid: Vec<&'a str>,
    item_name: Vec<&'a str>,
    item_sale: Vec<i64>,
    item_size: Vec<&'a str>,
    item_total_price: Vec<i64>,
    item_nm_id: Vec<i64>,
    item_brand: Vec<&'a str>,
    item_status: Vec<i64>,
}

impl<'a> BatchColumns<'a> {
    fn of(orders: &'a [CheckedOrder]) -> Result<Self, StoreError> {
        let mut c = Self::default();
        for checked in orders {
            let order = checked.order();
            c.order_uid.push(checked.uid().as_str());
            c.track_number.push(&order.track_number);
            c.entry.push(&order.entry);
            c.locale.push(&order.locale);
            c.internal_signature.push(&order.internal_signature);
            c.customer_id.push(&order.customer_id);
            c.delivery_service.push(&order.delivery_service);
            c.shardkey.push(&order.shardkey);
            c.sm_id.push(order.sm_id);
            c.date_created.push(order.date_created);
            c.oof_shard.push(&order.oof_shard);
            c.content_hash.push(checked.content_hash().as_bytes());
            let item_count = i32::try_from(order.items.len())
                .map_err(|_| StoreError::Refused("too many items".into()))?;
            c.item_count.push(item_count);
            let delivery = &order.delivery;
            c.delivery_name.push(&delivery.name);
            c.delivery_phone.push(&delivery.phone);
            c.delivery_zip.push(&delivery.zip);
            c.delivery_city.push(&delivery.city);
            c.delivery_address.push(&delivery.address);
            c.delivery_region.push(&delivery.region);
            c.delivery_email.push(&delivery.email);
            let payment = &order.payment;
            c.transaction.push(&payment.transaction);
            c.request_id.push(&payment.request_id);
            c.currency.push(&payment.currency);
            c.provider.push(&payment.provider);
            c.amount.push(payment.amount);
            c.payment_dt.push(payment.payment_dt);
            c.bank.push(&payment.bank);
            c.delivery_cost.push(payment.delivery_cost);
            c.goods_total.push(payment.goods_total);
            c.custom_fee.push(payment.custom_fee);
            for (position, item) in (0..item_count).zip(&order.items) {
                c.item_order_uid.push(checked.uid().as_str());
                c.item_position.push(position);
                c.item_chrt_id.push(item.chrt_id);
                c.item_track_number.push(&item.track_number);
                c.item_price.push(item.price);
                c.item_rid.push(&item.rid);
                c.item_name.push(&item.name);
                c.item_sale.push(item.sale);
                c.item_size.push(&item.size);
                c.item_total_price.push(item.total_price);
                c.item_nm_id.push(item.nm_id);
                c.item_brand.push(&item.brand);
                c.item_status.push(item.status);
            }
        }
        Ok(c)
    }

    /// The parameters of [`INSERT_BATCH`], $1 to $43, in order.
    fn params(&self) -> [&(dyn ToSql + Sync); 43] {
        [
            &self.order_uid,
            &self.track_number,
            &self.entry,
            &self.locale,
            &self.internal_signature,
            &self.customer_id,
            &self.delivery_service,
            &self.shardkey,
            &self.sm_id,
            &self.date_created,
            &self.oof_shard,
            &self.content_hash,
            &self.delivery_name,
            &self.delivery_phone,
            &self.delivery_zip,
            &self.delivery_city,
            &self.delivery_address,
            &self.delivery_region,
            &self.delivery_email,
            &self.transaction,
            &self.request_id,
            &self.currency,
            &self.provider,
            &self.amount,
            &self.payment_dt,
            &self.bank,
            &self.delivery_cost,
            &self.goods_total,
            &self.custom_fee,
            &self.item_order_uid,
            &self.item_position,
            &self.item_chrt_id,
            &self.item_track_number,
            &self.item_price,
            &self.item_rid,
            &self.item_name,
            &self.item_sale,
            &self.item_size,
            &self.item_total_price,
            &self.item_nm_id,
            &self.item_brand,
            &self.item_status,
            &self.item_count,
        ]
    }
}

impl OrderStore for PgStore {
    async fn store_batch(&self, orders: &[CheckedOrder]) -> Result<Vec<StoreOutcome>, StoreError> {
        self.timed(Op::StoreBatch, async {
            let columns = BatchColumns::of(orders)?;
            let mut client = self.conn().await?;
            let statement = client
                .prepare_cached(INSERT_BATCH)
                .await
                .map_err(db_error)?;
            let rows = client
                .query(&statement, &columns.params())
                .await
                .map_err(db_error)?;
            // Each row is a distinct uid of the batch that was new: as many rows as orders
            // means every one was.
            if rows.len() == orders.len() {
                client.keep();
                return Ok(vec![StoreOutcome::Inserted; orders.len()]);
            }
            let inserted: HashSet<&str> = rows.iter().map(|r| r.get(0)).collect();
            // Not new: tell a redelivery (same hash) from a conflict (another one).
            let others: Vec<&str> = columns
                .order_uid
                .iter()
                .copied()
                .filter(|uid| !inserted.contains(*uid))
                .collect();
            let existing: HashMap<String, Vec<u8>> = client
                .query(EXISTING_HASHES, &[&others])
                .await
                .map_err(db_error)?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            client.keep();
            Ok(orders
                .iter()
                .map(|order| {
                    let uid = order.uid().as_str();
                    if inserted.contains(uid) {
                        StoreOutcome::Inserted
                    } else if existing.get(uid).map(Vec::as_slice)
                        == Some(order.content_hash().as_bytes())
                    {
                        StoreOutcome::SameContent
                    } else {
                        StoreOutcome::OtherContent
                    }
                })
                .collect())
        })
        .await
    }
}
