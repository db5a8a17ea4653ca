//! The metrics the core emits, and the shape in which every part of the service describes
//! its own. Names that speak of Kafka, PostgreSQL, HTTP or the cache live in their adapters;
//! telemetry describes everything from the lists ([`CORE`] and the adapters'), and starts
//! every series of a bounded label set at zero.
//!
//! A bounded label is an enum whose values are listed once ([`Label::values`]) and used both
//! where the metric is emitted and where it is described.

use metrics::Unit;

use super::message::DeadLetterReason;

/// What kind of instrument a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution, in buckets.
    Histogram,
}

/// A metric as `/metrics` describes it.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The Prometheus name, with its unit and `_total` where it applies.
    pub name: &'static str,
    /// What instrument it is.
    pub kind: Kind,
    /// Its unit, when it has one.
    pub unit: Option<Unit>,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Its labels.
    pub labels: Labels,
}

/// A bounded label: its name, and the function that lists its values.
pub type BoundedLabel = (&'static str, fn() -> Vec<&'static str>);

/// A metric's labels.
#[derive(Debug, Clone, Copy)]
pub enum Labels {
    /// None, or each bounded, with every value it takes: every series exists from the start
    /// at zero, so that rates, alerts and dashboards work before the first event of a kind.
    Bounded(&'static [BoundedLabel]),
    /// Labels whose values are known only when seen (partitions, route templates): series
    /// appear with their first event.
    Open,
}

/// A bounded set of label values.
pub trait Label: Copy + 'static {
    /// Every value.
    fn values() -> Vec<Self>;

    /// The value as it appears in `/metrics`.
    fn as_str(self) -> &'static str;

    /// Every value as it appears in `/metrics`, for descriptions.
    fn names() -> Vec<&'static str> {
        Self::values().into_iter().map(Self::as_str).collect()
    }
}

/// Consumed messages by outcome.
pub const ORDERS_INGESTED: &str = "order_svc_orders_ingested_total";
/// Orders accepted although their totals do not add up.
pub const CONSISTENCY_WARNINGS: &str = "order_svc_orders_consistency_warnings_total";
/// Dead letters published, by reason.
pub const DEAD_LETTERS: &str = "order_svc_dead_letters_total";
/// Messages per batch.
pub const INGEST_BATCH_SIZE: &str = "order_svc_ingest_batch_size_messages";
/// Time to make a batch durable.
pub const INGEST_BATCH_WRITE: &str = "order_svc_ingest_batch_write_seconds";
/// From `x-produced-at` to stored.
pub const INGEST_END_TO_END: &str = "order_svc_ingest_end_to_end_seconds";
/// Batch attempts retried.
pub const INGEST_RETRIES: &str = "order_svc_ingest_retries_total";
/// Lookups by cache result.
pub const CACHE_REQUESTS: &str = "order_svc_cache_requests_total";
/// Stored rows that do not read back as an order.
pub const ORDERS_UNREADABLE: &str = "order_svc_orders_unreadable_total";
/// Reads refused because their audit record could not be written.
pub const AUDIT_FAILURES: &str = "order_svc_audit_failures_total";
/// 1 when ready, else 0.
pub const READY: &str = "order_svc_service_ready";

/// What became of a consumed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written now.
    Stored,
    /// Already stored with the same content.
    Duplicate,
    /// Other content under a stored uid.
    Conflict,
    /// Refused by the gate.
    Rejected,
}

impl Label for Outcome {
    fn values() -> Vec<Self> {
        vec![
            Self::Stored,
            Self::Duplicate,
            Self::Conflict,
            Self::Rejected,
        ]
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Duplicate => "duplicate",
            Self::Conflict => "conflict",
            Self::Rejected => "rejected",
        }
    }
}

/// Where a lookup found its answer, or did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// The cache held it.
    Hit,
    /// The store was asked.
    Miss,
    /// An unknown uid answered from memory.
    NegativeHit,
}

impl Label for CacheResult {
    fn values() -> Vec<Self> {
        vec![Self::Hit, Self::Miss, Self::NegativeHit]
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::NegativeHit => "negative_hit",
        }
    }
}

impl Label for DeadLetterReason {
    fn values() -> Vec<Self> {
        DeadLetterReason::all().collect()
    }

    fn as_str(self) -> &'static str {
        self.code()
    }
}

/// The core's metrics.
pub const CORE: &[Metric] = &[
    Metric {
        name: ORDERS_INGESTED,
        kind: Kind::Counter,
        unit: None,
        help: "Consumed messages by outcome: stored, duplicate, conflict, rejected.",
        labels: Labels::Bounded(&[("outcome", Outcome::names)]),
    },
    Metric {
        name: CONSISTENCY_WARNINGS,
        kind: Kind::Counter,
        unit: None,
        help: "Orders accepted although their totals do not add up (VALIDATION_CONSISTENCY=warn).",
        labels: Labels::Bounded(&[]),
    },
    Metric {
        name: DEAD_LETTERS,
        kind: Kind::Counter,
        unit: None,
        help: "Messages published to the dead-letter topic, by reason.",
        labels: Labels::Bounded(&[("reason", DeadLetterReason::names)]),
    },
    Metric {
        name: INGEST_BATCH_SIZE,
        kind: Kind::Histogram,
        unit: Some(Unit::Count),
        help: "Messages per consumed batch.",
        labels: Labels::Bounded(&[]),
    },
    Metric {
        name: INGEST_BATCH_WRITE,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time to store one batch in PostgreSQL.",
        labels: Labels::Bounded(&[]),
    },
    Metric {
        name: INGEST_END_TO_END,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "From the producer's x-produced-at header to the order being stored.",
        labels: Labels::Bounded(&[]),
    },
    Metric {
        name: INGEST_RETRIES,
        kind: Kind::Counter,
        unit: None,
        help: "Batch attempts that failed and were retried.",
        labels: Labels::Bounded(&[]),
    },
    Metric {
        name: CACHE_REQUESTS,
        kind: Kind::Counter,
        unit: None,
        help: "Cache lookups by result: hit, miss, or negative_hit (an unknown uid answered from memory).",
        labels: Labels::Bounded(&[("result", CacheResult::names)]),
    },
    Metric {
        name: ORDERS_UNREADABLE,
        kind: Kind::Counter,
        unit: None,
        help: "Stored rows that do not read back as an order (skipped by the preload, 500 on lookup).",
        labels: Labels::Bounded(&[]),
    },
    Metric {
        name: AUDIT_FAILURES,
        kind: Kind::Counter,
        unit: None,
        help: "Reads of personal data or searches refused (503) because their audit record could not be written.",
        labels: Labels::Bounded(&[]),
    },
    Metric {
        name: READY,
        kind: Kind::Gauge,
        unit: None,
        help: "1 when /readyz answers ready, else 0.",
        labels: Labels::Bounded(&[]),
    },
];
