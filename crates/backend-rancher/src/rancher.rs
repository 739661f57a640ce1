//! A small Rancher v3 client on the kit's [`RestClient`]: the API key as a bearer token
//! (`<access key>:<secret key>`, which Rancher takes as it takes HTTP basic), Rancher's error body,
//! and the cluster proxy `/k8s/clusters/<id>/` for the namespaces' ResourceQuotas.

use std::sync::Arc;

use backend_api::{BackendError, BackendResult};
use http_kit::{
    HttpError, HttpErrorKind, HttpSettings, Request, RestClient, RetryPolicy, Secret, StaticToken,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};

use crate::settings::RancherSettings;

/// The ResourceQuota the agent (and the upstream plugin) writes in every namespace.
pub const QUOTA_NAME: &str = "custom-resource-quota";

const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Reads Rancher's error body `{"type":"error","status":..,"code":..,"message":..}`.
pub fn error_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let message = v.get("message").and_then(Value::as_str).unwrap_or("");
    let code = v.get("code").and_then(Value::as_str).unwrap_or("");
    match (code.is_empty(), message.is_empty()) {
        (true, true) => None,
        (false, false) => Some(format!("{code}: {message}")),
        (true, false) => Some(message.to_owned()),
        (false, true) => Some(code.to_owned()),
    }
}

/// The `data` of a collection.
pub fn data(v: &Value) -> Vec<Value> {
    v.get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The Rancher API of one offering.
pub struct RancherApi {
    rest: RestClient,
    cluster_id: String,
    principal: String,
}

impl std::fmt::Debug for RancherApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RancherApi")
            .field("rest", &self.rest)
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl RancherApi {
    /// Build the client (no network traffic).
    pub fn new(
        offering: &str,
        settings: &RancherSettings,
        proxy: Option<&str>,
    ) -> BackendResult<Self> {
        let context = format!("offering '{offering}'");
        let mut http = HttpSettings::new(context, "rancher", settings.backend_url.clone());
        http.verify_tls = settings.verify_tls;
        http.ca_bundle = settings.ca_bundle.clone();
        http.proxy = proxy.map(str::to_owned);
        http.timeout = settings.timeout;
        http.connect_timeout = settings.timeout.min(http.connect_timeout);
        http.retry = RetryPolicy {
            max_retries: settings.max_retries,
            ..RetryPolicy::default()
        };
        let token = Secret::new(format!(
            "{}:{}",
            settings.access_key,
            settings.secret_key.expose()
        ));
        let rest = RestClient::new(&http)?
            .with_error_body(error_message)
            .with_auth(Arc::new(StaticToken::bearer(token)));
        Ok(RancherApi {
            rest,
            cluster_id: settings.cluster_id.clone(),
            principal: format!("the API key '{}'", settings.access_key),
        })
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn target(&self) -> String {
        self.rest.target()
    }

    /// A 401/403 becomes a configuration error naming the key and what to check.
    fn auth(&self, e: HttpError) -> BackendError {
        match e.status() {
            Some(status @ (401 | 403)) if !matches!(e.kind, HttpErrorKind::AuthRejected { .. }) => {
                self.rest
                    .auth_rejected(
                        &self.principal,
                        status,
                        "backend_settings.username/password: an unscoped Rancher API key that is not expired, with access to the cluster",
                    )
                    .into()
            }
            _ => e.into(),
        }
    }

    pub async fn send(&self, request: Request) -> BackendResult<Value> {
        let answer = self.rest.send(request).await.map_err(|e| self.auth(e))?;
        answer.value().map_err(Into::into)
    }

    /// `None` on 404.
    async fn get_opt(&self, path: &str) -> BackendResult<Option<Value>> {
        let answer = self
            .rest
            .send(Request::get(path).accept(&[StatusCode::NOT_FOUND]))
            .await
            .map_err(|e| self.auth(e))?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        answer.value().map(Some).map_err(Into::into)
    }

    /// The cluster, checking that the key can read it.
    pub async fn ping(&self) -> BackendResult<()> {
        let cluster = self
            .get_opt(&format!("/v3/clusters/{}", seg(&self.cluster_id)))
            .await?;
        match cluster {
            Some(c) if c.get("id").and_then(Value::as_str) == Some(self.cluster_id.as_str()) => {
                Ok(())
            }
            _ => Err(BackendError::Config(format!(
                "{}: cluster '{}' not found; check backend_settings.cluster_id (the cluster's id, e.g. c-m-1234abcd)",
                self.rest.target(),
                self.cluster_id
            ))),
        }
    }

    pub async fn project(&self, id: &str) -> BackendResult<Option<Value>> {
        // A project id is `<cluster>:<project>`; one of another cluster is not ours.
        if id.split(':').next() != Some(self.cluster_id.as_str()) {
            return Ok(None);
        }
        self.get_opt(&format!("/v3/projects/{}", seg(id))).await
    }

    pub async fn project_by_name(&self, name: &str) -> BackendResult<Option<Value>> {
        let list = self
            .send(
                Request::get("/v3/projects")
                    .queries(&[("clusterId", self.cluster_id.as_str()), ("name", name)]),
            )
            .await?;
        Ok(data(&list)
            .into_iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name)))
    }

    pub async fn projects_with_prefix(&self, prefix: &str) -> BackendResult<Vec<Value>> {
        let list = self
            .send(Request::get("/v3/projects").query("clusterId", &self.cluster_id))
            .await?;
        Ok(data(&list)
            .into_iter()
            .filter(|p| {
                p.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .collect())
    }

    pub async fn create_project(
        &self,
        name: &str,
        description: &str,
        annotations: Map<String, Value>,
    ) -> BackendResult<Value> {
        self.send(Request::post("/v3/projects").json(json!({
            "type": "project", "clusterId": self.cluster_id, "name": name,
            "description": description, "annotations": annotations,
        })))
        .await
    }

    /// Replace the project's annotations (read, change, PUT).
    pub async fn set_project_annotations(
        &self,
        id: &str,
        annotations: Map<String, Value>,
    ) -> BackendResult<()> {
        self.send(
            Request::put(format!("/v3/projects/{}", seg(id)))
                .json(json!({"annotations": annotations})),
        )
        .await
        .map(|_| ())
    }

    /// `false`: already gone.
    pub async fn delete_project(&self, id: &str) -> BackendResult<bool> {
        let answer = self
            .rest
            .send(
                Request::delete(format!("/v3/projects/{}", seg(id)))
                    .accept(&[StatusCode::NOT_FOUND]),
            )
            .await
            .map_err(|e| self.auth(e))?;
        Ok(answer.status != StatusCode::NOT_FOUND)
    }

    /// Names of the project's namespaces (those being deleted left out).
    pub async fn namespaces(&self, project_id: &str) -> BackendResult<Vec<String>> {
        let list = self
            .send(
                Request::get(format!("/v3/clusters/{}/namespaces", seg(&self.cluster_id)))
                    .query("projectId", project_id),
            )
            .await?;
        Ok(data(&list)
            .into_iter()
            .filter(|n| n.get("state").and_then(Value::as_str) != Some("removing"))
            .filter_map(|n| n.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect())
    }

    /// Create a namespace in the project; `false` when one of that name exists.
    pub async fn create_namespace(
        &self,
        project_id: &str,
        name: &str,
        labels: Map<String, Value>,
    ) -> BackendResult<bool> {
        let answer = self
            .rest
            .send(
                Request::post(format!("/v3/clusters/{}/namespaces", seg(&self.cluster_id)))
                    .json(json!({
                        "type": "namespace", "name": name, "projectId": project_id,
                        "labels": labels, "annotations": {"waldur/managed": "true"},
                    }))
                    .accept(&[StatusCode::CONFLICT]),
            )
            .await
            .map_err(|e| self.auth(e))?;
        Ok(answer.status != StatusCode::CONFLICT)
    }

    /// The namespace's ResourceQuotas, through the cluster proxy (empty when it is gone).
    pub async fn quotas(&self, namespace: &str) -> BackendResult<Vec<Value>> {
        let list = self
            .get_opt(&format!(
                "/k8s/clusters/{}/api/v1/namespaces/{}/resourcequotas",
                seg(&self.cluster_id),
                seg(namespace)
            ))
            .await?;
        Ok(list
            .and_then(|l| l.get("items").and_then(Value::as_array).cloned())
            .unwrap_or_default())
    }

    /// Apply [`QUOTA_NAME`] with `hard` in the namespace (`importYaml`: created or replaced).
    pub async fn import_quota(
        &self,
        namespace: &str,
        hard: &Map<String, Value>,
    ) -> BackendResult<()> {
        let manifest = json!({
            "apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": QUOTA_NAME, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "waldur-site-agent"}},
            "spec": {"hard": hard},
        });
        // JSON is YAML: the manifest goes as it is.
        self.send(
            Request::post(format!("/v3/clusters/{}", seg(&self.cluster_id)))
                .query("action", "importYaml")
                .json(json!({"yaml": manifest.to_string(), "namespace": namespace}))
                // Applying the same manifest twice gives the same quota.
                .idempotent(true),
        )
        .await
        .map(|_| ())
    }

    /// Project role template bindings matching the field filters.
    pub async fn bindings(&self, filters: &[(&str, &str)]) -> BackendResult<Vec<Value>> {
        let list = self
            .send(Request::get("/v3/projectroletemplatebindings").queries(filters))
            .await?;
        Ok(data(&list))
    }

    pub async fn create_group_binding(
        &self,
        project_id: &str,
        role: &str,
        principal: &str,
    ) -> BackendResult<Value> {
        self.send(
            Request::post("/v3/projectroletemplatebindings").json(json!({
                "type": "projectRoleTemplateBinding", "roleTemplateId": role,
                "projectId": project_id, "groupPrincipalId": principal,
            })),
        )
        .await
    }

    pub async fn delete_binding(&self, id: &str) -> BackendResult<()> {
        self.rest
            .send(
                Request::delete(format!("/v3/projectroletemplatebindings/{}", seg(id)))
                    .accept(&[StatusCode::NOT_FOUND]),
            )
            .await
            .map_err(|e| self.auth(e))?;
        Ok(())
    }
}
