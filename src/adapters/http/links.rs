//! Customer links: `GET /order/{uid}/link` (JSON) and `GET /orders/{uid}/link` (a page to
//! copy it from) make one, for a caller with `links:create`; `GET /c/{token}` opens it for
//! anyone holding it, without signing in, showing the order without personal data.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chrono::{DateTime, Utc};

use super::errors::ApiError;
use super::pages::{message_page, order_context};
use super::{AppState, Ctx};
use crate::adapters::auth::{Budget, Principal};
use crate::domain::guard::Refusal;
use crate::domain::links::{LinkRefusal, LinkSigner};
use crate::domain::order::OrderUid;

/// The signer and where customers open links (`None`: the address the link was asked at).
pub struct Links {
    pub signer: LinkSigner,
    pub base: Option<String>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Before `/order/{order_uid:.*}` and `/orders/{order_uid:.*}`, which would take them.
    cfg.service(super::readable("/order/{order_uid}/link", link_json))
        .service(super::readable("/orders/{order_uid}/link", link_page))
        .service(super::readable("/c/{token}", customer_page));
}

/// A new link to `uid` for this caller, and when it expires.
async fn make(
    req: &HttpRequest,
    state: &AppState,
    uid: String,
) -> Result<(Ctx, String, DateTime<Utc>), ApiError> {
    let Some(links) = &state.access.links else {
        return Err(ApiError::NoRoute);
    };
    let ctx = super::identify(req, state, Budget::Lookup).await?;
    let uid = OrderUid::parse(uid).map_err(|_| ApiError::InvalidUid)?;
    state.access.guard.link(ctx.asked(), &uid).await?;
    let (token, expires) = links.signer.sign(&uid, Utc::now().timestamp());
    let base = links
        .base
        .clone()
        .unwrap_or_else(|| super::sign_in::origin(req));
    let expires = DateTime::from_timestamp(expires, 0).unwrap_or_default();
    Ok((ctx, format!("{base}/c/{token}"), expires))
}

async fn link_json(
    req: HttpRequest,
    uid: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    match make(&req, &state, uid.into_inner()).await {
        Ok((_, url, expires)) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({"url": url, "expires_at": expires})),
        Err(e) => e.error_response(),
    }
}

async fn link_page(
    req: HttpRequest,
    uid: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let uid = uid.into_inner();
    match make(&req, &state, uid.clone()).await {
        Ok((ctx, url, expires)) => {
            let mut context = tera::Context::new();
            super::pages::signed_in(&mut context, &ctx);
            context.insert("uid", &uid);
            context.insert("url", &url);
            context.insert("expires", &expires.format("%Y-%m-%d %H:%M UTC").to_string());
            super::pages::page_with(
                &state.templates,
                StatusCode::OK,
                "link.html",
                &context,
                "no-store",
            )
        }
        Err(e) => super::pages::refused(&req, &state, e),
    }
}

/// `GET /c/{token}`: the order, for whoever holds a valid link; the same page for an
/// unknown order as for a link that is not ours, so a link tells nothing it did not sign.
async fn customer_page(
    req: HttpRequest,
    token: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let tera = &state.templates;
    let Some(links) = &state.access.links else {
        return super::not_found(req, state).await;
    };
    let peer = req.peer_addr().map(|a| a.ip());
    if let Err(wait) = state
        .access
        .limits
        .check(Budget::Lookup, || Principal::Address(peer))
    {
        return ApiError::RateLimited(wait.as_secs().max(1)).error_response();
    }
    let gone = |status, heading: &str, text: &str| {
        let mut response = message_page(tera, status, heading, text);
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        response
    };
    // The same answer for a link not ours as for an order not stored.
    let not_valid = || {
        gone(
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "Check that the whole link was copied, or ask the shop's support for a new one.",
        )
    };
    let uid = match links.signer.verify(&token, Utc::now().timestamp()) {
        Ok(uid) => uid,
        Err(LinkRefusal::Expired) => {
            return gone(
                StatusCode::GONE,
                "This link has expired",
                "Ask the shop's support for a new one.",
            );
        }
        Err(LinkRefusal::Invalid) => return not_valid(),
    };
    let order = match state.access.guard.for_customer(&uid).await {
        Ok(order) => order,
        Err(Refusal::Lookup(crate::domain::lookup::LookupError::NotFound)) => return not_valid(),
        Err(e) => {
            tracing::warn!(error = %e, "a customer link's order cannot be read");
            return gone(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "The order cannot be shown right now.",
            );
        }
    };
    let context = order_context(&order);
    let mut response =
        super::pages::page_with(tera, StatusCode::OK, "customer.html", &context, "no-store");
    response.headers_mut().insert(
        header::HeaderName::from_static("x-robots-tag"),
        header::HeaderValue::from_static("noindex, nofollow"),
    );
    response
}
