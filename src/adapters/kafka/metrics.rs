//! The metrics of the Kafka adapter.

use metrics::Unit;

use crate::domain::metrics::{Kind, Label, Labels, Metric};

pub const CONSUMER_LAG: &str = "order_svc_kafka_consumer_lag_messages";
pub const HEADERS_UNREADABLE: &str = "order_svc_kafka_headers_unreadable_total";
pub const CONSUMER_FAILURES: &str = "order_svc_kafka_consumer_failures_total";
pub const PRODUCER_SENDS: &str = "order_svc_producer_sends_total";

/// Which of our producers sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Producer {
    DeadLetters,
}

impl Label for Producer {
    fn values() -> Vec<Self> {
        vec![Self::DeadLetters]
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::DeadLetters => "dead_letters",
        }
    }
}

/// How a send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendResult {
    Ok,
    /// Delivered with its payload cut to fit the broker's limit.
    Truncated,
    Error,
}

impl Label for SendResult {
    fn values() -> Vec<Self> {
        vec![Self::Ok, Self::Truncated, Self::Error]
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Truncated => "truncated",
            Self::Error => "error",
        }
    }
}

pub const METRICS: &[Metric] = &[
    Metric {
        name: CONSUMER_LAG,
        kind: Kind::Gauge,
        unit: Some(Unit::Count),
        help: "Messages behind the partition's end, per partition.",
        labels: Labels::Open,
    },
    Metric {
        name: HEADERS_UNREADABLE,
        kind: Kind::Counter,
        unit: None,
        help: "Kafka message headers whose name is not UTF-8 (kept under U+FFFD without a value).",
        labels: Labels::Bounded(&[]),
    },
    Metric {
        name: CONSUMER_FAILURES,
        kind: Kind::Counter,
        unit: None,
        help: "Times the Kafka consumer ended other than by shutdown (the process then exits non-zero).",
        labels: Labels::Bounded(&[]),
    },
    Metric {
        name: PRODUCER_SENDS,
        kind: Kind::Counter,
        unit: None,
        help: "Messages published to Kafka, by producer and result.",
        labels: Labels::Bounded(&[("producer", Producer::names), ("result", SendResult::names)]),
    },
];
