//! The Kubernetes/OpenShift API of one offering: kube-rs (`kube` + `k8s-openapi`) on the kit
//! (`kube-kit`: TLS or a CA bundle, `global_proxy`, timeouts, retries, request counter `okd`,
//! the four token sources). Core objects are typed (`Namespace`, `ResourceQuota`,
//! `RoleBinding`); OpenShift's `project.openshift.io/v1` `projects` and `projectrequests` are
//! dynamic objects. Every failure becomes a `BackendError` here, once.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, OnceLock};

use backend_api::BackendError;
use http_kit::{
    AuthScheme, FileToken, HttpError, HttpSettings, OAuth2Grant, OAuth2Token, RestClient,
    RetryPolicy, StaticToken, TokenSource,
};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::Resource;
use kube_kit::Kube;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use crate::settings::{ClusterType, OkdSettings, TokenConfig, Verify};

/// Label put on everything the agent creates.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "waldur-site-agent";
/// The label selector of the agent's objects.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=waldur-site-agent";
const OPENSHIFT_GROUP: &str = "project.openshift.io";
/// Largest answer read (a cluster-wide list of the agent's objects stays far below).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// `projects` of `project.openshift.io/v1` (cluster-scoped).
pub fn project_resource() -> ApiResource {
    ApiResource {
        group: OPENSHIFT_GROUP.into(),
        version: "v1".into(),
        api_version: format!("{OPENSHIFT_GROUP}/v1"),
        kind: "Project".into(),
        plural: "projects".into(),
    }
}

/// `projectrequests` of `project.openshift.io/v1` (cluster-scoped, create only).
pub fn project_request_resource() -> ApiResource {
    ApiResource {
        group: OPENSHIFT_GROUP.into(),
        version: "v1".into(),
        api_version: format!("{OPENSHIFT_GROUP}/v1"),
        kind: "ProjectRequest".into(),
        plural: "projectrequests".into(),
    }
}

/// The labels of the agent's objects.
pub fn managed_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY.to_owned(), MANAGER.to_owned())])
}

/// `metadata.annotations[key]` of any object.
pub fn annotation<'a, K: Resource>(obj: &'a K, key: &str) -> Option<&'a str> {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The API client of one offering.
pub struct KubeApi {
    rest: RestClient,
    /// Built on first use (kube-rs starts a task, so it needs the runtime).
    kube: OnceLock<Kube>,
    context: String,
    principal: String,
    hint: &'static str,
    cluster_type: ClusterType,
    openshift: OnceCell<bool>,
}

impl Debug for KubeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApi")
            .field("rest", &self.rest)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl KubeApi {
    /// Build the client: TLS (verify, off, or a CA bundle), proxy, timeouts, retries, the token
    /// source. No network traffic; setup problems (CA bundle, proxy) are errors now.
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
        http.max_response_bytes = MAX_RESPONSE_BYTES;
        let base = RestClient::new(&http)?;
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
            kube: OnceLock::new(),
            context,
            principal,
            hint,
            cluster_type: settings.cluster_type,
            openshift: OnceCell::new(),
        })
    }

    fn kube(&self) -> &Kube {
        self.kube
            .get_or_init(|| Kube::from_rest(self.rest.clone(), MAX_RESPONSE_BYTES, "default"))
    }

    /// `<service> at <api_url>` for messages.
    pub fn target(&self) -> String {
        self.rest.target()
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    pub fn namespaces(&self) -> Api<Namespace> {
        Api::all(self.kube().client())
    }

    pub fn quotas(&self, ns: &str) -> Api<ResourceQuota> {
        Api::namespaced(self.kube().client(), ns)
    }

    /// `waldur-quota` objects of every namespace (one list for many resources).
    pub fn all_quotas(&self) -> Api<ResourceQuota> {
        Api::all(self.kube().client())
    }

    pub fn rolebindings(&self, ns: &str) -> Api<RoleBinding> {
        Api::namespaced(self.kube().client(), ns)
    }

    pub fn all_rolebindings(&self) -> Api<RoleBinding> {
        Api::all(self.kube().client())
    }

    pub fn projects(&self) -> Api<DynamicObject> {
        Api::all_with(self.kube().client(), &project_resource())
    }

    pub fn project_requests(&self) -> Api<DynamicObject> {
        Api::all_with(self.kube().client(), &project_request_resource())
    }

    /// The one mapping of a failed call: 401 (after the kit's one renewal for file and OAuth
    /// tokens) → configuration error naming the token source; 403 → permission error (never a
    /// token refresh); the rest as the kit classifies it (5xx, 429, unreachable: transient).
    fn error(&self, what: &str, e: kube::Error) -> BackendError {
        let e: HttpError = self.kube().error(what, e);
        match e.status() {
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

    /// `Ok(None)` on 404; every other error is an error (a 5xx is not "absent").
    pub async fn get_opt<K>(&self, api: &Api<K>, name: &str) -> Result<Option<K>, BackendError>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
    {
        match api.get(name).await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if code(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.error(&format!("GET {}", path(api, name)), e)),
        }
    }

    /// The answer is the object as stored; `Ok(None)` when it already exists (409).
    pub async fn create<K>(&self, api: &Api<K>, obj: &K) -> Result<Option<K>, BackendError>
    where
        K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), obj).await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if code(&e) == Some(409) => Ok(None),
            Err(e) => Err(self.error(&format!("POST {}", path(api, &name)), e)),
        }
    }

    /// PUT with the object's `resourceVersion`; the answer is the object as stored; `Ok(None)`
    /// on a 409 (someone wrote it since it was read).
    pub async fn replace<K>(&self, api: &Api<K>, obj: &K) -> Result<Option<K>, BackendError>
    where
        K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        match api.replace(&name, &PostParams::default(), obj).await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if code(&e) == Some(409) => Ok(None),
            Err(e) => Err(self.error(&format!("PUT {}", path(api, &name)), e)),
        }
    }

    /// A JSON merge patch; the answer is the object as stored.
    pub async fn merge_patch<K>(
        &self,
        api: &Api<K>,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<K, BackendError>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
    {
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| self.error(&format!("PATCH {}", path(api, name)), e))
    }

    /// `Ok(false)` when there was nothing to delete (404).
    pub async fn delete<K>(&self, api: &Api<K>, name: &str) -> Result<bool, BackendError>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
    {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some(404) => Ok(false),
            Err(e) => Err(self.error(&format!("DELETE {}", path(api, name)), e)),
        }
    }

    /// The agent's objects (label `app.kubernetes.io/managed-by=waldur-site-agent`).
    pub async fn list_managed<K>(&self, api: &Api<K>) -> Result<Vec<K>, BackendError>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
    {
        api.list(&ListParams::default().labels(MANAGED_SELECTOR))
            .await
            .map(|l| l.items)
            .map_err(|e| self.error(&format!("LIST {}", path(api, "")), e))
    }

    /// Objects named `name` in every namespace (`fieldSelector=metadata.name=<name>`).
    pub async fn list_named<K>(&self, api: &Api<K>, name: &str) -> Result<Vec<K>, BackendError>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
    {
        api.list(&ListParams::default().fields(&format!("metadata.name={name}")))
            .await
            .map(|l| l.items)
            .map_err(|e| self.error(&format!("LIST {}", path(api, "")), e))
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
                let groups = self
                    .kube()
                    .client()
                    .list_api_groups()
                    .await
                    .map_err(|e| self.error("GET /apis", e))?;
                Ok(groups.groups.iter().any(|g| g.name == OPENSHIFT_GROUP))
            })
            .await
            .copied()
    }

    /// `GET /api/v1`: the API answers with its resource list and accepts the token.
    pub async fn ping(&self) -> Result<(), BackendError> {
        match self.kube().client().list_core_api_resources("v1").await {
            Ok(list) if list.group_version == "v1" => Ok(()),
            Ok(_) => Err(self.not_kubernetes()),
            Err(kube::Error::SerdeError(_)) => Err(self.not_kubernetes()),
            Err(e) => Err(self.error("GET /api/v1", e)),
        }
    }

    fn not_kubernetes(&self) -> BackendError {
        BackendError::Permanent(format!(
            "{}: {} did not answer GET /api/v1 with an APIResourceList; is api_url a Kubernetes API server?",
            self.context,
            self.rest.target()
        ))
    }
}

/// The HTTP status of a Kubernetes `Status` answer.
fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(r) => Some(r.code),
        _ => None,
    }
}

/// `<plural>/<name>` (with the namespace when there is one) for messages.
fn path<K>(api: &Api<K>, name: &str) -> String
where
    K: Resource,
{
    let url = api.resource_url();
    if name.is_empty() {
        url.to_owned()
    } else {
        format!("{url}/{name}")
    }
}
