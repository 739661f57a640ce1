//! Offering-user username state machine (agent-behaviour §6), driven by the offering's
//! `UsernameBackend`.
//!
//! ```text
//! Requested --begin_creating--> Creating --PATCH username--> OK
//! Creating/Error creating --linking needed--> Pending account linking
//! Creating/Error creating --validation needed--> Pending additional validation
//! Pending* --username found: set_validation_complete + PATCH--> OK
//! Creating --BackendError--> Error creating --begin_creating (next cycle)--> Creating
//! ```

use backend_api::BackendError;
use waldur_client::{OfferingUser, OfferingUserState};

use crate::context::OfferingContext;
use crate::convert::offering_user_view;
use crate::error::{CoreError, CoreResult};

/// Whether the agent (not Waldur) generates usernames for this offering.
pub async fn agent_generates_usernames(ctx: &OfferingContext) -> CoreResult<bool> {
    let offering = ctx.offering().await?;
    let policy = offering
        .plugin_option_str("username_generation_policy")
        .unwrap_or_default();
    if policy != "service_provider" {
        return Ok(false);
    }
    if !offering.plugin_option_bool("service_provider_can_create_offering_user") {
        tracing::error!(
            offering = %ctx.name(),
            "username_generation_policy is service_provider but service_provider_can_create_offering_user is off; usernames are not generated"
        );
        return Ok(false);
    }
    Ok(true)
}

/// Run the username state machine over `users`. Returns whether any user changed in Waldur.
/// Per-user failures are logged and do not stop the others.
pub async fn update_offering_users(
    ctx: &OfferingContext,
    users: &[OfferingUser],
) -> CoreResult<bool> {
    if users.is_empty() || !agent_generates_usernames(ctx).await? {
        return Ok(false);
    }
    let mut changed = false;
    for user in users {
        match process_user(ctx, user).await {
            Ok(c) => changed |= c,
            Err(e) => tracing::warn!(
                offering = %ctx.name(), offering_user = %user.uuid, error = %e,
                "username processing failed"
            ),
        }
    }
    Ok(changed)
}

async fn process_user(ctx: &OfferingContext, user: &OfferingUser) -> CoreResult<bool> {
    let client = &ctx.client;
    let mut state = user.state.clone();
    match state {
        OfferingUserState::Requested => {
            client.offering_user_begin_creating(&user.uuid).await?;
            state = OfferingUserState::Creating;
        }
        OfferingUserState::ErrorCreating => {
            client.offering_user_begin_creating(&user.uuid).await?;
            state = OfferingUserState::Creating;
        }
        OfferingUserState::Creating
        | OfferingUserState::PendingAccountLinking
        | OfferingUserState::PendingAdditionalValidation => {}
        _ => return Ok(false),
    }
    // A state transition above is already a change.
    let transitioned = state != user.state;
    let view = offering_user_view(user);
    match ctx.backends.usernames.get_or_create_username(&view).await {
        Ok(Some(username)) => {
            if matches!(
                state,
                OfferingUserState::PendingAccountLinking
                    | OfferingUserState::PendingAdditionalValidation
            ) {
                client
                    .offering_user_set_validation_complete(&user.uuid)
                    .await?;
            }
            // Waldur moves the user to OK when a username is set.
            client
                .set_offering_user_username(&user.uuid, &username)
                .await?;
            Ok(true)
        }
        Ok(None) => Ok(transitioned),
        Err(BackendError::AccountLinkingRequired {
            message,
            comment_url,
        }) => {
            if state != OfferingUserState::PendingAccountLinking {
                client
                    .offering_user_set_pending_account_linking(
                        &user.uuid,
                        &message,
                        comment_url.as_deref(),
                    )
                    .await?;
                return Ok(true);
            }
            Ok(transitioned)
        }
        Err(BackendError::AdditionalValidationRequired {
            message,
            comment_url,
        }) => {
            if state != OfferingUserState::PendingAdditionalValidation {
                client
                    .offering_user_set_pending_additional_validation(
                        &user.uuid,
                        &message,
                        comment_url.as_deref(),
                    )
                    .await?;
                return Ok(true);
            }
            Ok(transitioned)
        }
        // Network-like failures leave the user as it is for the next cycle.
        Err(e) if e.is_transient() => Err(CoreError::Backend(e)),
        Err(e) => {
            if state == OfferingUserState::Creating {
                client.offering_user_set_error_creating(&user.uuid).await?;
            }
            tracing::warn!(offering_user = %user.uuid, error = %e, "username generation failed");
            Ok(true)
        }
    }
}
