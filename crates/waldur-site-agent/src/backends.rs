//! The backends compiled into this binary.
//!
//! Each backend crate sits behind a default-on cargo feature of the same name and exposes a
//! `static SPEC: backend_api::spec::BackendSpec` (name, roles, settings, offline check,
//! constructor). Registration goes here, one line per backend:
//!
//! ```text
//! #[cfg(feature = "slurm")]
//! registry.register(&backend_slurm::SPEC);
//! ```
//!
//! `validate-config` checks the config's backend names against this list (its hidden
//! `--known-backends` flag overrides the list for tests) and each offering against the specs
//! (`backend_api::spec::check_offering`). `base` is always accepted as a username backend.

use backend_api::Registry;

/// The registry for running `config`: backends get its `global_proxy`.
pub fn registry_for(config: &agent_config::AgentConfig) -> Registry {
    registry().with_global_proxy(config.global_proxy.clone())
}

pub fn registry() -> Registry {
    #[allow(unused_mut)]
    let mut registry = Registry::new();
    #[cfg(feature = "slurm")]
    registry.register(&backend_slurm::SPEC);
    #[cfg(feature = "openstack")]
    registry.register(&backend_openstack::SPEC);
    #[cfg(feature = "okd")]
    registry.register(&backend_okd::SPEC);
    #[cfg(feature = "rancher")]
    registry.register(&backend_rancher::SPEC);
    #[cfg(feature = "opennebula")]
    registry.register(&backend_opennebula::SPEC);
    #[cfg(feature = "command")]
    registry.register(&backend_command::SPEC);
    #[cfg(feature = "moab")]
    registry.register(&backend_moab::SPEC);
    registry
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_config::BackendRole;

    #[test]
    fn base_username_backend_is_always_known() {
        let r = registry();
        assert!(r.knows(BackendRole::UsernameManagement, "base"));
        assert!(!r.knows(BackendRole::OrderProcessing, "no-such-backend"));
        #[cfg(feature = "slurm")]
        assert!(r.knows(BackendRole::OrderProcessing, "slurm"));
        #[cfg(feature = "openstack")]
        assert!(r.knows(BackendRole::MembershipSync, "openstack"));
        #[cfg(feature = "moab")]
        assert!(r.knows(BackendRole::Reporting, "moab"));
        #[cfg(feature = "okd")]
        assert!(r.knows(BackendRole::Reporting, "okd"));
        #[cfg(feature = "rancher")]
        assert!(r.knows(BackendRole::MembershipSync, "rancher"));
        #[cfg(feature = "opennebula")]
        assert!(r.knows(BackendRole::OrderProcessing, "opennebula"));
    }
}
