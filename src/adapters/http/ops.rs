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
    } else {
        // Documented on this port too: a JSON 404 (it lives on METRICS_ADDR), and 405 for
        // other methods, as every route.
        cfg.service(super::readable("/metrics", metrics_elsewhere));
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

/// Ready: database reachable, consumer running (where it applies). Where there is a cache,
/// `cache` says whether its preload still runs: `warming` (lookups it has not reached yet go
/// to the database) or `warm`.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let readiness = &state.readiness;
    let problems = readiness.problems();
    let mut body = if problems.is_empty() {
        json!({"status": "ready"})
    } else {
        json!({"status": "not_ready", "reasons": problems})
    };
    if readiness.warms_cache() {
        body["cache"] = json!(if readiness.cache_warming() {
            "warming"
        } else {
            "warm"
        });
    }
    if problems.is_empty() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics_elsewhere() -> HttpResponse {
    use actix_web::ResponseError;
    super::ApiError::NoRoute.error_response()
}

async fn metrics(render: web::Data<RenderMetrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(render.get_ref()())
}
