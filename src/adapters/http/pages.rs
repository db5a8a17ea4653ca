//! The web UI: the search page, the server-rendered order page (for browsers without
//! script), the HTML 404, and the static files, all compiled into the binary.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::Context as _;
use chrono::DateTime;
use serde::Serialize;
use tera::{Context, Tera};

use super::AppState;
use super::errors::ApiError;
use crate::domain::order::{Order, OrderUid};

/// The templates, parsed once. Tera escapes every value in `.html` templates.
pub fn templates() -> anyhow::Result<Tera> {
    let mut tera = Tera::default();
    tera.add_raw_templates([
        ("base.html", include_str!("../../../templates/base.html")),
        ("index.html", include_str!("../../../templates/index.html")),
        ("order.html", include_str!("../../../templates/order.html")),
        (
            "message.html",
            include_str!("../../../templates/message.html"),
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

pub async fn index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let mut context = Context::new();
    let uid =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("uid").cloned());
    context.insert("uid", &uid);
    page(&state.templates, StatusCode::OK, "index.html", &context)
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

/// `1817` in `USD` as `1,817 USD`.
fn money(amount: impl Into<i128>, currency: &str) -> String {
    let amount: i128 = amount.into();
    let digits = amount.unsigned_abs().to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if amount < 0 { "-" } else { "" };
    format!("{sign}{grouped} {currency}")
}

pub async fn order_page(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    super::guarded("order_page", render_order(path.into_inner(), &state)).await
}

async fn render_order(uid: String, state: &AppState) -> HttpResponse {
    let tera = &state.templates;
    let Ok(uid) = OrderUid::parse(uid) else {
        return message_page(
            tera,
            StatusCode::BAD_REQUEST,
            "Invalid uid",
            &ApiError::InvalidUid.to_string(),
        );
    };
    let view = match state.lookup.find(&uid).await.map_err(ApiError::from) {
        Ok((view, _)) => view,
        Err(ApiError::NotFound) => {
            return message_page(
                tera,
                StatusCode::NOT_FOUND,
                "Not found",
                "No order has this uid. Check it and try again.",
            );
        }
        Err(ApiError::Unavailable) => {
            return message_page(
                tera,
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable",
                "The order store cannot be reached right now. Try again in a moment.",
            );
        }
        Err(_) => {
            return message_page(
                tera,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The order could not be shown.",
            );
        }
    };
    let order: Order = match serde_json::from_slice(&view.json) {
        Ok(order) => order,
        Err(e) => {
            tracing::error!(%uid, error = %e, "cached order does not decode");
            return message_page(
                tera,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The order could not be shown.",
            );
        }
    };
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
    context.insert("uid", uid.as_str());
    context.insert(
        "created",
        &order.date_created.format("%Y-%m-%d %H:%M UTC").to_string(),
    );
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
    context.insert("o", &order);
    let mut response = page(tera, StatusCode::OK, "order.html", &context);
    response.headers_mut().insert(
        header::ETAG,
        header::HeaderValue::from_str(&format!("\"{}\"", view.etag))
            .expect("hex is a valid header"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(super::api::ORDER_CACHE_CONTROL),
    );
    response
}

const APP_JS: &str = include_str!("../../../static/app.js");
const APP_CSS: &str = include_str!("../../../static/app.css");
pub const OPENAPI: &str = include_str!("../../../static/openapi.json");

pub async fn static_file(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (body, content_type) = match path.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
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
        assert_eq!(super::money(1817, "USD"), "1,817 USD");
        assert_eq!(super::money(0, "EUR"), "0 EUR");
        assert_eq!(super::money(-1234567, "RUB"), "-1,234,567 RUB");
        assert_eq!(
            super::money(2 * i128::from(i64::MAX), "USD"),
            "18,446,744,073,709,551,614 USD"
        );
    }
}
