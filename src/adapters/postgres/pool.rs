//! Connections to PostgreSQL: the pool, the settings that notice a silent server, the
//! connection guard, the timing and the translation of driver errors into the ports' errors.

use std::time::{Duration, Instant};

use anyhow::Context;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use metrics::{counter, gauge, histogram};
use tokio_postgres::error::SqlState;
use tracing::Instrument;

use super::metrics::{
    ConnState, DB_ERRORS, DB_QUERY, ErrorKind, Op, POOL_CONNECTIONS, POOL_MAX, POOL_WAITING,
    PoolName,
};
use super::url::DatabaseUrl;
use crate::domain::metrics::Label;
use crate::domain::ports::StoreError;

/// Orders in PostgreSQL, through a connection pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Longest wait for any call, past which the server counts as unavailable.
    call_timeout: Duration,
}

/// Longest wait for one lookup (`find`, `ping`): a person is waiting.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The `statement_timeout` of the connections lookups use: the server stops a statement
/// before the caller stops waiting for it, so a lookup given up on does not go on holding a
/// backend (and its locks) until the ingest's longer timeout.
pub const LOOKUP_STATEMENT_TIMEOUT: Duration = Duration::from_millis(4_500);

/// TCP settings that notice a server that went silent: keepalive probes on idle
/// connections, and a limit on how long sent data may stay unacknowledged. And two server
/// settings, each unless the URL's `options` set it: `statement_timeout`, and `jit=off`
/// (our statements are short; on a table not yet analyzed the planner's estimates made JIT
/// compile every preload page, 85 ms and more each, measured with EXPLAIN ANALYZE).
fn session_settings(config: &mut tokio_postgres::Config, statement_timeout: Duration) {
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(15));
    let mut options = config.get_options().unwrap_or_default().to_owned();
    if !options.contains("statement_timeout") {
        let ms = statement_timeout.as_millis();
        options = format!("{options} -c statement_timeout={ms}");
    }
    if !options.contains("jit") {
        options = format!("{options} -c jit=off");
    }
    config.options(options.trim_start());
}

/// A pool for `url`, `size` connections at most, whose statements may run for
/// `statement_timeout`. Connecting is lazy: the first query (or [`PgStore::ping`]) finds out
/// whether the server answers.
pub fn pool(url: &DatabaseUrl, size: usize, statement_timeout: Duration) -> anyhow::Result<Pool> {
    let mut config = url.config().clone();
    session_settings(&mut config, statement_timeout);
    let manager = Manager::from_config(
        config,
        url.connector()?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        // A dead server must fail calls quickly so ingest can back off and report not ready.
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .context("cannot build the connection pool")
}

/// A pooled connection that goes back to the pool only when the call using it said so
/// ([`Conn::keep`], on success). One dropped mid-call, because the call timed out or
/// failed, may sit on a hung or broken socket: it is closed instead of handed to the next
/// caller, who would hang on it in turn.
pub(crate) struct Conn {
    object: Option<deadpool_postgres::Object>,
    keep: bool,
}

impl Conn {
    pub(crate) fn keep(&mut self) {
        self.keep = true;
    }
}

impl std::ops::Deref for Conn {
    type Target = deadpool_postgres::Object;

    fn deref(&self) -> &Self::Target {
        self.object.as_ref().expect("present until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.keep
            && let Some(object) = self.object.take()
        {
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

impl PgStore {
    /// A connection from the pool, see [`Conn`].
    pub(crate) async fn conn(&self) -> Result<Conn, StoreError> {
        let object = self.pool.get().await.map_err(pool_error)?;
        Ok(Conn {
            object: Some(object),
            keep: false,
        })
    }

    /// A store on `pool`, whose connections were made with this `statement_timeout`: a
    /// call that has not answered 5 s after it counts as unavailable (the server stopped
    /// answering without closing the connection).
    pub fn new(pool: Pool, statement_timeout: Duration) -> Self {
        Self {
            pool,
            call_timeout: statement_timeout + Duration::from_secs(5),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Sets the pool's gauges (size, in use, waiting) to what they are now, under `name`.
    pub fn report_pool(&self, name: PoolName) {
        let status = self.pool.status();
        let pool = name.as_str();
        let in_use = status.size.saturating_sub(status.available);
        gauge!(POOL_CONNECTIONS, "pool" => pool, "state" => ConnState::InUse.as_str())
            .set(in_use as f64);
        gauge!(POOL_CONNECTIONS, "pool" => pool, "state" => ConnState::Idle.as_str())
            .set(status.available as f64);
        gauge!(POOL_MAX, "pool" => pool).set(status.max_size as f64);
        gauge!(POOL_WAITING, "pool" => pool).set(status.waiting as f64);
    }

    /// Whether the server answers a trivial query now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.timed(Op::Ping, async {
            let mut client = self.conn().await?;
            client.simple_query("SELECT 1").await.map_err(db_error)?;
            client.keep();
            Ok(())
        })
        .await
    }

    pub(crate) async fn timed<T, F>(&self, op: Op, f: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let started = Instant::now();
        // The last guard against a server that stops answering without closing (a hung
        // process, packets dropped): the statement timeout and the TCP user timeout end most
        // such calls first, but neither sees a peer whose kernel still acknowledges.
        let limit = match op {
            op if op.is_lookup() => LOOKUP_TIMEOUT.min(self.call_timeout),
            _ => self.call_timeout,
        };
        // A span per call, but the readiness ping's (one a second, a trace of its own each).
        let span = match op {
            Op::Ping => tracing::Span::none(),
            _ if !crate::adapters::trace::tracing_enabled() => tracing::Span::none(),
            _ => tracing::info_span!(
                "db",
                otel.name = op.as_str(),
                otel.kind = "client",
                db.system = "postgresql",
                db.operation.name = op.as_str(),
            ),
        };
        let result = match tokio::time::timeout(limit, f).instrument(span).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(anyhow::anyhow!(
                "no answer from the database within {limit:?}"
            ))),
        };
        histogram!(DB_QUERY, "op" => op.as_str()).record(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            let kind = ErrorKind::of(e).as_str();
            counter!(DB_ERRORS, "op" => op.as_str(), "kind" => kind).increment(1);
        }
        result
    }
}

/// Driver errors become the port's errors here and go no further.
///
/// Integrity (23), data (22) and program-limit (54) errors depend on the data: the same
/// data fails the same way again, so ingest sets the order aside. Every other class is about
/// the server, the connection or our statements, and is retried (counted in
/// `order_svc_ingest_retries_total` and `order_svc_db_errors_total`, which the alert rules watch).
pub(crate) fn db_error(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(code)
            if ["22", "23", "54"]
                .iter()
                .any(|class| code.code().starts_with(class)) =>
        {
            StoreError::Refused(
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
            )
        }
        Some(code)
            if code.code().starts_with("08")
                || code.code().starts_with("53")
                || code.code().starts_with("57")
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            StoreError::Unavailable(e.into())
        }
        Some(_) => StoreError::Unknown(e.into()),
        // No SQLSTATE: the connection itself failed.
        None => StoreError::Unavailable(e.into()),
    }
}

pub(crate) fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => db_error(e),
        other => StoreError::Unavailable(anyhow::anyhow!("no database connection: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `db_error` makes of the error PostgreSQL itself gives each statement (the
    /// server of TEST_DATABASE_URL; nothing is written but a temporary table).
    #[tokio::test]
    async fn the_data_refused_is_told_from_a_database_that_may_recover() {
        let url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL of TEST_DATABASE_URL");
        tokio::spawn(connection);
        client
            .batch_execute("CREATE TEMP TABLE t (k int PRIMARY KEY); INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        let kind = |e: StoreError| match e {
            StoreError::Refused(_) => "refused",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Unreadable { .. } => "unreadable",
            StoreError::Unknown(_) => "unknown",
        };
        for (sql, expected) in [
            ("SELECT 1 / 0", "refused"),                   // 22012
            ("SELECT 'x'::int", "refused"),                // 22P02
            ("INSERT INTO t VALUES (1)", "refused"),       // 23505
            ("INSERT INTO t VALUES (NULL)", "refused"),    // 23502
            ("SELECT repeat('x', 1073741824)", "refused"), // 54000
            ("SELECT * FROM no_such_table", "unknown"),    // 42P01
            (
                "SET LOCAL statement_timeout = 1; SELECT pg_sleep(1)",
                "unavailable",
            ), // 57014
        ] {
            let e = client
                .batch_execute(&format!("BEGIN; {sql}; COMMIT"))
                .await
                .expect_err(sql);
            client.batch_execute("ROLLBACK").await.unwrap();
            assert_eq!(kind(db_error(e)), expected, "{sql}");
        }
        drop(client);
        // No SQLSTATE at all: the connection is gone.
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(connection);
        task.abort();
        let _ = task.await;
        let e = client.simple_query("SELECT 1").await.expect_err("closed");
        assert_eq!(kind(db_error(e)), "unavailable");
    }
}
