//! A small Keystone v3 client on the HTTP kit ([`http_kit`]): token issue and caching, typed
//! look-ups, role grants, role assignments and unified limits.
//!
//! Reliability rules (the kit's, configured from `backend_settings`):
//! - every request has a timeout (`timeout_seconds`) and goes through `global_proxy` when set;
//! - the token is re-issued shortly before it expires and once after a 401
//!   ([`http_kit::LoginToken`]);
//! - transient failures (connect errors, timeouts, 5xx) are retried with jittered exponential
//!   backoff, but only for idempotent calls (GET/HEAD/PUT/DELETE and our absolute-value
//!   PATCHes); creates (POST) are never blindly repeated — callers look the object up after a
//!   conflict instead;
//! - tokens and passwords never appear in logs, errors or `Debug` output.

use std::fmt;
use std::sync::Arc;

use agent_config::Secret;
use async_trait::async_trait;
use http_kit::{
    AuthScheme, HttpError, HttpErrorKind, HttpSettings, Issued, Login, LoginToken, Request,
    RestClient, RetryPolicy,
};
use jiff::Timestamp;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::settings::{Credentials, OpenStackSettings, Scope};

/// Errors of Keystone calls: the kit's classified HTTP error (`status()`, `is_transient()`;
/// `BackendError::from` maps it).
pub type KeystoneError = HttpError;

pub type KsResult<T> = Result<T, KeystoneError>;

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

/// Keystone's login: `POST /v3/auth/tokens` with the configured credentials; the token comes in
/// the `X-Subject-Token` header, its lifetime and the catalog in the body.
struct KeystoneLogin {
    credentials: Credentials,
    principal: String,
}

const AUTH_HINT: &str = "backend_settings (username/password or application credential)";

impl KeystoneLogin {
    fn body(&self) -> Value {
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
}

/// Read an issued token from a successful `POST /auth/tokens` answer.
fn read_token(answer: &http_kit::Response) -> KsResult<Issued<TokenInfo>> {
    let value = answer
        .header("x-subject-token")
        .map(str::to_owned)
        .ok_or_else(|| answer.decode_error("no X-Subject-Token header"))?;
    #[derive(Deserialize)]
    struct Body {
        token: TokenInfo,
    }
    let body: Body = serde_json::from_slice(&answer.body)
        .map_err(|e| answer.decode_error(format!("token body: {e}")))?;
    let expires_at: Timestamp =
        body.token.expires_at.parse().map_err(|e| {
            answer.decode_error(format!("expires_at '{}': {e}", body.token.expires_at))
        })?;
    let issued_at = body
        .token
        .issued_at
        .parse()
        .unwrap_or_else(|_| Timestamp::now());
    Ok(Issued {
        token: Secret::new(value),
        issued_at,
        expires_at,
        info: body.token,
    })
}

#[async_trait]
impl Login for KeystoneLogin {
    type Info = TokenInfo;

    /// Issue a new token (retried on transient failures: issuing a token changes nothing).
    async fn login(&self, http: &RestClient) -> KsResult<Issued<TokenInfo>> {
        let answer = http
            .send(
                Request::post("/auth/tokens")
                    .json(self.body())
                    .without_auth()
                    .idempotent(true)
                    .accept(&[StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN]),
            )
            .await?;
        if !answer.status.is_success() {
            return Err(http.auth_rejected(&self.principal, answer.status.as_u16(), AUTH_HINT));
        }
        read_token(&answer)
    }
}

/// Keystone's error bodies: `{"error": {"code", "message", "title"}}`.
fn keystone_error_body(text: &str) -> Option<String> {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
}

/// The Keystone v3 client. Cheap to share behind an `Arc`; the token is cached inside.
pub struct KeystoneClient {
    /// Authenticated with [`KeystoneClient::login`].
    rest: RestClient,
    /// Without a token (logins of other principals, token validation).
    plain: RestClient,
    login: Arc<LoginToken<KeystoneLogin>>,
    principal: String,
}

impl fmt::Debug for KeystoneClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeystoneClient")
            .field("auth_url", &self.rest.base_url())
            .field("principal", &self.principal)
            .field("token", &"***")
            .finish()
    }
}

impl KeystoneClient {
    /// Build the client (no network traffic yet). `offering` names the offering in errors.
    pub fn new(offering: &str, settings: &OpenStackSettings) -> KsResult<Self> {
        Self::with_proxy(offering, settings, None)
    }

    /// Like [`KeystoneClient::new`], sending every request through `proxy` (`global_proxy`).
    pub fn with_proxy(
        offering: &str,
        settings: &OpenStackSettings,
        proxy: Option<&str>,
    ) -> KsResult<Self> {
        let mut http = HttpSettings::new(
            format!("offering '{offering}'"),
            "Keystone",
            settings.auth_url.clone(),
        );
        http.counter = Some("openstack".to_owned());
        http.verify_tls = settings.verify_ssl;
        http.ca_bundle = settings.ca_bundle.clone();
        http.proxy = proxy.map(str::to_owned);
        http.timeout = settings.timeout;
        http.connect_timeout = settings.timeout.min(std::time::Duration::from_secs(10));
        http.user_agent = concat!("waldur-site-agent-openstack/", env!("CARGO_PKG_VERSION")).into();
        http.retry = RetryPolicy {
            max_retries: settings.max_retries,
            base_delay: settings.retry_base_delay,
            ..RetryPolicy::default()
        };
        let plain = RestClient::new(&http)?.with_error_body(keystone_error_body);
        let principal = settings.principal();
        let login = Arc::new(LoginToken::new(
            KeystoneLogin {
                credentials: settings.credentials.clone(),
                principal: principal.clone(),
            },
            plain.clone(),
            AuthScheme::Header("X-Auth-Token"),
        ));
        Ok(KeystoneClient {
            rest: plain.with_auth(login.clone()),
            plain,
            login,
            principal,
        })
    }

    pub fn auth_url(&self) -> &str {
        self.rest.base_url()
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Requests sent by every Keystone client of this process (logins and retries included).
    pub fn requests(&self) -> u64 {
        self.rest.requests()
    }

    // ---- tokens -------------------------------------------------------------------------------

    /// Authenticate now (or reuse the cached token) and return what the token says.
    pub async fn authenticate(&self) -> KsResult<TokenInfo> {
        Ok(self.login.issued(None).await?.info)
    }

    /// Drop the cached token (tests, credential rotation).
    pub async fn forget_token(&self) {
        self.login.forget().await;
    }

    // ---- requests -----------------------------------------------------------------------------

    fn decode(&self, what: &str, detail: impl Into<String>) -> KeystoneError {
        HttpError::new(
            self.rest.context().to_owned(),
            HttpErrorKind::Decode {
                what: what.to_owned(),
                detail: detail.into(),
            },
        )
    }

    /// Send one call with the token (re-issued once after a 401), retrying transient failures
    /// of idempotent calls. Returns the status and the body (JSON, `Null` when empty). Non-2xx
    /// answers other than those in `accept` become errors.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        replay: Replay,
        accept: &[StatusCode],
    ) -> KsResult<(StatusCode, Value)> {
        let head = method == Method::HEAD;
        let mut request = Request::new(method, path)
            .queries(query)
            .accept(accept)
            .idempotent(replay == Replay::Idempotent);
        if let Some(body) = body {
            request = request.json(body.clone());
        }
        let answer = self.rest.send(request).await?;
        let value = if head { Value::Null } else { answer.value()? };
        Ok((answer.status, value))
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
        serde_json::from_value(body[key].take())
            .map_err(|e| self.decode(what, format!("field '{key}': {e}")))
    }

    /// Reachability and token validity: `GET /v3/auth/tokens` validating our own token.
    pub async fn ping(&self) -> KsResult<()> {
        let token = self.login.issued(None).await?.token;
        let answer = self
            .plain
            .send(
                Request::get("/auth/tokens")
                    .secret_header("X-Auth-Token", &token)
                    .secret_header("X-Subject-Token", &token)
                    .accept(&[StatusCode::UNAUTHORIZED, StatusCode::NOT_FOUND]),
            )
            .await?;
        if !answer.status.is_success() {
            // Revoked under us: the next call re-issues it.
            self.forget_token().await;
            self.login.issued(None).await?;
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
        list.pop()
            .ok_or_else(|| self.decode("POST /registered_limits", "empty list"))
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
        list.pop()
            .ok_or_else(|| self.decode("POST /limits", "empty list"))
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
        let answer = self
            .plain
            .send(Request::post("/auth/tokens").json(body).idempotent(false))
            .await?;
        Ok(read_token(&answer)?.info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_api::BackendError;

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
        let http = |status| {
            HttpError::new(
                "c",
                HttpErrorKind::Status {
                    what: "Keystone GET /p".into(),
                    status,
                    message: "m".into(),
                },
            )
        };
        assert!(http(503).is_transient());
        assert!(!http(404).is_transient());
        assert!(BackendError::from(http(502)).is_transient());
        assert!(!BackendError::from(http(403)).is_transient());
        let rejected = HttpError::new(
            "offering 'x'",
            HttpErrorKind::AuthRejected {
                target: "Keystone at http://k/v3".into(),
                principal: "user 'admin'".into(),
                status: 401,
                hint: AUTH_HINT.into(),
            },
        );
        let backend = BackendError::from(rejected);
        assert!(matches!(backend, BackendError::Config(_)));
        assert!(backend.to_string().contains("http://k/v3"));
        let unreachable = HttpError::new(
            "c",
            HttpErrorKind::Unreachable {
                target: "u".into(),
                detail: "refused".into(),
            },
        );
        assert!(BackendError::from(unreachable).is_transient());
    }
}
