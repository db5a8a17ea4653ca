//! `just bench-ingest`: how fast `serve` drains a pre-filled topic into PostgreSQL, against a
//! baseline measured in the same run: the same rows written by binary COPY straight into the
//! same tables (the most PostgreSQL can take, with no Kafka, JSON or validation at all).
//!
//! Settings (environment): BENCH_ORDERS (200000), BENCH_RUNS (3), BENCH_INVALID_RATE (0.1),
//! TEST_DATABASE_URL, TEST_KAFKA_BROKERS, and BENCH_BIN: another `order-svc` binary to run
//! instead of this build's (an older commit's, to compare before and after a change). Run through `cargo bench`; under `cargo test` it
//! only says it was skipped.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use order_svc::domain::order::Order;
use order_svc::generate::{Corruption, GenerateOptions, Generator};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

const PARTITIONS: i32 = 3;
/// Oversized orders are just over this; the default 1 MiB would put ~1.3 GB in the broker.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

mod common;

use common::env_or;

/// The binary measured: BENCH_BIN, or this build's.
fn bin() -> String {
    std::env::var("BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_order-svc").to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("ingest benchmark skipped: run it with `just bench-ingest`");
        return Ok(());
    }
    let orders: usize = env_or("BENCH_ORDERS", 200_000);
    let runs: usize = env_or("BENCH_RUNS", 3);
    let invalid_rate: f64 = env_or("BENCH_INVALID_RATE", 0.1);
    let admin_url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let brokers = std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into());

    println!("generating {orders} orders ({invalid_rate} invalid)...");
    let mut generator = Generator::new(GenerateOptions {
        seed: 2026,
        invalid_rate,
        max_message_bytes: MAX_MESSAGE_BYTES,
        ..GenerateOptions::default()
    });
    let messages: Vec<_> = (0..orders).map(|_| generator.next_message()).collect();
    let valid: Vec<Order> = messages
        .iter()
        .filter(|m| matches!(m.corruption, None | Some(Corruption::InconsistentTotals)))
        .map(|m| serde_json::from_slice(&m.bytes).expect("valid orders decode"))
        .collect();

    let topic = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let mut kafka = ClientConfig::new();
    kafka
        .set("bootstrap.servers", &brokers)
        .set("message.max.bytes", "16777216");
    let admin: AdminClient<DefaultClientContext> = kafka.create()?;
    for r in admin
        .create_topics(
            &[
                NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(1)),
                NewTopic::new(
                    &format!("{topic}.dlq"),
                    PARTITIONS,
                    TopicReplication::Fixed(1),
                ),
            ],
            &AdminOptions::new(),
        )
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("cannot create {t}: {e}"))?;
    }
    let producer: FutureProducer = kafka
        .clone()
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create()?;
    let started = Instant::now();
    for chunk in messages.chunks(10_000) {
        let sends = chunk.iter().map(|m| {
            let mut record: FutureRecord<'_, str, [u8]> =
                FutureRecord::to(&topic).payload(&m.bytes);
            if let Some(uid) = &m.uid {
                record = record.key(uid.as_str());
            }
            producer.send(record, Duration::from_secs(30))
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| anyhow::anyhow!("produce failed: {e}"))?;
        }
    }
    println!(
        "pre-filled topic {topic} in {:.1}s; {} orders will be stored",
        started.elapsed().as_secs_f64(),
        valid.len()
    );

    let mut serve_rates = Vec::new();
    let mut copy_rates = Vec::new();
    for run in 1..=runs {
        let db = Database::create(&admin_url, "bench_serve").await?;
        let (rate, wall) = drain_with_serve(
            &db,
            &brokers,
            &topic,
            &format!("bench-{run}-{}", uuid::Uuid::new_v4().simple()),
            orders,
            valid.len(),
        )
        .await?;
        db.drop_it(&admin_url).await?;
        let db = Database::create(&admin_url, "bench_copy").await?;
        let copy = copy_baseline(&db, &valid).await?;
        db.drop_it(&admin_url).await?;
        println!(
            "run {run}: serve {rate:>8.0} orders/s (drain, {wall:.1}s with start-up)   COPY baseline {copy:>8.0} orders/s   ratio {:.2}",
            rate / copy
        );
        serve_rates.push(rate);
        copy_rates.push(copy);
    }
    let (serve, copy) = (median(&mut serve_rates), median(&mut copy_rates));
    println!();
    println!(
        "ingest (median of {runs}): serve {serve:.0} valid orders/s, COPY baseline {copy:.0} orders/s, ratio {:.2}",
        serve / copy
    );
    println!(
        "({orders} messages, {} valid, {invalid_rate} invalid; {} cores)",
        valid.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Database {
    name: String,
    url: String,
}

impl Database {
    async fn create(admin_url: &str, prefix: &str) -> anyhow::Result<Self> {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
        let url = format!("{base}/{name}");
        let status = Command::new(bin())
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "migrate failed for {name}");
        Ok(Self { name, url })
    }

    async fn client(&self) -> anyhow::Result<Client> {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }

    async fn drop_it(self, admin_url: &str) -> anyhow::Result<()> {
        let (client, conn) = tokio_postgres::connect(admin_url, NoTls).await?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name))
            .await?;
        Ok(())
    }
}

/// Starts `serve` on the topic with a new group, waits until every message is committed, and
/// returns stored orders per second between the first and the last row written (from the
/// rows' own `ingested_at`), plus the wall time including start-up and group join.
async fn drain_with_serve(
    db: &Database,
    brokers: &str,
    topic: &str,
    group: &str,
    total: usize,
    valid: usize,
) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let mut child = Command::new(bin())
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("KAFKA_BROKERS", brokers)
        .env("KAFKA_TOPIC", topic)
        .env("KAFKA_DLQ_TOPIC", format!("{topic}.dlq"))
        .env("KAFKA_GROUP_ID", group)
        .env("INGEST_MAX_MESSAGE_BYTES", MAX_MESSAGE_BYTES.to_string())
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let client = db.client().await?;
    let committed = |group: &str| -> anyhow::Result<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(topic, p);
        }
        Ok(consumer
            .committed_offsets(tpl, Duration::from_secs(10))?
            .elements()
            .iter()
            .map(|e| {
                if let Offset::Offset(o) = e.offset() {
                    o
                } else {
                    0
                }
            })
            .sum())
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let stored: i64 = client
            .query_one("SELECT count(*) FROM orders", &[])
            .await?
            .get(0);
        if stored as usize >= valid && committed(group)? as usize >= total {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "serve did not drain the topic in 10 minutes"
        );
        anyhow::ensure!(child.try_wait()?.is_none(), "serve exited early");
    }
    let wall = started.elapsed().as_secs_f64();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait()?;
    let row = client
        .query_one("SELECT count(*), extract(epoch FROM max(ingested_at) - min(ingested_at))::float8 FROM orders", &[])
        .await?;
    let (stored, span): (i64, f64) = (row.get(0), row.get(1));
    anyhow::ensure!(
        stored as usize == valid,
        "serve stored {stored} orders, expected {valid}"
    );
    Ok((stored as f64 / span.max(1e-3), wall))
}

/// The same rows by binary COPY into the four tables, in one transaction.
async fn copy_baseline(db: &Database, orders: &[Order]) -> anyhow::Result<f64> {
    let mut client = db.client().await?;
    let (t, i) = (Type::TEXT, Type::INT8);
    let started = Instant::now();
    let tx = client.transaction().await?;
    let hashes: Vec<Vec<u8>> = orders.iter().map(|o| o.content_hash().0.to_vec()).collect();
    copy_rows(
        &tx,
        "orders (order_uid, track_number, entry, locale, internal_signature, customer_id, delivery_service, shardkey, sm_id, date_created, oof_shard, content_hash)",
        &[t.clone(), t.clone(), t.clone(), t.clone(), t.clone(), t.clone(), t.clone(), t.clone(), i.clone(), Type::TIMESTAMPTZ, t.clone(), Type::BYTEA],
        orders.iter().zip(&hashes).map(|(o, h)| -> Vec<&(dyn ToSql + Sync)> {
            vec![&o.order_uid, &o.track_number, &o.entry, &o.locale, &o.internal_signature, &o.customer_id, &o.delivery_service, &o.shardkey, &o.sm_id, &o.date_created, &o.oof_shard, h]
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
    let positions: Vec<Vec<i32>> = orders
        .iter()
        .map(|o| (0..o.items.len() as i32).collect())
        .collect();
    copy_rows(
        &tx,
        "items (order_uid, position, chrt_id, track_number, price, rid, name, sale, size, total_price, nm_id, brand, status)",
        &[t.clone(), Type::INT4, i.clone(), t.clone(), i.clone(), t.clone(), t.clone(), i.clone(), t.clone(), i.clone(), i.clone(), t.clone(), i.clone()],
        orders.iter().zip(&positions).flat_map(|(o, pos)| {
            o.items.iter().zip(pos).map(move |(it, p)| -> Vec<&(dyn ToSql + Sync)> {
                vec![&o.order_uid, p, &it.chrt_id, &it.track_number, &it.price, &it.rid, &it.name, &it.sale, &it.size, &it.total_price, &it.nm_id, &it.brand, &it.status]
            })
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(orders.len() as f64 / started.elapsed().as_secs_f64())
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
