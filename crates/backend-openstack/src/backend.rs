//! [`OpenStackBackend`]: Waldur resources as Keystone projects.
//!
//! Decisions (see `docs/backends/openstack.md`):
//! - backend id stored in Waldur = the Keystone project **name** (`project_prefix` + slug, lower-case);
//!   the Keystone project id and domain id go into backend metadata. Names are what operators see
//!   in `openstack project list`, and they let a lost Waldur record be matched again.
//! - pause disables the project, restore enables it, downscale does nothing (Keystone has no
//!   reduced service level; capacity is expressed by the unified limits), terminate disables then
//!   deletes it. Users are never deleted.
//! - members = users holding `default_role` directly on the project.
//! - limits = Keystone unified limits, mapped by `limits_mapping`.
//! - usage: Keystone records none; the usage report is empty.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use agent_config::{AccountingType, BackendComponent};
use async_trait::async_trait;
use backend_api::names::validate_site_name;
use backend_api::units::{SiteLimits, check_plain_limit, limits_from_site, limits_to_site};
use backend_api::{
    BackendError, BackendHealth, BackendResourceInfo, BackendResult, Capabilities, CreateRequest,
    Diagnostics, Limits, MembershipBackend, OrderBackend, ResourceView, UserGrant,
};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use crate::keystone::{KeystoneClient, Project, ProjectLimit, User};
use crate::settings::{LimitTarget, MAX_PROJECT_NAME_LEN, MAX_USER_NAME_LEN, OpenStackSettings};

/// The largest Keystone unified limit: `resource_limit` is a signed 32-bit INT column and the API
/// schema refuses anything above `0x7FFFFFFF` (and `-1`, below 0, means unlimited).
pub const KEYSTONE_MAX_LIMIT: i64 = 0x7FFF_FFFF;

/// Look-ups that do not change while the agent runs.
#[derive(Default)]
struct Cache {
    domain_id: Option<String>,
    role_id: Option<String>,
    /// `limits_mapping` service (type or name) → service id.
    services: BTreeMap<String, String>,
    /// (service id, resource name) whose registered limit is known to exist.
    registered: BTreeSet<(String, String)>,
}

/// The `openstack` backend of one offering.
pub struct OpenStackBackend {
    offering: String,
    settings: OpenStackSettings,
    components: IndexMap<String, BackendComponent>,
    client: KeystoneClient,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for OpenStackBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStackBackend")
            .field("offering", &self.offering)
            .field("settings", &self.settings)
            .finish()
    }
}

fn duplicate(backend_id: &str) -> BackendError {
    BackendError::Duplicate {
        backend_id: backend_id.to_owned(),
    }
}

/// Keystone tags may not contain '/' or ',' and are at most 255 characters.
fn ownership_tag(resource_uuid: &str) -> Option<String> {
    let clean: String = resource_uuid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    (!clean.is_empty()).then(|| format!("waldur-resource-{clean}"))
}

/// Refuse a Keystone project name the agent should not use.
pub fn validate_project_name(name: &str) -> BackendResult<()> {
    validate_site_name("Keystone project name", name)?;
    if name.chars().count() > MAX_PROJECT_NAME_LEN {
        return Err(BackendError::InvalidName {
            what: "Keystone project name",
            value: name.to_owned(),
            reason: "it is longer than 64 characters, Keystone's limit".into(),
        });
    }
    Ok(())
}

/// Refuse a user name the agent should not use.
pub fn validate_user_name(name: &str) -> BackendResult<()> {
    validate_site_name("Keystone user name", name)?;
    if name.chars().count() > MAX_USER_NAME_LEN {
        return Err(BackendError::InvalidName {
            what: "Keystone user name",
            value: name.to_owned(),
            reason: "it is longer than 255 characters, Keystone's limit".into(),
        });
    }
    Ok(())
}

/// The description written on a new project: who it belongs to in Waldur.
pub fn project_description(resource: &ResourceView) -> String {
    let mut text = format!("Waldur resource '{}'", resource.name);
    if !resource.uuid.is_empty() {
        text.push_str(&format!(" ({})", resource.uuid));
    }
    if !resource.project_name.is_empty() {
        text.push_str(&format!(", project '{}'", resource.project_name));
    }
    if !resource.customer_name.is_empty() {
        text.push_str(&format!(", customer '{}'", resource.customer_name));
    }
    text
}

impl OpenStackBackend {
    pub fn new(
        offering: &str,
        settings: OpenStackSettings,
        components: IndexMap<String, BackendComponent>,
    ) -> BackendResult<Self> {
        Self::with_proxy(offering, settings, components, None)
    }

    /// Like [`OpenStackBackend::new`], every Keystone request going through `proxy`
    /// (the agent's `global_proxy`).
    pub fn with_proxy(
        offering: &str,
        settings: OpenStackSettings,
        components: IndexMap<String, BackendComponent>,
        proxy: Option<&str>,
    ) -> BackendResult<Self> {
        let client = KeystoneClient::with_proxy(offering, &settings, proxy)?;
        Ok(OpenStackBackend {
            offering: offering.to_owned(),
            settings,
            components,
            client,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// The Keystone client (for tooling and tests that need raw Keystone access).
    pub fn client(&self) -> &KeystoneClient {
        &self.client
    }

    pub fn settings(&self) -> &OpenStackSettings {
        &self.settings
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn config_error(&self, message: String) -> BackendError {
        BackendError::Config(format!("offering '{}': {message}", self.offering))
    }

    // ---- cached look-ups ----------------------------------------------------------------------

    async fn domain_id(&self) -> BackendResult<String> {
        if let Some(id) = &self.settings.domain_id {
            return Ok(id.clone());
        }
        if let Some(id) = self.cache().domain_id.clone() {
            return Ok(id);
        }
        let id = self
            .client
            .find_domain_id(&self.settings.domain_name)
            .await?
            .ok_or_else(|| {
                self.config_error(format!(
                    "Keystone domain '{}' (backend_settings.domain_name) does not exist",
                    self.settings.domain_name
                ))
            })?;
        self.cache().domain_id = Some(id.clone());
        Ok(id)
    }

    /// The role granted to members. `_member_` (the seed's example, pre-Queens Keystone) falls
    /// back to `member` when only the latter exists.
    async fn role_id(&self) -> BackendResult<String> {
        if let Some(id) = self.cache().role_id.clone() {
            return Ok(id);
        }
        let wanted = &self.settings.default_role;
        let mut found = self.client.find_role_id(wanted).await?;
        if found.is_none() && wanted == "_member_" {
            found = self.client.find_role_id("member").await?;
            if found.is_some() {
                tracing::warn!(
                    offering = %self.offering,
                    "role '_member_' does not exist in Keystone; using 'member' (set default_role: member)"
                );
            }
        }
        let id = found.ok_or_else(|| {
            self.config_error(format!(
                "Keystone role '{wanted}' (backend_settings.default_role) does not exist; \
                 create it (openstack role create {wanted}) or name an existing role"
            ))
        })?;
        self.cache().role_id = Some(id.clone());
        Ok(id)
    }

    async fn service_id(&self, component: &str, target: &LimitTarget) -> BackendResult<String> {
        if let Some(id) = self.cache().services.get(&target.service).cloned() {
            return Ok(id);
        }
        let services = self.client.list_services().await?;
        let found = services
            .iter()
            .find(|s| s.service_type == target.service)
            .or_else(|| {
                services
                    .iter()
                    .find(|s| s.name.as_deref() == Some(target.service.as_str()))
            })
            .map(|s| s.id.clone())
            .ok_or_else(|| {
                self.config_error(format!(
                    "limits_mapping.{component}: no service of type or name '{}' in the Keystone \
                     catalog; register it (openstack service create --name <name> {}) or fix the mapping",
                    target.service, target.service
                ))
            })?;
        self.cache()
            .services
            .insert(target.service.clone(), found.clone());
        Ok(found)
    }

    /// Make sure the registered limit a project limit needs exists.
    async fn ensure_registered_limit(
        &self,
        component: &str,
        service_id: &str,
        target: &LimitTarget,
    ) -> BackendResult<()> {
        let key = (service_id.to_owned(), target.resource_name.clone());
        if self.cache().registered.contains(&key) {
            return Ok(());
        }
        let region = self.settings.limits_region_id.as_deref();
        let existing = self
            .client
            .registered_limits(service_id, &target.resource_name, region)
            .await?;
        if existing.is_empty() {
            let how_to = format!(
                "register it: openstack registered limit create --service {} --default-limit 0{} {}",
                target.service,
                region.map(|r| format!(" --region {r}")).unwrap_or_default(),
                target.resource_name
            );
            if !self.settings.create_registered_limits {
                return Err(self.config_error(format!(
                    "limits_mapping.{component}: Keystone has no registered limit for service '{}' \
                     resource '{}' and create_registered_limits is false; {how_to}",
                    target.service, target.resource_name
                )));
            }
            match self
                .client
                .create_registered_limit(service_id, &target.resource_name, region, 0)
                .await
            {
                Ok(_) => tracing::info!(
                    offering = %self.offering,
                    service = %target.service,
                    resource = %target.resource_name,
                    "created Keystone registered limit (default 0)"
                ),
                // Somebody registered it meanwhile.
                Err(e) if e.status() == Some(409) => {}
                Err(e) if matches!(e.status(), Some(401 | 403)) => {
                    return Err(self.config_error(format!(
                        "limits_mapping.{component}: Keystone has no registered limit for service '{}' \
                         resource '{}' and {} may not create one (HTTP {}); {how_to}",
                        target.service,
                        target.resource_name,
                        self.client.principal(),
                        e.status().unwrap_or_default()
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.cache().registered.insert(key);
        Ok(())
    }

    // ---- projects -----------------------------------------------------------------------------

    async fn find_project(&self, backend_id: &str) -> BackendResult<Option<Project>> {
        if backend_id.trim().is_empty() {
            return Ok(None);
        }
        let domain_id = self.domain_id().await?;
        Ok(self.client.find_project(backend_id, &domain_id).await?)
    }

    async fn require_project(&self, resource: &ResourceView) -> BackendResult<Project> {
        self.find_project(&resource.backend_id)
            .await?
            .ok_or_else(|| {
                BackendError::permanent(format!(
                    "offering '{}': Keystone project '{}' does not exist in domain '{}'",
                    self.offering, resource.backend_id, self.settings.domain_name
                ))
            })
    }

    fn metadata(&self, project: &Project) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("project_id".into(), json!(project.id));
        m.insert("project_name".into(), json!(project.name));
        m.insert("domain_id".into(), json!(project.domain_id));
        m.insert("domain_name".into(), json!(self.settings.domain_name));
        m.insert("enabled".into(), json!(project.enabled));
        m
    }

    fn info(&self, project: &Project, users: Vec<String>, limits: Limits) -> BackendResourceInfo {
        BackendResourceInfo {
            backend_id: project.name.clone(),
            parent_id: project.domain_id.clone(),
            users,
            limits,
            backend_metadata: self.metadata(project),
            endpoints: Vec::new(),
        }
    }

    /// Members: user names holding the default role directly on the project.
    async fn project_members(&self, project_id: &str) -> BackendResult<Vec<String>> {
        let role_id = self.role_id().await?;
        let assignments = self
            .client
            .role_assignments(&[("scope.project.id", project_id), ("role.id", &role_id)])
            .await?;
        let mut users: Vec<String> = assignments
            .into_iter()
            .filter(|a| a.role.as_ref().is_some_and(|r| r.id == role_id))
            .filter_map(|a| a.user.map(|u| u.name))
            .filter(|n| !n.is_empty())
            .collect();
        users.sort();
        users.dedup();
        Ok(users)
    }

    // ---- limits -------------------------------------------------------------------------------

    /// (service id, resource name) → component key, for every mapping whose service resolves.
    async fn reverse_mapping(&self) -> BTreeMap<(String, String), String> {
        let mut out = BTreeMap::new();
        for (component, target) in &self.settings.limits_mapping {
            match self.service_id(component, target).await {
                Ok(sid) => {
                    out.insert((sid, target.resource_name.clone()), component.clone());
                }
                Err(e) => tracing::warn!(error = %e, "limit not read back"),
            }
        }
        out
    }

    /// Waldur limits as read back: `base` (what Waldur holds) overlaid with the mapped Keystone
    /// project limits converted to Waldur units. Unmapped components keep Waldur's value so that
    /// a sync never wipes them.
    async fn limits_from_keystone(&self, base: &Limits, project_limits: &[ProjectLimit]) -> Limits {
        let reverse = self.reverse_mapping().await;
        let region = self.settings.limits_region_id.as_deref();
        let site: SiteLimits = project_limits
            .iter()
            .filter(|l| l.region_id.as_deref() == region)
            .filter_map(|l| {
                reverse
                    .get(&(l.service_id.clone(), l.resource_name.clone()))
                    .map(|c| (c.clone(), l.resource_limit))
            })
            .collect();
        let mut limits = base.clone();
        limits.extend(limits_from_site(&site, &self.components));
        limits
    }

    /// Waldur limits → the Keystone project limits of the mapped components, checked: each a
    /// whole number within Keystone's `resource_limit` range after `unit_factor`. Unmapped
    /// components stay in Waldur only but must still be finite and not negative. Refused before
    /// any Keystone call.
    fn site_limits(&self, limits: &Limits) -> BackendResult<SiteLimits> {
        let mut mapped = Limits::new();
        for (key, value) in limits {
            if self.settings.limits_mapping.contains_key(key) {
                mapped.insert(key.clone(), *value);
            } else {
                check_plain_limit(key, *value, backend_api::units::MAX_EXACT_INTEGER)?;
            }
        }
        Ok(limits_to_site(
            &mapped,
            &self.components,
            KEYSTONE_MAX_LIMIT,
        )?)
    }

    /// Set the project limits of every mapped component in `limits` (Waldur units).
    async fn apply_limits(&self, project_id: &str, limits: &Limits) -> BackendResult<()> {
        let site = self.site_limits(limits)?;
        for key in limits.keys().filter(|k| !site.contains_key(*k)) {
            tracing::debug!(component = %key, "no limits_mapping entry; not sent to Keystone");
        }
        if site.is_empty() {
            return Ok(());
        }
        let region = self.settings.limits_region_id.as_deref();
        let mut existing = self.client.project_limits(project_id).await?;
        for (component, amount) in &site {
            let Some(target) = self.settings.limits_mapping.get(component) else {
                continue;
            };
            let service_id = self.service_id(component, target).await?;
            self.ensure_registered_limit(component, &service_id, target)
                .await?;
            let matches = |l: &ProjectLimit| {
                l.service_id == service_id
                    && l.resource_name == target.resource_name
                    && l.region_id.as_deref() == region
            };
            if let Some(current) = existing.iter().find(|l| matches(l)) {
                if current.resource_limit != *amount {
                    self.update_limit(project_id, current, *amount).await?;
                }
                continue;
            }
            match self
                .client
                .create_project_limit(
                    project_id,
                    &service_id,
                    &target.resource_name,
                    region,
                    *amount,
                )
                .await
            {
                Ok(created) => existing.push(created),
                Err(e) if e.status() == Some(409) => {
                    // Created concurrently: read it back and set the value.
                    existing = self.client.project_limits(project_id).await?;
                    let current = existing
                        .iter()
                        .find(|l| matches(l))
                        .ok_or_else(|| BackendError::from(e))?;
                    self.update_limit(project_id, current, *amount).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Change one project limit. Keystone ignores a PATCH to 0 (answers 200 with the old value),
    /// so when the stored value differs from what we asked, replace the limit instead.
    async fn update_limit(
        &self,
        project_id: &str,
        current: &ProjectLimit,
        amount: i64,
    ) -> BackendResult<()> {
        let stored = self
            .client
            .update_project_limit(&current.id, amount)
            .await?;
        if stored.resource_limit == amount {
            return Ok(());
        }
        self.client.delete_project_limit(&current.id).await?;
        let created = self
            .client
            .create_project_limit(
                project_id,
                &current.service_id,
                &current.resource_name,
                current.region_id.as_deref(),
                amount,
            )
            .await?;
        if created.resource_limit != amount {
            return Err(BackendError::permanent(format!(
                "offering '{}': Keystone stored {} instead of {amount} for limit {}",
                self.offering, created.resource_limit, current.resource_name
            )));
        }
        Ok(())
    }

    // ---- users --------------------------------------------------------------------------------

    /// Find the user, creating it when allowed; sync the email. `None` = missing and not created.
    async fn ensure_user(&self, grant: &UserGrant, domain_id: &str) -> BackendResult<Option<User>> {
        let email = grant
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty());
        if let Some(user) = self.client.find_user(&grant.username, domain_id).await? {
            if self.settings.sync_user_emails
                && let Some(email) = email
                && user.email.as_deref() != Some(email)
            {
                self.client.set_user_email(&user.id, email).await?;
                tracing::info!(user = %grant.username, "synced Keystone user email");
            }
            return Ok(Some(user));
        }
        if !self.settings.create_users_if_not_exist {
            return Ok(None);
        }
        let description = grant
            .full_name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .map(|n| format!("{n} (created by waldur-site-agent)"))
            .unwrap_or_else(|| "created by waldur-site-agent".to_owned());
        match self
            .client
            .create_user(&grant.username, domain_id, email, None, Some(&description))
            .await
        {
            Ok(user) => {
                tracing::info!(user = %grant.username, "created Keystone user");
                Ok(Some(user))
            }
            // Created by someone else meanwhile, or our request landed but the answer was lost.
            Err(e) if e.status() == Some(409) || e.is_transient() => {
                match self.client.find_user(&grant.username, domain_id).await? {
                    Some(user) => Ok(Some(user)),
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn add_users_impl(
        &self,
        resource: &ResourceView,
        users: &[UserGrant],
    ) -> BackendResult<Vec<String>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let project = self.require_project(resource).await?;
        let role_id = self.role_id().await?;
        let domain_id = self.domain_id().await?;
        let mut added = Vec::new();
        for grant in users {
            if let Err(e) = validate_user_name(&grant.username) {
                tracing::warn!(error = %e, "user skipped");
                continue;
            }
            let user = match self.ensure_user(grant, &domain_id).await {
                Ok(Some(user)) => user,
                Ok(None) => {
                    tracing::warn!(
                        user = %grant.username,
                        project = %project.name,
                        "Keystone user does not exist and create_users_if_not_exist is false; not added"
                    );
                    continue;
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    tracing::warn!(user = %grant.username, error = %e, "user not added");
                    continue;
                }
            };
            match self
                .client
                .grant_role(&project.id, &user.id, &role_id)
                .await
            {
                Ok(()) => added.push(grant.username.clone()),
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => tracing::warn!(user = %grant.username, error = %e, "role not granted"),
            }
        }
        Ok(added)
    }

    async fn set_enabled(&self, resource: &ResourceView, enabled: bool) -> BackendResult<bool> {
        let Some(project) = self.find_project(&resource.backend_id).await? else {
            tracing::warn!(project = %resource.backend_id, "Keystone project not found; nothing to change");
            return Ok(false);
        };
        if project.enabled == enabled {
            return Ok(false);
        }
        self.client
            .set_project_enabled(&project.id, enabled)
            .await?;
        tracing::info!(project = %project.name, enabled, "changed Keystone project state");
        Ok(true)
    }

    /// Limit-type components without a mapping (their limits stay in Waldur only).
    fn unmapped_limit_components(&self) -> Vec<&str> {
        self.components
            .iter()
            .filter(|(k, c)| {
                matches!(c.accounting_type, AccountingType::Limit)
                    && !self.settings.limits_mapping.contains_key(*k)
            })
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

#[async_trait]
impl BackendHealth for OpenStackBackend {
    fn kind(&self) -> &'static str {
        "openstack"
    }

    async fn ping(&self) -> BackendResult<()> {
        Ok(self.client.ping().await?)
    }

    async fn diagnostics(&self) -> Diagnostics {
        let mut d = Diagnostics::new("openstack");
        match self.client.authenticate().await {
            Ok(token) => {
                let scope = match (&token.project, &token.system) {
                    (Some(p), _) => format!("project '{}' ({})", p.name, p.id),
                    (None, Some(_)) => "system".to_owned(),
                    _ => "unscoped".to_owned(),
                };
                let roles: Vec<&str> = token.roles.iter().map(|r| r.name.as_str()).collect();
                d.check(
                    "authentication",
                    true,
                    format!(
                        "{} at {} scoped to {scope}, roles [{}], token expires {}",
                        self.client.principal(),
                        self.client.auth_url(),
                        roles.join(", "),
                        token.expires_at
                    ),
                );
                let endpoints: Vec<String> = token
                    .catalog
                    .iter()
                    .map(|s| {
                        let public = s
                            .endpoints
                            .iter()
                            .find(|e| e.interface == "public")
                            .or_else(|| s.endpoints.first())
                            .map(|e| e.url.as_str())
                            .unwrap_or("no endpoint");
                        format!("{} ({}): {public}", s.service_type, s.name)
                    })
                    .collect();
                d.check(
                    "catalog endpoints",
                    !endpoints.is_empty(),
                    if endpoints.is_empty() {
                        "the token carries no service catalog".to_owned()
                    } else {
                        endpoints.join("; ")
                    },
                );
            }
            Err(e) => {
                d.check("authentication", false, e.to_string());
                return d;
            }
        }
        match self.domain_id().await {
            Ok(id) => d.check(
                "domain",
                true,
                format!("'{}' exists (id {id})", self.settings.domain_name),
            ),
            Err(e) => d.check("domain", false, e.to_string()),
        }
        match self.role_id().await {
            Ok(id) => d.check(
                "default role",
                true,
                format!("'{}' resolves to role id {id}", self.settings.default_role),
            ),
            Err(e) => d.check("default role", false, e.to_string()),
        }
        let region = self.settings.limits_region_id.as_deref();
        for (component, target) in &self.settings.limits_mapping {
            let name = format!("limit {component}");
            let service_id = match self.service_id(component, target).await {
                Ok(id) => id,
                Err(e) => {
                    d.check(name, false, e.to_string());
                    continue;
                }
            };
            match self
                .client
                .registered_limits(&service_id, &target.resource_name, region)
                .await
            {
                Ok(found) if !found.is_empty() => d.check(
                    name,
                    true,
                    format!(
                        "registered limit {}/{} found (default {})",
                        target.service, target.resource_name, found[0].default_limit
                    ),
                ),
                Ok(_) => d.check(
                    name,
                    self.settings.create_registered_limits,
                    format!(
                        "no registered limit {}/{}; {}",
                        target.service,
                        target.resource_name,
                        if self.settings.create_registered_limits {
                            "it will be created with default 0 on first use"
                        } else {
                            "create_registered_limits is false: register it before ordering"
                        }
                    ),
                ),
                Err(e) => d.check(name, false, e.to_string()),
            }
        }
        let unmapped = self.unmapped_limit_components();
        if !unmapped.is_empty() {
            d.check(
                "limits mapping",
                true,
                format!(
                    "limit components without limits_mapping (kept in Waldur only): {}",
                    unmapped.join(", ")
                ),
            );
        }
        d.check(
            "usage",
            true,
            "not recorded by Keystone: usage reports from this backend are always empty",
        );
        d
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            supports_cycle_preflight: true,
            ..Capabilities::default()
        }
    }
}

#[async_trait]
impl OrderBackend for OpenStackBackend {
    fn backend_id_for(&self, base_slug: &str) -> BackendResult<String> {
        let name = format!("{}{}", self.settings.name_prefix, base_slug).to_lowercase();
        validate_project_name(&name)?;
        Ok(name)
    }

    async fn pull_resource(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Option<BackendResourceInfo>> {
        let Some(project) = self.find_project(&resource.backend_id).await? else {
            return Ok(None);
        };
        let users = self.project_members(&project.id).await?;
        let limits = if self.settings.limits_mapping.is_empty() {
            resource.limits.clone()
        } else {
            let project_limits = self.client.project_limits(&project.id).await?;
            self.limits_from_keystone(&resource.limits, &project_limits)
                .await
        };
        Ok(Some(self.info(&project, users, limits)))
    }

    fn check_limits(&self, _resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        self.site_limits(limits).map(drop)
    }

    async fn create_resource(&self, request: CreateRequest) -> BackendResult<BackendResourceInfo> {
        let name = request.backend_id.clone();
        validate_project_name(&name)?;
        let mut limits = request.context.plan_quotas.clone();
        limits.extend(request.resource.limits.clone());
        // Refused limits create no project (nothing to clean up afterwards).
        self.site_limits(&limits)?;
        let domain_id = self.domain_id().await?;
        if self.client.find_project(&name, &domain_id).await?.is_some() {
            return Err(duplicate(&name));
        }
        let tag = ownership_tag(&request.resource.uuid);
        let tags: Vec<String> = tag.iter().cloned().collect();
        let description = project_description(&request.resource);
        let project = match self
            .client
            .create_project(&name, &domain_id, &description, &tags)
            .await
        {
            Ok(p) => p,
            Err(e) if e.status() == Some(409) => return Err(duplicate(&name)),
            Err(e) if e.is_transient() => {
                // The create may have landed before the connection broke: adopt it only if it
                // carries this resource's tag.
                match self.client.find_project(&name, &domain_id).await {
                    Ok(Some(p)) if tag.as_ref().is_some_and(|t| p.tags.contains(t)) => p,
                    _ => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(project = %name, id = %project.id, "created Keystone project");

        if let Err(e) = self.apply_limits(&project.id, &limits).await {
            // Leave no half-made project behind: the retry would otherwise see a duplicate.
            tracing::warn!(project = %name, error = %e, "limits failed; removing the new project");
            let cleanup = async {
                self.client.set_project_enabled(&project.id, false).await?;
                self.client.delete_project(&project.id).await
            };
            if let Err(cleanup_err) = cleanup.await {
                tracing::error!(project = %name, error = %cleanup_err, "could not remove the new project");
            }
            return Err(e);
        }
        let mut read_back = request.resource.limits.clone();
        read_back.extend(
            limits
                .into_iter()
                .filter(|(k, _)| self.settings.limits_mapping.contains_key(k)),
        );
        Ok(self.info(&project, Vec::new(), read_back))
    }

    async fn set_limits(&self, resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        self.site_limits(limits)?;
        let project = self.require_project(resource).await?;
        self.apply_limits(&project.id, limits).await
    }

    async fn delete_resource(&self, resource: &ResourceView) -> BackendResult<()> {
        let Some(project) = self.find_project(&resource.backend_id).await? else {
            tracing::info!(project = %resource.backend_id, "Keystone project already gone");
            return Ok(());
        };
        // Disable first so that nobody gets a new token for it while it is being removed.
        if project.enabled {
            self.client.set_project_enabled(&project.id, false).await?;
        }
        self.client.delete_project(&project.id).await?;
        tracing::info!(project = %project.name, id = %project.id, "deleted Keystone project");
        Ok(())
    }

    async fn add_users_after_create(
        &self,
        resource: &ResourceView,
        users: &[UserGrant],
    ) -> BackendResult<Vec<String>> {
        self.add_users_impl(resource, users).await
    }
}

#[async_trait]
impl MembershipBackend for OpenStackBackend {
    /// One sweep = three Keystone calls (projects of the domain, assignments of the default role,
    /// limits), whatever the number of resources.
    async fn pull_resources(
        &self,
        resources: &[ResourceView],
    ) -> BackendResult<BTreeMap<String, BackendResourceInfo>> {
        let wanted: BTreeSet<&str> = resources
            .iter()
            .map(|r| r.backend_id.as_str())
            .filter(|id| !id.is_empty())
            .collect();
        if wanted.is_empty() {
            return Ok(BTreeMap::new());
        }
        let domain_id = self.domain_id().await?;
        let role_id = self.role_id().await?;
        let projects: BTreeMap<String, Project> = self
            .client
            .list_projects(&domain_id)
            .await?
            .into_iter()
            .filter(|p| wanted.contains(p.name.as_str()))
            .map(|p| (p.id.clone(), p))
            .collect();
        if projects.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for a in self
            .client
            .role_assignments(&[("role.id", &role_id)])
            .await?
        {
            let (Some(user), Some(scope)) = (a.user, a.scope) else {
                continue;
            };
            if let Some(project) = scope.project.filter(|p| projects.contains_key(&p.id)) {
                members.entry(project.id).or_default().insert(user.name);
            }
        }
        let mut limits_by_project: BTreeMap<String, Vec<ProjectLimit>> = BTreeMap::new();
        if !self.settings.limits_mapping.is_empty() {
            for l in self.client.all_limits().await? {
                if let Some(pid) = l.project_id.clone().filter(|p| projects.contains_key(p)) {
                    limits_by_project.entry(pid).or_default().push(l);
                }
            }
        }
        let mut out = BTreeMap::new();
        for resource in resources {
            let Some(project) = projects.values().find(|p| p.name == resource.backend_id) else {
                continue;
            };
            let users = members
                .get(&project.id)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            let limits = match limits_by_project.get(&project.id) {
                Some(found) => self.limits_from_keystone(&resource.limits, found).await,
                None => resource.limits.clone(),
            };
            out.insert(
                resource.backend_id.clone(),
                self.info(project, users, limits),
            );
        }
        Ok(out)
    }

    async fn add_users(
        &self,
        resource: &ResourceView,
        users: &[UserGrant],
    ) -> BackendResult<Vec<String>> {
        self.add_users_impl(resource, users).await
    }

    async fn remove_users(
        &self,
        resource: &ResourceView,
        usernames: &[String],
    ) -> BackendResult<Vec<String>> {
        let Some(project) = self.find_project(&resource.backend_id).await? else {
            return Ok(usernames.to_vec());
        };
        let role_id = self.role_id().await?;
        let domain_id = self.domain_id().await?;
        let mut removed = Vec::new();
        for username in usernames {
            if validate_user_name(username).is_err() {
                // Such a user can never have been added by us.
                removed.push(username.clone());
                continue;
            }
            let Some(user) = self.client.find_user(username, &domain_id).await? else {
                removed.push(username.clone());
                continue;
            };
            match self
                .client
                .revoke_role(&project.id, &user.id, &role_id)
                .await
            {
                Ok(_) => removed.push(username.clone()),
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => tracing::warn!(user = %username, error = %e, "role not revoked"),
            }
        }
        Ok(removed)
    }

    /// Disable the project: its members can no longer get tokens for it.
    async fn pause(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.set_enabled(resource, false).await
    }

    /// Keystone has no reduced service level; capacity is carried by the unified limits, which
    /// Waldur changes through update orders. Nothing to do.
    async fn downscale(&self, _resource: &ResourceView) -> BackendResult<bool> {
        Ok(false)
    }

    /// Enable the project again (one GET when it already is).
    async fn restore(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.set_enabled(resource, true).await
    }

    async fn resource_metadata(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Map<String, Value>> {
        Ok(self
            .find_project(&resource.backend_id)
            .await?
            .map(|p| self.metadata(&p))
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_checked() {
        validate_project_name("os_alloc-1").expect("ordinary");
        for bad in ["", "-x", "a b", "a/b", "a,b"] {
            assert!(validate_project_name(bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(65);
        let err = validate_project_name(&long).expect_err("too long");
        assert!(err.to_string().contains("64"), "{err}");
        validate_project_name(&"a".repeat(64)).expect("64 is fine");
        validate_user_name("alice@example.org").expect("email-like user names");
        assert!(validate_user_name("al ice").is_err());
    }

    #[test]
    fn description_names_the_owner() {
        let r = ResourceView {
            uuid: "abc".into(),
            name: "My VM quota".into(),
            project_name: "Physics".into(),
            customer_name: "Uni".into(),
            ..Default::default()
        };
        let d = project_description(&r);
        assert_eq!(
            d,
            "Waldur resource 'My VM quota' (abc), project 'Physics', customer 'Uni'"
        );
    }

    #[test]
    fn ownership_tags_are_safe() {
        assert_eq!(
            ownership_tag("0a1b-2c").as_deref(),
            Some("waldur-resource-0a1b-2c")
        );
        assert_eq!(
            ownership_tag("a/b,c").as_deref(),
            Some("waldur-resource-abc")
        );
        assert_eq!(ownership_tag(""), None);
    }
}
