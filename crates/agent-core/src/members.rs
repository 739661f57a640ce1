//! Who has access on the site, one rule for Create and membership sync, and what to do with
//! offering users Waldur wants gone (upstream 1.0.8).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use backend_api::{BackendResourceInfo, MembershipBackend, ResourceView};
use waldur_client::{OfferingUser, OfferingUserFilter, OfferingUserState, ProjectUser};

use crate::context::OfferingContext;
use crate::error::CycleReport;
use crate::features::{Absence, endpoint, note_missing};

/// The site username a team member has access under:
/// - their offering user (listed for the offering), when it is OK — or when the server has no
///   offering-user states at all (Mastermind 2024) — and has a username;
/// - nobody when that offering user is in any other state (still being created, or leaving);
/// - without an offering user in the list, the team's `offering_user_username`, when the team
///   says it is OK or says nothing (Mastermind 2024).
pub fn site_username(member: &ProjectUser, offering_user: Option<&OfferingUser>) -> Option<String> {
    let blank_to_none = |u: Option<&str>| {
        u.map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
    };
    match offering_user {
        Some(ou) if has_access(&ou.state) => blank_to_none(ou.username()),
        Some(_) => None,
        None => match &member.offering_user_state {
            None => blank_to_none(member.offering_user_username.as_deref()),
            Some(state) if has_access(state) => {
                blank_to_none(member.offering_user_username.as_deref())
            }
            Some(_) => None,
        },
    }
}

/// OK, or no state at all: a server without offering-user states (2024) sends none, and its
/// offering users with a username are the ones with an account.
fn has_access(state: &OfferingUserState) -> bool {
    match state {
        OfferingUserState::Ok => true,
        OfferingUserState::Unknown(s) => s.is_empty(),
        _ => false,
    }
}

/// States in which Waldur asks the provider to tear an account down (upstream 1.0.8's
/// `DEPARTED_OFFERING_USER_STATES`).
pub const DEPARTED: [OfferingUserState; 3] = [
    OfferingUserState::RequestedDeletion,
    OfferingUserState::Deleting,
    OfferingUserState::ErrorDeleting,
];

/// Usernames of every offering user of the offering, in any state, restricted ones included
/// (for `preserve_unmanaged_backend_users`: a site user outside this set was never Waldur's).
pub async fn known_usernames(
    ctx: &OfferingContext,
) -> Result<BTreeSet<String>, waldur_client::WaldurError> {
    let filter = OfferingUserFilter {
        offering_uuid: Some(ctx.offering_uuid.clone()),
        fields: vec!["username".into()],
        ..OfferingUserFilter::default()
    };
    Ok(ctx
        .client
        .list_offering_users(&filter)
        .await?
        .iter()
        .filter_map(|u| u.username().map(str::to_owned))
        .collect())
}

/// Upstream 1.0.8's requested-deletion sweep, run every membership cycle: offering users in a
/// departed state are claimed (`set_deleting`; a refusal means the user was restored meanwhile
/// and is left alone), removed from every resource whose site membership lists them, then
/// marked `set_deleted` — or `set_error_deleting` when the site removal failed (the next cycle
/// tries again). A server without offering-user states (2024) has no deletion requests.
pub async fn process_departed_offering_users(
    ctx: &OfferingContext,
    backend: &Arc<dyn MembershipBackend>,
    resources: &[ResourceView],
) -> CycleReport {
    let mut cycle = CycleReport::new(ctx.name());
    if ctx.features.is_missing(endpoint::OFFERING_USER_STATES) {
        return cycle;
    }
    let filter = OfferingUserFilter {
        offering_uuid: Some(ctx.offering_uuid.clone()),
        states: DEPARTED.to_vec(),
        ..OfferingUserFilter::default()
    };
    let listed = match ctx.client.list_offering_users(&filter).await {
        Ok(users) => users,
        Err(e) => {
            tracing::warn!(offering = %ctx.name(), error = %e, "cannot list offering users pending deletion; left for the next cycle");
            cycle.record("list departed offering users", e);
            return cycle;
        }
    };
    if listed
        .iter()
        .any(|u| u.state == OfferingUserState::Unknown(String::new()))
    {
        // The server ignored the state filter because it has no states: nothing to tear down.
        note_missing(
            ctx,
            endpoint::OFFERING_USER_STATES,
            "offering users have no state, so there are no deletion requests to carry out",
            Absence::Info,
        );
        return cycle;
    }
    let departed: Vec<OfferingUser> = listed
        .into_iter()
        .filter(|u| DEPARTED.contains(&u.state))
        .collect();
    if departed.is_empty() || ctx.is_cancelled() {
        return cycle;
    }
    // Where each username has access now. A resource the site cannot read would look like "no
    // access there" and the deletion would be acknowledged too early: wait for the next cycle.
    let present: BTreeMap<String, BackendResourceInfo> = match backend
        .pull_resources(resources)
        .await
    {
        Ok(present) => present,
        Err(e) => {
            tracing::warn!(offering = %ctx.name(), error = %e, "cannot read the site; offering-user deletions wait for the next cycle");
            cycle.record("pull resources for deletions", e);
            return cycle;
        }
    };
    for user in &departed {
        if ctx.is_cancelled() {
            break;
        }
        match tear_down(ctx, backend, resources, &present, user).await {
            Ok(true) => cycle.ok(),
            Ok(false) => {}
            Err(e) => cycle.fail(&format!("offering user {}", user.uuid), e),
        }
    }
    cycle
}

/// One departed offering user: claim, remove, acknowledge. `Ok(false)`: left alone (restored
/// meanwhile, or a transient failure to claim).
async fn tear_down(
    ctx: &OfferingContext,
    backend: &Arc<dyn MembershipBackend>,
    resources: &[ResourceView],
    present: &BTreeMap<String, BackendResourceInfo>,
    user: &OfferingUser,
) -> Result<bool, String> {
    let client = &ctx.client;
    if user.state != OfferingUserState::Deleting {
        if let Err(e) = client.offering_user_set_deleting(&user.uuid).await {
            if e.is_transient() {
                tracing::warn!(offering_user = %user.uuid, error = %e, "cannot claim the deletion; next cycle");
            } else {
                tracing::info!(offering_user = %user.uuid, error = %e, "Waldur refused to move the offering user to Deleting (restored meanwhile?); its account is left alone");
            }
            return Ok(false);
        }
    }
    if let Some(username) = user.username() {
        let mut failures = Vec::new();
        for view in resources {
            let has_access = present
                .get(&view.backend_id)
                .is_some_and(|info| info.users.iter().any(|u| u == username));
            if !has_access {
                continue;
            }
            if let Err(e) = backend.remove_users(view, &[username.to_owned()]).await {
                failures.push(format!("{}: {e}", view.backend_id));
            }
        }
        if !failures.is_empty() {
            let reason = format!(
                "cannot remove '{username}' from the site: {}",
                failures.join("; ")
            );
            tracing::warn!(offering_user = %user.uuid, error = %reason, "offering-user deletion failed; marked Error deleting, retried next cycle");
            if let Err(e) = client.offering_user_set_error_deleting(&user.uuid).await {
                tracing::warn!(offering_user = %user.uuid, error = %e, "cannot mark the offering user Error deleting");
            }
            return Err(reason);
        }
    }
    match client.offering_user_set_deleted(&user.uuid).await {
        Ok(()) => {
            tracing::info!(offering_user = %user.uuid, username = user.username().unwrap_or(""), "offering user deleted: site access removed");
            Ok(true)
        }
        Err(e) => Err(format!(
            "site access removed, but Waldur refused set_deleted: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(username: Option<&str>, state: Option<OfferingUserState>) -> ProjectUser {
        ProjectUser {
            uuid: "u1".into(),
            offering_user_username: username.map(str::to_owned),
            offering_user_state: state,
            ..ProjectUser::default()
        }
    }

    fn ou(username: &str, state: OfferingUserState) -> OfferingUser {
        OfferingUser {
            user_uuid: "u1".into(),
            username: Some(username.into()),
            state,
            ..OfferingUser::default()
        }
    }

    #[test]
    fn one_rule_for_who_has_access() {
        let m = member(Some("team-name"), Some(OfferingUserState::Ok));
        assert_eq!(
            site_username(&m, Some(&ou("alice", OfferingUserState::Ok))).as_deref(),
            Some("alice")
        );
        // Leaving or not ready: no access, whatever the team says.
        for state in [
            OfferingUserState::RequestedDeletion,
            OfferingUserState::Creating,
            OfferingUserState::Deleted,
        ] {
            assert_eq!(site_username(&m, Some(&ou("alice", state))), None);
        }
        // A server without offering-user states (2024).
        let legacy = ou("alice", OfferingUserState::Unknown(String::new()));
        assert_eq!(
            site_username(&member(Some("alice"), None), Some(&legacy)).as_deref(),
            Some("alice")
        );
        // No offering user listed: the team's word, when it is OK or silent.
        assert_eq!(
            site_username(&member(Some("bob"), None), None).as_deref(),
            Some("bob")
        );
        assert_eq!(site_username(&m, None).as_deref(), Some("team-name"));
        assert_eq!(
            site_username(
                &member(Some("bob"), Some(OfferingUserState::Requested)),
                None
            ),
            None
        );
        assert_eq!(site_username(&member(Some("  "), None), None), None);
    }
}
