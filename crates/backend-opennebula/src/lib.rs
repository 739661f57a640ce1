//! The `opennebula` backend: with `resource_type: vdc` a Waldur resource is a Virtual Data
//! Center (a group, a VDC holding it and the clusters, group quotas for cpu/ram/storage/floating
//! IPs, optionally a VXLAN tenant network with a virtual router and a security group, and a
//! user whose credentials are published); with `resource_type: vm` it is a VM instantiated in a
//! parent VDC and sized by the plan. Talks XML-RPC on `http-kit`.
//!
//! - [`settings`]: `backend_settings` ([`OneSettings`]) and the `plugin_options` that win.
//! - [`rpc`]: the XML-RPC client, OpenNebula's error codes, reuse after lost replies.
//! - [`backend`]: [`OneBackend`]: orders, reporting, health.

pub mod backend;
pub mod rpc;
pub mod saml;
pub mod settings;

use std::sync::Arc;

pub use backend::OneBackend;
pub use settings::OneSettings;

use agent_config::{BackendRole, OfferingConfig};
use backend_api::spec::{BackendSpec, SettingIssue};
use backend_api::{BackendError, BackendHandles, BuildContext};

pub const BACKEND_NAME: &str = "opennebula";

pub static SPEC: BackendSpec = BackendSpec {
    name: BACKEND_NAME,
    description: "OpenNebula: Virtual Data Centers (group, VDC, quotas, tenant network, user) or \
                  VMs sized by the plan, over XML-RPC",
    roles: &[
        BackendRole::OrderProcessing,
        BackendRole::MembershipSync,
        BackendRole::Reporting,
    ],
    settings: settings::SETTINGS,
    components: "VDC: `cpu` (cores), `ram` (MB), `storage` (MB), `floating_ip` (leases), \
                 limit components; VM: `vcpu`, `vm_ram` (MB), `vm_disk` (MB), the plan's fixed \
                 components; `unit_factor` converts Waldur units into these",
    check,
    build,
};

fn check(offering: &OfferingConfig) -> Vec<SettingIssue> {
    let settings = match OneSettings::parse(&offering.backend_settings) {
        Ok(s) => s,
        Err(issues) => return issues,
    };
    let allowed = match settings.resource_type {
        settings::ResourceType::Vdc => backend::VDC_COMPONENTS,
        settings::ResourceType::Vm => backend::VM_COMPONENTS,
    };
    let mut issues = Vec::new();
    if offering.membership_sync_backend.as_deref() == Some(BACKEND_NAME) && settings.saml.is_none()
    {
        issues.push(SettingIssue::setting(
            "keycloak_enabled",
            "membership_sync_backend is opennebula: members are synchronised through Keycloak role groups, set keycloak_enabled: true and a keycloak block",
        ));
    }
    for key in offering.backend_components.keys() {
        if !allowed.contains(&key.as_str()) {
            issues.push(SettingIssue::component(
                key,
                format!("this offering's components are {}", allowed.join(", ")),
            ));
        }
    }
    // The clients are built as `build` builds them (TLS settings, CA bundles of OpenNebula and
    // Keycloak), without network traffic.
    if issues.is_empty()
        && let Err(e) = OneBackend::new(
            &offering.name,
            settings,
            offering.backend_components.clone(),
            None,
        )
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

/// Build the backend of one offering. No network traffic. Membership sync only with
/// `keycloak_enabled` (VDC role groups).
pub fn build(ctx: &BuildContext<'_>) -> Result<BackendHandles, BackendError> {
    let offering = ctx.offering;
    let settings = OneSettings::parse(&offering.backend_settings)
        .map_err(|issues| config_error(&offering.name, issues))?;
    let backend = Arc::new(OneBackend::new(
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
