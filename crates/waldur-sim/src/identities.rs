//! Site-agent identities, services and processors (§7.5), event subscriptions and their queues
//! (§7.3), plus the event-mode extras (backend resources and requests).

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{AppState, Body, Ctx, Kind, created, f, path_uuid, status_ok};
use crate::broker::BrokerError;
use crate::error::{ApiError, ApiResult};
use crate::model::*;
use crate::store::{Store, new_uuid, now};

pub const OBJECT_TYPES: &[&str] = &[
    "order",
    "user_role",
    "resource",
    "offering_user",
    "importable_resources",
    "service_account",
    "course_account",
    "resource_periodic_limits",
    "offering_resources_sync",
    "resource_api_key_rotation",
    "resource_end_date_change_request",
    "user_profile",
    "user_ssh_key",
    "user_lifecycle",
];

fn respond(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

impl Store {
    fn identity_for(&self, user: &Uuid, id: &Uuid) -> ApiResult<AgentIdentity> {
        let i = self
            .identities
            .get(id)
            .filter(|i| self.can_manage_offering(user, &i.offering))
            .ok_or_else(ApiError::not_found)?;
        Ok(i.clone())
    }
}

fn identity_fields(body: &Body, identity: &mut AgentIdentity) {
    if let Some(v) = body.str("version") {
        identity.version = Some(v.to_string());
    }
    if let Some(Value::Array(d)) = body.get("dependencies") {
        identity.dependencies = d.clone();
    }
    if let Some(v) = body.str("config_file_path") {
        identity.config_file_path = Some(v.to_string());
    }
    if let Some(v) = body.str("config_file_content") {
        identity.config_file_content = Some(v.to_string());
    }
    if let Some(t) = body.str("last_restarted").and_then(|s| s.parse().ok()) {
        identity.last_restarted = t;
    }
}

async fn list_identities(ctx: Ctx) -> ApiResult<Response> {
    let items = {
        let s = ctx.store();
        s.identities
            .values()
            .filter(|i| s.can_manage_offering(&ctx.user, &i.offering))
            .map(|i| s.render_identity(i))
            .collect()
    };
    ctx.list(
        items,
        &[
            f("offering_uuid", "offering", Kind::Uuid),
            f("name", "name", Kind::Exact),
            f("version", "version", Kind::Exact),
        ],
    )
}

async fn create_identity(ctx: Ctx, body: Body) -> ApiResult<Response> {
    let offering = body
        .uuid_ref("offering")?
        .ok_or_else(|| ApiError::required("offering"))?;
    let name = body.required_str("name")?.to_string();
    let user = ctx.user;
    let v = ctx.mutate(|s| {
        if !s.offerings.contains_key(&offering) {
            return Err(ApiError::field("offering", "Object does not exist."));
        }
        if !s.can_manage_offering(&user, &offering) {
            return Err(ApiError::forbidden());
        }
        if s.identities
            .values()
            .any(|i| i.offering == offering && i.name == name)
        {
            return Err(ApiError::field(
                "name",
                "Agent identity with this name already exists for the offering.",
            ));
        }
        let ts = now();
        let mut i = AgentIdentity {
            uuid: new_uuid(),
            offering,
            name,
            created_by: user,
            version: None,
            dependencies: vec![],
            config_file_path: None,
            config_file_content: None,
            last_restarted: ts,
            created: ts,
            modified: ts,
        };
        identity_fields(&body, &mut i);
        let v = s.render_identity(&i);
        s.identities.insert(i.uuid, i);
        Ok(v)
    })?;
    Ok(created(v))
}

async fn get_identity(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let s = ctx.store();
    let i = s.identity_for(&ctx.user, &id)?;
    Ok(ctx.object(s.render_identity(&i)))
}

async fn update_identity(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let user = ctx.user;
    let v = ctx.mutate(|s| {
        let mut i = s.identity_for(&user, &id)?;
        if let Some(n) = body.str("name") {
            i.name = n.to_string();
        }
        identity_fields(&body, &mut i);
        i.modified = now();
        let v = s.render_identity(&i);
        s.identities.insert(id, i);
        Ok(v)
    })?;
    Ok(axum::Json(v).into_response())
}

async fn delete_identity(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let user = ctx.user;
    let removed_queues = ctx.mutate(|s| {
        s.identity_for(&user, &id)?;
        s.identities.shift_remove(&id);
        let services: Vec<Uuid> = s
            .services
            .values()
            .filter(|x| x.identity == id)
            .map(|x| x.uuid)
            .collect();
        s.services.retain(|_, x| x.identity != id);
        s.processors.retain(|_, p| !services.contains(&p.service));
        let queues: Vec<AgentQueue> = s
            .agent_queues
            .values()
            .filter(|q| q.identity == id)
            .cloned()
            .collect();
        s.agent_queues.retain(|_, q| q.identity != id);
        Ok(queues)
    })?;
    if let Some(rmq) = &ctx.state.rabbit {
        for q in removed_queues {
            let vhost = q.user.simple().to_string();
            let cleanup = async {
                rmq.delete_queue(&vhost, &q.queue_name()).await?;
                rmq.delete_user(&q.consumer_uuid.simple().to_string()).await
            };
            if let Err(e) = cleanup.await {
                tracing::warn!(error = %e, "RabbitMQ cleanup of a deleted identity's queue failed");
            }
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn register_service(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let name = body.required_str("name")?.to_string();
    let mode = body.str("mode").map(str::to_string);
    let user = ctx.user;
    let (status, v) = ctx.mutate(|s| {
        s.identity_for(&user, &id)?;
        let ts = now();
        if let Some(svc) = s
            .services
            .values_mut()
            .find(|x| x.identity == id && x.name == name)
        {
            svc.state = "Active".into();
            svc.modified = ts;
            if mode.is_some() {
                svc.mode = mode;
            }
            let svc = svc.clone();
            return Ok((StatusCode::OK, s.render_service(&svc)));
        }
        let svc = AgentService {
            uuid: new_uuid(),
            identity: id,
            name,
            mode,
            state: "Active".into(),
            statistics: Json::new(),
            created: ts,
            modified: ts,
        };
        let v = s.render_service(&svc);
        s.services.insert(svc.uuid, svc);
        Ok((StatusCode::CREATED, v))
    })?;
    Ok(respond(status, v))
}

impl Store {
    fn service_for(&self, user: &Uuid, id: &Uuid) -> ApiResult<AgentService> {
        let svc = self.services.get(id).ok_or_else(ApiError::not_found)?;
        self.identity_for(user, &svc.identity)?;
        Ok(svc.clone())
    }
}

async fn register_processor(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let name = body.required_str("name")?.to_string();
    let backend_type = body.required_str("backend_type")?.to_string();
    let backend_version = body.str("backend_version").map(str::to_string);
    let user = ctx.user;
    let (status, v) = ctx.mutate(|s| {
        s.service_for(&user, &id)?;
        let ts = now();
        // Every call is a heartbeat: last_run moves to now.
        if let Some(p) = s
            .processors
            .values_mut()
            .find(|p| p.service == id && p.name == name)
        {
            p.last_run = ts;
            p.modified = ts;
            p.backend_type = backend_type;
            p.backend_version = backend_version;
            let p = p.clone();
            return Ok((StatusCode::OK, s.render_processor(&p, false)));
        }
        let p = AgentProcessor {
            uuid: new_uuid(),
            service: id,
            name,
            backend_type,
            backend_version,
            last_run: ts,
            created: ts,
            modified: ts,
        };
        let v = s.render_processor(&p, false);
        s.processors.insert(p.uuid, p);
        Ok((StatusCode::CREATED, v))
    })?;
    Ok(respond(status, v))
}

async fn set_statistics(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let Some(Value::Object(stats)) = body.get("statistics").cloned() else {
        return Err(ApiError::required("statistics"));
    };
    let user = ctx.user;
    let v = ctx.mutate(|s| {
        s.service_for(&user, &id)?;
        let svc = s.services.get_mut(&id).ok_or_else(ApiError::not_found)?;
        svc.statistics = stats;
        svc.modified = now();
        let svc = svc.clone();
        Ok(s.render_service(&svc))
    })?;
    Ok(axum::Json(v).into_response())
}

async fn list_services(ctx: Ctx) -> ApiResult<Response> {
    let items = {
        let s = ctx.store();
        s.services
            .values()
            .filter(|x| s.identity_for(&ctx.user, &x.identity).is_ok())
            .map(|x| s.render_service(x))
            .collect()
    };
    ctx.list(
        items,
        &[
            f("identity_uuid", "identity", Kind::Uuid),
            f("mode", "mode", Kind::Exact),
            f("state", "state", Kind::Choice(&["Active", "Idle", "Error"])),
        ],
    )
}

async fn list_processors(ctx: Ctx) -> ApiResult<Response> {
    let items = {
        let s = ctx.store();
        s.processors
            .values()
            .filter(|p| s.service_for(&ctx.user, &p.service).is_ok())
            .map(|p| s.render_processor(p, false))
            .collect()
    };
    ctx.list(
        items,
        &[
            f("service_uuid", "service", Kind::Uuid),
            f("backend_type", "backend_type", Kind::Exact),
        ],
    )
}

// ---- event subscriptions -------------------------------------------------------------------

/// Mastermind fails the request when RabbitMQ cannot be configured (an unhandled error: 500).
fn provisioning_failed(e: BrokerError) -> ApiError {
    tracing::error!(error = %e, "RabbitMQ provisioning failed");
    ApiError::detail(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Unable to configure the event queue in RabbitMQ.",
    )
}

/// The RMQ password is the caller's API token (§7.3).
fn caller_token(ctx: &Ctx) -> String {
    ctx.store()
        .users
        .get(&ctx.user)
        .map(|u| u.token.clone())
        .unwrap_or_default()
}

/// Vhost `user.uuid.hex`, RMQ user `subscription.uuid.hex`; undone in the store on failure.
async fn provision_subscription(ctx: &Ctx, sub: Uuid) -> ApiResult<()> {
    let Some(rmq) = &ctx.state.rabbit else {
        return Ok(());
    };
    let token = caller_token(ctx);
    let vhost = ctx.user.simple().to_string();
    if let Err(e) = rmq
        .provision_user(&vhost, &sub.simple().to_string(), &token)
        .await
    {
        ctx.mutate(|s| {
            s.subscriptions.shift_remove(&sub);
            Ok(())
        })?;
        return Err(provisioning_failed(e));
    }
    Ok(())
}

fn create_subscription(
    s: &mut Store,
    user: Uuid,
    description: String,
    objects: Vec<Value>,
) -> EventSubscription {
    let ts = now();
    let sub = EventSubscription {
        uuid: new_uuid(),
        user,
        description,
        observable_objects: objects,
        created: ts,
        modified: ts,
    };
    s.subscriptions.insert(sub.uuid, sub.clone());
    sub
}

async fn register_event_subscription(
    ctx: Ctx,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let object_type = body.required_str("observable_object_type")?.to_string();
    if !OBJECT_TYPES.contains(&object_type.as_str()) {
        return Err(ApiError::field(
            "observable_object_type",
            format!("\"{object_type}\" is not a valid choice."),
        ));
    }
    let description = body.str("description").unwrap_or_default().to_string();
    let user = ctx.user;
    let objects = vec![json!({"object_type": object_type})];
    let existing = {
        let s = ctx.store();
        s.identity_for(&user, &id)?;
        s.subscriptions
            .values()
            .find(|x| x.user == user && x.observable_objects == objects)
            .map(|x| x.uuid)
    };
    // An existing subscription is reused only while its RMQ user is alive; else it is replaced.
    if let (Some(sub), Some(rmq)) = (existing, &ctx.state.rabbit) {
        let alive = rmq
            .user_exists(&sub.simple().to_string())
            .await
            .map_err(provisioning_failed)?;
        if !alive {
            ctx.mutate(|s| {
                s.subscriptions.shift_remove(&sub);
                s.subscription_queues.retain(|_, q| q.subscription != sub);
                Ok(())
            })?;
        }
    }
    let (status, v, sub) = ctx.mutate(|s| {
        if let Some(existing) = s
            .subscriptions
            .values()
            .find(|x| x.user == user && x.observable_objects == objects)
        {
            return Ok((
                StatusCode::OK,
                s.render_subscription(existing),
                existing.uuid,
            ));
        }
        let sub = create_subscription(s, user, description, objects.clone());
        Ok((StatusCode::CREATED, s.render_subscription(&sub), sub.uuid))
    })?;
    if status == StatusCode::CREATED {
        provision_subscription(&ctx, sub).await?;
    }
    Ok(respond(status, v))
}

async fn register_queue(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let types: Option<Vec<String>> = match body.get("object_types") {
        None => None,
        Some(Value::Array(a)) => {
            let mut out = vec![];
            for t in a {
                let t = t.as_str().unwrap_or_default();
                if !OBJECT_TYPES.contains(&t) {
                    return Err(ApiError::field(
                        "object_types",
                        format!("\"{t}\" is not a valid choice."),
                    ));
                }
                out.push(t.to_string());
            }
            Some(out)
        }
        Some(_) => return Err(ApiError::field("object_types", "Expected a list of items.")),
    };
    let user = ctx.user;
    let (status, q) = ctx.mutate(|s| {
        s.identity_for(&user, &id)?;
        let status = if let Some(q) = s.agent_queues.values_mut().find(|q| q.identity == id) {
            if q.user != user {
                return Err(ApiError::conflict(
                    "This identity's queue was registered by another user.",
                ));
            }
            if let Some(t) = types {
                q.object_types = t;
            }
            StatusCode::OK
        } else {
            let q = AgentQueue {
                consumer_uuid: new_uuid(),
                identity: id,
                user,
                object_types: types.unwrap_or_default(),
            };
            s.agent_queues.insert(q.consumer_uuid, q);
            StatusCode::CREATED
        };
        let q = s
            .agent_queues
            .values()
            .find(|q| q.identity == id)
            .ok_or_else(ApiError::not_found)?;
        Ok((status, q.clone()))
    })?;
    let rmq_username = q.consumer_uuid.simple().to_string();
    let vhost = q.user.simple().to_string();
    if let Some(rmq) = &ctx.state.rabbit {
        // Also on 200: that path resets the RMQ password to the caller's current token.
        let token = caller_token(&ctx);
        let provisioned = async {
            rmq.provision_user(&vhost, &rmq_username, &token).await?;
            rmq.declare_queue(&vhost, &q.queue_name()).await
        };
        if let Err(e) = provisioned.await {
            if status == StatusCode::CREATED {
                ctx.mutate(|s| {
                    s.agent_queues.shift_remove(&q.consumer_uuid);
                    Ok(())
                })?;
            }
            return Err(provisioning_failed(e));
        }
    }
    Ok(respond(
        status,
        json!({
            "rmq_username": rmq_username,
            "queue_name": q.queue_name(),
            "vhost": vhost,
            "observable_object_types": q.object_types,
        }),
    ))
}

async fn list_subscriptions(ctx: Ctx) -> ApiResult<Response> {
    let items = {
        let s = ctx.store();
        s.subscriptions
            .values()
            .filter(|x| x.user == ctx.user || s.is_staff(&ctx.user))
            .map(|x| s.render_subscription(x))
            .collect()
    };
    ctx.list(
        items,
        &[
            f("user_uuid", "user_uuid", Kind::Uuid),
            f("user_username", "user_username", Kind::Exact),
        ],
    )
}

async fn post_subscription(ctx: Ctx, body: Body) -> ApiResult<Response> {
    let objects = match body.get("observable_objects") {
        Some(Value::Array(a)) => a.clone(),
        None => vec![],
        Some(_) => {
            return Err(ApiError::field(
                "observable_objects",
                "Expected a list of items.",
            ));
        }
    };
    let description = body.str("description").unwrap_or_default().to_string();
    let user = ctx.user;
    let (v, sub) = ctx.mutate(|s| {
        let sub = create_subscription(s, user, description, objects);
        Ok((s.render_subscription(&sub), sub.uuid))
    })?;
    provision_subscription(&ctx, sub).await?;
    Ok(created(v))
}

fn own_subscription(s: &Store, user: &Uuid, id: &Uuid) -> ApiResult<EventSubscription> {
    s.subscriptions
        .get(id)
        .filter(|x| &x.user == user || s.is_staff(user))
        .cloned()
        .ok_or_else(ApiError::not_found)
}

async fn get_subscription(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let s = ctx.store();
    let sub = own_subscription(&s, &ctx.user, &id)?;
    Ok(ctx.object(s.render_subscription(&sub)))
}

async fn delete_subscription(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let user = ctx.user;
    let (owner, last_use_of_vhost) = ctx.mutate(|s| {
        let sub = own_subscription(s, &user, &id)?;
        s.subscriptions.shift_remove(&id);
        s.subscription_queues.retain(|_, q| q.subscription != id);
        let vhost_in_use = s.subscriptions.values().any(|x| x.user == sub.user)
            || s.agent_queues.values().any(|q| q.user == sub.user);
        Ok((sub.user, !vhost_in_use))
    })?;
    if let Some(rmq) = &ctx.state.rabbit {
        // Mastermind deletes the RMQ user, and the vhost with the user's last subscription.
        let cleanup = async {
            rmq.delete_user(&id.simple().to_string()).await?;
            if last_use_of_vhost {
                rmq.delete_vhost(&owner.simple().to_string()).await?;
            }
            Ok::<_, BrokerError>(())
        };
        if let Err(e) = cleanup.await {
            tracing::warn!(error = %e, "RabbitMQ cleanup of a deleted subscription failed");
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_queue(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let offering = body
        .uuid_ref("offering_uuid")?
        .ok_or_else(|| ApiError::required("offering_uuid"))?;
    let object_type = body.required_str("object_type")?.to_string();
    if !OBJECT_TYPES.contains(&object_type.as_str()) {
        return Err(ApiError::field(
            "object_type",
            format!("\"{object_type}\" is not a valid choice."),
        ));
    }
    let user = ctx.user;
    let (status, v, queue, vhost) = ctx.mutate(|s| {
        let sub = own_subscription(s, &user, &id)?;
        let vhost = sub.user.simple().to_string();
        if !s.offerings.contains_key(&offering) {
            return Err(ApiError::field("offering_uuid", "Offering not found."));
        }
        if let Some(q) = s.subscription_queues.values().find(|q| {
            q.subscription == id && q.offering == offering && q.object_type == object_type
        }) {
            return Ok((
                StatusCode::OK,
                s.render_subscription_queue(q),
                q.clone(),
                vhost,
            ));
        }
        let q = SubscriptionQueue {
            uuid: new_uuid(),
            subscription: id,
            offering,
            object_type,
            created: now(),
        };
        let v = s.render_subscription_queue(&q);
        s.subscription_queues.insert(q.uuid, q.clone());
        Ok((StatusCode::CREATED, v, q, vhost))
    })?;
    if let Some(rmq) = &ctx.state.rabbit {
        // Redeclaring an existing queue with the same arguments is a no-op, so 200 does it too.
        if let Err(e) = rmq.declare_queue(&vhost, &queue.queue_name()).await {
            if status == StatusCode::CREATED {
                ctx.mutate(|s| {
                    s.subscription_queues.shift_remove(&queue.uuid);
                    Ok(())
                })?;
            }
            return Err(provisioning_failed(e));
        }
    }
    Ok(respond(status, v))
}

async fn list_queues(ctx: Ctx) -> ApiResult<Response> {
    let items = {
        let s = ctx.store();
        s.subscription_queues
            .values()
            .filter(|q| own_subscription(&s, &ctx.user, &q.subscription).is_ok())
            .map(|q| s.render_subscription_queue(q))
            .collect()
    };
    ctx.list(
        items,
        &[
            f(
                "event_subscription_uuid",
                "event_subscription_uuid",
                Kind::Uuid,
            ),
            f("offering_uuid", "offering_uuid", Kind::Uuid),
            f("object_type", "object_type", Kind::Exact),
        ],
    )
}

// ---- backend resources (resource import) ---------------------------------------------------

async fn list_backend_resources(ctx: Ctx) -> ApiResult<Response> {
    let items = {
        let s = ctx.store();
        s.backend_resources
            .values()
            .filter(|b| s.can_manage_offering(&ctx.user, &b.offering))
            .map(|b| s.render_backend_resource(b))
            .collect()
    };
    ctx.list(
        items,
        &[
            f("offering_uuid", "offering", Kind::Uuid),
            f("project_uuid", "project", Kind::Uuid),
            f("backend_id", "backend_id", Kind::Exact),
            f("name", "name", Kind::Contains),
            f("name_exact", "name", Kind::Exact),
        ],
    )
}

async fn create_backend_resource(ctx: Ctx, body: Body) -> ApiResult<Response> {
    let name = body.required_str("name")?.to_string();
    let project = body
        .uuid_ref("project")?
        .ok_or_else(|| ApiError::required("project"))?;
    let offering = body
        .uuid_ref("offering")?
        .ok_or_else(|| ApiError::required("offering"))?;
    let backend_id = body.str("backend_id").unwrap_or_default().to_string();
    let backend_metadata = body.obj("backend_metadata")?;
    let user = ctx.user;
    let v = ctx.mutate(|s| {
        if !s.projects.contains_key(&project) {
            return Err(ApiError::field("project", "Object does not exist."));
        }
        if !s.offerings.contains_key(&offering) {
            return Err(ApiError::field("offering", "Object does not exist."));
        }
        if !s.can_manage_offering(&user, &offering) {
            return Err(ApiError::forbidden());
        }
        let b = BackendResource {
            uuid: new_uuid(),
            name,
            project,
            offering,
            backend_id,
            backend_metadata,
            created: now(),
        };
        let v = s.render_backend_resource(&b);
        s.backend_resources.insert(b.uuid, b);
        Ok(v)
    })?;
    Ok(created(v))
}

fn request_for(s: &Store, user: &Uuid, id: &Uuid) -> ApiResult<BackendResourceRequest> {
    s.backend_resource_requests
        .get(id)
        .filter(|r| s.can_manage_offering(user, &r.offering))
        .cloned()
        .ok_or_else(ApiError::not_found)
}

async fn get_request(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let s = ctx.store();
    let r = request_for(&s, &ctx.user, &id)?;
    Ok(ctx.object(s.render_backend_resource_request(&r)))
}

async fn request_action(
    ctx: Ctx,
    Path((id, action)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let user = ctx.user;
    ctx.mutate(|s| {
        let r = request_for(s, &user, &id)?;
        let (valid, target): (&[&str], &str) = match action.as_str() {
            "start_processing" => (&["Sent"], "Processing"),
            "set_done" => (&["Processing"], "Done"),
            "set_erred" => (&["Sent", "Processing"], "Erred"),
            _ => return Err(ApiError::not_found()),
        };
        if !valid.contains(&r.state.as_str()) {
            return Err(ApiError::invalid_state(valid));
        }
        let ts = now();
        let req = s
            .backend_resource_requests
            .get_mut(&id)
            .ok_or_else(ApiError::not_found)?;
        req.state = target.into();
        req.modified = ts;
        match target {
            "Processing" => req.started = Some(ts),
            _ => req.finished = Some(ts),
        }
        if target == "Erred" {
            req.error_message = body.str("error_message").unwrap_or_default().into();
            req.error_traceback = body.str("error_traceback").unwrap_or_default().into();
        }
        Ok(())
    })?;
    Ok(status_ok("OK"))
}

async fn empty_list(ctx: Ctx) -> ApiResult<Response> {
    // Features the simulator does not model (API keys, periodic policies): an honest empty list.
    ctx.list(vec![], &[])
}

async fn agent_logs(_ctx: Ctx, _body: Body) -> ApiResult<Response> {
    Ok(StatusCode::CREATED.into_response())
}

pub fn routes() -> Router<AppState> {
    let i = "/api/marketplace-site-agent-identities";
    Router::new()
        .route(&format!("{i}/"), get(list_identities).post(create_identity))
        .route(
            &format!("{i}/{{uuid}}/"),
            get(get_identity)
                .put(update_identity)
                .delete(delete_identity),
        )
        .route(
            &format!("{i}/{{uuid}}/register_service/"),
            post(register_service),
        )
        .route(
            &format!("{i}/{{uuid}}/register_event_subscription/"),
            post(register_event_subscription),
        )
        .route(
            &format!("{i}/{{uuid}}/register_queue/"),
            post(register_queue),
        )
        .route("/api/marketplace-site-agent-services/", get(list_services))
        .route(
            "/api/marketplace-site-agent-services/{uuid}/register_processor/",
            post(register_processor),
        )
        .route(
            "/api/marketplace-site-agent-services/{uuid}/set_statistics/",
            post(set_statistics),
        )
        .route(
            "/api/marketplace-site-agent-processors/",
            get(list_processors),
        )
        .route("/api/marketplace-site-agent-logs/", post(agent_logs))
        .route(
            "/api/event-subscriptions/",
            get(list_subscriptions).post(post_subscription),
        )
        .route(
            "/api/event-subscriptions/{uuid}/",
            get(get_subscription).delete(delete_subscription),
        )
        .route(
            "/api/event-subscriptions/{uuid}/create_queue/",
            post(create_queue),
        )
        .route("/api/event-subscription-queues/", get(list_queues))
        .route(
            "/api/backend-resources/",
            get(list_backend_resources).post(create_backend_resource),
        )
        .route("/api/backend-resource-requests/{uuid}/", get(get_request))
        .route(
            "/api/backend-resource-requests/{uuid}/{action}/",
            post(request_action),
        )
        .route("/api/marketplace-resource-api-keys/", get(empty_list))
        .route(
            "/api/marketplace-slurm-periodic-usage-policies/",
            get(empty_list),
        )
}
