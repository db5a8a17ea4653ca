//! Logging (and, with `serve`, metrics) set up once per process.
//!
//! Logs go to standard error so that standard output stays clean for `generate`.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::cli::LogFormat;
use crate::domain::metrics::{Kind, Labels, Metric};

/// Keeps the trace exporter alive; dropping it sends the spans still buffered.
#[must_use = "dropping the guard stops the trace exporter"]
pub struct Guard {
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: the last spans were not exported: {e}");
        }
    }
}

/// Installs the global tracing subscriber. `RUST_LOG` filters (default `info`). With
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, spans are
/// also exported over OTLP/HTTP as protobuf, named by `OTEL_SERVICE_NAME` (default
/// `order-svc`), and `traceparent` is read and written (W3C trace context).
pub fn init(format: LogFormat) -> anyhow::Result<Guard> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(&spec)
            .with_context(|| format!("RUST_LOG={spec:?} is not a valid log filter"))?,
        _ => EnvFilter::new("info"),
    };
    let traces = trace_provider()?;
    let otel = traces.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider;
        tracing_opentelemetry::layer().with_tracer(provider.tracer("order-svc"))
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    match format {
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colours for a terminal only, not for a file or a log collector.
                    .with_ansi(std::io::stderr().is_terminal())
                    .event_format(WithRequestId {
                        inner: fmt::format().with_target(false),
                        json: false,
                    }),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .event_format(WithRequestId {
                        inner: fmt::format().json().flatten_event(true),
                        json: true,
                    }),
            )
            .try_init(),
    }
    .context("cannot install the log subscriber")?;
    let guard = Guard { traces };
    // Panics become log events (JSON where the logs are JSON) instead of raw stderr text.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "panic");
    }));
    Ok(guard)
}

/// The log line as the inner format writes it, with the request id of the current task.
struct WithRequestId<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> fmt::FormatEvent<S, N> for WithRequestId<F>
where
    F: fmt::FormatEvent<S, N>,
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &fmt::FmtContext<'_, S, N>,
        mut writer: fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(id) = crate::adapters::trace::current_request_id() else {
            return self.inner.format_event(ctx, writer, event);
        };
        // Written whole, then completed: the inner format's line is left as it is.
        let mut line = String::new();
        self.inner
            .format_event(ctx, fmt::format::Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        match line.strip_prefix('{').filter(|_| self.json) {
            Some(rest) => {
                let id = serde_json::to_string(&*id).map_err(|_| std::fmt::Error)?;
                let rest = if rest == "}" {
                    rest.to_owned()
                } else {
                    format!(",{rest}")
                };
                writeln!(writer, "{{\"request_id\":{id}{rest}")
            }
            None => writeln!(writer, "{line} request_id={id}"),
        }
    }
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// The OTLP exporter and its provider, when an endpoint is configured. Only HTTP with
/// protobuf is built in: another `OTEL_EXPORTER_OTLP_PROTOCOL` stops the program at start.
fn trace_provider() -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    use opentelemetry_otlp::WithExportConfig;
    if !env_set("OTEL_EXPORTER_OTLP_ENDPOINT") && !env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Ok(None);
    }
    for name in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ] {
        if let Ok(protocol) = std::env::var(name)
            && !protocol.is_empty()
            && protocol != "http/protobuf"
        {
            anyhow::bail!(
                "{name}={protocol:?} is not supported: order-svc exports traces over OTLP/HTTP \
                 (http/protobuf); point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP \
                 port (4318), or an OpenTelemetry Collector in front of a gRPC-only backend"
            );
        }
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .context("cannot set up the OTLP trace exporter (OTEL_EXPORTER_OTLP_ENDPOINT)")?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !env_set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name("order-svc");
    }
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    crate::adapters::trace::enable();
    Ok(Some(provider))
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt;

    use super::WithRequestId;
    use crate::adapters::trace::sync_with_request_id;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(json: bool, log: impl Fn()) -> Vec<String> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let builder = fmt().with_writer(move || writer.clone()).with_ansi(false);
        let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = if json {
            Box::new(
                builder
                    .json()
                    .event_format(WithRequestId {
                        inner: fmt::format().json().flatten_event(true),
                        json: true,
                    })
                    .finish(),
            )
        } else {
            Box::new(
                builder
                    .event_format(WithRequestId {
                        inner: fmt::format().with_target(false),
                        json: false,
                    })
                    .finish(),
            )
        };
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn lines_written_while_a_request_is_served_carry_its_id() {
        let log = || {
            sync_with_request_id(Arc::from("req-1.x"), || {
                tracing::warn!(detail = "down", "lookup failed");
            });
            tracing::warn!("between requests");
        };
        let json = lines(true, log);
        assert_eq!(json.len(), 2, "{json:?}");
        let inside: serde_json::Value = serde_json::from_str(&json[0]).expect("valid JSON");
        assert_eq!(inside["request_id"], "req-1.x");
        assert_eq!(inside["detail"], "down");
        assert_eq!(inside["message"], "lookup failed");
        let outside: serde_json::Value = serde_json::from_str(&json[1]).unwrap();
        assert!(outside.get("request_id").is_none(), "{outside}");

        let pretty = lines(false, log);
        assert!(pretty[0].contains("lookup failed"), "{pretty:?}");
        assert!(pretty[0].ends_with(" request_id=req-1.x"), "{pretty:?}");
        assert!(!pretty[1].contains("request_id"), "{pretty:?}");
    }
}
