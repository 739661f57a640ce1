//! site-sim: site doubles for the site agent — stateful stand-ins for the systems that cannot
//! run on the project's machines, faithful to the real systems' public APIs (paths, shapes,
//! status codes, error bodies, auth, concurrency rules). See `docs/` and the crate README.
//!
//! Shared plumbing ([`server`], [`faults`], [`stats`], [`tls`]) and one module per system:
//! [`kubernetes`] (Kubernetes and OpenShift/OKD), [`keycloak`] (Keycloak's token endpoint and
//! admin API), [`rancher`] (Rancher v3 with its cluster proxy), [`moab`] (MOAB Accounting Manager
//! CLI), [`opennebula`] (OpenNebula's XML-RPC API).

pub mod faults;
pub mod keycloak;
pub mod kubernetes;
pub mod moab;
pub mod opennebula;
pub mod rancher;
pub mod server;
pub mod stats;
pub mod tls;

pub use faults::{FaultConfig, FaultRule};
pub use keycloak::{KeycloakInfo, KeycloakOptions, KeycloakServer};
pub use kubernetes::{KubeInfo, KubeOptions, KubeServer};
pub use opennebula::{OneInfo, OneOptions, OneServer};
pub use rancher::{RancherInfo, RancherOptions, RancherServer, RancherStack};
pub use stats::{RequestLogEntry, RequestStats};
