//! Logging (and, with `serve`, metrics) set up once per process.
//!
//! Logs go to standard error so that standard output stays clean for `generate`.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::cli::LogFormat;

/// Installs the global tracing subscriber. `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(&spec)
            .map_err(|e| anyhow::anyhow!("RUST_LOG={spec:?} is not a valid log filter: {e}"))?,
        _ => EnvFilter::new("info"),
    };
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Pretty => registry
            .with(fmt::layer().with_writer(std::io::stderr).with_target(false))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .flatten_event(true),
            )
            .try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
    // Panics become log events (JSON where the logs are JSON) instead of raw stderr text.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "panic");
    }));
    Ok(())
}

/// Installs the Prometheus recorder for `serve` and describes every metric. Histograms get
/// buckets (not summaries) so that percentiles can be aggregated across processes.
pub fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

    use crate::domain::metrics as m;

    const SECONDS: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0,
    ];
    const MESSAGES: &[f64] = &[
        1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Suffix("_messages".into()), MESSAGES)?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;

    describe_counter!(
        m::ORDERS_INGESTED,
        "Consumed messages by outcome: stored, duplicate, conflict, rejected."
    );
    describe_counter!(
        m::CONSISTENCY_WARNINGS,
        "Orders accepted although their totals do not add up (VALIDATION_CONSISTENCY=warn)."
    );
    describe_counter!(
        m::DEAD_LETTERS,
        "Messages published to the dead-letter topic, by reason."
    );
    describe_histogram!(
        m::INGEST_BATCH_SIZE,
        Unit::Count,
        "Messages per consumed batch."
    );
    describe_histogram!(
        m::INGEST_BATCH_WRITE,
        Unit::Seconds,
        "Time to store one batch in PostgreSQL."
    );
    describe_histogram!(
        m::INGEST_END_TO_END,
        Unit::Seconds,
        "From the producer's x-produced-at header to the order being stored."
    );
    describe_counter!(
        m::INGEST_RETRIES,
        "Batch attempts that failed and were retried."
    );
    describe_gauge!(
        m::CONSUMER_LAG,
        Unit::Count,
        "Messages behind the partition's end, per partition."
    );
    describe_counter!(
        m::DB_ERRORS,
        "Database calls that failed, by operation and kind."
    );
    describe_histogram!(
        m::DB_QUERY,
        Unit::Seconds,
        "Database call latency by operation."
    );
    describe_counter!(
        m::PRODUCER_SENDS,
        "Messages published by produce, by result."
    );
    describe_counter!(
        m::CACHE_REQUESTS,
        "Cache lookups by result: hit, miss, or negative_hit (an unknown uid answered from memory)."
    );
    describe_counter!(
        m::ORDERS_UNREADABLE,
        "Stored rows that do not read back as an order (skipped by the preload, 500 on lookup)."
    );
    describe_counter!(
        m::HEADERS_UNREADABLE,
        "Kafka message headers whose name is not UTF-8 (kept under U+FFFD without a value)."
    );
    describe_counter!(
        m::CONSUMER_FAILURES,
        "Times the Kafka consumer ended other than by shutdown (the process then exits non-zero)."
    );
    describe_gauge!(m::CACHE_ENTRIES, Unit::Count, "Orders in the cache.");
    describe_gauge!(
        m::CACHE_BYTES,
        Unit::Bytes,
        "Weight of the cache: bytes of cached JSON."
    );
    describe_counter!(
        m::HTTP_REQUESTS,
        "HTTP requests by route template, method and status."
    );
    describe_histogram!(
        m::HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency by route template, method and status."
    );
    describe_gauge!(m::READY, "1 when /readyz answers ready, else 0.");

    // Every series of a bounded label set exists from the start at zero, so that rates and
    // dashboards work before the first event of each kind.
    use crate::domain::message::DeadLetterReason;
    for outcome in ["stored", "duplicate", "conflict", "rejected"] {
        metrics::counter!(m::ORDERS_INGESTED, "outcome" => outcome).absolute(0);
    }
    for reason in DeadLetterReason::all() {
        metrics::counter!(m::DEAD_LETTERS, "reason" => reason.code()).absolute(0);
    }
    for op in [
        "store_batch",
        "dead_lettered",
        "record_dead_letters",
        "find",
        "latest",
        "ping",
    ] {
        for kind in ["unavailable", "refused", "unreadable", "unknown"] {
            metrics::counter!(m::DB_ERRORS, "op" => op, "kind" => kind).absolute(0);
        }
    }
    for result in ["hit", "miss", "negative_hit"] {
        metrics::counter!(m::CACHE_REQUESTS, "result" => result).absolute(0);
    }
    for result in ["ok", "truncated", "error"] {
        metrics::counter!(m::PRODUCER_SENDS, "producer" => "dead_letters", "result" => result)
            .absolute(0);
    }
    // Alerts watch these with `increase`: from 0, the first event counts.
    for name in [
        m::INGEST_RETRIES,
        m::CONSISTENCY_WARNINGS,
        m::ORDERS_UNREADABLE,
        m::HEADERS_UNREADABLE,
        m::CONSUMER_FAILURES,
    ] {
        metrics::counter!(name).absolute(0);
    }
    metrics::gauge!(m::READY).set(0.0);

    // The recorder needs periodic upkeep to drain histogram buffers.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}
