//! The SLURM allocation a 2024 Mastermind keeps behind every Marketplace.Slurm resource
//! (`waldur_slurm.Allocation`, the resource's `scope`), and `marketplace-slurm-remote/`, through
//! which the agents of that time drove its state. Only served by the 2024 API profile.
//!
//! The allocation uses Mastermind's `StateMixin` (django-fsm): created in "Creation Scheduled"
//! when a Create order starts executing; `schedule_updating` (OK or Erred only) when an Update
//! order starts executing. A server whose allocation is still "Creation Scheduled" — because no
//! agent set it OK after the create — errs the next Update order itself.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use uuid::Uuid;

use crate::app::{AppState, Body, Ctx, path_uuid};
use crate::error::{ApiError, ApiResult};
use crate::store::{SITE_AGENT_OFFERING, Store};

pub const CREATION_SCHEDULED: &str = "Creation Scheduled";
pub const CREATING: &str = "Creating";
pub const UPDATE_SCHEDULED: &str = "Update Scheduled";
pub const UPDATING: &str = "Updating";
pub const DELETION_SCHEDULED: &str = "Deletion Scheduled";
pub const DELETING: &str = "Deleting";
pub const OK: &str = "OK";
pub const ERRED: &str = "Erred";

/// `StateMixin.States`: the integer django-fsm names in its errors.
pub fn state_code(label: &str) -> i64 {
    match label {
        UPDATE_SCHEDULED => 1,
        UPDATING => 2,
        OK => 3,
        ERRED => 4,
        CREATION_SCHEDULED => 5,
        CREATING => 6,
        DELETION_SCHEDULED => 7,
        DELETING => 8,
        _ => 0,
    }
}

/// `set_state`'s `state` → (transition method, allowed sources (`None`: any), target).
fn transition_for(
    state: &str,
) -> Option<(&'static str, Option<&'static [&'static str]>, &'static str)> {
    Some(match state {
        "creating" => ("begin_creating", Some(&[CREATION_SCHEDULED]), CREATING),
        "updating" => ("begin_updating", Some(&[UPDATE_SCHEDULED]), UPDATING),
        "deletion_scheduled" => ("schedule_deleting", Some(&[OK, ERRED]), DELETION_SCHEDULED),
        "update_scheduled" => ("schedule_updating", Some(&[OK, ERRED]), UPDATE_SCHEDULED),
        "deleting" => ("begin_deleting", Some(&[DELETION_SCHEDULED]), DELETING),
        "ok" => ("set_ok", None, OK),
        "erred" => ("set_erred", None, ERRED),
        _ => return None,
    })
}

/// django-fsm's `TransitionNotAllowed` text.
pub fn transition_not_allowed(from: &str, method: &str) -> String {
    format!(
        "Can't switch from state '{}' using method '{method}'",
        state_code(from)
    )
}

impl Store {
    fn is_site_agent_resource(&self, resource: &Uuid) -> bool {
        self.resources
            .get(resource)
            .and_then(|r| self.offerings.get(&r.offering))
            .is_some_and(|o| o.type_ == SITE_AGENT_OFFERING)
    }

    /// 2024 profile at start-up: resources that exist already have their allocation (OK), as
    /// on a server where the agent of the time finished their orders.
    pub fn seed_allocations(&mut self) {
        let ids: Vec<Uuid> = self
            .resources
            .values()
            .filter(|r| !matches!(r.state.as_str(), "Creating" | "Terminated"))
            .map(|r| r.uuid)
            .collect();
        for id in ids {
            if self.is_site_agent_resource(&id) {
                self.allocations.entry(id).or_insert_with(|| OK.to_string());
            }
        }
    }

    /// What the 2024 order processors do when an order of a Marketplace.Slurm resource starts
    /// executing: `CreateAllocationProcessor` creates the allocation, and
    /// `UpdateAllocationLimitsProcessor` calls `schedule_updating` on it. `Err` carries the
    /// message the server errs the order with.
    pub fn allocation_on_executing(
        &mut self,
        order_type: &str,
        resource: &Uuid,
    ) -> Result<(), String> {
        if !self.api_profile.is_2024() || !self.is_site_agent_resource(resource) {
            return Ok(());
        }
        match order_type {
            "Create" => {
                self.allocations
                    .insert(*resource, CREATION_SCHEDULED.to_string());
                Ok(())
            }
            "Update" => {
                let Some(state) = self.allocations.get_mut(resource) else {
                    return Err("'NoneType' object has no attribute 'schedule_updating'".into());
                };
                if state == OK || state == ERRED {
                    *state = UPDATE_SCHEDULED.to_string();
                    Ok(())
                } else {
                    Err(transition_not_allowed(state, "schedule_updating"))
                }
            }
            _ => Ok(()),
        }
    }

    /// `POST marketplace-slurm-remote/{resource}/set_state/ {"state": ...}`.
    pub fn set_allocation_state(
        &mut self,
        user: Uuid,
        resource: Uuid,
        state: &str,
    ) -> ApiResult<String> {
        let r = self
            .resources
            .get(&resource)
            .filter(|r| self.can_see_resource(&user, r))
            .ok_or_else(ApiError::not_found)?
            .clone();
        // The viewset's queryset: Marketplace.Slurm resources with a scope.
        if !self.is_site_agent_resource(&resource) || !self.allocations.contains_key(&resource) {
            return Err(ApiError::not_found());
        }
        if !self.can_manage_offering(&user, &r.offering) {
            return Err(ApiError::forbidden());
        }
        let (_, sources, target) = transition_for(state).ok_or_else(|| {
            ApiError::bare("Invalid state: a corresponding method for transition is absent")
        })?;
        let current = self.allocations.get(&resource).cloned().unwrap_or_default();
        if let Some(sources) = sources
            && !sources.contains(&current.as_str())
        {
            return Err(ApiError::conflict(format!(
                "Allocation state can not be changed from {} to {state}.",
                state_code(&current)
            )));
        }
        self.allocations.insert(resource, target.to_string());
        Ok(format!("Allocation state has been changed to {state}"))
    }
}

const STATES: &[&str] = &[
    "creating",
    "updating",
    "deletion_scheduled",
    "update_scheduled",
    "deleting",
    "ok",
    "erred",
];

async fn set_state(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let resource = path_uuid(&id)?;
    let state = body.required_str("state")?.to_string();
    if !STATES.contains(&state.as_str()) {
        return Err(ApiError::field(
            "state",
            format!("\"{state}\" is not a valid choice."),
        ));
    }
    let user = ctx.user;
    let detail = ctx.mutate(|s| s.set_allocation_state(user, resource, &state))?;
    Ok((StatusCode::OK, axum::Json(json!({ "detail": detail }))).into_response())
}

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/marketplace-slurm-remote/{uuid}/set_state/",
        post(set_state),
    )
}
