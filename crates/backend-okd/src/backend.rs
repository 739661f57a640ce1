//! [`OkdBackend`]: a Waldur resource as an OpenShift project (or a Kubernetes Namespace), its
//! limits as the `waldur-quota` ResourceQuota, its members as one RoleBinding each.

use std::collections::BTreeMap;
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
use http_kit::Request;
use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use crate::kube::{KubeApi, MANAGED_BY, MANAGER, annotation, items, managed_labels};
use crate::quota::{self, COMPONENTS};
use crate::settings::OkdSettings;

pub const QUOTA_NAME: &str = "waldur-quota";
/// Quota annotation: `paused` or `downscaled` (absent: normal).
pub const STATE_ANNOTATION: &str = "waldur/state";
/// Quota annotation: the Waldur limits (JSON) to restore to.
pub const LIMITS_ANNOTATION: &str = "waldur/limits";
/// RoleBinding annotation: the Waldur-side username.
pub const USER_ANNOTATION: &str = "waldur/username";

/// Refuse a name Kubernetes would refuse as a namespace (DNS-1123 label).
pub fn validate_namespace(name: &str) -> BackendResult<()> {
    validate_site_name("OKD project name", name)?;
    let bad = |reason: &'static str| {
        Err(BackendError::InvalidName {
            what: "OKD project name",
            value: name.to_owned(),
            reason: reason.into(),
        })
    };
    if name.is_empty() || name.len() > 63 {
        return bad("a project name has 1 to 63 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return bad("a project name holds only lower-case letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad("a project name starts and ends with a letter or digit");
    }
    Ok(())
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

/// The `okd` backend of one offering.
pub struct OkdBackend {
    offering: String,
    settings: OkdSettings,
    components: IndexMap<String, BackendComponent>,
    api: KubeApi,
}

impl std::fmt::Debug for OkdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OkdBackend")
            .field("offering", &self.offering)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn ns_path(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}")
}
fn quota_path(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/resourcequotas/{QUOTA_NAME}")
}
fn rb_path(ns: &str) -> String {
    format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings")
}

/// What the quota says about a resource.
#[derive(Debug, Default)]
struct QuotaView {
    object: Option<Value>,
    state: Option<String>,
    /// Waldur limits: the saved ones while paused/downscaled, else read from `spec.hard`.
    limits: Limits,
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
        })
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

    fn annotations(&self, r: &ResourceView) -> Map<String, Value> {
        let mut a = Map::new();
        let description = if r.name.is_empty() {
            r.backend_id.clone()
        } else {
            r.name.clone()
        };
        a.insert("openshift.io/description".into(), json!(description));
        a.insert("openshift.io/display-name".into(), json!(description));
        a.insert("waldur/organization".into(), json!(self.organization_id(r)));
        if !r.project_slug.is_empty() {
            a.insert("waldur/parent".into(), json!(self.parent_id(r)));
        }
        if !r.uuid.is_empty() {
            a.insert("waldur/resource-uuid".into(), json!(r.uuid));
        }
        a
    }

    /// The namespace, `None` when absent or `Terminating` (on its way out).
    async fn namespace(&self, ns: &str) -> BackendResult<Option<Value>> {
        validate_namespace(ns)?;
        let found = self.api.get_opt(&ns_path(ns)).await?;
        Ok(found
            .filter(|n| n.pointer("/status/phase").and_then(Value::as_str) != Some("Terminating")))
    }

    async fn read_quota(&self, ns: &str) -> BackendResult<QuotaView> {
        let Some(object) = self.api.get_opt(&quota_path(ns)).await? else {
            return Ok(QuotaView::default());
        };
        let state = annotation(&object, STATE_ANNOTATION).map(str::to_owned);
        let saved: Option<Limits> =
            annotation(&object, LIMITS_ANNOTATION).and_then(|s| serde_json::from_str(s).ok());
        let limits = match (&state, saved) {
            (Some(_), Some(saved)) => saved,
            _ => object
                .pointer("/spec/hard")
                .and_then(Value::as_object)
                .map(|h| quota::limits_from_hard(h, &self.components))
                .unwrap_or_default(),
        };
        Ok(QuotaView {
            object: Some(object),
            state,
            limits,
        })
    }

    /// Write `waldur-quota` (create, or replace with the `resourceVersion` read), then read it
    /// back. Returns whether anything changed.
    async fn write_quota(
        &self,
        ns: &str,
        hard: Map<String, Value>,
        state: Option<&str>,
        saved: &Limits,
    ) -> BackendResult<bool> {
        let saved_text = serde_json::to_string(saved).unwrap_or_default();
        for _attempt in 0..3 {
            let current = self.api.get_opt(&quota_path(ns)).await?;
            let mut annotations = Map::new();
            annotations.insert(LIMITS_ANNOTATION.into(), json!(saved_text));
            if let Some(s) = state {
                annotations.insert(STATE_ANNOTATION.into(), json!(s));
            }
            match current {
                None => {
                    let body = json!({
                        "apiVersion": "v1", "kind": "ResourceQuota",
                        "metadata": {"name": QUOTA_NAME, "namespace": ns,
                                     "labels": managed_labels(), "annotations": annotations},
                        "spec": {"hard": hard},
                    });
                    if self
                        .api
                        .create(&format!("/api/v1/namespaces/{ns}/resourcequotas"), body)
                        .await?
                        .is_none()
                    {
                        continue; // created meanwhile: read it and replace
                    }
                }
                Some(mut object) => {
                    let old_hard = object
                        .pointer("/spec/hard")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    let mut old_annotations = object
                        .pointer("/metadata/annotations")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    let same_annotations = old_annotations.get(STATE_ANNOTATION)
                        == annotations.get(STATE_ANNOTATION)
                        && old_annotations.get(LIMITS_ANNOTATION)
                            == annotations.get(LIMITS_ANNOTATION);
                    if same_hard(&old_hard, &hard) && same_annotations {
                        return Ok(false);
                    }
                    old_annotations.remove(STATE_ANNOTATION);
                    old_annotations.extend(annotations);
                    object["metadata"]["annotations"] = Value::Object(old_annotations);
                    object["spec"] = json!({"hard": hard});
                    if let Some(o) = object.as_object_mut() {
                        o.remove("status");
                    }
                    if self.api.replace(&quota_path(ns), object).await?.is_none() {
                        continue; // stale resourceVersion: read again
                    }
                }
            }
            // Confirm by reading back.
            let back = self.api.get_opt(&quota_path(ns)).await?.ok_or_else(|| {
                BackendError::Transient(format!(
                    "offering '{}': quota {QUOTA_NAME} in '{ns}' is missing right after it was written",
                    self.offering
                ))
            })?;
            let back_hard = back
                .pointer("/spec/hard")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if !same_hard(&back_hard, &hard) || annotation(&back, STATE_ANNOTATION) != state {
                return Err(BackendError::Transient(format!(
                    "offering '{}': quota {QUOTA_NAME} in '{ns}' reads back {back_hard:?}, not what was written",
                    self.offering
                )));
            }
            return Ok(true);
        }
        Err(BackendError::Transient(format!(
            "offering '{}': quota {QUOTA_NAME} in '{ns}' kept changing under the agent (409 three times)",
            self.offering
        )))
    }

    /// Users bound by the agent's RoleBindings: name → (binding name, ClusterRole).
    async fn bindings(&self, ns: &str) -> BackendResult<BTreeMap<String, Vec<(String, String)>>> {
        let list = self
            .api
            .send(
                Request::get(rb_path(ns))
                    .query("labelSelector", &format!("{MANAGED_BY}={MANAGER}")),
            )
            .await?;
        let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for rb in items(&list) {
            let name = rb
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let role = rb
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            for s in rb
                .get("subjects")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                if s.get("kind").and_then(Value::as_str) == Some("User")
                    && let Some(user) = s.get("name").and_then(Value::as_str)
                {
                    out.entry(user.to_owned())
                        .or_default()
                        .push((name.clone(), role.clone()));
                }
            }
        }
        Ok(out)
    }

    async fn info(&self, ns: &str, namespace: &Value) -> BackendResult<BackendResourceInfo> {
        let quota = self.read_quota(ns).await?;
        let users: Vec<String> = self.bindings(ns).await?.into_keys().collect();
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
                .and_then(|q| q.pointer("/spec/hard"))
                .cloned()
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

    async fn create_namespace(&self, r: &ResourceView, ns: &str) -> BackendResult<()> {
        let annotations = self.annotations(r);
        let display = annotations
            .get("openshift.io/display-name")
            .cloned()
            .unwrap_or_default();
        if self.api.openshift().await? {
            let body = json!({
                "kind": "ProjectRequest", "apiVersion": "project.openshift.io/v1",
                "metadata": {"name": ns, "annotations": annotations.clone()},
                "displayName": display, "description": display,
            });
            if self
                .api
                .create("/apis/project.openshift.io/v1/projectrequests", body)
                .await?
                .is_none()
            {
                return Err(BackendError::Duplicate {
                    backend_id: ns.to_owned(),
                });
            }
            // OpenShift's project template does not copy the request's annotations.
            self.api
                .merge_patch(
                    &ns_path(ns),
                    json!({"metadata": {"labels": managed_labels(), "annotations": annotations}}),
                )
                .await?;
        } else {
            let body = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": managed_labels(), "annotations": annotations},
            });
            if self.api.create("/api/v1/namespaces", body).await?.is_none() {
                return Err(BackendError::Duplicate {
                    backend_id: ns.to_owned(),
                });
            }
        }
        Ok(())
    }

    async fn set_state(&self, r: &ResourceView, state: &str, amount: i64) -> BackendResult<bool> {
        let ns = &r.backend_id;
        validate_namespace(ns)?;
        let quota = self.read_quota(ns).await?;
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
        self.write_quota(ns, quota::uniform_hard(&keys, amount), Some(state), &saved)
            .await
    }
}

/// Two `spec.hard` maps hold the same quantities (`1000m` = `1`).
fn same_hard(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            let q = |v: &Value| v.as_str().and_then(quota::parse_quantity);
            b.get(k).is_some_and(|w| q(v).is_some() && q(v) == q(w))
        })
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
        let list = self
            .api
            .send(
                Request::get("/api/v1/namespaces")
                    .query("labelSelector", &format!("{MANAGED_BY}={MANAGER}")),
            )
            .await;
        checks.push(Check {
            name: "projects".into(),
            ok: list.is_ok(),
            detail: match list {
                Ok(l) => format!("{} managed projects", items(&l).len()),
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
        match self.namespace(ns).await? {
            Some(n) => Ok(Some(self.info(ns, &n).await?)),
            None => Ok(None),
        }
    }

    fn check_limits(&self, _resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        quota::site_limits(limits, &self.components)?;
        Ok(())
    }

    async fn create_resource(&self, request: CreateRequest) -> BackendResult<BackendResourceInfo> {
        let ns = request.backend_id.clone();
        validate_namespace(&ns)?;
        let site = quota::site_limits(&request.resource.limits, &self.components)?;
        let mut resource = request.resource.clone();
        resource.backend_id = ns.clone();
        self.create_namespace(&resource, &ns).await?;
        if !site.is_empty() {
            self.write_quota(
                &ns,
                quota::hard_from_site(&site),
                None,
                &request.resource.limits,
            )
            .await?;
        }
        let namespace = self.namespace(&ns).await?.ok_or_else(|| {
            BackendError::Transient(format!(
                "offering '{}': project '{ns}' is missing right after it was created",
                self.offering
            ))
        })?;
        tracing::info!(offering = %self.offering, project = %ns, "created OKD project");
        self.info(&ns, &namespace).await
    }

    async fn set_limits(&self, resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        let ns = &resource.backend_id;
        validate_namespace(ns)?;
        let site = quota::site_limits(limits, &self.components)?;
        let current = self.read_quota(ns).await?;
        match current.state.as_deref() {
            // Paused or downscaled: keep the reduced quota, remember the new limits.
            Some(state) => {
                let hard = current
                    .object
                    .as_ref()
                    .and_then(|q| q.pointer("/spec/hard"))
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                self.write_quota(ns, hard, Some(state), limits).await?;
            }
            None => {
                self.write_quota(ns, quota::hard_from_site(&site), None, limits)
                    .await?;
            }
        }
        Ok(())
    }

    async fn delete_resource(&self, resource: &ResourceView) -> BackendResult<()> {
        let ns = &resource.backend_id;
        if ns.trim().is_empty() {
            return Ok(());
        }
        validate_namespace(ns)?;
        let path = if self.api.openshift().await? {
            format!("/apis/project.openshift.io/v1/projects/{ns}")
        } else {
            ns_path(ns)
        };
        self.api.delete(&path).await?;
        // Terminating until its content is gone: wait for it, within delete_wait.
        let deadline = Instant::now() + self.settings.delete_wait;
        loop {
            if self.api.get_opt(&ns_path(ns)).await?.is_none() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                tracing::warn!(offering = %self.offering, project = %ns,
                    "project still Terminating after delete_wait_seconds; the cluster finishes it");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[async_trait]
impl MembershipBackend for OkdBackend {
    async fn pull_resources(
        &self,
        resources: &[ResourceView],
    ) -> BackendResult<BTreeMap<String, BackendResourceInfo>> {
        let mut out = BTreeMap::new();
        for r in resources {
            if let Some(info) = OrderBackend::pull_resource(self, r).await? {
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
        let existing = self.bindings(ns).await?;
        let mut wanted = Vec::new();
        for user in users {
            if let Err(e) = validate_site_name("OKD user name", &user.username) {
                tracing::warn!(offering = %self.offering, error = %e, "user skipped");
                continue;
            }
            let role = self.settings.cluster_role(user.role.as_deref()).to_owned();
            let name = rolebinding_name(&user.username);
            let have = existing.get(&user.username).cloned().unwrap_or_default();
            if have.iter().any(|(n, r)| *n == name && *r == role) {
                wanted.push(user.username.clone());
                continue;
            }
            // A binding with another role: roleRef is immutable, so replace it.
            for (n, _) in &have {
                self.api.delete(&format!("{}/{n}", rb_path(ns))).await?;
            }
            let body = json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": ns, "labels": managed_labels(),
                             "annotations": {USER_ANNOTATION: user.username}},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user.username}],
            });
            if self.api.create(&rb_path(ns), body.clone()).await?.is_none() {
                // Someone else's binding under that name: replace it.
                self.api.delete(&format!("{}/{name}", rb_path(ns))).await?;
                self.api.create(&rb_path(ns), body).await?;
            }
            tracing::info!(offering = %self.offering, project = %ns, user = %user.username, role = %role, "RoleBinding created");
            wanted.push(user.username.clone());
        }
        // Confirm by reading back.
        let now = self.bindings(ns).await?;
        Ok(wanted.into_iter().filter(|u| now.contains_key(u)).collect())
    }

    async fn remove_users(
        &self,
        resource: &ResourceView,
        usernames: &[String],
    ) -> BackendResult<Vec<String>> {
        let ns = &resource.backend_id;
        validate_namespace(ns)?;
        let existing = self.bindings(ns).await?;
        for user in usernames {
            for (name, _) in existing.get(user).cloned().unwrap_or_default() {
                self.api.delete(&format!("{}/{name}", rb_path(ns))).await?;
                tracing::info!(offering = %self.offering, project = %ns, user = %user, "RoleBinding removed");
            }
        }
        let now = self.bindings(ns).await?;
        Ok(usernames
            .iter()
            .filter(|u| !now.contains_key(*u))
            .cloned()
            .collect())
    }

    async fn pause(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.set_state(resource, "paused", 0).await
    }

    async fn downscale(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.set_state(resource, "downscaled", 1).await
    }

    async fn restore(&self, resource: &ResourceView) -> BackendResult<bool> {
        let ns = &resource.backend_id;
        validate_namespace(ns)?;
        let quota = self.read_quota(ns).await?;
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
        self.write_quota(ns, quota::hard_from_site(&site), None, &limits)
            .await
    }

    async fn resource_metadata(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Map<String, Value>> {
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
        for id in backend_ids {
            if validate_namespace(id).is_err() {
                tracing::warn!(offering = %self.offering, id = %id, "not an OKD project name; no usage");
                continue;
            }
            let Some(q) = self.api.get_opt(&quota_path(id)).await? else {
                continue;
            };
            let used = q
                .pointer("/status/used")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
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
