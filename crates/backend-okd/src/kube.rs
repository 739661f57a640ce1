//! A small Kubernetes/OpenShift API client on the kit's [`RestClient`] (JSON objects as
//! `serde_json::Value`; no kube-rs, see `docs/backends/okd.md`).

use std::sync::Arc;

use backend_api::BackendError;
use http_kit::{
    AuthScheme, FileToken, HttpError, HttpSettings, OAuth2Grant, OAuth2Token, Request, RestClient,
    RetryPolicy, StaticToken, TokenSource,
};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::settings::{ClusterType, OkdSettings, TokenConfig, Verify};

/// Label put on everything the agent creates.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "waldur-site-agent";

/// Reads a Kubernetes `Status` body (`{"kind":"Status","reason":..,"message":..}`).
pub fn status_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let message = v.get("message")?.as_str()?;
    let reason = v.get("reason").and_then(Value::as_str).unwrap_or("");
    Some(if reason.is_empty() {
        message.to_owned()
    } else {
        format!("{reason}: {message}")
    })
}

/// The API client of one offering.
pub struct KubeApi {
    rest: RestClient,
    context: String,
    principal: String,
    hint: &'static str,
    cluster_type: ClusterType,
    openshift: OnceCell<bool>,
}

impl std::fmt::Debug for KubeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApi")
            .field("rest", &self.rest)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl KubeApi {
    /// Build the client: TLS (verify, off, or a CA bundle), proxy, timeouts, retries, the token
    /// source. No network traffic.
    pub fn new(
        offering: &str,
        settings: &OkdSettings,
        proxy: Option<&str>,
    ) -> Result<Self, BackendError> {
        let context = format!("offering '{offering}'");
        let mut http = HttpSettings::new(context.clone(), "okd", settings.api_url.clone());
        match &settings.verify {
            Verify::On => {}
            Verify::Off => http.verify_tls = false,
            Verify::CaBundle(p) => http.ca_bundle = Some(p.clone()),
        }
        http.proxy = proxy.map(str::to_owned);
        http.timeout = settings.timeout;
        http.connect_timeout = settings.timeout.min(http.connect_timeout);
        http.retry = RetryPolicy {
            max_retries: settings.max_retries,
            ..RetryPolicy::default()
        };
        let base = RestClient::new(&http)?.with_error_body(status_message);
        let (auth, principal, hint): (Arc<dyn TokenSource>, String, &'static str) = match &settings
            .token
        {
            TokenConfig::Static(t) => (
                Arc::new(StaticToken::bearer(t.clone())),
                "the static token".to_owned(),
                "backend_settings.token (a static token is never refreshed; replace it and restart)",
            ),
            TokenConfig::ServiceAccount(p) => (
                Arc::new(FileToken::new(context.clone(), p, AuthScheme::Bearer)),
                format!("the service account token {}", p.display()),
                "the service account and its token mount",
            ),
            TokenConfig::File(p) => (
                Arc::new(FileToken::new(context.clone(), p, AuthScheme::Bearer)),
                format!("the token in {}", p.display()),
                "whatever writes token_config.token_file_path",
            ),
            TokenConfig::OAuth {
                client_id,
                client_secret,
                refresh_token,
                token_endpoint,
            } => (
                Arc::new(OAuth2Token::new(
                    token_endpoint.as_str(),
                    OAuth2Grant::RefreshToken {
                        client_id: client_id.clone(),
                        client_secret: client_secret.clone(),
                        refresh_token: refresh_token.clone(),
                    },
                    base.clone(),
                )),
                format!("OAuth client '{client_id}'"),
                "token_config.oauth_config",
            ),
        };
        Ok(KubeApi {
            rest: base.with_auth(auth),
            context,
            principal,
            hint,
            cluster_type: settings.cluster_type,
            openshift: OnceCell::new(),
        })
    }

    pub fn rest(&self) -> &RestClient {
        &self.rest
    }

    fn map_error(&self, e: HttpError) -> BackendError {
        match e.status() {
            // After the kit's one renewal (file and OAuth tokens): the credentials are wrong.
            Some(401) => self
                .rest
                .auth_rejected(&self.principal, 401, self.hint)
                .into(),
            Some(403) => BackendError::Permanent(format!(
                "{e} (the token was accepted but {} lacks the RBAC permission; see docs/backends/okd.md 'Permissions')",
                self.principal
            )),
            _ => e.into(),
        }
    }

    /// Send; errors mapped (401 → configuration error naming the token source, 403 →
    /// permission error, never a token refresh).
    pub async fn send(&self, request: Request) -> Result<Value, BackendError> {
        let resp = self
            .rest
            .send(request)
            .await
            .map_err(|e| self.map_error(e))?;
        if resp.body.is_empty() {
            return Ok(Value::Null);
        }
        resp.value().map_err(|e| self.map_error(e))
    }

    /// `Ok(None)` on 404; every other error is an error (a 5xx is not "absent").
    pub async fn get_opt(&self, path: &str) -> Result<Option<Value>, BackendError> {
        match self.rest.send(Request::get(path)).await {
            Ok(resp) => Ok(Some(resp.value().map_err(|e| self.map_error(e))?)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(self.map_error(e)),
        }
    }

    /// `Ok(None)` when the object already exists (409).
    pub async fn create(&self, path: &str, body: Value) -> Result<Option<Value>, BackendError> {
        match self.rest.send(Request::post(path).json(body)).await {
            Ok(resp) => Ok(Some(resp.value().map_err(|e| self.map_error(e))?)),
            Err(e) if e.status() == Some(409) => Ok(None),
            Err(e) => Err(self.map_error(e)),
        }
    }

    /// `Ok(false)` when there was nothing to delete.
    pub async fn delete(&self, path: &str) -> Result<bool, BackendError> {
        match self.rest.send(Request::delete(path)).await {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(self.map_error(e)),
        }
    }

    /// PUT; `Ok(None)` on a 409 (stale `resourceVersion`).
    pub async fn replace(&self, path: &str, body: Value) -> Result<Option<Value>, BackendError> {
        match self.rest.send(Request::put(path).json(body)).await {
            Ok(resp) => Ok(Some(resp.value().map_err(|e| self.map_error(e))?)),
            Err(e) if e.status() == Some(409) => Ok(None),
            Err(e) => Err(self.map_error(e)),
        }
    }

    pub async fn merge_patch(&self, path: &str, body: Value) -> Result<Value, BackendError> {
        self.send(
            Request::patch(path)
                .header("Content-Type", "application/merge-patch+json")
                .json(body),
        )
        .await
    }

    /// Whether the cluster serves `project.openshift.io` (discovery, asked once).
    pub async fn openshift(&self) -> Result<bool, BackendError> {
        match self.cluster_type {
            ClusterType::OpenShift => return Ok(true),
            ClusterType::Kubernetes => return Ok(false),
            ClusterType::Auto => {}
        }
        self.openshift
            .get_or_try_init(|| async {
                let apis = self.send(Request::get("/apis")).await?;
                Ok(apis
                    .get("groups")
                    .and_then(Value::as_array)
                    .is_some_and(|groups| {
                        groups.iter().any(|g| {
                            g.get("name").and_then(Value::as_str) == Some("project.openshift.io")
                        })
                    }))
            })
            .await
            .copied()
    }

    /// `GET /api/v1`: the API answers and accepts the token.
    pub async fn ping(&self) -> Result<(), BackendError> {
        let v = self.send(Request::get("/api/v1")).await?;
        if v.get("kind").and_then(Value::as_str) == Some("APIResourceList") {
            Ok(())
        } else {
            Err(BackendError::Permanent(format!(
                "{}: {} did not answer GET /api/v1 with an APIResourceList; is api_url a Kubernetes API server?",
                self.context,
                self.rest.target()
            )))
        }
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }
}

/// A list's items.
pub fn items(list: &Value) -> Vec<Value> {
    list.get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// `metadata.annotations[key]`.
pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

pub fn managed_labels() -> Value {
    json!({ MANAGED_BY: MANAGER })
}
