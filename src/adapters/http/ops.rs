//! Operations endpoints: liveness, readiness, Prometheus metrics.

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use super::AppState;
use crate::domain::metrics as m;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}

/// Alive: the process answers.
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready: database reachable, cache preloaded, consumer running (each where it applies).
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let problems = state.readiness.problems();
    ::metrics::gauge!(m::READY).set(if problems.is_empty() { 1.0 } else { 0.0 });
    if problems.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "not_ready", "reasons": problems}))
    }
}

#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
