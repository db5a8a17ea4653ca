//! `just bench-http`: order lookups over HTTP with 100 000 orders cached, measured by a
//! wrk2-style load generator in this (second) process: a fixed request rate whose latencies
//! are taken from each request's scheduled start (no coordinated omission), and a closed
//! loop for the most requests per second. Baseline in the same run, against the same server:
//! `/__bench/fixed`, a fixed body of the orders' mean size with no lookup behind it.
//!
//! Then the same routes under oha (`cargo install oha`) at 10 000 and 25 000 req/s with
//! `--latency-correction`, when it is installed.
//!
//! Then, under oha, the cost of authentication (issue 26): the same cached lookups, closed
//! loop, anonymous (AUTH_ANONYMOUS_SCOPES=all: unmasked, so each read is audited) against a
//! bearer JWT of a provider this process serves (`support`: unmasked and audited too, so the
//! two differ by the token's check alone) and a `viewer` JWT (orders:read: masked, not
//! audited), alternating, BENCH_RUNS (3) times; each run's ratio to the anonymous run.
//!
//! Settings (environment): BENCH_ORDERS (100000), BENCH_RATE (10000), BENCH_SECONDS (10),
//! BENCH_CONNECTIONS (64), BENCH_RUNS (3), TEST_DATABASE_URL, TEST_KAFKA_BROKERS.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
#[path = "http/tokens.rs"]
mod tokens;

use common::load::{closed_loop, fixed_rate, get_text, metric};
use common::{env_or, migrated};

fn main() -> anyhow::Result<()> {
    common::main_on_one_thread("http", "just bench-http", bench)
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

    let addr = common::free_addr()?;
    let provider = tokens::Provider::start()?;
    let mut serve = common::serve_command(bin, &url, &topic, addr)
        .env("HTTP_BENCH_FIXED_BYTES", mean_size.to_string())
        .env("AUTH_ISSUER", &provider.issuer)
        .env("AUTH_AUDIENCE", tokens::AUDIENCE)
        .env("AUTH_ROLES_CLAIM", "groups")
        .env("AUTH_ROLE_SCOPES", "support=all;viewer=orders:read")
        .spawn()?;
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
        oha(addr, &uids, connections, seconds)?;
        tokens::compare(addr, &uids, connections, seconds, &provider)?;
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

/// The same two routes under oha (an outside fixed-rate tool, `cargo install oha`), at 10 000
/// and 25 000 req/s with `--latency-correction` (latency from each request's scheduled
/// start): the orders over random cached uids (`--urls-from-file`), the baseline its fixed
/// body. Skipped, saying so, when oha is not installed.
fn oha(addr: SocketAddr, uids: &[String], connections: usize, seconds: u64) -> anyhow::Result<()> {
    if Command::new("oha").arg("--version").output().is_err() {
        println!("oha not found: `cargo install oha` to measure with it too");
        return Ok(());
    }
    let urls =
        std::env::temp_dir().join(format!("bench-http-urls-{}", uuid::Uuid::new_v4().simple()));
    let picks = (0..100_000u64)
        .map(|i| {
            format!(
                "http://{addr}/order/{}\n",
                uids[(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as usize % uids.len()]
            )
        })
        .collect::<String>();
    std::fs::write(&urls, picks)?;
    println!();
    println!("oha, --latency-correction, {connections} connections, {seconds} s each:");
    println!(
        "{:<9} {:>10} {:>12} {:>10} {:>10} {:>10} {:>9}",
        "route", "rate", "got req/s", "p50 ms", "p99 ms", "p99.9 ms", "non-200"
    );
    for rate in [10_000u64, 25_000] {
        for route in ["orders", "baseline"] {
            let mut command = Command::new("oha");
            command
                .args([
                    "--no-tui",
                    "--output-format",
                    "json",
                    "--latency-correction",
                ])
                .args([
                    "-z",
                    &format!("{seconds}s"),
                    "-q",
                    &rate.to_string(),
                    "-c",
                    &connections.to_string(),
                ]);
            if route == "orders" {
                command.arg("--urls-from-file").arg(&urls);
            } else {
                command.arg(format!("http://{addr}/__bench/fixed"));
            }
            let out = command.output()?;
            anyhow::ensure!(
                out.status.success(),
                "oha failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let ms =
                |q: &str| report["latencyPercentiles"][q].as_f64().unwrap_or(f64::NAN) * 1000.0;
            let total: f64 = report["statusCodeDistribution"]
                .as_object()
                .map_or(0.0, |m| m.values().filter_map(|v| v.as_f64()).sum());
            let ok = report["statusCodeDistribution"]["200"]
                .as_f64()
                .unwrap_or(0.0);
            println!(
                "{route:<9} {rate:>10} {:>12.0} {:>10.3} {:>10.3} {:>10.3} {:>9}",
                report["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
                ms("p50"),
                ms("p99"),
                ms("p99.9"),
                total - ok
            );
        }
    }
    let _ = std::fs::remove_file(&urls);
    Ok(())
}
