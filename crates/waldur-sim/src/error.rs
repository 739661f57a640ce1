//! Mastermind's error shapes (§1.1–1.2): `{"detail": ...}` for 401/403/404/405/409, field maps or
//! bare lists for 400.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
    /// Answer with Django's HTML error page instead of DRF's JSON (an unhandled exception on
    /// the server, see [`crate::profile`]).
    pub html: bool,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            html: false,
        }
    }
    /// Django's HTML 500 page: what Mastermind answers when a view raises.
    pub fn server_error_page() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: Value::Null,
            html: true,
        }
    }
    pub fn detail(status: StatusCode, msg: impl Into<String>) -> Self {
        Self::new(status, json!({ "detail": msg.into() }))
    }
    pub fn unauthorized(msg: &str) -> Self {
        Self::detail(StatusCode::UNAUTHORIZED, msg)
    }
    pub fn forbidden() -> Self {
        Self::detail(
            StatusCode::FORBIDDEN,
            "You do not have permission to perform this action.",
        )
    }
    pub fn not_found() -> Self {
        Self::detail(StatusCode::NOT_FOUND, "Not found.")
    }
    /// 409 from `StateValidator`: lists the states the operation accepts.
    pub fn invalid_state(valid: &[&str]) -> Self {
        Self::detail(
            StatusCode::CONFLICT,
            format!("Valid states for operation: {}.", valid.join(", ")),
        )
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::detail(StatusCode::CONFLICT, msg)
    }
    /// 400 with a field error map: `{"field": ["msg"]}`.
    pub fn field(field: &str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, json!({ field: [msg.into()] }))
    }
    pub fn required(field: &str) -> Self {
        Self::field(field, "This field is required.")
    }
    /// 400 raised with a plain string: a bare JSON list.
    pub fn bare(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, json!([msg.into()]))
    }
    pub fn method_not_allowed(method: &str) -> Self {
        Self::detail(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method \"{method}\" not allowed."),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.html {
            return crate::profile::django_server_error();
        }
        let mut resp = (self.status, axum::Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
        }
        resp
    }
}

/// Errors of the simulator as a library (start-up, seed loading).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read seed file {path}: {source}")]
    SeedRead {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid seed: {0}")]
    Seed(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
}
