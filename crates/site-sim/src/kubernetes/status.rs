//! Kubernetes `Status` objects: every error the double answers has the real shape
//! (`kind: Status`, `status: Failure`, `message`, `reason`, `details`, `code`).

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::resources::ResourceDef;

/// An error answered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// Boxed: the error travels in every `Result` of the handlers.
    pub details: Option<Box<Value>>,
    /// `Retry-After` seconds, for 429 and 5xx.
    pub retry_after: Option<u32>,
}

/// One field error of an `Invalid` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueForbidden`...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn invalid(field: impl Into<String>, value: &str, why: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {why}", json!(value)),
        }
    }
    pub fn required(field: impl Into<String>) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        }
    }
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Cause {
        let list: Vec<String> = supported.iter().map(|s| json!(s).to_string()).collect();
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                json!(value),
                list.join(", ")
            ),
        }
    }
    pub fn forbidden(field: impl Into<String>, why: &str) -> Cause {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {why}"),
        }
    }
}

fn details(def: &ResourceDef, name: &str, kind: &str) -> Value {
    let mut d = json!({"name": name, "kind": kind});
    if !def.group.is_empty() {
        d["group"] = json!(def.group);
    }
    d
}

impl KubeError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> KubeError {
        KubeError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// `namespaces "x" not found`.
    pub fn not_found(def: &ResourceDef, name: &str) -> KubeError {
        KubeError {
            details: Some(Box::new(details(def, name, def.plural))),
            ..Self::new(
                404,
                "NotFound",
                format!("{} {} not found", def.qualified(), json!(name)),
            )
        }
    }

    /// A path the server does not serve.
    pub fn no_such_path() -> KubeError {
        KubeError {
            details: Some(Box::new(json!({}))),
            ..Self::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    }

    pub fn already_exists(def: &ResourceDef, name: &str) -> KubeError {
        KubeError {
            details: Some(Box::new(details(def, name, def.plural))),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} {} already exists", def.qualified(), json!(name)),
            )
        }
    }

    /// 409 Conflict, e.g. a stale `resourceVersion`.
    pub fn conflict(def: &ResourceDef, name: &str, why: &str) -> KubeError {
        KubeError {
            details: Some(Box::new(details(def, name, def.plural))),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {}: {why}",
                    def.qualified(),
                    json!(name)
                ),
            )
        }
    }

    pub fn stale(def: &ResourceDef, name: &str) -> KubeError {
        Self::conflict(
            def,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid with one cause per field error.
    pub fn invalid(def: &ResourceDef, name: &str, causes: Vec<Cause>) -> KubeError {
        let parts: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let summary = if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("[{}]", parts.join(", "))
        };
        let mut d = details(def, name, def.kind);
        d["causes"] = Value::Array(
            causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect(),
        );
        KubeError {
            details: Some(Box::new(d)),
            ..Self::new(
                422,
                "Invalid",
                format!("{} {} is invalid: {summary}", def.kind, json!(name)),
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> KubeError {
        Self::new(400, "BadRequest", message)
    }

    /// `namespaces "x" is forbidden: <why>`.
    pub fn forbidden(def: &ResourceDef, name: &str, why: &str) -> KubeError {
        KubeError {
            details: Some(Box::new(details(def, name, def.plural))),
            ..Self::new(
                403,
                "Forbidden",
                format!("{} {} is forbidden: {why}", def.qualified(), json!(name)),
            )
        }
    }

    pub fn unauthorized() -> KubeError {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed() -> KubeError {
        KubeError {
            details: Some(Box::new(json!({}))),
            ..Self::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        }
    }

    pub fn unsupported_media_type(content_type: &str) -> KubeError {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    /// 410 Gone for a `continue` token or watch `resourceVersion` the server no longer has.
    pub fn expired(message: impl Into<String>) -> KubeError {
        Self::new(410, "Expired", message)
    }

    /// The error a fault rule injects, as the API server (or the proxy before it) answers it.
    pub fn injected(code: u16) -> KubeError {
        let (reason, message) = match code {
            429 => (
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ),
            503 => (
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            504 => (
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still be processing the request",
            ),
            _ => ("InternalError", "Internal error occurred: simulated fault"),
        };
        KubeError {
            retry_after: Some(1),
            details: Some(Box::new(json!({"retryAfterSeconds": 1}))),
            ..Self::new(code, reason, message)
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = (**d).clone();
        }
        v
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// `{"kind":"Status","status":"Success",...}` as a delete answers it.
pub fn success(details: Option<Value>) -> Value {
    let mut v = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
    });
    if let Some(d) = details {
        v["details"] = d;
    }
    v
}

pub type KubeResult<T> = Result<T, KubeError>;
