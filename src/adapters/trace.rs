//! What the adapters share about tracing: whether spans are exported (telemetry turns it on
//! when an OTLP endpoint is configured), the W3C trace context read from and written to
//! headers (HTTP requests, Kafka messages), and the id of the HTTP request being served,
//! which the log format writes on every line of that request.

/// Whether spans are exported (an OTLP endpoint is set).
pub fn tracing_enabled() -> bool {
    TRACING.load(std::sync::atomic::Ordering::Relaxed)
}

static TRACING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns span export on (telemetry, once the exporter is installed).
pub fn enable() {
    TRACING.store(true, std::sync::atomic::Ordering::Relaxed);
}

tokio::task_local! {
    /// The id of the HTTP request being served, for the log lines written while serving it.
    static REQUEST_ID: std::sync::Arc<str>;
}

/// Runs `work` as the serving of request `id`: every log line it writes carries the id as
/// `request_id` (appended to a pretty line, a field of a JSON one). A task-local, not a
/// span: a span per request cost 9% of the cached lookups' throughput (`just bench-http`),
/// this costs nothing until a line is written.
pub fn with_request_id<F: std::future::Future>(
    id: std::sync::Arc<str>,
    work: F,
) -> impl std::future::Future<Output = F::Output> {
    REQUEST_ID.scope(id, work)
}

/// [`with_request_id`] for synchronous work.
pub fn sync_with_request_id<R>(id: std::sync::Arc<str>, work: impl FnOnce() -> R) -> R {
    REQUEST_ID.sync_scope(id, work)
}

/// The id of the request the current task serves, if it serves one.
pub fn current_request_id() -> Option<std::sync::Arc<str>> {
    REQUEST_ID.try_with(std::sync::Arc::clone).ok()
}

/// The trace context a message or request carries in its `traceparent` (and `tracestate`)
/// headers, when tracing is on and it carries a valid one.
pub fn remote_context<'a>(
    headers: impl Fn(&str) -> Option<&'a str>,
) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::TraceContextExt;
    if !tracing_enabled() {
        return None;
    }
    let found: std::collections::HashMap<String, String> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|name| headers(name).map(|v| (name.to_owned(), v.to_owned())))
        .collect();
    if !found.contains_key("traceparent") {
        return None;
    }
    let context = opentelemetry::global::get_text_map_propagator(|p| p.extract(&found));
    context.span().span_context().is_valid().then_some(context)
}

/// The `traceparent` (and `tracestate`) headers of the current span, when tracing is on.
pub fn current_context_headers() -> Vec<(String, String)> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !tracing_enabled() {
        return Vec::new();
    }
    let context = tracing::Span::current().context();
    let mut headers = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut headers));
    let mut headers: Vec<(String, String)> = headers.into_iter().collect();
    headers.sort();
    headers
}
