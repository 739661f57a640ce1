//! A small Keystone v3 client on reqwest: token issue and caching, typed look-ups, role grants,
//! role assignments and unified limits.
//!
//! Reliability rules:
//! - every request has a timeout (`timeout_seconds`);
//! - the token is re-issued shortly before it expires and once after a 401;
//! - transient failures (connect errors, timeouts, 5xx) are retried with exponential backoff, but
//!   only for idempotent calls (GET/HEAD/PUT/DELETE and our absolute-value PATCHes); creates
//!   (POST) are never blindly repeated — callers look the object up after a conflict instead;
//! - tokens and passwords never appear in logs, errors or `Debug` output.

use std::fmt;
use std::time::Duration;

use agent_config::Secret;
use backend_api::BackendError;
use jiff::Timestamp;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::settings::{Credentials, OpenStackSettings, Scope};

/// Errors of Keystone calls, classified for the agent core.
#[derive(Debug, thiserror::Error)]
pub enum KeystoneError {
    /// Connection refused, DNS failure, TLS failure: Keystone may come back.
    #[error("{context}: Keystone at {auth_url} is unreachable: {detail}")]
    Unreachable {
        context: String,
        auth_url: String,
        detail: String,
    },
    #[error("{context}: {what} timed out after {seconds} s (Keystone at {auth_url})")]
    Timeout {
        context: String,
        auth_url: String,
        what: String,
        seconds: u64,
    },
    /// Keystone refused our credentials: a configuration problem, retrying will not help.
    #[error(
        "{context}: Keystone at {auth_url} rejected the credentials of {principal} (HTTP {status}); \
         check backend_settings (username/password or application credential)"
    )]
    AuthRejected {
        context: String,
        auth_url: String,
        principal: String,
        status: u16,
    },
    /// Any other non-success answer.
    #[error("{context}: Keystone {method} {path} answered HTTP {status}: {message}")]
    Http {
        context: String,
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    /// A success answer we could not understand.
    #[error("{context}: unexpected answer to {what}: {detail}")]
    Decode {
        context: String,
        what: String,
        detail: String,
    },
    #[error("{context}: {message}")]
    Setup { context: String, message: String },
}

impl KeystoneError {
    pub fn status(&self) -> Option<u16> {
        match self {
            KeystoneError::Http { status, .. } | KeystoneError::AuthRejected { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            KeystoneError::Unreachable { .. } | KeystoneError::Timeout { .. } => true,
            KeystoneError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

impl From<KeystoneError> for BackendError {
    fn from(err: KeystoneError) -> Self {
        match &err {
            KeystoneError::AuthRejected { .. } | KeystoneError::Setup { .. } => {
                BackendError::Config(err.to_string())
            }
            KeystoneError::Timeout { seconds, .. } => BackendError::Timeout {
                what: err.to_string(),
                seconds: *seconds,
            },
            _ if err.is_transient() => BackendError::Transient(err.to_string()),
            _ => BackendError::Permanent(err.to_string()),
        }
    }
}

pub type KsResult<T> = Result<T, KeystoneError>;

/// A token and what came with it.
#[derive(Clone)]
struct CachedToken {
    value: Secret,
    issued_at: Timestamp,
    expires_at: Timestamp,
    info: TokenInfo,
}

/// The non-secret parts of the token body: who we are, the scope and the service catalog.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TokenInfo {
    #[serde(default)]
    pub user: Option<NamedRef>,
    #[serde(default)]
    pub project: Option<NamedRef>,
    #[serde(default)]
    pub system: Option<Value>,
    #[serde(default)]
    pub roles: Vec<NamedRef>,
    #[serde(default)]
    pub catalog: Vec<CatalogService>,
    #[serde(default)]
    pub expires_at: String,
    #[serde(default)]
    pub issued_at: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct NamedRef {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CatalogService {
    #[serde(default, rename = "type")]
    pub service_type: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub endpoints: Vec<CatalogEndpoint>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CatalogEndpoint {
    #[serde(default)]
    pub interface: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub region_id: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Project {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub domain_id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

fn enabled_default() -> bool {
    true
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub domain_id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Service {
    pub id: String,
    #[serde(default, rename = "type")]
    pub service_type: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct RegisteredLimit {
    pub id: String,
    pub service_id: String,
    pub resource_name: String,
    #[serde(default)]
    pub region_id: Option<String>,
    pub default_limit: i64,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ProjectLimit {
    pub id: String,
    #[serde(default)]
    pub project_id: Option<String>,
    pub service_id: String,
    pub resource_name: String,
    #[serde(default)]
    pub region_id: Option<String>,
    pub resource_limit: i64,
}

/// One entry of `GET /v3/role_assignments?include_names=true`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RoleAssignment {
    #[serde(default)]
    pub user: Option<NamedRef>,
    #[serde(default)]
    pub role: Option<NamedRef>,
    #[serde(default)]
    pub scope: Option<AssignmentScope>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct AssignmentScope {
    #[serde(default)]
    pub project: Option<NamedRef>,
}

/// What a request may do when it fails transiently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Replay {
    /// Safe to send again (reads, PUT/DELETE, absolute PATCH).
    Idempotent,
    /// A create: never sent twice by the client.
    Once,
}

/// The Keystone v3 client. Cheap to share behind an `Arc`; the token is cached inside.
pub struct KeystoneClient {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    principal: String,
    /// Names the offering in every error.
    context: String,
    timeout: Duration,
    max_retries: u32,
    retry_base_delay: Duration,
    token: Mutex<Option<CachedToken>>,
}

impl fmt::Debug for KeystoneClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeystoneClient")
            .field("auth_url", &self.base)
            .field("principal", &self.principal)
            .field("token", &"***")
            .finish()
    }
}

impl KeystoneClient {
    /// Build the client (no network traffic yet). `offering` names the offering in errors.
    pub fn new(offering: &str, settings: &OpenStackSettings) -> KsResult<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let context = format!("offering '{offering}'");
        let setup = |message: String| KeystoneError::Setup {
            context: context.clone(),
            message,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!(
                "waldur-site-agent-openstack/",
                env!("CARGO_PKG_VERSION")
            ))
            .tls_danger_accept_invalid_certs(!settings.verify_ssl);
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
        let http = builder
            .build()
            .map_err(|e| setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(KeystoneClient {
            http,
            base: settings.auth_url.as_str().trim_end_matches('/').to_owned(),
            credentials: settings.credentials.clone(),
            principal: settings.principal(),
            context,
            timeout: settings.timeout,
            max_retries: settings.max_retries,
            retry_base_delay: settings.retry_base_delay,
            token: Mutex::new(None),
        })
    }

    pub fn auth_url(&self) -> &str {
        &self.base
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    // ---- tokens -------------------------------------------------------------------------------

    fn auth_body(&self) -> Value {
        match &self.credentials {
            Credentials::ApplicationCredential { id, secret } => json!({"auth": {"identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": id, "secret": secret.expose()}
            }}}),
            Credentials::Password {
                username,
                password,
                user_domain_name,
                scope,
            } => {
                let scope = match scope {
                    Scope::Project { name, domain_name } => {
                        json!({"project": {"name": name, "domain": {"name": domain_name}}})
                    }
                    Scope::System => json!({"system": {"all": true}}),
                };
                json!({"auth": {
                    "identity": {"methods": ["password"], "password": {"user": {
                        "name": username, "domain": {"name": user_domain_name},
                        "password": password.expose()}}},
                    "scope": scope
                }})
            }
        }
    }

    /// Issue a new token (retried on transient failures: issuing a token changes nothing).
    async fn issue_token(&self) -> KsResult<CachedToken> {
        let url = format!("{}/auth/tokens", self.base);
        let body = self.auth_body();
        let mut attempt = 0;
        loop {
            let err = match self.http.post(&url).json(&body).send().await {
                Err(e) => self.transport_error(&e, "POST /auth/tokens"),
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        return Err(KeystoneError::AuthRejected {
                            context: self.context.clone(),
                            auth_url: self.base.clone(),
                            principal: self.principal.clone(),
                            status: status.as_u16(),
                        });
                    }
                    if status.is_success() {
                        return self.read_token(resp).await;
                    }
                    self.http_error(Method::POST, "/auth/tokens", resp).await
                }
            };
            if !err.is_transient() || attempt >= self.max_retries {
                return Err(err);
            }
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt += 1;
        }
    }

    async fn read_token(&self, resp: reqwest::Response) -> KsResult<CachedToken> {
        let decode = |detail: String| KeystoneError::Decode {
            context: self.context.clone(),
            what: "POST /auth/tokens".into(),
            detail,
        };
        let value = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| decode("no X-Subject-Token header".into()))?;
        #[derive(Deserialize)]
        struct Body {
            token: TokenInfo,
        }
        let body: Body = resp
            .json()
            .await
            .map_err(|e| decode(format!("token body: {e}")))?;
        let expires_at: Timestamp = body
            .token
            .expires_at
            .parse()
            .map_err(|e| decode(format!("expires_at '{}': {e}", body.token.expires_at)))?;
        let issued_at = body
            .token
            .issued_at
            .parse()
            .unwrap_or_else(|_| Timestamp::now());
        Ok(CachedToken {
            value: Secret::new(value),
            issued_at,
            expires_at,
            info: body.token,
        })
    }

    /// Whether a cached token is still good for a while: re-issue when less than a quarter of
    /// its lifetime (at most 5 minutes) is left.
    fn still_fresh(token: &CachedToken, now: Timestamp) -> bool {
        let lifetime = token
            .expires_at
            .duration_since(token.issued_at)
            .as_secs()
            .max(0);
        let margin = (lifetime / 4).min(300);
        token.expires_at.duration_since(now).as_secs() > margin
    }

    /// A valid token, issuing one when needed. `stale` = a token the server just refused.
    async fn token(&self, stale: Option<&Secret>) -> KsResult<CachedToken> {
        let mut guard = self.token.lock().await;
        if let Some(cached) = guard.as_ref() {
            let refused = stale.is_some_and(|s| s == &cached.value);
            if !refused && Self::still_fresh(cached, Timestamp::now()) {
                return Ok(cached.clone());
            }
        }
        let fresh = self.issue_token().await?;
        tracing::debug!(auth_url = %self.base, expires_at = %fresh.expires_at, "issued Keystone token");
        *guard = Some(fresh.clone());
        Ok(fresh)
    }

    /// Authenticate now (or reuse the cached token) and return what the token says.
    pub async fn authenticate(&self) -> KsResult<TokenInfo> {
        Ok(self.token(None).await?.info)
    }

    /// Drop the cached token (tests, credential rotation).
    pub async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    // ---- requests -----------------------------------------------------------------------------

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(6);
        (self.retry_base_delay * factor).min(Duration::from_secs(10))
    }

    fn transport_error(&self, e: &reqwest::Error, what: &str) -> KeystoneError {
        if e.is_timeout() {
            KeystoneError::Timeout {
                context: self.context.clone(),
                auth_url: self.base.clone(),
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
            KeystoneError::Unreachable {
                context: self.context.clone(),
                auth_url: self.base.clone(),
                detail,
            }
        }
    }

    async fn http_error(
        &self,
        method: Method,
        path: &str,
        resp: reqwest::Response,
    ) -> KeystoneError {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        // Keystone errors look like {"error": {"code", "message", "title"}}.
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.chars().take(300).collect());
        KeystoneError::Http {
            context: self.context.clone(),
            method: method.to_string(),
            path: path.to_owned(),
            status,
            message,
        }
    }

    /// Send one call with the token; re-auth once on 401, retry transient failures of idempotent
    /// calls. Returns the status and the body (JSON, `Null` when empty). Non-2xx answers other than
    /// those in `accept` become errors.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        replay: Replay,
        accept: &[StatusCode],
    ) -> KsResult<(StatusCode, Value)> {
        let url = format!("{}{}", self.base, path);
        let what = format!("{method} {path}");
        let mut attempt = 0;
        let mut reauthed = false;
        let mut stale: Option<Secret> = None;
        loop {
            let token = self.token(stale.as_ref()).await?;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("X-Auth-Token", token.value.expose());
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let err = match request.send().await {
                Err(e) => self.transport_error(&e, &what),
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED && !reauthed {
                        // The token was revoked or expired early: get a new one, try once more.
                        reauthed = true;
                        stale = Some(token.value.clone());
                        continue;
                    }
                    if status.is_success() || accept.contains(&status) {
                        let bytes = resp
                            .bytes()
                            .await
                            .map_err(|e| self.transport_error(&e, &what))?;
                        let value = if bytes.is_empty() || method == Method::HEAD {
                            Value::Null
                        } else {
                            serde_json::from_slice(&bytes).map_err(|e| KeystoneError::Decode {
                                context: self.context.clone(),
                                what: what.clone(),
                                detail: e.to_string(),
                            })?
                        };
                        return Ok((status, value));
                    }
                    self.http_error(method.clone(), path, resp).await
                }
            };
            if replay == Replay::Once || !err.is_transient() || attempt >= self.max_retries {
                return Err(err);
            }
            tracing::debug!(error = %err, attempt, "transient Keystone failure, retrying");
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt += 1;
        }
    }

    async fn get_list<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        query: &[(&str, &str)],
    ) -> KsResult<Vec<T>> {
        let (_, body) = self
            .call(Method::GET, path, query, None, Replay::Idempotent, &[])
            .await?;
        self.field(body, key, path)
    }

    fn field<T: DeserializeOwned>(&self, mut body: Value, key: &str, what: &str) -> KsResult<T> {
        serde_json::from_value(body[key].take()).map_err(|e| KeystoneError::Decode {
            context: self.context.clone(),
            what: what.to_owned(),
            detail: format!("field '{key}': {e}"),
        })
    }

    /// Reachability and token validity: `GET /v3/auth/tokens` validating our own token.
    pub async fn ping(&self) -> KsResult<()> {
        let token = self.token(None).await?;
        let url = format!("{}/auth/tokens", self.base);
        let resp = self
            .http
            .get(&url)
            .header("X-Auth-Token", token.value.expose())
            .header("X-Subject-Token", token.value.expose())
            .send()
            .await
            .map_err(|e| self.transport_error(&e, "GET /auth/tokens"))?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::NOT_FOUND {
            // Revoked under us: the next call re-issues it.
            self.forget_token().await;
            self.token(None).await?;
            return Ok(());
        }
        if !resp.status().is_success() {
            return Err(self.http_error(Method::GET, "/auth/tokens", resp).await);
        }
        Ok(())
    }

    // ---- domains, roles, services -------------------------------------------------------------

    pub async fn find_domain_id(&self, name: &str) -> KsResult<Option<String>> {
        let domains: Vec<NamedRef> = self
            .get_list("/domains", "domains", &[("name", name)])
            .await?;
        Ok(domains.into_iter().next().map(|d| d.id))
    }

    pub async fn find_role_id(&self, name: &str) -> KsResult<Option<String>> {
        let roles: Vec<NamedRef> = self.get_list("/roles", "roles", &[("name", name)]).await?;
        Ok(roles.into_iter().next().map(|r| r.id))
    }

    pub async fn list_services(&self) -> KsResult<Vec<Service>> {
        self.get_list("/services", "services", &[]).await
    }

    /// Create a service entry (test setup and bootstrap tooling).
    pub async fn create_service(&self, service_type: &str, name: &str) -> KsResult<Service> {
        let body = json!({"service": {"type": service_type, "name": name, "enabled": true}});
        let (_, value) = self
            .call(
                Method::POST,
                "/services",
                &[],
                Some(&body),
                Replay::Once,
                &[],
            )
            .await?;
        self.field(value, "service", "POST /services")
    }

    // ---- projects -----------------------------------------------------------------------------

    pub async fn find_project(&self, name: &str, domain_id: &str) -> KsResult<Option<Project>> {
        let projects: Vec<Project> = self
            .get_list(
                "/projects",
                "projects",
                &[("name", name), ("domain_id", domain_id)],
            )
            .await?;
        Ok(projects.into_iter().find(|p| p.name == name))
    }

    pub async fn list_projects(&self, domain_id: &str) -> KsResult<Vec<Project>> {
        self.get_list("/projects", "projects", &[("domain_id", domain_id)])
            .await
    }

    /// `POST /v3/projects`. A 409 comes back as an `Http` error with status 409.
    pub async fn create_project(
        &self,
        name: &str,
        domain_id: &str,
        description: &str,
        tags: &[String],
    ) -> KsResult<Project> {
        let body = json!({"project": {"name": name, "domain_id": domain_id,
            "description": description, "enabled": true, "tags": tags}});
        let (_, value) = self
            .call(
                Method::POST,
                "/projects",
                &[],
                Some(&body),
                Replay::Once,
                &[],
            )
            .await?;
        self.field(value, "project", "POST /projects")
    }

    pub async fn set_project_enabled(&self, project_id: &str, enabled: bool) -> KsResult<()> {
        let body = json!({"project": {"enabled": enabled}});
        self.call(
            Method::PATCH,
            &format!("/projects/{project_id}"),
            &[],
            Some(&body),
            Replay::Idempotent,
            &[],
        )
        .await
        .map(|_| ())
    }

    /// `DELETE /v3/projects/{id}`; `false` when it was already gone.
    pub async fn delete_project(&self, project_id: &str) -> KsResult<bool> {
        let (status, _) = self
            .call(
                Method::DELETE,
                &format!("/projects/{project_id}"),
                &[],
                None,
                Replay::Idempotent,
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        Ok(status != StatusCode::NOT_FOUND)
    }

    // ---- users --------------------------------------------------------------------------------

    pub async fn find_user(&self, name: &str, domain_id: &str) -> KsResult<Option<User>> {
        let users: Vec<User> = self
            .get_list(
                "/users",
                "users",
                &[("name", name), ("domain_id", domain_id)],
            )
            .await?;
        Ok(users.into_iter().find(|u| u.name == name))
    }

    /// `POST /v3/users`. Without a password the user can only log in through federation/SSO.
    pub async fn create_user(
        &self,
        name: &str,
        domain_id: &str,
        email: Option<&str>,
        password: Option<&Secret>,
        description: Option<&str>,
    ) -> KsResult<User> {
        let mut user = json!({"name": name, "domain_id": domain_id, "enabled": true});
        if let Some(email) = email {
            user["email"] = json!(email);
        }
        if let Some(password) = password {
            user["password"] = json!(password.expose());
        }
        if let Some(description) = description {
            user["description"] = json!(description);
        }
        let (_, value) = self
            .call(
                Method::POST,
                "/users",
                &[],
                Some(&json!({"user": user})),
                Replay::Once,
                &[],
            )
            .await?;
        self.field(value, "user", "POST /users")
    }

    pub async fn set_user_email(&self, user_id: &str, email: &str) -> KsResult<()> {
        let body = json!({"user": {"email": email}});
        self.call(
            Method::PATCH,
            &format!("/users/{user_id}"),
            &[],
            Some(&body),
            Replay::Idempotent,
            &[],
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_user(&self, user_id: &str) -> KsResult<()> {
        self.call(
            Method::DELETE,
            &format!("/users/{user_id}"),
            &[],
            None,
            Replay::Idempotent,
            &[StatusCode::NOT_FOUND],
        )
        .await
        .map(|_| ())
    }

    // ---- role grants --------------------------------------------------------------------------

    fn grant_path(project_id: &str, user_id: &str, role_id: &str) -> String {
        format!("/projects/{project_id}/users/{user_id}/roles/{role_id}")
    }

    /// `PUT` the grant (idempotent: 204 whether or not it existed).
    pub async fn grant_role(&self, project_id: &str, user_id: &str, role_id: &str) -> KsResult<()> {
        self.call(
            Method::PUT,
            &Self::grant_path(project_id, user_id, role_id),
            &[],
            None,
            Replay::Idempotent,
            &[],
        )
        .await
        .map(|_| ())
    }

    pub async fn check_role(
        &self,
        project_id: &str,
        user_id: &str,
        role_id: &str,
    ) -> KsResult<bool> {
        let (status, _) = self
            .call(
                Method::HEAD,
                &Self::grant_path(project_id, user_id, role_id),
                &[],
                None,
                Replay::Idempotent,
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        Ok(status != StatusCode::NOT_FOUND)
    }

    /// `DELETE` the grant; `false` when there was none.
    pub async fn revoke_role(
        &self,
        project_id: &str,
        user_id: &str,
        role_id: &str,
    ) -> KsResult<bool> {
        let (status, _) = self
            .call(
                Method::DELETE,
                &Self::grant_path(project_id, user_id, role_id),
                &[],
                None,
                Replay::Idempotent,
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        Ok(status != StatusCode::NOT_FOUND)
    }

    /// Direct role assignments, with names. Filters are query pairs such as
    /// `("scope.project.id", id)` or `("role.id", id)`.
    pub async fn role_assignments(
        &self,
        filters: &[(&str, &str)],
    ) -> KsResult<Vec<RoleAssignment>> {
        let mut query = filters.to_vec();
        query.push(("include_names", "true"));
        self.get_list("/role_assignments", "role_assignments", &query)
            .await
    }

    // ---- unified limits -----------------------------------------------------------------------

    pub async fn registered_limits(
        &self,
        service_id: &str,
        resource_name: &str,
        region_id: Option<&str>,
    ) -> KsResult<Vec<RegisteredLimit>> {
        let mut query = vec![("service_id", service_id), ("resource_name", resource_name)];
        if let Some(region) = region_id {
            query.push(("region_id", region));
        }
        let found: Vec<RegisteredLimit> = self
            .get_list("/registered_limits", "registered_limits", &query)
            .await?;
        Ok(found
            .into_iter()
            .filter(|r| r.region_id.as_deref() == region_id)
            .collect())
    }

    pub async fn create_registered_limit(
        &self,
        service_id: &str,
        resource_name: &str,
        region_id: Option<&str>,
        default_limit: i64,
    ) -> KsResult<RegisteredLimit> {
        let mut entry = json!({"service_id": service_id, "resource_name": resource_name,
            "default_limit": default_limit,
            "description": "registered by waldur-site-agent (project limits are set per project)"});
        if let Some(region) = region_id {
            entry["region_id"] = json!(region);
        }
        let (_, mut value) = self
            .call(
                Method::POST,
                "/registered_limits",
                &[],
                Some(&json!({"registered_limits": [entry]})),
                Replay::Once,
                &[],
            )
            .await?;
        let mut list: Vec<RegisteredLimit> =
            self.field(value.take(), "registered_limits", "POST /registered_limits")?;
        list.pop().ok_or_else(|| KeystoneError::Decode {
            context: self.context.clone(),
            what: "POST /registered_limits".into(),
            detail: "empty list".into(),
        })
    }

    /// `DELETE /v3/registered_limits/{id}` (cleanup tooling); 404 is fine.
    pub async fn delete_registered_limit(&self, registered_limit_id: &str) -> KsResult<()> {
        self.call(
            Method::DELETE,
            &format!("/registered_limits/{registered_limit_id}"),
            &[],
            None,
            Replay::Idempotent,
            &[StatusCode::NOT_FOUND],
        )
        .await
        .map(|_| ())
    }

    /// Project limits of one project (all services).
    pub async fn project_limits(&self, project_id: &str) -> KsResult<Vec<ProjectLimit>> {
        let found: Vec<ProjectLimit> = self
            .get_list("/limits", "limits", &[("project_id", project_id)])
            .await?;
        Ok(found
            .into_iter()
            .filter(|l| l.project_id.as_deref() == Some(project_id))
            .collect())
    }

    /// Every project limit Keystone shows to us (one call for a whole membership sweep).
    pub async fn all_limits(&self) -> KsResult<Vec<ProjectLimit>> {
        self.get_list("/limits", "limits", &[]).await
    }

    /// `POST /v3/limits` for one project limit. A 409 comes back as an `Http` error.
    pub async fn create_project_limit(
        &self,
        project_id: &str,
        service_id: &str,
        resource_name: &str,
        region_id: Option<&str>,
        resource_limit: i64,
    ) -> KsResult<ProjectLimit> {
        let mut entry = json!({"project_id": project_id, "service_id": service_id,
            "resource_name": resource_name, "resource_limit": resource_limit});
        if let Some(region) = region_id {
            entry["region_id"] = json!(region);
        }
        let (_, value) = self
            .call(
                Method::POST,
                "/limits",
                &[],
                Some(&json!({"limits": [entry]})),
                Replay::Once,
                &[],
            )
            .await?;
        let mut list: Vec<ProjectLimit> = self.field(value, "limits", "POST /limits")?;
        list.pop().ok_or_else(|| KeystoneError::Decode {
            context: self.context.clone(),
            what: "POST /limits".into(),
            detail: "empty list".into(),
        })
    }

    /// `PATCH /v3/limits/{id}`; returns the limit as Keystone stored it (callers must check it:
    /// Keystone 30 answers 200 but ignores `resource_limit: 0`).
    pub async fn update_project_limit(
        &self,
        limit_id: &str,
        resource_limit: i64,
    ) -> KsResult<ProjectLimit> {
        let body = json!({"limit": {"resource_limit": resource_limit}});
        let (_, value) = self
            .call(
                Method::PATCH,
                &format!("/limits/{limit_id}"),
                &[],
                Some(&body),
                Replay::Idempotent,
                &[],
            )
            .await?;
        self.field(value, "limit", "PATCH /limits")
    }

    /// `DELETE /v3/limits/{id}`; 404 is fine.
    pub async fn delete_project_limit(&self, limit_id: &str) -> KsResult<()> {
        self.call(
            Method::DELETE,
            &format!("/limits/{limit_id}"),
            &[],
            None,
            Replay::Idempotent,
            &[StatusCode::NOT_FOUND],
        )
        .await
        .map(|_| ())
    }

    /// Create an application credential for `user_id` on the token's project (tooling and tests).
    /// Returns its id and secret.
    pub async fn create_application_credential(
        &self,
        user_id: &str,
        name: &str,
    ) -> KsResult<(String, Secret)> {
        #[derive(Deserialize)]
        struct Created {
            id: String,
            secret: String,
        }
        let body = json!({"application_credential": {"name": name,
            "description": "created by waldur-site-agent tooling"}});
        let (_, value) = self
            .call(
                Method::POST,
                &format!("/users/{user_id}/application_credentials"),
                &[],
                Some(&body),
                Replay::Once,
                &[],
            )
            .await?;
        let created: Created = self.field(
            value,
            "application_credential",
            "POST application_credentials",
        )?;
        Ok((created.id, Secret::new(created.secret)))
    }

    pub async fn delete_application_credential(&self, user_id: &str, id: &str) -> KsResult<()> {
        self.call(
            Method::DELETE,
            &format!("/users/{user_id}/application_credentials/{id}"),
            &[],
            None,
            Replay::Idempotent,
            &[StatusCode::NOT_FOUND],
        )
        .await
        .map(|_| ())
    }

    /// Issue a token for arbitrary credentials without caching it (used by tests to prove a
    /// user's access). Returns the token body on success.
    pub async fn try_login(
        &self,
        username: &str,
        user_domain_name: &str,
        password: &Secret,
        project_id: &str,
    ) -> KsResult<TokenInfo> {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": username, "domain": {"name": user_domain_name},
                "password": password.expose()}}},
            "scope": {"project": {"id": project_id}}
        }});
        let resp = self
            .http
            .post(format!("{}/auth/tokens", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_error(&e, "POST /auth/tokens"))?;
        if !resp.status().is_success() {
            return Err(self.http_error(Method::POST, "/auth/tokens", resp).await);
        }
        Ok(self.read_token(resp).await?.info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(issued: &str, expires: &str) -> CachedToken {
        CachedToken {
            value: Secret::new("t"),
            issued_at: issued.parse().expect("ts"),
            expires_at: expires.parse().expect("ts"),
            info: TokenInfo::default(),
        }
    }

    #[test]
    fn tokens_are_renewed_before_expiry() {
        let day = token("2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z");
        let now: Timestamp = "2025-01-01T23:50:00Z".parse().expect("ts");
        assert!(
            KeystoneClient::still_fresh(&day, now),
            "10 min left of 24 h"
        );
        let now: Timestamp = "2025-01-01T23:56:00Z".parse().expect("ts");
        assert!(!KeystoneClient::still_fresh(&day, now), "4 min left: renew");
        let short = token("2025-01-01T00:00:00Z", "2025-01-01T00:04:00Z");
        let now: Timestamp = "2025-01-01T00:02:00Z".parse().expect("ts");
        assert!(
            KeystoneClient::still_fresh(&short, now),
            "short tokens keep a quarter margin"
        );
        let now: Timestamp = "2025-01-01T00:03:30Z".parse().expect("ts");
        assert!(!KeystoneClient::still_fresh(&short, now));
    }

    fn settings_with(extra: Value) -> OpenStackSettings {
        let mut map = json!({"auth_url": "https://k:5000/v3", "username": "a", "password": "p",
            "project_name": "x"});
        if let (Value::Object(m), Value::Object(e)) = (&mut map, extra) {
            m.extend(e);
        }
        let Value::Object(map) = map else {
            unreachable!("object literal")
        };
        OpenStackSettings::from_backend_settings("tls-test", &map).expect("settings")
    }

    #[test]
    fn ca_bundle_problems_are_config_errors_naming_the_file() {
        let missing = std::env::temp_dir().join(format!("no-such-ca-{}.pem", std::process::id()));
        let err = KeystoneClient::new(
            "tls-test",
            &settings_with(json!({"ca_bundle": missing.display().to_string()})),
        )
        .expect_err("missing file");
        let backend = BackendError::from(err);
        assert!(matches!(backend, BackendError::Config(_)), "{backend:?}");
        assert!(backend.to_string().contains("no-such-ca-"), "{backend}");

        let garbage = std::env::temp_dir().join(format!("garbage-ca-{}.pem", std::process::id()));
        std::fs::write(&garbage, b"not a certificate").expect("write temp file");
        let err = KeystoneClient::new(
            "tls-test",
            &settings_with(json!({"ca_bundle": garbage.display().to_string()})),
        )
        .expect_err("no certificate in file");
        let _ = std::fs::remove_file(&garbage);
        assert!(err.to_string().contains("ca_bundle"), "{err}");

        KeystoneClient::new("tls-test", &settings_with(json!({"verify_ssl": false})))
            .expect("verification can be switched off");
    }

    #[test]
    fn errors_are_classified() {
        let http = |status| KeystoneError::Http {
            context: "c".into(),
            method: "GET".into(),
            path: "/p".into(),
            status,
            message: "m".into(),
        };
        assert!(http(503).is_transient());
        assert!(!http(404).is_transient());
        assert!(BackendError::from(http(502)).is_transient());
        assert!(!BackendError::from(http(403)).is_transient());
        let rejected = KeystoneError::AuthRejected {
            context: "offering 'x'".into(),
            auth_url: "http://k/v3".into(),
            principal: "user 'admin'".into(),
            status: 401,
        };
        let backend = BackendError::from(rejected);
        assert!(matches!(backend, BackendError::Config(_)));
        assert!(backend.to_string().contains("http://k/v3"));
        let unreachable = KeystoneError::Unreachable {
            context: "c".into(),
            auth_url: "u".into(),
            detail: "refused".into(),
        };
        assert!(BackendError::from(unreachable).is_transient());
    }
}
