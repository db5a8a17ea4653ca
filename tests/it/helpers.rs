//! Shared test plumbing: a database of each test's own, and the binary under test.

use std::process::{Command, Output};

use tokio_postgres::{Client, NoTls};

/// A server-level URL whose database the tests may use to create their own.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `host:port` of a PostgreSQL URL (5432 when the URL names no port).
pub fn host_port(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = after_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default();
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

/// `host:port` of the tests' PostgreSQL, as written in TEST_DATABASE_URL.
pub fn pg_host_port() -> String {
    host_port(&admin_url())
}

/// Runs `order-svc migrate` on `url`, which must succeed.
pub fn migrate(url: &str) {
    let (out, _, stderr) = run(order_svc().arg("migrate").env("DATABASE_URL", url));
    assert!(out.status.success(), "{stderr}");
}

/// A migrated database of the test's own.
pub fn migrated_db() -> TestDb {
    let db = TestDb::unique();
    migrate(&db.url);
    db
}

/// The tests' PostgreSQL as a socket address, for proxies put in front of it.
pub fn pg_addr() -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    pg_host_port()
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .expect("TEST_DATABASE_URL names a reachable host")
}

/// A database name no other test uses. It does not exist until something creates it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

/// The advisory-lock class of test runs' leases ("ordr" in ASCII).
pub const LEASE_CLASS: i32 = 0x6f72_6472;

/// This test process's lease on the databases it makes: a session of its own holds
/// `pg_advisory_lock(LEASE_CLASS, key)` for as long as the process lives, and every database
/// it makes is named `itl_<key>_...`. `just test` (scripts/test-services.sh) drops such a
/// database only when it can take that lock itself: its run is over. Unlike a pid, the lock
/// means the same whichever user or PID namespace the other run is in.
pub fn lease() -> i32 {
    static KEY: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| {
        let key = (rand::random::<u32>() >> 1) as i32;
        let (taken, told) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the lease");
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&admin_url(), NoTls)
                    .await
                    .unwrap_or_else(|e| panic!("cannot connect for the test run's lease: {e}"));
                let session = tokio::spawn(connection);
                client
                    .execute("SELECT pg_advisory_lock($1, $2)", &[&LEASE_CLASS, &key])
                    .await
                    .expect("the test run's lease");
                taken.send(()).expect("the lease is awaited");
                // Held until the process ends (or the server goes away).
                let _ = session.await;
                drop(client);
            });
        });
        told.recv_timeout(std::time::Duration::from_secs(30))
            .expect("the test run's lease taken within 30 s");
        key
    })
}

impl TestDb {
    pub fn unique() -> Self {
        // The run's lease in the name lets `just test` drop the databases of runs that are
        // over, and only those, so two runs on one machine leave each other alone.
        let name = format!("itl_{}_{}", lease(), uuid::Uuid::new_v4().simple());
        let admin = admin_url();
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Self { name, url }
    }

    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }
}

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to {url}: {e} (is PostgreSQL running? `just test-services`)")
        });
    tokio::spawn(connection);
    client
}

/// The binary under test: `ORDER_SVC_BIN`, the run's own copy that `just test` makes
/// (scripts/test.sh), else the one cargo built for this test executable.
pub fn binary() -> std::ffi::OsString {
    std::env::var_os("ORDER_SVC_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_order-svc").into())
}

/// The binary under test, with a clean environment (only `PATH` and `HOME` are kept, so no
/// setting of the developer's shell reaches it), run from an empty directory of its own so
/// that no `.env` can either.
pub fn order_svc() -> Command {
    let mut cmd = Command::new(binary());
    let cwd = std::env::temp_dir().join(format!("order-svc-it-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&cwd).expect("a working directory for the binary");
    cmd.current_dir(cwd).env_clear();
    for key in ["PATH", "HOME"] {
        if let Ok(value) = std::env::var(key) {
            cmd.env(key, value);
        }
    }
    cmd
}

/// Runs and returns stdout and stderr as text, with the exit status.
pub fn run(cmd: &mut Command) -> (Output, String, String) {
    let output = cmd.output().expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// A port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it returns `Some`, or panics after `secs` naming `what`.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

pub async fn count(client: &Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// A response: status, headers (lower-case names) and body.
pub type Reply = (u16, Vec<(String, String)>, Vec<u8>);

pub fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply
        .1
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A minimal HTTP/1.1 GET.
pub async fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Reply> {
    http(port, "GET", path, headers).await
}

/// A minimal HTTP/1.1 request without a body.
pub async fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<Reply> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
    {
        body = dechunk(&body);
    }
    Some((status, headers, body))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 4 + size..];
    }
    out
}

/// The port of serve's "serving HTTP" log line (`addr=127.0.0.1:PORT`, colours or not).
fn bound_port(log: &str) -> Option<u16> {
    logged_port(log, "serving HTTP")
}

/// The port of the first log line holding `marker` and an address on 127.0.0.1.
pub fn logged_port(log: &str, marker: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let at = line.find("127.0.0.1:")? + "127.0.0.1:".len();
    line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// `order-svc serve` as a child process, killed when dropped.
pub struct Serve {
    pub child: std::process::Child,
    pub http_port: u16,
    pub log: std::path::PathBuf,
}

impl Serve {
    /// Starts `serve` with these settings (DATABASE_URL, KAFKA_*, ...), listening on a port
    /// the system picks (port 0), which is read back from its log: no race with another
    /// process for a port found free a moment earlier.
    pub async fn start(env: &[(&str, String)]) -> Self {
        let log = std::env::temp_dir().join(format!(
            "order-svc-it-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = order_svc();
        cmd.arg("serve")
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info,order_svc=debug")
            // Tests of other features reach every route without credentials and without
            // budgets; the access tests (tests/it/access.rs) set their own.
            .env("AUTH_ANONYMOUS_SCOPES", "all")
            .env("RATE_LOOKUPS_PER_SECOND", "0")
            // The tests tell a hit from a miss by X-Cache; off by default (it tells anyone
            // whether an order was read recently).
            .env("HTTP_DEBUG_HEADERS", "true")
            // The tests' own requests stand for a trusted proxy's (request ids, traces).
            .env("HTTP_TRUSTED_PROXIES", "127.0.0.1")
            .env("RATE_SEARCHES_PER_SECOND", "0")
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("serve starts");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let http_port = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(port) = bound_port(&text) {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("serve exited ({status}) before listening:\n{text}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "serve did not listen within 60 s:\n{text}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        Self {
            child,
            http_port,
            log,
        }
    }

    pub async fn status(&self, path: &str) -> Option<u16> {
        http_get(self.http_port, path, &[]).await.map(|(s, _, _)| s)
    }

    /// Ready, and the cache preload done where there is one: the state the tests start from
    /// (readiness itself does not wait for the preload).
    pub async fn wait_ready(&self) {
        wait_for(60, "serve to report ready and its cache warm", || async {
            let (status, _, body) = http_get(self.http_port, "/readyz", &[]).await?;
            let body: serde_json::Value = serde_json::from_slice(&body).ok()?;
            (status == 200 && body["cache"] != "warming").then_some(())
        })
        .await;
    }

    /// A series' value from /metrics. A missing series fails the test: a renamed metric
    /// must not pass for one that is 0 (serve exports its counters at 0 from the start).
    /// A series' value, 0 when it has none yet (a histogram before its first sample).
    pub async fn metric_or_zero(&self, series: &str) -> f64 {
        let (_, _, body) = http_get(self.http_port, "/metrics", &[])
            .await
            .expect("metrics answer");
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .filter(|rest| rest.starts_with(' '))
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    pub async fn metric(&self, series: &str) -> f64 {
        let (_, _, body) = http_get(self.http_port, "/metrics", &[])
            .await
            .expect("metrics answer");
        let text = String::from_utf8_lossy(&body);
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .filter(|rest| rest.starts_with(' '))
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("/metrics has no series {series}:\n{text}"))
    }

    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
