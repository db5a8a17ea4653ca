//! Operations endpoints: liveness, readiness, Prometheus metrics.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::{AppState, RenderMetrics};

/// The probes, and `/metrics` unless it is served on an address of its own.
pub fn routes(cfg: &mut web::ServiceConfig, with_metrics: bool) {
    cfg.service(super::readable("/healthz", healthz))
        .service(super::readable("/readyz", readyz));
    if with_metrics {
        metrics_route(cfg);
    }
}

/// `/metrics` alone, for the main server or the one on `METRICS_ADDR`.
pub fn metrics_route(cfg: &mut web::ServiceConfig) {
    cfg.service(super::readable("/metrics", metrics));
}

/// Alive: the process answers, and in an ingest role its consumer has not died.
async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    if state.readiness.alive() {
        HttpResponse::Ok().json(json!({"status": "ok"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({"status": "dead", "reasons": ["consumer died"]}))
    }
}

/// Ready: database reachable, cache preloaded, consumer running (each where it applies).
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let problems = state.readiness.problems();
    if problems.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "not_ready", "reasons": problems}))
    }
}

async fn metrics(render: web::Data<RenderMetrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(render.get_ref()())
}
