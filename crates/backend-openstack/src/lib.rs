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

use backend_api::{BackendError, BackendHandles, BuildContext};

/// Registry name of this backend.
pub const BACKEND_NAME: &str = "openstack";

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
