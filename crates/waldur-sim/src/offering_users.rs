//! Offering users (§5): CRUD, the lifecycle state machine with Mastermind's 409s, and the
//! implicit move to OK when a username is set.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use uuid::Uuid;

use crate::app::{AppState, Body, Ctx, Kind, created, f, ok_empty, path_uuid};
use crate::error::{ApiError, ApiResult};
use crate::model::OfferingUser;
use crate::store::{Store, new_uuid, now};

pub const OU_STATES: &[&str] = &[
    "Requested",
    "Creating",
    "Pending account linking",
    "Pending additional validation",
    "OK",
    "Requested deletion",
    "Deleting",
    "Deleted",
    "Error creating",
    "Error deleting",
];

/// States in which setting a username moves the user to OK.
const USERNAME_PROMOTES: &[&str] = &[
    "Requested",
    "Creating",
    "Pending account linking",
    "Pending additional validation",
    "Error creating",
];

/// (action, allowed source states, target state) — §5.2.
pub const TRANSITIONS: &[(&str, &[&str], &str)] = &[
    (
        "begin_creating",
        &["Requested", "Error creating"],
        "Creating",
    ),
    (
        "set_ok",
        &[
            "Requested",
            "Creating",
            "Pending account linking",
            "Pending additional validation",
            "Error creating",
            "Error deleting",
            "Requested deletion",
            "Deleting",
        ],
        "OK",
    ),
    (
        "set_pending_additional_validation",
        &["Creating", "Error creating", "Pending account linking"],
        "Pending additional validation",
    ),
    (
        "set_pending_account_linking",
        &[
            "Creating",
            "Error creating",
            "Pending additional validation",
        ],
        "Pending account linking",
    ),
    (
        "set_validation_complete",
        &["Pending additional validation", "Pending account linking"],
        "OK",
    ),
    (
        "request_deletion",
        &[
            "OK",
            "Creating",
            "Pending account linking",
            "Pending additional validation",
            "Error creating",
        ],
        "Requested deletion",
    ),
    (
        "set_deleting",
        &["Requested deletion", "Error deleting"],
        "Deleting",
    ),
    ("set_deleted", &["Requested", "Deleting"], "Deleted"),
    (
        "set_error_creating",
        &[
            "Requested",
            "Creating",
            "Pending account linking",
            "Pending additional validation",
        ],
        "Error creating",
    ),
    (
        "set_error_deleting",
        &["Requested deletion", "Deleting"],
        "Error deleting",
    ),
];

impl Store {
    pub fn can_see_offering_user(&self, user: &Uuid, ou: &OfferingUser) -> bool {
        self.can_manage_offering(user, &ou.offering) || &ou.user == user
    }

    fn managed_offering_user(&mut self, user: &Uuid, id: &Uuid) -> ApiResult<&mut OfferingUser> {
        let ou = self
            .offering_users
            .get(id)
            .ok_or_else(ApiError::not_found)?;
        if !self.can_see_offering_user(user, ou) {
            return Err(ApiError::not_found());
        }
        if !self.can_manage_offering(user, &ou.offering) {
            return Err(ApiError::forbidden());
        }
        self.offering_users
            .get_mut(id)
            .ok_or_else(ApiError::not_found)
    }

    pub fn offering_user_transition(
        &mut self,
        user: Uuid,
        id: Uuid,
        action: &str,
        comment: Option<(String, String)>,
    ) -> ApiResult<()> {
        let (_, sources, target) = TRANSITIONS
            .iter()
            .find(|(a, _, _)| *a == action)
            .ok_or_else(ApiError::not_found)?;
        let ou = self.managed_offering_user(&user, &id)?;
        if !sources.contains(&ou.state.as_str()) {
            return Err(ApiError::invalid_state(sources));
        }
        ou.state = target.to_string();
        ou.modified = now();
        match (action, comment) {
            ("set_validation_complete", _) => {
                ou.service_provider_comment.clear();
                ou.service_provider_comment_url.clear();
            }
            (_, Some((c, url))) => {
                ou.service_provider_comment = c;
                ou.service_provider_comment_url = url;
            }
            _ => {}
        }
        Ok(())
    }

    /// Sets the username; a non-empty one promotes pending states to OK and fires the event.
    pub fn set_offering_username(
        &mut self,
        user: Uuid,
        id: Uuid,
        username: Option<String>,
    ) -> ApiResult<()> {
        let ou = self.managed_offering_user(&user, &id)?;
        let changed = ou.username != username;
        ou.username = username.clone();
        ou.modified = now();
        let non_empty = username.as_deref().is_some_and(|u| !u.is_empty());
        if non_empty && USERNAME_PROMOTES.contains(&ou.state.as_str()) {
            ou.state = "OK".into();
        }
        if changed && non_empty {
            self.emit_offering_user_username_set(&id);
        }
        Ok(())
    }

    pub fn create_offering_user(
        &mut self,
        user: Uuid,
        offering: Uuid,
        target: Uuid,
        username: Option<String>,
    ) -> ApiResult<Uuid> {
        if !self.offerings.contains_key(&offering) {
            return Err(ApiError::field(
                "offering",
                "Invalid hyperlink - Object does not exist.",
            ));
        }
        if !self.users.contains_key(&target) {
            return Err(ApiError::field(
                "user",
                "Invalid hyperlink - Object does not exist.",
            ));
        }
        if !self.can_manage_offering(&user, &offering) {
            return Err(ApiError::forbidden());
        }
        if self
            .offering_users
            .values()
            .any(|o| o.offering == offering && o.user == target)
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"non_field_errors": ["The fields offering, user must make a unique set."]}),
            ));
        }
        let ts = now();
        let username = username.filter(|u| !u.is_empty());
        let ou = OfferingUser {
            uuid: new_uuid(),
            offering,
            user: target,
            state: if username.is_some() {
                "OK".into()
            } else {
                "Requested".into()
            },
            username,
            runtime_state: "Active".into(),
            is_restricted: false,
            service_provider_comment: String::new(),
            service_provider_comment_url: String::new(),
            created: ts,
            modified: ts,
        };
        let id = ou.uuid;
        let has_name = ou.username.is_some();
        self.offering_users.insert(id, ou);
        if has_name {
            self.emit_offering_user_username_set(&id);
        }
        Ok(id)
    }
}

async fn list(ctx: Ctx) -> ApiResult<Response> {
    let items: Vec<Value> = {
        let store = ctx.store();
        store
            .offering_users
            .values()
            .filter(|ou| store.can_see_offering_user(&ctx.user, ou))
            .map(|ou| store.render_offering_user(ou))
            .collect()
    };
    let legacy = ctx.state.api_profile.is_2024();
    let filters = [
        f("offering_uuid", "offering_uuid", Kind::UuidMulti),
        f("offering", "offering_uuid", Kind::Uuid),
        f("user_uuid", "user_uuid", Kind::Uuid),
        f("user_username", "user_username", Kind::Exact),
        f("state", "state", Kind::Choice(OU_STATES)),
        f(
            "runtime_state",
            "runtime_state",
            Kind::Choice(&[
                "Active",
                "Pending account linking",
                "Pending additional validation",
            ]),
        ),
        f("is_restricted", "is_restricted", Kind::Bool),
        f("query", "username", Kind::Contains),
        f("created", "created", Kind::After),
        f("modified", "modified", Kind::After),
        f("modified_before", "modified", Kind::Before),
    ];
    // A 2024 server has no offering-user state: its filter is an unknown parameter, ignored.
    let filters: Vec<_> = filters
        .into_iter()
        .filter(|flt| !(legacy && matches!(flt.param, "state" | "runtime_state")))
        .collect();
    ctx.list(items, &filters)
}

async fn retrieve(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let v = {
        let store = ctx.store();
        let ou = store
            .offering_users
            .get(&id)
            .filter(|ou| store.can_see_offering_user(&ctx.user, ou))
            .ok_or_else(ApiError::not_found)?;
        store.render_offering_user(ou)
    };
    Ok(ctx.object(v))
}

async fn create(ctx: Ctx, body: Body) -> ApiResult<Response> {
    let offering = match body.uuid_ref("offering")? {
        Some(o) => o,
        None => body
            .uuid_ref("offering_uuid")?
            .ok_or_else(|| ApiError::required("offering"))?,
    };
    let target = match body.uuid_ref("user")? {
        Some(u) => u,
        None => body
            .uuid_ref("user_uuid")?
            .ok_or_else(|| ApiError::required("user"))?,
    };
    let username = body.str("username").map(str::to_string);
    let user = ctx.user;
    let id = ctx.mutate(|s| s.create_offering_user(user, offering, target, username))?;
    let store = ctx.store();
    let ou = store
        .offering_users
        .get(&id)
        .ok_or_else(ApiError::not_found)?;
    Ok(created(store.render_offering_user(ou)))
}

async fn update(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let user = ctx.user;
    if body.0.get("username").is_some() {
        let username = match body.0.get("username") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) => None,
            _ => return Err(ApiError::field("username", "Not a valid string.")),
        };
        ctx.mutate(|s| s.set_offering_username(user, id, username))?;
    } else {
        ctx.mutate(|s| s.managed_offering_user(&user, &id).map(|_| ()))?;
    }
    let store = ctx.store();
    let ou = store
        .offering_users
        .get(&id)
        .ok_or_else(ApiError::not_found)?;
    Ok(axum::Json(store.render_offering_user(ou)).into_response())
}

async fn destroy(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let user = ctx.user;
    ctx.mutate(|s| {
        s.managed_offering_user(&user, &id)?;
        s.offering_users.shift_remove(&id);
        Ok(())
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn action(
    ctx: Ctx,
    Path((id, action)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let user = ctx.user;
    match action.as_str() {
        "update_restricted" => {
            let Some(flag) = body.get("is_restricted").and_then(Value::as_bool) else {
                return Err(ApiError::required("is_restricted"));
            };
            ctx.mutate(|s| {
                let ou = s.managed_offering_user(&user, &id)?;
                ou.is_restricted = flag;
                ou.modified = now();
                Ok(())
            })?;
        }
        "update_runtime_state" => {
            let rs = body.required_str("runtime_state")?.to_string();
            if ![
                "Active",
                "Pending account linking",
                "Pending additional validation",
            ]
            .contains(&rs.as_str())
            {
                return Err(ApiError::field(
                    "runtime_state",
                    format!("\"{rs}\" is not a valid choice."),
                ));
            }
            let comment = body.str("service_provider_comment").map(str::to_string);
            let url = body.str("service_provider_comment_url").map(str::to_string);
            ctx.mutate(|s| {
                let ou = s.managed_offering_user(&user, &id)?;
                if ou.state == "Deleted" {
                    return Err(ApiError::invalid_state(
                        &OU_STATES
                            .iter()
                            .copied()
                            .filter(|s| *s != "Deleted")
                            .collect::<Vec<_>>(),
                    ));
                }
                ou.runtime_state = rs;
                if let Some(c) = comment {
                    ou.service_provider_comment = c;
                }
                if let Some(u) = url {
                    ou.service_provider_comment_url = u;
                }
                ou.modified = now();
                Ok(())
            })?;
        }
        other => {
            let comment = if other.starts_with("set_pending") {
                Some((
                    body.str("comment").unwrap_or_default().to_string(),
                    body.str("comment_url").unwrap_or_default().to_string(),
                ))
            } else {
                None
            };
            ctx.mutate(|s| s.offering_user_transition(user, id, other, comment))?;
        }
    }
    Ok(ok_empty())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/marketplace-offering-users/",
            get(list).head(list).post(create),
        )
        .route(
            "/api/marketplace-offering-users/{uuid}/",
            get(retrieve).patch(update).put(update).delete(destroy),
        )
        .route(
            "/api/marketplace-offering-users/{uuid}/{action}/",
            post(action),
        )
}
