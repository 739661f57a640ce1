//! The agent core: per-offering processors that reconcile Waldur and the site.
//!
//! - [`orders::order_process`] — apply `pending-provider` / `executing` orders (§3.1).
//! - [`report::report`] — usage reporting for the configured billing months (§3.2).
//! - [`membership::membership_sync`] — team membership, status flags, limits (§3.3).
//! - [`usernames`] — the offering-user username state machine (§6).
//! - [`identity::register_agent`] — identity/service/processor registration (§4.1).
//! - [`tools`] — the helper commands: load components, diagnostics, sync offering users,
//!   readiness (§1, §4.7).
//! - [`sweeps`] — event-mode reconciliation: stuck orders, stuck offering users (§3.4.5).
//! - [`membership::process_offering_resources_sync`] — the forced `offering_resources_sync`.
//!
//! Not implemented, because no backend of ours supports them: async target orders (§3.1.3) and
//! resource API keys (§3.1.8); see [`orders`].
//!
//! Every processor returns a [`CycleReport`]; one failing item never stops the others.
//! Event handlers call the `process_*` entry points, which share the polling code.

pub mod context;
pub mod convert;
pub mod error;
pub mod events;
pub mod features;
pub mod identity;
pub mod legacy;
pub mod limits;
pub mod members;
pub mod membership;
pub mod orders;
pub mod policy;
pub mod report;
pub mod sweeps;
pub mod tools;
pub mod usernames;

/// Items (orders, or resources of a membership cycle) per pass of a cycle: what a pass holds
/// (resources, teams, requests, grants, the backend's plans and output) stays bounded however
/// many items wait, at the cost of one more site round per pass beyond the first.
pub(crate) const ITEMS_PER_PASS: usize = 250;

pub use context::{CoreSettings, Offering, OfferingContext};
pub use error::{CoreError, CoreResult, CycleReport};
pub use identity::{Registration, RegistrationOutcome, register_agent};
pub use membership::{
    membership_sync, process_offering_resources_sync, process_project_user_sync,
    process_resource_by_uuid, process_user_role_changed, process_username_set,
};
pub use orders::{OrderOutcome, order_process, process_order_by_uuid};
pub use report::report;
pub use tools::{DiagnosticsReport, LoadComponentsReport};
pub use usernames::UsernameRun;
