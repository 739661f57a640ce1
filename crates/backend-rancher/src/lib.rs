//! The `rancher` backend: a Waldur resource as a Rancher project (`{project_prefix}{slug}`) with
//! its namespace (pod-security labels and `namespace_labels`), limits as the
//! `custom-resource-quota` ResourceQuota of every namespace of the project, access through
//! Keycloak: the Waldur project's group (`project_<slug>_<role>` under `c_<cluster>`) is bound to
//! each of its Rancher projects with `default_role`, members join and leave that group. Usage
//! comes from the quotas' `status.used` through Rancher's cluster proxy.
//!
//! - [`settings`]: `backend_settings` ([`RancherSettings`]) and the component → quota mapping.
//! - [`rancher`]: the Rancher v3 client on `http-kit`.
//! - [`backend`]: [`RancherBackend`]: orders, membership, reporting, health.
//! - Keycloak: the `keycloak-admin` crate (shared with OpenNebula).

pub mod backend;
pub mod rancher;
pub mod settings;

use std::sync::Arc;

pub use backend::RancherBackend;
pub use settings::RancherSettings;

use agent_config::{BackendRole, OfferingConfig};
use backend_api::spec::{BackendSpec, SettingIssue};
use backend_api::{BackendError, BackendHandles, BuildContext};

pub const BACKEND_NAME: &str = "rancher";

/// What the `rancher` backend is, for the registry, `validate-config` and the catalogue.
pub static SPEC: BackendSpec = BackendSpec {
    name: BACKEND_NAME,
    description: "Rancher + Keycloak: resources as Rancher projects with a ResourceQuota on every \
                  namespace, members through Keycloak groups bound to a project role, usage from \
                  the quotas",
    roles: &[
        BackendRole::OrderProcessing,
        BackendRole::MembershipSync,
        BackendRole::Reporting,
    ],
    settings: settings::SETTINGS,
    components: "`type` cpu (cores → `limits.cpu`), ram (GB → `limits.memory`), storage \
                 (GB → `requests.storage`), gpu (→ `requests.nvidia.com/gpu`); \
                 `k8s_resource: X` writes `requests.X`; other components get no quota; \
                 `unit_factor` converts Waldur units into these",
    check,
    build,
};

fn check(offering: &OfferingConfig) -> Vec<SettingIssue> {
    let settings = match RancherSettings::parse(&offering.backend_settings) {
        Ok(s) => s,
        Err(issues) => return issues,
    };
    if let Err(issues) = settings::quota_keys(&offering.backend_components) {
        return issues;
    }
    match RancherBackend::new(
        &offering.name,
        settings,
        offering.backend_components.clone(),
        None,
    ) {
        Ok(_) => Vec::new(),
        Err(e) => vec![SettingIssue::setting("verify_cert", e.to_string())],
    }
}

fn config_error(offering: &str, issues: Vec<SettingIssue>) -> BackendError {
    let text: Vec<String> = issues
        .into_iter()
        .map(|i| format!("{}: {}", i.path, i.reason))
        .collect();
    BackendError::Config(format!("offering '{offering}': {}", text.join("; ")))
}

/// Build the backend of one offering. No network traffic. Without `keycloak_enabled` there is
/// no membership sync (the backend could not grant access).
pub fn build(ctx: &BuildContext<'_>) -> Result<BackendHandles, BackendError> {
    let offering = ctx.offering;
    let settings = RancherSettings::parse(&offering.backend_settings)
        .map_err(|issues| config_error(&offering.name, issues))?;
    let backend = Arc::new(RancherBackend::new(
        &offering.name,
        settings,
        offering.backend_components.clone(),
        ctx.global_proxy,
    )?);
    let membership: Option<Arc<dyn backend_api::MembershipBackend>> = if backend.manages_members() {
        Some(backend.clone())
    } else {
        None
    };
    Ok(BackendHandles {
        kind: BACKEND_NAME,
        health: backend.clone(),
        orders: Some(backend.clone()),
        membership,
        usage: Some(backend),
        usernames: None,
    })
}
