//! `just bench-memory`: the cache filled past its bound, and what the process then holds.
//!
//! `serve` ingests BENCH_ORDERS generated orders (about 1.26 kB of JSON each) with
//! CACHE_MAX_BYTES = BENCH_CACHE_MIB, so that write-through fills the cache past its bound
//! and evicts; then it is restarted to fill the cache from the database by the preload. After
//! each, its resident memory (VmRSS) is read from /proc and compared with the goal
//! RSS ≤ 1.3 × CACHE_MAX_BYTES + 64 MiB. Baseline in the same run: the same process doing the
//! same ingest with the cache off (CACHE_MAX_BYTES=0), which is what the rest of the process
//! holds.
//!
//! Settings (environment): BENCH_ORDERS (200000), BENCH_CACHE_MIB (128), BENCH_ENV (extra
//! `NAME=value` settings for serve, space-separated), TEST_DATABASE_URL, TEST_KAFKA_BROKERS.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::env_or;

const MIB: f64 = 1024.0 * 1024.0;

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("memory benchmark skipped: run it with `just bench-memory`");
        return Ok(());
    }
    let orders: usize = env_or("BENCH_ORDERS", 200_000);
    let cache_mib: u64 = env_or("BENCH_CACHE_MIB", 128);
    let admin_url = common::admin_url();
    let brokers = common::brokers();
    let bin = env!("CARGO_BIN_EXE_order-svc");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let file = std::env::temp_dir().join(format!("bench-memory-{id}.jsonl"));
    common::generate(bin, orders, 13, &file)?;
    let json_bytes = std::fs::metadata(&file)?.len();
    let bound = cache_mib * 1024 * 1024;
    println!(
        "{orders} orders, {:.0} MiB of JSON; CACHE_MAX_BYTES {cache_mib} MiB; goal RSS <= {:.0} MiB",
        json_bytes as f64 / MIB,
        1.3 * cache_mib as f64 + 64.0
    );
    println!();
    println!(
        "{:<28} {:>10} {:>12} {:>10} {:>10}",
        "run", "entries", "cache MiB", "RSS MiB", "warm s"
    );

    let mut dbs = Vec::new();
    let mut result = Ok(());
    for (name, max_bytes) in [("no cache (baseline)", 0), ("cache, by ingest", bound)] {
        let run = Run::new(&admin_url, &brokers, &id, name)?;
        dbs.push(run.db.clone());
        let outcome = (|| -> anyhow::Result<()> {
            let mut serve = run.serve(bin, max_bytes, 0)?;
            let status = Command::new(bin)
                .args(["produce", "--rps", "1000000", "--file"])
                .arg(&file)
                .env("KAFKA_BROKERS", &brokers)
                .env("KAFKA_TOPIC", &run.topic)
                .stdout(Stdio::null())
                .status()?;
            anyhow::ensure!(status.success(), "produce failed");
            serve.wait_stored(orders)?;
            serve.report(name, None)?;
            drop(serve);
            if max_bytes > 0 {
                // The same database, the cache filled by the preload instead.
                let started = Instant::now();
                let mut serve = run.serve(bin, max_bytes, orders)?;
                serve.wait_warm()?;
                serve.report("cache, by preload", Some(started.elapsed()))?;
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            result = Err(e);
            break;
        }
    }
    let _ = std::fs::remove_file(&file);
    // BENCH_KEEP=1 keeps the databases, to look at the queries afterwards.
    for db in dbs
        .into_iter()
        .filter(|_| std::env::var_os("BENCH_KEEP").is_none())
    {
        common::drop_database(&admin_url, &db);
    }
    result
}

/// A database and a topic of one run.
struct Run {
    db: String,
    url: String,
    topic: String,
    brokers: String,
}

impl Run {
    fn new(admin_url: &str, brokers: &str, id: &str, name: &str) -> anyhow::Result<Self> {
        let tag = if name.starts_with("no cache") {
            "base"
        } else {
            "cache"
        };
        let db = format!("bench_memory_{id}_{tag}");
        let url = common::database_url(admin_url, &db);
        common::migrated(env!("CARGO_BIN_EXE_order-svc"), &url)?;
        Ok(Self {
            db,
            url,
            topic: format!("bench-memory-{id}-{tag}"),
            brokers: brokers.to_owned(),
        })
    }

    fn serve(&self, bin: &str, max_bytes: u64, preload: usize) -> anyhow::Result<Serve> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(bin)
            .arg("serve")
            // Measured without credentials or budgets; `bench-http` measures tokens apart.
            .env("AUTH_ANONYMOUS_SCOPES", "all")
            .env("RATE_LOOKUPS_PER_SECOND", "0")
            .env("RATE_SEARCHES_PER_SECOND", "0")
            .env("DATABASE_URL", &self.url)
            .env("KAFKA_BROKERS", &self.brokers)
            .env("KAFKA_TOPIC", &self.topic)
            .env("KAFKA_DLQ_TOPIC", format!("{}.dlq", self.topic))
            .env("KAFKA_GROUP_ID", &self.topic)
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("CACHE_MAX_BYTES", max_bytes.to_string())
            .env("CACHE_PRELOAD", preload.to_string())
            .env("RUST_LOG", "warn")
            .envs(common::bench_env()?)
            .spawn()?;
        Ok(Serve { child, port })
    }
}

struct Serve {
    child: Child,
    port: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// A whole HTTP/1.0 answer's body, or None.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    fn metric(&self, series: &str) -> f64 {
        self.get("/metrics")
            .and_then(|(_, body)| {
                body.lines()
                    .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
            })
            .unwrap_or(0.0)
    }

    fn wait_stored(&mut self, orders: usize) -> anyhow::Result<()> {
        let started = Instant::now();
        while (self.metric("order_svc_orders_ingested_total{outcome=\"stored\"}") as usize) < orders
        {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(300),
                "orders not stored in 5 minutes"
            );
            anyhow::ensure!(self.child.try_wait()?.is_none(), "serve exited");
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(())
    }

    /// Ready, and the cache preload done (readiness does not wait for it).
    fn wait_warm(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        while !self
            .get("/readyz")
            .is_some_and(|(s, body)| s == 200 && !body.contains("\"warming\""))
        {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "not ready and warm in 2 minutes"
            );
            anyhow::ensure!(self.child.try_wait()?.is_none(), "serve exited");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Waits for the cache's gauges to settle (they are refreshed every 2 s), then prints.
    fn report(&self, name: &str, ready: Option<Duration>) -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_secs(5));
        let rss = common::rss_mib(self.child.id());
        println!(
            "{:<28} {:>10} {:>12.1} {:>10.1} {:>10}",
            name,
            self.metric("order_svc_cache_entries"),
            self.metric("order_svc_cache_bytes") / MIB,
            rss,
            ready.map_or("-".to_owned(), |d| format!("{:.2}", d.as_secs_f64()))
        );
        Ok(())
    }
}
