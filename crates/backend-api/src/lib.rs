//! The contract between the agent core and the site backends.
//!
//! - [`traits`]: one trait per capability (orders, membership, usage, usernames, health).
//! - [`domain`]: the types backends see — never Waldur's wire DTOs.
//! - [`units`]: `unit_factor` conversion, in one place.
//! - [`command`]: the runner every CLI backend uses (argument vectors, timeouts, process groups,
//!   the backend's own transient rule) and the `|`-separated output reader.
//! - [`hierarchy`]: the customer → project → allocation account tree of accounting backends.
//! - [`names`]: refusal of names that could inject arguments into site tools or paths.
//! - [`registry`]: config backend names → their [`spec::BackendSpec`] (roles, settings, check,
//!   constructor).
//! - [`spec`]: what a backend declares, and the offline check `validate-config` runs with it.
//! - `testkit` (feature `testkit`): an in-memory backend, a recording command runner and the
//!   conformance checks every backend runs.

pub mod command;
pub mod domain;
pub mod error;
pub mod hierarchy;
pub mod names;
pub mod registry;
pub mod spec;
pub mod traits;
pub mod units;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use domain::*;
pub use error::{BackendError, BackendResult};
/// The one retry policy (the HTTP kit's), for backends that retry something other than HTTP.
pub use http_kit::RetryPolicy;
/// Requests each REST backend sent so far (counter name → count), for `/metrics` and `bench/`.
pub use http_kit::request_counts as backend_request_counts;
pub use registry::{BackendHandles, BuildContext, OfferingBackends, Registry};
pub use traits::{
    BackendHealth, BaseUsernameBackend, MembershipBackend, OrderBackend, UsageBackend,
    UsernameBackend,
};
