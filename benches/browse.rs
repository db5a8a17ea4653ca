//! `just bench-browse`: the pages people use without a uid, on a big database.
//! BENCH_STORED generated orders are written by COPY into a fresh database (uids
//! `{n:015}test`, each order's transaction its uid), analyzed, then `serve --role api`
//! answers, for each route in turn: a closed loop (BENCH_CONNECTIONS connections,
//! BENCH_SECONDS) for the most requests per second, and BENCH_RATE req/s at a fixed rate for
//! p50/p99/p99.9 timed from each request's scheduled start.
//!
//! Routes: the newest 50 (`GET /orders`), an older page (`before=`), and each search
//! (`track_number`, `transaction`, `customer_id`, `phone` written with spaces, `email` in
//! upper case, and `q` given a track number), each request for another stored order's value.
//! Baseline in the same run, measured the same way before each route: the cached
//! `GET /order/{uid}` (1 024 uids, cached by a warm-up). BENCH_RUNS runs; each run's ratio
//! (route / baseline, closed loop) and their median.
//!
//! Settings (environment): BENCH_STORED (1000000), BENCH_RUNS (3), BENCH_SECONDS (5),
//! BENCH_RATE (2000), BENCH_CONNECTIONS (32), BENCH_KEEP (keep the database), BENCH_BIN
//! (another `order-svc` binary), BENCH_ENV (extra settings for serve), TEST_DATABASE_URL,
//! TEST_KAFKA_BROKERS.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use order_svc::domain::order::Order;
use order_svc::generate::{GenerateOptions, Generator};

mod common;

use common::copy::{Rows, copy_parallel};
use common::env_or;
use common::load::{closed_loop, fixed_rate, get_text};

fn uid(n: usize) -> String {
    format!("{n:015}test")
}

fn main() -> anyhow::Result<()> {
    common::main_on_one_thread("browse", "just bench-browse", bench)
}

/// What a search may ask for, of one stored order.
struct Held {
    uid: String,
    track: String,
    customer: String,
    phone: String,
    email: String,
}

/// `s` percent-encoded for a query string.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `+9721234567` as people write it: `+972 123 4567`.
fn spaced(phone: &str) -> String {
    let (head, tail) = phone.split_at(4.min(phone.len()));
    let (mid, rest) = tail.split_at(3.min(tail.len()));
    format!("{head} {mid} {rest}")
}

async fn bench() -> anyhow::Result<()> {
    let stored: usize = env_or("BENCH_STORED", 1_000_000);
    let runs: usize = env_or("BENCH_RUNS", 3);
    let seconds: u64 = env_or("BENCH_SECONDS", 5);
    let rate: u64 = env_or("BENCH_RATE", 2000);
    let connections: usize = env_or("BENCH_CONNECTIONS", 32);
    let admin_url = common::admin_url();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let db = format!("bench_browse_{id}");
    let url = common::database_url(&admin_url, &db);
    let bin_path =
        std::env::var("BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_order-svc").to_owned());
    let bin = bin_path.as_str();
    common::migrated(bin, &url)?;
    let result = async {
        let started = Instant::now();
        let mut generator = Generator::new(GenerateOptions {
            seed: 43,
            ..GenerateOptions::default()
        });
        // Every 97th order is one a search asks for.
        let mut held = Vec::new();
        let orders: Vec<Order> = (0..stored)
            .map(|n| {
                let mut order = generator.valid_order();
                order.order_uid = uid(n);
                order.payment.transaction = uid(n);
                if n % 97 == 0 {
                    held.push(Held {
                        uid: uid(n),
                        track: order.track_number.clone(),
                        customer: order.customer_id.clone(),
                        phone: order.delivery.phone.clone(),
                        email: order.delivery.email.clone(),
                    });
                }
                order
            })
            .collect();
        let rows = Rows::new(orders);
        let copy = copy_parallel(&url, &rows, 3).await?;
        drop(rows);
        common::psql(&url, "VACUUM ANALYZE")?;
        println!(
            "{stored} orders stored by COPY ({copy:.0} orders/s) and analyzed in {:.1} s; {} of them searched for",
            started.elapsed().as_secs_f64(),
            held.len()
        );
        for (what, column) in [
            ("track number", "SELECT track_number, count(*) FROM orders GROUP BY 1"),
            ("customer id", "SELECT customer_id, count(*) FROM orders GROUP BY 1"),
            ("phone", "SELECT phone, count(*) FROM deliveries GROUP BY 1"),
            ("e-mail", "SELECT lower(email COLLATE \"C\"), count(*) FROM deliveries GROUP BY 1"),
        ] {
            let out = common::psql(
                &url,
                &format!("SELECT count(*), max(count), round(avg(count), 2) FROM ({column}) t"),
            )?;
            println!("  {what}: distinct values, most orders with one value, mean: {out}");
        }

        let addr = common::free_addr()?;
        let topic = format!("bench-browse-{id}");
        let mut serve = Serve(
            common::serve_command(bin, &url, &topic, addr)
                .env("SERVE_ROLE", "api")
                .env("CACHE_PRELOAD", "0")
                .envs(common::bench_env()?)
                .stdout(Stdio::null())
                .spawn()?,
        );
        let since = Instant::now();
        while get_text(addr, "/readyz").await.is_none_or(|b| !b.contains("\"ready\"")) {
            anyhow::ensure!(since.elapsed() < Duration::from_secs(60), "serve not ready in 60 s");
            anyhow::ensure!(serve.0.try_wait()?.is_none(), "serve exited");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let first = get_text(addr, "/orders?limit=50").await.unwrap_or_default();
        let first: serde_json::Value = serde_json::from_str(&first)?;
        let cursor = first["next"].as_str().unwrap_or_default().to_owned();
        anyhow::ensure!(!cursor.is_empty(), "the first page has a next: {first}");
        let pick = |i: u64| &held[(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as usize % held.len()];
        type Route<'a> = (&'static str, Box<dyn Fn(u64) -> String + 'a>);
        let routes: Vec<Route<'_>> = vec![
            ("newest 50", Box::new(|_| "/orders".to_owned())),
            (
                "older page (before=)",
                Box::new(|_| format!("/orders?before={cursor}")),
            ),
            (
                "track_number=",
                Box::new(|i| format!("/orders?track_number={}", enc(&pick(i).track))),
            ),
            (
                "transaction=",
                Box::new(|i| format!("/orders?transaction={}", enc(&pick(i).uid))),
            ),
            (
                "customer_id=",
                Box::new(|i| format!("/orders?customer_id={}", enc(&pick(i).customer))),
            ),
            (
                "phone= (spaced)",
                Box::new(|i| format!("/orders?phone={}", enc(&spaced(&pick(i).phone)))),
            ),
            (
                "email= (upper case)",
                Box::new(|i| format!("/orders?email={}", enc(&pick(i).email.to_uppercase()))),
            ),
            (
                "q= (a track number)",
                Box::new(|i| format!("/orders?q={}", enc(&pick(i).track))),
            ),
        ];
        let cached = |i: u64| format!("/order/{}", uid((i % 1024) as usize * 97 % stored));
        // Warm up: connections, the cache of the baseline's orders, PostgreSQL's buffers.
        closed_loop(addr, connections, Duration::from_secs(3), &cached).await?;
        for (_, paths) in &routes {
            closed_loop(addr, connections, Duration::from_secs(1), paths.as_ref()).await?;
        }
        // Each route must answer what it is asked: at least one row for a held value.
        for (name, paths) in &routes {
            let body = get_text(addr, &paths(7)).await.unwrap_or_default();
            anyhow::ensure!(
                body.contains("\"order_uid\""),
                "{name}: {} answered no order: {body}",
                paths(7)
            );
        }

        println!();
        println!(
            "{:<22} {:>4} {:>11} {:>15} {:>7} {:>9} {:>9} {:>9} {:>7}",
            "route",
            "run",
            "req/s",
            "baseline req/s",
            "ratio",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "errors"
        );
        let mut summary = Vec::new();
        for (name, paths) in &routes {
            let mut ratios = Vec::new();
            let mut rates = Vec::new();
            for run in 1..=runs {
                let base =
                    closed_loop(addr, connections, Duration::from_secs(seconds), &cached).await?;
                let max =
                    closed_loop(addr, connections, Duration::from_secs(seconds), paths.as_ref())
                        .await?;
                let (h, errors) = fixed_rate(
                    addr,
                    connections,
                    rate,
                    Duration::from_secs(seconds),
                    paths.as_ref(),
                )
                .await?;
                let (bh, _) = fixed_rate(
                    addr,
                    connections,
                    rate,
                    Duration::from_secs(seconds),
                    &cached,
                )
                .await?;
                let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| {
                    h.value_at_quantile(q) as f64 / 1000.0
                };
                println!(
                    "{name:<22} {run:>4} {max:>11.0} {base:>15.0} {:>7.2} {:>9.3} {:>9.3} {:>9.3} {errors:>7}",
                    max / base,
                    ms(&h, 0.5),
                    ms(&h, 0.99),
                    ms(&h, 0.999),
                );
                println!(
                    "{:<22} {:>4} {:>11} {:>15} {:>7} {:>9.3} {:>9.3} {:>9.3}   (baseline at {rate} req/s)",
                    "",
                    "",
                    "",
                    "",
                    "",
                    ms(&bh, 0.5),
                    ms(&bh, 0.99),
                    ms(&bh, 0.999),
                );
                ratios.push(max / base);
                rates.push(max);
            }
            ratios.sort_by(f64::total_cmp);
            rates.sort_by(f64::total_cmp);
            summary.push((name, rates[rates.len() / 2], ratios[ratios.len() / 2]));
        }
        println!();
        println!("medians of {runs} runs (closed loop, {connections} connections):");
        for (name, rate, ratio) in summary {
            println!("  {name:<22} {rate:>8.0} req/s, ratio to cached GET /order {ratio:.2}");
        }
        println!();
        let plan = common::psql(
            &url,
            "SET jit = off; EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON) \
             SELECT o.ingested_at, o.order_uid FROM orders o JOIN deliveries d USING (order_uid) \
             JOIN payments p USING (order_uid) ORDER BY o.ingested_at DESC, o.order_uid DESC LIMIT 51",
        )?;
        println!("the newest page's plan (without the item counts):\n{plan}");
        let held = &held[held.len() / 2];
        for (what, condition) in [
            ("track_number", format!("track_number = '{}'", held.track)),
            ("email", format!("lower(email COLLATE \"C\") = '{}'", held.email.to_ascii_lowercase())),
        ] {
            let table = if what == "email" { "deliveries" } else { "orders" };
            let plan = common::psql(
                &url,
                &format!(
                    "SET jit = off; EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON) \
                     SELECT order_uid FROM {table} WHERE {condition}"
                ),
            )?;
            println!("a {what} search's index lookup:\n{plan}");
        }
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

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
