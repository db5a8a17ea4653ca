//! The HTTP adapter: actix-web hidden behind [`start`], which takes plain state and returns a
//! handle to stop it.

mod ops;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::domain::health::Readiness;

/// What the handlers share.
pub struct AppState {
    pub readiness: Arc<Readiness>,
    pub metrics: PrometheusHandle,
}

/// A running server: its address (useful with port 0) and the handle that stops it.
pub struct Running {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub fn start(addr: SocketAddr, state: AppState) -> anyhow::Result<Running> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(ops::routes))
        .workers(2)
        .client_request_timeout(Duration::from_secs(5))
        .keep_alive(Duration::from_secs(30))
        // Shutdown is ours to order (stop ingest first, then drain HTTP).
        .disable_signals()
        .shutdown_timeout(5)
        .bind(addr)
        .with_context(|| format!("cannot listen on {addr} (HTTP_ADDR)"))?;
    let addr = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let handle = server.handle();
    Ok(Running {
        addr,
        handle,
        task: tokio::spawn(server),
    })
}
