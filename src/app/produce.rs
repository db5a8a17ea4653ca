//! `order-svc produce`: publish orders at a steady rate, generated or from a file, until
//! Ctrl-C or `--count`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use tokio::time::MissedTickBehavior;

use crate::adapters::kafka::{ensure_topics, producer::OrderPublisher};
use crate::generate::Generator;
use crate::settings::{OrderSource, ProduceSettings};

type Source = Box<dyn Iterator<Item = (Option<Vec<u8>>, Vec<u8>)> + Send>;

pub async fn run(args: ProduceSettings) -> anyhow::Result<()> {
    let mut source: Source = match &args.source {
        OrderSource::File(path) => file_source(path)?,
        OrderSource::Generated(settings) => {
            settings.log_seed();
            let mut generator = Generator::new(settings.options.clone());
            Box::new(std::iter::from_fn(move || {
                let message = generator.next_message();
                Some((message.uid.map(String::into_bytes), message.bytes))
            }))
        }
    };
    if let Some(count) = args.count {
        source = Box::new(source.take(count as usize));
    }
    let kafka = &args.kafka;
    kafka.connection.warn_weaknesses();
    let topic = &kafka.topic;
    ensure_topics(&kafka.connection, &[topic.as_str()], kafka.partitions).await?;
    let publisher = OrderPublisher::new(&kafka.connection, topic)?;

    // Ticks of at least 10 ms: timers are not finer, and at high rates a tick sends a batch.
    let tick = Duration::from_secs_f64((1.0 / args.rps).max(0.01));
    let per_tick = (args.rps * tick.as_secs_f64()).ceil() as u64;
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner()
            .with_style(ProgressStyle::with_template("{spinner} {msg}").expect("template"));
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });

    let started = Instant::now();
    let (mut queued, mut sent, mut failed) = (0u64, 0u64, 0u64);
    let mut deliveries = FuturesUnordered::new();
    let mut exhausted = false;
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    while !exhausted {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(result) = deliveries.next(), if !deliveries.is_empty() => {
                count_delivery(result, &mut sent, &mut failed);
                continue;
            }
            _ = ticker.tick() => {}
        }
        // Due by the clock since the start, so the rate does not drift; at most one tick's
        // worth at once, so a stall is never followed by a burst.
        let due = (args.rps * started.elapsed().as_secs_f64()) as u64 + 1;
        for _ in 0..due.saturating_sub(queued).min(per_tick) {
            let Some((key, payload)) = source.next() else {
                exhausted = true;
                break;
            };
            match publisher.enqueue(key.as_deref(), &payload).await {
                Ok(delivery) => deliveries.push(delivery),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot queue an order");
                    failed += 1;
                }
            }
            queued += 1;
        }
        if let Some(bar) = &progress {
            bar.set_message(format!("queued {queued}, sent {sent}, failed {failed}"));
        }
    }
    // Wait for the reports of what is in flight; a second Ctrl-C is not needed to stop.
    let drain = async {
        while let Some(result) = deliveries.next().await {
            count_delivery(result, &mut sent, &mut failed);
        }
    };
    if tokio::time::timeout(Duration::from_secs(35), drain)
        .await
        .is_err()
    {
        tracing::warn!("gave up waiting for delivery reports");
    }
    let _ = publisher.flush(Duration::from_secs(1));
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let lost = queued - sent - failed;
    println!(
        "sent {sent}, failed {}, elapsed {elapsed:.1}s ({:.0} orders/s)",
        failed + lost,
        sent as f64 / elapsed.max(0.001)
    );
    if failed + lost > 0 {
        anyhow::bail!("{} of {queued} orders were not delivered", failed + lost);
    }
    Ok(())
}

fn count_delivery(
    result: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
    sent: &mut u64,
    failed: &mut u64,
) {
    match result {
        Ok(Ok(_)) => *sent += 1,
        Ok(Err((e, _))) => {
            tracing::warn!(error = %e, "order not delivered");
            *failed += 1;
        }
        Err(_) => *failed += 1,
    }
}

/// The messages of a file written by `generate`: JSON lines, or one JSON array (also the
/// existing service's mock file). Each is sent as it is, keyed by its uid when it has one.
fn file_source(path: &std::path::Path) -> anyhow::Result<Source> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let payloads: Vec<Vec<u8>> = if first == Some(b'[') {
        let items: Vec<Box<serde_json::value::RawValue>> = serde_json::from_slice(&bytes)
            .with_context(|| {
                format!("{} starts like a JSON array but is not one", path.display())
            })?;
        items
            .into_iter()
            .map(|raw| raw.get().as_bytes().to_vec())
            .collect()
    } else {
        bytes
            .split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(<[u8]>::to_vec)
            .collect()
    };
    tracing::info!(messages = payloads.len(), file = %path.display(), "publishing from file");
    Ok(Box::new(
        payloads
            .into_iter()
            .map(|payload| (uid_of(&payload), payload)),
    ))
}

fn uid_of(payload: &[u8]) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct Key {
        order_uid: Option<String>,
    }
    serde_json::from_slice::<Key>(payload)
        .ok()?
        .order_uid
        .map(String::into_bytes)
}
