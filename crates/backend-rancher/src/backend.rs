//! [`RancherBackend`]: a Waldur resource as a Rancher project with its namespace, limits as the
//! `custom-resource-quota` ResourceQuota of **every** namespace of the project, access through
//! the Keycloak group of the Waldur project and role, bound to the Rancher project.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agent_config::BackendComponent;
use async_trait::async_trait;
use backend_api::RetryPolicy;
use backend_api::units::{LimitError, site_amount, usage_from_site};
use backend_api::{
    Amounts, BackendError, BackendHealth, BackendResourceInfo, BackendResult, BillingPeriod, Check,
    CreateRequest, Diagnostics, Limits, MembershipBackend, OrderBackend, ResourceView,
    UsageBackend, UsageReport, UserGrant,
};
use backend_okd::quota::parse_quantity;
use indexmap::IndexMap;
use keycloak_admin::{Group, KeycloakAdmin};
use serde_json::{Map, Value, json};

use crate::rancher::{QUOTA_NAME, RancherApi};
use crate::settings::{QuotaKey, QuotaUnit, RancherSettings, quota_keys};

/// Project annotation: `paused` or `downscaled` (absent: normal).
pub const STATE_ANNOTATION: &str = "waldur/state";
/// Project annotation: the Waldur limits (JSON) to restore to.
pub const LIMITS_ANNOTATION: &str = "waldur/limits";
/// Project annotation: the Waldur resource the project belongs to.
pub const RESOURCE_ANNOTATION: &str = "waldur/resource-uuid";
/// The largest site amount written.
const SITE_MAX: i64 = (1 << 52) - 1;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Refuse a name Kubernetes would refuse as a namespace (DNS-1123 label).
pub fn validate_project_name(name: &str) -> BackendResult<()> {
    backend_api::names::validate_dns_label("Rancher project name", name)
}

/// The `rancher` backend of one offering.
pub struct RancherBackend {
    offering: String,
    settings: RancherSettings,
    components: IndexMap<String, BackendComponent>,
    quota: IndexMap<String, QuotaKey>,
    api: RancherApi,
    keycloak: Option<KeycloakAdmin>,
}

impl std::fmt::Debug for RancherBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RancherBackend")
            .field("offering", &self.offering)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn annotations(project: &Value) -> Map<String, Value> {
    project
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Two `spec.hard` maps hold the same quantities (`1000m` = `1`).
fn same_hard(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            let q = |v: &Value| v.as_str().and_then(parse_quantity);
            b.get(k).is_some_and(|w| q(v).is_some() && q(v) == q(w))
        })
}

impl RancherBackend {
    pub fn new(
        offering: &str,
        settings: RancherSettings,
        components: IndexMap<String, BackendComponent>,
        proxy: Option<&str>,
    ) -> BackendResult<Self> {
        let quota = quota_keys(&components).map_err(|issues| {
            BackendError::Config(format!(
                "offering '{offering}': {}",
                issues
                    .iter()
                    .map(|i| format!("{}: {}", i.path, i.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?;
        let api = RancherApi::new(offering, &settings, proxy)?;
        let keycloak = match &settings.keycloak {
            Some(config) => Some(KeycloakAdmin::new(
                &format!("offering '{offering}'"),
                config,
                proxy,
                settings.timeout,
                RetryPolicy {
                    max_retries: settings.max_retries,
                    ..RetryPolicy::default()
                },
            )?),
            None => None,
        };
        Ok(RancherBackend {
            offering: offering.to_owned(),
            settings,
            components,
            quota,
            api,
            keycloak,
        })
    }

    pub fn api(&self) -> &RancherApi {
        &self.api
    }

    pub fn settings(&self) -> &RancherSettings {
        &self.settings
    }

    /// Whether members are managed (Keycloak enabled).
    pub fn manages_members(&self) -> bool {
        self.keycloak.is_some()
    }

    fn keycloak(&self) -> BackendResult<&KeycloakAdmin> {
        self.keycloak.as_ref().ok_or(BackendError::Unsupported {
            backend: crate::BACKEND_NAME,
            operation: "membership without keycloak_enabled",
        })
    }

    /// Keycloak's cluster group: `c_<cluster id without ':' and '-', 8 characters>`.
    pub fn parent_group_name(&self) -> String {
        let id: String = self
            .settings
            .cluster_id
            .chars()
            .filter(|c| *c != ':' && *c != '-')
            .take(8)
            .collect();
        format!("c_{id}")
    }

    /// Keycloak's group of a Waldur project and role, shared by the project's resources.
    pub fn child_group_name(&self, r: &ResourceView) -> String {
        let slug = if r.project_slug.is_empty() {
            "unknown-project"
        } else {
            r.project_slug.as_str()
        };
        format!("project_{slug}_{}", self.settings.default_role)
    }

    /// The group principal Rancher binds (`keycloakoidc_group://<group name>`).
    pub fn principal(&self, r: &ResourceView) -> String {
        format!("keycloakoidc_group://{}", self.child_group_name(r))
    }

    /// The project of a resource: by project id (`c-…:p-…`, as the upstream plugin recorded
    /// it) or by name (the agent's ids).
    async fn find_project(&self, backend_id: &str) -> BackendResult<Option<Value>> {
        let id = backend_id.trim();
        if id.is_empty() {
            return Ok(None);
        }
        if id.contains(':') {
            return self.api.project(id).await;
        }
        validate_project_name(id)?;
        self.api.project_by_name(id).await
    }

    async fn require_project(&self, r: &ResourceView) -> BackendResult<Value> {
        self.find_project(&r.backend_id).await?.ok_or_else(|| {
            BackendError::permanent(format!(
                "offering '{}': Rancher project '{}' not found in cluster {}",
                self.offering, r.backend_id, self.settings.cluster_id
            ))
        })
    }

    fn factor(&self, key: &str) -> f64 {
        self.components.get(key).map_or(1.0, |c| c.unit_factor)
    }

    /// Waldur limits → `spec.hard`, checked (never saturated). Components without a quota key
    /// are checked as plain amounts and not written.
    pub fn site_hard(&self, limits: &Limits) -> Result<Map<String, Value>, LimitError> {
        let mut hard = Map::new();
        for (key, value) in limits {
            let factor = self.factor(key);
            match self.quota.get(key) {
                Some(q) => {
                    let text = match q.unit {
                        QuotaUnit::Cpu => {
                            format!("{}m", site_amount(key, *value, factor * 1000.0, SITE_MAX)?)
                        }
                        QuotaUnit::Memory => {
                            format!("{}Mi", site_amount(key, *value, factor * 1024.0, SITE_MAX)?)
                        }
                        QuotaUnit::Count => site_amount(key, *value, factor, SITE_MAX)?.to_string(),
                    };
                    hard.insert(q.hard.clone(), json!(text));
                }
                None => {
                    site_amount(key, *value, factor, SITE_MAX)?;
                }
            }
        }
        Ok(hard)
    }

    /// A uniform `spec.hard` (paused: 0, downscaled: 1 core / 1 GiB / 1) of the mapped keys.
    fn uniform_hard(&self, amount: i64) -> Map<String, Value> {
        self.quota
            .values()
            .map(|q| {
                let text = match q.unit {
                    QuotaUnit::Cpu => format!("{}m", amount * 1000),
                    QuotaUnit::Memory => format!("{}Mi", amount * 1024),
                    QuotaUnit::Count => amount.to_string(),
                };
                (q.hard.clone(), json!(text))
            })
            .collect()
    }

    /// Site amount in base units (cores, GiB, count) of one quota quantity.
    fn base_amount(unit: QuotaUnit, quantity: &str) -> Option<f64> {
        let q = parse_quantity(quantity)?;
        Some(match unit {
            QuotaUnit::Memory => q / GIB,
            _ => q,
        })
    }

    /// `spec.hard` → Waldur limits (mapped components present only).
    fn limits_from_hard(&self, hard: &Map<String, Value>) -> Limits {
        self.quota
            .iter()
            .filter_map(|(key, q)| {
                let amount = Self::base_amount(q.unit, hard.get(&q.hard)?.as_str()?)?;
                Some((key.clone(), amount / self.factor(key)))
            })
            .collect()
    }

    /// The agent's quota of a namespace.
    async fn quota_of(&self, namespace: &str) -> BackendResult<Option<Value>> {
        Ok(self
            .api
            .quotas(namespace)
            .await?
            .into_iter()
            .find(|q| q.pointer("/metadata/name").and_then(Value::as_str) == Some(QUOTA_NAME)))
    }

    fn namespace_labels(&self) -> Map<String, Value> {
        let mut labels = Map::new();
        labels.insert(
            "pod-security.kubernetes.io/enforce".into(),
            json!("restricted"),
        );
        labels.insert(
            "pod-security.kubernetes.io/enforce-version".into(),
            json!("latest"),
        );
        for (k, v) in &self.settings.namespace_labels {
            labels.insert(k.clone(), json!(v));
        }
        labels
    }

    /// Write `hard` into the quota of every namespace of the project (a namespace named after
    /// the project is made when it has none). Returns whether anything changed.
    async fn apply_quota(
        &self,
        project_id: &str,
        name: &str,
        hard: &Map<String, Value>,
    ) -> BackendResult<bool> {
        let mut namespaces = self.api.namespaces(project_id).await?;
        let mut changed = false;
        let mut fresh = None;
        if namespaces.is_empty() {
            self.api
                .create_namespace(project_id, name, self.namespace_labels())
                .await?;
            namespaces.push(name.to_owned());
            fresh = Some(name.to_owned());
            changed = true;
        }
        if hard.is_empty() {
            return Ok(changed);
        }
        for ns in &namespaces {
            // A namespace made just now has no quota yet: nothing to compare with.
            if fresh.as_deref() != Some(ns.as_str()) {
                let current = self.quota_of(ns).await?;
                let current_hard = current
                    .as_ref()
                    .and_then(|q| q.pointer("/spec/hard"))
                    .and_then(Value::as_object);
                if current_hard.is_some_and(|h| same_hard(h, hard)) {
                    continue;
                }
            }
            self.api.import_quota(ns, hard).await?;
            // Confirm by reading back.
            let back = self.quota_of(ns).await?;
            let back_hard = back
                .as_ref()
                .and_then(|q| q.pointer("/spec/hard"))
                .and_then(Value::as_object);
            if !back_hard.is_some_and(|h| same_hard(h, hard)) {
                return Err(BackendError::transient(format!(
                    "offering '{}': quota {QUOTA_NAME} in namespace '{ns}' does not read back as written",
                    self.offering
                )));
            }
            tracing::info!(offering = %self.offering, namespace = %ns, "quota applied");
            changed = true;
        }
        Ok(changed)
    }

    // ---- Keycloak ----

    /// The resource's child group, if it exists (no write).
    async fn child_group(&self, r: &ResourceView) -> BackendResult<Option<(Group, Group)>> {
        let kc = self.keycloak()?;
        let Some(parent) = kc.top_group(&self.parent_group_name()).await? else {
            return Ok(None);
        };
        Ok(kc
            .child_group(&parent.id, &self.child_group_name(r))
            .await?
            .map(|child| (parent, child)))
    }

    /// The parent and child groups and the child's binding to the project, found (made by an
    /// earlier run or by the upstream plugin) or made. Returns the child group's id.
    async fn ensure_access(&self, project_id: &str, r: &ResourceView) -> BackendResult<String> {
        let kc = self.keycloak()?;
        let parent = kc
            .ensure_group(
                None,
                &self.parent_group_name(),
                &format!("Cluster access group for {}", self.settings.cluster_id),
            )
            .await?;
        let child = kc
            .ensure_group(
                Some(&parent.group.id),
                &self.child_group_name(r),
                &format!(
                    "Project {} members with role {}",
                    r.project_slug, self.settings.default_role
                ),
            )
            .await?;
        let principal = self.principal(r);
        let role = self.settings.default_role.as_str();
        let existing = self
            .api
            .bindings(&[
                ("roleTemplateId", role),
                ("projectId", project_id),
                ("groupPrincipalId", principal.as_str()),
            ])
            .await?;
        if existing.is_empty() {
            self.api
                .create_group_binding(project_id, role, &principal)
                .await?;
            tracing::info!(offering = %self.offering, project = %project_id, %principal, role, "group bound to the project");
        }
        Ok(child.group.id)
    }

    /// The key a Keycloak member is reported under (id or username).
    fn member_key(&self, user: &keycloak_admin::User) -> String {
        if self.settings.keycloak_use_user_id {
            user.id.clone()
        } else {
            user.username.clone()
        }
    }

    async fn member_keys(&self, r: &ResourceView) -> BackendResult<Vec<String>> {
        let Some(kc) = self.keycloak.as_ref() else {
            return Ok(Vec::new());
        };
        let Some((_, child)) = self.child_group(r).await? else {
            return Ok(Vec::new());
        };
        let mut keys: Vec<String> = kc
            .members(&child.id)
            .await?
            .iter()
            .map(|u| self.member_key(u))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// After the child group emptied or a project went away: the project's binding goes, and
    /// the group only when no other project of the cluster is still bound to it (upstream
    /// deletes it under the other resources); the parent when it has no child left.
    async fn release_group(&self, r: &ResourceView, project_id: &str) -> BackendResult<()> {
        let kc = self.keycloak()?;
        let principal = self.principal(r);
        let bindings = self
            .api
            .bindings(&[("groupPrincipalId", principal.as_str())])
            .await?;
        let mut others = false;
        for b in &bindings {
            if text(b, "projectId") == project_id {
                self.api.delete_binding(text(b, "id")).await?;
            } else if text(b, "projectId").split(':').next()
                == Some(self.settings.cluster_id.as_str())
            {
                others = true;
            }
        }
        if others {
            tracing::info!(offering = %self.offering, group = %self.child_group_name(r),
                "group kept: another resource of the project is bound to it");
            return Ok(());
        }
        if let Some((parent, child)) = self.child_group(r).await? {
            kc.delete_group(&child.id).await?;
            tracing::info!(offering = %self.offering, group = %child.name, "Keycloak group deleted");
            if kc.children(&parent.id).await?.is_empty() {
                kc.delete_group(&parent.id).await?;
            }
        }
        Ok(())
    }

    async fn info(
        &self,
        backend_id: &str,
        project: &Value,
        r: &ResourceView,
    ) -> BackendResult<BackendResourceInfo> {
        let project_id = text(project, "id");
        let namespaces = self.api.namespaces(project_id).await?;
        let ann = annotations(project);
        let state = ann.get(STATE_ANNOTATION).and_then(Value::as_str);
        let quota = match namespaces.first() {
            Some(ns) => self.quota_of(ns).await?,
            None => None,
        };
        let hard = quota
            .as_ref()
            .and_then(|q| q.pointer("/spec/hard"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let saved: Option<Limits> = ann
            .get(LIMITS_ANNOTATION)
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok());
        let limits = match (state, saved) {
            (Some(_), Some(saved)) => saved,
            _ => self.limits_from_hard(&hard),
        };
        let users = self.member_keys(r).await?;
        let mut meta = Map::new();
        meta.insert("name".into(), json!(text(project, "name")));
        meta.insert("project_id".into(), json!(project_id));
        meta.insert(
            "organization".into(),
            ann.get("waldur/organization").cloned().unwrap_or(json!("")),
        );
        meta.insert("description".into(), json!(text(project, "description")));
        meta.insert("namespaces".into(), json!(namespaces));
        meta.insert("quotas".into(), Value::Object(hard));
        meta.insert("users".into(), json!(users));
        if self.keycloak.is_some() {
            meta.insert("keycloak_group".into(), json!(self.child_group_name(r)));
        }
        if let Some(s) = state {
            meta.insert("state".into(), json!(s));
        }
        Ok(BackendResourceInfo {
            backend_id: backend_id.to_owned(),
            parent_id: String::new(),
            users,
            limits,
            backend_metadata: meta,
            endpoints: Vec::new(),
        })
    }

    async fn set_state(&self, r: &ResourceView, state: &str, amount: i64) -> BackendResult<bool> {
        let project = self.require_project(r).await?;
        let mut ann = annotations(&project);
        if ann.get(STATE_ANNOTATION).and_then(Value::as_str) == Some(state) {
            return Ok(false);
        }
        let current = self.info(&r.backend_id, &project, r).await?.limits;
        let saved = if current.is_empty() {
            r.limits.clone()
        } else {
            current
        };
        ann.insert(STATE_ANNOTATION.into(), json!(state));
        ann.insert(
            LIMITS_ANNOTATION.into(),
            json!(serde_json::to_string(&saved).unwrap_or_default()),
        );
        self.api
            .set_project_annotations(text(&project, "id"), ann)
            .await?;
        self.apply_quota(
            text(&project, "id"),
            text(&project, "name"),
            &self.uniform_hard(amount),
        )
        .await?;
        Ok(true)
    }
}

#[async_trait]
impl BackendHealth for RancherBackend {
    fn kind(&self) -> &'static str {
        crate::BACKEND_NAME
    }

    async fn ping(&self) -> BackendResult<()> {
        self.api.ping().await?;
        if let Some(kc) = &self.keycloak {
            kc.ping().await?;
        }
        Ok(())
    }

    async fn diagnostics(&self) -> Diagnostics {
        let mut checks = vec![Check {
            name: "settings".into(),
            ok: true,
            detail: format!(
                "backend_url {}, cluster {}, project_prefix '{}', default_role '{}', keycloak {}",
                self.settings.backend_url,
                self.settings.cluster_id,
                self.settings.project_prefix,
                self.settings.default_role,
                if self.keycloak.is_some() {
                    "enabled"
                } else {
                    "disabled (no membership sync)"
                }
            ),
        }];
        let ping = self.api.ping().await;
        checks.push(Check {
            name: "rancher login".into(),
            ok: ping.is_ok(),
            detail: ping.err().map_or_else(
                || {
                    format!(
                        "{}: cluster {} readable",
                        self.api.target(),
                        self.settings.cluster_id
                    )
                },
                |e| e.to_string(),
            ),
        });
        let projects = self
            .api
            .projects_with_prefix(&self.settings.project_prefix)
            .await;
        checks.push(Check {
            name: "projects".into(),
            ok: projects.is_ok(),
            detail: match projects {
                Ok(p) => format!(
                    "{} projects named '{}*'",
                    p.len(),
                    self.settings.project_prefix
                ),
                Err(e) => e.to_string(),
            },
        });
        if let Some(kc) = &self.keycloak {
            let ping = kc.ping().await;
            checks.push(Check {
                name: "keycloak login".into(),
                ok: ping.is_ok(),
                detail: ping.err().map_or_else(
                    || format!("{}: realm '{}' readable", kc.target(), kc.realm()),
                    |e| e.to_string(),
                ),
            });
        }
        Diagnostics {
            backend: crate::BACKEND_NAME.into(),
            checks,
        }
    }
}

#[async_trait]
impl OrderBackend for RancherBackend {
    fn backend_id_for(&self, base_slug: &str) -> BackendResult<String> {
        let id = format!("{}{}", self.settings.project_prefix, base_slug).to_ascii_lowercase();
        validate_project_name(&id)?;
        Ok(id)
    }

    async fn pull_resource(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Option<BackendResourceInfo>> {
        match self.find_project(&resource.backend_id).await? {
            Some(p) => Ok(Some(self.info(&resource.backend_id, &p, resource).await?)),
            None => Ok(None),
        }
    }

    fn check_limits(&self, _resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        self.site_hard(limits)?;
        Ok(())
    }

    async fn create_resource(&self, request: CreateRequest) -> BackendResult<BackendResourceInfo> {
        let name = request.backend_id.clone();
        validate_project_name(&name)?;
        let r = &request.resource;
        let hard = self.site_hard(&r.limits)?;
        // An existing project of that name is someone else's (or an earlier resource's): the
        // core then picks another id.
        let project = match self.api.project_by_name(&name).await? {
            Some(_) => return Err(BackendError::Duplicate { backend_id: name }),
            None => {
                let customer = if r.customer_name.is_empty() {
                    &r.customer_slug
                } else {
                    &r.customer_name
                };
                let project_name = if r.project_name.is_empty() {
                    &r.project_slug
                } else {
                    &r.project_name
                };
                let description =
                    format!("{} (Customer: {customer}, Project: {project_name})", r.name);
                let mut ann = Map::new();
                ann.insert("waldur/organization".into(), json!(r.customer_slug));
                ann.insert("waldur/managed".into(), json!("true"));
                let slug = if r.project_slug.is_empty() {
                    "unknown"
                } else {
                    r.project_slug.as_str()
                };
                ann.insert("waldur/project_slug".into(), json!(slug));
                if !r.uuid.is_empty() {
                    ann.insert(RESOURCE_ANNOTATION.into(), json!(r.uuid));
                }
                let p = self.api.create_project(&name, &description, ann).await?;
                tracing::info!(offering = %self.offering, project = %name, id = %text(&p, "id"), "Rancher project created");
                p
            }
        };
        let project_id = text(&project, "id").to_owned();
        self.apply_quota(&project_id, &name, &hard).await?;
        // The quota was read back by apply_quota; the group's members are read here.
        let mut users = Vec::new();
        if self.keycloak.is_some() {
            let child = self.ensure_access(&project_id, r).await?;
            users = self
                .keycloak()?
                .members(&child)
                .await?
                .iter()
                .map(|u| self.member_key(u))
                .collect();
            users.sort();
        }
        let mut meta = Map::new();
        meta.insert("name".into(), json!(name));
        meta.insert("project_id".into(), json!(project_id));
        meta.insert("organization".into(), json!(r.customer_slug));
        meta.insert("description".into(), json!(text(&project, "description")));
        meta.insert("quotas".into(), Value::Object(hard.clone()));
        meta.insert("users".into(), json!(users));
        if self.keycloak.is_some() {
            meta.insert("keycloak_group".into(), json!(self.child_group_name(r)));
        }
        Ok(BackendResourceInfo {
            backend_id: name,
            parent_id: String::new(),
            users,
            limits: self.limits_from_hard(&hard),
            backend_metadata: meta,
            endpoints: Vec::new(),
        })
    }

    async fn set_limits(&self, resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        let hard = self.site_hard(limits)?;
        let project = self.require_project(resource).await?;
        let mut ann = annotations(&project);
        if ann.get(STATE_ANNOTATION).is_some() {
            // Paused or downscaled: keep the reduced quota, remember the new limits.
            ann.insert(
                LIMITS_ANNOTATION.into(),
                json!(serde_json::to_string(limits).unwrap_or_default()),
            );
            return self
                .api
                .set_project_annotations(text(&project, "id"), ann)
                .await;
        }
        self.apply_quota(text(&project, "id"), text(&project, "name"), &hard)
            .await?;
        Ok(())
    }

    async fn delete_resource(&self, resource: &ResourceView) -> BackendResult<()> {
        let Some(project) = self.find_project(&resource.backend_id).await? else {
            return Ok(());
        };
        let id = text(&project, "id").to_owned();
        self.api.delete_project(&id).await?;
        tracing::info!(offering = %self.offering, project = %id, "Rancher project deleted");
        if self.keycloak.is_some() {
            self.release_group(resource, &id).await?;
        }
        // Rancher removes a project in the background: wait a little for it to be gone.
        for _ in 0..50 {
            if self.api.project(&id).await?.is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(BackendError::transient(format!(
            "offering '{}': Rancher project {id} is still being removed",
            self.offering
        )))
    }
}

#[async_trait]
impl MembershipBackend for RancherBackend {
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
        let kc = self.keycloak()?;
        let project = self.require_project(resource).await?;
        let child = self.ensure_access(text(&project, "id"), resource).await?;
        let mut found: Vec<(String, String)> = Vec::new();
        for user in users {
            match kc
                .find_user(&user.username, self.settings.keycloak_use_user_id)
                .await?
            {
                Some(u) => {
                    if self.settings.keycloak_use_user_id && u.id != user.username {
                        // Members are reported by id: this user would look stale next cycle.
                        tracing::warn!(offering = %self.offering, user = %user.username,
                            "keycloak_use_user_id is true but '{}' is a Keycloak username, not a user id: members are reported by id and would be removed and added again each cycle; set backend_settings.keycloak_use_user_id: false",
                            user.username);
                    }
                    kc.add_member(&u.id, &child).await?;
                    found.push((user.username.clone(), u.id));
                }
                None => {
                    // Not provisioned yet (first login pending): asked again next cycle.
                    tracing::info!(offering = %self.offering, user = %user.username,
                        "user not in Keycloak yet; access is granted on a later cycle");
                }
            }
        }
        // Confirm by reading back.
        let members: BTreeSet<String> = kc
            .members(&child)
            .await?
            .into_iter()
            .map(|u| u.id)
            .collect();
        Ok(found
            .into_iter()
            .filter(|(_, id)| members.contains(id))
            .map(|(name, _)| name)
            .collect())
    }

    async fn remove_users(
        &self,
        resource: &ResourceView,
        usernames: &[String],
    ) -> BackendResult<Vec<String>> {
        let kc = self.keycloak()?;
        let Some((_, child)) = self.child_group(resource).await? else {
            return Ok(usernames.to_vec());
        };
        let mut ids: Vec<(String, Option<String>)> = Vec::new();
        for name in usernames {
            match kc
                .find_user(name, self.settings.keycloak_use_user_id)
                .await?
            {
                Some(u) => {
                    kc.remove_member(&u.id, &child.id).await?;
                    tracing::info!(offering = %self.offering, user = %name, group = %child.name, "removed from the Keycloak group");
                    ids.push((name.clone(), Some(u.id)));
                }
                None => ids.push((name.clone(), None)),
            }
        }
        let members: BTreeSet<String> = kc
            .members(&child.id)
            .await?
            .into_iter()
            .map(|u| u.id)
            .collect();
        if members.is_empty()
            && let Some(project) = self.find_project(&resource.backend_id).await?
        {
            self.release_group(resource, text(&project, "id")).await?;
        }
        Ok(ids
            .into_iter()
            .filter(|(_, id)| id.as_ref().is_none_or(|id| !members.contains(id)))
            .map(|(name, _)| name)
            .collect())
    }

    async fn pause(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.set_state(resource, "paused", 0).await
    }

    async fn downscale(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.set_state(resource, "downscaled", 1).await
    }

    async fn restore(&self, resource: &ResourceView) -> BackendResult<bool> {
        let project = self.require_project(resource).await?;
        let mut ann = annotations(&project);
        if ann.get(STATE_ANNOTATION).is_none() {
            return Ok(false);
        }
        let saved: Limits = ann
            .get(LIMITS_ANNOTATION)
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok())
            .filter(|l: &Limits| !l.is_empty())
            .unwrap_or_else(|| resource.limits.clone());
        let hard = self.site_hard(&saved)?;
        self.apply_quota(text(&project, "id"), text(&project, "name"), &hard)
            .await?;
        ann.remove(STATE_ANNOTATION);
        ann.remove(LIMITS_ANNOTATION);
        self.api
            .set_project_annotations(text(&project, "id"), ann)
            .await?;
        Ok(true)
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
impl UsageBackend for RancherBackend {
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
            let project = match self.find_project(id).await {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(BackendError::InvalidName { .. }) => {
                    tracing::warn!(offering = %self.offering, id = %id, "not a Rancher project id or name; no usage");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut site: Amounts = self.components.keys().map(|k| (k.clone(), 0.0)).collect();
            for ns in self.api.namespaces(text(&project, "id")).await? {
                // Within a namespace the quotas' status.used are merged; namespaces add up.
                let mut used = Map::new();
                for q in self.api.quotas(&ns).await? {
                    if let Some(u) = q.pointer("/status/used").and_then(Value::as_object) {
                        used.extend(u.clone());
                    }
                }
                for (key, q) in &self.quota {
                    if let Some(amount) = used
                        .get(&q.hard)
                        .and_then(Value::as_str)
                        .and_then(|s| Self::base_amount(q.unit, s))
                    {
                        *site.entry(key.clone()).or_default() += amount;
                    }
                }
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
    fn project_names() {
        assert!(validate_project_name("waldur-ml-training").is_ok());
        for bad in ["", "Upper", "a_b", "-a", "a-", &"a".repeat(64), "a;rm"] {
            assert!(validate_project_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantities_compare_by_value() {
        let a: Map<String, Value> = [("limits.cpu".to_owned(), json!("4000m"))]
            .into_iter()
            .collect();
        let b: Map<String, Value> = [("limits.cpu".to_owned(), json!("4"))]
            .into_iter()
            .collect();
        assert!(same_hard(&a, &b));
    }
}
