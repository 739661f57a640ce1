//! The Keycloak admin REST client of the agent: the groups, child groups, users and memberships
//! that grant access on Rancher (and OpenNebula VDCs), on `http-kit`'s [`RestClient`] (TLS,
//! proxy, timeouts, the one [`RetryPolicy`], request counters) with an [`OAuth2Token`] (password
//! grant of an admin user, or a client's service account; refreshed before expiry and after a
//! 401).
//!
//! What it does differently from the upstream python-keycloak wrapper:
//! - Child groups are looked up through `GET /groups/{id}/children` (Keycloak ≥ 23 no longer
//!   inlines sub-groups in `GET /groups`), with the parent's inline `subGroups` as the fallback
//!   for Keycloak < 23 (which answers 405 there); top-level groups through `?search=&exact=true`
//!   with the name checked again here (older servers ignore `exact`).
//! - Every list is read page by page with `first`/`max` (the children endpoint returns only 10
//!   by default).
//! - A 409 on create means someone (the upstream plugin, another agent) made the group first:
//!   it is found and reused.

mod config;

use std::sync::Arc;
use std::time::Duration;

use http_kit::{
    HttpError, HttpErrorKind, HttpResult, HttpSettings, OAuth2Grant, OAuth2Token, Request,
    RestClient, RetryPolicy,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Value, json};

pub use config::{KeycloakAuth, KeycloakConfig, SETTINGS};

/// What the agent writes into `attributes.managed_by` of the groups it makes.
pub const MANAGED_BY: &str = "waldur-site-agent";
/// Page size of every list read.
pub const PAGE: usize = 100;

const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A Keycloak user (the fields the agent reads).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct User {
    pub id: String,
    pub username: String,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub email: Option<String>,
}

/// A Keycloak group (the fields the agent reads).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Group {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default, rename = "subGroups")]
    pub sub_groups: Vec<Group>,
    #[serde(default, rename = "subGroupCount")]
    pub sub_group_count: Option<u64>,
    #[serde(default)]
    pub attributes: Option<Value>,
}

/// A group found or made by [`KeycloakAdmin::ensure_group`].
#[derive(Clone, Debug, PartialEq)]
pub struct Ensured {
    pub group: Group,
    /// Made now (false: it existed, e.g. made by the upstream plugin).
    pub created: bool,
}

/// Reads Keycloak's error bodies: `{"errorMessage": ...}` (conflicts, validation),
/// `{"error": ..., "error_description": ...}` (OAuth2, not found).
pub fn error_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    if let Some(m) = v["errorMessage"].as_str() {
        return Some(m.to_owned());
    }
    match (v["error"].as_str(), v["error_description"].as_str()) {
        (Some(e), Some(d)) => Some(format!("{e}: {d}")),
        (Some(e), None) => Some(e.to_owned()),
        (None, Some(d)) => Some(d.to_owned()),
        (None, None) => None,
    }
}

/// The admin client of one realm.
#[derive(Clone)]
pub struct KeycloakAdmin {
    rest: RestClient,
    /// `/admin/realms/<realm>`.
    realm_path: String,
    realm: String,
    token: Arc<OAuth2Token>,
}

impl std::fmt::Debug for KeycloakAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeycloakAdmin")
            .field("rest", &self.rest)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

impl KeycloakAdmin {
    /// Build the client (no network traffic). `context` names the caller in every error.
    pub fn new(
        context: &str,
        config: &KeycloakConfig,
        proxy: Option<&str>,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> HttpResult<Self> {
        let mut http = HttpSettings::new(context, "keycloak", config.url.clone());
        http.verify_tls = config.verify_tls;
        http.ca_bundle = config.ca_bundle.clone();
        http.proxy = proxy.map(str::to_owned);
        http.timeout = timeout;
        http.connect_timeout = timeout.min(http.connect_timeout);
        http.retry = retry;
        let base = RestClient::new(&http)?.with_error_body(error_message);
        let token_url = format!(
            "{}/realms/{}/protocol/openid-connect/token",
            base.base_url(),
            seg(&config.user_realm)
        );
        let grant = match &config.auth {
            KeycloakAuth::Password {
                username,
                password,
                client_secret,
            } => OAuth2Grant::Password {
                client_id: config.client_id.clone(),
                client_secret: client_secret.clone(),
                username: username.clone(),
                password: password.clone(),
                scope: None,
            },
            KeycloakAuth::ClientCredentials { client_secret } => OAuth2Grant::ClientCredentials {
                client_id: config.client_id.clone(),
                client_secret: client_secret.clone(),
                scope: None,
            },
        };
        let token = Arc::new(OAuth2Token::new(token_url, grant, base.clone()));
        Ok(KeycloakAdmin {
            rest: base.with_auth(token.clone()),
            realm_path: format!("/admin/realms/{}", seg(&config.realm)),
            realm: config.realm.clone(),
            token,
        })
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// `keycloak at <url>` for messages.
    pub fn target(&self) -> String {
        self.rest.target()
    }

    fn path(&self, rest: &str) -> String {
        format!("{}{rest}", self.realm_path)
    }

    fn error(&self, detail: String) -> HttpError {
        HttpError::new(
            self.rest.context().to_owned(),
            HttpErrorKind::Decode {
                what: format!("keycloak realm '{}'", self.realm),
                detail,
            },
        )
    }

    /// Sends through the kit; a 403 says which roles the admin lacks.
    async fn send(&self, request: Request) -> HttpResult<http_kit::Response> {
        self.rest.send(request).await.map_err(|e| match e.kind {
            HttpErrorKind::Status {
                what,
                status: 403,
                message,
            } => HttpError::new(
                e.context,
                HttpErrorKind::Status {
                    what,
                    status: 403,
                    message: format!(
                        "{message}; the Keycloak admin needs the realm-management roles view-users, query-groups and manage-users of realm '{}'",
                        self.realm
                    ),
                },
            ),
            _ => e,
        })
    }

    async fn send_json<T: serde::de::DeserializeOwned>(&self, request: Request) -> HttpResult<T> {
        self.send(request).await?.json()
    }

    /// Logs in (if not yet) and reads the managed realm: a refused login is an
    /// [`HttpErrorKind::AuthRejected`] error naming the user or client.
    pub async fn ping(&self) -> HttpResult<()> {
        let v: Value = self.send_json(Request::get(self.path(""))).await?;
        if v.get("realm").and_then(Value::as_str).is_some() {
            Ok(())
        } else {
            Err(self.error("the realm answer has no 'realm' field".into()))
        }
    }

    /// Forget the cached token (the next request logs in again).
    pub async fn forget_token(&self) {
        self.token.forget().await;
    }

    /// Reads every page of a list (`first`/`max`).
    async fn paged<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> HttpResult<Vec<T>> {
        let mut out = Vec::new();
        let max = PAGE.to_string();
        loop {
            let first = out.len().to_string();
            let page: Vec<T> = self
                .rest
                .send_json(
                    Request::get(path)
                        .queries(query)
                        .queries(&[("first", &first), ("max", &max)]),
                )
                .await?;
            let n = page.len();
            out.extend(page);
            if n < PAGE {
                return Ok(out);
            }
        }
    }

    async fn get_optional<T: serde::de::DeserializeOwned>(
        &self,
        path: String,
    ) -> HttpResult<Option<T>> {
        let answer = self
            .send(Request::get(path).accept(&[http_kit_status(404)]))
            .await?;
        if answer.status.as_u16() == 404 {
            return Ok(None);
        }
        answer.json().map(Some)
    }

    // ---- users ----

    /// The user with exactly this username (`?username=&exact=true`).
    pub async fn user_by_username(&self, username: &str) -> HttpResult<Option<User>> {
        let users: Vec<User> = self
            .rest
            .send_json(Request::get(self.path("/users")).queries(&[
                ("username", username),
                ("exact", "true"),
                ("briefRepresentation", "true"),
            ]))
            .await?;
        // Usernames are stored lower case; older servers may ignore `exact`.
        Ok(users
            .into_iter()
            .find(|u| u.username.eq_ignore_ascii_case(username)))
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: &str) -> HttpResult<Option<User>> {
        if id.is_empty() {
            return Ok(None);
        }
        self.get_optional(self.path(&format!("/users/{}", seg(id))))
            .await
    }

    /// The user `key` names: by id first then by username (`by_id`), or by username only.
    pub async fn find_user(&self, key: &str, by_id: bool) -> HttpResult<Option<User>> {
        if by_id && let Some(u) = self.user_by_id(key).await? {
            return Ok(Some(u));
        }
        self.user_by_username(key).await
    }

    /// Make a user (tests and demos; the agent never creates users). 409 → the existing one.
    pub async fn create_user(&self, username: &str, email: Option<&str>) -> HttpResult<User> {
        let mut body = json!({"username": username, "enabled": true});
        if let Some(e) = email {
            body["email"] = json!(e);
        }
        self.send(
            Request::post(self.path("/users"))
                .json(body)
                .accept(&[http_kit_status(409)]),
        )
        .await?;
        self.user_by_username(username)
            .await?
            .ok_or_else(|| self.error(format!("user '{username}' was created but is not found")))
    }

    // ---- groups ----

    /// A group by id.
    pub async fn group(&self, id: &str) -> HttpResult<Option<Group>> {
        self.get_optional(self.path(&format!("/groups/{}", seg(id))))
            .await
    }

    /// The top-level group with this name.
    pub async fn top_group(&self, name: &str) -> HttpResult<Option<Group>> {
        let found: Vec<Group> = self
            .paged(
                &self.path("/groups"),
                &[
                    ("search", name),
                    ("exact", "true"),
                    ("briefRepresentation", "true"),
                ],
            )
            .await?;
        let path = format!("/{name}");
        Ok(found
            .into_iter()
            .find(|g| g.name == name && g.path.as_deref().is_none_or(|p| p == path)))
    }

    /// Every child of a group (empty when the group is gone).
    pub async fn children(&self, parent_id: &str) -> HttpResult<Vec<Group>> {
        self.children_matching(parent_id, None).await
    }

    async fn children_matching(
        &self,
        parent_id: &str,
        name: Option<&str>,
    ) -> HttpResult<Vec<Group>> {
        let path = self.path(&format!("/groups/{}/children", seg(parent_id)));
        let mut query = vec![("briefRepresentation", "true")];
        if let Some(n) = name {
            query.extend([("search", n), ("exact", "true")]);
        }
        match self.paged::<Group>(&path, &query).await {
            Ok(list) => Ok(list),
            // Keycloak < 23 has no GET on children; its group answer inlines them.
            Err(e) if e.status() == Some(405) => Ok(self
                .group(parent_id)
                .await?
                .map(|g| g.sub_groups)
                .unwrap_or_default()),
            Err(e) if e.status() == Some(404) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The child of `parent_id` with this name.
    pub async fn child_group(&self, parent_id: &str, name: &str) -> HttpResult<Option<Group>> {
        Ok(self
            .children_matching(parent_id, Some(name))
            .await?
            .into_iter()
            .find(|g| g.name == name))
    }

    /// The group `name` under `parent` (top level when `None`).
    pub async fn find_group(&self, parent: Option<&str>, name: &str) -> HttpResult<Option<Group>> {
        match parent {
            Some(p) => self.child_group(p, name).await,
            None => self.top_group(name).await,
        }
    }

    /// Find the group, or make it (attributes `description` and `managed_by`). A 409 means it
    /// was made meanwhile (or the lookup missed it): it is found and reused.
    pub async fn ensure_group(
        &self,
        parent: Option<&str>,
        name: &str,
        description: &str,
    ) -> HttpResult<Ensured> {
        if let Some(group) = self.find_group(parent, name).await? {
            return Ok(Ensured {
                group,
                created: false,
            });
        }
        let path = match parent {
            Some(p) => self.path(&format!("/groups/{}/children", seg(p))),
            None => self.path("/groups"),
        };
        let description: Vec<&str> = if description.is_empty() {
            vec![]
        } else {
            vec![description]
        };
        let body_attributes = json!({"description": description, "managed_by": [MANAGED_BY]});
        let body = json!({"name": name, "attributes": body_attributes.clone()});
        let answer = self
            .send(
                Request::post(path)
                    .json(body)
                    .accept(&[http_kit_status(409)]),
            )
            .await?;
        let created = answer.status.as_u16() != 409;
        if created
            && let Some(id) = answer
                .header("location")
                .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
                .filter(|id| !id.is_empty())
        {
            // The id is in the Location: the group is what was just sent, no need to read it
            // (a child's path is left unknown rather than read).
            return Ok(Ensured {
                group: Group {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    path: parent.is_none().then(|| format!("/{name}")),
                    sub_groups: Vec::new(),
                    sub_group_count: Some(0),
                    attributes: Some(body_attributes),
                },
                created: true,
            });
        }
        match self.find_group(parent, name).await? {
            Some(group) => Ok(Ensured { group, created }),
            None => Err(self.error(format!(
                "group '{name}' {} but cannot be found; check that the admin user may view groups",
                if created {
                    "was created"
                } else {
                    "already exists (409)"
                }
            ))),
        }
    }

    /// Delete a group (and its sub-groups). `false`: it was already gone.
    pub async fn delete_group(&self, id: &str) -> HttpResult<bool> {
        let answer = self
            .send(
                Request::delete(self.path(&format!("/groups/{}", seg(id))))
                    .accept(&[http_kit_status(404)]),
            )
            .await?;
        Ok(answer.status.as_u16() != 404)
    }

    // ---- memberships ----

    /// Every member of a group (empty when the group is gone).
    pub async fn members(&self, group_id: &str) -> HttpResult<Vec<User>> {
        match self
            .paged(
                &self.path(&format!("/groups/{}/members", seg(group_id))),
                &[("briefRepresentation", "true")],
            )
            .await
        {
            Err(e) if e.status() == Some(404) => Ok(Vec::new()),
            other => other,
        }
    }

    /// Put a user into a group (no-op when already a member).
    pub async fn add_member(&self, user_id: &str, group_id: &str) -> HttpResult<()> {
        self.send(Request::put(self.path(&format!(
            "/users/{}/groups/{}",
            seg(user_id),
            seg(group_id)
        ))))
        .await
        .map(|_| ())
    }

    /// Take a user out of a group. `false`: the user or the group is gone.
    pub async fn remove_member(&self, user_id: &str, group_id: &str) -> HttpResult<bool> {
        let answer = self
            .send(
                Request::delete(self.path(&format!(
                    "/users/{}/groups/{}",
                    seg(user_id),
                    seg(group_id)
                )))
                .accept(&[http_kit_status(404)]),
            )
            .await?;
        Ok(answer.status.as_u16() != 404)
    }

    /// The groups a user is in.
    pub async fn user_groups(&self, user_id: &str) -> HttpResult<Vec<Group>> {
        self.paged(
            &self.path(&format!("/users/{}/groups", seg(user_id))),
            &[("briefRepresentation", "true")],
        )
        .await
    }
}

fn http_kit_status(code: u16) -> reqwest::StatusCode {
    reqwest::StatusCode::from_u16(code).unwrap_or(reqwest::StatusCode::NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keycloak_error_bodies_are_read() {
        assert_eq!(
            error_message(r#"{"errorMessage":"Top level group named 'x' already exists."}"#)
                .as_deref(),
            Some("Top level group named 'x' already exists.")
        );
        assert_eq!(
            error_message(
                r#"{"error":"invalid_grant","error_description":"Invalid user credentials"}"#
            )
            .as_deref(),
            Some("invalid_grant: Invalid user credentials")
        );
        assert_eq!(error_message("<html>"), None);
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(seg("c-m_1.x"), "c-m_1.x");
    }
}
