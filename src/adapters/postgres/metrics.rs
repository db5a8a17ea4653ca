//! The metrics of the PostgreSQL adapter.

use metrics::Unit;

use crate::domain::metrics::{Kind, Label, Labels, Metric};
use crate::domain::ports::StoreError;

pub const DB_ERRORS: &str = "order_svc_db_errors_total";
pub const DB_QUERY: &str = "order_svc_db_query_seconds";
pub const POOL_CONNECTIONS: &str = "order_svc_db_pool_connections";
pub const POOL_MAX: &str = "order_svc_db_pool_max_connections";
pub const POOL_WAITING: &str = "order_svc_db_pool_waiting";

/// The two pools of `serve`: lookups and ingest never take each other's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolName {
    Lookup,
    Ingest,
    /// One connection for the readiness check alone.
    Health,
}

impl Label for PoolName {
    fn values() -> Vec<Self> {
        vec![Self::Lookup, Self::Ingest, Self::Health]
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Lookup => "lookup",
            Self::Ingest => "ingest",
            Self::Health => "health",
        }
    }
}

/// A pool's open connections, by whether a call holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    Idle,
    InUse,
}

impl Label for ConnState {
    fn values() -> Vec<Self> {
        vec![Self::Idle, Self::InUse]
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::InUse => "in_use",
        }
    }
}

/// The database calls, as the `op` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    StoreBatch,
    DeadLettered,
    RecordDeadLetters,
    Find,
    Latest,
    Browse,
    Rejections,
    Ping,
    Audit,
    Keys,
    Sessions,
}

impl Op {
    /// Calls a person waits for.
    pub fn is_lookup(self) -> bool {
        matches!(
            self,
            Self::Find
                | Self::Browse
                | Self::Rejections
                | Self::Ping
                | Self::Audit
                | Self::Keys
                | Self::Sessions
        )
    }
}

impl Label for Op {
    fn values() -> Vec<Self> {
        vec![
            Self::StoreBatch,
            Self::DeadLettered,
            Self::RecordDeadLetters,
            Self::Find,
            Self::Latest,
            Self::Browse,
            Self::Rejections,
            Self::Ping,
            Self::Audit,
            Self::Keys,
            Self::Sessions,
        ]
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::StoreBatch => "store_batch",
            Self::DeadLettered => "dead_lettered",
            Self::RecordDeadLetters => "record_dead_letters",
            Self::Find => "find",
            Self::Latest => "latest",
            Self::Browse => "browse",
            Self::Rejections => "rejections",
            Self::Ping => "ping",
            Self::Audit => "audit",
            Self::Keys => "keys",
            Self::Sessions => "sessions",
        }
    }
}

/// The kinds of failure, one per [`StoreError`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Unavailable,
    Refused,
    Unreadable,
    Unknown,
}

impl ErrorKind {
    pub fn of(e: &StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::Unavailable,
            StoreError::Refused(_) => Self::Refused,
            StoreError::Unreadable { .. } => Self::Unreadable,
            StoreError::Unknown(_) => Self::Unknown,
        }
    }
}

impl Label for ErrorKind {
    fn values() -> Vec<Self> {
        vec![
            Self::Unavailable,
            Self::Refused,
            Self::Unreadable,
            Self::Unknown,
        ]
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Refused => "refused",
            Self::Unreadable => "unreadable",
            Self::Unknown => "unknown",
        }
    }
}

pub const METRICS: &[Metric] = &[
    Metric {
        name: DB_ERRORS,
        kind: Kind::Counter,
        unit: None,
        help: "Database calls that failed, by operation and kind.",
        labels: Labels::Bounded(&[("op", Op::names), ("kind", ErrorKind::names)]),
    },
    Metric {
        name: DB_QUERY,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Database call latency by operation.",
        labels: Labels::Bounded(&[("op", Op::names)]),
    },
    Metric {
        name: POOL_CONNECTIONS,
        kind: Kind::Gauge,
        unit: Some(Unit::Count),
        help: "Open connections of a pool, idle or in use by a call (read at each scrape).",
        labels: Labels::Bounded(&[("pool", PoolName::names), ("state", ConnState::names)]),
    },
    Metric {
        name: POOL_MAX,
        kind: Kind::Gauge,
        unit: Some(Unit::Count),
        help: "The most connections a pool opens (DATABASE_POOL_SIZE, split between the pools).",
        labels: Labels::Bounded(&[("pool", PoolName::names)]),
    },
    Metric {
        name: POOL_WAITING,
        kind: Kind::Gauge,
        unit: Some(Unit::Count),
        help: "Calls waiting for a connection of a pool (read at each scrape).",
        labels: Labels::Bounded(&[("pool", PoolName::names)]),
    },
];
