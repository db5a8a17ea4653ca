//! Readiness: what must hold before the service takes traffic, set by the parts that know,
//! and published as the `order_svc_service_ready` gauge here, whenever it changes, and nowhere else.

use std::sync::atomic::{AtomicBool, Ordering};

/// Each flag starts false; the part that owns it sets it. A part the service does not run
/// (the consumer in the `api` role, say) is not required.
#[derive(Debug)]
pub struct Readiness {
    database: AtomicBool,
    cache: AtomicBool,
    consumer: AtomicBool,
    consumer_failed: AtomicBool,
    needs_cache: bool,
    needs_consumer: bool,
}

impl Readiness {
    /// Readiness of a process that needs a preloaded cache (an API role) and/or a running consumer (an ingest role).
    pub fn new(needs_cache: bool, needs_consumer: bool) -> Self {
        Self {
            database: AtomicBool::new(false),
            cache: AtomicBool::new(false),
            consumer: AtomicBool::new(false),
            consumer_failed: AtomicBool::new(false),
            needs_cache,
            needs_consumer,
        }
    }

    /// Whether the database answered the last ping.
    pub fn set_database(&self, up: bool) {
        self.database.store(up, Ordering::Relaxed);
        self.publish();
    }

    /// The cache preload is done.
    pub fn set_cache_warmed(&self) {
        self.cache.store(true, Ordering::Relaxed);
        self.publish();
    }

    /// Whether the consumer runs.
    pub fn set_consumer(&self, running: bool) {
        self.consumer.store(running, Ordering::Relaxed);
        self.publish();
    }

    /// The consumer ended other than by shutdown: the process is no longer alive as an
    /// ingest process, whatever HTTP still answers.
    pub fn set_consumer_failed(&self) {
        self.consumer.store(false, Ordering::Relaxed);
        self.consumer_failed.store(true, Ordering::Relaxed);
        self.publish();
    }

    fn publish(&self) {
        let ready = if self.problems().is_empty() { 1.0 } else { 0.0 };
        metrics::gauge!(super::metrics::READY).set(ready);
    }

    /// Liveness: false once a part the service needs has died for good.
    pub fn alive(&self) -> bool {
        !(self.needs_consumer && self.consumer_failed.load(Ordering::Relaxed))
    }

    /// Whether the database answered the last ping.
    pub fn database(&self) -> bool {
        self.database.load(Ordering::Relaxed)
    }

    /// What is not ready yet, as short reasons; empty when ready.
    pub fn problems(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.database() {
            out.push("database unreachable");
        }
        if self.needs_cache && !self.cache.load(Ordering::Relaxed) {
            out.push("cache not preloaded");
        }
        if self.needs_consumer && !self.consumer.load(Ordering::Relaxed) {
            out.push("consumer not running");
        }
        out
    }
}
