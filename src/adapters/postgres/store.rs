//! The order store: batched, idempotent writes in one statement per batch, and reads for
//! lookup.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use metrics::{counter, histogram};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::config::DatabaseUrl;
use crate::domain::message::{DeadLetter, MessageId};
use crate::domain::metrics as m;
use crate::domain::ports::{DeadLetterLedger, OrderStore, StoreError, StoreOutcome};
use crate::domain::validate::CheckedOrder;

/// Writes the orders, deliveries, payments and items of a whole batch in ONE statement (so
/// one implicit transaction): arrays in, `UNNEST` out, `ON CONFLICT DO NOTHING` on the uid,
/// and the child rows only for the orders that were really new.
const INSERT_BATCH: &str = r#"
WITH new_orders AS (
    INSERT INTO orders (order_uid, track_number, entry, locale, internal_signature, customer_id,
                        delivery_service, shardkey, sm_id, date_created, oof_shard, content_hash)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::int8[], $10::timestamptz[], $11::text[],
                         $12::bytea[])
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

const DEAD_LETTERED: &str = r#"
SELECT t.i::int8 FROM UNNEST($1::text[], $2::int4[], $3::int8[], $4::bytea[])
         WITH ORDINALITY AS t(topic, partition, off, hash, i)
JOIN dead_letters d
  ON d.topic = t.topic AND d.partition = t.partition AND d."offset" = t.off
 AND d.payload_hash = t.hash
"#;

const RECORD_DEAD_LETTERS: &str = r#"
INSERT INTO dead_letters (topic, partition, "offset", payload_hash, reason, detail)
SELECT * FROM UNNEST($1::text[], $2::int4[], $3::int8[], $4::bytea[], $5::text[], $6::text[])
ON CONFLICT DO NOTHING
"#;

/// Orders in PostgreSQL, through a connection pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Longest wait for any call, past which the server counts as unavailable.
    call_timeout: Duration,
}

/// Longest wait for one lookup (`find`, `ping`): a person is waiting.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// TCP settings that notice a server that went silent: keepalive probes on idle
/// connections, and a limit on how long sent data may stay unacknowledged. And the
/// server-side `statement_timeout`, unless the URL's `options` set one.
fn silent_server_settings(config: &mut tokio_postgres::Config, statement_timeout: Duration) {
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(15));
    let options = config.get_options().unwrap_or_default().to_owned();
    if !options.contains("statement_timeout") {
        let ms = statement_timeout.as_millis();
        config.options(format!("{options} -c statement_timeout={ms}").trim_start());
    }
}

/// A pool for `url`, `size` connections at most, whose statements may run for
/// `statement_timeout`. Connecting is lazy: the first query (or [`PgStore::ping`]) finds out
/// whether the server answers.
pub fn pool(url: &DatabaseUrl, size: usize, statement_timeout: Duration) -> anyhow::Result<Pool> {
    let mut config = url.config().clone();
    silent_server_settings(&mut config, statement_timeout);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        // A dead server must fail calls quickly so ingest can back off and report not ready.
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the connection pool: {e}"))
}

/// A pooled connection that goes back to the pool only when the call using it said so
/// ([`Conn::keep`], on success). One dropped mid-call, because the call timed out or
/// failed, may sit on a hung or broken socket: it is closed instead of handed to the next
/// caller, who would hang on it in turn.
pub(crate) struct Conn {
    object: Option<deadpool_postgres::Object>,
    keep: bool,
}

impl Conn {
    pub(crate) fn keep(&mut self) {
        self.keep = true;
    }
}

impl std::ops::Deref for Conn {
    type Target = deadpool_postgres::Object;

    fn deref(&self) -> &Self::Target {
        self.object.as_ref().expect("present until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.keep
            && let Some(object) = self.object.take()
        {
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

impl PgStore {
    /// A connection from the pool, see [`Conn`].
    pub(crate) async fn conn(&self) -> Result<Conn, StoreError> {
        let object = self.pool.get().await.map_err(pool_error)?;
        Ok(Conn {
            object: Some(object),
            keep: false,
        })
    }

    /// A store on `pool`, whose connections were made with this `statement_timeout`: a
    /// call that has not answered 5 s after it counts as unavailable (the server stopped
    /// answering without closing the connection).
    pub fn new(pool: Pool, statement_timeout: Duration) -> Self {
        Self {
            pool,
            call_timeout: statement_timeout + Duration::from_secs(5),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Whether the server answers a trivial query now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", async {
            let mut client = self.conn().await?;
            client.simple_query("SELECT 1").await.map_err(db_error)?;
            client.keep();
            Ok(())
        })
        .await
    }

    pub(crate) async fn timed<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let started = Instant::now();
        // The last guard against a server that stops answering without closing (a hung
        // process, packets dropped): the statement timeout and the TCP user timeout end most
        // such calls first, but neither sees a peer whose kernel still acknowledges.
        let limit = match op {
            "find" | "ping" => LOOKUP_TIMEOUT.min(self.call_timeout),
            _ => self.call_timeout,
        };
        let result = match tokio::time::timeout(limit, f).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(anyhow::anyhow!(
                "no answer from the database within {limit:?}"
            ))),
        };
        histogram!(m::DB_QUERY, "op" => op).record(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            let kind = match e {
                StoreError::Unavailable(_) => "unavailable",
                StoreError::Refused(_) => "refused",
                StoreError::Unreadable { .. } => "unreadable",
                StoreError::Unknown(_) => "unknown",
            };
            counter!(m::DB_ERRORS, "op" => op, "kind" => kind).increment(1);
        }
        result
    }
}

/// Column arrays of a batch, borrowed from the orders.
struct Columns<'a> {
    text: Vec<Vec<&'a str>>,
    int: Vec<Vec<i64>>,
}

impl Columns<'_> {
    fn new(texts: usize, ints: usize, rows: usize) -> Self {
        Self {
            text: (0..texts).map(|_| Vec::with_capacity(rows)).collect(),
            int: (0..ints).map(|_| Vec::with_capacity(rows)).collect(),
        }
    }
}

impl OrderStore for PgStore {
    async fn store_batch(&self, orders: &[CheckedOrder]) -> Result<Vec<StoreOutcome>, StoreError> {
        self.timed("store_batch", async {
            let n = orders.len();
            let uids: Vec<&str> = orders.iter().map(|o| o.uid().as_str()).collect();
            // Column arrays, one per parameter of INSERT_BATCH, filled in one pass.
            let mut o = Columns::new(8, 1, n);
            let mut d = Columns::new(7, 0, n);
            let mut p = Columns::new(5, 5, n);
            let mut dates = Vec::with_capacity(n);
            let mut hashes: Vec<&[u8]> = Vec::with_capacity(n);
            let mut it = Columns::new(6, 6, n * 3);
            let mut positions: Vec<i32> = Vec::with_capacity(n * 3);
            for c in orders {
                let x = c.order();
                for (col, v) in o.text.iter_mut().zip([
                    &x.track_number,
                    &x.entry,
                    &x.locale,
                    &x.internal_signature,
                    &x.customer_id,
                    &x.delivery_service,
                    &x.shardkey,
                    &x.oof_shard,
                ]) {
                    col.push(v.as_str());
                }
                o.int[0].push(x.sm_id);
                dates.push(x.date_created);
                hashes.push(c.content_hash().as_bytes());
                let dl = &x.delivery;
                for (col, v) in d.text.iter_mut().zip([
                    &dl.name,
                    &dl.phone,
                    &dl.zip,
                    &dl.city,
                    &dl.address,
                    &dl.region,
                    &dl.email,
                ]) {
                    col.push(v.as_str());
                }
                let pm = &x.payment;
                for (col, v) in p.text.iter_mut().zip([
                    &pm.transaction,
                    &pm.request_id,
                    &pm.currency,
                    &pm.provider,
                    &pm.bank,
                ]) {
                    col.push(v.as_str());
                }
                for (col, v) in p.int.iter_mut().zip([
                    pm.amount,
                    pm.payment_dt,
                    pm.delivery_cost,
                    pm.goods_total,
                    pm.custom_fee,
                ]) {
                    col.push(v);
                }
                for (pos, item) in x.items.iter().enumerate() {
                    positions.push(
                        i32::try_from(pos)
                            .map_err(|_| StoreError::Refused("too many items".into()))?,
                    );
                    for (col, v) in it.text.iter_mut().zip([
                        &x.order_uid,
                        &item.track_number,
                        &item.rid,
                        &item.name,
                        &item.size,
                        &item.brand,
                    ]) {
                        col.push(v.as_str());
                    }
                    for (col, v) in it.int.iter_mut().zip([
                        item.chrt_id,
                        item.price,
                        item.sale,
                        item.total_price,
                        item.nm_id,
                        item.status,
                    ]) {
                        col.push(v);
                    }
                }
            }
            let mut client = self.conn().await?;
            let statement = client
                .prepare_cached(INSERT_BATCH)
                .await
                .map_err(db_error)?;
            let (ot, oi, dt, pt, pi, t, i) =
                (&o.text, &o.int, &d.text, &p.text, &p.int, &it.text, &it.int);
            let rows = client
                .query(
                    &statement,
                    &[
                        &uids, &ot[0], &ot[1], &ot[2], &ot[3], &ot[4], &ot[5], &ot[6], &oi[0],
                        &dates, &ot[7], &hashes, &dt[0], &dt[1], &dt[2], &dt[3], &dt[4], &dt[5],
                        &dt[6], &pt[0], &pt[1], &pt[2], &pt[3], &pi[0], &pi[1], &pt[4], &pi[2],
                        &pi[3], &pi[4], &t[0], &positions, &i[0], &t[1], &i[1], &t[2], &t[3],
                        &i[2], &t[4], &i[3], &i[4], &t[5], &i[5],
                    ],
                )
                .await
                .map_err(db_error)?;
            let inserted: std::collections::HashSet<String> =
                rows.iter().map(|r| r.get(0)).collect();
            if inserted.len() == n {
                client.keep();
                return Ok(vec![StoreOutcome::Inserted; n]);
            }
            let others: Vec<&str> = uids
                .iter()
                .copied()
                .filter(|u| !inserted.contains(*u))
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
                .map(|c| {
                    if inserted.contains(c.uid().as_str()) {
                        StoreOutcome::Inserted
                    } else if existing.get(c.uid().as_str()).map(Vec::as_slice)
                        == Some(c.content_hash().as_bytes())
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

/// The dead-letter ledger lives beside the orders, in the `dead_letters` table.
impl DeadLetterLedger for PgStore {
    async fn dead_lettered(&self, ids: &[MessageId]) -> Result<Vec<bool>, StoreError> {
        self.timed("dead_lettered", async {
            let (topics, partitions, offsets, hashes) = id_columns(ids.iter());
            let mut client = self.conn().await?;
            let rows = client
                .query(DEAD_LETTERED, &[&topics, &partitions, &offsets, &hashes])
                .await
                .map_err(db_error)?;
            let mut seen = vec![false; ids.len()];
            for row in rows {
                // WITH ORDINALITY counts from 1.
                let i: i64 = row.get(0);
                if let Some(slot) = seen.get_mut((i - 1) as usize) {
                    *slot = true;
                }
            }
            client.keep();
            Ok(seen)
        })
        .await
    }

    async fn record_dead_letters(&self, letters: &[DeadLetter<'_>]) -> Result<(), StoreError> {
        self.timed("record_dead_letters", async {
            let (topics, partitions, offsets, hashes) = id_columns(letters.iter().map(|l| &l.id));
            let reasons: Vec<&str> = letters.iter().map(|l| l.reason.code()).collect();
            // PostgreSQL text cannot hold NUL, and a detail may quote the message.
            let details: Vec<String> = letters
                .iter()
                .map(|l| l.detail.replace('\0', "\\0"))
                .collect();
            let mut client = self.conn().await?;
            client
                .execute(
                    RECORD_DEAD_LETTERS,
                    &[&topics, &partitions, &offsets, &hashes, &reasons, &details],
                )
                .await
                .map_err(db_error)?;
            client.keep();
            Ok(())
        })
        .await
    }
}

type IdColumns<'a> = (Vec<&'a str>, Vec<i32>, Vec<i64>, Vec<&'a [u8]>);

fn id_columns<'a>(ids: impl Iterator<Item = &'a MessageId>) -> IdColumns<'a> {
    let mut cols: IdColumns<'a> = Default::default();
    for id in ids {
        cols.0.push(&id.topic);
        cols.1.push(id.partition);
        cols.2.push(id.offset);
        cols.3.push(&id.payload_hash);
    }
    cols
}

/// Driver errors become the port's errors here and go no further.
///
/// Integrity (23), data (22) and program-limit (54) errors depend on the data: the same
/// data fails the same way again, so ingest sets the order aside. Every other class is about
/// the server, the connection or our statements, and is retried (counted in
/// `ingest_retries_total` and `db_errors_total`, which the alert rules watch).
pub(crate) fn db_error(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(code)
            if ["22", "23", "54"]
                .iter()
                .any(|class| code.code().starts_with(class)) =>
        {
            StoreError::Refused(
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
            )
        }
        Some(code)
            if code.code().starts_with("08")
                || code.code().starts_with("53")
                || code.code().starts_with("57")
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            StoreError::Unavailable(e.into())
        }
        Some(_) => StoreError::Unknown(e.into()),
        // No SQLSTATE: the connection itself failed.
        None => StoreError::Unavailable(e.into()),
    }
}

pub(crate) fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => db_error(e),
        other => StoreError::Unavailable(anyhow::anyhow!("no database connection: {other}")),
    }
}
