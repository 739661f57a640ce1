//! [`OkdBackend`]: a Waldur resource as an OpenShift project (or a Kubernetes Namespace), its
//! limits as the `waldur-quota` ResourceQuota, its members as one RoleBinding each.
//!
//! Requests: a write's answer is the object as the API server stored it, so it confirms the
//! write (no read-back); a quota read is reused for the write that follows it; the membership
//! pass reads many resources with three list calls.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agent_config::BackendComponent;
use async_trait::async_trait;
use backend_api::names::validate_site_name;
use backend_api::units::usage_from_site;
use backend_api::{
    BackendError, BackendHealth, BackendResourceInfo, BackendResult, BillingPeriod, Check,
    CreateRequest, Diagnostics, Limits, MembershipBackend, OrderBackend, ResourceView,
    UsageBackend, UsageReport, UserGrant,
};
use indexmap::IndexMap;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, ResourceQuotaSpec};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use serde_json::{Map, Value, json};

use crate::kube::{KubeApi, annotation, managed_labels, project_request_resource};
use crate::quota::{self, COMPONENTS, Hard};
use crate::settings::OkdSettings;

pub const QUOTA_NAME: &str = "waldur-quota";
/// Quota annotation: `paused` or `downscaled` (absent: normal).
pub const STATE_ANNOTATION: &str = "waldur/state";
/// Quota annotation: the Waldur limits (JSON) to restore to.
pub const LIMITS_ANNOTATION: &str = "waldur/limits";
/// RoleBinding annotation: the Waldur-side username.
pub const USER_ANNOTATION: &str = "waldur/username";
/// From this many resources on, a membership pass lists the agent's namespaces, quotas and
/// RoleBindings once (3 requests) instead of reading each resource (3 requests each).
const LIST_FROM: usize = 2;
/// How long what a membership pass read (`pull_resources`) answers that pass's `restore` and
/// `resource_metadata` of the same resource. The agent's own writes keep it up to date with the
/// objects the API server answered; a write that fails drops it.
const SNAPSHOT_TTL: Duration = Duration::from_secs(30);

/// Refuse a name Kubernetes would refuse as a namespace (DNS-1123 label).
pub fn validate_namespace(name: &str) -> BackendResult<()> {
    backend_api::names::validate_dns_label("OKD project name", name)
}

/// The RoleBinding name of a user: `waldur-<user>` when the user name is a valid object name,
/// else a cleaned name with a hash of the original (so two users never share one).
pub fn rolebinding_name(username: &str) -> String {
    let lower = username.to_ascii_lowercase();
    let clean: String = lower
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean == username && username.len() <= 200 {
        return format!("waldur-{username}");
    }
    let mut hash: u32 = 0x811c_9dc5;
    for b in username.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let clean: String = clean.chars().take(200).collect();
    format!("waldur-{}-{hash:08x}", clean.trim_matches(['-', '.']))
}

/// A resource as `pull_resources` read it.
#[derive(Clone)]
struct Snapshot {
    at: Instant,
    namespace: Namespace,
    quota: Option<ResourceQuota>,
    bindings: Bindings,
}

/// The `okd` backend of one offering.
pub struct OkdBackend {
    offering: String,
    settings: OkdSettings,
    components: IndexMap<String, BackendComponent>,
    api: KubeApi,
    /// By namespace; a write of the agent updates its entry with the answer, a failed one drops
    /// it.
    snapshots: Mutex<BTreeMap<String, Snapshot>>,
}

impl std::fmt::Debug for OkdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OkdBackend")
            .field("offering", &self.offering)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What the quota says about a resource.
#[derive(Debug, Default)]
struct QuotaView {
    object: Option<ResourceQuota>,
    state: Option<String>,
    /// Waldur limits: the saved ones while paused/downscaled, else read from `spec.hard`.
    limits: Limits,
}

/// Users bound by the agent's RoleBindings: user → (binding name, ClusterRole).
type Bindings = BTreeMap<String, Vec<(String, String)>>;

fn hard_of(q: &ResourceQuota) -> Hard {
    q.spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default()
}

fn terminating(n: &Namespace) -> bool {
    n.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

/// A snapshot still recent enough to answer for the site.
fn fresh(snapshot: Option<&Snapshot>) -> Option<&Snapshot> {
    snapshot.filter(|s| s.at.elapsed() < SNAPSHOT_TTL)
}

/// Whether `rb` binds ClusterRole `role` to user `user`.
fn grants(rb: &RoleBinding, user: &str, role: &str) -> bool {
    rb.role_ref.kind == "ClusterRole"
        && rb.role_ref.name == role
        && rb
            .subjects
            .iter()
            .flatten()
            .any(|s| s.kind == "User" && s.name == user)
}

fn bindings_of(list: &[RoleBinding]) -> Bindings {
    let mut out = Bindings::new();
    for rb in list {
        let name = rb.metadata.name.clone().unwrap_or_default();
        for s in rb.subjects.iter().flatten() {
            if s.kind == "User" {
                out.entry(s.name.clone())
                    .or_default()
                    .push((name.clone(), rb.role_ref.name.clone()));
            }
        }
    }
    out
}

impl OkdBackend {
    pub fn new(
        offering: &str,
        settings: OkdSettings,
        components: IndexMap<String, BackendComponent>,
        proxy: Option<&str>,
    ) -> BackendResult<Self> {
        for key in components.keys() {
            if !COMPONENTS.contains(&key.as_str()) {
                return Err(BackendError::Config(format!(
                    "offering '{offering}': backend_components.{key}: an OKD quota has only cpu, memory, storage and pods"
                )));
            }
        }
        let api = KubeApi::new(offering, &settings, proxy)?;
        Ok(OkdBackend {
            offering: offering.to_owned(),
            settings,
            components,
            api,
            snapshots: Mutex::new(BTreeMap::new()),
        })
    }

    fn snapshots(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Snapshot>> {
        self.snapshots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What this membership pass read of `ns`, if it is recent and nothing was written since.
    fn snapshot(&self, ns: &str) -> Option<Snapshot> {
        let mut all = self.snapshots();
        all.retain(|_, s| s.at.elapsed() < SNAPSHOT_TTL);
        all.get(ns).cloned()
    }

    /// Forget what was read of `ns` (before any write to it); the snapshot is handed back so
    /// that a write that succeeds can put it back with what the API server answered.
    fn written(&self, ns: &str) -> Option<Snapshot> {
        self.snapshots().remove(ns)
    }

    /// Put back a snapshot after a successful write, changed by `update`.
    fn rewritten(&self, ns: &str, snapshot: Option<Snapshot>, update: impl FnOnce(&mut Snapshot)) {
        if let Some(mut s) = snapshot {
            update(&mut s);
            self.snapshots().insert(ns.to_owned(), s);
        }
    }

    pub fn api(&self) -> &KubeApi {
        &self.api
    }

    pub fn settings(&self) -> &OkdSettings {
        &self.settings
    }

    fn organization_id(&self, r: &ResourceView) -> String {
        format!(
            "{}{}{}",
            self.settings.namespace_prefix, self.settings.customer_prefix, r.customer_slug
        )
    }

    fn parent_id(&self, r: &ResourceView) -> String {
        format!(
            "{}{}{}",
            self.settings.namespace_prefix, self.settings.project_prefix, r.project_slug
        )
    }

    fn annotations(&self, r: &ResourceView) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        let description = if r.name.is_empty() {
            r.backend_id.clone()
        } else {
            r.name.clone()
        };
        a.insert("openshift.io/description".into(), description.clone());
        a.insert("openshift.io/display-name".into(), description);
        a.insert("waldur/organization".into(), self.organization_id(r));
        if !r.project_slug.is_empty() {
            a.insert("waldur/parent".into(), self.parent_id(r));
        }
        if !r.uuid.is_empty() {
            a.insert("waldur/resource-uuid".into(), r.uuid.clone());
        }
        a
    }

    /// The namespace, `None` when absent or `Terminating` (on its way out).
    async fn namespace(&self, ns: &str) -> BackendResult<Option<Namespace>> {
        validate_namespace(ns)?;
        let found = self.api.get_opt(&self.api.namespaces(), ns).await?;
        Ok(found.filter(|n| !terminating(n)))
    }

    fn quota_view(&self, object: Option<ResourceQuota>) -> QuotaView {
        let Some(object) = object else {
            return QuotaView::default();
        };
        let state = annotation(&object, STATE_ANNOTATION).map(str::to_owned);
        let saved: Option<Limits> =
            annotation(&object, LIMITS_ANNOTATION).and_then(|s| serde_json::from_str(s).ok());
        let limits = match (&state, saved) {
            (Some(_), Some(saved)) => saved,
            _ => quota::limits_from_hard(&hard_of(&object), &self.components),
        };
        QuotaView {
            object: Some(object),
            state,
            limits,
        }
    }

    async fn read_quota(&self, ns: &str) -> BackendResult<QuotaView> {
        let object = self.api.get_opt(&self.api.quotas(ns), QUOTA_NAME).await?;
        Ok(self.quota_view(object))
    }

    /// Write `waldur-quota`: create it when `current` is `None`, else replace it with the
    /// `resourceVersion` of `current` (the caller's read). The answer is the quota as stored,
    /// checked against what was written. A 409 (changed or created meanwhile) reads it again,
    /// at most 3 times. Returns the stored quota when anything changed, `None` when it already
    /// was as asked.
    async fn write_quota(
        &self,
        ns: &str,
        current: Option<ResourceQuota>,
        hard: Hard,
        state: Option<&str>,
        saved: &Limits,
    ) -> BackendResult<Option<ResourceQuota>> {
        let snapshot = self.written(ns);
        let saved_text = serde_json::to_string(saved).unwrap_or_default();
        let quotas = self.api.quotas(ns);
        let mut current = current;
        for attempt in 0..3 {
            if attempt > 0 {
                current = self.api.get_opt(&quotas, QUOTA_NAME).await?;
            }
            let stored = match current.take() {
                None => {
                    let mut annotations = BTreeMap::new();
                    annotations.insert(LIMITS_ANNOTATION.to_owned(), saved_text.clone());
                    if let Some(s) = state {
                        annotations.insert(STATE_ANNOTATION.to_owned(), s.to_owned());
                    }
                    let object = ResourceQuota {
                        metadata: ObjectMeta {
                            name: Some(QUOTA_NAME.to_owned()),
                            namespace: Some(ns.to_owned()),
                            labels: Some(managed_labels()),
                            annotations: Some(annotations),
                            ..ObjectMeta::default()
                        },
                        spec: Some(ResourceQuotaSpec {
                            hard: Some(hard.clone()),
                            ..ResourceQuotaSpec::default()
                        }),
                        status: None,
                    };
                    self.api.create(&quotas, &object).await?
                }
                Some(mut object) => {
                    let same_annotations = annotation(&object, STATE_ANNOTATION) == state
                        && annotation(&object, LIMITS_ANNOTATION) == Some(saved_text.as_str());
                    if quota::same_hard(&hard_of(&object), &hard) && same_annotations {
                        self.rewritten(ns, snapshot, |s| s.quota = Some(object));
                        return Ok(None);
                    }
                    let annotations = object.metadata.annotations.get_or_insert_default();
                    annotations.remove(STATE_ANNOTATION);
                    if let Some(s) = state {
                        annotations.insert(STATE_ANNOTATION.to_owned(), s.to_owned());
                    }
                    annotations.insert(LIMITS_ANNOTATION.to_owned(), saved_text.clone());
                    object.spec = Some(ResourceQuotaSpec {
                        hard: Some(hard.clone()),
                        ..ResourceQuotaSpec::default()
                    });
                    object.status = None;
                    self.api.replace(&quotas, &object).await?
                }
            };
            let Some(stored) = stored else {
                continue; // 409: read it again
            };
            // The answer is what the API server stored: it confirms the write.
            let stored_hard = hard_of(&stored);
            if !quota::same_hard(&stored_hard, &hard)
                || annotation(&stored, STATE_ANNOTATION) != state
            {
                return Err(BackendError::Transient(format!(
                    "offering '{}': quota {QUOTA_NAME} in '{ns}' was stored as {stored_hard:?}, not as written",
                    self.offering
                )));
            }
            self.rewritten(ns, snapshot, |s| s.quota = Some(stored.clone()));
            return Ok(Some(stored));
        }
        Err(BackendError::Transient(format!(
            "offering '{}': quota {QUOTA_NAME} in '{ns}' kept changing under the agent (409 three times)",
            self.offering
        )))
    }

    /// The agent's RoleBindings in `ns`, by user.
    async fn bindings(&self, ns: &str) -> BackendResult<Bindings> {
        let list = self.api.list_managed(&self.api.rolebindings(ns)).await?;
        Ok(bindings_of(&list))
    }

    /// The resource as Waldur sees it, from objects already read (or just written).
    async fn info(
        &self,
        ns: &str,
        namespace: &Namespace,
        quota: QuotaView,
        bindings: &Bindings,
    ) -> BackendResult<BackendResourceInfo> {
        let users: Vec<String> = bindings.keys().cloned().collect();
        let mut meta = Map::new();
        meta.insert("name".into(), json!(ns));
        meta.insert(
            "organization".into(),
            json!(annotation(namespace, "waldur/organization")),
        );
        meta.insert(
            "description".into(),
            json!(annotation(namespace, "openshift.io/description")),
        );
        meta.insert(
            "quotas".into(),
            quota
                .object
                .as_ref()
                .map(|q| serde_json::to_value(hard_of(q)).unwrap_or_else(|_| json!({})))
                .unwrap_or_else(|| json!({})),
        );
        meta.insert("users".into(), json!(users));
        if let Some(state) = &quota.state {
            meta.insert("state".into(), json!(state));
        }
        meta.insert(
            "kind".into(),
            json!(if self.api.openshift().await? {
                "Project"
            } else {
                "Namespace"
            }),
        );
        Ok(BackendResourceInfo {
            backend_id: ns.to_owned(),
            parent_id: annotation(namespace, "waldur/parent")
                .unwrap_or_default()
                .to_owned(),
            users,
            limits: quota.limits,
            backend_metadata: meta,
            endpoints: Vec::new(),
        })
    }

    /// Create the project (OpenShift) or namespace; the answer (of the PATCH that adds the
    /// annotations OpenShift's project template drops, or of the POST) is the namespace.
    async fn create_namespace(&self, r: &ResourceView, ns: &str) -> BackendResult<Namespace> {
        let annotations = self.annotations(r);
        let duplicate = || BackendError::Duplicate {
            backend_id: ns.to_owned(),
        };
        if self.api.openshift().await? {
            let display = annotations
                .get("openshift.io/display-name")
                .cloned()
                .unwrap_or_default();
            let mut request = DynamicObject::new(ns, &project_request_resource())
                .data(json!({"displayName": display.clone(), "description": display}));
            request.metadata.annotations = Some(annotations.clone());
            if self
                .api
                .create(&self.api.project_requests(), &request)
                .await?
                .is_none()
            {
                return Err(duplicate());
            }
            // OpenShift's project template does not copy the request's annotations.
            self.api
                .merge_patch(
                    &self.api.namespaces(),
                    ns,
                    &json!({"metadata": {"labels": managed_labels(), "annotations": annotations}}),
                )
                .await
        } else {
            let namespace = Namespace {
                metadata: ObjectMeta {
                    name: Some(ns.to_owned()),
                    labels: Some(managed_labels()),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            };
            self.api
                .create(&self.api.namespaces(), &namespace)
                .await?
                .ok_or_else(duplicate)
        }
    }

    async fn set_state(&self, r: &ResourceView, state: &str, amount: i64) -> BackendResult<bool> {
        let ns = &r.backend_id;
        validate_namespace(ns)?;
        let quota = match self.snapshot(ns) {
            Some(s) => self.quota_view(s.quota),
            None => self.read_quota(ns).await?,
        };
        if quota.state.as_deref() == Some(state) {
            return Ok(false);
        }
        let saved = if quota.object.is_some() {
            quota.limits
        } else {
            r.limits.clone()
        };
        let keys: Vec<String> = if saved.is_empty() {
            COMPONENTS.iter().map(|c| (*c).to_owned()).collect()
        } else {
            saved.keys().cloned().collect()
        };
        Ok(self
            .write_quota(
                ns,
                quota.object,
                quota::uniform_hard(&keys, amount),
                Some(state),
                &saved,
            )
            .await?
            .is_some())
    }
}

#[async_trait]
impl BackendHealth for OkdBackend {
    fn kind(&self) -> &'static str {
        crate::BACKEND_NAME
    }

    async fn ping(&self) -> BackendResult<()> {
        self.api.ping().await
    }

    async fn diagnostics(&self) -> Diagnostics {
        let mut checks = Vec::new();
        checks.push(Check {
            name: "settings".into(),
            ok: true,
            detail: format!(
                "api_url {}, {}, namespace_prefix '{}', default_role '{}'",
                self.settings.api_url,
                self.api.principal(),
                self.settings.namespace_prefix,
                self.settings.default_role
            ),
        });
        let ping = self.api.ping().await;
        checks.push(Check {
            name: "ping".into(),
            ok: ping.is_ok(),
            detail: ping
                .err()
                .map_or("GET /api/v1 answered".into(), |e| e.to_string()),
        });
        let kind = self.api.openshift().await;
        checks.push(Check {
            name: "discovery".into(),
            ok: kind.is_ok(),
            detail: match kind {
                Ok(true) => "OpenShift (project.openshift.io served): projects".into(),
                Ok(false) => "plain Kubernetes: namespaces".into(),
                Err(e) => e.to_string(),
            },
        });
        let list = self.api.list_managed(&self.api.namespaces()).await;
        checks.push(Check {
            name: "projects".into(),
            ok: list.is_ok(),
            detail: match list {
                Ok(l) => format!("{} managed projects", l.len()),
                Err(e) => e.to_string(),
            },
        });
        Diagnostics {
            backend: crate::BACKEND_NAME.into(),
            checks,
        }
    }
}

#[async_trait]
impl OrderBackend for OkdBackend {
    fn backend_id_for(&self, base_slug: &str) -> BackendResult<String> {
        let id = format!(
            "{}{}{}",
            self.settings.namespace_prefix, self.settings.allocation_prefix, base_slug
        )
        .to_ascii_lowercase();
        validate_namespace(&id)?;
        Ok(id)
    }

    async fn pull_resource(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Option<BackendResourceInfo>> {
        if resource.backend_id.trim().is_empty() {
            return Ok(None);
        }
        let ns = &resource.backend_id;
        let Some(namespace) = self.namespace(ns).await? else {
            return Ok(None);
        };
        let quota = self.api.get_opt(&self.api.quotas(ns), QUOTA_NAME).await?;
        let bindings = self.bindings(ns).await?;
        self.snapshots().insert(
            ns.to_owned(),
            Snapshot {
                at: Instant::now(),
                namespace: namespace.clone(),
                quota: quota.clone(),
                bindings: bindings.clone(),
            },
        );
        Ok(Some(
            self.info(ns, &namespace, self.quota_view(quota), &bindings)
                .await?,
        ))
    }

    fn check_limits(&self, _resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        quota::site_limits(limits, &self.components)?;
        Ok(())
    }

    async fn create_resource(&self, request: CreateRequest) -> BackendResult<BackendResourceInfo> {
        let ns = request.backend_id.clone();
        validate_namespace(&ns)?;
        let _ = self.written(&ns);
        let site = quota::site_limits(&request.resource.limits, &self.components)?;
        let mut resource = request.resource.clone();
        resource.backend_id = ns.clone();
        let namespace = self.create_namespace(&resource, &ns).await?;
        // A namespace just made holds no quota and none of the agent's RoleBindings: the quota
        // is created without a read, and the answers describe the resource.
        let quota = if site.is_empty() {
            QuotaView::default()
        } else {
            let stored = self
                .write_quota(
                    &ns,
                    None,
                    quota::hard_from_site(&site),
                    None,
                    &request.resource.limits,
                )
                .await?;
            match stored {
                Some(stored) => self.quota_view(Some(stored)),
                // Already as asked (someone made it between our create and our write).
                None => self.read_quota(&ns).await?,
            }
        };
        tracing::info!(offering = %self.offering, project = %ns, "created OKD project");
        self.info(&ns, &namespace, quota, &Bindings::new()).await
    }

    async fn set_limits(&self, resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        let ns = &resource.backend_id;
        validate_namespace(ns)?;
        let site = quota::site_limits(limits, &self.components)?;
        let current = self.read_quota(ns).await?;
        let (hard, state) = match current.state.as_deref() {
            // Paused or downscaled: keep the reduced quota, remember the new limits.
            Some(state) => (
                current.object.as_ref().map(hard_of).unwrap_or_default(),
                Some(state.to_owned()),
            ),
            None => (quota::hard_from_site(&site), None),
        };
        self.write_quota(ns, current.object, hard, state.as_deref(), limits)
            .await?;
        Ok(())
    }

    async fn delete_resource(&self, resource: &ResourceView) -> BackendResult<()> {
        let ns = &resource.backend_id;
        if ns.trim().is_empty() {
            return Ok(());
        }
        validate_namespace(ns)?;
        let _ = self.written(ns);
        if self.api.openshift().await? {
            self.api.delete(&self.api.projects(), ns).await?;
        } else {
            self.api.delete(&self.api.namespaces(), ns).await?;
        }
        // Terminating until its content is gone: wait for it, within delete_wait, asking at
        // 25 ms, then twice as long each time up to 1 s.
        let deadline = Instant::now() + self.settings.delete_wait;
        let mut pause = Duration::from_millis(25);
        loop {
            if self
                .api
                .get_opt(&self.api.namespaces(), ns)
                .await?
                .is_none()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                tracing::warn!(offering = %self.offering, project = %ns,
                    "project still Terminating after delete_wait_seconds; the cluster finishes it");
                return Ok(());
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

#[async_trait]
impl MembershipBackend for OkdBackend {
    /// Few resources: read each (namespace, quota, RoleBindings). More: one list each of the
    /// agent's namespaces, of the `waldur-quota` quotas and of the agent's RoleBindings; a
    /// resource whose namespace is not in the list (created without the agent's label) is
    /// read on its own.
    async fn pull_resources(
        &self,
        resources: &[ResourceView],
    ) -> BackendResult<BTreeMap<String, BackendResourceInfo>> {
        let mut out = BTreeMap::new();
        if resources.len() < LIST_FROM {
            for r in resources {
                if let Some(info) = OrderBackend::pull_resource(self, r).await? {
                    out.insert(info.backend_id.clone(), info);
                }
            }
            return Ok(out);
        }
        let namespaces: BTreeMap<String, Namespace> = self
            .api
            .list_managed(&self.api.namespaces())
            .await?
            .into_iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, n)))
            .collect();
        let mut quotas: BTreeMap<String, ResourceQuota> = self
            .api
            .list_named(&self.api.all_quotas(), QUOTA_NAME)
            .await?
            .into_iter()
            .filter_map(|q| Some((q.metadata.namespace.clone()?, q)))
            .collect();
        let mut bindings: BTreeMap<String, Vec<RoleBinding>> = BTreeMap::new();
        for rb in self.api.list_managed(&self.api.all_rolebindings()).await? {
            if let Some(ns) = rb.metadata.namespace.clone() {
                bindings.entry(ns).or_default().push(rb);
            }
        }
        for r in resources {
            let ns = r.backend_id.trim();
            if ns.is_empty() || validate_namespace(ns).is_err() {
                continue;
            }
            let info = match namespaces.get(ns) {
                Some(n) if terminating(n) => None,
                Some(n) => {
                    let quota = quotas.remove(ns);
                    let b = bindings_of(bindings.get(ns).map_or(&[], Vec::as_slice));
                    self.snapshots().insert(
                        ns.to_owned(),
                        Snapshot {
                            at: Instant::now(),
                            namespace: n.clone(),
                            quota: quota.clone(),
                            bindings: b.clone(),
                        },
                    );
                    Some(self.info(ns, n, self.quota_view(quota), &b).await?)
                }
                None => OrderBackend::pull_resource(self, r).await?,
            };
            if let Some(info) = info {
                out.insert(info.backend_id.clone(), info);
            }
        }
        Ok(out)
    }

    async fn add_users(
        &self,
        resource: &ResourceView,
        users: &[UserGrant],
    ) -> BackendResult<Vec<String>> {
        let ns = &resource.backend_id;
        validate_namespace(ns)?;
        let snapshot = self.written(ns);
        let rolebindings = self.api.rolebindings(ns);
        // The membership pass's read when recent (see SNAPSHOT_TTL), else one list.
        let existing = match fresh(snapshot.as_ref()) {
            Some(s) => s.bindings.clone(),
            None => self.bindings(ns).await?,
        };
        let mut now = existing.clone();
        let mut granted = Vec::new();
        for user in users {
            if let Err(e) = validate_site_name("OKD user name", &user.username) {
                tracing::warn!(offering = %self.offering, error = %e, "user skipped");
                continue;
            }
            let role = self.settings.cluster_role(user.role.as_deref()).to_owned();
            let name = rolebinding_name(&user.username);
            let have = existing.get(&user.username).cloned().unwrap_or_default();
            if have.iter().any(|(n, r)| *n == name && *r == role) {
                granted.push(user.username.clone());
                continue;
            }
            // A binding with another role: roleRef is immutable, so replace it.
            for (n, _) in &have {
                self.api.delete(&rolebindings, n).await?;
            }
            let binding = RoleBinding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(managed_labels()),
                    annotations: Some(BTreeMap::from([(
                        USER_ANNOTATION.to_owned(),
                        user.username.clone(),
                    )])),
                    ..ObjectMeta::default()
                },
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: role.clone(),
                },
                subjects: Some(vec![Subject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "User".into(),
                    name: user.username.clone(),
                    namespace: None,
                }]),
            };
            let mut created = self.api.create(&rolebindings, &binding).await?;
            if created.is_none() {
                // A binding under that name already: kept when it grants the same (made
                // meanwhile, or without the agent's label), else replaced.
                let found = self.api.get_opt(&rolebindings, &name).await?;
                if let Some(found) = found.filter(|rb| grants(rb, &user.username, &role)) {
                    created = Some(found);
                } else {
                    self.api.delete(&rolebindings, &name).await?;
                    created = self.api.create(&rolebindings, &binding).await?;
                }
            }
            // The answer is the binding as stored: it confirms the grant.
            let Some(created) = created else {
                return Err(BackendError::Transient(format!(
                    "offering '{}': RoleBinding '{name}' in '{ns}' is recreated by someone else as the agent replaces it",
                    self.offering
                )));
            };
            if created.role_ref.name != role {
                return Err(BackendError::Transient(format!(
                    "offering '{}': RoleBinding '{name}' in '{ns}' was stored with ClusterRole '{}', not '{role}'",
                    self.offering, created.role_ref.name
                )));
            }
            tracing::info!(offering = %self.offering, project = %ns, user = %user.username, role = %role, "RoleBinding created");
            now.insert(user.username.clone(), vec![(name, role)]);
            granted.push(user.username.clone());
        }
        self.rewritten(ns, snapshot, |s| s.bindings = now);
        Ok(granted)
    }

    async fn remove_users(
        &self,
        resource: &ResourceView,
        usernames: &[String],
    ) -> BackendResult<Vec<String>> {
        let ns = &resource.backend_id;
        validate_namespace(ns)?;
        let snapshot = self.written(ns);
        let rolebindings = self.api.rolebindings(ns);
        // A revocation reads the site, never a snapshot: a binding made since (by another
        // agent process) must not survive it.
        let mut existing = self.bindings(ns).await?;
        for user in usernames {
            for (name, _) in existing.get(user).cloned().unwrap_or_default() {
                // Deleted now, or already gone (404): either way the user has no access.
                self.api.delete(&rolebindings, &name).await?;
                tracing::info!(offering = %self.offering, project = %ns, user = %user, "RoleBinding removed");
            }
            existing.remove(user);
        }
        self.rewritten(ns, snapshot, |s| s.bindings = existing);
        Ok(usernames.to_vec())
    }

    async fn pause(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.set_state(resource, "paused", 0).await
    }

    async fn downscale(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.set_state(resource, "downscaled", 1).await
    }

    /// Called for every resource in every membership pass: the pass's own read answers it when
    /// it is recent (no request for a resource that is not paused).
    async fn restore(&self, resource: &ResourceView) -> BackendResult<bool> {
        let ns = &resource.backend_id;
        validate_namespace(ns)?;
        let quota = match self.snapshot(ns) {
            Some(s) => self.quota_view(s.quota),
            None => self.read_quota(ns).await?,
        };
        if quota.state.is_none() {
            return Ok(false);
        }
        // The limits the resource had (kept on the quota), else Waldur's.
        let limits = if quota.limits.is_empty() {
            resource.limits.clone()
        } else {
            quota.limits
        };
        let site = quota::site_limits(&limits, &self.components)?;
        Ok(self
            .write_quota(
                ns,
                quota.object,
                quota::hard_from_site(&site),
                None,
                &limits,
            )
            .await?
            .is_some())
    }

    async fn resource_metadata(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Map<String, Value>> {
        let ns = &resource.backend_id;
        if let Some(s) = self.snapshot(ns) {
            let info = self
                .info(ns, &s.namespace, self.quota_view(s.quota), &s.bindings)
                .await?;
            return Ok(info.backend_metadata);
        }
        Ok(OrderBackend::pull_resource(self, resource)
            .await?
            .map(|i| i.backend_metadata)
            .unwrap_or_default())
    }
}

#[async_trait]
impl UsageBackend for OkdBackend {
    async fn usage_report(
        &self,
        backend_ids: &[String],
        period: &BillingPeriod,
    ) -> BackendResult<BTreeMap<String, UsageReport>> {
        let mut out = BTreeMap::new();
        // `status.used` is a snapshot of now: it belongs to the current period only.
        let now = jiff::Zoned::now().with_time_zone(period.timezone.clone());
        if (now.year(), now.month()) != (period.year, period.month) {
            return Ok(out);
        }
        let ids: Vec<&String> = backend_ids
            .iter()
            .filter(|id| {
                let ok = validate_namespace(id).is_ok();
                if !ok {
                    tracing::warn!(offering = %self.offering, id = %id, "not an OKD project name; no usage");
                }
                ok
            })
            .collect();
        // Many resources: one list of `waldur-quota` in every namespace; few: one read each.
        let mut listed: Option<BTreeMap<String, ResourceQuota>> = None;
        if ids.len() >= LIST_FROM {
            listed = Some(
                self.api
                    .list_named(&self.api.all_quotas(), QUOTA_NAME)
                    .await?
                    .into_iter()
                    .filter_map(|q| Some((q.metadata.namespace.clone()?, q)))
                    .collect(),
            );
        }
        for id in ids {
            let found = match listed.as_mut() {
                Some(all) => all.remove(id.as_str()),
                None => self.api.get_opt(&self.api.quotas(id), QUOTA_NAME).await?,
            };
            let Some(q) = found else {
                continue;
            };
            let used = q.status.and_then(|s| s.used).unwrap_or_default();
            let mut site = quota::usage_from_used(&used);
            if !self.components.is_empty() {
                site.retain(|k, _| self.components.contains_key(k));
            }
            out.insert(
                id.clone(),
                UsageReport {
                    total: usage_from_site(&site, &self.components),
                    per_user: BTreeMap::new(),
                },
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names() {
        assert!(validate_namespace("waldur-alloc-abc").is_ok());
        for bad in ["", "Upper", "a_b", "-a", "a-", &"a".repeat(64), "a;rm"] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rolebinding_names() {
        assert_eq!(rolebinding_name("alice"), "waldur-alice");
        let a = rolebinding_name("Alice@example.org");
        let b = rolebinding_name("alice@example.org");
        assert!(a.starts_with("waldur-alice-example.org-"), "{a}");
        assert_ne!(a, b);
    }
}
