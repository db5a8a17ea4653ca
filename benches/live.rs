//! `just bench-live` and `just soak`: the service as it runs in production, ingesting a steady
//! stream while it answers lookups.
//!
//! `serve` (release build, default settings) runs against a fresh database and topic. First
//! BENCH_WARM_ORDERS orders are produced and stored: they are what the lookups ask for. Then,
//! for BENCH_SECONDS, at the same time:
//!
//! - orders are produced at BENCH_ORDER_RATE per second by our own publisher (the one
//!   `order-svc produce` uses, with its linger), each stamped `x-produced-at`;
//! - every BENCH_SAMPLE-th of them is polled with `GET /order/{uid}` (first after 1 ms, then
//!   every 2 ms) until it answers 200: **produce to visible** is the time from just before the
//!   send to the end of that answer;
//! - a plain Kafka consumer of the same topic (assigned, no group, serve's fetch wait)
//!   records the time from `x-produced-at` to receiving each message: the broker's own
//!   produce-to-consume time, the **baseline** for produce to visible;
//! - lookups run at BENCH_LOOKUP_RATE per second (wrk2-style, from each request's scheduled
//!   start) over the BENCH_LOOKUP_WINDOW most recent orders known to be visible (the newest
//!   warm ones, then the sampled ones as they appear), which stay cached however long the
//!   run: **lookups while ingesting**. Their baseline is
//!   the same load for BENCH_BASELINE_SECONDS before the stream starts (no ingest).
//!
//! Every BENCH_REPORT_SECONDS a line gives the resident memory of `serve`, what is stored and
//! the consumer lag; at the end: percentiles, errors, RSS at start and end, and how long the
//! ingest took to catch up once the producer stopped.
//!
//! Settings (environment): BENCH_SECONDS (60), BENCH_ORDER_RATE (1000), BENCH_LOOKUP_RATE
//! (5000), BENCH_WARM_ORDERS (20000), BENCH_SAMPLE (10), BENCH_BASELINE_SECONDS (20),
//! BENCH_REPORT_SECONDS (10), BENCH_CONNECTIONS (32), BENCH_LOOKUP_WINDOW (5000),
//! BENCH_CACHE_MIB (unset: serve's default), BENCH_ENV (extra `NAME=value` settings for
//! serve, space-separated), TEST_DATABASE_URL, TEST_KAFKA_BROKERS.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use order_svc::adapters::kafka::producer::OrderPublisher;
use order_svc::adapters::kafka::{Connection, consumer};
use order_svc::generate::{GenerateOptions, Generator};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

mod common;

use common::env_or;
use common::load::{Conn, fixed_rate, get_text, metric};

fn main() -> anyhow::Result<()> {
    // The lookups' thread; the stream gets one of its own.
    common::main_on_one_thread("live", "just bench-live` or `just soak", bench)
}

struct Settings {
    seconds: u64,
    order_rate: u64,
    lookup_rate: u64,
    warm: usize,
    sample: u64,
    baseline_seconds: u64,
    report_seconds: u64,
    connections: usize,
}

async fn bench() -> anyhow::Result<()> {
    let s = Settings {
        seconds: env_or("BENCH_SECONDS", 60),
        order_rate: env_or("BENCH_ORDER_RATE", 1000),
        lookup_rate: env_or("BENCH_LOOKUP_RATE", 5000),
        warm: env_or("BENCH_WARM_ORDERS", 20_000),
        sample: env_or("BENCH_SAMPLE", 10u64).max(1),
        baseline_seconds: env_or("BENCH_BASELINE_SECONDS", 20),
        report_seconds: env_or("BENCH_REPORT_SECONDS", 10u64).max(1),
        connections: env_or("BENCH_CONNECTIONS", 32),
    };
    let admin_url = common::admin_url();
    let brokers = common::brokers();
    let bin = env!("CARGO_BIN_EXE_order-svc");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let db = format!("bench_live_{id}");
    let url = common::database_url(&admin_url, &db);
    let topic = format!("bench-live-{id}");
    common::migrated(bin, &url)?;

    let addr = common::free_addr()?;
    let mut command = common::serve_command(bin, &url, &topic, addr);
    if let Ok(mib) = std::env::var("BENCH_CACHE_MIB") {
        let bytes = mib.parse::<u64>()? * 1024 * 1024;
        command.env("CACHE_MAX_BYTES", bytes.to_string());
    }
    command.envs(common::bench_env()?);
    let serve = Serve(command.spawn()?);
    let result = run(&s, &serve, addr, &brokers, &topic).await;
    drop(serve);
    common::drop_database(&admin_url, &db);
    result
}

/// `serve`, stopped when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Serve {
    fn rss_mib(&self) -> f64 {
        common::rss_mib(self.0.id())
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

async fn run(
    s: &Settings,
    serve: &Serve,
    addr: SocketAddr,
    brokers: &str,
    topic: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while get_text(addr, "/readyz").await.is_none() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "serve not ready in a minute"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publisher = OrderPublisher::new(&Connection::new(brokers), topic)?;
    let mut generator = Generator::new(GenerateOptions {
        seed: 17,
        ..GenerateOptions::default()
    });

    // The warm orders: stored and cached before anything is timed.
    let mut uids = Vec::with_capacity(s.warm);
    let mut deliveries = Vec::with_capacity(s.warm);
    for _ in 0..s.warm {
        let m = generator.next_message();
        let uid = m.uid.expect("a valid order has a uid");
        deliveries.push(publisher.enqueue(Some(uid.as_bytes()), &m.bytes).await?);
        uids.push(uid);
    }
    for d in futures::future::join_all(deliveries).await {
        anyhow::ensure!(matches!(d, Ok(Ok(_))), "a warm order was not delivered");
    }
    wait_stored(addr, s.warm as f64, Duration::from_secs(300)).await?;
    // The lookups ask for recent orders: the newest warm ones at first, then each sampled
    // order once it has answered 200, BENCH_LOOKUP_WINDOW of them at a time, so that they
    // stay within the cache however long the run (a soak turns the cache over many times).
    let window: usize = env_or("BENCH_LOOKUP_WINDOW", 5000usize).clamp(1, uids.len());
    let recent = Arc::new(Mutex::new(Recent {
        uids: uids[uids.len() - window..].to_vec(),
        next: 0,
    }));
    let lookups = {
        let recent = recent.clone();
        move |i: u64| {
            let recent = recent.lock().unwrap_or_else(|e| e.into_inner());
            let n = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as usize % recent.uids.len();
            format!("/order/{}", recent.uids[n])
        }
    };
    println!(
        "{} warm orders stored; {} connections; lookups on one thread, the stream on another",
        s.warm, s.connections
    );

    // Baseline of the lookups: the same load with nothing ingested.
    let (base_lookups, base_errors) = fixed_rate(
        addr,
        s.connections,
        s.lookup_rate,
        Duration::from_secs(s.baseline_seconds),
        &lookups,
    )
    .await?;
    let rss_start = serve.rss_mib();

    // The witness: a plain consumer, placed at the end of every partition.
    let stop = Arc::new(AtomicBool::new(false));
    let witness = witness(brokers, topic, stop.clone())?;

    println!();
    println!(
        "{:>8} {:>10} {:>12} {:>12} {:>10}",
        "second", "RSS MiB", "stored", "uncommitted", "produced"
    );
    let seconds = Duration::from_secs(s.seconds);
    // The stream runs on a thread of its own, so that producing and polling never delay
    // the lookups' schedule (nor the other way round).
    let queued = Arc::new(AtomicU64::new(0));
    let stream = {
        let (queued, order_rate, sample) = (queued.clone(), s.order_rate, s.sample);
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(produce(
                    order_rate,
                    sample,
                    seconds,
                    &publisher,
                    generator,
                    addr,
                    (queued, recent),
                ))
        })
    };
    let load = fixed_rate(addr, s.connections, s.lookup_rate, seconds, &lookups);
    let report = async {
        let mut every = tokio::time::interval(Duration::from_secs(s.report_seconds));
        every.tick().await;
        let began = Instant::now();
        loop {
            every.tick().await;
            let text = get_text(addr, "/metrics").await.unwrap_or_default();
            println!(
                "{:>8.0} {:>10.1} {:>12} {:>12} {:>10}",
                began.elapsed().as_secs_f64(),
                serve.rss_mib(),
                metric(&text, "order_svc_orders_ingested_total{outcome=\"stored\"}"),
                lag(&text),
                queued.load(Ordering::Relaxed),
            );
        }
    };
    let load = tokio::select! {
        load = load => load,
        () = report => unreachable!("the report runs until the load ends"),
    };
    let (lookups_live, lookup_errors) = load?;
    let producer_stopped = Instant::now();
    let total = (s.warm as u64 + queued.load(Ordering::Relaxed)) as f64;
    let caught_up = match wait_stored(addr, total, Duration::from_secs(600)).await {
        Ok(()) => Some(producer_stopped.elapsed()),
        Err(_) => None,
    };
    // The stream ends once its last pollers have their answers.
    let p = stream
        .join()
        .map_err(|_| anyhow::anyhow!("the stream panicked"))??;
    stop.store(true, Ordering::Relaxed);
    let broker = witness
        .join()
        .map_err(|_| anyhow::anyhow!("the witness consumer panicked"))??;
    let rss_end = serve.rss_mib();
    let text = get_text(addr, "/metrics").await.unwrap_or_default();

    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!();
    println!(
        "{:<34} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "measure", "count", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
    );
    let row = |name: &str, h: &Histogram<u64>, errors: u64| {
        println!(
            "{name:<34} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {errors:>8}",
            h.len(),
            ms(h, 0.5),
            ms(h, 0.99),
            ms(h, 0.999),
            h.max() as f64 / 1000.0
        );
    };
    row("produce to visible (GET 200)", &p.visible, p.not_visible);
    row("baseline: produce to consumed", &broker, 0);
    row("(of which: produce acknowledged)", &p.acked, p.failed);
    row(
        &format!("lookups at {}/s while ingesting", s.lookup_rate),
        &lookups_live,
        lookup_errors,
    );
    row("baseline: lookups, no ingest", &base_lookups, base_errors);
    let e2e = |le: &str| {
        metric(
            &text,
            &format!("order_svc_ingest_end_to_end_seconds_bucket{{le=\"{le}\"}}"),
        )
    };
    let within = e2e("0.05") / e2e("+Inf").max(1.0);
    println!();
    println!(
        "produced {} orders at {}/s for {} s ({} send failures); serve's own end-to-end histogram: {:.2}% within 50 ms",
        queued.load(Ordering::Relaxed),
        s.order_rate,
        s.seconds,
        p.failed,
        100.0 * within
    );
    println!(
        "RSS {rss_start:.1} MiB after the warm-up, {rss_end:.1} MiB at the end; caught up {} after the producer stopped; HTTP 5xx {:.0}",
        caught_up.map_or("NOT within 10 minutes".to_owned(), |d| format!(
            "{:.2} s",
            d.as_secs_f64()
        )),
        server_errors(&text).abs(),
    );
    println!(
        "live (this run): produce to visible p99 {:.3} ms (broker alone {:.3} ms); lookups p99 {:.3} ms (without ingest {:.3} ms)",
        ms(&p.visible, 0.99),
        ms(&broker, 0.99),
        ms(&lookups_live, 0.99),
        ms(&base_lookups, 0.99)
    );
    anyhow::ensure!(caught_up.is_some(), "ingest did not catch up");
    Ok(())
}

/// The uids the lookups choose from: a ring of the most recent visible ones.
struct Recent {
    uids: Vec<String>,
    next: usize,
}

impl Recent {
    fn push(&mut self, uid: String) {
        let n = self.uids.len();
        self.uids[self.next % n] = uid;
        self.next += 1;
    }
}

/// What the stream saw.
struct Stream {
    failed: u64,
    /// Sampled orders that never answered 200 within a minute.
    not_visible: u64,
    /// From just before the send to the first 200 of a sampled order.
    visible: Histogram<u64>,
    /// From just before the send to the broker's acknowledgement.
    acked: Histogram<u64>,
}

#[derive(Default)]
struct Counts {
    failed: u64,
    polling: u64,
    not_visible: u64,
}

/// Produces at `order_rate` for `seconds`, polling every `sample`-th order until it is
/// visible; ends when the last poller has its answer.
async fn produce(
    order_rate: u64,
    sample: u64,
    seconds: Duration,
    publisher: &OrderPublisher,
    mut generator: Generator,
    addr: SocketAddr,
    (queued, recent): (Arc<AtomicU64>, Arc<Mutex<Recent>>),
) -> anyhow::Result<Stream> {
    // Ticks of 10 ms, as `order-svc produce` sends.
    let tick = Duration::from_millis(10);
    let per_tick = (order_rate as f64 * tick.as_secs_f64()).max(1.0);
    let mut ticker = tokio::time::interval(tick);
    let deadline = Instant::now() + seconds;
    let mut owed = 0.0;
    let counts = Rc::new(RefCell::new(Counts::default()));
    let visible = Rc::new(RefCell::new(histogram()));
    let acked = Rc::new(RefCell::new(histogram()));
    let pool = Rc::new(RefCell::new(Vec::<Conn>::new()));
    let tasks = tokio::task::LocalSet::new();
    let mut n = 0u64;
    tasks
        .run_until(async {
            while Instant::now() < deadline {
                ticker.tick().await;
                owed += per_tick;
                while owed >= 1.0 {
                    owed -= 1.0;
                    let m = generator.next_message();
                    let uid = m.uid.expect("a valid order has a uid");
                    let sent = Instant::now();
                    let Ok(delivery) = publisher.enqueue(Some(uid.as_bytes()), &m.bytes).await
                    else {
                        counts.borrow_mut().failed += 1;
                        continue;
                    };
                    queued.fetch_add(1, Ordering::Relaxed);
                    {
                        let (counts, acked) = (counts.clone(), acked.clone());
                        tokio::task::spawn_local(async move {
                            if matches!(delivery.await, Ok(Ok(_))) {
                                let d = sent.elapsed().as_micros().max(1) as u64;
                                let _ = acked.borrow_mut().record(d);
                            } else {
                                counts.borrow_mut().failed += 1;
                            }
                        });
                    }
                    n += 1;
                    if n.is_multiple_of(sample) {
                        counts.borrow_mut().polling += 1;
                        let (counts, visible, pool, recent) = (
                            counts.clone(),
                            visible.clone(),
                            pool.clone(),
                            recent.clone(),
                        );
                        tokio::task::spawn_local(async move {
                            let path = format!("/order/{uid}");
                            let seen = poll(addr, &path, sent, &pool).await;
                            let mut c = counts.borrow_mut();
                            c.polling -= 1;
                            match seen {
                                Some(d) => {
                                    let _ =
                                        visible.borrow_mut().record(d.as_micros().max(1) as u64);
                                    recent.lock().unwrap_or_else(|e| e.into_inner()).push(uid);
                                }
                                None => c.not_visible += 1,
                            }
                        });
                    }
                }
            }
            // The last pollers and delivery reports finish inside the set that runs them.
            while counts.borrow().polling > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            publisher.flush(Duration::from_secs(30))?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, anyhow::Error>(())
        })
        .await?;
    let c = counts.borrow();
    Ok(Stream {
        failed: c.failed,
        not_visible: c.not_visible,
        visible: visible.borrow().clone(),
        acked: acked.borrow().clone(),
    })
}

/// GET `path` until it answers 200: the time from `sent` to that answer, or None after a
/// minute.
async fn poll(
    addr: SocketAddr,
    path: &str,
    sent: Instant,
    pool: &RefCell<Vec<Conn>>,
) -> Option<Duration> {
    tokio::time::sleep_until((sent + Duration::from_millis(1)).into()).await;
    let taken = pool.borrow_mut().pop();
    let mut conn = match taken {
        Some(c) => c,
        None => Conn::open(addr).await.ok()?,
    };
    while sent.elapsed() < Duration::from_secs(60) {
        match conn.get(path).await {
            Ok((200, _)) => {
                let d = sent.elapsed();
                pool.borrow_mut().push(conn);
                return Some(d);
            }
            Ok(_) => {}
            Err(_) => conn = Conn::open(addr).await.ok()?,
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// A plain consumer of every partition of `topic` from its current end, in a thread of its
/// own: the time from each message's `x-produced-at` to its arrival, until `stop`.
fn witness(
    brokers: &str,
    topic: &str,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<Histogram<u64>>>> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-live-witness")
        .set("enable.auto.commit", "false");
    // The fetch wait serve's consumer has (BENCH_WITNESS_FETCH_WAIT_MS to follow another).
    let wait = std::env::var("BENCH_WITNESS_FETCH_WAIT_MS")
        .unwrap_or_else(|_| consumer::FETCH_WAIT_MAX_MS.to_owned());
    config.set("fetch.wait.max.ms", wait);
    let consumer: BaseConsumer = config.create()?;
    let since_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    anyhow::ensure!(partitions > 0, "topic {topic} has no partitions");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        list.add_partition_offset(topic, p, Offset::Offset(high))?;
    }
    consumer.assign(&list)?;
    Ok(std::thread::spawn(move || {
        let mut h = histogram();
        while !stop.load(Ordering::Relaxed) {
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = message?;
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
            let produced = message.headers().and_then(|hs| {
                hs.iter()
                    .find(|h| h.key == "x-produced-at")
                    .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<i64>().ok())
            });
            // Only what the stream sends (a stale high watermark may let older ones in).
            if let Some(at) = produced.filter(|at| *at >= since_ms) {
                h.record(((now_ms - at).max(0) as u64 * 1000).max(1))?;
            }
        }
        Ok(h)
    }))
}

async fn wait_stored(addr: SocketAddr, n: f64, within: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let text = get_text(addr, "/metrics").await.unwrap_or_default();
        if metric(&text, "order_svc_orders_ingested_total{outcome=\"stored\"}") >= n {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < within, "{n} orders not stored in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The consumer lag summed over the partitions: messages not yet committed (offsets are
/// committed every second, so about a second of the stream).
fn lag(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("order_svc_kafka_consumer_lag_messages{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .sum()
}

/// HTTP answers with a 5xx status, summed over routes.
fn server_errors(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("order_svc_http_requests_total{") && l.contains("status=\"5"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}
