//! `just bench-ingest`: how fast `serve` drains a pre-filled topic into PostgreSQL, against a
//! baseline measured in the same run: the same rows written by binary COPY straight into the
//! same tables (the most PostgreSQL can take, with no Kafka, JSON or validation at all), over
//! as many connections as ingest writes with, its rows (hashes included) prepared before the
//! timed part.
//!
//! Each run reports serve's rate from process start to the last order stored (start-up,
//! group join and the whole drain) and its steady rate (first to last row written), each as
//! a ratio to that run's COPY; the summary is the median of the runs' ratios.
//!
//! Settings (environment): BENCH_ORDERS (200000), BENCH_RUNS (3), BENCH_INVALID_RATE (0.1),
//! BENCH_COPY_CONNECTIONS (3), BENCH_ENV (extra `NAME=value` settings for serve,
//! space-separated), TEST_DATABASE_URL, TEST_KAFKA_BROKERS, and BENCH_BIN: another
//! `order-svc` binary to run instead of this build's (an older commit's, to compare before
//! and after a change). Run through `cargo bench`; under `cargo test` it only says it was
//! skipped.

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
use tokio_postgres::{Client, NoTls};

const PARTITIONS: i32 = 3;
/// Oversized orders are just over this; the default 1 MiB would put ~1.3 GB in the broker.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

mod common;

use common::copy::{Rows, copy_parallel};
use common::env_or;
use common::load::{get_text, metric};

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
    let brokers = std::env::var("TEST_KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "127.0.0.1:19092".into());

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

    // Everything COPY needs (hashes, positions) is made before its timed part.
    let rows = Rows::new(valid);
    let copy_connections: usize = env_or("BENCH_COPY_CONNECTIONS", 3);
    println!(
        "COPY baseline over {copy_connections} connections (serve writes up to INGEST_PARALLEL_BATCHES = 3 batches at once)"
    );
    let mut from_start_ratios = Vec::new();
    let mut steady_ratios = Vec::new();
    for run in 1..=runs {
        let db = Database::create(&admin_url, "bench_serve").await?;
        let drain = drain_with_serve(
            &db,
            &brokers,
            &topic,
            &format!("bench-{run}-{}", uuid::Uuid::new_v4().simple()),
            orders,
            rows.len(),
        )
        .await?;
        db.drop_it(&admin_url).await?;
        let db = Database::create(&admin_url, "bench_copy").await?;
        let copy = copy_parallel(&db.url, &rows, copy_connections).await?;
        db.drop_it(&admin_url).await?;
        let from_start = rows.len() as f64 / drain.durable;
        println!(
            "run {run}: serve {from_start:>7.0} orders/s from process start ({:.1} s to the last order stored, {:.1} s to every offset committed), \
             {:>7.0} orders/s steady (first to last row)   COPY {copy:>7.0} orders/s   ratio {:.2} from start, {:.2} steady",
            drain.durable,
            drain.committed,
            drain.steady,
            from_start / copy,
            drain.steady / copy
        );
        from_start_ratios.push(from_start / copy);
        steady_ratios.push(drain.steady / copy);
    }
    println!();
    println!(
        "ingest (median of {runs} runs' ratios): {:.2} from process start, {:.2} steady",
        median(&mut from_start_ratios),
        median(&mut steady_ratios)
    );
    println!(
        "({orders} messages, {} valid, {invalid_rate} invalid; {} cores)",
        rows.len(),
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

/// What one drain took.
struct Drain {
    /// Seconds from starting `serve` to the last valid order stored.
    durable: f64,
    /// Seconds from starting `serve` to every offset committed.
    committed: f64,
    /// Stored orders per second between the first and the last row written (the rows' own
    /// `ingested_at`).
    steady: f64,
}

/// Starts `serve` on the topic with a new group and waits until every valid order is stored
/// (read from its own counter, every 20 ms) and every message committed.
async fn drain_with_serve(
    db: &Database,
    brokers: &str,
    topic: &str,
    group: &str,
    total: usize,
    valid: usize,
) -> anyhow::Result<Drain> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let started = Instant::now();
    let mut child = Command::new(bin())
        .arg("serve")
        // Measured without credentials or budgets; `bench-http` measures tokens apart.
        .env("AUTH_ANONYMOUS_SCOPES", "all")
        .env("RATE_LOOKUPS_PER_SECOND", "0")
        .env("RATE_SEARCHES_PER_SECOND", "0")
        .env("DATABASE_URL", &db.url)
        .env("KAFKA_BROKERS", brokers)
        .env("KAFKA_TOPIC", topic)
        .env("KAFKA_DLQ_TOPIC", format!("{topic}.dlq"))
        .env("KAFKA_GROUP_ID", group)
        .env("INGEST_MAX_MESSAGE_BYTES", MAX_MESSAGE_BYTES.to_string())
        .env("HTTP_ADDR", addr.to_string())
        .env("RUST_LOG", "warn")
        .envs(common::bench_env()?)
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
    let deadline = Instant::now() + Duration::from_secs(1800);
    let durable = loop {
        let text = get_text(addr, "/metrics").await.unwrap_or_default();
        if metric(&text, "order_svc_orders_ingested_total{outcome=\"stored\"}") as usize >= valid {
            break started.elapsed().as_secs_f64();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "serve did not store the orders in 30 minutes"
        );
        anyhow::ensure!(child.try_wait()?.is_none(), "serve exited early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    while (committed(group)? as usize) < total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "serve did not commit the topic in 30 minutes"
        );
        anyhow::ensure!(child.try_wait()?.is_none(), "serve exited early");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let committed = started.elapsed().as_secs_f64();
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
    Ok(Drain {
        durable,
        committed,
        steady: stored as f64 / span.max(1e-3),
    })
}
