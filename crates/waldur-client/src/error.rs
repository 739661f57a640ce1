//! Errors of the Waldur client, classified so callers can decide whether to retry.

use std::fmt;

/// What kind of failure happened; drives retry decisions in the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 5xx, 429, connection refused/reset, timeout: the same call may succeed later.
    Transient,
    /// 404: the object (or, on an old Mastermind, the whole endpoint) does not exist.
    NotFound,
    /// 409: the object is in a state that does not allow the action.
    Conflict,
    /// 401/403: the credentials are wrong or lack a role.
    Unauthorized,
    /// 400 and other 4xx: the request is wrong; retrying will not help.
    Permanent,
    /// The response could not be read as the expected JSON.
    Decode,
    /// The client itself is misconfigured (bad URL, bad proxy, TLS setup).
    Config,
}

/// An error talking to Waldur. Never contains credentials: the URL is stripped of user info and
/// secret query parameters, and bodies are only ever server responses.
#[derive(Clone, Debug)]
pub struct WaldurError {
    pub kind: ErrorKind,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// Method and URL of the request, secrets removed.
    pub url: String,
    /// What went wrong: a response body excerpt or a transport error description.
    pub message: String,
}

const BODY_EXCERPT_CHARS: usize = 500;

impl WaldurError {
    pub(crate) fn from_status(status: u16, url: String, body: &str) -> Self {
        let kind = match status {
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            401 | 403 => ErrorKind::Unauthorized,
            429 | 500..=599 => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        };
        WaldurError {
            kind,
            status: Some(status),
            url,
            message: excerpt(body),
        }
    }

    pub(crate) fn transport(url: String, err: &reqwest::Error) -> Self {
        // Connect, timeout and body/stream failures are all worth retrying; a request that could
        // not even be built (bad URL, bad header) is a configuration problem.
        let kind = if err.is_builder() {
            ErrorKind::Config
        } else if err.is_decode() {
            ErrorKind::Decode
        } else {
            ErrorKind::Transient
        };
        let mut message = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(inner) = source {
            message.push_str(": ");
            message.push_str(&inner.to_string());
            source = inner.source();
        }
        WaldurError {
            kind,
            status: None,
            url,
            message: redact_urls(&message),
        }
    }

    pub(crate) fn decode(url: String, detail: impl fmt::Display, body: &str) -> Self {
        WaldurError {
            kind: ErrorKind::Decode,
            status: None,
            url,
            message: format!("unexpected response ({detail}): {}", excerpt(body)),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        WaldurError {
            kind: ErrorKind::Config,
            status: None,
            url: String::new(),
            message: message.into(),
        }
    }

    /// 5xx, 429, connect/reset and timeouts: leave the work for a later attempt.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    /// 404 — also how an older Mastermind answers endpoints it does not have.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// 409 — wrong state for the action.
    pub fn is_conflict(&self) -> bool {
        self.kind == ErrorKind::Conflict
    }

    /// A 400 whose body mentions `needle` (e.g. "backfilling past billing periods").
    pub fn body_contains(&self, needle: &str) -> bool {
        self.message.contains(needle)
    }
}

impl fmt::Display for WaldurError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(
                f,
                "Waldur returned {status} for {}: {}",
                self.url, self.message
            ),
            None => write!(f, "Waldur request {} failed: {}", self.url, self.message),
        }
    }
}

impl std::error::Error for WaldurError {}

fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    if trimmed.chars().count() <= BODY_EXCERPT_CHARS {
        return trimmed.to_owned();
    }
    let mut cut: String = trimmed.chars().take(BODY_EXCERPT_CHARS).collect();
    cut.push('…');
    cut
}

/// Query parameters whose values must never appear in errors or logs.
const SECRET_PARAMS: &[&str] = &[
    "x-auth-token",
    "token",
    "api_key",
    "apikey",
    "password",
    "secret",
    "client_secret",
];

/// A URL safe to show: no user info, secret query values replaced by `***`.
pub(crate) fn safe_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                if SECRET_PARAMS.contains(&lower.as_str()) {
                    (k.into_owned(), "***".to_owned())
                } else {
                    (k.into_owned(), v.into_owned())
                }
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// reqwest's error text embeds the URL; re-render any URL it contains through [`safe_url`].
fn redact_urls(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let trimmed = word.trim_matches(|c| c == '(' || c == ')' || c == ',');
            match url::Url::parse(trimmed) {
                Ok(parsed) if parsed.has_host() => word.replace(trimmed, &safe_url(&parsed)),
                _ => word.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
