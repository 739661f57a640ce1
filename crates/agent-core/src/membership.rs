//! `membership_sync` (agent-behaviour §3.3) and the event entry points that share its code.
//!
//! One read of the site for all resources (`pull_resources`), the team diff of every resource
//! in memory (add new members, remove stale = site users − team), then ONE site round for all
//! of them (`apply_membership`: additions, removals, pause / downscale / restore), and per
//! resource what goes back to Waldur, each only when it differs: backend metadata, limits,
//! per-user limits, `refresh_last_sync` (hourly), an erred resource set back to OK. A failure
//! sets that resource erred (unless transient) and the cycle goes on.
//!
//! Also here (§3.3.5, §3.3.1): project service accounts and course accounts (best-effort, never
//! err a resource; active accounts are not "stale" for the team diff, so they are not removed
//! and re-added every cycle), per-member sync statuses when the offering opts in with
//! `enable_membership_sync_status`, and the forced `offering_resources_sync`
//! ([`process_offering_resources_sync`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use std::sync::atomic::Ordering;

use futures::FutureExt;
use futures::stream::{self, StreamExt};

use backend_api::{
    BackendError, BackendResourceInfo, CreateRequest, MembershipBackend, MembershipChange,
    ResourceView, UserContext, UserGrant,
};
use serde_json::{Value, json};
use waldur_client::{
    ComponentUserUsageLimit, OfferingUser, OfferingUserState, ProviderResource, ResourceFilter,
    ResourceState, truthy,
};

use crate::context::{AccountLists, OfferingContext};
use crate::convert::{limits_from_amounts, resource_view, user_grant};
use crate::error::{CoreError, CoreResult, CycleReport};
use crate::features::{Absence, endpoint, optional};
use crate::usernames;

/// Fields membership sync reads from each resource.
pub const MEMBERSHIP_RESOURCE_FIELDS: &[&str] = &[
    "uuid",
    "backend_id",
    "name",
    "slug",
    "state",
    "project_uuid",
    "project_slug",
    "customer_slug",
    "restrict_member_access",
    "backend_metadata",
    "limits",
    "paused",
    "downscaled",
    "attributes",
    "offering_plugin_options",
    "offering_backend_id",
    "project_name",
    "project_description",
    "customer_uuid",
    "customer_name",
    "end_date",
    "project_end_date",
    "last_sync",
];

/// How stale Waldur's `last_sync` of a resource may get before a cycle refreshes it: a steady
/// membership cycle then writes nothing to Waldur, and "last synced" stays within the hour.
pub const LAST_SYNC_REFRESH: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether `last_sync` (as Waldur stores it) is older than [`LAST_SYNC_REFRESH`] or unknown.
fn last_sync_is_stale(last_sync: Option<&str>) -> bool {
    let Some(at) = last_sync.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return true;
    };
    let age = jiff::Timestamp::now().duration_since(at);
    age.is_negative() || age.unsigned_abs() >= LAST_SYNC_REFRESH
}

fn backend(ctx: &OfferingContext) -> CoreResult<Arc<dyn MembershipBackend>> {
    ctx.backends
        .membership
        .clone()
        .ok_or_else(|| CoreError::invalid("no membership_sync_backend configured"))
}

async fn handled_resources(
    ctx: &OfferingContext,
    backend: &Arc<dyn MembershipBackend>,
    project_uuid: Option<&str>,
) -> CoreResult<Vec<ProviderResource>> {
    let states = backend
        .capabilities()
        .handled_resource_states
        .iter()
        .map(|s| ResourceState::from_wire(s))
        .collect();
    let filter = ResourceFilter {
        offering_uuid: Some(ctx.offering_uuid.clone()),
        states,
        project_uuid: project_uuid.map(str::to_owned),
        fields: MEMBERSHIP_RESOURCE_FIELDS.to_vec(),
        ..ResourceFilter::default()
    };
    Ok(ctx
        .client
        .list_resources(&filter)
        .await?
        .into_iter()
        .filter(|r| !r.backend_id.trim().is_empty())
        .collect())
}

/// Offering users in the states membership cares about, after running username generation.
async fn refreshed_offering_users(ctx: &OfferingContext) -> Arc<Vec<OfferingUser>> {
    let load = async {
        let users = ctx.offering_users().await?;
        let pending: Vec<OfferingUser> = users
            .iter()
            .filter(|u| {
                matches!(
                    u.state,
                    OfferingUserState::Requested
                        | OfferingUserState::Creating
                        | OfferingUserState::ErrorCreating
                        | OfferingUserState::PendingAccountLinking
                        | OfferingUserState::PendingAdditionalValidation
                )
            })
            .cloned()
            .collect();
        let users =
            if !pending.is_empty() && usernames::update_offering_users(ctx, &pending).await? {
                ctx.invalidate_offering_users().await;
                ctx.offering_users().await?
            } else {
                users
            };
        sync_user_profiles(ctx, &users);
        Ok::<_, CoreError>(users)
    };
    match load.await {
        Ok(users) => users,
        Err(e) => {
            tracing::error!(offering = %ctx.name(), error = %e, "cannot read offering users");
            Arc::new(Vec::new())
        }
    }
}

/// Upstream's `username_management_backend.sync_user_profiles(offering_users)` hook. Every
/// username backend we have (and upstream's `base`) leaves it empty, and `UsernameBackend` has
/// no such method, so this is the one place to call it from should a backend need it.
fn sync_user_profiles(ctx: &OfferingContext, users: &[OfferingUser]) {
    tracing::trace!(offering = %ctx.name(), users = users.len(), "user profile sync: nothing to do for this backend");
}

/// Full membership cycle for the offering.
pub async fn membership_sync(ctx: &OfferingContext) -> CycleReport {
    let this_run = ctx.new_run();
    let ctx = &this_run;
    let mut cycle = CycleReport::new(ctx.name());
    let backend = match backend(ctx) {
        Ok(b) => b,
        Err(e) => {
            cycle.record("membership", e);
            return cycle;
        }
    };
    match handled_resources(ctx, &backend, None).await {
        Ok(resources) => {
            sync_resources(ctx, &backend, &resources, true, &mut cycle).await;
            // Upstream 1.0.8: carry out Waldur's deletion requests every cycle.
            if !ctx.is_cancelled() {
                let views: Vec<ResourceView> = resources.iter().map(resource_view).collect();
                drop(resources);
                cycle.merge(
                    crate::members::process_departed_offering_users(ctx, &backend, &views).await,
                );
            }
        }
        Err(e) => cycle.record("list resources", e),
    }
    cycle
}

/// One read of the site, every resource's diff in memory, one `apply_membership` round (plus
/// one for service/course accounts when they need changes), then what goes back to Waldur per
/// resource. `full`: also status flags, metadata, limits, per-user limits and last sync.
async fn sync_resources(
    ctx: &OfferingContext,
    backend: &Arc<dyn MembershipBackend>,
    resources: &[ProviderResource],
    full: bool,
    cycle: &mut CycleReport,
) {
    if resources.is_empty() {
        return;
    }
    let views: Vec<ResourceView> = resources.iter().map(resource_view).collect();
    let infos = match backend.pull_resources(&views).await {
        Ok(infos) => infos,
        Err(e) => {
            cycle.record("pull resources", e);
            return;
        }
    };
    if full {
        match backend.sync_projects(&views).await {
            Ok(0) => {}
            Ok(moved) => {
                tracing::info!(offering = %ctx.name(), moved, "moved site accounts to their new project/customer")
            }
            Err(e) => {
                tracing::warn!(offering = %ctx.name(), error = %e, "project hierarchy sync failed")
            }
        }
    }
    let offering_users = refreshed_offering_users(ctx).await;
    let accounts = ctx.accounts().await;
    let known = if ctx.config.preserve_unmanaged_backend_users {
        Some(known_site_usernames(ctx, &offering_users).await)
    } else {
        None
    };
    let known = known.as_ref();
    // Team members are matched to offering users by user UUID, thousands of times a cycle.
    let offering_users: HashMap<&str, &OfferingUser> = offering_users
        .iter()
        .map(|u| (u.user_uuid.as_str(), u))
        .collect();
    // Resources go through planning, writing and finishing in passes: what a pass holds (plans
    // with every grant, load files, sacctmgr output) stays bounded however large the offering,
    // at the cost of one write round per pass when there are more than a pass's worth.
    drop(views);
    let user_limits = OfferingUserLimits::default();
    let shared = PassContext {
        resources,
        infos: &infos,
        offering_users: &offering_users,
        accounts: &accounts,
        known,
        user_limits: &user_limits,
        full,
    };
    for start in (0..resources.len()).step_by(crate::ITEMS_PER_PASS) {
        let pass = start..(start + crate::ITEMS_PER_PASS).min(resources.len());
        sync_pass(ctx, backend, &shared, pass, cycle).await;
        if ctx.is_cancelled() {
            return;
        }
    }
}

/// What every pass of a membership cycle shares.
struct PassContext<'a> {
    resources: &'a [ProviderResource],
    infos: &'a BTreeMap<String, BackendResourceInfo>,
    offering_users: &'a HashMap<&'a str, &'a OfferingUser>,
    accounts: &'a AccountLists,
    known: Option<&'a BTreeSet<String>>,
    user_limits: &'a OfferingUserLimits,
    full: bool,
}

/// Plan, write (one `apply_membership` round) and finish `resources[pass]`.
async fn sync_pass(
    ctx: &OfferingContext,
    backend: &Arc<dyn MembershipBackend>,
    shared: &PassContext<'_>,
    pass: std::ops::Range<usize>,
    cycle: &mut CycleReport,
) {
    let PassContext {
        resources,
        infos,
        offering_users,
        accounts,
        known,
        user_limits,
        full,
    } = *shared;

    // Waldur reads (teams) of many resources at once, bounded as orders are. Futures are made
    // as the stream pulls them (a vector of a thousand ready-made ones held ~5 MB) and name
    // resources by index: closures over `&ProviderResource` would keep the cycle from being
    // `Send` (rustc's "FnOnce is not general enough").
    let concurrency = ctx.settings.order_concurrency.max(1);
    let planning = pass.filter_map(|i| {
        let resource = &resources[i];
        let view = resource_view(resource);
        let Some(info) = infos.get(&view.backend_id) else {
            tracing::warn!(resource = %resource.uuid, backend_id = %view.backend_id, "resource missing on the site");
            return None;
        };
        Some(
            async move {
                let plan =
                    plan_users(ctx, resource, view, info, offering_users, accounts, known).await;
                (i, plan)
            }
            .boxed(),
        )
    });
    let plans: Vec<(usize, CoreResult<UserPlan>)> =
        stream::iter(planning).buffered(concurrency).collect().await;
    if ctx.is_cancelled() {
        tracing::info!(offering = %ctx.name(), "shutting down: the rest of the membership cycle is left for the next run");
        return;
    }
    // The changes move out of the plans (a copy of every resource view would double the
    // cycle's largest allocation).
    let mut changes: Vec<MembershipChange> = Vec::with_capacity(plans.len());
    let mut account_changes: Vec<MembershipChange> = Vec::new();
    let mut members: Vec<(usize, PlannedMembers)> = Vec::with_capacity(plans.len());
    for (i, plan) in plans {
        match plan {
            Ok(mut plan) => {
                plan.change.apply_status = full;
                changes.push(plan.change);
                account_changes.extend(plan.accounts);
                members.push((i, plan.members));
            }
            Err(e) => fail_resource(ctx, &resources[i], e, full, cycle).await,
        }
    }
    let applied = backend.apply_membership(&changes).await;
    // Service/course accounts are best-effort: a failure never fails the resource.
    if !account_changes.is_empty() {
        let outcomes = backend.apply_membership(&account_changes).await;
        for (change, outcome) in account_changes.iter().zip(outcomes) {
            if let Err(e) = outcome {
                tracing::warn!(resource = %change.resource.uuid, error = %e, "cannot sync service/course accounts");
            }
        }
    }
    let finishing =
        members
            .into_iter()
            .zip(changes)
            .zip(applied)
            .map(|(((i, plan), change), outcome)| {
                let resource = &resources[i];
                async move {
                    if ctx.is_cancelled() {
                        return (i, None);
                    }
                    let result = match outcome {
                        Ok(added) => {
                            let view = change.resource;
                            let synced = plan.synced(added);
                            if full {
                                finish_one(
                                    ctx,
                                    backend,
                                    resource,
                                    &view,
                                    infos,
                                    synced,
                                    user_limits,
                                )
                                .await
                            } else {
                                Ok(())
                            }
                        }
                        Err(e) => Err(CoreError::Backend(e)),
                    };
                    (i, Some(result))
                }
                .boxed()
            });
    let finished: Vec<(usize, Option<CoreResult<()>>)> = stream::iter(finishing)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    if ctx.is_cancelled() {
        tracing::info!(offering = %ctx.name(), "shutting down: the rest of the membership cycle is left for the next run");
    }
    for (i, result) in finished {
        match result {
            None => {}
            Some(Ok(())) => cycle.ok(),
            Some(Err(e)) => fail_resource(ctx, &resources[i], e, full, cycle).await,
        }
    }
}

/// A resource's sync failed: set it erred (full sync, unless a retry can help) and record it.
async fn fail_resource(
    ctx: &OfferingContext,
    resource: &ProviderResource,
    e: CoreError,
    full: bool,
    cycle: &mut CycleReport,
) {
    if full && !e.is_transient() {
        let (message, traceback) = ctx.error_details(&e);
        if let Err(set_err) = ctx
            .client
            .set_resource_erred(&resource.uuid, &message, &traceback)
            .await
        {
            tracing::error!(resource = %resource.uuid, error = %set_err, "cannot set resource erred");
        }
    }
    tracing::error!(resource = %resource.uuid, error = %e, "membership sync failed");
    cycle.record(&format!("resource {}", resource.uuid), e);
}

/// `preserve_unmanaged_backend_users`: the usernames Waldur has ever known for the offering
/// (any state, restricted ones too). When that listing fails, only the users confirmed as
/// offering users this cycle count as Waldur's, so nobody unknown is removed on a guess.
async fn known_site_usernames(
    ctx: &OfferingContext,
    offering_users: &[OfferingUser],
) -> BTreeSet<String> {
    match crate::members::known_usernames(ctx).await {
        Ok(known) => known,
        Err(e) => {
            tracing::error!(offering = %ctx.name(), error = %e, "cannot list every offering user; only confirmed offering users are removed from the site this cycle");
            offering_users
                .iter()
                .filter_map(|u| u.username().map(str::to_owned))
                .collect()
        }
    }
}

/// After the site round: member statuses, metadata, limits, per-user limits, last sync and an
/// erred resource set back to OK, each written to Waldur only when it differs.
async fn finish_one(
    ctx: &OfferingContext,
    backend: &Arc<dyn MembershipBackend>,
    resource: &ProviderResource,
    view: &ResourceView,
    infos: &BTreeMap<String, BackendResourceInfo>,
    synced: SyncedUsers,
    user_limits: &OfferingUserLimits,
) -> CoreResult<()> {
    if let Some(statuses) = &synced.statuses {
        report_sync_statuses(ctx, resource, statuses).await;
    }
    let members = synced.members;
    let Some(info) = infos.get(&view.backend_id) else {
        return Ok(());
    };

    let metadata = backend.resource_metadata(view).await?;
    // Waldur keeps keys of its own next to ours: only a key of ours that differs is a change.
    let differs = metadata
        .iter()
        .any(|(key, value)| view.backend_metadata.get(key) != Some(value));
    if differs {
        ctx.client
            .set_resource_backend_metadata(&resource.uuid, &metadata)
            .await?;
    }

    // The site is the source of truth for limits, but only real differences are pushed: a
    // value that reads back equal (after unit rounding) is never echoed, so limits cannot creep.
    // Endpoints a Mastermind from 2024 lacks are skipped (logged once), never a reason to err
    // the resource: an erred resource refuses usage, so billing would stop.
    if !info.limits.is_empty() && info.limits != limits_from_amounts(&resource.limits) {
        optional(
            ctx,
            endpoint::SET_LIMITS,
            "site limits are not copied back to Waldur",
            Absence::Warn,
            ctx.client.set_resource_limits(&resource.uuid, &info.limits),
        )
        .await?;
    }

    if !view.restrict_member_access {
        sync_user_limits(ctx, backend, resource, view, &members, user_limits).await;
    }

    if last_sync_is_stale(resource.last_sync.as_deref()) {
        optional(
            ctx,
            endpoint::REFRESH_LAST_SYNC,
            "resources show no last sync time",
            Absence::Info,
            ctx.client.refresh_resource_last_sync(&resource.uuid),
        )
        .await?;
    }
    if resource.state == ResourceState::Erred {
        optional(
            ctx,
            endpoint::SET_AS_OK,
            "an erred resource stays erred after a good sync",
            Absence::Warn,
            ctx.client.set_resource_ok(&resource.uuid),
        )
        .await?;
    }
    Ok(())
}

/// Result of the team diff of one resource.
struct SyncedUsers {
    /// Site usernames that have access afterwards.
    members: BTreeSet<String>,
    /// Per-member statuses for `set_membership_sync_statuses`, when the offering asks for them.
    statuses: Option<Vec<Value>>,
}

/// What the site round must do for one resource, and what to report once it is done.
struct UserPlan {
    /// Team additions and removals (and the status flag, in a full sync).
    change: MembershipChange,
    /// Service/course accounts to add or remove, best-effort.
    accounts: Option<MembershipChange>,
    members: PlannedMembers,
}

/// What a plan needs after the site round.
struct PlannedMembers {
    /// Team members that have access already.
    existing: BTreeSet<String>,
    /// Team (member, site username) for the sync statuses, when the offering asks for them.
    statuses: Option<Vec<(waldur_client::ProjectUser, Option<String>)>>,
    restricted: bool,
}

impl PlannedMembers {
    /// The members after the site round granted `added`.
    fn synced(self, added: Vec<String>) -> SyncedUsers {
        if self.restricted {
            return SyncedUsers {
                members: BTreeSet::new(),
                statuses: self.statuses.map(|_| Vec::new()),
            };
        }
        let mut members = self.existing;
        members.extend(added);
        let statuses = self.statuses.map(|team| {
            team.iter()
                .map(|(member, username)| member_status(member, username.as_deref(), &members))
                .collect()
        });
        SyncedUsers { members, statuses }
    }
}

/// Team diff for one resource, and its service and course accounts, against the site users
/// read at the start of the cycle (no site call). `known`: with
/// `preserve_unmanaged_backend_users`, the usernames Waldur knows; site users outside it stay.
async fn plan_users(
    ctx: &OfferingContext,
    resource: &ProviderResource,
    view: ResourceView,
    info: &BackendResourceInfo,
    offering_users: &HashMap<&str, &OfferingUser>,
    accounts: &AccountLists,
    known: Option<&BTreeSet<String>>,
) -> CoreResult<UserPlan> {
    let team = ctx
        .team(
            &resource.uuid,
            resource.project_uuid.as_deref().unwrap_or_default(),
        )
        .await?;
    let local: BTreeSet<String> = info.users.iter().cloned().collect();
    let mut grants: BTreeMap<String, UserGrant> = BTreeMap::new();
    // Site username of each team member, in team order (for the sync statuses).
    let mut member_usernames: Vec<Option<String>> = Vec::with_capacity(team.len());
    for member in team.iter() {
        let ou = offering_users.get(member.uuid.as_str()).copied();
        // The same rule as a Create's (see `members::site_username`).
        let username = crate::members::site_username(member, ou);
        if let Some(username) = &username {
            let grant = user_grant(member, ou, username, ctx.grant_attributes(ou));
            grants.insert(username.clone(), grant);
        }
        member_usernames.push(username);
    }
    let project = resource.project_uuid.clone().unwrap_or_default();
    let active_accounts: BTreeSet<String> =
        accounts.usernames(&project, "OK").into_iter().collect();
    let closed_accounts: BTreeSet<String> = accounts
        .usernames(&project, "Closed")
        .into_iter()
        .filter(|u| !active_accounts.contains(u) && !grants.contains_key(u))
        .collect();
    let team_names: BTreeSet<String> = grants.keys().cloned().collect();
    let existing: BTreeSet<String> = team_names.intersection(&local).cloned().collect();
    // Stale = site users − team (not intersected with offering users: people who left every
    // project must lose access too). Active service/course accounts are not team members but
    // belong there.
    let mut stale: Vec<String> = local
        .difference(&team_names)
        .filter(|u| !active_accounts.contains(*u))
        .cloned()
        .collect();
    if let Some(known) = known {
        let (managed, unmanaged): (Vec<String>, Vec<String>) =
            stale.into_iter().partition(|u| known.contains(u));
        if !unmanaged.is_empty() {
            tracing::info!(resource = %resource.uuid, users = %unmanaged.join(", "), "preserving site users Waldur never knew (preserve_unmanaged_backend_users)");
        }
        stale = managed;
    }
    let wants_statuses = truthy(
        resource
            .offering_plugin_options
            .get("enable_membership_sync_status"),
    );
    let restricted = view.restrict_member_access;
    let closed_present: Vec<String> = closed_accounts.intersection(&local).cloned().collect();
    let missing_accounts: Vec<UserGrant> = if restricted {
        Vec::new()
    } else {
        active_accounts
            .iter()
            .filter(|u| !local.contains(*u))
            .map(|username| UserGrant {
                username: username.clone(),
                ..UserGrant::default()
            })
            .collect()
    };
    let accounts_change =
        (!closed_present.is_empty() || !missing_accounts.is_empty()).then(|| MembershipChange {
            resource: view.clone(),
            add: missing_accounts,
            remove: closed_present,
            apply_status: false,
        });
    let (add, remove) = if restricted {
        (Vec::new(), existing.iter().cloned().collect())
    } else {
        let new: Vec<UserGrant> = grants
            .iter()
            .filter(|(name, _)| !local.contains(*name))
            .map(|(_, g)| g.clone())
            .collect();
        (new, stale)
    };
    Ok(UserPlan {
        change: MembershipChange {
            resource: view,
            add,
            remove,
            apply_status: false,
        },
        accounts: accounts_change,
        members: PlannedMembers {
            existing,
            statuses: wants_statuses.then(|| team.iter().cloned().zip(member_usernames).collect()),
            restricted,
        },
    })
}

/// One entry of `set_membership_sync_statuses` (waldur-api: scope_type, role_name, state, …).
fn member_status(
    member: &waldur_client::ProjectUser,
    username: Option<&str>,
    members: &BTreeSet<String>,
) -> Value {
    let (state, message) = match username {
        None => ("pending", "the user has no site username yet".to_owned()),
        Some(name) if members.contains(name) => ("synced", String::new()),
        Some(name) => (
            "error",
            format!("'{name}' was not granted access on the site"),
        ),
    };
    let mut status = json!({
        "scope_type": "resource",
        "role_name": member.role,
        "state": state,
        "user_uuid": member.uuid,
        "username": member.username,
    });
    if !message.is_empty() {
        status["message"] = Value::String(message);
    }
    status
}

/// Full replace of a resource's member statuses; best-effort (a 409 means the offering does not
/// accept them: logged once).
async fn report_sync_statuses(
    ctx: &OfferingContext,
    resource: &ProviderResource,
    statuses: &[Value],
) {
    if ctx
        .features
        .is_missing(endpoint::SET_MEMBERSHIP_SYNC_STATUSES)
    {
        return;
    }
    match ctx
        .client
        .set_membership_sync_statuses(&resource.uuid, statuses)
        .await
    {
        Ok(result) if !result.skipped.is_empty() => {
            tracing::info!(resource = %resource.uuid, skipped = ?result.skipped, "Waldur skipped some membership statuses");
        }
        Ok(_) => {}
        Err(e) if e.is_missing_route() => crate::features::note_missing(
            ctx,
            endpoint::SET_MEMBERSHIP_SYNC_STATUSES,
            "per-member sync statuses are not reported",
            Absence::Info,
        ),
        Err(e) if e.status == Some(409) || e.is_not_found() => {
            if !ctx.sync_statuses_refused.swap(true, Ordering::Relaxed) {
                tracing::warn!(offering = %ctx.name(), error = %e, "Waldur does not accept membership sync statuses for this offering");
            }
        }
        Err(e) => {
            tracing::warn!(resource = %resource.uuid, error = %e, "cannot report membership sync statuses");
        }
    }
}

/// The site username a per-user limit applies to: the `username` the server sends, else the
/// offering user behind the `user` link, else `user` itself (older servers sent a username there).
fn limit_username(
    limit: &waldur_client::ComponentUserUsageLimit,
    offering_users: &[OfferingUser],
) -> Option<String> {
    if let Some(name) = limit
        .username
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        return offering_users
            .iter()
            .find(|u| u.user_username == name)
            .and_then(|u| u.username().map(str::to_owned))
            .or_else(|| Some(name.to_owned()));
    }
    let user = limit.user.trim();
    if user.starts_with("http://") || user.starts_with("https://") {
        let uuid = waldur_client::uuid_from_url(user)?;
        return offering_users
            .iter()
            .find(|u| u.user_uuid == uuid)
            .and_then(|u| u.username().map(str::to_owned));
    }
    Some(user.to_owned()).filter(|u| !u.is_empty())
}

/// The offering's per-user limits, read once per cycle (one paged listing instead of one per
/// resource) when the first resource whose site has per-user limits asks, grouped by resource.
#[derive(Default)]
struct OfferingUserLimits(tokio::sync::OnceCell<UserLimitListing>);

enum UserLimitListing {
    /// The server has no per-user limits (a Mastermind from 2024).
    Absent,
    /// Resource UUID → its limits.
    Grouped(BTreeMap<String, Vec<ComponentUserUsageLimit>>),
    /// An entry named no resource we can tell: resources read their own this cycle.
    Unusable,
    /// The listing failed (logged once); per-user limits wait for the next cycle.
    Failed,
}

impl OfferingUserLimits {
    /// The Waldur limits of one resource; `Ok(None)`: not to be synced now (the server has no
    /// such endpoint, or the offering's listing failed).
    async fn of(
        &self,
        ctx: &OfferingContext,
        resource: &ProviderResource,
    ) -> Result<Option<Vec<ComponentUserUsageLimit>>, waldur_client::WaldurError> {
        let listing = self
            .0
            .get_or_init(|| async {
                let all = match optional_limits(
                    ctx,
                    ctx.client.list_offering_user_usage_limits(&ctx.offering_uuid),
                )
                .await
                {
                    Ok(Some(all)) => all,
                    Ok(None) => return UserLimitListing::Absent,
                    Err(e) => {
                        tracing::warn!(offering = %ctx.name(), error = %e, "cannot read Waldur per-user limits; they are synced next cycle");
                        return UserLimitListing::Failed;
                    }
                };
                let mut grouped: BTreeMap<String, Vec<ComponentUserUsageLimit>> = BTreeMap::new();
                for limit in all {
                    let Some(uuid) = limit.resource_uuid() else {
                        tracing::warn!(offering = %ctx.name(), resource = %limit.resource, "a per-user limit names no resource UUID; reading limits per resource this cycle");
                        return UserLimitListing::Unusable;
                    };
                    grouped.entry(uuid).or_default().push(limit);
                }
                UserLimitListing::Grouped(grouped)
            })
            .await;
        match listing {
            UserLimitListing::Absent | UserLimitListing::Failed => Ok(None),
            UserLimitListing::Grouped(map) => {
                Ok(Some(map.get(&resource.uuid).cloned().unwrap_or_default()))
            }
            UserLimitListing::Unusable => {
                optional_limits(
                    ctx,
                    ctx.client.list_component_user_usage_limits(&resource.uuid),
                )
                .await
            }
        }
    }
}

/// A per-user limit listing, skipped (logged once) on a Mastermind without the endpoint.
async fn optional_limits(
    ctx: &OfferingContext,
    call: impl std::future::Future<
        Output = Result<Vec<ComponentUserUsageLimit>, waldur_client::WaldurError>,
    >,
) -> Result<Option<Vec<ComponentUserUsageLimit>>, waldur_client::WaldurError> {
    optional(
        ctx,
        endpoint::USER_USAGE_LIMITS,
        "per-user limits are not synced",
        Absence::Info,
        call,
    )
    .await
}

async fn sync_user_limits(
    ctx: &OfferingContext,
    backend: &Arc<dyn MembershipBackend>,
    resource: &ProviderResource,
    view: &ResourceView,
    members: &BTreeSet<String>,
    offering_limits: &OfferingUserLimits,
) {
    let site = match backend.user_limits(view).await {
        Ok(l) => l,
        Err(BackendError::Unsupported { .. }) => {
            // The site has no per-user limits: nothing to read from Waldur either.
            tracing::debug!(resource = %resource.uuid, "backend has no per-user limits");
            return;
        }
        Err(e) => {
            tracing::warn!(resource = %resource.uuid, error = %e, "cannot read per-user limits");
            return;
        }
    };
    let waldur = match offering_limits.of(ctx, resource).await {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(resource = %resource.uuid, error = %e, "cannot read Waldur per-user limits");
            return;
        }
    };
    let offering_users = ctx.offering_users().await.unwrap_or_default();
    let bounds = crate::limits::bounds(&resource.offering_components);
    let mut wanted: BTreeMap<String, backend_api::Limits> = BTreeMap::new();
    // A limit we cannot attribute to a site user must not make us clear anyone's limits.
    let mut unattributed = false;
    // Users with a refused limit keep the limits they have on the site.
    let mut refused: BTreeSet<String> = BTreeSet::new();
    for limit in waldur {
        let Some(value) = limit.limit else { continue };
        match limit_username(&limit, &offering_users) {
            Some(username) => {
                let component = limit.component_type.clone();
                let own = bounds.get(&component).copied().unwrap_or_default();
                if let Err(e) = backend_api::units::check_limit(&component, value, own) {
                    tracing::error!(resource = %resource.uuid, user = %username, error = %e, "per-user limit refused; the user's site limits stay as they are");
                    refused.insert(username);
                    continue;
                }
                wanted.entry(username).or_default().insert(component, value);
            }
            None => {
                unattributed = true;
                tracing::warn!(resource = %resource.uuid, user = %limit.user, "per-user limit for a user without a site username; skipped");
            }
        }
    }
    for username in members.iter().filter(|u| !refused.contains(*u)) {
        let target = wanted.get(username);
        let current = site.get(username);
        let change = match (target, current) {
            (Some(t), c) if Some(t) != c => Some(t.clone()),
            (None, Some(c)) if !c.is_empty() && !unattributed => Some(backend_api::Limits::new()),
            _ => None,
        };
        if let Some(limits) = change {
            if let Err(e) = backend.set_user_limits(view, username, &limits).await {
                tracing::warn!(resource = %resource.uuid, user = %username, error = %e, "cannot set per-user limits");
            }
        }
    }
}

/// Upstream 1.0.8's resource status pass (event mode, every
/// `WALDUR_SITE_AGENT_RESOURCE_STATUS_RECONCILIATION_MINUTES`): re-apply every resource's
/// paused / downscaled / restored status, in case its `resource` message was lost or failed.
/// Every resource is re-read first (a message handled meanwhile is not overwritten with the
/// listing's older flags), then all flags go to the site in one round; one failure is logged
/// and the rest still run; it never sets a resource erred.
pub async fn reconcile_resource_statuses(ctx: &OfferingContext) -> CycleReport {
    let this_run = ctx.new_run();
    let ctx = &this_run;
    let mut cycle = CycleReport::new(ctx.name());
    let backend = match backend(ctx) {
        Ok(b) => b,
        Err(e) => {
            cycle.record("membership", e);
            return cycle;
        }
    };
    let listed = match handled_resources(ctx, &backend, None).await {
        Ok(r) => r,
        Err(e) => {
            cycle.record("list resources", e);
            return cycle;
        }
    };
    let handled = backend.capabilities().handled_resource_states.clone();
    let mut changes: Vec<MembershipChange> = Vec::new();
    for listed in listed {
        if ctx.is_cancelled() {
            return cycle;
        }
        match ctx
            .client
            .get_resource(&listed.uuid, MEMBERSHIP_RESOURCE_FIELDS)
            .await
        {
            Ok(fresh)
                if handled.contains(&fresh.state.as_str().to_owned())
                    && !fresh.backend_id.trim().is_empty() =>
            {
                changes.push(MembershipChange {
                    resource: resource_view(&fresh),
                    apply_status: true,
                    ..MembershipChange::default()
                });
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(resource = %listed.uuid, error = %e, "cannot re-read the resource; its status is re-applied next pass");
                cycle.record(&format!("resource {}", listed.uuid), e);
            }
        }
    }
    // One site round for every resource's flag.
    let outcomes = backend.apply_membership(&changes).await;
    for (change, outcome) in changes.iter().zip(outcomes) {
        match outcome {
            Ok(_) => cycle.ok(),
            Err(e) => {
                tracing::warn!(resource = %change.resource.uuid, error = %e, "cannot re-apply the resource's status; next pass");
                cycle.record(&format!("resource {}", change.resource.uuid), e);
            }
        }
    }
    cycle
}

/// Event: a project role was granted or revoked for one user. `role_name` (e.g.
/// `PROJECT.MEMBER`) reaches the backend as [`UserGrant::role`].
pub async fn process_user_role_changed(
    ctx: &OfferingContext,
    user_uuid: &str,
    project_uuid: &str,
    granted: bool,
    role_name: Option<&str>,
) -> CycleReport {
    let this_run = ctx.new_run();
    let ctx = &this_run;
    let mut cycle = CycleReport::new(ctx.name());
    let result = async {
        let backend = backend(ctx)?;
        let users = ctx.offering_users().await?;
        let user_uuid = waldur_client::normalize_uuid(user_uuid);
        let Some(ou) = users.iter().find(|u| u.user_uuid == user_uuid).cloned() else {
            return Ok(());
        };
        let mut ou = ou;
        if ou.username().is_none()
            && usernames::update_offering_users(ctx, std::slice::from_ref(&ou)).await?
        {
            ctx.invalidate_offering_users().await;
            if let Some(fresh) = ctx
                .offering_users()
                .await?
                .iter()
                .find(|u| u.user_uuid == user_uuid)
            {
                ou = fresh.clone();
            }
        }
        let Some(username) = ou.username().map(str::to_owned) else {
            return Ok(());
        };
        let resources = handled_resources(ctx, &backend, Some(project_uuid)).await?;
        let grant = UserGrant {
            username: username.clone(),
            waldur_username: Some(ou.user_username.clone()),
            email: ou.user_email.clone(),
            full_name: ou.user_full_name.clone(),
            attributes: ctx.grant_attributes(Some(&ou)),
            role: role_name
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
        };
        // Every resource of the project in one site round.
        let changes: Vec<MembershipChange> = resources
            .iter()
            .map(resource_view)
            .filter(|view| !(granted && view.restrict_member_access))
            .map(|view| MembershipChange {
                resource: view,
                add: if granted {
                    vec![grant.clone()]
                } else {
                    Vec::new()
                },
                remove: if granted {
                    Vec::new()
                } else {
                    vec![username.clone()]
                },
                apply_status: false,
            })
            .collect();
        record_outcomes(
            &mut cycle,
            &changes,
            backend.apply_membership(&changes).await,
        );
        Ok::<_, CoreError>(())
    }
    .await;
    if let Err(e) = result {
        cycle.record("user role change", e);
    }
    cycle
}

/// Each change's outcome into the cycle report.
fn record_outcomes(
    cycle: &mut CycleReport,
    changes: &[MembershipChange],
    outcomes: Vec<backend_api::BackendResult<Vec<String>>>,
) {
    for (change, outcome) in changes.iter().zip(outcomes) {
        match outcome {
            Ok(_) => cycle.ok(),
            Err(e) => cycle.record(&format!("resource {}", change.resource.uuid), e),
        }
    }
}

/// Event: re-sync the team of every resource of a project (no status or limits).
pub async fn process_project_user_sync(ctx: &OfferingContext, project_uuid: &str) -> CycleReport {
    let this_run = ctx.new_run();
    let ctx = &this_run;
    let mut cycle = CycleReport::new(ctx.name());
    match backend(ctx) {
        Ok(backend) => match handled_resources(ctx, &backend, Some(project_uuid)).await {
            Ok(resources) => sync_resources(ctx, &backend, &resources, false, &mut cycle).await,
            Err(e) => cycle.record("list resources", e),
        },
        Err(e) => cycle.record("membership", e),
    }
    cycle
}

/// Event: full sync of one resource (users, status, limits, last sync).
pub async fn process_resource_by_uuid(ctx: &OfferingContext, resource_uuid: &str) -> CycleReport {
    let this_run = ctx.new_run();
    let ctx = &this_run;
    let mut cycle = CycleReport::new(ctx.name());
    let result = async {
        let backend = backend(ctx)?;
        let resource = ctx
            .client
            .get_resource(resource_uuid, MEMBERSHIP_RESOURCE_FIELDS)
            .await?;
        let handled = backend
            .capabilities()
            .handled_resource_states
            .contains(&resource.state.as_str().to_owned());
        if !handled || resource.backend_id.trim().is_empty() {
            return Ok(());
        }
        sync_resources(ctx, &backend, &[resource], true, &mut cycle).await;
        Ok::<_, CoreError>(())
    }
    .await;
    if let Err(e) = result {
        cycle.record(&format!("resource {resource_uuid}"), e);
    }
    cycle
}

/// Event: an offering user got a username; give it access to the listed resources (by backend
/// id) of its projects, skipping restricted ones. Upstream's `username_set` handler.
pub async fn process_username_set(
    ctx: &OfferingContext,
    offering_user_uuid: &str,
    resource_backend_ids: &[String],
) -> CycleReport {
    let mut cycle = CycleReport::new(ctx.name());
    let result = async {
        let backend = backend(ctx)?;
        let ou = ctx.client.get_offering_user(offering_user_uuid).await?;
        let Some(username) = ou.username().map(str::to_owned) else {
            return Ok(());
        };
        let resources = handled_resources(ctx, &backend, None).await?;
        let grant = UserGrant {
            username: username.clone(),
            waldur_username: Some(ou.user_username.clone()),
            email: ou.user_email.clone(),
            full_name: ou.user_full_name.clone(),
            attributes: ctx.grant_attributes(Some(&ou)),
            role: None,
        };
        let changes: Vec<MembershipChange> = resources
            .iter()
            .filter(|r| {
                resource_backend_ids
                    .iter()
                    .any(|id| id == r.backend_id.trim())
            })
            .map(resource_view)
            .filter(|view| !view.restrict_member_access)
            .map(|view| MembershipChange {
                resource: view,
                add: vec![grant.clone()],
                ..MembershipChange::default()
            })
            .collect();
        record_outcomes(
            &mut cycle,
            &changes,
            backend.apply_membership(&changes).await,
        );
        Ok::<_, CoreError>(())
    }
    .await;
    if let Err(e) = result {
        cycle.record("username set", e);
    }
    cycle
}

/// Event `offering_resources_sync` (forced sync): recreate resources the site lost, with the
/// same backend ids; then a full membership sync; then the order cycle. Each part runs when the
/// offering has the backend for it, and a failing part does not stop the next.
pub async fn process_offering_resources_sync(ctx: &OfferingContext) -> CycleReport {
    let this_run = ctx.new_run();
    let ctx = &this_run;
    let mut cycle = CycleReport::new(ctx.name());
    if let Some(membership) = ctx.backends.membership.clone() {
        cycle.merge(recreate_missing_resources(ctx, &membership).await);
        cycle.merge(membership_sync(ctx).await);
    }
    if ctx.backends.orders.is_some() {
        cycle.merge(crate::orders::order_process(ctx).await);
    }
    cycle
}

/// Resources Waldur has (with a backend id) that the site lacks are created again with the same
/// id and their Waldur limits; users come with the membership sync that follows. A resource
/// that cannot be recreated is set erred. Nothing is recreated when the site cannot be read.
pub async fn recreate_missing_resources(
    ctx: &OfferingContext,
    membership: &Arc<dyn MembershipBackend>,
) -> CycleReport {
    let mut cycle = CycleReport::new(ctx.name());
    let Some(orders) = ctx.backends.orders.clone() else {
        tracing::info!(offering = %ctx.name(), "no order_processing_backend; missing resources are not recreated");
        return cycle;
    };
    let resources = match handled_resources(ctx, membership, None).await {
        Ok(resources) => resources,
        Err(e) => {
            cycle.record("list resources", e);
            return cycle;
        }
    };
    if resources.is_empty() {
        return cycle;
    }
    let views: Vec<ResourceView> = resources.iter().map(resource_view).collect();
    let present = match membership.pull_resources(&views).await {
        Ok(present) => present,
        Err(e) => {
            cycle.record("pull resources", e);
            return cycle;
        }
    };
    for view in views
        .iter()
        .filter(|v| !present.contains_key(&v.backend_id))
    {
        tracing::warn!(resource = %view.uuid, backend_id = %view.backend_id, "resource missing on the site; recreating it");
        let request = CreateRequest {
            resource: view.clone(),
            backend_id: view.backend_id.clone(),
            context: UserContext::default(),
        };
        match orders.create_resource(request).await {
            // Someone created it in between: it is there, which is all we want.
            Ok(_) | Err(BackendError::Duplicate { .. }) => cycle.ok(),
            Err(e) => {
                let error = CoreError::Backend(e);
                if !error.is_transient() {
                    let (message, traceback) = ctx.error_details(&error);
                    if let Err(set_err) = ctx
                        .client
                        .set_resource_erred(&view.uuid, &message, &traceback)
                        .await
                    {
                        tracing::error!(resource = %view.uuid, error = %set_err, "cannot set resource erred");
                    }
                }
                cycle.record(&format!("resource {}", view.uuid), error);
            }
        }
    }
    cycle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_sync_is_refreshed_only_when_older_than_an_hour_or_unknown() {
        let now = jiff::Timestamp::now();
        let ago = |secs: i64| {
            now.checked_sub(jiff::SignedDuration::from_secs(secs))
                .expect("timestamp")
                .to_string()
        };
        assert!(!last_sync_is_stale(Some(&ago(60))));
        assert!(last_sync_is_stale(Some(&ago(2 * 3600))));
        assert!(last_sync_is_stale(None));
        assert!(last_sync_is_stale(Some("not a time")));
    }
}
