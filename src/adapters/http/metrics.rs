//! The metrics of the HTTP adapter. Their labels (route template, method, status) are
//! bounded by the routes, not listed: series appear with the first request of each.

use metrics::Unit;

use crate::domain::metrics::{Kind, Labels, Metric};

pub const HTTP_REQUESTS: &str = "order_svc_http_requests_total";
pub const HTTP_DURATION: &str = "order_svc_http_request_duration_seconds";
pub const RATE_LIMITED: &str = "order_svc_http_rate_limited_total";

/// The budgets a request draws on (`failures`: failed credentials per client address).
fn budgets() -> Vec<&'static str> {
    vec!["lookup", "search", "failures"]
}

pub const METRICS: &[Metric] = &[
    Metric {
        name: HTTP_REQUESTS,
        kind: Kind::Counter,
        unit: None,
        help: "HTTP requests by route template, method and status.",
        labels: Labels::Open,
    },
    Metric {
        name: HTTP_DURATION,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "HTTP request latency by route template, method and status.",
        labels: Labels::Open,
    },
    Metric {
        name: RATE_LIMITED,
        kind: Kind::Counter,
        unit: None,
        help: "Requests answered 429 because their caller was over its budget, by budget (failures: too many failed credentials from one address).",
        labels: Labels::Bounded(&[("budget", budgets)]),
    },
];
