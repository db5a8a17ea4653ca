//! `just bench-cold`: a big database and a cold process. BENCH_STORED generated orders are
//! written by COPY into a fresh database (uids `{n:015}test`, so that a plain SQL client can
//! name any of them), then:
//!
//! - **start**: `serve` (default role, a fresh topic) is started BENCH_RUNS times with
//!   CACHE_PRELOAD = BENCH_PRELOAD, timed from spawn to `/readyz` 200 and to its cache being
//!   warm (`/readyz` says `"cache":"warm"`), with its resident memory then. Baseline in the
//!   same run, alternating: the same start with CACHE_PRELOAD=0 (process, connections,
//!   topics, nothing to load).
//! - **misses**: `serve --role api` with CACHE_MAX_BYTES=0 (nothing is kept) answers random
//!   uids: a closed loop for the most requests per second and BENCH_RATE req/s fixed-rate for
//!   the percentiles. Baseline in the same run: `pgbench` running the lookup's own statement
//!   for random uids over as many connections as serve's lookup pool (DATABASE_POOL_SIZE, 8),
//!   prepared: what PostgreSQL alone gives. The statement's plan is printed.
//!
//! Settings (environment): BENCH_STORED (1000000), BENCH_PRELOAD (100000), BENCH_RUNS (3),
//! BENCH_SECONDS (10), BENCH_RATE (5000), BENCH_CONNECTIONS (32), BENCH_KEEP (keep the
//! database), BENCH_BIN (another `order-svc` binary to measure), BENCH_ENV (extra
//! `NAME=value` settings for serve, space-separated), TEST_DATABASE_URL, TEST_KAFKA_BROKERS.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use order_svc::adapters::postgres::reader::FIND_ORDER_SQL;
use order_svc::domain::order::Order;
use order_svc::generate::{GenerateOptions, Generator};

mod common;

use common::copy::{Rows, copy_parallel};
use common::env_or;
use common::load::{closed_loop, fixed_rate, get_text};

/// The lookup pool's default size (DATABASE_POOL_SIZE).
const LOOKUP_POOL: usize = 8;

fn uid(n: usize) -> String {
    format!("{n:015}test")
}

fn main() -> anyhow::Result<()> {
    common::main_on_one_thread("cold", "just bench-cold", bench)
}

async fn bench() -> anyhow::Result<()> {
    let stored: usize = env_or("BENCH_STORED", 1_000_000);
    let preload: usize = env_or("BENCH_PRELOAD", 100_000);
    let runs: usize = env_or("BENCH_RUNS", 3);
    let seconds: u64 = env_or("BENCH_SECONDS", 10);
    let rate: u64 = env_or("BENCH_RATE", 5000);
    let connections: usize = env_or("BENCH_CONNECTIONS", 32);
    let admin_url = common::admin_url();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let db = format!("bench_cold_{id}");
    let url = common::database_url(&admin_url, &db);
    // BENCH_BIN: another order-svc binary to measure (an older commit's), the same database.
    let bin_path =
        std::env::var("BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_order-svc").to_owned());
    let bin = bin_path.as_str();
    common::migrated(bin, &url)?;
    let result = async {
        let started = Instant::now();
        let mut generator = Generator::new(GenerateOptions {
            seed: 41,
            ..GenerateOptions::default()
        });
        let orders: Vec<Order> = (0..stored)
            .map(|n| {
                let mut order = generator.valid_order();
                order.order_uid = uid(n);
                order.payment.transaction = uid(n);
                order
            })
            .collect();
        let rows = Rows::new(orders);
        let copy = copy_parallel(&url, &rows, 3).await?;
        drop(rows);
        common::psql(&url, "VACUUM ANALYZE")?;
        println!(
            "{stored} orders stored by COPY ({copy:.0} orders/s) and analyzed in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        println!();
        println!(
            "{:<5} {:<26} {:>9} {:>11} {:>9} {:>9}",
            "run", "start", "ready s", "warm s", "entries", "RSS MiB"
        );
        for run in 1..=runs {
            for (name, n) in [("baseline, CACHE_PRELOAD=0", 0), ("CACHE_PRELOAD", preload)] {
                let name = if n > 0 {
                    format!("{name}={n}")
                } else {
                    name.to_owned()
                };
                let topic = format!("bench-cold-{id}-{run}-{n}");
                let spawned = Instant::now();
                let serve = Serve::start(
                    bin,
                    &url,
                    &[
                        ("CACHE_PRELOAD", n.to_string()),
                        ("KAFKA_TOPIC", topic.clone()),
                        ("KAFKA_DLQ_TOPIC", format!("{topic}.dlq")),
                        ("KAFKA_GROUP_ID", topic.clone()),
                    ],
                )?;
                let (ready, warm) = serve.wait_ready_and_warm(spawned).await?;
                // The cache gauges are refreshed every 2 s.
                tokio::time::sleep(Duration::from_millis(2100)).await;
                let text = get_text(serve.addr, "/metrics").await.unwrap_or_default();
                println!(
                    "{run:<5} {name:<26} {:>9.3} {:>11.3} {:>9} {:>9.1}",
                    ready.as_secs_f64(),
                    warm.as_secs_f64(),
                    common::load::metric(&text, "order_svc_cache_entries"),
                    serve.rss_mib()
                );
            }
        }

        println!();
        let explain = Command::new("psql")
            .args([url.as_str(), "-qAtc"])
            .arg(format!(
                "SET jit = off; EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON) {}",
                FIND_ORDER_SQL.replace("$1", &format!("'{}'", uid(stored / 2)))
            ))
            .output()?;
        println!("the lookup's plan for one uid (EXPLAIN ANALYZE, BUFFERS):");
        println!("{}", String::from_utf8_lossy(&explain.stdout));

        let serve = Serve::start(
            bin,
            &url,
            &[
                ("SERVE_ROLE", "api".into()),
                ("CACHE_MAX_BYTES", "0".into()),
                ("CACHE_PRELOAD", "0".into()),
            ],
        )?;
        serve.wait_ready_and_warm(Instant::now()).await?;
        let paths = move |i: u64| {
            let n = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as usize % stored;
            format!("/order/{}", uid(n))
        };
        // Warm up: connections, PostgreSQL's buffers.
        closed_loop(serve.addr, connections, Duration::from_secs(3), &paths).await?;
        let mut max = Vec::new();
        let mut base = Vec::new();
        for _ in 0..runs {
            max.push(
                closed_loop(serve.addr, connections, Duration::from_secs(seconds), &paths).await?,
            );
            base.push(pgbench(&url, stored, seconds)?);
        }
        let (h, errors) = fixed_rate(
            serve.addr,
            connections,
            rate,
            Duration::from_secs(seconds),
            &paths,
        )
        .await?;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{:<5} {:>16} {:>26} {:>8}",
            "run", "misses req/s", "pgbench alone, tx/s", "ratio"
        );
        let mut ratios = Vec::new();
        for (i, (m, b)) in max.iter().zip(&base).enumerate() {
            println!("{:<5} {m:>16.0} {b:>26.0} {:>8.2}", i + 1, m / b);
            ratios.push(m / b);
        }
        ratios.sort_by(f64::total_cmp);
        let mut sorted = max.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "misses (this run): median {:.0} req/s, median ratio to pgbench {:.2}; at {rate} req/s p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, {errors} errors",
            sorted[sorted.len() / 2],
            ratios[ratios.len() / 2],
            ms(0.5),
            ms(0.99),
            ms(0.999)
        );
        Ok(())
    }
    .await;
    if std::env::var_os("BENCH_KEEP").is_none() {
        common::drop_database(&admin_url, &db);
    } else {
        println!("kept database {db}");
    }
    result
}

/// The lookup's statement alone, for random stored uids, prepared, over the lookup pool's
/// number of connections, for `seconds`: transactions per second.
fn pgbench(url: &str, stored: usize, seconds: u64) -> anyhow::Result<f64> {
    let script =
        std::env::temp_dir().join(format!("bench-cold-{}.sql", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &script,
        format!(
            "\\set n random(0, {})\n{};\n",
            stored - 1,
            // pgbench reads `:MI` and `:SS` in the time format as its variables: the colons
            // are written as chr(58), which PostgreSQL folds into a constant when planning.
            FIND_ORDER_SQL
                .replace("HH24:MI:SS", "HH24' || chr(58) || 'MI' || chr(58) || 'SS")
                .replace("$1", "lpad(CAST(:n AS text), 15, '0') || 'test'")
        ),
    )?;
    // jit off, as serve's sessions have it.
    let out = Command::new("pgbench")
        .env("PGOPTIONS", "-c jit=off")
        .args(["-n", "-M", "prepared", "-j", "1"])
        .args(["-c", &LOOKUP_POOL.to_string(), "-T", &seconds.to_string()])
        .arg("-f")
        .arg(&script)
        .arg(url)
        .output()?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One statement per transaction: tps is lookups per second.
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next()?.parse().ok())
        })
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench's output:\n{text}"))
}

/// `serve`, stopped when dropped.
struct Serve {
    child: Child,
    addr: SocketAddr,
}

impl Serve {
    fn start(bin: &str, url: &str, env: &[(&str, String)]) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut command = Command::new(bin);
        command
            .arg("serve")
            // Measured without credentials or budgets; `bench-http` measures tokens apart.
            .env("AUTH_ANONYMOUS_SCOPES", "all")
            .env("RATE_LOOKUPS_PER_SECOND", "0")
            .env("RATE_SEARCHES_PER_SECOND", "0")
            .env("DATABASE_URL", url)
            .env("KAFKA_BROKERS", common::brokers())
            .env("HTTP_ADDR", addr.to_string())
            .env("RUST_LOG", "warn");
        for (k, v) in env {
            command.env(k, v);
        }
        command.envs(common::bench_env()?);
        Ok(Self {
            child: command.spawn()?,
            addr,
        })
    }

    /// Times from `since` to ready, and to the cache warm.
    async fn wait_ready_and_warm(&self, since: Instant) -> anyhow::Result<(Duration, Duration)> {
        let mut ready = None;
        loop {
            if let Some(body) = get_text(self.addr, "/readyz").await {
                let at = since.elapsed();
                let ready = *ready.get_or_insert(at);
                if !body.contains("\"warming\"") {
                    return Ok((ready, at));
                }
            }
            anyhow::ensure!(
                since.elapsed() < Duration::from_secs(300),
                "serve not ready and warm in 5 minutes"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn rss_mib(&self) -> f64 {
        common::rss_mib(self.child.id())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
