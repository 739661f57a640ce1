//! Marketplace resources (§3): the provider view and its agent actions, the consumer view with
//! the order-creating actions, and the staff-settable pause/downscale flags.

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{AppState, Body, Ctx, Filter, Kind, f, ok_empty, path_uuid, status_ok};
use crate::error::{ApiError, ApiResult};
use crate::model::Resource;
use crate::store::{SITE_AGENT_OFFERING, Store, new_uuid, now};

pub const RESOURCE_STATES: &[&str] = &[
    "Creating",
    "OK",
    "Erred",
    "Updating",
    "Terminating",
    "Terminated",
];

const RESOURCE_FILTERS: &[Filter] = &[
    f("offering_uuid", "offering_uuid", Kind::UuidMulti),
    f("offering", "offering_uuid", Kind::Uuid),
    f("state", "state", Kind::Choice(RESOURCE_STATES)),
    f("backend_id", "backend_id", Kind::Exact),
    f("project_uuid", "project_uuid", Kind::Uuid),
    f("customer_uuid", "customer_uuid", Kind::Uuid),
    f("provider_uuid", "provider_uuid", Kind::Uuid),
    f("plan_uuid", "plan_uuid", Kind::Uuid),
    f("name", "name", Kind::Contains),
    f("name_exact", "name", Kind::Exact),
    f("slug", "slug", Kind::Exact),
    f("offering_slug", "offering_slug", Kind::Exact),
    f("offering_type", "offering_type", Kind::Exact),
    f("project_name", "project_name", Kind::Contains),
    f("paused", "paused", Kind::Bool),
    f("downscaled", "downscaled", Kind::Bool),
    f(
        "restrict_member_access",
        "restrict_member_access",
        Kind::Bool,
    ),
    f("created", "created", Kind::After),
    f("created_before", "created", Kind::Before),
    f("modified", "modified", Kind::After),
    f("modified_before", "modified", Kind::Before),
];

/// Which flag a staff/provider call toggles; each change emits a `resource` event (§7.4).
#[derive(Clone, Copy, Debug)]
pub enum ResourceFlag {
    Paused,
    Downscaled,
    RestrictMemberAccess,
}

impl Store {
    fn provider_resource_mut(&mut self, user: &Uuid, uuid: &Uuid) -> ApiResult<&mut Resource> {
        let r = self.resources.get(uuid).ok_or_else(ApiError::not_found)?;
        if !self.can_see_resource(user, r) {
            return Err(ApiError::not_found());
        }
        if !self.can_manage_offering(user, &r.offering) {
            return Err(ApiError::forbidden());
        }
        let r = self
            .resources
            .get_mut(uuid)
            .ok_or_else(ApiError::not_found)?;
        r.modified = now();
        Ok(r)
    }

    pub fn set_resource_flag(
        &mut self,
        user: Uuid,
        uuid: Uuid,
        flag: ResourceFlag,
        value: bool,
    ) -> ApiResult<()> {
        let r = self.provider_resource_mut(&user, &uuid)?;
        let slot = match flag {
            ResourceFlag::Paused => &mut r.paused,
            ResourceFlag::Downscaled => &mut r.downscaled,
            ResourceFlag::RestrictMemberAccess => &mut r.restrict_member_access,
        };
        if *slot != value {
            *slot = value;
            self.emit_resource_event(&uuid);
        }
        Ok(())
    }

    pub fn emit_resource_event(&mut self, uuid: &Uuid) {
        let Some(r) = self.resources.get_mut(uuid) else {
            return;
        };
        r.sequence_number += 1;
        let payload = json!({
            "resource_uuid": r.uuid.simple().to_string(),
            "resource_backend_id": r.backend_id,
            "downscaled": r.downscaled,
            "restrict_member_access": r.restrict_member_access,
            "paused": r.paused,
            "sequence_number": r.sequence_number,
        });
        let offering = r.offering;
        if self
            .offerings
            .get(&offering)
            .is_some_and(|o| o.type_ == SITE_AGENT_OFFERING)
        {
            self.emit(&offering, "resource", payload);
        }
    }
}

async fn list_provider(ctx: Ctx) -> ApiResult<Response> {
    ctx.sniff_agent("Usage reporting");
    let items: Vec<Value> = {
        let store = ctx.store();
        store
            .resources
            .values()
            .rev()
            .filter(|r| store.can_manage_offering(&ctx.user, &r.offering))
            .map(|r| store.render_resource(r))
            .collect()
    };
    ctx.list(items, RESOURCE_FILTERS)
}

async fn list_consumer(ctx: Ctx) -> ApiResult<Response> {
    let items: Vec<Value> = {
        let store = ctx.store();
        store
            .resources
            .values()
            .rev()
            .filter(|r| store.can_see_resource(&ctx.user, r))
            .map(|r| store.render_resource(r))
            .collect()
    };
    ctx.list(items, RESOURCE_FILTERS)
}

async fn get_provider(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let v = {
        let store = ctx.store();
        store.render_resource(store.provider_resource(&ctx.user, &id)?)
    };
    Ok(ctx.object(v))
}

async fn get_consumer(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let v = {
        let store = ctx.store();
        store.render_resource(store.visible_resource(&ctx.user, &id)?)
    };
    Ok(ctx.object(v))
}

fn team_items(store: &Store, r: &Resource) -> Vec<Value> {
    store
        .project_roles
        .iter()
        .filter(|pr| pr.project == r.project)
        .map(|pr| store.render_team_member(pr, &r.offering))
        .collect()
}

async fn provider_team(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let items = {
        let store = ctx.store();
        let r = store.provider_resource(&ctx.user, &id)?;
        team_items(&store, r)
    };
    // The provider team endpoint is not paginated: a plain list.
    Ok(axum::Json(Value::Array(items)).into_response())
}

async fn consumer_team(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let items = {
        let store = ctx.store();
        let r = store.visible_resource(&ctx.user, &id)?;
        team_items(&store, r)
    };
    ctx.list(items, &[])
}

async fn list_users(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let items = {
        let store = ctx.store();
        let r = store.provider_resource(&ctx.user, &id)?;
        store
            .project_roles
            .iter()
            .filter(|pr| pr.project == r.project)
            .map(|pr| store.render_user_role(pr))
            .collect()
    };
    ctx.list(
        items,
        &[
            f("role", "role_name", Kind::Exact),
            f("username", "user_username", Kind::Exact),
        ],
    )
}

async fn resource_offering(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let v = {
        let store = ctx.store();
        let r = store.visible_resource(&ctx.user, &id)?;
        let o = store
            .offerings
            .get(&r.offering)
            .ok_or_else(ApiError::not_found)?;
        store.render_offering(o, false)
    };
    Ok(ctx.object(v))
}

async fn plan_periods(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let items = {
        let store = ctx.store();
        store.visible_resource(&ctx.user, &id)?;
        store
            .plan_periods
            .values()
            .filter(|p| p.resource == id)
            .map(|p| store.render_plan_period(p))
            .collect()
    };
    ctx.list(items, &[])
}

/// One provider action: look up with visibility + permission, mutate, answer.
async fn provider_action(
    ctx: &Ctx,
    id: &str,
    f: impl FnOnce(&mut Store, Uuid) -> ApiResult<()>,
) -> ApiResult<()> {
    let id = path_uuid(id)?;
    let user = ctx.user;
    ctx.mutate(|s| {
        s.provider_resource_mut(&user, &id)?;
        f(s, id)
    })
}

fn res<'a>(s: &'a mut Store, id: &Uuid) -> ApiResult<&'a mut Resource> {
    s.resources.get_mut(id).ok_or_else(ApiError::not_found)
}

async fn set_backend_id(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let backend_id = body.str("backend_id").unwrap_or_default().to_string();
    provider_action(&ctx, &id, |s, id| {
        let r = res(s, &id)?;
        r.backend_id = backend_id;
        Ok(())
    })
    .await?;
    Ok(status_ok("Resource backend_id has been changed."))
}

async fn set_effective_id(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let effective_id = body.str("effective_id").unwrap_or_default().to_string();
    provider_action(&ctx, &id, |s, id| {
        res(s, &id)?.effective_id = effective_id;
        Ok(())
    })
    .await?;
    Ok(status_ok("Resource effective_id has been changed."))
}

async fn set_backend_metadata(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let md = match body.get("backend_metadata") {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(ApiError::field(
                "backend_metadata",
                "Expected a dictionary of items.",
            ));
        }
        None => return Err(ApiError::required("backend_metadata")),
    };
    provider_action(&ctx, &id, |s, id| {
        res(s, &id)?.backend_metadata = md;
        Ok(())
    })
    .await?;
    Ok(status_ok("Resource backend_metadata has been changed."))
}

async fn set_limits(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let limits = match body.get("limits") {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(ApiError::field("limits", "Expected a dictionary of items.")),
        None => return Err(ApiError::required("limits")),
    };
    provider_action(&ctx, &id, |s, id| {
        let offering = res(s, &id)?.offering;
        let known: Vec<String> = s
            .offerings
            .get(&offering)
            .map(|o| o.components.iter().map(|c| c.type_.clone()).collect())
            .unwrap_or_default();
        for (k, v) in &limits {
            if !known.contains(k) {
                return Err(ApiError::field(
                    "limits",
                    format!("Invalid component type: {k}."),
                ));
            }
            if !(v.is_number() || v.as_str().is_some_and(|x| x.parse::<f64>().is_ok())) {
                return Err(ApiError::field("limits", format!("Invalid value for {k}.")));
            }
        }
        let r = res(s, &id)?;
        for (k, v) in limits {
            let n = v
                .as_f64()
                .or_else(|| v.as_str().and_then(|x| x.parse().ok()))
                .unwrap_or(0.0);
            r.limits.insert(
                k,
                if n.fract() == 0.0 {
                    json!(n as i64)
                } else {
                    json!(n)
                },
            );
        }
        Ok(())
    })
    .await?;
    Ok(status_ok("Resource limits have been set."))
}

async fn set_end_date(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let end_date = match body.get("end_date") {
        None => None,
        Some(Value::String(s)) => {
            s.parse::<jiff::civil::Date>().map_err(|_| {
                ApiError::field(
                    "end_date",
                    "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.",
                )
            })?;
            Some(s.clone())
        }
        Some(_) => return Err(ApiError::field("end_date", "Date has wrong format.")),
    };
    provider_action(&ctx, &id, |s, id| {
        res(s, &id)?.end_date = end_date;
        Ok(())
    })
    .await?;
    Ok(ok_empty())
}

async fn set_endpoints(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let Some(Value::Array(list)) = body.get("endpoints") else {
        return Err(ApiError::required("endpoints"));
    };
    let mut endpoints = vec![];
    for e in list {
        let (Some(name), Some(url)) = (
            e.get("name").and_then(Value::as_str),
            e.get("url").and_then(Value::as_str),
        ) else {
            return Err(ApiError::field(
                "endpoints",
                "Each endpoint needs name and url.",
            ));
        };
        endpoints.push((new_uuid(), name.to_string(), url.to_string()));
    }
    provider_action(&ctx, &id, |s, id| {
        res(s, &id)?.endpoints = endpoints;
        Ok(())
    })
    .await?;
    Ok(status_ok("Resource endpoints have been set."))
}

async fn set_as_ok(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    provider_action(&ctx, &id, |s, id| {
        let r = res(s, &id)?;
        r.state = "OK".into();
        r.error_message.clear();
        r.error_traceback.clear();
        Ok(())
    })
    .await?;
    Ok(ok_empty())
}

async fn set_as_erred(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let msg = body.str("error_message").unwrap_or_default().to_string();
    let tb = body.str("error_traceback").unwrap_or_default().to_string();
    provider_action(&ctx, &id, |s, id| {
        let r = res(s, &id)?;
        r.state = "Erred".into();
        r.error_message = msg;
        r.error_traceback = tb;
        Ok(())
    })
    .await?;
    Ok(ok_empty())
}

async fn refresh_last_sync(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    provider_action(&ctx, &id, |s, id| {
        res(s, &id)?.last_sync = now();
        Ok(())
    })
    .await?;
    Ok(ok_empty())
}

async fn update_options_direct(
    ctx: Ctx,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let options = body.get("options").cloned();
    provider_action(&ctx, &id, |s, id| {
        res(s, &id)?.options = options;
        Ok(())
    })
    .await?;
    Ok(status_ok("Resource options have been updated."))
}

async fn set_membership_sync_statuses(
    ctx: Ctx,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let Some(Value::Array(statuses)) = body.get("statuses").cloned() else {
        return Err(ApiError::required("statuses"));
    };
    let id = path_uuid(&id)?;
    let user = ctx.user;
    let result = ctx.mutate(|s| {
        let offering = s.provider_resource_mut(&user, &id)?.offering;
        let enabled = s
            .offerings
            .get(&offering)
            .and_then(|o| o.plugin_options.get("enable_membership_sync_status"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !enabled {
            return Err(ApiError::conflict(
                "Membership sync status reporting is not enabled for this offering.",
            ));
        }
        let mut stored = vec![];
        let mut skipped = vec![];
        for st in statuses {
            let username = st.get("username").and_then(Value::as_str);
            let user_uuid = st
                .get("user_uuid")
                .and_then(Value::as_str)
                .and_then(crate::query::parse_uuid_ref);
            let known = user_uuid.is_some_and(|u| s.users.contains_key(&u))
                || username.is_some_and(|n| {
                    s.users.values().any(|u| u.username == n)
                        || s.offering_users
                            .values()
                            .any(|ou| ou.offering == offering && ou.username.as_deref() == Some(n))
                });
            if known {
                stored.push(st);
            } else {
                skipped.push(
                    username
                        .map(str::to_string)
                        .unwrap_or_else(|| st.to_string()),
                );
            }
        }
        let count = stored.len();
        s.membership_statuses.insert(id, stored);
        Ok(json!({"stored": count, "skipped": skipped}))
    })?;
    Ok(axum::Json(result).into_response())
}

async fn set_flag(
    ctx: &Ctx,
    id: &str,
    flag: ResourceFlag,
    body: &Body,
    key: &str,
) -> ApiResult<Response> {
    let id = path_uuid(id)?;
    let value = body.get(key).and_then(Value::as_bool).unwrap_or(true);
    let user = ctx.user;
    ctx.mutate(|s| s.set_resource_flag(user, id, flag, value))?;
    Ok(status_ok("Resource has been updated."))
}

async fn set_paused(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    set_flag(&ctx, &id, ResourceFlag::Paused, &body, "paused").await
}
async fn set_downscaled(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    set_flag(&ctx, &id, ResourceFlag::Downscaled, &body, "downscaled").await
}
async fn set_restrict_member_access(
    ctx: Ctx,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    set_flag(
        &ctx,
        &id,
        ResourceFlag::RestrictMemberAccess,
        &body,
        "restrict_member_access",
    )
    .await
}

async fn update_limits(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let limits = match body.get("limits") {
        Some(Value::Object(m)) => m.clone(),
        _ => return Err(ApiError::required("limits")),
    };
    let user = ctx.user;
    let order = ctx.mutate(|s| s.update_limits_order(user, id, limits))?;
    Ok(axum::Json(json!({"order_uuid": order.simple().to_string()})).into_response())
}

async fn switch_plan(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    // `plan` is the plan's URL (as Waldur takes it) or its UUID.
    let plan = match body.get("plan") {
        Some(Value::String(s)) => s
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned(),
        _ => return Err(ApiError::required("plan")),
    };
    let plan = Uuid::try_parse(&plan)
        .map_err(|_| ApiError::field("plan", "Invalid hyperlink - Object does not exist."))?;
    let user = ctx.user;
    let order = ctx.mutate(|s| s.switch_plan_order(user, id, plan))?;
    Ok(axum::Json(json!({"order_uuid": order.simple().to_string()})).into_response())
}

async fn terminate(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let attrs = body.obj("attributes")?;
    let user = ctx.user;
    let order = ctx.mutate(|s| s.terminate_order(user, id, attrs))?;
    Ok(axum::Json(json!({"order_uuid": order.simple().to_string()})).into_response())
}

async fn sync_user_roles(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let user = ctx.user;
    ctx.mutate(|s| {
        let r = s.provider_resource_mut(&user, &id)?.clone();
        let project = s
            .projects
            .get(&r.project)
            .cloned()
            .ok_or_else(ApiError::not_found)?;
        s.emit(
            &r.offering,
            "user_role",
            json!({
                "project_uuid": project.uuid.simple().to_string(),
                "project_name": project.name,
                "resource_uuid": r.uuid.simple().to_string(),
            }),
        );
        Ok(())
    })?;
    Ok(ok_empty())
}

async fn resource_projects(ctx: Ctx) -> ApiResult<Response> {
    // Sub-projects are an optional plugin feature the simulator does not model: always empty.
    ctx.list(vec![], &[])
}

pub fn routes() -> Router<AppState> {
    let p = "/api/marketplace-provider-resources";
    let c = "/api/marketplace-resources";
    Router::new()
        .route(&format!("{p}/"), get(list_provider).head(list_provider))
        .route(&format!("{p}/{{uuid}}/"), get(get_provider))
        .route(&format!("{p}/{{uuid}}/team/"), get(provider_team))
        .route(&format!("{p}/{{uuid}}/list_users/"), get(list_users))
        .route(&format!("{p}/{{uuid}}/offering/"), get(resource_offering))
        .route(&format!("{p}/{{uuid}}/plan_periods/"), get(plan_periods))
        .route(
            &format!("{p}/{{uuid}}/set_backend_id/"),
            post(set_backend_id),
        )
        .route(
            &format!("{p}/{{uuid}}/set_effective_id/"),
            post(set_effective_id),
        )
        .route(
            &format!("{p}/{{uuid}}/set_backend_metadata/"),
            post(set_backend_metadata),
        )
        .route(&format!("{p}/{{uuid}}/set_limits/"), post(set_limits))
        .route(&format!("{p}/{{uuid}}/set_end_date/"), post(set_end_date))
        .route(&format!("{p}/{{uuid}}/set_endpoints/"), post(set_endpoints))
        .route(&format!("{p}/{{uuid}}/set_as_ok/"), post(set_as_ok))
        .route(&format!("{p}/{{uuid}}/set_as_erred/"), post(set_as_erred))
        .route(
            &format!("{p}/{{uuid}}/refresh_last_sync/"),
            post(refresh_last_sync),
        )
        .route(
            &format!("{p}/{{uuid}}/update_options_direct/"),
            post(update_options_direct),
        )
        .route(
            &format!("{p}/{{uuid}}/set_membership_sync_statuses/"),
            post(set_membership_sync_statuses),
        )
        .route(&format!("{p}/{{uuid}}/set_paused/"), post(set_paused))
        .route(
            &format!("{p}/{{uuid}}/set_downscaled/"),
            post(set_downscaled),
        )
        .route(
            &format!("{p}/{{uuid}}/set_restrict_member_access/"),
            post(set_restrict_member_access),
        )
        .route(
            &format!("{p}/{{uuid}}/sync_user_roles/"),
            post(sync_user_roles),
        )
        .route(&format!("{c}/"), get(list_consumer).head(list_consumer))
        .route(&format!("{c}/{{uuid}}/"), get(get_consumer))
        .route(&format!("{c}/{{uuid}}/team/"), get(consumer_team))
        .route(&format!("{c}/{{uuid}}/offering/"), get(resource_offering))
        .route(&format!("{c}/{{uuid}}/plan_periods/"), get(plan_periods))
        .route(&format!("{c}/{{uuid}}/update_limits/"), post(update_limits))
        .route(&format!("{c}/{{uuid}}/switch_plan/"), post(switch_plan))
        .route(&format!("{c}/{{uuid}}/terminate/"), post(terminate))
        .route(&format!("{c}/{{uuid}}/set_end_date/"), post(set_end_date))
        .route(&format!("{c}/{{uuid}}/set_paused/"), post(set_paused))
        .route(
            &format!("{c}/{{uuid}}/set_downscaled/"),
            post(set_downscaled),
        )
        .route(
            &format!("{c}/{{uuid}}/set_restrict_member_access/"),
            post(set_restrict_member_access),
        )
        .route(
            "/api/marketplace-provider-resource-projects/",
            get(resource_projects),
        )
}
