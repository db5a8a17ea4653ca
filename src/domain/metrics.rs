//! Every metric name of the service, in one place. Labels are bounded sets: outcomes,
//! reason codes, route templates, status codes, partitions.

pub const ORDERS_INGESTED: &str = "orders_ingested_total";
pub const CONSISTENCY_WARNINGS: &str = "orders_consistency_warnings_total";
pub const DEAD_LETTERS: &str = "dead_letters_total";
pub const INGEST_BATCH_SIZE: &str = "ingest_batch_size_messages";
pub const INGEST_BATCH_WRITE: &str = "ingest_batch_write_seconds";
pub const INGEST_END_TO_END: &str = "ingest_end_to_end_seconds";
pub const INGEST_RETRIES: &str = "ingest_retries_total";
pub const CONSUMER_LAG: &str = "kafka_consumer_lag_messages";
pub const DB_ERRORS: &str = "db_errors_total";
pub const DB_QUERY: &str = "db_query_seconds";
pub const PRODUCER_SENDS: &str = "producer_sends_total";
pub const CACHE_REQUESTS: &str = "cache_requests_total";
pub const CACHE_ENTRIES: &str = "cache_entries";
pub const CACHE_BYTES: &str = "cache_bytes";
pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const READY: &str = "service_ready";
pub const HEADERS_UNREADABLE: &str = "kafka_headers_unreadable_total";
pub const CONSUMER_FAILURES: &str = "kafka_consumer_failures_total";
pub const ORDERS_UNREADABLE: &str = "orders_unreadable_total";
