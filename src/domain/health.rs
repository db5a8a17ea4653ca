//! Readiness: what must hold before the service takes traffic, set by the parts that know,
//! and published as the `order_svc_service_ready` gauge here, whenever it changes, and nowhere else.

use std::sync::atomic::{AtomicBool, Ordering};

/// Each flag starts false; the part that owns it sets it. A part the service does not run
/// (the consumer in the `api` role, say) is not required.
///
/// The cache preload is not a condition: while it runs, lookups are answered from the
/// database (correct, only slower), so the service is ready as soon as the database answers.
/// Whether the cache is still warming is reported beside readiness, not in it.
#[derive(Debug)]
pub struct Readiness {
    database: AtomicBool,
    cache: AtomicBool,
    consumer: AtomicBool,
    consumer_failed: AtomicBool,
    warms_cache: bool,
    needs_consumer: bool,
}

impl Readiness {
    /// Readiness of a process that preloads a cache (an API role) and/or needs a running
    /// consumer (an ingest role).
    pub fn new(warms_cache: bool, needs_consumer: bool) -> Self {
        Self {
            database: AtomicBool::new(false),
            cache: AtomicBool::new(false),
            consumer: AtomicBool::new(false),
            consumer_failed: AtomicBool::new(false),
            warms_cache,
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

    /// Whether the cache preload still runs (lookups of orders it has not reached yet go to
    /// the database). False where there is no cache to warm.
    pub fn cache_warming(&self) -> bool {
        self.warms_cache && !self.cache.load(Ordering::Relaxed)
    }

    /// Whether this process has a cache that the preload fills.
    pub fn warms_cache(&self) -> bool {
        self.warms_cache
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
        if self.needs_consumer && !self.consumer.load(Ordering::Relaxed) {
            out.push("consumer not running");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn a_warming_cache_does_not_keep_the_service_from_being_ready() {
        let r = Readiness::new(true, true);
        assert_eq!(
            r.problems(),
            ["database unreachable", "consumer not running"]
        );
        r.set_database(true);
        r.set_consumer(true);
        assert!(r.problems().is_empty(), "ready while the preload runs");
        assert!(r.cache_warming());
        r.set_cache_warmed();
        assert!(!r.cache_warming());
        assert!(
            !Readiness::new(false, true).cache_warming(),
            "no cache, nothing warms"
        );
    }
}
