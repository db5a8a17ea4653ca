//! Logging (and, with `serve`, metrics) set up once per process.
//!
//! Logs go to standard error so that standard output stays clean for `generate`.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::cli::LogFormat;
use crate::domain::metrics::{Kind, Labels, Metric};

/// Installs the global tracing subscriber. `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(&spec)
            .with_context(|| format!("RUST_LOG={spec:?} is not a valid log filter"))?,
        _ => EnvFilter::new("info"),
    };
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    // Colours for a terminal only, not for a file or a log collector.
                    .with_ansi(std::io::stderr().is_terminal()),
            )
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
    .context("cannot install the log subscriber")?;
    // Panics become log events (JSON where the logs are JSON) instead of raw stderr text.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "panic");
    }));
    Ok(())
}

/// The version and commit the binary was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit (`build.rs`: `ORDER_SVC_COMMIT`, else git, else `unknown`).
pub const COMMIT: &str = env!("ORDER_SVC_COMMIT");

/// Always 1, with the version and commit as labels.
pub const BUILD_INFO: &str = "order_svc_build_info";

/// Installs the Prometheus recorder for `serve` and describes every metric. Histograms get
/// buckets (not summaries) so that percentiles can be aggregated across processes.
///
/// The returned function renders `/metrics`, reading first what is read on demand: the
/// process's memory, CPU and files (`process_*`, the names every Prometheus client uses),
/// and whatever `on_scrape` reads (the database pools).
pub fn install_metrics(
    on_scrape: Vec<Box<dyn Fn() + Send + Sync>>,
) -> anyhow::Result<crate::adapters::http::RenderMetrics> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

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
        .context("cannot install the metrics recorder")?;

    for metric in all_metrics() {
        describe(metric);
        start_at_zero(metric);
    }
    metrics::gauge!(BUILD_INFO, "version" => VERSION, "commit" => COMMIT).set(1.0);
    let process = metrics_process::Collector::default();
    process.describe();

    // The recorder needs periodic upkeep to drain histogram buffers.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(std::sync::Arc::new(move || {
        process.collect();
        for read in &on_scrape {
            read();
        }
        handle.render()
    }))
}

/// Every metric of the service: the core's and each adapter's.
pub fn all_metrics() -> impl Iterator<Item = &'static Metric> {
    [
        &[Metric {
            name: BUILD_INFO,
            kind: Kind::Gauge,
            unit: None,
            help: "Always 1: the version and commit of the running binary, as labels.",
            labels: Labels::Open,
        }][..],
        crate::domain::metrics::CORE,
        crate::adapters::kafka::metrics::METRICS,
        crate::adapters::postgres::metrics::METRICS,
        crate::adapters::http::metrics::METRICS,
        crate::adapters::cache::METRICS,
    ]
    .into_iter()
    .flatten()
}

fn describe(metric: &Metric) {
    let (name, help) = (metric.name, metric.help);
    match (metric.kind, metric.unit) {
        (Kind::Counter, Some(unit)) => metrics::describe_counter!(name, unit, help),
        (Kind::Counter, None) => metrics::describe_counter!(name, help),
        (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(name, unit, help),
        (Kind::Gauge, None) => metrics::describe_gauge!(name, help),
        (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(name, unit, help),
        (Kind::Histogram, None) => metrics::describe_histogram!(name, help),
    }
}

/// Every series of a counter with bounded labels (each combination of their values), and
/// every gauge without labels, exists from the start at zero: rates and dashboards work
/// before the first event of each kind, and alerts that watch `increase` see the first one.
fn start_at_zero(metric: &Metric) {
    let Labels::Bounded(labels) = metric.labels else {
        return;
    };
    let mut series: Vec<Vec<metrics::Label>> = vec![Vec::new()];
    for (key, values) in labels {
        series = series
            .into_iter()
            .flat_map(|set| {
                values().into_iter().map(move |value| {
                    let mut set = set.clone();
                    set.push(metrics::Label::new(*key, value));
                    set
                })
            })
            .collect();
    }
    for set in series {
        match metric.kind {
            Kind::Counter => metrics::counter!(metric.name, set).absolute(0),
            Kind::Gauge if labels.is_empty() => metrics::gauge!(metric.name).set(0.0),
            Kind::Gauge | Kind::Histogram => {}
        }
    }
}
