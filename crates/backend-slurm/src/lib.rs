//! SLURM backend: Waldur resources become SLURM accounts, team members become user associations,
//! ordered limits become `GrpTRESMins`, and `sacct` provides usage.
//!
//! # Account hierarchy
//!
//! ```text
//! root_account (default: default_account, then "root")
//! └── <customer_prefix><customer slug>        description = customer name
//!     └── <project_prefix><project slug>      description = project name, organization = itself
//!         └── <allocation_prefix><resource slug> (lower-case)
//!                                              description = resource name, organization = project
//! ```
//!
//! With `parent_account` set the tree is flat: `parent_account → project → allocation`, no customer
//! tier. All names are lower-cased (SLURM folds case) and pass
//! [`backend_api::names::validate_site_name`] before any command runs. The tree logic lives in
//! [`backend_api::hierarchy`] and knows nothing of sacctmgr, so MOAB can reuse it; [`sacctmgr`]
//! turns it into argument vectors. A project whose customer changed is moved by
//! [`SlurmBackend::sync_resource_projects`]; the project account is removed with its last
//! allocation, customer accounts never.
//!
//! # Settings (`backend_settings`)
//!
//! Declared once in [`settings::SETTINGS`] (type, default, meaning of every key); the table of
//! `docs/backends/slurm.md` is generated from it, and `validate-config` checks offerings with it
//! and with [`SlurmSettings::parse`] (the same parse [`build`] does).
//!
//! Unknown keys are ignored at run time (warned about by `validate-config`). Components (`backend_components`) are TRES names (`cpu`, `mem`,
//! `gres/gpu`); `unit_factor` converts Waldur units into TRES-minutes (`mem` in MB-minutes), or
//! `target_components: {tres: {factor: f}}` maps one Waldur component onto several TRES. Prepaid
//! (`accounting_type: one`) limits are multiplied by the subscription's months. Limits read back are
//! the exact inverse of what was written, so syncing them to Waldur never grows them. Limits are
//! checked, never saturated: an amount that is not a whole number of TRES-minutes up to
//! [`tres::MAX_TRES_MINUTES`] is refused before any command runs.
//!
//! # Call pattern
//!
//! A batch of creates ([`backend_api::OrderBackend::create_resources`]) with `cluster_name` set and
//! `batch_load` on (default) costs one `show assoc` for every account involved (plus the tree top),
//! one `list user` (existing users keep their `DefaultAccount`: `load` would change it), ONE
//! `sacctmgr -i -P load file=<0600 temp file>` with every missing customer, project and allocation
//! (descriptions, organizations, `GrpTRESMins`) and user association (`DefaultAccount`,
//! `Fairshare=parent`; a new user under policy `common` also gets its default-account association,
//! as `add user` makes it). The load runs with `-P`, so its report of what it added (printed
//! before the commit a zero exit confirms) names every account with its parent and every user
//! association in full; that report confirms the create, and only what it does not list is read
//! back with one `show assoc` (presence columns only). An account the load reports as changed
//! ("Changed Parent") existed: load moves an existing account rather than refusing it, so it is
//! a collision, never ours. Only accounts that are missing are written, free text is reduced to
//! safe characters by [`sacctmgr::load_file_value`], and whatever load did not make, plus
//! associations with partitions or QoS, goes the per-command way below, item by item. Load
//! is used only when it saves calls and the tree top exists on the cluster (`load` would create an
//! unknown cluster). When the agent reserves the backend ids first (`check_ids`, as
//! order processing does), that `show assoc`, the `list user` and the cluster's TRES list are read
//! in one concurrent round and the create reuses them: a lone order in a new project (event mode)
//! then costs that round and one load instead of three sequential writes and a read-back.
//! Measured here (SLURM 22.05): 20 creates × 3 users in 4 projects: 4 calls; 100 creates × 5
//! users, one project each: 3 calls (`real_slurm` tests); event-driven orders: see `bench/`.
//!
//! Without load, a batch costs one `show assoc` for
//! every account involved, one `add account a,b,… GrpTRESMins=…` per group of new accounts sharing
//! parent, description, organization and limits (customer and project accounts once per batch),
//! and one `add user u1,…,un account=a1,…` per distinct (user set, association options). A failed
//! group is retried item by item so only the orders it concerns fail. Every write lists at most
//! `write_chunk_size` accounts, and a load file at most `load_chunk_rows` rows, fewer when the
//! last load's cost per row says they would not fit in `write_chunk_seconds` ([`pacer`]), so
//! no single slurmdbd transaction rewrites its tree for minutes. Usage for any number of
//! accounts is one `sacct` call.
//!
//! Membership ([`backend_api::MembershipBackend::apply_membership`]) is one read round and one
//! write round per cycle: `pull_resources` is one `show assoc` (allocations, their parents, the
//! tree top), which the rest of the cycle reuses for 30 s (`KnownTree` in `backend.rs`: project
//! moves, metadata, per-user limits, and the diffs); the writes are grouped (load files for new
//! plain associations, one `add user`/`remove user` per user set, one `modify account` per
//! status value) and read back once; what the read-back lacks is redone per resource. The
//! single-resource calls (`add_users`, `pause`, …) are the same round with one change. Usage is computed from
//! `AllocTRES × ElapsedRaw` (what the job held, to the second) rather than upstream's
//! `ReqTRES × Elapsed`.

pub mod backend;
#[cfg(any(test, feature = "testkit"))]
pub mod double;
pub mod gate;
pub mod pacer;
/// The account tree, shared with other accounting backends.
pub use backend_api::hierarchy;
pub mod sacctmgr;
pub mod settings;
pub mod tres;
pub mod usage;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use agent_config::{BackendRole, OfferingConfig};
use backend_api::command::{CommandRunner, ProcessRunner};
use backend_api::names::validate_site_token;
use backend_api::spec::{BackendSpec, SettingIssue};
use backend_api::{BackendError, BackendHandles, BuildContext};

pub use backend::SlurmBackend;
pub use gate::{LOCK_FILE_NAME, hold_write_lock};
pub use settings::{DefaultAccountPolicy, SlurmSettings, default_lock_dir};

/// What the `slurm` backend is, for the registry, `validate-config` and the plugin catalogue.
pub static SPEC: BackendSpec = BackendSpec {
    name: "slurm",
    description: "SLURM accounting through sacctmgr/sacct: allocations as accounts under \
                  customer and project accounts, limits as GrpTRESMins, usage from sacct",
    roles: &[
        BackendRole::OrderProcessing,
        BackendRole::MembershipSync,
        BackendRole::Reporting,
    ],
    settings: settings::SETTINGS,
    components: "keys are TRES names (`cpu`, `mem`, `gres/gpu`); `unit_factor` converts Waldur \
                 units into TRES-minutes (`mem` in MB-minutes); `target_components: {tres: \
                 {factor: f}}` maps one Waldur component onto several TRES",
    check,
    build,
};

/// The start-up checks of [`build`], without running anything.
fn check(offering: &OfferingConfig) -> Vec<SettingIssue> {
    let mut issues = SlurmSettings::parse(&offering.backend_settings)
        .err()
        .unwrap_or_default();
    for key in offering.backend_components.keys() {
        if let Err(e) = validate_site_token("component (TRES) name", key) {
            issues.push(SettingIssue::component(key, e.to_string()));
        }
    }
    let components = tres::ComponentMap::new(offering.backend_components.clone());
    for name in components.tres_names() {
        if let Err(e) = validate_site_token("target TRES name", &name) {
            issues.push(SettingIssue {
                path: "backend_components".to_owned(),
                reason: e.to_string(),
            });
        }
    }
    issues
}

/// Registry constructor for backend name `slurm`.
pub fn build(ctx: &BuildContext<'_>) -> Result<BackendHandles, BackendError> {
    let settings = SlurmSettings::from_map(&ctx.offering.backend_settings)?;
    let runner: Arc<dyn CommandRunner> =
        ProcessRunner::new(Duration::from_secs(settings.command_timeout_seconds.max(1)))
            .with_transient_rule(sacctmgr::is_transient_output)
            .shared();
    let backend = Arc::new(SlurmBackend::new(
        settings,
        ctx.offering.backend_components.clone(),
        runner,
    )?);
    Ok(handles(backend))
}

/// Registry handles sharing one backend instance.
pub fn handles(backend: Arc<SlurmBackend>) -> BackendHandles {
    BackendHandles {
        kind: "slurm",
        health: backend.clone(),
        orders: Some(backend.clone()),
        membership: Some(backend.clone()),
        usage: Some(backend),
        usernames: None,
    }
}
