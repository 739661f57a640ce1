//! One error type for every HTTP call, classified once.

/// A failed HTTP call. `context` names who called (e.g. `offering 'hpc'`); the message never
/// holds a secret (bodies of token answers are withheld, headers are never shown).
#[derive(Debug, thiserror::Error)]
#[error("{context}: {kind}")]
pub struct HttpError {
    pub context: String,
    pub kind: HttpErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpErrorKind {
    /// Connection refused, DNS or TLS failure: the service may come back.
    #[error("{target} is unreachable: {detail}")]
    Unreachable { target: String, detail: String },
    #[error("{what} timed out after {seconds} s ({target})")]
    Timeout {
        target: String,
        what: String,
        seconds: u64,
    },
    /// The service refused our credentials: a configuration problem.
    #[error("{target} rejected the credentials of {principal} (HTTP {status}); check {hint}")]
    AuthRejected {
        target: String,
        principal: String,
        status: u16,
        hint: String,
    },
    /// Any other non-success answer; `message` comes from the API's [`crate::ErrorBodyHook`].
    #[error("{what} answered HTTP {status}: {message}")]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    /// A success answer that could not be understood.
    #[error("unexpected answer to {what}: {detail}")]
    Decode { what: String, detail: String },
    #[error("the answer to {what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    /// The client could not be built (CA bundle, proxy, URL): a configuration problem.
    #[error("{0}")]
    Setup(String),
}

pub type HttpResult<T> = Result<T, HttpError>;

impl HttpError {
    pub fn new(context: impl Into<String>, kind: HttpErrorKind) -> Self {
        HttpError {
            context: context.into(),
            kind,
        }
    }

    pub fn setup(context: impl Into<String>, message: impl Into<String>) -> Self {
        HttpError::new(context, HttpErrorKind::Setup(message.into()))
    }

    /// The HTTP status, for answers that had one.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            HttpErrorKind::Status { status, .. } | HttpErrorKind::AuthRejected { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// Whether the same call may succeed later: unreachable, timeout, 5xx, 429.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            HttpErrorKind::Unreachable { .. } | HttpErrorKind::Timeout { .. } => true,
            HttpErrorKind::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// Whether the problem is the configuration (credentials refused, client not buildable).
    pub fn is_config(&self) -> bool {
        matches!(
            self.kind,
            HttpErrorKind::AuthRejected { .. } | HttpErrorKind::Setup(_)
        )
    }

    /// The timeout in seconds, for timeouts.
    pub fn timeout_seconds(&self) -> Option<u64> {
        match &self.kind {
            HttpErrorKind::Timeout { seconds, .. } => Some(*seconds),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let status = |s| {
            HttpError::new(
                "c",
                HttpErrorKind::Status {
                    what: "GET /x".into(),
                    status: s,
                    message: "m".into(),
                },
            )
        };
        assert!(status(503).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(404).is_transient());
        assert_eq!(status(409).status(), Some(409));
        let refused = HttpError::new(
            "offering 'x'",
            HttpErrorKind::AuthRejected {
                target: "Keystone at http://k/v3".into(),
                principal: "user 'admin'".into(),
                status: 401,
                hint: "backend_settings".into(),
            },
        );
        assert!(refused.is_config() && !refused.is_transient());
        assert!(
            refused
                .to_string()
                .starts_with("offering 'x': Keystone at http://k/v3")
        );
    }
}
