//! The HTTP adapter: actix-web hidden behind [`start`], which takes the lookup service and
//! plain state, and returns a handle to stop the server.

mod api;
mod errors;
mod links;
pub mod metrics;
mod ops;
mod pages;
mod sign_in;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::metrics::{counter, histogram};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::DefaultHeaders;
use actix_web::{
    App, FromRequest, Handler, HttpRequest, HttpResponse, HttpServer, Responder, ResponseError, web,
};
use anyhow::Context;
use futures::FutureExt;
use tracing::Instrument;

pub use errors::ApiError;
pub use links::Links;

use crate::adapters::auth::session::SESSION_COOKIE;
use crate::adapters::auth::{AuthFailure, Authenticator, Budget, Principal, RateLimits, Session};
use crate::domain::access::Caller;
use crate::domain::guard::{Asked, Guard};
use crate::domain::health::Readiness;

/// Longest request path served; anything longer is answered 414 before routing.
const MAX_PATH: usize = 512;

/// What the handlers share.
pub struct AppState {
    /// Who may come in, and every read on a caller's behalf.
    pub access: Access,
    pub readiness: Arc<Readiness>,
    pub templates: tera::Tera,
    /// `X-Cache` on lookups (HTTP_DEBUG_HEADERS).
    pub debug_headers: bool,
}

/// Who may come in, how often, and the reads they make.
pub struct Access {
    /// Every read of orders, dead letters and the audit trail, on a caller's behalf.
    pub guard: Guard,
    pub auth: Authenticator,
    pub limits: RateLimits,
    /// Customer links, where LINK_KEYS is set.
    pub links: Option<Links>,
}

/// A request's caller, route template and id: what the guard is told of it.
pub(crate) struct Ctx {
    pub caller: Caller,
    /// The web session the caller came with, if it came with one.
    pub session: Option<Session>,
    route: String,
    request_id: Arc<str>,
}

impl Ctx {
    pub fn asked(&self) -> Asked<'_> {
        Asked {
            caller: &self.caller,
            route: &self.route,
            request_id: &self.request_id,
        }
    }
}

/// The caller of `req`, within its budget for `budget`; or why not.
pub(crate) async fn identify(
    req: &HttpRequest,
    state: &AppState,
    budget: Budget,
) -> Result<Ctx, ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::InvalidToken("the Authorization header is not text"))
        })
        .transpose()?;
    let peer = req.peer_addr().map(|a| a.ip());
    let limited = |wait: Duration| {
        counter!(metrics::RATE_LIMITED, "budget" => "failures").increment(1);
        ApiError::RateLimited(wait.as_secs().max(1))
    };
    state.access.limits.check_blocked(peer).map_err(limited)?;
    let cookie = req.cookie(SESSION_COOKIE);
    let (caller, session) = match state
        .access
        .auth
        .authenticate(presented, cookie.as_ref().map(|c| c.value()))
        .await
    {
        Ok(found) => found,
        Err(e @ AuthFailure::Invalid(_)) => {
            state.access.limits.failed(peer);
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    let who = || Principal::of(&caller, peer);
    state.access.limits.check(budget, who).map_err(|wait| {
        counter!(metrics::RATE_LIMITED, "budget" => budget.as_str()).increment(1);
        ApiError::RateLimited(wait.as_secs().max(1))
    })?;
    Ok(Ctx {
        caller,
        session,
        route: req.match_pattern().unwrap_or_else(|| req.path().to_owned()),
        request_id: crate::adapters::trace::current_request_id().unwrap_or_else(|| "".into()),
    })
}

/// A running server: its address (useful with port 0) and the handle that stops it; and
/// the metrics server's, when `/metrics` has an address of its own.
pub struct Running {
    pub addr: SocketAddr,
    pub handle: actix_web::dev::ServerHandle,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
    pub metrics: Option<(SocketAddr, actix_web::dev::ServerHandle)>,
}

impl Running {
    /// Stops the servers, letting requests in flight finish.
    pub async fn stop(&self) {
        if let Some((_, metrics)) = &self.metrics {
            metrics.stop(true).await;
        }
        self.handle.stop(true).await;
    }
}

/// Renders `/metrics` in the Prometheus text format (collecting what is read on demand).
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// Where the HTTP servers listen.
#[derive(Debug, Clone)]
pub struct Listen {
    pub addr: SocketAddr,
    /// `/metrics` on its own address, so that it need not be public with the API.
    pub metrics_addr: Option<SocketAddr>,
    pub workers: usize,
    /// `X-Cache` on lookups.
    pub debug_headers: bool,
    /// Peers whose `X-Request-Id` and `traceparent` are taken.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

pub fn start(
    listen: Listen,
    access: Access,
    readiness: Arc<Readiness>,
    metrics: RenderMetrics,
    bench_fixed: Option<bytes::Bytes>,
) -> anyhow::Result<Running> {
    let Listen {
        addr,
        metrics_addr,
        workers,
        debug_headers,
        trusted_proxies,
    } = listen;
    let trusted: Arc<[ipnet::IpNet]> = trusted_proxies.into();
    let metrics_server = match metrics_addr {
        Some(addr) => Some(start_metrics(addr, metrics.clone())?),
        None => None,
    };
    let exporter = web::Data::new(metrics.clone());
    // With authentication on, `/metrics` is served only on its own address (settings
    // refuse the other case at start).
    let open = access.auth.is_open();
    let signing_in = access.auth.sign_in.is_some();
    let with_metrics = metrics_addr.is_none() && open;
    let state = web::Data::new(AppState {
        access,
        readiness,
        templates: pages::templates(open, signing_in)?,
        debug_headers,
    });
    let server = HttpServer::new(move || {
        let fixed = bench_fixed.clone();
        let trusted = trusted.clone();
        let app = App::new()
            .app_data(state.clone())
            .app_data(exporter.clone())
            // Inside the default headers: what `observe` answers itself (414) carries them.
            .wrap_fn(move |req, srv| observe(req, srv, &trusted))
            .wrap(
                DefaultHeaders::new()
                    .add((
                        "Content-Security-Policy",
                        "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
                    ))
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "no-referrer")),
            )
            .configure(|cfg| routes(cfg, with_metrics));
        // The benchmark's baseline: the same server, a body of the same size, no lookup.
        app.configure(move |cfg| {
            if let Some(body) = fixed {
                cfg.route(
                    "/__bench/fixed",
                    web::get().to(move || {
                        let body = body.clone();
                        async move { HttpResponse::Ok().content_type("application/json").body(body) }
                    }),
                );
            }
        })
    })
    .workers(workers)
    .client_request_timeout(Duration::from_secs(5))
    .client_disconnect_timeout(Duration::from_secs(1))
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
        metrics: metrics_server,
    })
}

/// Every route of the main server.
fn routes(cfg: &mut web::ServiceConfig, with_metrics: bool) {
    ops::routes(cfg, with_metrics);
    links::routes(cfg);
    // `.*` so that an empty or slash-holding uid reaches the handler and gets a 400.
    cfg.service(readable("/order/{order_uid:.*}", api::get_order))
        .service(readable("/orders", api::list_orders))
        .service(readable("/rejections", api::list_rejections))
        .service(readable("/audit", api::list_audit))
        .service(readable("/orders/{order_uid:.*}", pages::order_page))
        .service(readable("/", pages::index))
        .service(readable("/static/{file}", pages::static_file))
        .service(readable("/openapi.json", pages::openapi))
        .configure(sign_in::routes)
        .default_service(web::to(not_found));
}

/// `/metrics` alone on `addr`, one worker.
fn start_metrics(
    addr: SocketAddr,
    metrics: RenderMetrics,
) -> anyhow::Result<(SocketAddr, actix_web::dev::ServerHandle)> {
    let exporter = web::Data::new(metrics);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(exporter.clone())
            .wrap_fn(|req, srv| observe(req, srv, &[]))
            .configure(ops::metrics_route)
            .default_service(web::to(|| async { ApiError::NotFound.error_response() }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(2)
    .bind(addr)
    .with_context(|| format!("cannot listen on {addr} (METRICS_ADDR)"))?;
    let addr = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((addr, handle))
}

async fn method_not_allowed() -> HttpResponse {
    ApiError::MethodNotAllowed.error_response()
}

/// A resource that answers GET and HEAD with `handler`, and every other method with a JSON
/// 405 that carries `Allow`.
pub(crate) fn readable<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: Handler<Args> + Clone,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(method_not_allowed))
}

/// The `method` label: the standard methods by name, anything else as `other`, so that a
/// client inventing methods cannot grow the metric's series without bound.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// JSON for programs, the HTML page for browsers.
pub(crate) async fn not_found(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html && req.method() == Method::GET {
        pages::message_page(
            &state.templates,
            actix_web::http::StatusCode::NOT_FOUND,
            "Page not found",
            "There is nothing at this address.",
        )
    } else {
        ApiError::NoRoute.error_response()
    }
}

/// The request id header: echoed when the client sent a usable one, made up otherwise.
pub const REQUEST_ID: &str = "x-request-id";

/// The client's request id when it is one we can log and echo as it is (1 to 128 visible
/// ASCII characters, no quote or backslash).
fn client_request_id(req: &ServiceRequest) -> Option<&str> {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        })
}

/// The request's id: a trusted proxy's (HTTP_TRUSTED_PROXIES), else a new random one (32
/// hex digits). Anyone else's would let a caller write what our logs and traces file its
/// request under.
fn request_id(req: &ServiceRequest, trusted: bool) -> Arc<str> {
    client_request_id(req)
        .filter(|_| trusted)
        .map(Arc::from)
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()).into())
}

/// Around every request: the request id (on the response, and on every log line written
/// while the request is served), the path limit, metrics by route template and status, and
/// one access-log line at debug level.
fn observe<S, B>(
    req: ServiceRequest,
    srv: &S,
    trusted_proxies: &[ipnet::IpNet],
) -> impl Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    let started = Instant::now();
    let trusted = req
        .peer_addr()
        .is_some_and(|a| trusted_proxies.iter().any(|n| n.contains(&a.ip())));
    let id = request_id(&req, trusted);
    // An untrusted caller's own id, logged beside ours so that it can still be followed.
    let client_id: Option<String> = client_request_id(&req)
        .filter(|_| !trusted)
        .map(str::to_owned);
    let (method, path) = (method_label(req.method()), req.path().to_owned());
    let span = if crate::adapters::trace::tracing_enabled() {
        // The span exported as the request's: named and labelled as OpenTelemetry's HTTP
        // conventions say once the route is known, under the caller's trace when it sent one.
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            otel.name = method,
            otel.kind = "server",
            http.request.method = method,
            url.path = %path,
            http.route = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
        );
        if let Some(remote) = crate::adapters::trace::remote_context(|name| {
            req.headers().get(name).and_then(|v| v.to_str().ok())
        }) {
            use opentelemetry::trace::TraceContextExt;
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            if trusted {
                let _ = span.set_parent(remote);
            } else {
                // Anyone else's trace is not ours to join: a trace of our own, linked to it.
                span.add_link(remote.span().span_context().clone());
            }
        }
        span
    } else {
        tracing::Span::none()
    };
    let recorder = span.clone();
    let call = if path.len() > MAX_PATH {
        Err(req.into_response(ApiError::UriTooLong.error_response()))
    } else {
        Ok(span.in_scope(|| {
            crate::adapters::trace::sync_with_request_id(id.clone(), || srv.call(req))
        }))
    };
    let response_id = id.clone();
    let served = async move {
        let mut response = match call {
            Err(response) => response,
            Ok(call) => call.await?.map_into_boxed_body(),
        };
        let route = response
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        let status = response.status().as_u16();
        if crate::adapters::trace::tracing_enabled() {
            // Named once the route is known (the span has started: renamed, not recorded).
            use opentelemetry::trace::TraceContextExt;
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            recorder
                .context()
                .span()
                .update_name(format!("{method} {route}"));
            recorder.record("http.route", route.as_str());
            recorder.record("http.response.status_code", status);
        }
        let elapsed = started.elapsed();
        let labels = [
            ("route", route),
            ("method", method.to_owned()),
            ("status", status.to_string()),
        ];
        counter!(metrics::HTTP_REQUESTS, &labels).increment(1);
        histogram!(metrics::HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
        tracing::debug!(%method, %path, status, micros = elapsed.as_micros() as u64,
            client_request_id = client_id.as_deref(), "http");
        if let Ok(value) = header::HeaderValue::from_str(&response_id) {
            response
                .headers_mut()
                .insert(header::HeaderName::from_static(REQUEST_ID), value);
        }
        Ok(response)
    };
    crate::adapters::trace::with_request_id(id, served).instrument(span)
}

/// Runs a handler's work, answering a panic with a 500 (logged) instead of a dropped
/// connection.
pub(crate) async fn guarded<F>(what: &'static str, work: F) -> HttpResponse
where
    F: Future<Output = HttpResponse>,
{
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(handler = what, panic = %detail, "handler panicked");
            ApiError::Internal.error_response()
        }
    }
}

/// The handlers with a fake lookup service: each answer of the service becomes the right
/// status, headers and body, without a database or a cache behind it.
#[cfg(test)]
mod tests {
    use actix_web::test;
    use bytes::Bytes;

    use super::*;
    use crate::domain::access::Scopes;
    use crate::domain::browse::{
        Browser, Criterion, OrderIndex, OrderSummary, RejectionRecord, Search,
    };
    use crate::domain::guard::{AuditQuery, AuditRecord, AuditTrail, Recorded, ValueHasher};
    use crate::domain::lookup::{FindOrder, Found, LookupError, OrderView, Source};
    use crate::domain::order::{ContentHash, OrderUid};
    use crate::domain::ports::{Position, StoreError};

    const MODEL: &[u8] = include_bytes!("../../../tests/data/model.json");

    /// Knows `cached` (from the cache) and `stored` (from the store); `down` finds the store
    /// unavailable, `broken` unreadable; anything else is not found.
    struct Fake;

    impl FindOrder for Fake {
        fn find<'a>(&'a self, uid: &'a OrderUid) -> Found<'a> {
            let json = Bytes::from_static(MODEL);
            let view = OrderView::new(json.clone(), &ContentHash::of_json(&json));
            let answer = match uid.as_str() {
                "cached" => Ok((view, Source::Cache)),
                "stored" => Ok((view, Source::Store)),
                "down" => Err(LookupError::Unavailable("connection refused".into())),
                "broken" => Err(LookupError::Unreadable("year 0".into())),
                _ => Err(LookupError::NotFound),
            };
            Box::pin(async move { answer })
        }
    }

    /// Echoes what it was asked in the summary it returns (the criteria in `customer_id`,
    /// the cursor's uid in `city`), so a test sees what reached the store; `rejected1` has
    /// one dead-letter record; a search for `down` finds the store unavailable.
    #[derive(Clone)]
    struct FakeIndex;

    impl OrderIndex for FakeIndex {
        async fn summaries(
            &self,
            search: &Search,
            before: Option<&Position>,
            limit: usize,
        ) -> Result<Vec<(Position, OrderSummary)>, StoreError> {
            let said = |c: &Criterion| format!("{}={}", c.field.param(), c.value);
            let all: Vec<String> = search.all.iter().map(said).collect();
            let any: Vec<String> = search.any.iter().map(said).collect();
            if search
                .any
                .iter()
                .chain(&search.all)
                .any(|c| c.value == "down")
            {
                return Err(StoreError::Unavailable(anyhow::anyhow!("refused")));
            }
            let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
            Ok((0..limit.min(3))
                .map(|i| {
                    let uid = OrderUid::parse(format!("o{i}")).unwrap();
                    let summary = OrderSummary {
                        order_uid: uid.to_string(),
                        date_created: at,
                        stored_at: at,
                        customer_id: format!("all:{} any:{}", all.join(","), any.join(",")),
                        name: format!("limit {limit}"),
                        city: before.map(|p| p.uid.to_string()).unwrap_or_default(),
                        amount: 1817,
                        currency: "USD".into(),
                        items: 1,
                    };
                    (Position { stored_at: at, uid }, summary)
                })
                .collect())
        }

        async fn rejections(
            &self,
            uid: Option<&OrderUid>,
            _: Option<i64>,
            _: usize,
        ) -> Result<Vec<RejectionRecord>, StoreError> {
            let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
            Ok(match uid.map(OrderUid::as_str) {
                Some("rejected1") => vec![RejectionRecord {
                    id: 7,
                    at,
                    reason: "invalid".into(),
                    detail: "delivery.phone: must be an E.164 phone number".into(),
                    order_uid: Some("rejected1".into()),
                    key: Some("rejected1".into()),
                    topic: "orders".into(),
                    partition: 0,
                    offset: 12,
                    message_time: Some(at),
                }],
                _ => Vec::new(),
            })
        }
    }

    async fn json(path: &str) -> (u16, serde_json::Value) {
        let (status, _, body) = get(path, &[]).await;
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[actix_web::test]
    async fn a_uid_never_stored_but_rejected_says_why() {
        let (status, body) = json("/order/rejected1").await;
        assert_eq!(status, 404);
        assert_eq!(body["error"], "not_found");
        assert_eq!(
            body["rejected"],
            serde_json::json!([{"at": "2023-11-14T22:13:20Z", "reason": "invalid",
                "detail": "delivery.phone: must be an E.164 phone number"}])
        );
        assert_eq!(
            json("/order/nosuch").await.1["rejected"],
            serde_json::json!([])
        );
        let (status, body) = json("/rejections?uid=rejected1").await;
        assert_eq!(status, 200);
        assert_eq!(body["items"][0]["offset"], 12);
        assert_eq!(body["items"][0]["key"], "rejected1");
        assert_eq!(
            json("/rejections?uid=bad-uid").await.1["error"],
            "invalid_uid"
        );
        assert_eq!(json("/rejections?reason=x").await.0, 400);
    }

    #[actix_web::test]
    async fn browsing_takes_searches_and_pages_and_refuses_what_it_cannot_use() {
        let (status, body) = json("/orders").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["items"][0]["customer_id"], "all: any:");
        assert_eq!(
            body["items"][0]["name"], "limit 51",
            "one more than the page"
        );
        assert!(body["next"].is_null(), "3 rows fit a page of 50: {body}");
        let (_, body) = json("/orders?limit=2").await;
        let next = body["next"].as_str().expect("a next page").to_owned();
        assert_eq!(body["items"].as_array().unwrap().len(), 2);
        let (_, older) = json(&format!("/orders?limit=2&before={next}")).await;
        assert_eq!(
            older["items"][0]["city"], "o1",
            "the cursor names the last row shown"
        );
        // Phone and e-mail reach the store normalised; named fields must all match.
        let (_, body) = json("/orders?phone=%2B972%20000-0000&email=A%40B.example").await;
        assert_eq!(
            body["items"][0]["customer_id"],
            "all:phone=+9720000000,email=a@b.example any:"
        );
        let (_, body) = json("/orders?q=x%40y.z").await;
        assert_eq!(
            body["items"][0]["customer_id"],
            "all: any:email=x@y.z,customer_id=x@y.z"
        );
        for bad in [
            "/orders?limit=0",
            "/orders?limit=201",
            "/orders?limit=x",
            "/orders?before=zz",
            "/orders?phone=12",
            "/orders?email=nobody",
            "/orders?track_number=a-b",
            "/orders?track_number=%20abc",
            "/orders?customer_id=",
            "/orders?colour=red",
            "/orders?limit=1&limit=2",
        ] {
            let (status, body) = json(bad).await;
            assert_eq!(status, 400, "{bad}: {body}");
            assert_eq!(body["error"], "invalid_query", "{bad}: {body}");
        }
        assert_eq!(json("/orders?customer_id=down").await.0, 503);
    }

    /// Keeps what it is given, or refuses everything when `broken`.
    #[derive(Default)]
    struct FakeAudit {
        broken: bool,
        records: std::sync::Mutex<Vec<AuditRecord>>,
    }

    impl AuditTrail for Arc<FakeAudit> {
        fn record(&self, record: AuditRecord) -> Recorded<'_, ()> {
            let result = if self.broken {
                Err(StoreError::Unavailable(anyhow::anyhow!("read-only")))
            } else {
                self.records.lock().unwrap().push(record);
                Ok(())
            };
            Box::pin(async move { result })
        }

        fn read(&self, _: AuditQuery) -> Recorded<'_, Vec<(i64, AuditRecord)>> {
            let rows = self.records.lock().unwrap().clone();
            let rows = rows
                .into_iter()
                .enumerate()
                .map(|(i, r)| (i as i64 + 1, r))
                .collect();
            Box::pin(async move { Ok(rows) })
        }
    }

    async fn get(path: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Bytes) {
        get_as(
            Scopes::all(),
            &Arc::new(FakeAudit::default()),
            path,
            headers,
        )
        .await
    }

    /// `path` asked by an anonymous caller holding `scopes`, audited into `audit`.
    async fn get_as(
        scopes: Scopes,
        audit: &Arc<FakeAudit>,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<(String, String)>, Bytes) {
        let guard = Guard::new(
            Arc::new(Fake),
            Arc::new(Browser::with_newest_ttl(
                FakeIndex,
                std::time::Duration::ZERO,
            )),
            Arc::new(audit.clone()),
            ValueHasher::new(b"test key"),
        );
        let state = web::Data::new(AppState {
            access: Access {
                guard,
                auth: Authenticator {
                    anonymous: Some(scopes),
                    ..Authenticator::default()
                },
                limits: RateLimits::new(crate::adapters::auth::RateSettings {
                    lookups_per_second: 0,
                    searches_per_second: 0,
                }),
                links: Some(Links {
                    signer: crate::domain::links::LinkSigner::new(
                        vec![crate::domain::links::LinkKey {
                            id: "k1".into(),
                            secret: b"a test key of at least thirty-two bytes".to_vec(),
                        }],
                        3600,
                    )
                    .unwrap(),
                    base: None,
                }),
            },
            readiness: Arc::new(Readiness::new(true, false)),
            templates: pages::templates(true, false).unwrap(),
            debug_headers: true,
        });
        let app = test::init_service(
            App::new()
                .app_data(state)
                .wrap_fn(|req, srv| observe(req, srv, &["127.0.0.1/32".parse().unwrap()]))
                .configure(|cfg| routes(cfg, true)),
        )
        .await;
        // As from a trusted proxy (the app below trusts loopback).
        let mut req = test::TestRequest::get()
            .uri(path)
            .peer_addr("127.0.0.1:40000".parse().unwrap());
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let response = test::call_service(&app, req.to_request()).await;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        (status, headers, test::read_body(response).await)
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[actix_web::test]
    async fn readiness_names_what_is_missing_and_whether_the_cache_still_warms() {
        let (status, _, body) = get("/readyz", &[]).await;
        assert_eq!(status, 503);
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status": "not_ready", "reasons": ["database unreachable"], "cache": "warming"})
        );
    }

    #[actix_web::test]
    async fn each_answer_of_the_lookup_service_has_its_status_and_code() {
        let (status, headers, body) = get("/order/cached", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(body, Bytes::from_static(MODEL));
        assert_eq!(header(&headers, "x-cache"), Some("hit"));
        let etag = header(&headers, "etag").unwrap().to_owned();
        assert_eq!(
            header(&get("/order/stored", &[]).await.1, "x-cache"),
            Some("miss")
        );
        assert_eq!(
            get("/order/cached", &[("If-None-Match", &etag)]).await.0,
            304
        );

        for (path, status, code) in [
            ("/order/nosuch", 404, "not_found"),
            ("/order/down", 503, "unavailable"),
            ("/order/broken", 500, "order_unreadable"),
            ("/order/not-a-uid!", 400, "invalid_uid"),
        ] {
            let (got, headers, body) = get(path, &[]).await;
            assert_eq!(got, status, "{path}");
            assert_eq!(header(&headers, "content-type"), Some("application/json"));
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"], code, "{path}: {body}");
        }
        // The server-rendered page tells the same story in HTML.
        assert_eq!(get("/orders/stored", &[]).await.0, 200);
        assert_eq!(get("/orders/nosuch", &[]).await.0, 404);
        assert_eq!(get("/orders/down", &[]).await.0, 503);
    }

    #[actix_web::test]
    async fn every_answer_carries_a_request_id() {
        // Echoed when usable, on success and on failure alike (the log lines of the
        // request carry it too: `lookup::a_request_id_...` reads them from a real serve).
        for path in ["/order/cached", "/order/down", "/healthz", "/no/such/route"] {
            let (_, headers, _) = get(path, &[("X-Request-Id", "req-42.a_b")]).await;
            assert_eq!(
                header(&headers, "x-request-id"),
                Some("req-42.a_b"),
                "{path}"
            );
        }
        // Made up when missing or unusable (too long, control characters, quotes): 32 hex
        // digits, a new one each time.
        let mut seen = std::collections::HashSet::new();
        for sent in [
            None,
            Some("x".repeat(129)),
            Some("a\tb".into()),
            Some("\"q\"".into()),
        ] {
            let headers: Vec<(&str, &str)> = sent
                .as_deref()
                .map(|v| vec![("X-Request-Id", v)])
                .unwrap_or_default();
            let (_, got, _) = get("/order/cached", &headers).await;
            let id = header(&got, "x-request-id").expect("an id").to_owned();
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
            assert!(seen.insert(id), "a new id each time");
        }
    }

    #[actix_web::test]
    async fn every_route_answers_each_scope_set_as_the_readme_table_says() {
        use crate::domain::access::Scope::*;
        let set = |list: &[crate::domain::access::Scope]| list.iter().copied().collect::<Scopes>();
        // (path, scopes, status, masked?)
        let cases: &[(&str, Scopes, u16, Option<bool>)] = &[
            ("/order/cached", Scopes::NONE, 403, None),
            ("/order/cached", set(&[OrdersSearch]), 403, None),
            ("/order/cached", set(&[OrdersRead]), 200, Some(true)),
            (
                "/order/cached",
                set(&[OrdersRead, PiiRead]),
                200,
                Some(false),
            ),
            ("/orders/cached", set(&[OrdersRead]), 200, Some(true)),
            (
                "/orders/cached",
                set(&[OrdersRead, PiiRead]),
                200,
                Some(false),
            ),
            ("/orders/cached", set(&[PiiRead]), 403, None),
            ("/orders", set(&[OrdersRead]), 403, None),
            ("/orders", set(&[OrdersSearch]), 200, Some(true)),
            ("/orders", set(&[OrdersSearch, PiiRead]), 200, Some(false)),
            (
                "/orders?phone=%2B9720000000",
                set(&[OrdersSearch]),
                403,
                None,
            ),
            (
                "/orders?phone=%2B9720000000",
                set(&[OrdersSearch, PiiRead]),
                200,
                Some(false),
            ),
            // Tried only as a customer id (the fake echoes what reached it).
            (
                "/orders?q=%2B9720000000",
                set(&[OrdersSearch]),
                200,
                Some(true),
            ),
            (
                "/orders?track_number=WBIL",
                set(&[OrdersSearch]),
                200,
                Some(true),
            ),
            ("/", set(&[OrdersRead]), 403, None),
            ("/", set(&[OrdersSearch]), 200, Some(true)),
            (
                "/rejections",
                set(&[OrdersRead, OrdersSearch, PiiRead]),
                403,
                None,
            ),
            ("/rejections", set(&[RejectionsRead]), 200, None),
            ("/audit", Scopes::all().difference(AuditRead), 403, None),
            ("/audit", set(&[AuditRead]), 200, None),
            (
                "/order/cached/link",
                Scopes::all().difference(LinksCreate),
                403,
                None,
            ),
            ("/order/cached/link", set(&[LinksCreate]), 403, None),
            (
                "/order/cached/link",
                set(&[OrdersRead, LinksCreate]),
                200,
                None,
            ),
            (
                "/orders/cached/link",
                set(&[OrdersRead, LinksCreate]),
                200,
                None,
            ),
            ("/healthz", Scopes::NONE, 200, None),
            ("/openapi.json", Scopes::NONE, 200, None),
        ];
        for (path, scopes, status, masked) in cases {
            let audit = Arc::new(FakeAudit::default());
            let (got, headers, body) = get_as(*scopes, &audit, path, &[]).await;
            assert_eq!(
                got,
                *status,
                "{path} with {scopes}: {}",
                String::from_utf8_lossy(&body)
            );
            if got == 403 {
                let challenge = header(&headers, "www-authenticate").unwrap_or_default();
                assert!(
                    challenge.contains("insufficient_scope"),
                    "{path}: {challenge}"
                );
            }
            let text = String::from_utf8_lossy(&body);
            if path.contains("q=") && !scopes.has(PiiRead) {
                assert!(
                    !text.contains("phone="),
                    "a phone search reached the store: {text}"
                );
            }
            if let Some(masked) = masked {
                // The fake index's summaries carry the name "limit N"; the order is model.json.
                let personal = if path.starts_with("/order")
                    && !path.starts_with("/orders?")
                    && *path != "/orders"
                {
                    "Test Testov"
                } else {
                    "limit "
                };
                assert_eq!(
                    !text.contains(personal),
                    *masked,
                    "{path} with {scopes}: {text}"
                );
            }
        }
    }

    #[actix_web::test]
    async fn unmasked_reads_and_searches_are_audited_once_and_refused_without_a_record() {
        let audit = Arc::new(FakeAudit::default());
        let all = Scopes::all();
        get_as(all, &audit, "/order/cached", &[("X-Request-Id", "r1")]).await;
        get_as(all, &audit, "/orders?phone=%2B9720000000", &[]).await;
        let masked = Scopes::parse_list("orders:read orders:search").unwrap();
        get_as(masked, &audit, "/order/cached", &[]).await;
        get_as(masked, &audit, "/orders", &[]).await;
        get_as(masked, &audit, "/orders?customer_id=c1", &[]).await;
        let records = audit.records.lock().unwrap().clone();
        assert_eq!(records.len(), 3, "{records:?}");
        assert_eq!(records[0].action.as_str(), "order");
        assert_eq!(records[0].order_uid.as_deref(), Some("cached"));
        assert_eq!(records[0].request_id, "r1");
        assert_eq!(records[1].fields, ["phone"]);
        assert_eq!(records[1].results, 3);
        let text = format!("{records:?}");
        assert!(
            !text.contains("9720000000") && !text.contains("c1\""),
            "{text}"
        );
        assert_eq!(records[2].fields, ["customer_id"]);

        let broken = Arc::new(FakeAudit {
            broken: true,
            ..FakeAudit::default()
        });
        let (status, headers, body) = get_as(all, &broken, "/order/cached", &[]).await;
        assert_eq!(status, 503);
        assert!(!String::from_utf8_lossy(&body).contains("Testov"));
        assert_eq!(header(&headers, "retry-after"), Some("5"));
        assert_eq!(get_as(all, &broken, "/orders?q=x", &[]).await.0, 503);
        assert_eq!(
            get_as(masked, &broken, "/order/cached", &[]).await.0,
            200,
            "masked: nothing to audit"
        );
    }
}
