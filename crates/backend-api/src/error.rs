//! Backend errors. Each knows whether retrying later can help ([`BackendError::is_transient`]).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BackendError {
    /// The site already has a resource with this id; the core may retry with another id.
    #[error("resource '{backend_id}' already exists on the site")]
    Duplicate { backend_id: String },

    /// The site cannot take work right now (down, maintenance); leave orders untouched.
    #[error("backend not ready: {0}")]
    NotReady(String),

    /// A name that could change the meaning of a command or path was refused before anything ran.
    #[error("refused {what} '{value}': {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: std::borrow::Cow<'static, str>,
    },

    /// A limit that is not finite, negative, outside the component's range or not representable
    /// on the site; refused before anything is written. The message names component, value and
    /// the allowed range, and is meant for the user who ordered.
    #[error(transparent)]
    Limit(#[from] crate::units::LimitError),

    /// An external command failed. `command` is the argument vector joined for display.
    #[error("command `{command}` failed (exit {exit}): {output}")]
    Command {
        command: String,
        exit: String,
        output: String,
        transient: bool,
    },

    /// An external call did not finish in time.
    #[error("{what} timed out after {seconds} s")]
    Timeout { what: String, seconds: u64 },

    /// A failure that should clear by itself (connection refused, 5xx, lock contention).
    #[error("{0}")]
    Transient(String),

    /// A failure that will not clear by retrying (bad request, missing permission, bad data).
    #[error("{0}")]
    Permanent(String),

    /// The offering's backend settings are wrong; names the setting and what to do.
    #[error("configuration error: {0}")]
    Config(String),

    /// Username generation needs the user to link an existing account first.
    #[error("{message}")]
    AccountLinkingRequired {
        message: String,
        comment_url: Option<String>,
    },

    /// Username generation needs extra validation by the service provider.
    #[error("{message}")]
    AdditionalValidationRequired {
        message: String,
        comment_url: Option<String>,
    },

    /// The backend does not implement this operation.
    #[error("{backend} backend does not support {operation}")]
    Unsupported {
        backend: &'static str,
        operation: &'static str,
    },
}

impl BackendError {
    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::NotReady(_)
            | BackendError::Timeout { .. }
            | BackendError::Transient(_) => true,
            BackendError::Command { transient, .. } => *transient,
            _ => false,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        BackendError::Permanent(message.into())
    }

    pub fn transient(message: impl Into<String>) -> Self {
        BackendError::Transient(message.into())
    }
}

pub type BackendResult<T> = Result<T, BackendError>;

/// The one mapping of HTTP failures (any REST backend on [`http_kit`]): credentials refused or a
/// client that cannot be built → `Config`; timeouts → `Timeout`; unreachable, 5xx, 429 →
/// `Transient`; anything else → `Permanent`. The message keeps the API's own words.
impl From<http_kit::HttpError> for BackendError {
    fn from(err: http_kit::HttpError) -> Self {
        if err.is_config() {
            return BackendError::Config(err.to_string());
        }
        if let Some(seconds) = err.timeout_seconds() {
            return BackendError::Timeout {
                what: err.to_string(),
                seconds,
            };
        }
        if err.is_transient() {
            BackendError::Transient(err.to_string())
        } else {
            BackendError::Permanent(err.to_string())
        }
    }
}
