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
    /// The response could not be used: not the expected JSON, a body over the size cap, or
    /// pagination that does not end. A broken server or proxy; retrying soon will not help.
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

    /// An id from Waldur (a response or an event) that is not a UUID, refused before it could
    /// become part of a request path. No request was made.
    pub(crate) fn invalid_id(what: &str, value: &str) -> Self {
        const SHOWN_CHARS: usize = 80;
        let mut shown: String = value.chars().take(SHOWN_CHARS).collect();
        if value.chars().count() > SHOWN_CHARS {
            shown.push('…');
        }
        WaldurError {
            kind: ErrorKind::Permanent,
            status: None,
            url: String::new(),
            message: format!(
                "refused {what} id '{}' from Waldur: not a UUID (32 hex digits, dashes allowed), so it is not put in a request path; no request was made",
                shown.escape_default()
            ),
        }
    }

    /// The response body grew past `cap` bytes; reading stopped there.
    pub(crate) fn too_large(url: String, cap: u64, declared: Option<u64>) -> Self {
        let size = match declared {
            Some(len) => format!("declares {len} bytes"),
            None => "is larger".to_owned(),
        };
        WaldurError {
            kind: ErrorKind::Decode,
            status: None,
            url,
            message: format!(
                "response body {size}, over the cap of {} (WALDUR_SITE_AGENT_MAX_RESPONSE_MB); reading stopped",
                human_bytes(cap)
            ),
        }
    }

    /// A `Link: rel="next"` chain that does not end (or goes back).
    pub(crate) fn pagination(url: String, message: String) -> Self {
        WaldurError {
            kind: ErrorKind::Decode,
            status: None,
            url,
            message,
        }
    }

    /// A failure of the OIDC token request (made through the HTTP kit).
    pub(crate) fn from_http(url: String, err: &http_kit::HttpError) -> Self {
        let kind = match (&err.kind, err.status()) {
            (http_kit::HttpErrorKind::AuthRejected { .. }, _) => ErrorKind::Unauthorized,
            (http_kit::HttpErrorKind::Setup(_), _) => ErrorKind::Config,
            (
                http_kit::HttpErrorKind::Decode { .. } | http_kit::HttpErrorKind::TooLarge { .. },
                _,
            ) => ErrorKind::Decode,
            _ if err.is_transient() => ErrorKind::Transient,
            (_, Some(404)) => ErrorKind::NotFound,
            (_, Some(409)) => ErrorKind::Conflict,
            (_, Some(401 | 403)) => ErrorKind::Unauthorized,
            _ => ErrorKind::Permanent,
        };
        WaldurError {
            kind,
            status: err.status(),
            url,
            message: redact_urls(&err.to_string()),
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

    /// A 404 whose body is not JSON: Django's page for a URL no route matches, i.e. the server
    /// does not have this endpoint (an older Mastermind). DRF answers a missing *object* with
    /// JSON (`{"detail": "Not found."}`).
    pub fn is_missing_route(&self) -> bool {
        self.kind == ErrorKind::NotFound && !self.message.trim_start().starts_with(['{', '['])
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
            None if self.url.is_empty() => write!(f, "Waldur request failed: {}", self.message),
            None => write!(f, "Waldur request {} failed: {}", self.url, self.message),
        }
    }
}

impl std::error::Error for WaldurError {}

/// `64 MiB` for whole MiB, else bytes.
pub(crate) fn human_bytes(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n % MIB == 0 {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

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

/// A URL for display with the password of its user info masked: `http://user:pass@host/` →
/// `http://user:***@host/`. Anything else is returned unchanged, text that is not a URL included.
pub fn mask_url_password(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some(at) = authority.rfind('@') else {
        return text.to_owned();
    };
    let (userinfo, host) = authority.split_at(at);
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{host}{tail}"),
        None => text.to_owned(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_and_nothing_else_changes() {
        assert_eq!(
            mask_url_password("http://user:pass@host/"),
            "http://user:***@host/"
        );
        assert_eq!(
            mask_url_password("https://u:p%40ss:w@waldur.example:8443/api/?x=1"),
            "https://u:***@waldur.example:8443/api/?x=1"
        );
        assert_eq!(mask_url_password("https://u:p@h"), "https://u:***@h");
        assert_eq!(mask_url_password("https://u:p@h?q"), "https://u:***@h?q");
        // A user without a password, no user info, an '@' after the host, not a URL.
        assert_eq!(mask_url_password("http://user@host/"), "http://user@host/");
        assert_eq!(
            mask_url_password("http://h:8000/api/"),
            "http://h:8000/api/"
        );
        assert_eq!(mask_url_password("http://h/a@b:c"), "http://h/a@b:c");
        assert_eq!(mask_url_password("not a url"), "not a url");
    }

    #[test]
    fn a_missing_route_is_a_404_that_is_not_json() {
        let html = WaldurError::from_status(
            404,
            "POST x".into(),
            "\n<!doctype html>\n<html><h1>Not Found</h1></html>",
        );
        assert!(html.is_not_found() && html.is_missing_route());
        let json = WaldurError::from_status(404, "GET x".into(), r#"{"detail": "Not found."}"#);
        assert!(json.is_not_found() && !json.is_missing_route());
        let other = WaldurError::from_status(500, "GET x".into(), "<html>oops</html>");
        assert!(!other.is_missing_route());
    }

    #[test]
    fn safe_url_drops_user_info_and_secret_parameters() {
        let url = url::Url::parse("http://user:pass@host/api/x/?token=abc&page=2").expect("url");
        let shown = safe_url(&url);
        assert!(!shown.contains("pass") && !shown.contains("abc"), "{shown}");
        assert!(shown.contains("page=2"), "{shown}");
    }
}
