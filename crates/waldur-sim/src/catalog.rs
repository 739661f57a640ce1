//! Offerings, components, plans, service providers, users, projects (with membership) and
//! customers (§6, §8).

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{AppState, Body, Ctx, Kind, f, ok_empty, path_uuid};
use crate::error::{ApiError, ApiResult};
use crate::model::{Component, ProjectRole};
use crate::store::{SITE_AGENT_OFFERING, Store, new_uuid, now};

pub const PROJECT_ROLES: &[&str] = &["PROJECT.ADMIN", "PROJECT.MANAGER", "PROJECT.MEMBER"];
const BILLING_TYPES: &[&str] = &["fixed", "usage", "limit", "one", "few"];

impl Store {
    /// Grants a project role and does what Mastermind does around it: offering users for the
    /// project's offerings and a `user_role` event per site-agent offering.
    pub fn add_project_user(
        &mut self,
        actor: Uuid,
        project: Uuid,
        user: Uuid,
        role: &str,
        expiration: Option<String>,
    ) -> ApiResult<()> {
        let p = self
            .projects
            .get(&project)
            .ok_or_else(ApiError::not_found)?
            .clone();
        if !self.can_access_project(&actor, &project) {
            return Err(ApiError::not_found());
        }
        let may_manage = self.is_staff(&actor)
            || self.is_customer_owner(&actor, &p.customer)
            || self
                .project_role(&actor, &project)
                .is_some_and(|r| r.role == "PROJECT.MANAGER");
        if !may_manage {
            return Err(ApiError::forbidden());
        }
        if !PROJECT_ROLES.contains(&role) {
            return Err(ApiError::field(
                "role",
                format!("Object with name={role} does not exist."),
            ));
        }
        if !self.users.contains_key(&user) {
            return Err(ApiError::field(
                "user",
                format!("Object with uuid={} does not exist.", user.simple()),
            ));
        }
        if self
            .project_roles
            .iter()
            .any(|r| r.project == project && r.user == user && r.role == role)
        {
            return Err(ApiError::bare("User already has role within this scope."));
        }
        self.project_roles.push(ProjectRole {
            uuid: new_uuid(),
            project,
            user,
            role: role.to_string(),
            expiration_time: expiration,
            created: now(),
            created_by: Some(actor),
        });
        let offerings: Vec<Uuid> = self
            .resources
            .values()
            .filter(|r| r.project == project && r.state != "Terminated")
            .map(|r| r.offering)
            .collect::<indexmap::IndexSet<_>>()
            .into_iter()
            .collect();
        for o in offerings {
            self.ensure_offering_user(o, user);
            self.emit_user_role(o, &p, user, role, true);
        }
        Ok(())
    }

    pub fn remove_project_user(
        &mut self,
        actor: Uuid,
        project: Uuid,
        user: Uuid,
        role: &str,
    ) -> ApiResult<()> {
        let p = self
            .projects
            .get(&project)
            .ok_or_else(ApiError::not_found)?
            .clone();
        if !self.can_access_project(&actor, &project) {
            return Err(ApiError::not_found());
        }
        if !self.is_staff(&actor) && !self.is_customer_owner(&actor, &p.customer) {
            return Err(ApiError::forbidden());
        }
        let before = self.project_roles.len();
        self.project_roles
            .retain(|r| !(r.project == project && r.user == user && r.role == role));
        if before == self.project_roles.len() {
            return Err(ApiError::bare("User does not have role within this scope."));
        }
        let offerings: indexmap::IndexSet<Uuid> = self
            .resources
            .values()
            .filter(|r| r.project == project && r.state != "Terminated")
            .map(|r| r.offering)
            .collect();
        for o in offerings {
            self.emit_user_role(o, &p, user, role, false);
        }
        Ok(())
    }

    fn emit_user_role(
        &mut self,
        offering: Uuid,
        p: &crate::model::Project,
        user: Uuid,
        role: &str,
        granted: bool,
    ) {
        if self
            .offerings
            .get(&offering)
            .is_none_or(|o| o.type_ != SITE_AGENT_OFFERING)
        {
            return;
        }
        let username = self
            .users
            .get(&user)
            .map(|u| u.username.clone())
            .unwrap_or_default();
        self.emit(
            &offering,
            "user_role",
            json!({
                "user_uuid": user.simple().to_string(),
                "user_username": username,
                "project_uuid": p.uuid.simple().to_string(),
                "project_name": p.name,
                "role_name": role,
                "granted": granted,
            }),
        );
    }
}

async fn list_offerings(ctx: Ctx) -> ApiResult<Response> {
    let items = {
        let s = ctx.store();
        s.offerings
            .values()
            .map(|o| s.render_offering(o, s.can_manage_offering(&ctx.user, &o.uuid)))
            .collect()
    };
    ctx.list(
        items,
        &[
            f("customer_uuid", "customer_uuid", Kind::Uuid),
            f("type", "type", Kind::Exact),
            f(
                "state",
                "state",
                Kind::Choice(&["Draft", "Active", "Paused", "Archived", "Unavailable"]),
            ),
            f("name", "name", Kind::Contains),
            f("name_exact", "name", Kind::Exact),
            f("slug", "slug", Kind::Exact),
            f("uuid_list", "uuid", Kind::UuidMulti),
        ],
    )
}

async fn get_offering(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let v = {
        let s = ctx.store();
        let o = s.visible_offering(&ctx.user, &id)?;
        s.render_offering(o, s.can_manage_offering(&ctx.user, &id))
    };
    Ok(ctx.object(v))
}

fn opt_i64(body: &Body, key: &str) -> Option<i64> {
    body.get(key)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|x| x as i64)))
}

fn component_from(body: &Body, existing: Option<&Component>) -> ApiResult<Component> {
    let billing_type = body.required_str("billing_type")?.to_string();
    if !BILLING_TYPES.contains(&billing_type.as_str()) {
        return Err(ApiError::field(
            "billing_type",
            format!("\"{billing_type}\" is not a valid choice."),
        ));
    }
    let type_ = body.required_str("type")?.to_string();
    let name = body.required_str("name")?.to_string();
    let limit_period = match body.get("limit_period") {
        Some(Value::String(s))
            if ["month", "quarterly", "annual", "total"].contains(&s.as_str()) =>
        {
            Some(s.clone())
        }
        Some(Value::String(s)) => {
            return Err(ApiError::field(
                "limit_period",
                format!("\"{s}\" is not a valid choice."),
            ));
        }
        _ => existing.and_then(|c| c.limit_period.clone()),
    };
    Ok(Component {
        uuid: existing.map(|c| c.uuid).unwrap_or_else(new_uuid),
        type_,
        name,
        description: body.str("description").unwrap_or_default().to_string(),
        measured_unit: body.str("measured_unit").unwrap_or_default().to_string(),
        billing_type,
        unit_factor: opt_i64(body, "unit_factor").unwrap_or(1),
        limit_period,
        limit_amount: opt_i64(body, "limit_amount"),
        article_code: body.str("article_code").unwrap_or_default().to_string(),
        max_value: opt_i64(body, "max_value"),
        min_value: opt_i64(body, "min_value"),
        max_available_limit: opt_i64(body, "max_available_limit"),
        is_boolean: body
            .get("is_boolean")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        default_limit: opt_i64(body, "default_limit"),
        is_prepaid: body
            .get("is_prepaid")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        is_builtin: existing.is_some_and(|c| c.is_builtin),
    })
}

fn managed_offering<'a>(
    s: &'a mut Store,
    user: &Uuid,
    id: &Uuid,
) -> ApiResult<&'a mut crate::model::Offering> {
    if !s.offerings.contains_key(id) {
        return Err(ApiError::not_found());
    }
    if !s.can_manage_offering(user, id) {
        return Err(ApiError::forbidden());
    }
    let o = s.offerings.get_mut(id).ok_or_else(ApiError::not_found)?;
    if o.state == "Archived" {
        return Err(ApiError::invalid_state(&[
            "Draft",
            "Active",
            "Paused",
            "Unavailable",
        ]));
    }
    Ok(o)
}

async fn create_component(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let c = component_from(&body, None)?;
    let user = ctx.user;
    ctx.mutate(|s| {
        let o = managed_offering(s, &user, &id)?;
        if o.components.iter().any(|x| x.type_ == c.type_) {
            return Err(ApiError::field(
                "type",
                "Component with this type already exists.",
            ));
        }
        o.components.push(c);
        Ok(())
    })?;
    Ok(StatusCode::CREATED.into_response())
}

async fn update_component(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let cid = body
        .uuid_ref("uuid")?
        .ok_or_else(|| ApiError::required("uuid"))?;
    let user = ctx.user;
    ctx.mutate(|s| {
        let o = managed_offering(s, &user, &id)?;
        let idx = o
            .components
            .iter()
            .position(|c| c.uuid == cid)
            .ok_or_else(|| ApiError::field("uuid", "Component not found."))?;
        let c = component_from(&body, Some(&o.components[idx]))?;
        if o.components
            .iter()
            .any(|x| x.type_ == c.type_ && x.uuid != cid)
        {
            return Err(ApiError::field(
                "type",
                "Component with this type already exists.",
            ));
        }
        o.components[idx] = c;
        Ok(())
    })?;
    Ok(ok_empty())
}

async fn remove_component(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let cid = body
        .uuid_ref("uuid")?
        .ok_or_else(|| ApiError::required("uuid"))?;
    let user = ctx.user;
    ctx.mutate(|s| {
        let o = managed_offering(s, &user, &id)?;
        let idx = o
            .components
            .iter()
            .position(|c| c.uuid == cid)
            .ok_or_else(|| ApiError::field("uuid", "Component not found."))?;
        if o.components[idx].is_builtin {
            return Err(ApiError::bare("Built-in components cannot be removed."));
        }
        o.components.remove(idx);
        Ok(())
    })?;
    Ok(ok_empty())
}

async fn update_integration(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let user = ctx.user;
    ctx.mutate(|s| {
        let o = managed_offering(s, &user, &id)?;
        if let Some(Value::Object(p)) = body.get("plugin_options") {
            o.plugin_options.extend(p.clone());
        }
        if let Some(Value::Object(p)) = body.get("secret_options") {
            o.secret_options.extend(p.clone());
        }
        if let Some(Value::Object(p)) = body.get("service_attributes") {
            o.service_attributes = p.clone();
        }
        if let Some(b) = body.str("backend_id") {
            o.backend_id = b.to_string();
        }
        Ok(())
    })?;
    Ok(ok_empty())
}

async fn activate(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let user = ctx.user;
    ctx.mutate(|s| {
        let o = managed_offering(s, &user, &id)?;
        if !matches!(o.state.as_str(), "Draft" | "Paused") {
            return Err(ApiError::invalid_state(&["Draft", "Paused"]));
        }
        o.state = "Active".into();
        Ok(())
    })?;
    Ok(
        axum::Json(json!({"detail": "Offering has been activated.", "state": "Active"}))
            .into_response(),
    )
}

async fn check_unique_backend_id(
    ctx: Ctx,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let backend_id = body.required_str("backend_id")?.to_string();
    let all = body
        .get("check_all_offerings")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let s = ctx.store();
    if !s.offerings.contains_key(&id) {
        return Err(ApiError::not_found());
    }
    if !s.can_manage_offering(&ctx.user, &id) {
        return Err(ApiError::forbidden());
    }
    let customer = s.offerings.get(&id).map(|o| o.customer);
    let taken = s.resources.values().any(|r| {
        r.backend_id == backend_id
            && (r.offering == id
                || all && s.offerings.get(&r.offering).map(|o| o.customer) == customer)
    });
    Ok(
        axum::Json(json!({"is_unique": !taken, "is_valid_format": null, "errors": []}))
            .into_response(),
    )
}

async fn user_attribute_config(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let s = ctx.store();
    let o = s.visible_offering(&ctx.user, &id)?;
    let ts = o.created.to_string();
    Ok(axum::Json(json!({
        "uuid": Uuid::new_v5(&o.uuid, b"user-attribute-config").simple().to_string(),
        "created": ts, "modified": ts,
        "exposed_fields": ["username", "full_name", "email"],
        "is_default": true,
        "offering_uuid": o.uuid.simple().to_string(),
        "offering_name": o.name,
        "expose_full_name": true, "expose_email": true, "expose_username": true,
        "expose_registration_method": false, "expose_organization": false, "expose_organization_country": false,
        "expose_organization_type": false, "expose_organization_registry_code": false,
        "expose_organization_vat_code": false, "expose_organization_address": false, "expose_affiliations": false,
        "expose_phone_number": false, "expose_job_title": false, "expose_gender": false,
        "expose_personal_title": false, "expose_place_of_birth": false, "expose_address": false,
        "expose_country_of_residence": false, "expose_nationality": false, "expose_nationalities": false,
        "expose_eduperson_assurance": false, "expose_identity_source": false, "expose_civil_number": false,
        "expose_birth_date": false, "expose_active_isds": false, "expose_uid_number": false,
        "expose_primary_gid": false,
    })).into_response())
}

async fn offering_accounts(
    ctx: Ctx,
    id: String,
    kind: crate::accounts::AccountKind,
) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let items = {
        let s = ctx.store();
        if !s.offerings.contains_key(&id) {
            return Err(ApiError::not_found());
        }
        if !s.can_manage_offering(&ctx.user, &id) {
            return Err(ApiError::forbidden());
        }
        s.offering_accounts(&id, kind)
    };
    ctx.list(
        items,
        &[
            f("project_uuid", "project_uuid", Kind::Uuid),
            f("state", "state", Kind::Exact),
            f("username", "username", Kind::Exact),
        ],
    )
}

async fn offering_service_accounts(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    offering_accounts(ctx, id, crate::accounts::AccountKind::Service).await
}

async fn offering_course_accounts(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    offering_accounts(ctx, id, crate::accounts::AccountKind::Course).await
}

async fn get_plan(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let s = ctx.store();
    let p = s.plans.get(&id).ok_or_else(ApiError::not_found)?;
    Ok(ctx.object(s.render_plan_details(p)))
}

async fn public_plans(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let items = {
        let s = ctx.store();
        s.visible_offering(&ctx.user, &id)?;
        s.plans
            .values()
            .filter(|p| p.offering == id && !p.archived)
            .map(|p| s.render_plan_base(p))
            .collect()
    };
    ctx.list(items, &[])
}

async fn list_service_providers(ctx: Ctx) -> ApiResult<Response> {
    let items = {
        let s = ctx.store();
        s.service_providers
            .values()
            .map(|sp| s.render_service_provider(sp))
            .collect()
    };
    ctx.list(
        items,
        &[
            f("customer_uuid", "customer_uuid", Kind::Uuid),
            f("customer", "customer_uuid", Kind::Uuid),
        ],
    )
}

fn provider_projects(s: &Store, sp: &Uuid) -> ApiResult<Vec<Uuid>> {
    let sp = s
        .service_providers
        .get(sp)
        .ok_or_else(ApiError::not_found)?;
    Ok(s.resources
        .values()
        .filter(|r| {
            s.offerings
                .get(&r.offering)
                .is_some_and(|o| o.customer == sp.customer)
        })
        .map(|r| r.project)
        .collect::<indexmap::IndexSet<_>>()
        .into_iter()
        .collect())
}

async fn provider_keys(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let items = {
        let s = ctx.store();
        let projects = provider_projects(&s, &id)?;
        let users: Vec<Uuid> = s
            .project_roles
            .iter()
            .filter(|r| projects.contains(&r.project))
            .map(|r| r.user)
            .collect();
        s.ssh_keys
            .values()
            .filter(|k| users.contains(&k.user))
            .map(|k| s.render_ssh_key(k))
            .collect()
    };
    ctx.list(items, &[f("user_uuid", "user_uuid", Kind::Uuid)])
}

async fn provider_project_list(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let items: Vec<Value> = {
        let s = ctx.store();
        let projects = provider_projects(&s, &id)?;
        let query = ctx.params.get("query").map(str::to_lowercase);
        projects
            .iter()
            .filter_map(|p| s.projects.get(p))
            .filter(|p| {
                query.as_ref().is_none_or(|q| {
                    p.uuid.simple().to_string() == *q || p.name.to_lowercase().contains(q.as_str())
                })
            })
            .map(|p| s.render_project(p))
            .collect()
    };
    ctx.list(items, &[])
}

async fn users_me(ctx: Ctx) -> ApiResult<Response> {
    let s = ctx.store();
    let u = s.user(&ctx.user)?;
    Ok(ctx.object(s.render_user(u, true)))
}

async fn list_users(ctx: Ctx) -> ApiResult<Response> {
    let items = {
        let s = ctx.store();
        let staff = s.is_staff(&ctx.user);
        let project_filter = ctx
            .params
            .get("project_uuid")
            .and_then(crate::query::parse_uuid_ref);
        s.users
            .values()
            .filter(|u| {
                staff
                    || u.uuid == ctx.user
                    || s.project_roles
                        .iter()
                        .any(|r| r.user == u.uuid && s.can_access_project(&ctx.user, &r.project))
            })
            .filter(|u| {
                project_filter.is_none_or(|p| {
                    s.project_roles
                        .iter()
                        .any(|r| r.user == u.uuid && r.project == p)
                })
            })
            .map(|u| s.render_user(u, false))
            .collect()
    };
    ctx.list(
        items,
        &[
            f("username", "username", Kind::Exact),
            f("email", "email", Kind::Exact),
            f("full_name", "full_name", Kind::Contains),
            f("is_active", "is_active", Kind::Bool),
            f("query", "username", Kind::Contains),
        ],
    )
}

async fn get_user(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let s = ctx.store();
    if !(s.is_staff(&ctx.user)
        || id == ctx.user
        || s.project_roles
            .iter()
            .any(|r| r.user == id && s.can_access_project(&ctx.user, &r.project)))
    {
        return Err(ApiError::not_found());
    }
    let u = s.user(&id)?;
    Ok(ctx.object(s.render_user(u, false)))
}

async fn version(_ctx: Ctx) -> ApiResult<Response> {
    Ok(axum::Json(json!({"version": crate::MASTERMIND_VERSION})).into_response())
}

async fn list_projects(ctx: Ctx) -> ApiResult<Response> {
    let items = {
        let s = ctx.store();
        s.projects
            .values()
            .filter(|p| {
                s.can_access_project(&ctx.user, &p.uuid)
                    || s.managed_offerings(&ctx.user).iter().any(|o| {
                        s.resources
                            .values()
                            .any(|r| &r.offering == o && r.project == p.uuid)
                    })
            })
            .map(|p| s.render_project(p))
            .collect()
    };
    ctx.list(
        items,
        &[
            f("slug", "slug", Kind::Exact),
            f("name", "name", Kind::Contains),
            f("name_exact", "name", Kind::Exact),
            f("customer", "customer_uuid", Kind::Uuid),
            f("customer_uuid", "customer_uuid", Kind::Uuid),
            f("backend_id", "backend_id", Kind::Exact),
        ],
    )
}

async fn get_project(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let s = ctx.store();
    let visible = s.can_access_project(&ctx.user, &id)
        || s.resources
            .values()
            .any(|r| r.project == id && s.can_manage_offering(&ctx.user, &r.offering));
    let p = s
        .projects
        .get(&id)
        .filter(|_| visible)
        .ok_or_else(ApiError::not_found)?;
    Ok(ctx.object(s.render_project(p)))
}

fn role_body(body: &Body) -> ApiResult<(Uuid, String, Option<String>)> {
    let user = body
        .uuid_ref("user")?
        .ok_or_else(|| ApiError::required("user"))?;
    let role = body.required_str("role")?.to_string();
    let exp = body.str("expiration_time").map(str::to_string);
    Ok((user, role, exp))
}

async fn add_user(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let project = path_uuid(&id)?;
    let (user, role, exp) = role_body(&body)?;
    let actor = ctx.user;
    let e = exp.clone();
    ctx.mutate(|s| s.add_project_user(actor, project, user, &role, e))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"expiration_time": exp})),
    )
        .into_response())
}

async fn delete_user(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let project = path_uuid(&id)?;
    let (user, role, _) = role_body(&body)?;
    let actor = ctx.user;
    ctx.mutate(|s| s.remove_project_user(actor, project, user, &role))?;
    Ok(ok_empty())
}

async fn project_list_users(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let project = path_uuid(&id)?;
    let items = {
        let s = ctx.store();
        if !s.can_access_project(&ctx.user, &project) {
            return Err(ApiError::not_found());
        }
        s.project_roles
            .iter()
            .filter(|r| r.project == project)
            .map(|r| s.render_user_role(r))
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

async fn sync_project_user_roles(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let project = path_uuid(&id)?;
    let actor = ctx.user;
    ctx.mutate(|s| {
        if !s.is_staff(&actor) {
            return Err(ApiError::forbidden());
        }
        let p = s
            .projects
            .get(&project)
            .cloned()
            .ok_or_else(ApiError::not_found)?;
        let offerings: indexmap::IndexSet<Uuid> = s
            .resources
            .values()
            .filter(|r| r.project == project && r.state != "Terminated")
            .map(|r| r.offering)
            .collect();
        for o in offerings {
            s.emit(
                &o,
                "user_role",
                json!({"project_uuid": p.uuid.simple().to_string(), "project_name": p.name}),
            );
        }
        Ok(())
    })?;
    Ok(ok_empty())
}

async fn list_customers(ctx: Ctx) -> ApiResult<Response> {
    let items = {
        let s = ctx.store();
        s.customers
            .values()
            .filter(|c| {
                s.is_staff(&ctx.user)
                    || c.owners.contains(&ctx.user)
                    || s.projects
                        .values()
                        .any(|p| p.customer == c.uuid && s.can_access_project(&ctx.user, &p.uuid))
            })
            .map(|c| s.render_customer(c))
            .collect()
    };
    ctx.list(
        items,
        &[
            f("name", "name", Kind::Contains),
            f("slug", "slug", Kind::Exact),
        ],
    )
}

async fn get_customer(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let s = ctx.store();
    let c = s
        .customers
        .get(&id)
        .filter(|c| s.is_staff(&ctx.user) || c.owners.contains(&ctx.user))
        .ok_or_else(ApiError::not_found)?;
    Ok(ctx.object(s.render_customer(c)))
}

async fn list_roles(ctx: Ctx) -> ApiResult<Response> {
    let items = ["CUSTOMER.OWNER", "PROJECT.ADMIN", "PROJECT.MANAGER", "PROJECT.MEMBER"]
        .iter()
        .map(|name| {
            let ct = if name.starts_with("CUSTOMER") { "customer" } else { "project" };
            json!({
                "uuid": Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()).simple().to_string(),
                "name": name, "description": name, "description_en": name,
                "description_et": null, "description_lt": null, "description_lv": null, "description_ru": null,
                "description_it": null, "description_de": null, "description_da": null, "description_sv": null,
                "description_es": null, "description_fr": null, "description_nb": null, "description_ar": null,
                "description_cs": null, "description_km": null,
                "permissions": [], "is_system_role": true, "is_active": true, "users_count": 0,
                "content_type": ct, "template_uuid": null, "template_name": null, "customer_uuid": null, "customer_name": null,
            })
        })
        .collect();
    ctx.list(
        items,
        &[
            f("name", "name", Kind::Exact),
            f("content_type", "content_type", Kind::Exact),
        ],
    )
}

async fn list_keys(ctx: Ctx) -> ApiResult<Response> {
    let items = {
        let s = ctx.store();
        s.ssh_keys.values().map(|k| s.render_ssh_key(k)).collect()
    };
    ctx.list(
        items,
        &[
            f("user_uuid", "user_uuid", Kind::Uuid),
            f("name", "name", Kind::Exact),
        ],
    )
}

pub fn routes() -> Router<AppState> {
    let o = "/api/marketplace-provider-offerings";
    Router::new()
        .route(&format!("{o}/"), get(list_offerings).head(list_offerings))
        .route(&format!("{o}/{{uuid}}/"), get(get_offering))
        .route(
            &format!("{o}/{{uuid}}/create_offering_component/"),
            post(create_component),
        )
        .route(
            &format!("{o}/{{uuid}}/update_offering_component/"),
            post(update_component),
        )
        .route(
            &format!("{o}/{{uuid}}/remove_offering_component/"),
            post(remove_component),
        )
        .route(
            &format!("{o}/{{uuid}}/update_integration/"),
            post(update_integration),
        )
        .route(&format!("{o}/{{uuid}}/activate/"), post(activate))
        .route(
            &format!("{o}/{{uuid}}/check_unique_backend_id/"),
            post(check_unique_backend_id),
        )
        .route(
            &format!("{o}/{{uuid}}/user-attribute-config/"),
            get(user_attribute_config),
        )
        .route(
            &format!("{o}/{{uuid}}/list_project_service_accounts/"),
            get(offering_service_accounts),
        )
        .route(
            &format!("{o}/{{uuid}}/list_course_accounts/"),
            get(offering_course_accounts),
        )
        .route(
            "/api/marketplace-public-offerings/{uuid}/",
            get(get_offering),
        )
        .route(
            "/api/marketplace-public-offerings/{uuid}/plans/",
            get(public_plans),
        )
        .route("/api/marketplace-plans/{uuid}/", get(get_plan))
        .route("/api/marketplace-public-plans/{uuid}/", get(get_plan))
        .route(
            "/api/marketplace-service-providers/",
            get(list_service_providers),
        )
        .route(
            "/api/marketplace-service-providers/{uuid}/keys/",
            get(provider_keys),
        )
        .route(
            "/api/marketplace-service-providers/{uuid}/projects/",
            get(provider_project_list),
        )
        .route("/api/users/me/", get(users_me))
        .route("/api/users/", get(list_users))
        .route("/api/users/{uuid}/", get(get_user))
        .route("/api/version/", get(version))
        .route("/api/projects/", get(list_projects))
        .route("/api/projects/{uuid}/", get(get_project))
        .route("/api/projects/{uuid}/add_user/", post(add_user))
        .route("/api/projects/{uuid}/delete_user/", post(delete_user))
        .route("/api/projects/{uuid}/list_users/", get(project_list_users))
        .route(
            "/api/projects/{uuid}/sync_user_roles/",
            post(sync_project_user_roles),
        )
        .route("/api/customers/", get(list_customers))
        .route("/api/customers/{uuid}/", get(get_customer))
        .route("/api/roles/", get(list_roles))
        .route("/api/keys/", get(list_keys))
}
