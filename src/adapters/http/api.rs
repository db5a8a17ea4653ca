//! The JSON API: `GET /order/{order_uid}` (the order as it arrived, with `ETag`, `X-Cache`
//! and 304s; a 404 names the uid's rejections), `GET /orders` (summaries, newest first,
//! searchable) and `GET /rejections` (dead-letter records).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use serde_json::{Map, Value, json};

use super::AppState;
use super::errors::ApiError;
use crate::adapters::auth::Budget;
use crate::domain::browse::{
    Criterion, Field, Page, PageRequest, Search, decode_rejection_cursor, encode_rejection_cursor,
};
use crate::domain::guard::AuditQuery;
use crate::domain::lookup::Source;
use crate::domain::order::OrderUid;

/// Rejections shown with a 404 at most; `GET /rejections?uid=` lists them all.
pub(super) const REJECTIONS_WITH_404: usize = 20;

/// Orders never change once stored, but they hold personal data: browsers may keep the
/// JSON (revalidated by its tag), shared caches (proxies, CDNs) must not.
pub const ORDER_CACHE_CONTROL: &str = "private, no-cache";

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
    let ctx = super::identify(req, state, Budget::Lookup).await?;
    let uid = OrderUid::parse(uid).map_err(|_| ApiError::InvalidUid)?;
    let shown = match state
        .access
        .guard
        .order(ctx.asked(), &uid)
        .await
        .map_err(ApiError::from)
    {
        Ok(shown) => shown,
        Err(ApiError::NotFound) => return Ok(not_stored(state, &ctx, uid).await),
        Err(e) => return Err(e),
    };
    let etag = format!("\"{}\"", shown.etag);
    let x_cache = match shown.source {
        Source::Cache => "hit",
        Source::Store => "miss",
    };
    let not_modified = if_none_match(req, &shown.etag);
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, ORDER_CACHE_CONTROL))
        .insert_header((header::VARY, "Authorization, Cookie"));
    if state.debug_headers {
        response.insert_header(("X-Cache", x_cache));
    }
    if not_modified {
        return Ok(response.finish());
    }
    Ok(response.content_type("application/json").body(shown.json))
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

/// The 404 of a uid never stored, with `rejected`: what the dead-letter records say of it
/// (empty when nothing was set aside, when the caller may not read them, or when they
/// cannot be read right now).
async fn not_stored(state: &AppState, ctx: &super::Ctx, uid: OrderUid) -> HttpResponse {
    let rejected: Vec<Value> = state
        .access
        .guard
        .rejections_of(ctx.asked(), uid, REJECTIONS_WITH_404)
        .await
        .into_iter()
        .map(|r| json!({"at": r.at, "reason": r.reason, "detail": r.detail}))
        .collect();
    let mut extra = Map::new();
    extra.insert("rejected".into(), Value::Array(rejected));
    ApiError::NotFound.response_with(extra)
}

/// The query's parameters as pairs, each named at most once.
pub(super) fn pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|_| ApiError::InvalidQuery("the query string does not decode".into()))?
        .into_inner();
    // A set, not a pairwise comparison: a query of thousands of names costs linear time.
    let mut seen = std::collections::HashSet::with_capacity(pairs.len());
    for (name, _) in &pairs {
        if !seen.insert(name.as_str()) {
            return Err(ApiError::InvalidQuery(format!("{name} is given twice")));
        }
    }
    Ok(pairs)
}

/// `GET /orders`'s parameters: the page (`limit`, `before`), then `q` (a search box value,
/// tried as every field it may be) or the fields by name (all must match).
pub fn order_query(query: &str) -> Result<(Search, PageRequest), ApiError> {
    let mut search = Search::default();
    let mut page = PageRequest::default();
    for (name, value) in pairs(query)? {
        match name.as_str() {
            "limit" => page.limit = Some(value),
            "before" => page.before = Some(value),
            "q" => search.any = Search::guess(&value).map_err(ApiError::InvalidQuery)?.any,
            _ => {
                let field = Field::SEARCHABLE
                    .into_iter()
                    .find(|f| f.param() == name)
                    .ok_or_else(|| ApiError::InvalidQuery(format!("unknown parameter {name}")))?;
                let value = field.normalise(&value).map_err(ApiError::InvalidQuery)?;
                search.all.push(Criterion { field, value });
            }
        }
    }
    Ok((search, page))
}

/// `GET /orders`: order summaries, newest first, a keyset page at a time.
pub async fn list_orders(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    super::guarded("list_orders", async {
        let answer = async {
            let ctx = super::identify(&req, &state, Budget::Search).await?;
            let (search, page) = order_query(req.query_string())?;
            Ok::<_, ApiError>(state.access.guard.orders(ctx.asked(), search, page).await?)
        };
        listed(answer.await)
    })
    .await
}

/// A page of a list, never kept by caches (it changes as orders arrive), or the error.
fn listed<T: serde::Serialize>(answer: Result<Page<T>, ApiError>) -> HttpResponse {
    match answer {
        Ok(page) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(page),
        Err(e) => e.error_response(),
    }
}

/// `GET /rejections`: dead-letter records, newest first; `uid` keeps those of one order.
pub async fn list_rejections(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    super::guarded("list_rejections", async {
        let answer = async {
            let ctx = super::identify(&req, &state, Budget::Search).await?;
            let mut uid = None;
            let mut page = PageRequest::default();
            for (name, value) in pairs(req.query_string())? {
                match name.as_str() {
                    "limit" => page.limit = Some(value),
                    "before" => page.before = Some(value),
                    "uid" => uid = Some(OrderUid::parse(value).map_err(|_| ApiError::InvalidUid)?),
                    _ => {
                        return Err(ApiError::InvalidQuery(format!("unknown parameter {name}")));
                    }
                }
            }
            Ok(state
                .access
                .guard
                .rejections(ctx.asked(), uid, page)
                .await?)
        };
        listed(answer.await)
    })
    .await
}

/// Records of the audit trail per page at most.
const AUDIT_PAGE: usize = 100;

/// `GET /audit`: the audit trail, newest first; `subject` keeps one caller's, `since`
/// (RFC 3339) those written since.
pub async fn list_audit(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    super::guarded("list_audit", async {
        let answer = async {
            let ctx = super::identify(&req, &state, Budget::Search).await?;
            let mut query = AuditQuery {
                limit: AUDIT_PAGE + 1,
                ..AuditQuery::default()
            };
            for (name, value) in pairs(req.query_string())? {
                match name.as_str() {
                    "subject" => query.subject = Some(value),
                    "since" => {
                        query.since = Some(
                            chrono::DateTime::parse_from_rfc3339(&value)
                                .map_err(|_| {
                                    ApiError::InvalidQuery("since must be an RFC 3339 time".into())
                                })?
                                .to_utc(),
                        );
                    }
                    // Empty, as a blank form field sends it: the first page.
                    "before" if value.is_empty() => {}
                    "before" => {
                        query.before = Some(decode_rejection_cursor(&value).ok_or_else(|| {
                            ApiError::InvalidQuery("before is not a cursor of ours".into())
                        })?);
                    }
                    _ => {
                        return Err(ApiError::InvalidQuery(format!("unknown parameter {name}")));
                    }
                }
            }
            let mut rows = state.access.guard.audit(ctx.asked(), query).await?;
            let next = (rows.len() > AUDIT_PAGE).then(|| {
                rows.truncate(AUDIT_PAGE);
                encode_rejection_cursor(rows[AUDIT_PAGE - 1].0)
            });
            Ok(Page {
                items: rows.into_iter().map(|(_, r)| r).collect(),
                next,
            })
        };
        listed(answer.await)
    })
    .await
}
