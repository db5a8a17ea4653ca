//! The web UI: the search page, the server-rendered order page (for browsers without
//! script), the HTML 404, and the static files, all compiled into the binary.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tera::{Context, Tera};

use super::AppState;
use super::errors::ApiError;
use crate::adapters::auth::Budget;
use crate::domain::access::Via;
use crate::domain::browse::{BrowseError, OrderSummary, PageRequest, Search};
use crate::domain::guard::Refusal;
use crate::domain::order::{Order, OrderUid};

/// The templates, parsed once. Tera escapes every value in `.html` templates. `open`:
/// anonymous access is on, and every page says so (`open_access()` in the templates);
/// `sign_in`: people may sign in (`sign_in()`: the header offers it).
pub fn templates(open: bool, sign_in: bool) -> anyhow::Result<Tera> {
    let mut tera = Tera::default();
    tera.register_function(
        "open_access",
        move |_: &std::collections::HashMap<String, tera::Value>| Ok(tera::Value::Bool(open)),
    );
    tera.register_function(
        "sign_in",
        move |_: &std::collections::HashMap<String, tera::Value>| Ok(tera::Value::Bool(sign_in)),
    );
    tera.add_raw_templates([
        ("base.html", include_str!("../../../templates/base.html")),
        ("index.html", include_str!("../../../templates/index.html")),
        ("order.html", include_str!("../../../templates/order.html")),
        (
            "missing.html",
            include_str!("../../../templates/missing.html"),
        ),
        (
            "rejected.html",
            include_str!("../../../templates/rejected.html"),
        ),
        (
            "message.html",
            include_str!("../../../templates/message.html"),
        ),
        ("link.html", include_str!("../../../templates/link.html")),
        ("items.html", include_str!("../../../templates/items.html")),
        (
            "customer.html",
            include_str!("../../../templates/customer.html"),
        ),
        (
            "signed_out.html",
            include_str!("../../../templates/signed_out.html"),
        ),
    ])
    .context("the page templates do not parse")?;
    Ok(tera)
}

fn page(tera: &Tera, status: StatusCode, name: &str, context: &Context) -> HttpResponse {
    match tera.render(name, context) {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(e) => {
            tracing::error!(error = ?e, template = name, "page rendering failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain")
                .body("internal error")
        }
    }
}

pub(crate) fn page_with(
    tera: &Tera,
    status: StatusCode,
    name: &str,
    context: &Context,
    cache_control: &'static str,
) -> HttpResponse {
    let mut response = page(tera, status, name, context);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(cache_control),
    );
    response
}

pub fn message_page(tera: &Tera, status: StatusCode, heading: &str, message: &str) -> HttpResponse {
    let mut context = Context::new();
    context.insert("heading", heading);
    context.insert("message", message);
    context.insert(
        "kind",
        if status.is_server_error() || status == StatusCode::BAD_REQUEST {
            "error"
        } else {
            ""
        },
    );
    page(tera, status, "message.html", &context)
}

/// `GET /`: the newest orders (a page at a time, `before`), or those matching `q` (what a
/// search box holds; `uid` is read as `q`, for older links). Without script it is the whole
/// search; with it, the script loads these same pages in place.
pub async fn index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    super::guarded("index", render_index(req, &state)).await
}

/// The page for a request refused before its work: its status and the headers that say
/// what to do (`WWW-Authenticate`, `Retry-After`), with a page for people. A browser that
/// is not signed in, where people may sign in, is sent to sign in and then back here.
pub(crate) fn refused(req: &HttpRequest, state: &AppState, e: ApiError) -> HttpResponse {
    let tera = &state.templates;
    let unknown = matches!(e, ApiError::Unauthenticated | ApiError::InvalidToken(_))
        && req.headers().get(header::AUTHORIZATION).is_none();
    if unknown
        && state.access.auth.sign_in.is_some()
        && req.method() == actix_web::http::Method::GET
    {
        let here = match req.query_string() {
            "" => req.path().to_owned(),
            q => format!("{}?{q}", req.path()),
        };
        let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
        return HttpResponse::SeeOther()
            .insert_header((header::LOCATION, format!("/auth/login?next={next}")))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish();
    }
    let json = e.error_response();
    let heading = match e {
        ApiError::Unauthenticated | ApiError::InvalidToken(_) => "Sign in required",
        ApiError::Forbidden(_) => "Not allowed",
        ApiError::RateLimited(_) => "Too many requests",
        ApiError::NotFound => "Not found",
        ApiError::InvalidUid | ApiError::InvalidQuery(_) => "Bad request",
        _ => "Service unavailable",
    };
    let mut response = message_page(tera, json.status(), heading, &e.to_string());
    for name in [header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
        if let Some(value) = json.headers().get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// Who the pages say is signed in (nobody, for anonymous access), and the sign-out form's
/// token of a web session.
pub(crate) fn signed_in(context: &mut Context, ctx: &super::Ctx) {
    if let Some(session) = &ctx.session {
        context.insert("who", &*session.name);
        context.insert("csrf", &*session.csrf);
    } else if ctx.caller.via != Via::Anonymous {
        context.insert("who", &*ctx.caller.subject);
    }
}

async fn render_index(req: HttpRequest, state: &AppState) -> HttpResponse {
    let tera = &state.templates;
    let ctx = match super::identify(&req, state, Budget::Search).await {
        Ok(ctx) => ctx,
        Err(e) => return refused(&req, state, e),
    };
    let mut q = String::new();
    let mut page = PageRequest::default();
    let pairs = match super::api::pairs(req.query_string()) {
        Ok(pairs) => pairs,
        Err(e) => {
            return message_page(tera, StatusCode::BAD_REQUEST, "Bad request", &e.to_string());
        }
    };
    for (name, value) in pairs {
        match name.as_str() {
            "q" | "uid" => q = value.trim().to_owned(),
            "before" => page.before = Some(value),
            _ => {}
        }
    }
    let search = match Search::guess(&q) {
        Ok(search) => search,
        Err(why) => {
            return message_page(
                tera,
                StatusCode::BAD_REQUEST,
                "Cannot search for this",
                &why,
            );
        }
    };
    let live = q.is_empty() && page.before.is_none();
    let found = match state.access.guard.orders(ctx.asked(), search, page).await {
        Ok(found) => found,
        Err(Refusal::Browse(BrowseError::Invalid(why))) => {
            return message_page(tera, StatusCode::BAD_REQUEST, "Bad request", &why);
        }
        Err(Refusal::Browse(e @ BrowseError::TooBroad)) => {
            return message_page(
                tera,
                StatusCode::UNPROCESSABLE_ENTITY,
                "Too many orders match",
                &e.to_string(),
            );
        }
        Err(Refusal::Browse(BrowseError::Unavailable(_))) => return unavailable(tera),
        Err(Refusal::Browse(e)) => {
            tracing::error!(error = %e, "browse failed");
            return went_wrong(tera);
        }
        Err(e) => return refused(&req, state, e.into()),
    };
    let rows: Vec<SummaryRow> = found.items.iter().map(SummaryRow::from).collect();
    // A uid with no order may have been set aside: say why.
    let rejected = match OrderUid::parse(q.clone()) {
        Ok(uid) if rows.is_empty() => rejections(state, &ctx, uid).await,
        _ => Vec::new(),
    };
    let mut context = Context::new();
    signed_in(&mut context, &ctx);
    context.insert("q", &q);
    context.insert("rows", &rows);
    context.insert("rejected", &rejected);
    context.insert("next", &found.next);
    context.insert("live", &live);
    page_with(tera, StatusCode::OK, "index.html", &context, "no-store")
}

/// One line of a list of orders, formatted as every page formats it.
#[derive(Serialize)]
struct SummaryRow {
    uid: String,
    created: String,
    customer: String,
    name: String,
    city: String,
    amount: String,
    items: i64,
}

impl From<&OrderSummary> for SummaryRow {
    fn from(s: &OrderSummary) -> Self {
        Self {
            uid: s.order_uid.clone(),
            created: minutes(&s.date_created),
            customer: s.customer_id.clone(),
            name: s.name.clone(),
            city: s.city.clone(),
            amount: money(s.amount, &s.currency),
            items: s.items,
        }
    }
}

#[derive(Serialize)]
struct RejectedRow {
    at: String,
    reason: String,
    detail: String,
}

/// The dead-letter records of a uid never stored, newest first, as the pages show them.
async fn rejections(state: &AppState, ctx: &super::Ctx, uid: OrderUid) -> Vec<RejectedRow> {
    state
        .access
        .guard
        .rejections_of(ctx.asked(), uid, super::api::REJECTIONS_WITH_404)
        .await
        .into_iter()
        .map(|r| RejectedRow {
            at: minutes(&r.at),
            reason: r.reason,
            detail: r.detail,
        })
        .collect()
}

/// A time as every page shows it: to the minute, in UTC, the zone named.
fn minutes(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn unavailable(tera: &Tera) -> HttpResponse {
    message_page(
        tera,
        StatusCode::SERVICE_UNAVAILABLE,
        "Service unavailable",
        "The order store cannot be reached right now. Try again in a moment.",
    )
}

fn went_wrong(tera: &Tera) -> HttpResponse {
    message_page(
        tera,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The order could not be shown.",
    )
}

#[derive(Serialize)]
struct ItemRow {
    name: String,
    brand: String,
    size: String,
    price: String,
    sale: i64,
    total: String,
}

/// An amount with as many decimals as its currency has minor units (ISO 4217): `1817` in
/// `USD` as `1,817.00 USD`, in `JPY` as `1,817 JPY`, in `KWD` as `1,817.000 KWD`.
fn money(amount: impl Into<i128>, currency: &str) -> String {
    let amount: i128 = amount.into();
    let decimals = iso_currency::Currency::from_code(currency)
        .and_then(|c| c.exponent())
        .unwrap_or(0);
    let fraction = if decimals == 0 {
        String::new()
    } else {
        format!(".{}", "0".repeat(usize::from(decimals)))
    };
    let digits = amount.unsigned_abs().to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if amount < 0 { "-" } else { "" };
    format!("{sign}{grouped}{fraction} {currency}")
}

pub async fn order_page(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    super::guarded("order_page", render_order(req, path.into_inner(), &state)).await
}

async fn render_order(req: HttpRequest, uid: String, state: &AppState) -> HttpResponse {
    let tera = &state.templates;
    let ctx = match super::identify(&req, state, Budget::Lookup).await {
        Ok(ctx) => ctx,
        Err(e) => return refused(&req, state, e),
    };
    let Ok(uid) = OrderUid::parse(uid) else {
        return message_page(
            tera,
            StatusCode::BAD_REQUEST,
            "Invalid uid",
            &ApiError::InvalidUid.to_string(),
        );
    };
    let shown = match state
        .access
        .guard
        .order(ctx.asked(), &uid)
        .await
        .map_err(ApiError::from)
    {
        Ok(shown) => shown,
        Err(ApiError::NotFound) => {
            let rejected = rejections(state, &ctx, uid.clone()).await;
            let mut context = Context::new();
            signed_in(&mut context, &ctx);
            context.insert("uid", uid.as_str());
            context.insert("rejected", &rejected);
            return page(tera, StatusCode::NOT_FOUND, "missing.html", &context);
        }
        Err(ApiError::Unavailable) => return unavailable(tera),
        Err(
            e @ (ApiError::Forbidden(_)
            | ApiError::AuditUnavailable
            | ApiError::Unauthenticated
            | ApiError::InvalidToken(_)),
        ) => return refused(&req, state, e),
        Err(_) => return went_wrong(tera),
    };
    let order: Order = match shown.order() {
        Ok(order) => order,
        Err(e) => {
            tracing::error!(%uid, error = %e, "cached order does not decode");
            return went_wrong(tera);
        }
    };
    let mut context = order_context(&order);
    signed_in(&mut context, &ctx);
    context.insert("masked", &shown.masked);
    context.insert("uid", uid.as_str());
    context.insert(
        "may_link",
        &(state.access.links.is_some()
            && ctx.caller.may(crate::domain::access::Scope::LinksCreate)),
    );
    let mut response = page(tera, StatusCode::OK, "order.html", &context);
    response.headers_mut().insert(
        header::ETAG,
        header::HeaderValue::from_str(&format!("\"{}\"", shown.etag))
            .expect("hex is a valid header"),
    );
    // A page of personal data is never kept by the browser.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// What the order's pages show of it, formatted: money in its currency, times in UTC.
pub(crate) fn order_context(order: &Order) -> Context {
    let cur = order.payment.currency.clone();
    let items: Vec<ItemRow> = order
        .items
        .iter()
        .map(|it| ItemRow {
            name: it.name.clone(),
            brand: it.brand.clone(),
            size: it.size.clone(),
            price: money(it.price, &cur),
            sale: it.sale,
            total: money(it.total_price, &cur),
        })
        .collect();
    let p = &order.payment;
    let mut context = Context::new();
    context.insert("created", &minutes(&order.date_created));
    context.insert(
        "paid",
        &DateTime::from_timestamp(p.payment_dt, 0).map_or_else(
            || p.payment_dt.to_string(),
            |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ),
    );
    context.insert(
        "money",
        &serde_json::json!({
            "amount": money(p.amount, &cur),
            "goods_total": money(p.goods_total, &cur),
            "delivery_cost": money(p.delivery_cost, &cur),
            "custom_fee": money(p.custom_fee, &cur),
            // i128: item totals at the top of i64 must add up, not overflow.
            "items_sum": money(order.items.iter().map(|i| i128::from(i.total_price)).sum::<i128>(), &cur),
        }),
    );
    context.insert("items", &items);
    context.insert("o", order);
    context
}

const APP_JS: &str = include_str!("../../../static/app.js");
const APP_CSS: &str = include_str!("../../../static/app.css");
const FAVICON: &str = include_str!("../../../static/favicon.svg");
pub const OPENAPI: &str = include_str!("../../../static/openapi.json");

pub async fn static_file(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (body, content_type) = match path.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "favicon.svg" => (FAVICON, "image/svg+xml"),
        _ => return Err(ApiError::NoRoute),
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(body))
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

#[cfg(test)]
mod tests {
    #[test]
    fn money_groups_thousands() {
        assert_eq!(super::money(1817, "USD"), "1,817.00 USD");
        assert_eq!(super::money(0, "EUR"), "0.00 EUR");
        assert_eq!(super::money(-1234567, "RUB"), "-1,234,567.00 RUB");
        assert_eq!(super::money(1817, "JPY"), "1,817 JPY");
        assert_eq!(super::money(1817, "KWD"), "1,817.000 KWD");
        assert_eq!(super::money(5, "XAU"), "5 XAU", "no minor unit");
        assert_eq!(
            super::money(2 * i128::from(i64::MAX), "USD"),
            "18,446,744,073,709,551,614.00 USD"
        );
    }
}
