//! The web sign-in's routes: `GET /auth/login` (to the provider), `GET /auth/callback`
//! (back from it, a session opened), `POST /auth/logout` (the session ended). The protocol
//! is [`crate::adapters::auth::session`]'s; here are cookies, redirects and pages.

use std::collections::HashMap;

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use super::AppState;
use super::errors::ApiError;
use super::pages::message_page;
use crate::adapters::auth::SignIn;
use crate::adapters::auth::session::{
    PENDING_COOKIE, SESSION_COOKIE, SIGN_IN_TTL, SignInError, csrf_matches,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::readable("/auth/login", login))
        .service(super::readable("/auth/callback", callback))
        .service(
            web::resource("/auth/logout")
                .route(web::post().to(logout))
                .default_service(web::to(|| async {
                    HttpResponse::MethodNotAllowed()
                        .insert_header((header::ALLOW, "POST"))
                        .insert_header((header::CACHE_CONTROL, "no-store"))
                        .json(serde_json::json!({"error": "method_not_allowed",
                            "message": "sign out with POST (the pages' Sign out button)"}))
                })),
        );
}

/// `<scheme>://<host>` of the request, as the browser addressed it.
pub(crate) fn origin(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

/// A cookie of ours: HttpOnly, SameSite=Lax, Secure when the request came over TLS.
fn cookie<'c>(req: &HttpRequest, name: &'c str, value: String, path: &'c str) -> Cookie<'c> {
    let mut c = Cookie::new(name, value);
    c.set_http_only(true);
    c.set_same_site(SameSite::Lax);
    c.set_path(path);
    c.set_secure(req.connection_info().scheme() == "https");
    c
}

fn gone<'c>(req: &HttpRequest, name: &'c str, path: &'c str) -> Cookie<'c> {
    let mut c = cookie(req, name, String::new(), path);
    c.make_removal();
    c
}

/// The sign-in, where one is configured (else these routes answer 404 as any unknown one).
fn configured(state: &AppState) -> Option<&SignIn> {
    state.access.auth.sign_in.as_deref()
}

fn no_store(mut response: HttpResponse) -> HttpResponse {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn query(req: &HttpRequest) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// `GET /auth/login?next=/path`: off to the provider.
async fn login(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(sign_in) = configured(&state) else {
        return ApiError::NoRoute.error_response();
    };
    let next = query(&req).remove("next").unwrap_or_else(|| "/".into());
    let redirect_uri = sign_in.redirect_uri(&origin(&req));
    match sign_in.begin(redirect_uri, &next).await {
        Ok((url, pending)) => {
            let mut c = cookie(&req, PENDING_COOKIE, pending, "/auth/");
            c.set_max_age(time::Duration::seconds(SIGN_IN_TTL.as_secs() as i64));
            no_store(
                HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, url))
                    .cookie(c)
                    .finish(),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a sign-in");
            no_store(message_page(
                &state.templates,
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in unavailable",
                "The identity provider cannot be reached. Try again in a moment.",
            ))
        }
    }
}

/// `GET /auth/callback?code=…&state=…`: back from the provider.
async fn callback(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(sign_in) = configured(&state) else {
        return ApiError::NoRoute.error_response();
    };
    let params = query(&req);
    let pending = req.cookie(PENDING_COOKIE);
    let result = match (params.get("code"), params.get("state"), params.get("error")) {
        (_, _, Some(error)) => Err(SignInError::Refused(
            error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect(),
        )),
        (Some(code), Some(st), None) => {
            sign_in
                .finish(pending.as_ref().map(|c| c.value()), code, st)
                .await
        }
        _ => Err(SignInError::Invalid(
            "the identity provider's answer lacks code or state",
        )),
    };
    match result {
        Ok((secret, next)) => {
            let mut session = cookie(&req, SESSION_COOKIE, secret, "/");
            session.set_max_age(time::Duration::seconds(
                sign_in.session_ttl().as_secs() as i64
            ));
            no_store(
                HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, next))
                    .cookie(session)
                    .cookie(gone(&req, PENDING_COOKIE, "/auth/"))
                    .finish(),
            )
        }
        Err(e) => {
            let status = match e {
                SignInError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                SignInError::Refused(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            };
            tracing::info!(error = %e, "sign-in not completed");
            let mut response = no_store(message_page(
                &state.templates,
                status,
                "Sign-in not completed",
                &e.to_string(),
            ));
            let _ = response.add_cookie(&gone(&req, PENDING_COOKIE, "/auth/"));
            response
        }
    }
}

/// `POST /auth/logout` with the page's `csrf` token: the session ends.
async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let Some(sign_in) = configured(&state) else {
        return ApiError::NoRoute.error_response();
    };
    let tera = &state.templates;
    let Some(session) = req.cookie(SESSION_COOKIE) else {
        return no_store(message_page(
            tera,
            StatusCode::OK,
            "Signed out",
            "You are not signed in.",
        ));
    };
    // The token only a page of this session holds; and a browser that says the form
    // came from another site is believed.
    let same_site = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == "same-origin" || v == "none");
    let token = form.get("csrf").map(String::as_str).unwrap_or("");
    if !same_site || !csrf_matches(session.value(), token) {
        return no_store(message_page(
            tera,
            StatusCode::FORBIDDEN,
            "Not signed out",
            "This sign-out did not come from a page of this service. Use the Sign out button.",
        ));
    }
    match sign_in.end(session.value()).await {
        Ok(provider) => {
            let mut response = no_store(signed_out_page(&state, provider.as_deref()));
            let _ = response.add_cookie(&gone(&req, SESSION_COOKIE, "/"));
            response
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot end a session");
            no_store(message_page(
                tera,
                StatusCode::SERVICE_UNAVAILABLE,
                "Not signed out",
                "The session could not be ended right now. Try again in a moment.",
            ))
        }
    }
}

fn signed_out_page(state: &AppState, provider_end: Option<&str>) -> HttpResponse {
    let mut context = tera::Context::new();
    context.insert("provider_end", &provider_end);
    match state.templates.render("signed_out.html", &context) {
        Ok(html) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(e) => {
            tracing::error!(error = ?e, "page rendering failed");
            ApiError::Internal.error_response()
        }
    }
}
