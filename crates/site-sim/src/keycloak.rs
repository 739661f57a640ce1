//! A stateful Keycloak double: the OIDC token endpoint and the admin REST API subset that
//! group-based access management uses, written from Keycloak's admin REST API reference
//! (<https://www.keycloak.org/docs-api/latest/rest-api/>), as Keycloak 24-26 answers.
//!
//! Served:
//! - `POST /realms/{realm}/protocol/openid-connect/token`: `password`, `client_credentials`
//!   and `refresh_token` grants; JWT-shaped access tokens that expire (`token_lifespan`);
//!   OAuth2 error bodies (`{"error": "invalid_grant", "error_description": ...}`).
//! - `GET /realms/{realm}`, `GET /realms/{realm}/.well-known/openid-configuration`.
//! - `/admin/realms` and `/admin/realms/{realm}`: users (`username` + `exact`, `search`,
//!   `email`, `first`/`max`, count), groups (top level, `search` + `exact`, `first`/`max`,
//!   `count`), a group's `children` (paged, `max` defaults to 10 as in Keycloak), creating a
//!   child, `group-by-path`, `members`, a user's `groups`, joining and leaving a group.
//! - Since Keycloak 23, `GET /groups` and `GET /groups/{id}` do not inline sub-groups
//!   (`subGroups` is empty; `subGroupCount` says how many); a `search` answers the matching
//!   hierarchy, as the real server does.
//! - Duplicates answer 409 `{"errorMessage": "..."}`; unknown objects 404 `{"error": ...}`;
//!   a missing or expired token 401 `{"error": "HTTP 401 Unauthorized"}`.
//!
//! `/__sim/` (stats, faults) takes the printed `sim_token` as a bearer token.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Value, json};

use crate::faults::FaultConfig;
use crate::server::{self, Double, Plumbing, ServerHandle};
use crate::stats::RequestStats;

/// Keycloak's default page size of `GET /groups/{id}/children`.
pub const CHILDREN_DEFAULT_MAX: usize = 10;
/// Keycloak's default page size of user lists and group members.
pub const USERS_DEFAULT_MAX: usize = 100;

#[derive(Debug, Clone)]
pub struct KeycloakOptions {
    pub listen: SocketAddr,
    /// Password of `admin` in the `master` realm (random when absent).
    pub admin_password: Option<String>,
    /// Secret of the confidential client `waldur-site-agent` with a service account (random
    /// when absent).
    pub client_secret: Option<String>,
    /// Lifetime of access tokens.
    pub token_lifespan: Duration,
    /// Demo data: the `waldur` realm with a few users.
    pub demo: bool,
    pub faults: FaultConfig,
}

impl Default for KeycloakOptions {
    fn default() -> Self {
        KeycloakOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_password: None,
            client_secret: None,
            token_lifespan: Duration::from_secs(60),
            demo: false,
            faults: FaultConfig::default(),
        }
    }
}

/// Users of the demo realm (`waldur`), named as waldur-sim's demo offering users.
pub const DEMO_USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
pub const DEMO_REALM: &str = "waldur";
/// The confidential client with a service account that may administer every realm.
pub const SERVICE_CLIENT: &str = "waldur-site-agent";

/// What the start line prints and a client needs.
#[derive(Clone, Serialize)]
pub struct KeycloakInfo {
    pub url: String,
    pub realm: String,
    pub user_realm: String,
    pub username: String,
    pub password: String,
    pub client_id: String,
    pub service_client_id: String,
    pub service_client_secret: String,
    pub sim_token: String,
}

impl std::fmt::Debug for KeycloakInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeycloakInfo")
            .field("url", &self.url)
            .field("realm", &self.realm)
            .field("secrets", &"***")
            .finish()
    }
}

#[derive(Clone, Debug)]
struct User {
    id: String,
    username: String,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    enabled: bool,
    created: i64,
    attributes: Value,
    password: Option<String>,
    groups: BTreeSet<String>,
    /// May administer realms (master `admin`).
    admin: bool,
}

#[derive(Clone, Debug)]
struct Group {
    id: String,
    name: String,
    parent: Option<String>,
    attributes: Value,
}

#[derive(Clone, Debug)]
struct Client {
    client_id: String,
    secret: Option<String>,
    service_account_admin: bool,
}

#[derive(Debug)]
struct Realm {
    id: String,
    name: String,
    users: IndexMap<String, User>,
    groups: IndexMap<String, Group>,
    clients: Vec<Client>,
}

impl Realm {
    fn new(name: &str) -> Realm {
        Realm {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            users: IndexMap::new(),
            groups: IndexMap::new(),
            clients: vec![Client {
                client_id: "admin-cli".into(),
                secret: None,
                service_account_admin: false,
            }],
        }
    }

    fn path(&self, id: &str) -> String {
        let mut names = Vec::new();
        let mut cur = self.groups.get(id);
        while let Some(g) = cur {
            names.push(g.name.clone());
            cur = g.parent.as_ref().and_then(|p| self.groups.get(p));
        }
        names.reverse();
        format!("/{}", names.join("/"))
    }

    fn children(&self, id: Option<&str>) -> Vec<&Group> {
        let mut v: Vec<&Group> = self
            .groups
            .values()
            .filter(|g| g.parent.as_deref() == id)
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn group_json(&self, g: &Group, brief: bool, sub: Vec<Value>) -> Value {
        let mut v = json!({
            "id": g.id,
            "name": g.name,
            "path": self.path(&g.id),
            "subGroupCount": self.children(Some(&g.id)).len(),
            "subGroups": sub,
        });
        if let Some(p) = &g.parent {
            v["parentId"] = json!(p);
        }
        if !brief {
            v["attributes"] = g.attributes.clone();
            v["realmRoles"] = json!([]);
            v["clientRoles"] = json!({});
            v["access"] = json!({"view": true, "viewMembers": true, "manageMembers": true, "manage": true, "manageMembership": true});
        }
        v
    }

    /// A group and, when it matches or a descendant does, the matching hierarchy below it.
    fn search_tree(&self, g: &Group, term: &str, exact: bool, brief: bool) -> Option<Value> {
        let own = name_matches(&g.name, term, exact);
        let subs: Vec<Value> = self
            .children(Some(&g.id))
            .into_iter()
            .filter_map(|c| self.search_tree(c, term, exact, brief))
            .collect();
        (own || !subs.is_empty()).then(|| self.group_json(g, brief, subs))
    }
}

fn name_matches(name: &str, term: &str, exact: bool) -> bool {
    if exact {
        name == term
    } else {
        let t = term.trim_matches('*').to_lowercase();
        name.to_lowercase().contains(&t)
    }
}

fn user_json(u: &User, brief: bool) -> Value {
    let mut v = json!({
        "id": u.id,
        "username": u.username,
        "enabled": u.enabled,
        "emailVerified": false,
        "createdTimestamp": u.created,
    });
    if let Some(e) = &u.email {
        v["email"] = json!(e);
    }
    if let Some(f) = &u.first_name {
        v["firstName"] = json!(f);
    }
    if let Some(l) = &u.last_name {
        v["lastName"] = json!(l);
    }
    if !brief {
        v["attributes"] = u.attributes.clone();
        v["totp"] = json!(false);
        v["disableableCredentialTypes"] = json!([]);
        v["requiredActions"] = json!([]);
        v["notBefore"] = json!(0);
        v["access"] = json!({"manageGroupMembership": true, "view": true, "mapRoles": true, "impersonate": true, "manage": true});
    }
    v
}

struct TokenInfo {
    admin: bool,
    expires: Instant,
}

struct RefreshInfo {
    realm: String,
    admin: bool,
    client_id: String,
}

struct Store {
    realms: IndexMap<String, Realm>,
    access: HashMap<String, TokenInfo>,
    refresh: HashMap<String, RefreshInfo>,
}

/// The state behind the server.
pub struct KeycloakState {
    plumbing: Plumbing,
    store: Mutex<Store>,
    sim_token: String,
    lifespan: Mutex<Duration>,
    address: Mutex<String>,
}

/// A Keycloak error answer.
fn err(status: StatusCode, body: Value) -> Response {
    json_response(status, body)
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn not_found(what: &str) -> Response {
    err(StatusCode::NOT_FOUND, json!({"error": what}))
}

fn conflict(message: String) -> Response {
    err(StatusCode::CONFLICT, json!({"errorMessage": message}))
}

fn bad_request(message: impl Into<String>) -> Response {
    err(
        StatusCode::BAD_REQUEST,
        json!({"errorMessage": message.into()}),
    )
}

fn unauthorized() -> Response {
    let mut r = err(
        StatusCode::UNAUTHORIZED,
        json!({"error": "HTTP 401 Unauthorized"}),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"master\""),
    );
    r
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    err(
        status,
        json!({"error": error, "error_description": description}),
    )
}

fn created(location: String) -> Response {
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn random_token(len: usize) -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn jwt(claims: Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        b64(&json!({"alg": "RS256", "typ": "JWT", "kid": "site-sim"})),
        b64(&claims),
        random_token(43)
    )
}

fn query_map(query: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// `first`/`max` of a query; `max` < 0 means no limit.
fn page<T>(items: Vec<T>, q: &HashMap<String, String>, default_max: Option<usize>) -> Vec<T> {
    let first = q
        .get("first")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let max = match q.get("max").and_then(|v| v.parse::<i64>().ok()) {
        Some(m) if m < 0 => None,
        Some(m) => Some(m as usize),
        None => default_max,
    };
    let it = items.into_iter().skip(first);
    match max {
        Some(m) => it.take(m).collect(),
        None => it.collect(),
    }
}

impl KeycloakState {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn base_url(&self) -> String {
        format!(
            "http://{}",
            self.address.lock().unwrap_or_else(|e| e.into_inner())
        )
    }

    fn bearer(headers: &HeaderMap) -> Option<&str> {
        let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// `Some(true)`: a live token of a realm administrator; `Some(false)`: a live token without
    /// admin roles (403); `None`: no live token (401).
    fn admin_token(&self, headers: &HeaderMap) -> Option<bool> {
        let t = Self::bearer(headers)?;
        let store = self.lock();
        store
            .access
            .get(t)
            .filter(|i| i.expires > Instant::now())
            .map(|i| i.admin)
    }

    fn issue(
        &self,
        store: &mut Store,
        realm: &str,
        admin: bool,
        client_id: &str,
        subject: &str,
    ) -> Value {
        let lifespan = *self.lifespan.lock().unwrap_or_else(|e| e.into_inner());
        let now = jiff::Timestamp::now().as_second();
        let iss = format!("{}/realms/{realm}", self.base_url());
        let access = jwt(json!({
            "exp": now + lifespan.as_secs() as i64, "iat": now, "jti": uuid::Uuid::new_v4().to_string(),
            "iss": iss, "sub": subject, "typ": "Bearer", "azp": client_id, "scope": "openid profile email",
        }));
        let refresh = jwt(json!({
            "exp": now + 1800, "iat": now, "jti": uuid::Uuid::new_v4().to_string(),
            "iss": iss, "sub": subject, "typ": "Refresh", "azp": client_id,
        }));
        store.access.insert(
            access.clone(),
            TokenInfo {
                admin,
                expires: Instant::now() + lifespan,
            },
        );
        store.refresh.insert(
            refresh.clone(),
            RefreshInfo {
                realm: realm.to_owned(),
                admin,
                client_id: client_id.to_owned(),
            },
        );
        json!({
            "access_token": access,
            "expires_in": lifespan.as_secs(),
            "refresh_expires_in": 1800,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "session_state": uuid::Uuid::new_v4().to_string(),
            "scope": "openid profile email",
        })
    }

    fn token_endpoint(&self, realm: &str, body: &[u8]) -> Response {
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        let mut store = self.lock();
        let Some(r) = store.realms.get(realm) else {
            return not_found("Realm does not exist");
        };
        let client_id = form.get("client_id").cloned().unwrap_or_default();
        let Some(client) = r.clients.iter().find(|c| c.client_id == client_id).cloned() else {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Invalid client or Invalid client credentials",
            );
        };
        if let Some(secret) = &client.secret
            && form.get("client_secret") != Some(secret)
        {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized_client",
                "Invalid client or Invalid client credentials",
            );
        }
        match form.get("grant_type").map(String::as_str) {
            Some("password") => {
                let username = form.get("username").cloned().unwrap_or_default();
                let password = form.get("password").cloned().unwrap_or_default();
                let found = r
                    .users
                    .values()
                    .find(|u| u.username == username.to_lowercase())
                    .filter(|u| u.enabled && u.password.as_deref() == Some(password.as_str()))
                    .map(|u| (u.admin, u.id.clone()));
                match found {
                    Some((admin, id)) => {
                        let body = self.issue(&mut store, realm, admin, &client_id, &id);
                        json_response(StatusCode::OK, body)
                    }
                    None => oauth_error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_grant",
                        "Invalid user credentials",
                    ),
                }
            }
            Some("client_credentials") => {
                if client.secret.is_none() {
                    return oauth_error(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized_client",
                        "Public client not allowed to retrieve service account",
                    );
                }
                let subject = format!("service-account-{client_id}");
                let body = self.issue(
                    &mut store,
                    realm,
                    client.service_account_admin,
                    &client_id,
                    &subject,
                );
                json_response(StatusCode::OK, body)
            }
            Some("refresh_token") => {
                let token = form.get("refresh_token").cloned().unwrap_or_default();
                match store.refresh.remove(&token) {
                    Some(info) if info.realm == realm && info.client_id == client_id => {
                        let body =
                            self.issue(&mut store, realm, info.admin, &client_id, "refreshed");
                        json_response(StatusCode::OK, body)
                    }
                    _ => oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Invalid refresh token",
                    ),
                }
            }
            _ => oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant_type",
            ),
        }
    }

    async fn dispatch(self: Arc<Self>, req: Request) -> Response {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let q = query_map(req.uri().query());
        let headers = req.headers().clone();
        let body = match axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024).await {
            Ok(b) => b,
            Err(_) => return bad_request("unreadable body"),
        };
        let segs: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let segs: &[&str] = segs.strip_prefix(&["auth"]).unwrap_or(&segs);
        match segs {
            ["realms", realm, "protocol", "openid-connect", "token"] if method == Method::POST => {
                self.token_endpoint(realm, &body)
            }
            ["realms", realm, ".well-known", "openid-configuration"] if method == Method::GET => {
                if !self.lock().realms.contains_key(*realm) {
                    return not_found("Realm does not exist");
                }
                let iss = format!("{}/realms/{realm}", self.base_url());
                json_response(
                    StatusCode::OK,
                    json!({
                        "issuer": iss,
                        "token_endpoint": format!("{iss}/protocol/openid-connect/token"),
                        "authorization_endpoint": format!("{iss}/protocol/openid-connect/auth"),
                        "userinfo_endpoint": format!("{iss}/protocol/openid-connect/userinfo"),
                        "grant_types_supported": ["password", "client_credentials", "refresh_token"],
                    }),
                )
            }
            ["realms", realm] if method == Method::GET => {
                if !self.lock().realms.contains_key(*realm) {
                    return not_found("Realm does not exist");
                }
                let iss = format!("{}/realms/{realm}", self.base_url());
                json_response(
                    StatusCode::OK,
                    json!({"realm": realm, "public_key": "", "token-service": format!("{iss}/protocol/openid-connect"), "account-service": format!("{iss}/account"), "tokens-not-before": 0}),
                )
            }
            ["admin", "realms", rest @ ..] => {
                match self.admin_token(&headers) {
                    None => return unauthorized(),
                    Some(false) => {
                        return err(
                            StatusCode::FORBIDDEN,
                            json!({"error": "HTTP 403 Forbidden"}),
                        );
                    }
                    Some(true) => {}
                }
                self.admin(&method, rest, &q, &body)
            }
            _ => not_found("Unable to find matching target resource method"),
        }
    }

    fn admin(
        &self,
        method: &Method,
        segs: &[&str],
        q: &HashMap<String, String>,
        body: &Bytes,
    ) -> Response {
        let json_body = || -> Result<Value, String> {
            serde_json::from_slice::<Value>(body)
                .map_err(|e| format!("unrecognized request body: {e}"))
        };
        let mut store = self.lock();
        if segs.is_empty() {
            return if *method == Method::GET {
                let list: Vec<Value> = store
                    .realms
                    .values()
                    .map(|r| json!({"id": r.id, "realm": r.name, "enabled": true}))
                    .collect();
                json_response(StatusCode::OK, json!(list))
            } else if *method == Method::POST {
                let v = match json_body() {
                    Ok(v) => v,
                    Err(m) => return bad_request(m),
                };
                let Some(name) = v.get("realm").and_then(Value::as_str) else {
                    return bad_request("Realm name is required");
                };
                if store.realms.contains_key(name) {
                    return conflict("Conflict detected. See logs for details".into());
                }
                store.realms.insert(name.to_owned(), Realm::new(name));
                created(format!("{}/admin/realms/{name}", self.base_url()))
            } else {
                not_found("Unable to find matching target resource method")
            };
        }
        let realm_name = segs[0];
        let base = format!("{}/admin/realms/{realm_name}", self.base_url());
        let Some(realm) = store.realms.get_mut(realm_name) else {
            return not_found("Realm not found.");
        };
        let brief = flag(q, "briefRepresentation");
        match (method.clone(), &segs[1..]) {
            (Method::GET, []) => json_response(
                StatusCode::OK,
                json!({"id": realm.id, "realm": realm.name, "enabled": true, "sslRequired": "external", "registrationAllowed": false}),
            ),
            (Method::DELETE, []) => {
                store.realms.shift_remove(realm_name);
                StatusCode::NO_CONTENT.into_response()
            }
            // ---- users ----
            (Method::GET, ["users"]) => {
                let users = filter_users(realm, q);
                let v: Vec<Value> = page(users, q, Some(USERS_DEFAULT_MAX))
                    .into_iter()
                    .map(|u| user_json(u, brief))
                    .collect();
                json_response(StatusCode::OK, json!(v))
            }
            (Method::GET, ["users", "count"]) => {
                json_response(StatusCode::OK, json!(filter_users(realm, q).len()))
            }
            (Method::POST, ["users"]) => {
                let v = match json_body() {
                    Ok(v) => v,
                    Err(m) => return bad_request(m),
                };
                let Some(username) = v.get("username").and_then(Value::as_str) else {
                    return bad_request("User name is missing");
                };
                let username = username.to_lowercase();
                if realm.users.values().any(|u| u.username == username) {
                    return conflict("User exists with same username".into());
                }
                let id = uuid::Uuid::new_v4().to_string();
                let password = v["credentials"]
                    .as_array()
                    .and_then(|c| c.first())
                    .and_then(|c| c["value"].as_str())
                    .map(str::to_owned);
                realm.users.insert(
                    id.clone(),
                    User {
                        id: id.clone(),
                        username,
                        email: v["email"].as_str().map(str::to_owned),
                        first_name: v["firstName"].as_str().map(str::to_owned),
                        last_name: v["lastName"].as_str().map(str::to_owned),
                        enabled: v["enabled"].as_bool().unwrap_or(false),
                        created: jiff::Timestamp::now().as_millisecond(),
                        attributes: v.get("attributes").cloned().unwrap_or(json!({})),
                        password,
                        groups: BTreeSet::new(),
                        admin: false,
                    },
                );
                created(format!("{base}/users/{id}"))
            }
            (Method::GET, ["users", id]) => match realm.users.get(*id) {
                Some(u) => json_response(StatusCode::OK, user_json(u, false)),
                None => not_found("User not found"),
            },
            (Method::DELETE, ["users", id]) => match realm.users.shift_remove(*id) {
                Some(_) => StatusCode::NO_CONTENT.into_response(),
                None => not_found("User not found"),
            },
            (Method::GET, ["users", id, "groups"]) => {
                let Some(u) = realm.users.get(*id) else {
                    return not_found("User not found");
                };
                let mut groups: Vec<&Group> = u
                    .groups
                    .iter()
                    .filter_map(|g| realm.groups.get(g))
                    .collect();
                if let Some(s) = q.get("search") {
                    groups.retain(|g| name_matches(&g.name, s, false));
                }
                groups.sort_by_key(|g| realm.path(&g.id));
                let v: Vec<Value> = page(groups, q, Some(USERS_DEFAULT_MAX))
                    .into_iter()
                    .map(|g| {
                        realm.group_json(g, !q.contains_key("briefRepresentation") || brief, vec![])
                    })
                    .collect();
                json_response(StatusCode::OK, json!(v))
            }
            (Method::GET, ["users", id, "groups", "count"]) => match realm.users.get(*id) {
                Some(u) => json_response(StatusCode::OK, json!({"count": u.groups.len()})),
                None => not_found("User not found"),
            },
            (Method::PUT, ["users", uid, "groups", gid]) => {
                if !realm.groups.contains_key(*gid) {
                    return not_found("Group not found");
                }
                match realm.users.get_mut(*uid) {
                    Some(u) => {
                        u.groups.insert((*gid).to_owned());
                        StatusCode::NO_CONTENT.into_response()
                    }
                    None => not_found("User not found"),
                }
            }
            (Method::DELETE, ["users", uid, "groups", gid]) => {
                if !realm.groups.contains_key(*gid) {
                    return not_found("Group not found");
                }
                match realm.users.get_mut(*uid) {
                    // Leaving a group one is not in is a no-op in Keycloak.
                    Some(u) => {
                        u.groups.remove(*gid);
                        StatusCode::NO_CONTENT.into_response()
                    }
                    None => not_found("User not found"),
                }
            }
            // ---- groups ----
            (Method::GET, ["groups"]) => {
                let exact = flag(q, "exact");
                let top = realm.children(None);
                let list: Vec<Value> = match q.get("search").filter(|s| !s.is_empty()) {
                    Some(term) => top
                        .into_iter()
                        .filter_map(|g| realm.search_tree(g, term, exact, brief))
                        .collect(),
                    None => top
                        .into_iter()
                        .map(|g| realm.group_json(g, brief, vec![]))
                        .collect(),
                };
                json_response(StatusCode::OK, json!(page(list, q, None)))
            }
            (Method::GET, ["groups", "count"]) => {
                let top = flag(q, "top");
                let n = realm
                    .groups
                    .values()
                    .filter(|g| !top || g.parent.is_none())
                    .filter(|g| {
                        q.get("search")
                            .is_none_or(|s| name_matches(&g.name, s, false))
                    })
                    .count();
                json_response(StatusCode::OK, json!({"count": n}))
            }
            (Method::POST, ["groups"]) => {
                let v = match json_body() {
                    Ok(v) => v,
                    Err(m) => return bad_request(m),
                };
                create_group(realm, None, &v, &base)
            }
            (Method::GET, ["groups", id]) => match realm.groups.get(*id) {
                Some(g) => json_response(StatusCode::OK, realm.group_json(g, false, vec![])),
                None => not_found("Could not find group by id"),
            },
            (Method::PUT, ["groups", id]) => {
                let v = match json_body() {
                    Ok(v) => v,
                    Err(m) => return bad_request(m),
                };
                let Some(g) = realm.groups.get(*id).cloned() else {
                    return not_found("Could not find group by id");
                };
                if let Some(name) = v["name"].as_str()
                    && name != g.name
                    && realm
                        .children(g.parent.as_deref())
                        .iter()
                        .any(|s| s.name == name)
                {
                    return conflict(format!("Sibling group named '{name}' already exists."));
                }
                if let Some(g) = realm.groups.get_mut(*id) {
                    if let Some(name) = v["name"].as_str() {
                        g.name = name.to_owned();
                    }
                    if let Some(a) = v.get("attributes") {
                        g.attributes = a.clone();
                    }
                }
                StatusCode::NO_CONTENT.into_response()
            }
            (Method::DELETE, ["groups", id]) => {
                if !realm.groups.contains_key(*id) {
                    return not_found("Could not find group by id");
                }
                // The group and its whole subtree; memberships go with them.
                let mut gone = vec![(*id).to_owned()];
                let mut i = 0;
                while i < gone.len() {
                    let kids: Vec<String> = realm
                        .groups
                        .values()
                        .filter(|g| g.parent.as_deref() == Some(gone[i].as_str()))
                        .map(|g| g.id.clone())
                        .collect();
                    gone.extend(kids);
                    i += 1;
                }
                for g in &gone {
                    realm.groups.shift_remove(g);
                }
                for u in realm.users.values_mut() {
                    u.groups.retain(|g| !gone.contains(g));
                }
                StatusCode::NO_CONTENT.into_response()
            }
            (Method::GET, ["group-by-path", path @ ..]) if !path.is_empty() => {
                let want = format!("/{}", path.join("/"));
                match realm.groups.values().find(|g| realm.path(&g.id) == want) {
                    Some(g) => json_response(StatusCode::OK, realm.group_json(g, false, vec![])),
                    None => not_found("Group path does not exist"),
                }
            }
            (Method::GET, ["groups", id, "children"]) => {
                if !realm.groups.contains_key(*id) {
                    return not_found("Could not find group by id");
                }
                let exact = flag(q, "exact");
                let mut kids = realm.children(Some(id));
                if let Some(term) = q.get("search").filter(|s| !s.is_empty()) {
                    kids.retain(|g| name_matches(&g.name, term, exact));
                }
                let v: Vec<Value> = page(kids, q, Some(CHILDREN_DEFAULT_MAX))
                    .into_iter()
                    .map(|g| realm.group_json(g, brief, vec![]))
                    .collect();
                json_response(StatusCode::OK, json!(v))
            }
            (Method::POST, ["groups", id, "children"]) => {
                if !realm.groups.contains_key(*id) {
                    return not_found("Could not find parent group by id");
                }
                let v = match json_body() {
                    Ok(v) => v,
                    Err(m) => return bad_request(m),
                };
                create_group(realm, Some(id), &v, &base)
            }
            (Method::GET, ["groups", id, "members"]) => {
                if !realm.groups.contains_key(*id) {
                    return not_found("Could not find group by id");
                }
                let members: Vec<&User> = realm
                    .users
                    .values()
                    .filter(|u| u.groups.contains(*id))
                    .collect();
                let v: Vec<Value> = page(members, q, Some(USERS_DEFAULT_MAX))
                    .into_iter()
                    .map(|u| user_json(u, brief))
                    .collect();
                json_response(StatusCode::OK, json!(v))
            }
            _ => not_found("Unable to find matching target resource method"),
        }
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

fn filter_users<'a>(realm: &'a Realm, q: &HashMap<String, String>) -> Vec<&'a User> {
    let exact = flag(q, "exact");
    let field = |value: Option<&String>, term: &str| {
        value.is_some_and(|v| {
            if exact {
                v.eq_ignore_ascii_case(term)
            } else {
                v.to_lowercase().contains(&term.to_lowercase())
            }
        })
    };
    realm
        .users
        .values()
        .filter(|u| {
            q.get("username")
                .is_none_or(|t| field(Some(&u.username), t))
        })
        .filter(|u| q.get("email").is_none_or(|t| field(u.email.as_ref(), t)))
        .filter(|u| {
            q.get("firstName")
                .is_none_or(|t| field(u.first_name.as_ref(), t))
        })
        .filter(|u| {
            q.get("lastName")
                .is_none_or(|t| field(u.last_name.as_ref(), t))
        })
        .filter(|u| {
            q.get("search").is_none_or(|t| {
                let t = t.trim_matches('*').to_lowercase();
                [
                    Some(&u.username),
                    u.email.as_ref(),
                    u.first_name.as_ref(),
                    u.last_name.as_ref(),
                ]
                .into_iter()
                .flatten()
                .any(|v| v.to_lowercase().contains(&t))
            })
        })
        .collect()
}

fn create_group(realm: &mut Realm, parent: Option<&str>, v: &Value, base: &str) -> Response {
    let Some(name) = v
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
    else {
        return bad_request("Group name is missing");
    };
    if realm.children(parent).iter().any(|g| g.name == name) {
        return conflict(match parent {
            None => format!("Top level group named '{name}' already exists."),
            Some(_) => format!("Sibling group named '{name}' already exists."),
        });
    }
    let id = uuid::Uuid::new_v4().to_string();
    realm.groups.insert(
        id.clone(),
        Group {
            id: id.clone(),
            name: name.to_owned(),
            parent: parent.map(str::to_owned),
            attributes: v.get("attributes").cloned().unwrap_or(json!({})),
        },
    );
    created(format!("{base}/groups/{id}"))
}

/// The route template of a path (ids replaced) for counters and fault rules.
pub fn route_template(path: &str) -> String {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let segs: &[&str] = segs.strip_prefix(&["auth"]).unwrap_or(&segs);
    let mut out = Vec::with_capacity(segs.len());
    for (i, s) in segs.iter().enumerate() {
        let prev = if i > 0 { segs[i - 1] } else { "" };
        let t = match prev {
            "realms" => "{realm}",
            "users" if *s != "count" => "{id}",
            "groups" if *s != "count" => {
                if i >= 3 && segs[i - 3] == "users" {
                    "{groupId}"
                } else {
                    "{id}"
                }
            }
            _ => s,
        };
        out.push(t);
    }
    format!("/{}", out.join("/"))
}

impl Double for KeycloakState {
    fn plumbing(&self) -> &Plumbing {
        &self.plumbing
    }
    fn route_template(&self, _method: &Method, path: &str) -> String {
        route_template(path)
    }
    fn fault_response(&self, status: u16) -> Response {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        err(
            code,
            json!({"error": code.canonical_reason().unwrap_or("error")}),
        )
    }
    fn admin_authorized(&self, headers: &HeaderMap) -> bool {
        Self::bearer(headers).is_some_and(|t| t == self.sim_token)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running Keycloak double; dropping it (or [`KeycloakServer::shutdown`]) stops it.
pub struct KeycloakServer {
    state: Arc<KeycloakState>,
    handle: Option<ServerHandle>,
    info: KeycloakInfo,
}

impl KeycloakServer {
    pub async fn start(opts: KeycloakOptions) -> Result<KeycloakServer, StartError> {
        let password = opts
            .admin_password
            .clone()
            .unwrap_or_else(|| random_token(20));
        let secret = opts
            .client_secret
            .clone()
            .unwrap_or_else(|| random_token(32));
        let mut master = Realm::new("master");
        let admin_id = uuid::Uuid::new_v4().to_string();
        master.users.insert(
            admin_id.clone(),
            User {
                id: admin_id,
                username: "admin".into(),
                email: None,
                first_name: None,
                last_name: None,
                enabled: true,
                created: jiff::Timestamp::now().as_millisecond(),
                attributes: json!({}),
                password: Some(password.clone()),
                groups: BTreeSet::new(),
                admin: true,
            },
        );
        master.clients.push(Client {
            client_id: SERVICE_CLIENT.into(),
            secret: Some(secret.clone()),
            service_account_admin: true,
        });
        let mut realms = IndexMap::new();
        realms.insert("master".to_owned(), master);
        if opts.demo {
            let mut demo = Realm::new(DEMO_REALM);
            for name in DEMO_USERS {
                let id = uuid::Uuid::new_v4().to_string();
                demo.users.insert(
                    id.clone(),
                    User {
                        id,
                        username: name.into(),
                        email: Some(format!("{name}@example.org")),
                        first_name: Some(name.into()),
                        last_name: None,
                        enabled: true,
                        created: jiff::Timestamp::now().as_millisecond(),
                        attributes: json!({}),
                        password: None,
                        groups: BTreeSet::new(),
                        admin: false,
                    },
                );
            }
            realms.insert(DEMO_REALM.to_owned(), demo);
        }
        let sim_token = random_token(32);
        let state = Arc::new(KeycloakState {
            plumbing: Plumbing::default(),
            store: Mutex::new(Store {
                realms,
                access: HashMap::new(),
                refresh: HashMap::new(),
            }),
            sim_token: sim_token.clone(),
            lifespan: Mutex::new(opts.token_lifespan),
            address: Mutex::new(String::new()),
        });
        state.plumbing.faults.set(opts.faults.clone());
        let app = Router::new()
            .merge(server::admin_routes::<KeycloakState>())
            .fallback(|State(st): State<Arc<KeycloakState>>, req: Request| st.dispatch(req))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                server::track::<KeycloakState>,
            ))
            .with_state(state.clone());
        let handle = ServerHandle::serve(app, opts.listen, None)
            .await
            .map_err(|source| StartError::Bind {
                addr: opts.listen,
                source,
            })?;
        *state.address.lock().unwrap_or_else(|e| e.into_inner()) = handle.addr().to_string();
        let info = KeycloakInfo {
            url: handle.url(),
            realm: DEMO_REALM.into(),
            user_realm: "master".into(),
            username: "admin".into(),
            password,
            client_id: "admin-cli".into(),
            service_client_id: SERVICE_CLIENT.into(),
            service_client_secret: secret,
            sim_token,
        };
        tracing::info!(url = %info.url, "keycloak double listening");
        Ok(KeycloakServer {
            state,
            handle: Some(handle),
            info,
        })
    }

    pub fn info(&self) -> &KeycloakInfo {
        &self.info
    }

    pub fn url(&self) -> &str {
        &self.info.url
    }

    /// Makes the realm if missing.
    pub fn ensure_realm(&self, realm: &str) {
        let mut s = self.state.lock();
        if !s.realms.contains_key(realm) {
            s.realms.insert(realm.to_owned(), Realm::new(realm));
        }
    }

    /// Adds an enabled user (as an administrator or an identity provider would); returns its id.
    pub fn add_user(&self, realm: &str, username: &str) -> String {
        self.ensure_realm(realm);
        let mut s = self.state.lock();
        let r = s.realms.get_mut(realm);
        let id = uuid::Uuid::new_v4().to_string();
        if let Some(r) = r {
            if let Some(u) = r.users.values().find(|u| u.username == username) {
                return u.id.clone();
            }
            r.users.insert(
                id.clone(),
                User {
                    id: id.clone(),
                    username: username.to_lowercase(),
                    email: None,
                    first_name: None,
                    last_name: None,
                    enabled: true,
                    created: jiff::Timestamp::now().as_millisecond(),
                    attributes: json!({}),
                    password: None,
                    groups: BTreeSet::new(),
                    admin: false,
                },
            );
        }
        id
    }

    /// Gives a user a password (it can then log in with the password grant; without admin
    /// roles the admin API answers it 403).
    pub fn set_password(&self, realm: &str, username: &str, password: &str) {
        let mut s = self.state.lock();
        if let Some(u) = s
            .realms
            .get_mut(realm)
            .and_then(|r| r.users.values_mut().find(|u| u.username == username))
        {
            u.password = Some(password.to_owned());
        }
    }

    /// Every group of a realm as `(path, member usernames)`, sorted by path.
    pub fn groups(&self, realm: &str) -> Vec<(String, Vec<String>)> {
        let s = self.state.lock();
        let Some(r) = s.realms.get(realm) else {
            return vec![];
        };
        let mut v: Vec<(String, Vec<String>)> = r
            .groups
            .keys()
            .map(|id| {
                let mut members: Vec<String> = r
                    .users
                    .values()
                    .filter(|u| u.groups.contains(id))
                    .map(|u| u.username.clone())
                    .collect();
                members.sort();
                (r.path(id), members)
            })
            .collect();
        v.sort();
        v
    }

    /// Makes every access token issued so far expire now (clients must refresh).
    pub fn expire_tokens(&self) {
        let mut s = self.state.lock();
        let now = Instant::now();
        for t in s.access.values_mut() {
            t.expires = now;
        }
    }

    pub fn set_token_lifespan(&self, lifespan: Duration) {
        *self
            .state
            .lifespan
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = lifespan;
    }

    pub fn stats(&self) -> RequestStats {
        self.state.plumbing.stats.snapshot()
    }

    pub fn reset_stats(&self) {
        self.state.plumbing.stats.reset();
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        self.state.plumbing.faults.set(faults);
    }

    pub async fn shutdown(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_templates_hide_ids() {
        assert_eq!(
            route_template("/admin/realms/waldur/groups/abc/children"),
            "/admin/realms/{realm}/groups/{id}/children"
        );
        assert_eq!(
            route_template("/admin/realms/waldur/users/u1/groups/g1"),
            "/admin/realms/{realm}/users/{id}/groups/{groupId}"
        );
        assert_eq!(
            route_template("/realms/master/protocol/openid-connect/token"),
            "/realms/{realm}/protocol/openid-connect/token"
        );
        assert_eq!(
            route_template("/admin/realms/waldur/groups/count"),
            "/admin/realms/{realm}/groups/count"
        );
    }

    #[test]
    fn paging_defaults_and_limits() {
        let q = |s: &str| query_map(Some(s));
        let v: Vec<u32> = (0..30).collect();
        assert_eq!(page(v.clone(), &q(""), Some(10)).len(), 10);
        assert_eq!(
            page(v.clone(), &q("first=25&max=10"), Some(10)),
            vec![25, 26, 27, 28, 29]
        );
        assert_eq!(page(v.clone(), &q("max=-1"), Some(10)).len(), 30);
        assert_eq!(page(v, &q(""), None).len(), 30);
    }
}
