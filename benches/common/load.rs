//! The load the HTTP benchmarks make: keep-alive HTTP/1.1 connections, a closed loop for the
//! most requests per second, and a wrk2-style fixed rate whose latencies run from each
//! request's scheduled start.

#![allow(dead_code)] // each benchmark uses a part

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The value of one series in a Prometheus text exposition, or 0.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// The body of a 200 answer to GET `path`, or None.
pub async fn get_text(addr: SocketAddr, path: &str) -> Option<String> {
    let mut conn = Conn::open(addr).await.ok()?;
    let (status, body) = conn.get(path).await.ok()?;
    (status == 200).then(|| String::from_utf8_lossy(&body).into_owned())
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    line: String,
    body: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::with_capacity(16 * 1024, stream),
            line: String::new(),
            body: Vec::new(),
        })
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
        self.reader.get_mut().write_all(request.as_bytes()).await?;
        self.line.clear();
        self.reader.read_line(&mut self.line).await?;
        let status: u16 = self
            .line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("bad status line {:?}", self.line))?;
        let mut length = 0usize;
        loop {
            self.line.clear();
            self.reader.read_line(&mut self.line).await?;
            let line = self.line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse()?;
            }
        }
        self.body.resize(length, 0);
        self.reader.read_exact(&mut self.body).await?;
        Ok((status, std::mem::take(&mut self.body)))
    }
}

/// As many requests as `connections` connections can make for `duration`: requests/s.
pub async fn closed_loop(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    paths: &dyn Fn(u64) -> String,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut conn = Conn::open(addr).await?;
        let paths: Vec<String> = (0..1024).map(|i| paths((c * 1024 + i) as u64)).collect();
        tasks.push(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let (status, _) = conn.get(&paths[done as usize % paths.len()]).await?;
                anyhow::ensure!(status == 200, "status {status}");
                done += 1;
            }
            Ok::<u64, anyhow::Error>(done)
        });
    }
    let started = Instant::now();
    let total: u64 = futures::future::try_join_all(tasks)
        .await?
        .into_iter()
        .sum();
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// `rate` requests/s spread over the connections for `duration`. Each latency runs from the
/// request's scheduled time, so a stall shows in the percentiles instead of hiding.
pub async fn fixed_rate(
    addr: SocketAddr,
    connections: usize,
    rate: u64,
    duration: Duration,
    paths: &dyn Fn(u64) -> String,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let per_conn = rate as f64 / connections as f64;
    let interval = Duration::from_secs_f64(1.0 / per_conn);
    let count = (per_conn * duration.as_secs_f64()) as u64;
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut conn = Conn::open(addr).await?;
        // Stagger the connections so their schedules interleave.
        let offset = interval.mul_f64(c as f64 / connections as f64);
        tasks.push(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = 0u64;
            let mut previous_done = start;
            for i in 0..count {
                // Made when due, not before: a 30-minute soak would hold millions of paths.
                let path = paths(c as u64 * count + i);
                let scheduled = start + offset + interval.mul_f64(i as f64);
                tokio::time::sleep_until(scheduled).await;
                // A request held back by the previous answer counts from its schedule; one
                // sent late only because our 1 ms timer woke late counts from its sending.
                let from = if previous_done > scheduled {
                    scheduled
                } else {
                    tokio::time::Instant::now()
                };
                match conn.get(&path).await {
                    Ok((200, _)) => {}
                    _ => errors += 1,
                }
                previous_done = tokio::time::Instant::now();
                h.record((previous_done - from).as_micros().max(1) as u64)?;
            }
            Ok::<_, anyhow::Error>((h, errors))
        });
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for (h, e) in futures::future::try_join_all(tasks).await? {
        total.add(h)?;
        errors += e;
    }
    Ok((total, errors))
}
