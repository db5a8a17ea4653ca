//! `order-svc healthcheck`: one GET to a running `serve`, for container health checks in an
//! image that has neither a shell nor curl. Exit 0 on a 200, 1 on anything else.

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::settings::HealthcheckSettings;

pub async fn run(settings: HealthcheckSettings) -> anyhow::Result<()> {
    let HealthcheckSettings {
        addr,
        path,
        timeout,
    } = settings;
    let status = tokio::time::timeout(timeout, status_of(addr, path))
        .await
        .with_context(|| format!("http://{addr}{path} did not answer within {timeout:?}"))??;
    if status != 200 {
        bail!("http://{addr}{path} answered {status}");
    }
    println!("http://{addr}{path}: {status}");
    Ok(())
}

/// The status code of `GET path` (HTTP/1.1, one request, the connection closed after it).
async fn status_of(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    // The status line is all we read: `HTTP/1.1 200 OK`.
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        let n = stream.read(&mut head[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = String::from_utf8_lossy(&head[..len]);
    line.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("http://{addr}{path} did not answer HTTP"))
}
