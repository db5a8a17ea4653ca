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
    let limited = |budget: &'static str| {
        move |wait: Duration| {
            counter!(metrics::RATE_LIMITED, "budget" => budget).increment(1);
            ApiError::RateLimited(wait.as_secs().max(1))
        }
    };
    state
        .access
        .limits
        .check_blocked(peer)
        .map_err(limited("failures"))?;
    // The cookie only counts without a header, and only where people may sign in.
    let cookie = (presented.is_none() && state.access.auth.sign_in.is_some())
        .then(|| req.cookie(SESSION_COOKIE))
        .flatten();
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
    state
        .access
        .limits
        .check(budget, who)
        .map_err(limited(budget.as_str()))?;
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
mod tests;
