//! The error response of every route: status, stable code, message, as
//! `ApiError {code, message}` JSON (plus Retry-After when rate-limited).

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dispatch_api::ErrorCode;
use dispatch_api::rest::ApiError;

use crate::auth::AuthFailure;
use crate::backend::BackendError;

/// An error response: status, stable code, message.
#[derive(Debug)]
pub struct Fail {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    retry_after: Option<Duration>,
}

impl Fail {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Fail {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let body = ApiError {
            code: self.code,
            message: self.message,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

impl From<AuthFailure> for Fail {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::Unauthorized(why) => {
                Fail::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, why)
            }
            AuthFailure::RateLimited(after) => Fail {
                retry_after: Some(after),
                ..Fail::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::RateLimited,
                    "too many failed attempts from this address; try again later",
                )
            },
        }
    }
}

impl From<BackendError> for Fail {
    fn from(e: BackendError) -> Self {
        let status = match e {
            BackendError::NoSuchWorkspace(_) => StatusCode::NOT_FOUND,
            BackendError::AlreadyExists(_) => StatusCode::CONFLICT,
            BackendError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            BackendError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("backend: {e}");
        }
        Fail::new(status, e.code(), e.to_string())
    }
}

pub fn bad_json(e: JsonRejection) -> Fail {
    Fail::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::BadMessage,
        e.body_text(),
    )
}
