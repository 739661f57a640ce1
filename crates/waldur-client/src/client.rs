//! The HTTP core: base URL, authentication (static token or OIDC client credentials), request
//! execution with error classification, and Link-header pagination.

use std::fmt;
use std::sync::{Arc, Once};
use std::time::Duration;

use http_kit::{HttpSettings, OAuth2Grant, OAuth2Token, RestClient, RetryPolicy, TokenSource};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, LINK};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::error::{WaldurError, safe_url};

/// A credential: the agent's one secret type (`Debug` and `Display` print `***`).
pub use http_kit::Secret;

/// How the agent authenticates to Mastermind.
#[derive(Clone, Debug)]
pub enum Auth {
    /// `Authorization: Token <key>`.
    Token(Secret),
    /// OIDC client-credentials grant; the access token is sent as `Bearer`.
    Oidc {
        token_url: String,
        client_id: String,
        client_secret: Secret,
    },
}

/// Everything needed to build a [`WaldurClient`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// `waldur_api_url` from the config; a trailing `/api/` (or `/api`) is removed.
    pub api_url: String,
    pub auth: Auth,
    /// e.g. `waldur-site-agent-order_process/0.1.0` (Mastermind sniffs `waldur-site-agent`).
    pub user_agent: String,
    pub verify_tls: bool,
    pub proxy: Option<String>,
    /// Whole-request timeout.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Largest response body read, in bytes; enforced while the body streams in.
    pub max_response_bytes: u64,
    /// Most pages one listing follows through `Link: rel="next"`.
    pub max_pages: u32,
}

impl ClientOptions {
    pub fn new(api_url: impl Into<String>, auth: Auth) -> Self {
        ClientOptions {
            api_url: api_url.into(),
            auth,
            user_agent: format!("waldur-site-agent/{}", env!("CARGO_PKG_VERSION")),
            verify_tls: true,
            proxy: None,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_pages: DEFAULT_MAX_PAGES,
        }
    }

    /// Apply [`MAX_RESPONSE_MB_ENV`] and [`MAX_PAGES_ENV`] when set (`env` stands for the process
    /// environment); the error names the variable and the value.
    pub fn apply_env_limits(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let read = |name: &str| -> Result<Option<u64>, String> {
            match env(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(format!("{name}={v:?} is not a whole number above 0")),
                },
            }
        };
        if let Some(mb) = read(MAX_RESPONSE_MB_ENV)? {
            self.max_response_bytes = mb
                .checked_mul(1024 * 1024)
                .ok_or_else(|| format!("{MAX_RESPONSE_MB_ENV}={mb} is too large"))?;
        }
        if let Some(pages) = read(MAX_PAGES_ENV)? {
            self.max_pages = u32::try_from(pages)
                .map_err(|_| format!("{MAX_PAGES_ENV}={pages} is too large"))?;
        }
        Ok(())
    }
}

/// Default cap on one response body: 64 MiB (a page of 100 orders is a few hundred KiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// Default cap on the pages of one listing: 10 000 pages of 100 items.
pub const DEFAULT_MAX_PAGES: u32 = 10_000;
/// Environment variable overriding [`DEFAULT_MAX_RESPONSE_BYTES`], in MiB.
pub const MAX_RESPONSE_MB_ENV: &str = "WALDUR_SITE_AGENT_MAX_RESPONSE_MB";
/// Environment variable overriding [`DEFAULT_MAX_PAGES`].
pub const MAX_PAGES_ENV: &str = "WALDUR_SITE_AGENT_MAX_PAGES";

/// Query parameters; repeated keys are kept (`state=a&state=b`, `field=x&field=y`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn new() -> Self {
        Params::default()
    }
    pub fn add(mut self, key: &str, value: impl ToString) -> Self {
        self.0.push((key.to_owned(), value.to_string()));
        self
    }
    pub fn add_opt(self, key: &str, value: Option<impl ToString>) -> Self {
        match value {
            Some(v) => self.add(key, v),
            None => self,
        }
    }
    pub fn add_all<I, V>(mut self, key: &str, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: ToString,
    {
        for value in values {
            self.0.push((key.to_owned(), value.to_string()));
        }
        self
    }
    /// Sparse field selection (`field=a&field=b`).
    pub fn fields(self, fields: &[&str]) -> Self {
        self.add_all("field", fields.iter())
    }
    fn set(&mut self, key: &str, value: impl ToString) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value.to_string()));
    }
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// Page size used when fetching all pages (upstream uses 100; Mastermind caps at 300).
pub const PAGE_SIZE: u32 = 300;
/// Timeout of one OIDC token request.
const OIDC_TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

static INSTALL_CRYPTO: Once = Once::new();

/// Typed async client for the Mastermind endpoints the agent uses. Cheap to clone.
#[derive(Clone)]
pub struct WaldurClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Origin plus any path prefix, without trailing `/` and without `/api`.
    base: String,
    auth: Auth,
    /// The OIDC client-credentials token source (the HTTP kit's), for `Auth::Oidc`.
    oidc: Option<OAuth2Token>,
    max_response_bytes: u64,
    max_pages: u32,
}

impl fmt::Debug for WaldurClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaldurClient")
            .field("base", &self.inner.base)
            .field("auth", &self.inner.auth)
            .finish()
    }
}

/// Remove a literal trailing `/api/` or `/api` (not a character set, unlike upstream) and any
/// trailing slashes.
pub fn strip_api_suffix(api_url: &str) -> String {
    let trimmed = api_url.trim();
    let without = trimmed
        .strip_suffix("/api/")
        .or_else(|| trimmed.strip_suffix("/api"))
        .unwrap_or(trimmed);
    without.trim_end_matches('/').to_owned()
}

/// The OIDC client-credentials source on the HTTP kit: same TLS verification, proxy and response
/// cap as the Waldur requests; no retries (a failed token request fails the call, as any other).
fn oidc_source(
    options: &ClientOptions,
    token_url: &str,
    client_id: &str,
    client_secret: &Secret,
) -> Result<OAuth2Token, WaldurError> {
    let url = Url::parse(token_url)
        .map_err(|e| WaldurError::config(format!("invalid OIDC token URL: {e}")))?;
    let mut settings = HttpSettings::new("Waldur OIDC login", "waldur-oidc", url);
    settings.verify_tls = options.verify_tls;
    settings.proxy = options.proxy.clone();
    settings.timeout = OIDC_TOKEN_TIMEOUT;
    settings.connect_timeout = options.connect_timeout;
    settings.user_agent = options.user_agent.clone();
    settings.retry = RetryPolicy::none();
    settings.max_response_bytes = options.max_response_bytes.max(1);
    let http = RestClient::new(&settings)
        .map_err(|e| WaldurError::config(format!("cannot build the OIDC client: {e}")))?;
    Ok(OAuth2Token::new(
        token_url,
        OAuth2Grant::ClientCredentials {
            client_id: client_id.to_owned(),
            client_secret: client_secret.clone(),
            scope: None,
        },
        http,
    ))
}

/// A decoded response: status, headers and the raw body.
pub(crate) struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    pub url: String,
}

impl WaldurClient {
    pub fn new(options: ClientOptions) -> Result<Self, WaldurError> {
        INSTALL_CRYPTO.call_once(|| {
            // Another crate may have installed a provider first; either way one is in place.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let base = strip_api_suffix(&options.api_url);
        let parsed = Url::parse(&base)
            .map_err(|e| WaldurError::config(format!("invalid Waldur API URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(WaldurError::config(format!(
                "Waldur API URL must be http(s), got scheme '{}'",
                parsed.scheme()
            )));
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .danger_accept_invalid_certs(!options.verify_tls);
        if let Some(proxy) = options.proxy.as_deref().filter(|p| !p.trim().is_empty()) {
            let proxy = reqwest::Proxy::all(proxy.trim())
                .map_err(|e| WaldurError::config(format!("invalid proxy: {e}")))?;
            builder = builder.proxy(proxy);
        }
        let http = builder
            .build()
            .map_err(|e| WaldurError::config(format!("cannot build HTTP client: {e}")))?;
        let oidc = match &options.auth {
            Auth::Token(_) => None,
            Auth::Oidc {
                token_url,
                client_id,
                client_secret,
            } => Some(oidc_source(&options, token_url, client_id, client_secret)?),
        };
        Ok(WaldurClient {
            inner: Arc::new(Inner {
                http,
                base,
                auth: options.auth,
                oidc,
                max_response_bytes: options.max_response_bytes.max(1),
                max_pages: options.max_pages.max(1),
            }),
        })
    }

    /// The API root without `/api` (e.g. `https://waldur.example.com`).
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    fn url(&self, path: &str, params: &Params) -> Result<Url, WaldurError> {
        check_api_path(path)?;
        let mut url = Url::parse(&format!("{}{}", self.inner.base, path))
            .map_err(|e| WaldurError::config(format!("invalid request path {path}: {e}")))?;
        if !params.0.is_empty() {
            url.query_pairs_mut().extend_pairs(params.0.iter());
        }
        Ok(url)
    }

    async fn authorization(&self) -> Result<String, WaldurError> {
        match (&self.inner.auth, &self.inner.oidc) {
            (Auth::Oidc { token_url, .. }, Some(source)) => {
                let token = source.token(None).await.map_err(|e| {
                    let shown = Url::parse(token_url)
                        .map(|u| format!("POST {}", safe_url(&u)))
                        .unwrap_or_else(|_| "POST <OIDC token URL>".to_owned());
                    WaldurError::from_http(shown, &e)
                })?;
                Ok(format!("Bearer {}", token.expose()))
            }
            (Auth::Token(token), _) => Ok(format!("Token {}", token.expose())),
            (Auth::Oidc { .. }, None) => Err(WaldurError::config("OIDC token source missing")),
        }
    }

    /// Send one request; non-2xx statuses become classified errors.
    pub(crate) async fn execute(
        &self,
        method: Method,
        path: &str,
        params: &Params,
        body: Option<&Value>,
    ) -> Result<RawResponse, WaldurError> {
        let url = self.url(path, params)?;
        self.execute_url(method, url, body).await
    }

    async fn execute_url(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<RawResponse, WaldurError> {
        let shown = format!("{method} {}", safe_url(&url));
        let authorization = self.authorization().await?;
        let mut request = self
            .inner
            .http
            .request(method.clone(), url)
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        tracing::debug!(request = %shown, "waldur request");
        let response = request
            .send()
            .await
            .map_err(|e| WaldurError::transport(shown.clone(), &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = read_body(response, self.inner.max_response_bytes, &shown).await?;
        if status == StatusCode::UNAUTHORIZED {
            // An OIDC token may have been revoked early: fetch a new one next time.
            if let Some(source) = &self.inner.oidc {
                source.forget().await;
            }
        }
        if !status.is_success() {
            return Err(WaldurError::from_status(status.as_u16(), shown, &text));
        }
        Ok(RawResponse {
            status,
            headers,
            body: text,
            url: shown,
        })
    }

    /// GET and decode JSON.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &Params,
    ) -> Result<T, WaldurError> {
        let raw = self.execute(Method::GET, path, params, None).await?;
        decode(&raw)
    }

    /// The first page of a list endpoint and the total the server announces (`X-Result-Count`,
    /// `None` when it sends none).
    pub async fn first_page_and_count<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &Params,
    ) -> Result<(Vec<T>, Option<usize>), WaldurError> {
        let raw = self.execute(Method::GET, path, params, None).await?;
        let count = result_count(&raw.headers);
        Ok((decode(&raw)?, count))
    }

    /// POST a JSON body (or none) and decode the JSON answer.
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, WaldurError> {
        let raw = self.send_body(Method::POST, path, body).await?;
        decode(&raw)
    }

    /// POST and ignore the answer (actions that return an empty body or a status message).
    pub async fn post_action<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), WaldurError> {
        self.send_body(Method::POST, path, body).await.map(|_| ())
    }

    pub(crate) async fn send_body<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<RawResponse, WaldurError> {
        let value = match body {
            Some(b) => Some(serde_json::to_value(b).map_err(|e| {
                WaldurError::config(format!("cannot encode request body for {path}: {e}"))
            })?),
            None => None,
        };
        self.execute(method, path, &Params::new(), value.as_ref())
            .await
    }

    /// One page of a list endpoint (the server's default page size unless `params` sets one).
    pub async fn list_page<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &Params,
    ) -> Result<Vec<T>, WaldurError> {
        self.get_json(path, params).await
    }

    /// Every item of a list endpoint: `page_size=300` (Mastermind's maximum), following `Link: <…>; rel="next"`.
    ///
    /// A chain that does not end is an error, never a silent truncation: more than `max_pages`
    /// pages, or a `next` link that does not move forward (the same or an earlier page).
    pub async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &Params,
    ) -> Result<Vec<T>, WaldurError> {
        let mut query = params.clone();
        query.set("page_size", PAGE_SIZE);
        let max_pages = self.inner.max_pages;
        let mut page: u32 = 1;
        let mut items = Vec::new();
        loop {
            if page > 1 {
                query.set("page", page);
            }
            let raw = self.execute(Method::GET, path, &query, None).await?;
            let mut batch: Vec<T> = decode(&raw)?;
            let batch_len = batch.len();
            if page == 1 {
                // Sized once from the total the server announces: growing a vector of thousands
                // of items by doubling holds the old and the new buffer at once.
                items.reserve(
                    result_count(&raw.headers)
                        .unwrap_or(0)
                        .min(MAX_RESERVED_ITEMS),
                );
            }
            items.append(&mut batch);
            let Some(next) = next_page(&raw.headers) else {
                break;
            };
            if batch_len == 0 {
                // An empty page cannot be followed by items: the listing is complete.
                break;
            }
            // Re-issue against our own base URL with the `page` number from the link: a proxy in
            // front of Mastermind may render links with an internal host name.
            let next_number = next.unwrap_or(page.saturating_add(1));
            if next_number <= page {
                return Err(WaldurError::pagination(
                    format!("GET {path}"),
                    format!(
                        "pagination does not advance: page {page} links to page {next_number} as next; refusing to loop"
                    ),
                ));
            }
            if next_number > max_pages {
                return Err(WaldurError::pagination(
                    format!("GET {path}"),
                    format!(
                        "pagination goes on past {max_pages} pages ({} items read); stopped (raise {MAX_PAGES_ENV} if the listing is really this long)",
                        items.len()
                    ),
                ));
            }
            page = next_number;
        }
        Ok(items)
    }
}

/// Read a response body of at most `cap` bytes, chunk by chunk: a body that declares more, or
/// grows past it while streaming, is refused without holding more than `cap` bytes.
async fn read_body(
    mut response: reqwest::Response,
    cap: u64,
    shown: &str,
) -> Result<String, WaldurError> {
    let declared = response.content_length();
    if let Some(len) = declared
        && len > cap
    {
        return Err(WaldurError::too_large(shown.to_owned(), cap, Some(len)));
    }
    const INITIAL: u64 = 64 * 1024;
    let capacity = declared.unwrap_or(INITIAL).min(cap).min(INITIAL * 16);
    let mut body: Vec<u8> = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| WaldurError::transport(shown.to_owned(), &e))?
    {
        if (body.len() as u64).saturating_add(chunk.len() as u64) > cap {
            return Err(WaldurError::too_large(shown.to_owned(), cap, None));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(match String::from_utf8(body) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Requests only ever go to `/api/...` of the configured server. Paths are built from constants
/// and checked UUIDs; this is the second line: no `..`/`.` segment, no query, fragment or escape
/// that could make the URL parser land on another endpoint.
fn check_api_path(path: &str) -> Result<(), WaldurError> {
    let refuse = |why: &str| {
        Err(WaldurError::config(format!(
            "refused request path '{}': {why}; no request was made",
            path.escape_default()
        )))
    };
    if !path.starts_with("/api/") {
        return refuse("it is not under /api/");
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_')))
    {
        return refuse(&format!("character {c:?} is not allowed in a path"));
    }
    Ok(())
}

/// `Some(Some(n))` when the Link header has `rel="next"` with a page number, `Some(None)` when
/// it has a next link without a readable page, `None` when there is no next page.
/// At most this many items are reserved from `X-Result-Count` (a number from the network).
const MAX_RESERVED_ITEMS: usize = 100_000;

/// Mastermind's `X-Result-Count`: the number of items in the whole listing.
fn result_count(headers: &HeaderMap) -> Option<usize> {
    headers
        .get("x-result-count")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn next_page(headers: &HeaderMap) -> Option<Option<u32>> {
    for value in headers.get_all(LINK) {
        let Ok(text) = value.to_str() else { continue };
        for part in text.split(',') {
            let mut pieces = part.split(';');
            let Some(target) = pieces.next() else {
                continue;
            };
            let is_next = pieces.any(|p| {
                let p = p.trim();
                p == "rel=\"next\"" || p == "rel=next"
            });
            if !is_next {
                continue;
            }
            let target = target.trim().trim_start_matches('<').trim_end_matches('>');
            let page = Url::parse(target).ok().and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "page")
                    .and_then(|(_, v)| v.parse::<u32>().ok())
            });
            return Some(page);
        }
    }
    None
}

/// Decode a JSON body. Nulls inside objects are dropped first so that `#[serde(default)]` fields
/// accept `null` (Mastermind sends `null` for many unset strings).
pub(crate) fn decode<T: DeserializeOwned>(raw: &RawResponse) -> Result<T, WaldurError> {
    let body = if raw.body.trim().is_empty() {
        "null"
    } else {
        raw.body.as_str()
    };
    let mut value: Value = serde_json::from_str(body)
        .map_err(|e| WaldurError::decode(raw.url.clone(), e, &raw.body))?;
    strip_nulls(&mut value);
    serde_json::from_value(value).map_err(|e| {
        WaldurError::decode(
            format!("{} (status {})", raw.url, raw.status.as_u16()),
            e,
            &raw.body,
        )
    })
}

fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_literal_api_suffix_is_stripped() {
        assert_eq!(
            strip_api_suffix("https://w.example/api/"),
            "https://w.example"
        );
        assert_eq!(
            strip_api_suffix("https://w.example/api"),
            "https://w.example"
        );
        assert_eq!(strip_api_suffix("https://w.example/"), "https://w.example");
        // Upstream's rstrip("/api") would mangle these host names.
        assert_eq!(strip_api_suffix("https://tapi"), "https://tapi");
        assert_eq!(
            strip_api_suffix("https://example.pa/"),
            "https://example.pa"
        );
        assert_eq!(
            strip_api_suffix("https://h/waldur/api/"),
            "https://h/waldur"
        );
    }

    #[test]
    fn secret_debug_is_masked() {
        let auth = Auth::Token(Secret::new("tok-123"));
        assert!(!format!("{auth:?}").contains("tok-123"));
        assert_eq!(format!("{}", Secret::new("x")), "***");
    }
}
