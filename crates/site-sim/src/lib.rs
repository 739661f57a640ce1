//! site-sim: site doubles for the site agent — stateful stand-ins for the systems that cannot
//! run on the project's machines, faithful to the real systems' public APIs (paths, shapes,
//! status codes, error bodies, auth, concurrency rules). See `docs/` and the crate README.
//!
//! Shared plumbing ([`server`], [`faults`], [`stats`], [`tls`]) and one module per system:
//! [`kubernetes`] (Kubernetes and OpenShift/OKD), [`moab`] (MOAB Accounting Manager CLI),
//! [`opennebula`] (OpenNebula's XML-RPC API).

pub mod faults;
pub mod kubernetes;
pub mod moab;
pub mod opennebula;
pub mod server;
pub mod stats;
pub mod tls;

pub use faults::{FaultConfig, FaultRule};
pub use kubernetes::{KubeInfo, KubeOptions, KubeServer};
pub use opennebula::{OneInfo, OneOptions, OneServer};
pub use stats::{RequestLogEntry, RequestStats};
