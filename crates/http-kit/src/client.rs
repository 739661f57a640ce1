//! [`RestClient`]: one configured HTTP client for one API (a backend's site, a token endpoint).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::Secret;
use crate::error::{HttpError, HttpErrorKind, HttpResult};
use crate::retry::RetryPolicy;
use crate::token::TokenSource;

/// Reads an API's error body into a short message (`None`: use the kit's default reading).
pub type ErrorBodyHook = fn(&str) -> Option<String>;

/// Everything a [`RestClient`] is built from. `Debug` shows no secret (there is none here).
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Names the caller in every error (`offering 'hpc'`).
    pub context: String,
    /// The API's name in messages and the request counter (`Keystone`, `okd`, ...).
    pub service: String,
    /// Base URL; request paths are appended to it (no trailing slash kept).
    pub base_url: Url,
    pub verify_tls: bool,
    /// A PEM bundle of extra trusted CAs.
    pub ca_bundle: Option<PathBuf>,
    /// `global_proxy` of the agent (http, https, socks5, socks5h).
    pub proxy: Option<String>,
    pub connect_timeout: Duration,
    /// Whole-request timeout (connect + send + read).
    pub timeout: Duration,
    pub user_agent: String,
    pub retry: RetryPolicy,
    /// Largest response body read, in bytes.
    pub max_response_bytes: u64,
    /// Counter name for [`request_counts`] (default: `service`).
    pub counter: Option<String>,
}

impl HttpSettings {
    pub fn new(context: impl Into<String>, service: impl Into<String>, base_url: Url) -> Self {
        HttpSettings {
            context: context.into(),
            service: service.into(),
            base_url,
            verify_tls: true,
            ca_bundle: None,
            proxy: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            user_agent: concat!("waldur-site-agent/", env!("CARGO_PKG_VERSION")).to_owned(),
            retry: RetryPolicy::default(),
            max_response_bytes: 64 * 1024 * 1024,
            counter: None,
        }
    }
}

/// A reqwest client with the settings' TLS, CA bundle, proxy, timeouts and User-Agent. Problems
/// (unreadable CA bundle, bad proxy) are [`HttpErrorKind::Setup`] errors naming the setting.
pub fn build_reqwest(settings: &HttpSettings) -> HttpResult<reqwest::Client> {
    crate::install_crypto_provider();
    let setup = |message: String| HttpError::setup(settings.context.clone(), message);
    let mut builder = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.connect_timeout.min(settings.timeout))
        .user_agent(settings.user_agent.clone())
        .tls_danger_accept_invalid_certs(!settings.verify_tls);
    if let Some(path) = &settings.ca_bundle {
        let pem = std::fs::read(path).map_err(|e| {
            setup(format!(
                "backend_settings.ca_bundle '{}' cannot be read: {e}",
                path.display()
            ))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            setup(format!(
                "backend_settings.ca_bundle '{}' is not a PEM bundle: {e}",
                path.display()
            ))
        })?;
        if certs.is_empty() {
            return Err(setup(format!(
                "backend_settings.ca_bundle '{}' holds no certificate",
                path.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(proxy) = settings
        .proxy
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let proxy = reqwest::Proxy::all(proxy)
            .map_err(|e| setup(format!("global_proxy is not usable: {e}")))?;
        builder = builder.proxy(proxy);
    }
    builder
        .build()
        .map_err(|e| setup(format!("cannot build the HTTP client: {e}")))
}

fn counters() -> &'static Mutex<BTreeMap<String, Arc<AtomicU64>>> {
    static COUNTERS: OnceLock<Mutex<BTreeMap<String, Arc<AtomicU64>>>> = OnceLock::new();
    COUNTERS.get_or_init(Default::default)
}

fn counter(name: &str) -> Arc<AtomicU64> {
    let mut map = counters()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    map.entry(name.to_owned()).or_default().clone()
}

/// Requests sent so far by every [`RestClient`] of this process, by counter name (retries and
/// logins included): for `bench/` and `/metrics`.
pub fn request_counts() -> BTreeMap<String, u64> {
    counters()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
        .collect()
}

/// Requests sent so far under one counter name.
pub fn request_count(name: &str) -> u64 {
    counter(name).load(Ordering::Relaxed)
}

enum Body {
    None,
    Json(Value),
    /// Form fields; values may be secrets, so no `Debug` shows them.
    Form(Vec<(String, String)>),
}

/// One request. Idempotency defaults from the method (GET, HEAD, PUT, DELETE, OPTIONS); a POST
/// or PATCH is sent once unless marked [`Request::idempotent`].
pub struct Request {
    method: Method,
    /// A path under the base URL, or an absolute URL.
    target: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Body,
    accept: Vec<StatusCode>,
    idempotent: Option<bool>,
    authenticated: bool,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Request {
    pub fn new(method: Method, target: impl Into<String>) -> Self {
        Request {
            method,
            target: target.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Body::None,
            accept: Vec::new(),
            idempotent: None,
            authenticated: true,
        }
    }
    pub fn get(target: impl Into<String>) -> Self {
        Request::new(Method::GET, target)
    }
    pub fn post(target: impl Into<String>) -> Self {
        Request::new(Method::POST, target)
    }
    pub fn put(target: impl Into<String>) -> Self {
        Request::new(Method::PUT, target)
    }
    pub fn patch(target: impl Into<String>) -> Self {
        Request::new(Method::PATCH, target)
    }
    pub fn delete(target: impl Into<String>) -> Self {
        Request::new(Method::DELETE, target)
    }
    pub fn head(target: impl Into<String>) -> Self {
        Request::new(Method::HEAD, target)
    }
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.to_owned(), value.to_owned()));
        self
    }
    pub fn queries(mut self, pairs: &[(&str, &str)]) -> Self {
        self.query.extend(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self
    }
    pub fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }
    pub fn form(mut self, fields: Vec<(String, String)>) -> Self {
        self.body = Body::Form(fields);
        self
    }
    /// A header whose value is a secret (never shown).
    pub fn secret_header(mut self, name: &str, value: &Secret) -> Self {
        self.headers
            .push((name.to_owned(), value.expose().to_owned()));
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    /// Statuses returned as answers rather than errors (e.g. 404 for "already gone").
    pub fn accept(mut self, statuses: &[StatusCode]) -> Self {
        self.accept.extend_from_slice(statuses);
        self
    }
    /// Whether sending the request twice does no harm (overrides the method's default).
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }
    /// Send without the client's token (logins, public endpoints).
    pub fn without_auth(mut self) -> Self {
        self.authenticated = false;
        self
    }

    fn is_idempotent(&self) -> bool {
        self.idempotent.unwrap_or(matches!(
            self.method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        ))
    }
}

/// An answer: status, headers and the body (capped).
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// `METHOD path` for messages.
    pub what: String,
    context: String,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("what", &self.what)
            .field("bytes", &self.body.len())
            .finish()
    }
}

impl Response {
    /// The body as JSON (`Null` when empty).
    pub fn value(&self) -> HttpResult<Value> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        self.json()
    }

    pub fn json<T: DeserializeOwned>(&self) -> HttpResult<T> {
        serde_json::from_slice(&self.body).map_err(|e| self.decode_error(e.to_string()))
    }

    /// A header's text, if present and readable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A decode error about this answer.
    pub fn decode_error(&self, detail: impl Into<String>) -> HttpError {
        HttpError::new(
            self.context.clone(),
            HttpErrorKind::Decode {
                what: self.what.clone(),
                detail: detail.into(),
            },
        )
    }
}

/// A configured client for one API. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: String,
    context: String,
    service: String,
    timeout: Duration,
    retry: RetryPolicy,
    max_response_bytes: u64,
    auth: Option<Arc<dyn TokenSource>>,
    error_body: Option<ErrorBodyHook>,
    counter: Arc<AtomicU64>,
}

impl fmt::Debug for RestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestClient")
            .field("service", &self.service)
            .field("base", &self.base)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl RestClient {
    /// Build the client (no network traffic). Setup problems name the setting.
    pub fn new(settings: &HttpSettings) -> HttpResult<Self> {
        let http = build_reqwest(settings)?;
        Ok(RestClient {
            http,
            base: settings.base_url.as_str().trim_end_matches('/').to_owned(),
            context: settings.context.clone(),
            service: settings.service.clone(),
            timeout: settings.timeout,
            retry: settings.retry,
            max_response_bytes: settings.max_response_bytes.max(1),
            auth: None,
            error_body: None,
            counter: counter(settings.counter.as_deref().unwrap_or(&settings.service)),
        })
    }

    /// The same client, authenticating with `auth`.
    pub fn with_auth(&self, auth: Arc<dyn TokenSource>) -> Self {
        RestClient {
            auth: Some(auth),
            ..self.clone()
        }
    }

    /// The same client reading the API's error bodies with `hook`.
    pub fn with_error_body(mut self, hook: ErrorBodyHook) -> Self {
        self.error_body = Some(hook);
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn context(&self) -> &str {
        &self.context
    }

    /// `<service> at <base>` for messages.
    pub fn target(&self) -> String {
        format!("{} at {}", self.service, self.base)
    }

    /// Requests this client's counter has seen (shared by clients with the same counter name).
    pub fn requests(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }

    fn url(&self, target: &str) -> String {
        if target.starts_with("http://") || target.starts_with("https://") {
            target.to_owned()
        } else {
            format!("{}{}", self.base, target)
        }
    }

    /// Send `request`: the token is added (renewed once after a 401 when the source can),
    /// idempotent requests are retried after transient errors as the [`RetryPolicy`] says, and
    /// any status outside 2xx and the accepted ones becomes a classified [`HttpError`].
    pub async fn send(&self, request: Request) -> HttpResult<Response> {
        let url = self.url(&request.target);
        let shown_target = if request.target.starts_with("http") {
            Url::parse(&request.target)
                .map(|u| {
                    format!(
                        "{}://{}{}",
                        u.scheme(),
                        u.host_str().unwrap_or(""),
                        u.path()
                    )
                })
                .unwrap_or_else(|_| "<url>".to_owned())
        } else {
            request.target.clone()
        };
        let what = format!("{} {} {shown_target}", self.service, request.method);
        let idempotent = request.is_idempotent();
        let mut attempt = 0;
        let mut refused: Option<Secret> = None;
        let mut renewed = false;
        loop {
            let mut builder = self.http.request(request.method.clone(), &url);
            let mut sent_token = None;
            if request.authenticated
                && let Some(auth) = &self.auth
            {
                let token = auth.token(refused.as_ref()).await?;
                builder = auth.scheme().apply(builder, &token);
                sent_token = Some(token);
            }
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            if !request.query.is_empty() {
                builder = builder.query(&request.query);
            }
            builder = match &request.body {
                Body::None => builder,
                Body::Json(v) => builder.json(v),
                Body::Form(fields) => builder.form(fields),
            };
            self.counter.fetch_add(1, Ordering::Relaxed);
            let err = match builder.send().await {
                Err(e) => self.transport_error(&e, &what),
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED
                        && !renewed
                        && sent_token.is_some()
                        && self.auth.as_ref().is_some_and(|a| a.renews_on_401())
                    {
                        // Revoked or expired early: a fresh token, one more try.
                        renewed = true;
                        refused = sent_token;
                        continue;
                    }
                    if status.is_success() || request.accept.contains(&status) {
                        let headers = resp.headers().clone();
                        let body = self.read_body(resp, &what).await?;
                        return Ok(Response {
                            status,
                            headers,
                            body,
                            what,
                            context: self.context.clone(),
                        });
                    }
                    self.status_error(&what, resp).await
                }
            };
            if !idempotent || !err.is_transient() || attempt >= self.retry.max_retries {
                return Err(err);
            }
            tracing::debug!(error = %err, attempt, "transient {} failure, retrying", self.service);
            tokio::time::sleep(self.retry.delay(attempt)).await;
            attempt += 1;
        }
    }

    /// Send a request prepared by another HTTP library (kube-rs, through `kube-kit`) with this
    /// client's machinery: base URL for a relative URI, the token source (renewed once after a
    /// 401 when it can), the retry policy (idempotent methods only, after a transport error, a
    /// 5xx or a 429), the request counter and the whole-request timeout. Every answer comes back
    /// as it is, error statuses included, so the caller reads its own error bodies; the body
    /// streams and is not capped here.
    pub async fn send_http(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> HttpResult<http::Response<reqwest::Body>> {
        let (parts, body) = request.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        let url = if parts.uri.scheme().is_some() {
            parts.uri.to_string()
        } else {
            self.url(&target)
        };
        let what = format!("{} {} {}", self.service, parts.method, parts.uri.path());
        let idempotent = matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        let mut attempt = 0;
        let mut refused: Option<Secret> = None;
        let mut renewed = false;
        loop {
            let mut builder = self
                .http
                .request(parts.method.clone(), &url)
                .headers(parts.headers.clone())
                .body(body.clone());
            let mut sent_token = None;
            if let Some(auth) = &self.auth {
                let token = auth.token(refused.as_ref()).await?;
                builder = auth.scheme().apply(builder, &token);
                sent_token = Some(token);
            }
            self.counter.fetch_add(1, Ordering::Relaxed);
            let outcome = match builder.send().await {
                Err(e) => Err(self.transport_error(&e, &what)),
                Ok(resp) => Ok(resp),
            };
            let transient = match &outcome {
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED
                        && !renewed
                        && sent_token.is_some()
                        && self.auth.as_ref().is_some_and(|a| a.renews_on_401())
                    {
                        renewed = true;
                        refused = sent_token;
                        continue;
                    }
                    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
                }
                Err(e) => e.is_transient(),
            };
            if !idempotent || !transient || attempt >= self.retry.max_retries {
                return outcome.map(http::Response::from);
            }
            tracing::debug!(
                what,
                attempt,
                "transient {} failure, retrying",
                self.service
            );
            tokio::time::sleep(self.retry.delay(attempt)).await;
            attempt += 1;
        }
    }

    /// Send and decode the JSON answer.
    pub async fn send_json<T: DeserializeOwned>(&self, request: Request) -> HttpResult<T> {
        self.send(request).await?.json()
    }

    async fn read_body(&self, mut resp: reqwest::Response, what: &str) -> HttpResult<Vec<u8>> {
        let limit = self.max_response_bytes;
        let too_large = || {
            HttpError::new(
                self.context.clone(),
                HttpErrorKind::TooLarge {
                    what: what.to_owned(),
                    limit,
                },
            )
        };
        if resp.content_length().is_some_and(|len| len > limit) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e, what))?
        {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// A transport failure: a timeout or an unreachable service (both transient).
    pub fn transport_error(&self, e: &reqwest::Error, what: &str) -> HttpError {
        let kind = if e.is_timeout() {
            HttpErrorKind::Timeout {
                target: self.target(),
                what: what.to_owned(),
                seconds: self.timeout.as_secs().max(1),
            }
        } else {
            // reqwest's chain holds the cause (refused, DNS, TLS); it never holds headers.
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                detail.push_str(": ");
                detail.push_str(&s.to_string());
                source = s.source();
            }
            HttpErrorKind::Unreachable {
                target: self.target(),
                detail,
            }
        };
        HttpError::new(self.context.clone(), kind)
    }

    /// A non-success answer, its body read by the API's hook (or the default reading).
    pub async fn status_error(&self, what: &str, resp: reqwest::Response) -> HttpError {
        let status = resp.status().as_u16();
        let text = match self.read_body(resp, what).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => String::new(),
        };
        let message = self
            .error_body
            .and_then(|hook| hook(&text))
            .or_else(|| default_error_message(&text))
            .unwrap_or_else(|| text.chars().take(300).collect());
        HttpError::new(
            self.context.clone(),
            HttpErrorKind::Status {
                what: what.to_owned(),
                status,
                message,
            },
        )
    }

    /// The [`HttpErrorKind::AuthRejected`] error of this client.
    pub fn auth_rejected(&self, principal: &str, status: u16, hint: &str) -> HttpError {
        HttpError::new(
            self.context.clone(),
            HttpErrorKind::AuthRejected {
                target: self.target(),
                principal: principal.to_owned(),
                status,
                hint: hint.to_owned(),
            },
        )
    }
}

/// The message of the common JSON error shapes: `{"error": {"message"}}` (OpenStack),
/// `{"message"}` (Kubernetes, Rancher), `{"error_description"}` (OAuth2), `{"detail"}`.
fn default_error_message(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    [
        &v["error"]["message"],
        &v["message"],
        &v["error_description"],
        &v["detail"],
        &v["error"],
    ]
    .into_iter()
    .find_map(|m| m.as_str().map(|s| s.chars().take(500).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::StaticToken;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn settings(uri: &str) -> HttpSettings {
        let mut s = HttpSettings::new("offering 'kit'", "kit-test", Url::parse(uri).expect("url"));
        s.retry = RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            jitter: true,
        };
        s.timeout = Duration::from_secs(5);
        s
    }

    #[tokio::test]
    async fn idempotent_requests_retry_creates_do_not_and_counts_include_retries() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/things"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/things"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([1])))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/things"))
            .respond_with(
                ResponseTemplate::new(500)
                    .set_body_json(serde_json::json!({"message": "disk full"})),
            )
            .mount(&server)
            .await;
        let mut s = settings(&server.uri());
        s.counter = Some("kit-retry-test".into());
        let client = RestClient::new(&s).expect("client");
        let got: Vec<u32> = client
            .send_json(Request::get("/things"))
            .await
            .expect("third try");
        assert_eq!(got, vec![1]);
        let err = client
            .send(Request::post("/things").json(serde_json::json!({})))
            .await
            .expect_err("500");
        assert!(err.is_transient());
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(request_count("kit-retry-test"), 4, "3 GETs + 1 POST");
        assert_eq!(request_counts()["kit-retry-test"], 4);
    }

    #[tokio::test]
    async fn static_tokens_are_sent_and_never_printed() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/me"))
            .and(header("authorization", "Bearer s3cr3t-tok"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        let client = RestClient::new(&settings(&server.uri()))
            .expect("client")
            .with_auth(Arc::new(StaticToken::bearer(Secret::new("s3cr3t-tok"))));
        client.send(Request::get("/me")).await.expect("authorized");
        assert!(!format!("{client:?}").contains("s3cr3t"));
    }

    #[tokio::test]
    async fn unreachable_is_transient_and_bad_ca_bundle_is_setup() {
        let client = RestClient::new(&settings("http://127.0.0.1:9")).expect("client");
        let err = client
            .send(Request::get("/x"))
            .await
            .expect_err("closed port");
        assert!(err.is_transient(), "{err}");
        let mut s = settings("http://127.0.0.1:9");
        s.ca_bundle = Some(PathBuf::from("/nonexistent/ca.pem"));
        let err = RestClient::new(&s).expect_err("no file");
        assert!(
            err.is_config() && err.to_string().contains("ca_bundle"),
            "{err}"
        );
        let mut s = settings("http://127.0.0.1:9");
        s.proxy = Some("::not a proxy::".into());
        assert!(RestClient::new(&s).expect_err("bad proxy").is_config());
    }

    #[tokio::test]
    async fn bodies_over_the_cap_are_refused() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string("x".repeat(2048)))
            .mount(&server)
            .await;
        let mut s = settings(&server.uri());
        s.max_response_bytes = 1024;
        let err = RestClient::new(&s)
            .expect("client")
            .send(Request::get("/big"))
            .await
            .expect_err("too large");
        assert!(matches!(err.kind, HttpErrorKind::TooLarge { .. }), "{err}");
    }
}
