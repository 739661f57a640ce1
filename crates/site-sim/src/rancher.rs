//! A stateful Rancher (v2.x, API v3) double, written from Rancher's v3 API as the UI and
//! `rancher` CLI use it: collections `{"type": "collection", "data": [...]}` filtered by field
//! query parameters, objects with `id`/`type`/`baseType`/`links`/`actions`, errors
//! `{"type": "error", "status": 404, "code": "NotFound", "message": ...}`.
//!
//! Served:
//! - Auth: HTTP basic with an API key's access/secret key (`token-xxxxx` / secret), the same pair
//!   as a bearer token `token-xxxxx:secret`, and `POST /v3-public/localProviders/local?action=login`
//!   (admin's password) that issues such a token.
//! - `GET`/`POST /v3` (the API root; the upstream plugin "logs in" with a POST of basic auth).
//! - `clusters` (the demo cluster, `?action=importYaml` applying ResourceQuotas, RoleBindings and
//!   Namespaces onto the cluster), a cluster's `namespaces` (stored in the Kubernetes double,
//!   linked to their project by the `field.cattle.io/projectId` annotation and label, as Rancher
//!   does), `projects`, `projectroletemplatebindings` (group principals such as
//!   `keycloakoidc_group://<name>`, user ids), `roletemplates`.
//! - `/k8s/clusters/<id>/...`: Rancher's proxy onto the cluster's API, here the Kubernetes double
//!   of the same process.
//!
//! `/__sim/` (stats, faults) takes the printed `sim_token` as a bearer token.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Value, json};

use crate::faults::FaultConfig;
use crate::kubernetes::{self, KubeServer, KubeState};
use crate::server::{self, Double, Plumbing, ServerHandle};
use crate::stats::RequestStats;

/// Role templates of a fresh Rancher with project context (and the seed's default).
pub const PROJECT_ROLES: [&str; 8] = [
    "project-owner",
    "project-member",
    "read-only",
    "create-ns",
    "workloads-manage",
    "workloads-view",
    "services-manage",
    "secrets-view",
];

#[derive(Debug, Clone)]
pub struct RancherOptions {
    pub listen: SocketAddr,
    /// The API key's access key (`token-xxxxx`, random when absent).
    pub access_key: Option<String>,
    /// The API key's secret key (random when absent).
    pub secret_key: Option<String>,
    /// Password of the local `admin` (random when absent).
    pub admin_password: Option<String>,
    /// Id of the one downstream cluster.
    pub cluster_id: String,
    /// Serve HTTPS with a CA made at start (kubectl sends tokens only over TLS).
    pub tls: bool,
    /// Where the CA certificate is written (default: a file in the temp directory).
    pub ca_file: Option<std::path::PathBuf>,
    pub faults: FaultConfig,
}

impl Default for RancherOptions {
    fn default() -> Self {
        RancherOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_key: None,
            secret_key: None,
            admin_password: None,
            cluster_id: "c-m-demo1234".into(),
            tls: false,
            ca_file: None,
            faults: FaultConfig::default(),
        }
    }
}

/// What the start line prints and a client needs.
#[derive(Clone, Serialize)]
pub struct RancherInfo {
    pub url: String,
    pub access_key: String,
    pub secret_key: String,
    pub username: String,
    pub password: String,
    pub cluster_id: String,
    pub sim_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

impl std::fmt::Debug for RancherInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RancherInfo")
            .field("url", &self.url)
            .field("cluster_id", &self.cluster_id)
            .field("secrets", &"***")
            .finish()
    }
}

struct Store {
    projects: IndexMap<String, Value>,
    bindings: IndexMap<String, Value>,
    /// Bearer tokens issued by login (`token-xxxxx:secret`).
    tokens: Vec<String>,
}

pub struct RancherState {
    plumbing: Plumbing,
    kube: Arc<KubeState>,
    kube_token: String,
    access_key: String,
    secret_key: String,
    password: String,
    cluster_id: String,
    sim_token: String,
    store: Mutex<Store>,
    address: Mutex<String>,
}

const PROJECT_ID_KEY: &str = "field.cattle.io/projectId";

fn random_lower(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Rancher's (norman's) error body.
fn rancher_error(status: u16, code: &str, message: impl Into<String>) -> Response {
    let st = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(
        st,
        &json!({"type": "error", "baseType": "error", "status": status, "code": code, "message": message.into()}),
    )
}

fn not_found(what: &str) -> Response {
    rancher_error(404, "NotFound", format!("{what} not found"))
}

fn query_map(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

/// Norman's field filters: every query parameter but the paging/sorting ones is `field=value`.
fn filtered(items: Vec<Value>, q: &[(String, String)]) -> Vec<Value> {
    items
        .into_iter()
        .filter(|item| {
            q.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "limit" | "marker" | "sort" | "order" | "action")
                })
                .all(|(k, v)| match item.get(k) {
                    Some(Value::String(s)) => s == v,
                    Some(Value::Null) | None => v.is_empty(),
                    Some(other) => v.parse::<Value>().is_ok_and(|parsed| parsed == *other),
                })
        })
        .collect()
}

impl RancherState {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn base(&self) -> String {
        self.address
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn authenticated(&self, headers: &HeaderMap) -> bool {
        let Some(v) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, rest)) = v.split_once(' ') else {
            return false;
        };
        let pair = if scheme.eq_ignore_ascii_case("basic") {
            use base64::Engine;
            match base64::engine::general_purpose::STANDARD.decode(rest.trim()) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(_) => return false,
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            rest.trim().to_owned()
        } else {
            return false;
        };
        pair == format!("{}:{}", self.access_key, self.secret_key)
            || self.lock().tokens.contains(&pair)
    }

    fn collection(&self, resource_type: &str, path: &str, data: Vec<Value>) -> Response {
        let total = data.len();
        json_response(
            StatusCode::OK,
            &json!({
                "type": "collection",
                "resourceType": resource_type,
                "links": {"self": format!("{}{path}", self.base())},
                "createTypes": {resource_type: format!("{}{path}", self.base())},
                "actions": {},
                "pagination": {"limit": 1000, "total": total},
                "sort": {"order": "asc", "reverse": format!("{}{path}?order=desc", self.base())},
                "filters": {},
                "data": data,
            }),
        )
    }

    fn cluster_json(&self) -> Value {
        let base = self.base();
        let id = &self.cluster_id;
        json!({
            "id": id, "type": "cluster", "baseType": "cluster", "name": "demo", "state": "active",
            "transitioning": "no", "driver": "imported", "provider": "k3s",
            "links": {"self": format!("{base}/v3/clusters/{id}"), "namespaces": format!("{base}/v3/clusters/{id}/namespaces"), "projects": format!("{base}/v3/projects?clusterId={id}")},
            "actions": {"importYaml": format!("{base}/v3/clusters/{id}?action=importYaml"), "generateKubeconfig": format!("{base}/v3/clusters/{id}?action=generateKubeconfig")},
        })
    }

    /// A request to the Kubernetes double as its administrator.
    async fn kube(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let resp = self
            .kube_raw(
                method,
                path_and_query,
                HeaderMap::new(),
                body.map(|b| Bytes::from(b.to_string())),
            )
            .await;
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024)
            .await
            .unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn kube_raw(
        &self,
        method: Method,
        path_and_query: &str,
        mut headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Response {
        let uri: Uri = match path_and_query.parse() {
            Ok(u) => u,
            Err(_) => return rancher_error(400, "InvalidFormat", "bad proxied path"),
        };
        headers.remove(header::AUTHORIZATION);
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", self.kube_token)) {
            headers.insert(header::AUTHORIZATION, v);
        }
        if body.is_some() && !headers.contains_key(header::CONTENT_TYPE) {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        kubernetes::api::dispatch(
            State(self.kube.clone()),
            method,
            uri,
            headers,
            body.unwrap_or_default(),
        )
        .await
    }

    fn namespace_json(&self, ns: &Value) -> Value {
        let name = ns
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let project = ns
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(PROJECT_ID_KEY))
            .and_then(Value::as_str);
        let terminating =
            ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating");
        let base = self.base();
        json!({
            "id": name, "type": "namespace", "baseType": "namespace", "name": name,
            "clusterId": self.cluster_id, "projectId": project,
            "labels": ns.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
            "annotations": ns.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
            "state": if terminating { "removing" } else { "active" },
            "created": ns.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null),
            "uuid": ns.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
            "links": {"self": format!("{base}/v3/clusters/{}/namespaces/{name}", self.cluster_id)},
        })
    }

    async fn namespaces(&self) -> Vec<Value> {
        let (_, list) = self.kube(Method::GET, "/api/v1/namespaces", None).await;
        list["items"]
            .as_array()
            .map(|items| items.iter().map(|n| self.namespace_json(n)).collect())
            .unwrap_or_default()
    }

    async fn dispatch(self: Arc<Self>, req: Request) -> Response {
        let method = req.method().clone();
        let uri = req.uri().clone();
        let headers = req.headers().clone();
        let body = match axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024).await {
            Ok(b) => b,
            Err(_) => return rancher_error(400, "InvalidBodyContent", "unreadable body"),
        };
        let q = query_map(uri.query());
        let path = uri.path().to_owned();
        let segs: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        if let ["v3-public", "localProviders", "local"] = segs.as_slice() {
            return self.login(&method, &q, &body);
        }
        if !self.authenticated(&headers) {
            return rancher_error(401, "Unauthorized", "must authenticate");
        }
        if let ["k8s", "clusters", cid, rest @ ..] = segs.as_slice() {
            if *cid != self.cluster_id {
                return not_found(&format!("cluster {cid}"));
            }
            let mut target = format!("/{}", rest.join("/"));
            if let Some(query) = uri.query() {
                target = format!("{target}?{query}");
            }
            return self.kube_raw(method, &target, headers, Some(body)).await;
        }
        let action = q
            .iter()
            .find(|(k, _)| k == "action")
            .map(|(_, v)| v.clone());
        let json_body = || serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
        match (method.clone(), segs.as_slice()) {
            (Method::GET | Method::POST, ["v3"]) => json_response(
                StatusCode::OK,
                &json!({"type": "apiRoot", "id": "v3", "apiVersion": {"group": "management.cattle.io", "path": "/v3", "version": "v3"}, "links": {"self": format!("{}/v3", self.base()), "clusters": format!("{}/v3/clusters", self.base()), "projects": format!("{}/v3/projects", self.base())}}),
            ),
            (Method::GET, ["v3", "clusters"]) => self.collection(
                "cluster",
                "/v3/clusters",
                filtered(vec![self.cluster_json()], &q),
            ),
            (Method::GET, ["v3", "clusters", cid]) if *cid == self.cluster_id => {
                json_response(StatusCode::OK, &self.cluster_json())
            }
            (Method::POST, ["v3", "clusters", cid]) if *cid == self.cluster_id => {
                match action.as_deref() {
                    Some("importYaml") => self.import_yaml(&json_body()).await,
                    _ => rancher_error(404, "NotFound", "action not found"),
                }
            }
            (_, ["v3", "clusters", cid, ..]) if *cid != self.cluster_id => {
                not_found(&format!("cluster {cid}"))
            }
            (Method::GET, ["v3", "clusters", _, "namespaces"]) => {
                let list = self.namespaces().await;
                self.collection(
                    "namespace",
                    &format!("/v3/clusters/{}/namespaces", self.cluster_id),
                    filtered(list, &q),
                )
            }
            (Method::POST, ["v3", "clusters", _, "namespaces"]) => {
                self.create_namespace(&json_body()).await
            }
            (Method::GET, ["v3", "clusters", _, "namespaces", name]) => {
                let (status, ns) = self
                    .kube(Method::GET, &format!("/api/v1/namespaces/{name}"), None)
                    .await;
                if status == 200 {
                    json_response(StatusCode::OK, &self.namespace_json(&ns))
                } else {
                    not_found(&format!("namespace {name}"))
                }
            }
            (Method::DELETE, ["v3", "clusters", _, "namespaces", name]) => {
                let (status, ns) = self
                    .kube(Method::DELETE, &format!("/api/v1/namespaces/{name}"), None)
                    .await;
                if status < 300 {
                    json_response(StatusCode::OK, &self.namespace_json(&ns))
                } else {
                    not_found(&format!("namespace {name}"))
                }
            }
            (Method::GET, ["v3", "projects"]) => {
                let list: Vec<Value> = self.lock().projects.values().cloned().collect();
                self.collection("project", "/v3/projects", filtered(list, &q))
            }
            (Method::POST, ["v3", "projects"]) => self.create_project(&json_body()),
            (Method::GET, ["v3", "projects", id]) => match self.lock().projects.get(*id) {
                Some(p) => json_response(StatusCode::OK, p),
                None => not_found(&format!("projects \"{id}\"")),
            },
            (Method::PUT, ["v3", "projects", id]) => {
                let body = json_body();
                let mut store = self.lock();
                let Some(p) = store.projects.get_mut(*id) else {
                    return not_found(&format!("projects \"{id}\""));
                };
                for key in [
                    "description",
                    "annotations",
                    "labels",
                    "resourceQuota",
                    "namespaceDefaultResourceQuota",
                    "name",
                ] {
                    if let Some(v) = body.get(key) {
                        p[key] = v.clone();
                    }
                }
                json_response(StatusCode::OK, p)
            }
            (Method::DELETE, ["v3", "projects", id]) => self.delete_project(id).await,
            (Method::GET, ["v3", "projects", id, "projectroletemplatebindings"]) => {
                let list: Vec<Value> = self
                    .lock()
                    .bindings
                    .values()
                    .filter(|b| b["projectId"] == *id)
                    .cloned()
                    .collect();
                self.collection(
                    "projectRoleTemplateBinding",
                    &format!("/v3/projects/{id}/projectroletemplatebindings"),
                    filtered(list, &q),
                )
            }
            (Method::GET, ["v3", "projectroletemplatebindings"]) => {
                let list: Vec<Value> = self.lock().bindings.values().cloned().collect();
                self.collection(
                    "projectRoleTemplateBinding",
                    "/v3/projectroletemplatebindings",
                    filtered(list, &q),
                )
            }
            (Method::POST, ["v3", "projectroletemplatebindings"]) => {
                self.create_binding(&json_body())
            }
            (Method::GET, ["v3", "projectroletemplatebindings", id]) => {
                match self.lock().bindings.get(*id) {
                    Some(b) => json_response(StatusCode::OK, b),
                    None => not_found(&format!("projectroletemplatebindings \"{id}\"")),
                }
            }
            (Method::DELETE, ["v3", "projectroletemplatebindings", id]) => {
                match self.lock().bindings.shift_remove(*id) {
                    Some(mut b) => {
                        b["state"] = json!("removing");
                        json_response(StatusCode::OK, &b)
                    }
                    None => not_found(&format!("projectroletemplatebindings \"{id}\"")),
                }
            }
            (Method::GET, ["v3", "roletemplates"]) => {
                let list: Vec<Value> = PROJECT_ROLES.iter().map(|r| json!({"id": r, "type": "roleTemplate", "name": r, "context": "project", "builtin": true})).collect();
                self.collection("roleTemplate", "/v3/roletemplates", filtered(list, &q))
            }
            (Method::GET, ["v3", "roletemplates", id]) if PROJECT_ROLES.contains(id) => {
                json_response(
                    StatusCode::OK,
                    &json!({"id": id, "type": "roleTemplate", "name": id, "context": "project", "builtin": true}),
                )
            }
            _ => rancher_error(404, "NotFound", format!("{path} not found")),
        }
    }

    fn login(&self, method: &Method, q: &[(String, String)], body: &Bytes) -> Response {
        if *method != Method::POST || !q.iter().any(|(k, v)| k == "action" && v == "login") {
            return rancher_error(404, "NotFound", "action not found");
        }
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if v["username"] != "admin" || v["password"].as_str() != Some(self.password.as_str()) {
            return rancher_error(401, "Unauthorized", "authentication failed");
        }
        let name = format!("token-{}", random_lower(5));
        let token = format!("{name}:{}", random_lower(54));
        self.lock().tokens.push(token.clone());
        json_response(
            StatusCode::CREATED,
            &json!({"type": "token", "baseType": "token", "id": name, "name": name, "token": token, "userId": "user-admin", "authProvider": "local", "ttl": 57600000, "isDerived": false}),
        )
    }

    fn create_project(&self, body: &Value) -> Response {
        let Some(name) = body["name"].as_str().filter(|n| !n.trim().is_empty()) else {
            return rancher_error(422, "MissingRequired", "name is required");
        };
        let cluster = body["clusterId"].as_str().unwrap_or("");
        if cluster != self.cluster_id {
            return rancher_error(
                422,
                "InvalidReference",
                format!("clusterId: invalid reference '{cluster}'"),
            );
        }
        let mut store = self.lock();
        if store
            .projects
            .values()
            .any(|p| p["name"] == name && p["clusterId"] == cluster)
        {
            return rancher_error(
                409,
                "AlreadyExists",
                format!("project with name '{name}' already exists in cluster {cluster}"),
            );
        }
        let pid = format!("p-{}", random_lower(5));
        let id = format!("{cluster}:{pid}");
        let base = self.base();
        let now = kubernetes::store::now_rfc3339();
        let project = json!({
            "id": id, "type": "project", "baseType": "project", "name": name, "clusterId": cluster,
            "description": body["description"].as_str().unwrap_or(""),
            "annotations": body.get("annotations").cloned().unwrap_or(json!({})),
            "labels": {"cattle.io/creator": "norman"},
            "state": "active", "transitioning": "no", "created": now, "createdTS": jiff::Timestamp::now().as_millisecond(),
            "creatorId": "user-admin", "uuid": uuid::Uuid::new_v4().to_string(), "namespaceId": cluster,
            "resourceQuota": body.get("resourceQuota").cloned().unwrap_or(Value::Null),
            "namespaceDefaultResourceQuota": body.get("namespaceDefaultResourceQuota").cloned().unwrap_or(Value::Null),
            "containerDefaultResourceLimit": Value::Null,
            "links": {"self": format!("{base}/v3/projects/{id}"), "update": format!("{base}/v3/projects/{id}"), "remove": format!("{base}/v3/projects/{id}"),
                      "projectRoleTemplateBindings": format!("{base}/v3/projects/{id}/projectroletemplatebindings")},
            "actions": {"exportYaml": format!("{base}/v3/projects/{id}?action=exportYaml")},
        });
        store.projects.insert(id, project.clone());
        json_response(StatusCode::CREATED, &project)
    }

    async fn delete_project(&self, id: &str) -> Response {
        let Some(mut project) = self.lock().projects.shift_remove(id) else {
            return not_found(&format!("projects \"{id}\""));
        };
        self.lock().bindings.retain(|_, b| b["projectId"] != id);
        // Rancher's project controller deletes the project's namespaces.
        for ns in self.namespaces().await {
            if ns["projectId"] == id
                && let Some(name) = ns["name"].as_str()
            {
                self.kube(Method::DELETE, &format!("/api/v1/namespaces/{name}"), None)
                    .await;
            }
        }
        project["state"] = json!("removing");
        json_response(StatusCode::OK, &project)
    }

    async fn create_namespace(&self, body: &Value) -> Response {
        let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
            return rancher_error(422, "MissingRequired", "name is required");
        };
        let mut labels = body
            .get("labels")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or(json!({}));
        let mut annotations = body
            .get("annotations")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or(json!({}));
        if let Some(project) = body["projectId"].as_str().filter(|p| !p.is_empty()) {
            if !self.lock().projects.contains_key(project) {
                return rancher_error(
                    422,
                    "InvalidReference",
                    format!("projectId: invalid reference '{project}'"),
                );
            }
            annotations[PROJECT_ID_KEY] = json!(project);
            labels[PROJECT_ID_KEY] = json!(project.rsplit(':').next().unwrap_or(project));
        }
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels, "annotations": annotations}});
        let (status, answer) = self
            .kube(Method::POST, "/api/v1/namespaces", Some(&obj))
            .await;
        match status {
            200 | 201 => json_response(StatusCode::CREATED, &self.namespace_json(&answer)),
            409 => rancher_error(
                409,
                "AlreadyExists",
                format!("namespaces \"{name}\" already exists"),
            ),
            s => rancher_error(
                if s == 422 { 422 } else { 500 },
                "InvalidBodyContent",
                answer["message"]
                    .as_str()
                    .unwrap_or("cannot create the namespace"),
            ),
        }
    }

    /// `importYaml`: every document is applied (created, or replaced when it exists) in its
    /// namespace, or the body's `namespace`/`defaultNamespace`.
    async fn import_yaml(&self, body: &Value) -> Response {
        let Some(text) = body["yaml"].as_str() else {
            return rancher_error(422, "MissingRequired", "yaml is required");
        };
        let docs: Vec<Value> = match serde_saphyr::from_multiple::<Value>(text) {
            Ok(d) => d.into_iter().filter(|d| !d.is_null()).collect(),
            Err(e) => {
                return rancher_error(
                    422,
                    "InvalidBodyContent",
                    format!("error parsing yaml: {e}"),
                );
            }
        };
        let default_ns = body["namespace"]
            .as_str()
            .or(body["defaultNamespace"].as_str())
            .unwrap_or("default")
            .to_owned();
        let mut applied = Vec::new();
        for mut doc in docs {
            let kind = doc["kind"].as_str().unwrap_or("").to_owned();
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let ns = doc
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| default_ns.clone());
            let Some(def) = kubernetes::resources::ALL
                .iter()
                .find(|d| d.kind == kind && !d.openshift)
            else {
                return rancher_error(
                    422,
                    "InvalidBodyContent",
                    format!("error importing yaml: no matches for kind \"{kind}\""),
                );
            };
            let collection = if def.namespaced {
                doc["metadata"]["namespace"] = json!(ns);
                format!("{}/namespaces/{ns}/{}", def.prefix(), def.plural)
            } else {
                format!("{}/{}", def.prefix(), def.plural)
            };
            let (status, existing) = self
                .kube(Method::GET, &format!("{collection}/{name}"), None)
                .await;
            let (status, answer) = if status == 200 {
                if let Some(rv) = existing.pointer("/metadata/resourceVersion") {
                    doc["metadata"]["resourceVersion"] = rv.clone();
                }
                self.kube(Method::PUT, &format!("{collection}/{name}"), Some(&doc))
                    .await
            } else {
                self.kube(Method::POST, &collection, Some(&doc)).await
            };
            if status >= 300 {
                return rancher_error(
                    422,
                    "InvalidBodyContent",
                    format!(
                        "error importing yaml: {}",
                        answer["message"]
                            .as_str()
                            .unwrap_or("rejected by the cluster")
                    ),
                );
            }
            applied.push(format!("{}/{name}", def.singular));
        }
        json_response(
            StatusCode::OK,
            &json!({"type": "importYamlOutput", "message": applied.join("\n")}),
        )
    }

    fn create_binding(&self, body: &Value) -> Response {
        let role = body["roleTemplateId"].as_str().unwrap_or("");
        if !PROJECT_ROLES.contains(&role) {
            return rancher_error(
                422,
                "InvalidReference",
                format!("roleTemplateId: invalid reference '{role}'"),
            );
        }
        let project = body["projectId"].as_str().unwrap_or("").to_owned();
        let mut store = self.lock();
        if !store.projects.contains_key(&project) {
            return rancher_error(
                422,
                "InvalidReference",
                format!("projectId: invalid reference '{project}'"),
            );
        }
        let group = body["groupPrincipalId"].as_str().filter(|s| !s.is_empty());
        let user = body["userId"]
            .as_str()
            .or(body["userPrincipalId"].as_str())
            .filter(|s| !s.is_empty());
        match (group, user) {
            (Some(g), None) if g.contains("://") => {}
            (None, Some(_)) => {}
            _ => {
                return rancher_error(
                    422,
                    "InvalidBodyContent",
                    "exactly one of groupPrincipalId (provider_group://name), userId or userPrincipalId is required",
                );
            }
        }
        let pid = project.rsplit(':').next().unwrap_or(&project).to_owned();
        let id = format!("{pid}:prtb-{}", random_lower(5));
        let base = self.base();
        let binding = json!({
            "id": id, "type": "projectRoleTemplateBinding", "baseType": "projectRoleTemplateBinding",
            "name": id.rsplit(':').next().unwrap_or(&id), "namespaceId": pid,
            "projectId": project, "roleTemplateId": role,
            "groupPrincipalId": group, "groupId": Value::Null,
            "userId": body["userId"].clone(), "userPrincipalId": body["userPrincipalId"].clone(),
            "serviceAccount": "", "state": "active", "created": kubernetes::store::now_rfc3339(), "creatorId": "user-admin",
            "links": {"self": format!("{base}/v3/projectroletemplatebindings/{id}"), "remove": format!("{base}/v3/projectroletemplatebindings/{id}")},
        });
        store.bindings.insert(id, binding.clone());
        json_response(StatusCode::CREATED, &binding)
    }
}

/// The route template of a path (ids replaced) for counters and fault rules.
pub fn route_template(path: &str) -> String {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["k8s", "clusters", _, rest @ ..] => format!(
            "/k8s/clusters/{{cluster}}{}",
            kubernetes::api::route_template(false, &format!("/{}", rest.join("/")))
        ),
        _ => {
            let mut out = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                let prev = if i > 0 { segs[i - 1] } else { "" };
                out.push(match prev {
                    "clusters"
                    | "projects"
                    | "projectroletemplatebindings"
                    | "namespaces"
                    | "roletemplates"
                        if i >= 2 =>
                    {
                        "{id}"
                    }
                    _ => s,
                });
            }
            format!("/{}", out.join("/"))
        }
    }
}

impl Double for RancherState {
    fn plumbing(&self) -> &Plumbing {
        &self.plumbing
    }
    fn route_template(&self, _method: &Method, path: &str) -> String {
        route_template(path)
    }
    fn fault_response(&self, status: u16) -> Response {
        let code = match status {
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            _ => "ServerError",
        };
        rancher_error(status, code, "injected fault")
    }
    fn admin_authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t == self.sim_token)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("writing {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// A running Rancher double in front of a Kubernetes double.
pub struct RancherServer {
    state: Arc<RancherState>,
    handle: Option<ServerHandle>,
    info: RancherInfo,
}

impl RancherServer {
    pub async fn start(
        opts: RancherOptions,
        kube: &KubeServer,
    ) -> Result<RancherServer, StartError> {
        let access_key = opts
            .access_key
            .clone()
            .unwrap_or_else(|| format!("token-{}", random_lower(5)));
        let secret_key = opts.secret_key.clone().unwrap_or_else(|| random_lower(54));
        let password = opts
            .admin_password
            .clone()
            .unwrap_or_else(|| random_lower(16));
        let sim_token = random_lower(32);
        let state = Arc::new(RancherState {
            plumbing: Plumbing::default(),
            kube: kube.state(),
            kube_token: kube.token().to_owned(),
            access_key: access_key.clone(),
            secret_key: secret_key.clone(),
            password: password.clone(),
            cluster_id: opts.cluster_id.clone(),
            sim_token: sim_token.clone(),
            store: Mutex::new(Store {
                projects: IndexMap::new(),
                bindings: IndexMap::new(),
                tokens: Vec::new(),
            }),
            address: Mutex::new(String::new()),
        });
        state.plumbing.faults.set(opts.faults.clone());
        let app = Router::new()
            .merge(server::admin_routes::<RancherState>())
            .fallback(|State(st): State<Arc<RancherState>>, req: Request| st.dispatch(req))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                server::track::<RancherState>,
            ))
            .with_state(state.clone());
        let (tls, ca_file) = if opts.tls {
            let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            let ip = opts.listen.ip().to_string();
            if !opts.listen.ip().is_unspecified() && !hosts.contains(&ip) {
                hosts.push(ip);
            }
            let made = crate::tls::self_signed(&hosts)?;
            let path = opts.ca_file.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!(
                    "site-sim-rancher-{}-{}.crt",
                    std::process::id(),
                    random_lower(8)
                ))
            });
            std::fs::write(&path, &made.ca_pem).map_err(|source| StartError::Write {
                path: path.clone(),
                source,
            })?;
            (Some(made.server_config), Some(path))
        } else {
            (None, None)
        };
        let handle = ServerHandle::serve(app, opts.listen, tls)
            .await
            .map_err(|source| StartError::Bind {
                addr: opts.listen,
                source,
            })?;
        *state.address.lock().unwrap_or_else(|e| e.into_inner()) = handle.url();
        let info = RancherInfo {
            url: handle.url(),
            access_key,
            secret_key,
            username: "admin".into(),
            password,
            cluster_id: opts.cluster_id,
            sim_token,
            ca_file: ca_file.map(|p| p.display().to_string()),
        };
        tracing::info!(url = %info.url, "rancher double listening");
        Ok(RancherServer {
            state,
            handle: Some(handle),
            info,
        })
    }

    pub fn info(&self) -> &RancherInfo {
        &self.info
    }

    pub fn url(&self) -> &str {
        &self.info.url
    }

    /// Every project (as the API shows it).
    pub fn projects(&self) -> Vec<Value> {
        self.state.lock().projects.values().cloned().collect()
    }

    /// Every project role template binding.
    pub fn bindings(&self) -> Vec<Value> {
        self.state.lock().bindings.values().cloned().collect()
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

/// Rancher with its downstream cluster (a plain Kubernetes double) and a Keycloak double: what
/// `site-sim rancher` runs and the tests start.
pub struct RancherStack {
    pub kubernetes: KubeServer,
    pub keycloak: crate::KeycloakServer,
    pub rancher: RancherServer,
}

/// The start line of `site-sim rancher`.
#[derive(Clone, Serialize)]
pub struct RancherStackInfo {
    pub kind: &'static str,
    #[serde(flatten)]
    pub rancher: RancherInfo,
    pub kubernetes_url: String,
    pub kubernetes_token: String,
    pub keycloak_url: String,
    pub keycloak_realm: String,
    pub keycloak_user_realm: String,
    pub keycloak_username: String,
    pub keycloak_password: String,
    pub keycloak_sim_token: String,
}

impl RancherStack {
    pub async fn start(
        rancher: RancherOptions,
        keycloak: crate::KeycloakOptions,
        kube_faults: FaultConfig,
    ) -> anyhow::Result<RancherStack> {
        let kubernetes = KubeServer::start(kubernetes::KubeOptions {
            listen: SocketAddr::new(rancher.listen.ip(), 0),
            openshift: false,
            demo: true,
            terminate_after: std::time::Duration::from_millis(300),
            faults: kube_faults,
            ..Default::default()
        })
        .await?;
        let keycloak = crate::KeycloakServer::start(keycloak).await?;
        let rancher = RancherServer::start(rancher, &kubernetes).await?;
        Ok(RancherStack {
            kubernetes,
            keycloak,
            rancher,
        })
    }

    pub fn info(&self) -> RancherStackInfo {
        let kc = self.keycloak.info();
        RancherStackInfo {
            kind: "rancher",
            rancher: self.rancher.info().clone(),
            kubernetes_url: self.kubernetes.url().to_owned(),
            kubernetes_token: self.kubernetes.token().to_owned(),
            keycloak_url: kc.url.clone(),
            keycloak_realm: kc.realm.clone(),
            keycloak_user_realm: kc.user_realm.clone(),
            keycloak_username: kc.username.clone(),
            keycloak_password: kc.password.clone(),
            keycloak_sim_token: kc.sim_token.clone(),
        }
    }

    pub async fn shutdown(self) {
        self.rancher.shutdown().await;
        self.keycloak.shutdown().await;
        self.kubernetes.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_templates() {
        assert_eq!(
            route_template("/v3/projects/c-m-1:p-abc"),
            "/v3/projects/{id}"
        );
        assert_eq!(
            route_template("/v3/projects/c-m-1:p-abc/projectroletemplatebindings"),
            "/v3/projects/{id}/projectroletemplatebindings"
        );
        assert_eq!(
            route_template("/v3/clusters/c-m-1/namespaces"),
            "/v3/clusters/{id}/namespaces"
        );
        assert_eq!(
            route_template("/k8s/clusters/c-m-1/api/v1/namespaces/x/resourcequotas"),
            "/k8s/clusters/{cluster}/api/v1/namespaces/{namespace}/resourcequotas"
        );
    }

    #[test]
    fn filters_match_fields() {
        let items = vec![
            json!({"name": "a", "projectId": "p1"}),
            json!({"name": "b", "projectId": "p2"}),
        ];
        let q = query_map(Some("projectId=p1&limit=10"));
        assert_eq!(filtered(items, &q).len(), 1);
    }
}
