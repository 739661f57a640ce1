//! The `openstack` backend: Waldur resources as OpenStack Keystone projects.
//!
//! - [`settings`]: `backend_settings` of the offering ([`OpenStackSettings`]).
//! - [`keystone`]: a small Keystone v3 client (tokens, projects, users, roles, unified limits).
//! - [`backend`]: [`OpenStackBackend`], implementing orders, membership and health. Keystone
//!   records no usage, so the backend has no reporting role (`reporting_backend: openstack` is
//!   refused by `validate-config` and at start-up).
//!
//! Registered by the binary under the name `openstack` through [`build`].

pub mod backend;
pub mod keystone;
pub mod settings;

use std::sync::Arc;

pub use backend::OpenStackBackend;
pub use keystone::{KeystoneClient, KeystoneError};
pub use settings::{Credentials, LimitTarget, OpenStackSettings, Scope};

use agent_config::{BackendRole, OfferingConfig};
use backend_api::spec::{BackendSpec, SettingIssue};
use backend_api::{BackendError, BackendHandles, BuildContext};

/// Registry name of this backend.
pub const BACKEND_NAME: &str = "openstack";

/// What the `openstack` backend is, for the registry, `validate-config` and the catalogue.
pub static SPEC: BackendSpec = BackendSpec {
    name: BACKEND_NAME,
    description: "OpenStack Keystone v3: resources as projects, members as role assignments, \
                  limits as unified limits; no usage (Keystone records none)",
    roles: &[BackendRole::OrderProcessing, BackendRole::MembershipSync],
    settings: settings::SETTINGS,
    components: "keys are Waldur component names; `limits_mapping` sends each to a Keystone \
                 unified limit, `unit_factor` converts Waldur units into Keystone's",
    check,
    build,
};

/// The start-up checks of [`build`] without any Keystone call: settings, components, and the
/// HTTP client (CA bundle readable).
fn check(offering: &OfferingConfig) -> Vec<SettingIssue> {
    let issue = |e: BackendError| {
        let text = e.to_string();
        // The messages name their key as `backend_settings.<key>`; keep that as the path.
        let path = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("backend_settings."))
            .map(|k| {
                let key: String = k
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                    .collect();
                format!("backend_settings.{}", key.trim_end_matches('.'))
            })
            .unwrap_or_else(|| "backend_settings".to_owned());
        let reason = text
            .strip_prefix(&format!(
                "configuration error: offering '{}': ",
                offering.name
            ))
            .unwrap_or(&text)
            .to_owned();
        SettingIssue { path, reason }
    };
    let settings = match OpenStackSettings::from_backend_settings(
        &offering.name,
        &offering.backend_settings,
    ) {
        Ok(s) => s,
        Err(e) => return vec![issue(e)],
    };
    match OpenStackBackend::new(
        &offering.name,
        settings,
        offering.backend_components.clone(),
    ) {
        Ok(_) => Vec::new(),
        Err(e) => vec![issue(e)],
    }
}

/// Build the backend of one offering from its `backend_settings` and `backend_components`.
/// No network traffic happens here; the first call authenticates.
pub fn build(ctx: &BuildContext<'_>) -> Result<BackendHandles, BackendError> {
    let offering = ctx.offering;
    let settings =
        OpenStackSettings::from_backend_settings(&offering.name, &offering.backend_settings)?;
    let backend = Arc::new(OpenStackBackend::with_proxy(
        &offering.name,
        settings,
        offering.backend_components.clone(),
        ctx.global_proxy,
    )?);
    Ok(BackendHandles {
        kind: BACKEND_NAME,
        health: backend.clone(),
        orders: Some(backend.clone()),
        membership: Some(backend),
        usage: None,
        usernames: None,
    })
}
