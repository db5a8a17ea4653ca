//! JSON errors with stable codes: `{"error": "<code>", "message": "<text>"}`. Internal
//! details are logged, never returned.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::domain::browse::BrowseError;
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
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUid => "invalid_uid",
            Self::NotFound | Self::NoRoute => "not_found",
            Self::InvalidQuery(_) => "invalid_query",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UriTooLong => "uri_too_long",
            Self::Unavailable => "unavailable",
            Self::Unreadable => "order_unreadable",
            Self::Internal => "internal",
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

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidUid | Self::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            Self::NotFound | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
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
        if matches!(self, Self::Unavailable) {
            response.insert_header(("Retry-After", "5"));
        }
        let mut body = json!({"error": self.code(), "message": self.to_string()});
        if let Some(members) = body.as_object_mut() {
            members.extend(extra);
        }
        response.json(body)
    }
}
