//! The closed registry: config backend names (`slurm`, `openstack`, ...) → constructors.
//!
//! The binary registers the backends compiled in (each behind a cargo feature). One offering's roles
//! may name the same backend; it is then built once and shared.

use std::collections::BTreeMap;
use std::sync::Arc;

use agent_config::{BackendRole, OfferingConfig};

use crate::error::BackendError;
use crate::spec::BackendSpec;
use crate::traits::{
    BackendHealth, BaseUsernameBackend, MembershipBackend, OrderBackend, UsageBackend,
    UsernameBackend,
};

/// What one backend instance offers, by capability. A backend fills the slots it supports.
#[derive(Clone)]
pub struct BackendHandles {
    pub kind: &'static str,
    pub health: Arc<dyn BackendHealth>,
    pub orders: Option<Arc<dyn OrderBackend>>,
    pub membership: Option<Arc<dyn MembershipBackend>>,
    pub usage: Option<Arc<dyn UsageBackend>>,
    pub usernames: Option<Arc<dyn UsernameBackend>>,
}

/// Everything a constructor may read.
pub struct BuildContext<'a> {
    pub offering: &'a OfferingConfig,
    /// The agent's `global_proxy`: every HTTP backend sends its requests through it.
    pub global_proxy: Option<&'a str>,
}

impl<'a> BuildContext<'a> {
    pub fn new(offering: &'a OfferingConfig) -> Self {
        BuildContext {
            offering,
            global_proxy: None,
        }
    }
}

pub type Constructor = fn(&BuildContext<'_>) -> Result<BackendHandles, BackendError>;

/// The backends of one offering, by role. `None` = role disabled in the config.
#[derive(Clone)]
pub struct OfferingBackends {
    pub orders: Option<Arc<dyn OrderBackend>>,
    pub membership: Option<Arc<dyn MembershipBackend>>,
    pub usage: Option<Arc<dyn UsageBackend>>,
    pub usernames: Arc<dyn UsernameBackend>,
    /// Each distinct backend once, for ping and diagnostics.
    pub health: Vec<Arc<dyn BackendHealth>>,
}

#[derive(Default)]
pub struct Registry {
    specs: BTreeMap<&'static str, &'static BackendSpec>,
    global_proxy: Option<String>,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// Add a backend by its declaration ([`BackendSpec`]: name, roles, settings, constructor).
    pub fn register(&mut self, spec: &'static BackendSpec) -> &mut Self {
        self.specs.insert(spec.name, spec);
        self
    }

    /// The declarations of the registered backends, by name.
    pub fn specs(&self) -> Vec<&'static BackendSpec> {
        self.specs.values().copied().collect()
    }

    /// Give every backend built by this registry the agent's `global_proxy`.
    pub fn with_global_proxy(mut self, proxy: Option<String>) -> Self {
        self.global_proxy = proxy.filter(|p| !p.trim().is_empty());
        self
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.specs.keys().copied().collect()
    }

    /// Whether `name` is a backend of this build (`base` is always a username backend). Whether
    /// it supports `role` is [`crate::spec::check_offering`]'s error, with a better message.
    pub fn knows(&self, role: BackendRole, name: &str) -> bool {
        (role == BackendRole::UsernameManagement && name == "base") || self.specs.contains_key(name)
    }

    /// Build the backends named by the offering's role keys.
    pub fn build_offering(
        &self,
        offering: &OfferingConfig,
    ) -> Result<OfferingBackends, BackendError> {
        let mut built: BTreeMap<&str, BackendHandles> = BTreeMap::new();
        let ctx = BuildContext {
            offering,
            global_proxy: self.global_proxy.as_deref(),
        };
        let mut get = |role: BackendRole| -> Result<Option<BackendHandles>, BackendError> {
            let Some(name) = offering.role_backend(role) else {
                return Ok(None);
            };
            if role == BackendRole::UsernameManagement && name == "base" {
                return Ok(None);
            }
            if let Some(h) = built.get(name) {
                return Ok(Some(h.clone()));
            }
            let spec = self.specs.get(name).ok_or_else(|| {
                BackendError::Config(format!(
                    "offering '{}': {} names backend '{}', which this build does not have (available: {})",
                    offering.name,
                    role.config_key(),
                    name,
                    self.names().join(", ")
                ))
            })?;
            if !spec.supports(role) {
                return Err(BackendError::Config(format!(
                    "offering '{}': {} is '{}', but that backend does not support {}",
                    offering.name,
                    role.config_key(),
                    name,
                    crate::spec::role_name(role)
                )));
            }
            let handles = (spec.build)(&ctx)?;
            built.insert(name, handles.clone());
            Ok(Some(handles))
        };
        let missing = |role: BackendRole, kind: &str, what: &str| {
            BackendError::Config(format!(
                "offering '{}': {} is '{}', but that backend does not support {}",
                offering.name,
                role.config_key(),
                kind,
                what
            ))
        };
        let orders = match get(BackendRole::OrderProcessing)? {
            Some(h) => Some(h.orders.clone().ok_or_else(|| {
                missing(BackendRole::OrderProcessing, h.kind, "order processing")
            })?),
            None => None,
        };
        let membership =
            match get(BackendRole::MembershipSync)? {
                Some(h) => Some(h.membership.clone().ok_or_else(|| {
                    missing(BackendRole::MembershipSync, h.kind, "membership sync")
                })?),
                None => None,
            };
        let usage = match get(BackendRole::Reporting)? {
            Some(h) => Some(
                h.usage
                    .clone()
                    .ok_or_else(|| missing(BackendRole::Reporting, h.kind, "usage reporting"))?,
            ),
            None => None,
        };
        let usernames: Arc<dyn UsernameBackend> = match get(BackendRole::UsernameManagement)? {
            Some(h) => h.usernames.clone().ok_or_else(|| {
                missing(
                    BackendRole::UsernameManagement,
                    h.kind,
                    "username generation",
                )
            })?,
            None => Arc::new(BaseUsernameBackend),
        };
        let health = built.into_values().map(|h| h.health).collect();
        Ok(OfferingBackends {
            orders,
            membership,
            usage,
            usernames,
            health,
        })
    }
}
