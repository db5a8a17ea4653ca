//! JSON errors with stable codes: `{"error": "<code>", "message": "<text>"}`. Internal
//! details are logged, never returned.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::adapters::auth::AuthFailure;
use crate::domain::access::Scope;
use crate::domain::browse::BrowseError;
use crate::domain::guard::Refusal;
use crate::domain::lookup::LookupError;
use crate::domain::order::MAX_ID_LEN;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("order uid must be 1 to {} ASCII letters and digits", MAX_ID_LEN)]
    InvalidUid,
    #[error("no order with this uid")]
    NotFound,
    /// A query parameter is wrong; the text says which and how.
    #[error("{0}")]
    InvalidQuery(String),
    /// A search that matches more orders than one may sort.
    #[error("{0}")]
    TooManyMatches(String),
    #[error("no such resource")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request path is too long")]
    UriTooLong,
    #[error("the order store is unavailable, try again shortly")]
    Unavailable,
    #[error("the order is stored but cannot be read back; the operators have been told")]
    Unreadable,
    #[error("internal error")]
    Internal,
    /// No credential, and anonymous access is off.
    #[error("sign in, or present a bearer token or an API key")]
    Unauthenticated,
    /// A credential that proves nothing; the text says why, never the credential.
    #[error("{0}")]
    InvalidToken(&'static str),
    /// The caller lacks a scope.
    #[error("this needs the scope {0}")]
    Forbidden(Scope),
    /// Over the caller's budget; retry after this many seconds.
    #[error("too many requests; try again in {0} s")]
    RateLimited(u64),
    /// The audit record could not be written, so the data is not shown.
    #[error(
        "the audit trail cannot be written right now, so personal data is not shown; try again shortly"
    )]
    AuditUnavailable,
    /// The credential cannot be checked right now.
    #[error("credentials cannot be checked right now; try again shortly")]
    AuthUnavailable,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUid => "invalid_uid",
            Self::NotFound | Self::NoRoute => "not_found",
            Self::InvalidQuery(_) => "invalid_query",
            Self::TooManyMatches(_) => "too_many_matches",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UriTooLong => "uri_too_long",
            Self::Unavailable => "unavailable",
            Self::Unreadable => "order_unreadable",
            Self::Internal => "internal",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidToken(_) => "invalid_token",
            Self::Forbidden(_) => "forbidden",
            Self::RateLimited(_) => "rate_limited",
            Self::AuditUnavailable => "audit_unavailable",
            Self::AuthUnavailable => "auth_unavailable",
        }
    }
}

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::NotFound => Self::NotFound,
            LookupError::Unavailable(detail) => {
                tracing::warn!(%detail, "lookup failed: store unavailable");
                Self::Unavailable
            }
            LookupError::Unreadable(detail) => {
                tracing::error!(%detail, "lookup failed: stored order unreadable");
                Self::Unreadable
            }
            LookupError::Internal(detail) => {
                tracing::error!(%detail, "lookup failed");
                Self::Internal
            }
        }
    }
}

impl From<BrowseError> for ApiError {
    fn from(e: BrowseError) -> Self {
        match e {
            BrowseError::Invalid(why) => Self::InvalidQuery(why),
            e @ BrowseError::TooBroad => Self::TooManyMatches(e.to_string()),
            BrowseError::Unavailable(detail) => {
                tracing::warn!(%detail, "browse failed: store unavailable");
                Self::Unavailable
            }
            BrowseError::Internal(detail) => {
                tracing::error!(%detail, "browse failed");
                Self::Internal
            }
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(e: Refusal) -> Self {
        match e {
            Refusal::Forbidden(f) => Self::Forbidden(f.needs),
            Refusal::AuditUnavailable(_) => Self::AuditUnavailable,
            Refusal::Lookup(e) => e.into(),
            Refusal::Browse(e) => e.into(),
        }
    }
}

impl From<AuthFailure> for ApiError {
    fn from(e: AuthFailure) -> Self {
        match e {
            AuthFailure::Missing => Self::Unauthenticated,
            AuthFailure::Invalid(why) => Self::InvalidToken(why),
            AuthFailure::Unavailable(detail) => {
                tracing::warn!(%detail, "cannot check a credential");
                Self::AuthUnavailable
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidUid | Self::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            Self::NotFound | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::TooManyMatches(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::Unavailable | Self::AuditUnavailable | Self::AuthUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Unauthenticated | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal | Self::Unreadable => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.response_with(serde_json::Map::new())
    }
}

impl ApiError {
    /// The error's JSON with `extra` members after `error` and `message`.
    pub fn response_with(&self, extra: serde_json::Map<String, serde_json::Value>) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header(("Cache-Control", "no-store"));
        if matches!(self, Self::MethodNotAllowed) {
            response.insert_header(("Allow", "GET, HEAD"));
        }
        match self {
            Self::Unavailable | Self::AuditUnavailable | Self::AuthUnavailable => {
                response.insert_header(("Retry-After", "5"));
            }
            Self::RateLimited(secs) => {
                response.insert_header(("Retry-After", secs.to_string()));
            }
            Self::Unauthenticated => {
                response.insert_header(("WWW-Authenticate", r#"Bearer realm="order-svc""#));
            }
            Self::InvalidToken(why) => {
                response.insert_header((
                    "WWW-Authenticate",
                    format!(r#"Bearer realm="order-svc", error="invalid_token", error_description="{why}""#),
                ));
            }
            Self::Forbidden(scope) => {
                response.insert_header((
                    "WWW-Authenticate",
                    format!(
                        r#"Bearer realm="order-svc", error="insufficient_scope", scope="{scope}""#
                    ),
                ));
            }
            _ => {}
        }
        let mut body = json!({"error": self.code(), "message": self.to_string()});
        if let Some(members) = body.as_object_mut() {
            members.extend(extra);
        }
        response.json(body)
    }
}
