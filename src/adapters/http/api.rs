//! `GET /order/{order_uid}`: the order as it arrived, with `ETag`, `X-Cache` and 304s.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use super::AppState;
use super::errors::ApiError;
use crate::domain::lookup::Source;
use crate::domain::order::OrderUid;

pub const ORDER_CACHE_CONTROL: &str = "private, max-age=86400, immutable";

pub async fn get_order(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    super::guarded("get_order", async {
        answer(&req, path.into_inner(), &state)
            .await
            .unwrap_or_else(|e| e.error_response())
    })
    .await
}

async fn answer(
    req: &HttpRequest,
    uid: String,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let uid = OrderUid::parse(uid).map_err(|_| ApiError::InvalidUid)?;
    let (view, source) = state.lookup.find(&uid).await?;
    let etag = format!("\"{}\"", view.etag);
    let x_cache = match source {
        Source::Cache => "hit",
        Source::Store => "miss",
    };
    let not_modified = if_none_match(req, &view.etag);
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag))
        // Orders never change once stored, but they hold personal data: browsers may keep
        // them, shared caches (proxies, CDNs) must not.
        .insert_header((header::CACHE_CONTROL, ORDER_CACHE_CONTROL))
        .insert_header(("X-Cache", x_cache));
    if not_modified {
        return Ok(response.finish());
    }
    Ok(response.content_type("application/json").body(view.json))
}

/// Whether `If-None-Match` names this entity tag (or `*`); weak tags compare equal.
fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == etag)
        })
}
