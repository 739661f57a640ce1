//! `membership_sync` (agent-behaviour §3.3) and the event entry points that share its code.
//!
//! Per resource: team diff (add new members, remove stale = site users − team), status flags
//! (pause / downscale / restore), backend metadata and limits back to Waldur (only when they
//! differ), per-user limits, `refresh_last_sync`, and an erred resource set back to OK. A failure
//! sets that resource erred (unless transient) and the loop goes on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use backend_api::{BackendResourceInfo, MembershipBackend, ResourceView, UserGrant};
use waldur_client::{
    OfferingUser, OfferingUserState, ProviderResource, ResourceFilter, ResourceState,
};

use crate::context::OfferingContext;
use crate::convert::{limits_from_amounts, resource_view, user_grant};
use crate::error::{CoreError, CoreResult, CycleReport};
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
];

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
        if !pending.is_empty() && usernames::update_offering_users(ctx, &pending).await? {
            ctx.invalidate_offering_users().await;
            return ctx.offering_users().await;
        }
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

/// Full membership cycle for the offering.
pub async fn membership_sync(ctx: &OfferingContext) -> CycleReport {
    ctx.begin_cycle().await;
    let mut cycle = CycleReport::new(ctx.name());
    let backend = match backend(ctx) {
        Ok(b) => b,
        Err(e) => {
            cycle.fail("membership", e);
            return cycle;
        }
    };
    match handled_resources(ctx, &backend, None).await {
        Ok(resources) => sync_resources(ctx, &backend, resources, true, &mut cycle).await,
        Err(e) => cycle.fail("list resources", e),
    }
    cycle
}

async fn sync_resources(
    ctx: &OfferingContext,
    backend: &Arc<dyn MembershipBackend>,
    resources: Vec<ProviderResource>,
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
            cycle.fail("pull resources", e);
            return;
        }
    };
    let offering_users = refreshed_offering_users(ctx).await;
    for (resource, view) in resources.iter().zip(views.iter()) {
        let Some(info) = infos.get(&view.backend_id) else {
            tracing::warn!(resource = %resource.uuid, backend_id = %view.backend_id, "resource missing on the site");
            continue;
        };
        let result = if full {
            sync_one(ctx, backend, resource, view, info, &offering_users).await
        } else {
            sync_users(ctx, backend, resource, view, info, &offering_users)
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) => cycle.ok(),
            Err(e) => {
                if full && !e.is_transient() {
                    let message = ctx.error_message(&e);
                    if let Err(set_err) = ctx
                        .client
                        .set_resource_erred(&resource.uuid, &message, "")
                        .await
                    {
                        tracing::error!(resource = %resource.uuid, error = %set_err, "cannot set resource erred");
                    }
                }
                tracing::error!(resource = %resource.uuid, error = %e, "membership sync failed");
                cycle.fail(&format!("resource {}", resource.uuid), e);
            }
        }
    }
}

async fn sync_one(
    ctx: &OfferingContext,
    backend: &Arc<dyn MembershipBackend>,
    resource: &ProviderResource,
    view: &ResourceView,
    info: &BackendResourceInfo,
    offering_users: &[OfferingUser],
) -> CoreResult<()> {
    let members = sync_users(ctx, backend, resource, view, info, offering_users).await?;

    // Status flags; restore is called every cycle and must be cheap on the backend side.
    if view.paused {
        backend.pause(view).await?;
    } else if view.downscaled {
        backend.downscale(view).await?;
    } else {
        backend.restore(view).await?;
    }

    let metadata = backend.resource_metadata(view).await?;
    if metadata != view.backend_metadata {
        ctx.client
            .set_resource_backend_metadata(&resource.uuid, &metadata)
            .await?;
    }

    // The site is the source of truth for limits, but only real differences are pushed: a
    // value that reads back equal (after unit rounding) is never echoed, so limits cannot creep.
    if !info.limits.is_empty() && info.limits != limits_from_amounts(&resource.limits) {
        ctx.client
            .set_resource_limits(&resource.uuid, &info.limits)
            .await?;
    }

    if !view.restrict_member_access {
        sync_user_limits(ctx, backend, resource, view, &members).await;
    }

    ctx.client
        .refresh_resource_last_sync(&resource.uuid)
        .await?;
    if resource.state == ResourceState::Erred {
        ctx.client.set_resource_ok(&resource.uuid).await?;
    }
    Ok(())
}

/// Team diff for one resource. Returns the usernames that have access afterwards.
async fn sync_users(
    ctx: &OfferingContext,
    backend: &Arc<dyn MembershipBackend>,
    resource: &ProviderResource,
    view: &ResourceView,
    info: &BackendResourceInfo,
    offering_users: &[OfferingUser],
) -> CoreResult<BTreeSet<String>> {
    let team = ctx
        .team(
            &resource.uuid,
            resource.project_uuid.as_deref().unwrap_or_default(),
        )
        .await?;
    let local: BTreeSet<String> = info.users.iter().cloned().collect();
    let mut grants: BTreeMap<String, UserGrant> = BTreeMap::new();
    for member in team.iter() {
        let ou = offering_users.iter().find(|u| u.user_uuid == member.uuid);
        let username = ou
            .filter(|u| u.state == OfferingUserState::Ok)
            .and_then(|u| u.username().map(str::to_owned))
            .or_else(|| {
                member
                    .offering_user_username
                    .clone()
                    .filter(|u| !u.trim().is_empty())
            });
        if let Some(username) = username {
            grants.insert(username.clone(), user_grant(member, ou, &username));
        }
    }
    let team_names: BTreeSet<String> = grants.keys().cloned().collect();
    let existing: BTreeSet<String> = team_names.intersection(&local).cloned().collect();
    // Stale = site users − team (not intersected with offering users: people who left every
    // project must lose access too).
    let stale: Vec<String> = local.difference(&team_names).cloned().collect();

    if view.restrict_member_access {
        let all: Vec<String> = existing.iter().cloned().collect();
        if !all.is_empty() {
            backend.remove_users(view, &all).await?;
        }
        return Ok(BTreeSet::new());
    }
    let new: Vec<UserGrant> = grants
        .iter()
        .filter(|(name, _)| !local.contains(*name))
        .map(|(_, g)| g.clone())
        .collect();
    let mut members = existing;
    if !new.is_empty() {
        members.extend(backend.add_users(view, &new).await?);
    }
    if !stale.is_empty() {
        backend.remove_users(view, &stale).await?;
    }
    Ok(members)
}

async fn sync_user_limits(
    ctx: &OfferingContext,
    backend: &Arc<dyn MembershipBackend>,
    resource: &ProviderResource,
    view: &ResourceView,
    members: &BTreeSet<String>,
) {
    let site = match backend.user_limits(view).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(resource = %resource.uuid, error = %e, "cannot read per-user limits");
            return;
        }
    };
    let waldur = match ctx
        .client
        .list_component_user_usage_limits(&resource.uuid)
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(resource = %resource.uuid, error = %e, "cannot read Waldur per-user limits");
            return;
        }
    };
    let mut wanted: BTreeMap<String, backend_api::Limits> = BTreeMap::new();
    for limit in waldur {
        if let Some(value) = limit.limit {
            wanted
                .entry(limit.user.clone())
                .or_default()
                .insert(limit.component_type.clone(), value as i64);
        }
    }
    for username in members {
        let target = wanted.get(username);
        let current = site.get(username);
        let change = match (target, current) {
            (Some(t), c) if Some(t) != c => Some(t.clone()),
            (None, Some(c)) if !c.is_empty() => Some(backend_api::Limits::new()),
            _ => None,
        };
        if let Some(limits) = change {
            if let Err(e) = backend.set_user_limits(view, username, &limits).await {
                tracing::warn!(resource = %resource.uuid, user = %username, error = %e, "cannot set per-user limits");
            }
        }
    }
}

/// Event: a project role was granted or revoked for one user.
pub async fn process_user_role_changed(
    ctx: &OfferingContext,
    user_uuid: &str,
    project_uuid: &str,
    granted: bool,
) -> CycleReport {
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
        for resource in &resources {
            let view = resource_view(resource);
            let outcome = if granted {
                if view.restrict_member_access {
                    continue;
                }
                let grant = UserGrant {
                    username: username.clone(),
                    waldur_username: Some(ou.user_username.clone()),
                    email: ou.user_email.clone(),
                    full_name: ou.user_full_name.clone(),
                    attributes: crate::convert::user_attributes(&ou),
                    role: None,
                };
                backend.add_users(&view, &[grant]).await.map(|_| ())
            } else {
                backend
                    .remove_users(&view, std::slice::from_ref(&username))
                    .await
                    .map(|_| ())
            };
            match outcome {
                Ok(()) => cycle.ok(),
                Err(e) => cycle.fail(&format!("resource {}", resource.uuid), e),
            }
        }
        Ok::<_, CoreError>(())
    }
    .await;
    if let Err(e) = result {
        cycle.fail("user role change", e);
    }
    cycle
}

/// Event: re-sync the team of every resource of a project (no status or limits).
pub async fn process_project_user_sync(ctx: &OfferingContext, project_uuid: &str) -> CycleReport {
    ctx.begin_cycle().await;
    let mut cycle = CycleReport::new(ctx.name());
    match backend(ctx) {
        Ok(backend) => match handled_resources(ctx, &backend, Some(project_uuid)).await {
            Ok(resources) => sync_resources(ctx, &backend, resources, false, &mut cycle).await,
            Err(e) => cycle.fail("list resources", e),
        },
        Err(e) => cycle.fail("membership", e),
    }
    cycle
}

/// Event: full sync of one resource (users, status, limits, last sync).
pub async fn process_resource_by_uuid(ctx: &OfferingContext, resource_uuid: &str) -> CycleReport {
    ctx.begin_cycle().await;
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
        sync_resources(ctx, &backend, vec![resource], true, &mut cycle).await;
        Ok::<_, CoreError>(())
    }
    .await;
    if let Err(e) = result {
        cycle.fail(&format!("resource {resource_uuid}"), e);
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
        for resource in resources.iter().filter(|r| {
            resource_backend_ids
                .iter()
                .any(|id| id == r.backend_id.trim())
        }) {
            let view = resource_view(resource);
            if view.restrict_member_access {
                continue;
            }
            let grant = UserGrant {
                username: username.clone(),
                waldur_username: Some(ou.user_username.clone()),
                email: ou.user_email.clone(),
                full_name: ou.user_full_name.clone(),
                attributes: crate::convert::user_attributes(&ou),
                role: None,
            };
            match backend.add_users(&view, &[grant]).await {
                Ok(_) => cycle.ok(),
                Err(e) => cycle.fail(&format!("resource {}", resource.uuid), e),
            }
        }
        Ok::<_, CoreError>(())
    }
    .await;
    if let Err(e) = result {
        cycle.fail("username set", e);
    }
    cycle
}
