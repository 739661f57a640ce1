//! The `okd` backend: Waldur resources as OpenShift projects (or Kubernetes Namespaces on a
//! cluster without `project.openshift.io`), limits as the `waldur-quota` ResourceQuota, members
//! as RoleBindings to ClusterRoles (owner → `admin`, manager → `edit`, member → `view`), usage
//! from the quota's `status.used`.
//!
//! - [`settings`]: `backend_settings` ([`OkdSettings`]), the four token sources.
//! - [`quota`]: limits ↔ `spec.hard`, quantities.
//! - [`kube`]: the API client, kube-rs on `kube-kit` (TLS/CA bundle, proxy, token sources,
//!   retries); typed core objects, OpenShift projects as dynamic objects.
//! - [`backend`]: [`OkdBackend`]: orders, membership, reporting, health.

pub mod backend;
pub mod kube;
pub mod quota;
pub mod settings;

use std::sync::Arc;

pub use backend::OkdBackend;
pub use settings::OkdSettings;

use agent_config::{BackendRole, OfferingConfig};
use backend_api::spec::{BackendSpec, SettingIssue};
use backend_api::{BackendError, BackendHandles, BuildContext};

pub const BACKEND_NAME: &str = "okd";

/// What the `okd` backend is, for the registry, `validate-config` and the catalogue.
pub static SPEC: BackendSpec = BackendSpec {
    name: BACKEND_NAME,
    description: "OKD/OpenShift (or plain Kubernetes): resources as projects with a \
                  ResourceQuota, members as RoleBindings, usage from the quota",
    roles: &[
        BackendRole::OrderProcessing,
        BackendRole::MembershipSync,
        BackendRole::Reporting,
    ],
    settings: settings::SETTINGS,
    components: "`cpu` (cores), `memory` (GiB), `storage` (GiB), `pods`; `unit_factor` converts \
                 Waldur units into these",
    check,
    build,
};

fn check(offering: &OfferingConfig) -> Vec<SettingIssue> {
    let settings = match OkdSettings::parse(&offering.backend_settings) {
        Ok(s) => s,
        Err(issues) => return issues,
    };
    let mut issues = Vec::new();
    for key in offering.backend_components.keys() {
        if !quota::COMPONENTS.contains(&key.as_str()) {
            issues.push(SettingIssue::component(
                key,
                "an OKD quota has only cpu, memory, storage and pods",
            ));
        }
    }
    if issues.is_empty()
        && let Err(e) = kube::KubeApi::new(&offering.name, &settings, None)
    {
        issues.push(SettingIssue::setting("verify_cert", e.to_string()));
    }
    issues
}

fn config_error(offering: &str, issues: Vec<SettingIssue>) -> BackendError {
    let text: Vec<String> = issues
        .into_iter()
        .map(|i| format!("{}: {}", i.path, i.reason))
        .collect();
    BackendError::Config(format!("offering '{offering}': {}", text.join("; ")))
}

/// Build the backend of one offering. No network traffic.
pub fn build(ctx: &BuildContext<'_>) -> Result<BackendHandles, BackendError> {
    let offering = ctx.offering;
    let settings = OkdSettings::parse(&offering.backend_settings)
        .map_err(|issues| config_error(&offering.name, issues))?;
    let backend = Arc::new(OkdBackend::new(
        &offering.name,
        settings,
        offering.backend_components.clone(),
        ctx.global_proxy,
    )?);
    Ok(BackendHandles {
        kind: BACKEND_NAME,
        health: backend.clone(),
        orders: Some(backend.clone()),
        membership: Some(backend.clone()),
        usage: Some(backend),
        usernames: None,
    })
}
