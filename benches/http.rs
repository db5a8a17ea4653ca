//! `just bench-http`: order lookups over HTTP with 100 000 orders cached, measured by a
//! wrk2-style load generator in this (second) process: a fixed request rate whose latencies
//! are taken from each request's scheduled start (no coordinated omission), and a closed
//! loop for the most requests per second. Baseline in the same run, against the same server:
//! `/__bench/fixed`, a fixed body of the orders' mean size with no lookup behind it.
//!
//! Settings (environment): BENCH_ORDERS (100000), BENCH_RATE (10000), BENCH_SECONDS (10),
//! BENCH_CONNECTIONS (64), TEST_DATABASE_URL, TEST_KAFKA_BROKERS.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

mod common;

use common::{env_or, migrated};

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("http benchmark skipped: run it with `just bench-http`");
        return Ok(());
    }
    // One thread for the load: the other core is the server's.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let orders: usize = env_or("BENCH_ORDERS", 100_000);
    let rate: u64 = env_or("BENCH_RATE", 10_000);
    let seconds: u64 = env_or("BENCH_SECONDS", 10);
    let connections: usize = env_or("BENCH_CONNECTIONS", 64);
    let admin_url = common::admin_url();
    let brokers = common::brokers();
    let bin = env!("CARGO_BIN_EXE_order-svc");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let file = std::env::temp_dir().join(format!("bench-http-{id}.jsonl"));
    let db = format!("bench_http_{id}");
    let url = common::database_url(&admin_url, &db);
    let topic = format!("bench-http-{id}");

    common::generate(bin, orders, 11, &file)?;
    let text = std::fs::read_to_string(&file)?;
    let uids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .map(|v| v["order_uid"].as_str().unwrap_or_default().to_owned())
        })
        .collect::<Result<_, _>>()?;
    let mean_size = text.len() / orders.max(1);
    migrated(bin, &url)?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut serve = Command::new(bin)
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("KAFKA_BROKERS", &brokers)
        .env("KAFKA_TOPIC", &topic)
        .env("KAFKA_DLQ_TOPIC", format!("{topic}.dlq"))
        .env("KAFKA_GROUP_ID", &topic)
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("HTTP_BENCH_FIXED_BYTES", mean_size.to_string())
        .env("RUST_LOG", "warn")
        .spawn()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let result = async {
        let status = Command::new(bin)
            .args(["produce", "--rps", "1000000", "--file"])
            .arg(&file)
            .env("KAFKA_BROKERS", &brokers)
            .env("KAFKA_TOPIC", &topic)
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "produce failed");
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let metrics = get_text(addr, "/metrics").await.unwrap_or_default();
            let stored = metric(&metrics, "order_svc_orders_ingested_total{outcome=\"stored\"}");
            let entries = metric(&metrics, "order_svc_cache_entries");
            if stored as usize >= orders && entries as usize >= orders {
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "orders not stored and cached in 5 minutes");
        }
        println!("{orders} orders stored and cached; mean order size {mean_size} bytes; {connections} connections; load generator on one thread");
        let uids = Arc::new(uids);
        let paths_orders = {
            let uids = uids.clone();
            move |i: u64| format!("/order/{}", uids[(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as usize % uids.len()])
        };
        let paths_fixed = |_: u64| "/__bench/fixed".to_owned();

        // Warm up both routes (connections, caches, CPU frequency).
        closed_loop(addr, connections, Duration::from_secs(2), &paths_orders).await?;
        let mut rows = Vec::new();
        for (name, paths) in [("orders", &paths_orders as &dyn Fn(u64) -> String), ("baseline", &paths_fixed)] {
            let max = closed_loop(addr, connections, Duration::from_secs(seconds.min(5)), paths).await?;
            let h = fixed_rate(addr, connections, rate, Duration::from_secs(seconds), paths).await?;
            rows.push((name, max, h));
        }
        println!();
        println!("{:<9} {:>12} {:>14} {:>10} {:>10} {:>10} {:>8}", "route", "max req/s", "@ req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors");
        for (name, max, (h, errors)) in &rows {
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            println!("{name:<9} {max:>12.0} {rate:>14} {:>10.3} {:>10.3} {:>10.3} {errors:>8}", ms(0.5), ms(0.99), ms(0.999));
        }
        let (orders_max, base_max) = (rows[0].1, rows[1].1);
        println!();
        println!("http (this run): max {orders_max:.0} req/s = {:.0}% of the baseline's {base_max:.0}; p99 at {rate} req/s {:.3} ms (baseline {:.3} ms)",
            100.0 * orders_max / base_max,
            rows[0].2.0.value_at_quantile(0.99) as f64 / 1000.0,
            rows[1].2.0.value_at_quantile(0.99) as f64 / 1000.0);
        Ok(())
    }
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
    let _ = std::fs::remove_file(&file);
    common::drop_database(&admin_url, &db);
    result
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
        .unwrap_or(0.0)
}

async fn get_text(addr: SocketAddr, path: &str) -> Option<String> {
    let mut conn = Conn::open(addr).await.ok()?;
    let (status, body) = conn.get(path).await.ok()?;
    (status == 200).then(|| String::from_utf8_lossy(&body).into_owned())
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    line: String,
    body: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::with_capacity(16 * 1024, stream),
            line: String::new(),
            body: Vec::new(),
        })
    }

    async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
        self.reader.get_mut().write_all(request.as_bytes()).await?;
        self.line.clear();
        self.reader.read_line(&mut self.line).await?;
        let status: u16 = self
            .line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("bad status line {:?}", self.line))?;
        let mut length = 0usize;
        loop {
            self.line.clear();
            self.reader.read_line(&mut self.line).await?;
            let line = self.line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse()?;
            }
        }
        self.body.resize(length, 0);
        self.reader.read_exact(&mut self.body).await?;
        Ok((status, std::mem::take(&mut self.body)))
    }
}

/// As many requests as `connections` connections can make for `duration`: requests/s.
async fn closed_loop(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    paths: &dyn Fn(u64) -> String,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut conn = Conn::open(addr).await?;
        let paths: Vec<String> = (0..1024).map(|i| paths((c * 1024 + i) as u64)).collect();
        tasks.push(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let (status, _) = conn.get(&paths[done as usize % paths.len()]).await?;
                anyhow::ensure!(status == 200, "status {status}");
                done += 1;
            }
            Ok::<u64, anyhow::Error>(done)
        });
    }
    let started = Instant::now();
    let total: u64 = futures::future::try_join_all(tasks)
        .await?
        .into_iter()
        .sum();
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// `rate` requests/s spread over the connections for `duration`. Each latency runs from the
/// request's scheduled time, so a stall shows in the percentiles instead of hiding.
async fn fixed_rate(
    addr: SocketAddr,
    connections: usize,
    rate: u64,
    duration: Duration,
    paths: &dyn Fn(u64) -> String,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let per_conn = rate as f64 / connections as f64;
    let interval = Duration::from_secs_f64(1.0 / per_conn);
    let count = (per_conn * duration.as_secs_f64()) as u64;
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut conn = Conn::open(addr).await?;
        let paths: Vec<String> = (0..count).map(|i| paths(c as u64 * count + i)).collect();
        // Stagger the connections so their schedules interleave.
        let offset = interval.mul_f64(c as f64 / connections as f64);
        tasks.push(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = 0u64;
            let mut previous_done = start;
            for (i, path) in paths.iter().enumerate() {
                let scheduled = start + offset + interval.mul_f64(i as f64);
                tokio::time::sleep_until(scheduled).await;
                // A request held back by the previous answer counts from its schedule; one
                // sent late only because our 1 ms timer woke late counts from its sending.
                let from = if previous_done > scheduled {
                    scheduled
                } else {
                    tokio::time::Instant::now()
                };
                match conn.get(path).await {
                    Ok((200, _)) => {}
                    _ => errors += 1,
                }
                previous_done = tokio::time::Instant::now();
                h.record((previous_done - from).as_micros().max(1) as u64)?;
            }
            Ok::<_, anyhow::Error>((h, errors))
        });
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for (h, e) in futures::future::try_join_all(tasks).await? {
        total.add(h)?;
        errors += e;
    }
    Ok((total, errors))
}
