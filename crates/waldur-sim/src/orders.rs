//! Marketplace orders (§2): creation by consumers, the order state machine, provider and agent
//! actions, and the resource transitions each outcome causes.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{AppState, Body, Ctx, Filter, Kind, created, f, ok_empty, path_uuid, status_ok};
use crate::error::{ApiError, ApiResult};
use crate::model::{Component, Json, Order, PlanPeriod, Resource};
use crate::store::{SITE_AGENT_OFFERING, Store, new_uuid, now};

pub const ORDER_STATES: &[&str] = &[
    "pending-consumer",
    "pending-provider",
    "pending-project",
    "pending-start-date",
    "executing",
    "done",
    "erred",
    "canceled",
    "rejected",
];
pub const ORDER_TYPES: &[&str] = &["Create", "Update", "Terminate", "Restore"];
const TERMINAL: &[&str] = &["done", "erred", "canceled", "rejected"];
/// Offering types whose pending orders are announced on the event bus (§7.4).
const PENDING_EVENT_TYPES: &[&str] = &[
    "Marketplace.Slurm",
    "Marketplace.Script",
    "OpenStack.Tenant",
    "Marketplace.Basic",
];
/// Offering types that accept `set_state_done` / `set_state_erred`.
const AGENT_DONE_TYPES: &[&str] = &["Marketplace.Slurm", "Marketplace.Basic", "Support"];

pub struct NewOrder {
    pub offering: Uuid,
    pub project: Uuid,
    pub plan: Option<Uuid>,
    pub attributes: Json,
    pub limits: Json,
    pub request_comment: Option<String>,
}

impl Store {
    fn initial_state_for(&self, user: &Uuid, project: &Uuid) -> &'static str {
        // Owners and staff skip consumer review; plain project members need approval.
        let owner = self
            .projects
            .get(project)
            .is_some_and(|p| self.is_customer_owner(user, &p.customer));
        if self.is_staff(user) || owner {
            "pending-provider"
        } else {
            "pending-consumer"
        }
    }

    fn validate_limits(&self, offering: &Uuid, limits: &Json) -> ApiResult<Json> {
        let off = self
            .offerings
            .get(offering)
            .ok_or_else(ApiError::not_found)?;
        let mut out = Json::new();
        let mut unknown = vec![];
        for (k, v) in limits {
            if !off.components.iter().any(|c| &c.type_ == k) {
                unknown.push(k.clone());
                continue;
            }
            let n = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.parse::<f64>().ok(),
                _ => None,
            };
            match n {
                Some(n) if n >= 0.0 => {
                    if let Some(c) = off.components.iter().find(|c| &c.type_ == k) {
                        validate_min_max_limit(n, c)?;
                    }
                    out.insert(k.clone(), num(n));
                }
                _ => {
                    return Err(ApiError::field(
                        "limits",
                        format!("Invalid value for component {k}."),
                    ));
                }
            }
        }
        if !unknown.is_empty() {
            return Err(ApiError::field(
                "limits",
                format!("Invalid limit components: {}.", unknown.join(", ")),
            ));
        }
        Ok(out)
    }

    fn insert_order(
        &mut self,
        user: Uuid,
        type_: &str,
        resource: &Resource,
        limits: Json,
        attributes: Json,
        state: &str,
    ) -> Uuid {
        let ts = now();
        let order = Order {
            uuid: new_uuid(),
            type_: type_.into(),
            state: state.into(),
            offering: resource.offering,
            project: resource.project,
            resource: resource.uuid,
            plan: resource.plan,
            old_plan: if type_ == "Update" {
                resource.plan
            } else {
                None
            },
            attributes,
            limits,
            backend_id: String::new(),
            created_by: user,
            error_message: String::new(),
            error_traceback: String::new(),
            request_comment: None,
            provider_rejection_comment: String::new(),
            consumer_rejection_comment: String::new(),
            consumer_reviewed_by: None,
            consumer_reviewed_at: None,
            provider_reviewed_by: None,
            provider_reviewed_at: None,
            completed_at: None,
            created: ts,
            modified: ts,
            slug: self.unique_slug(&format!("{}-{}", resource.name, type_.to_lowercase())),
        };
        let uuid = order.uuid;
        self.orders.insert(uuid, order);
        self.emit_order_state(&uuid);
        uuid
    }

    /// `POST /api/marketplace-orders/`: a Create order plus its resource in state Creating.
    pub fn create_order(&mut self, user: Uuid, new: NewOrder) -> ApiResult<Uuid> {
        let off = self
            .offerings
            .get(&new.offering)
            .ok_or_else(|| {
                ApiError::field("offering", "Invalid hyperlink - Object does not exist.")
            })?
            .clone();
        if !self.projects.contains_key(&new.project)
            || !self.can_access_project(&user, &new.project)
        {
            return Err(ApiError::field(
                "project",
                "Invalid hyperlink - Object does not exist.",
            ));
        }
        if off.state != "Active" {
            return Err(ApiError::field("offering", "Offering is not available."));
        }
        if let Some(plan) = new.plan {
            match self.plans.get(&plan) {
                Some(p) if p.offering == off.uuid && !p.archived => {}
                _ => {
                    return Err(ApiError::field(
                        "plan",
                        "This plan is not available for selected offering.",
                    ));
                }
            }
        } else if self.plans.values().any(|p| p.offering == off.uuid) {
            return Err(ApiError::field("plan", "This field is required."));
        }
        let limits = self.validate_limits(&off.uuid, &new.limits)?;
        let name = new
            .attributes
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ts = now();
        let resource = Resource {
            uuid: new_uuid(),
            slug: self.unique_slug(if name.is_empty() { &off.name } else { &name }),
            name,
            description: new
                .attributes
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            offering: off.uuid,
            project: new.project,
            plan: new.plan,
            state: "Creating".into(),
            backend_id: String::new(),
            effective_id: String::new(),
            limits: limits.clone(),
            attributes: new.attributes.clone(),
            current_usages: Json::new(),
            backend_metadata: Json::new(),
            endpoints: vec![],
            options: None,
            error_message: String::new(),
            error_traceback: String::new(),
            end_date: None,
            last_sync: ts,
            downscaled: false,
            paused: false,
            restrict_member_access: false,
            creation_order: None,
            created: ts,
            modified: ts,
            sequence_number: 0,
        };
        let ruuid = resource.uuid;
        self.resources.insert(ruuid, resource.clone());
        let state = self.initial_state_for(&user, &new.project);
        let order = self.insert_order(user, "Create", &resource, limits, new.attributes, state);
        if let Some(o) = self.orders.get_mut(&order) {
            o.request_comment = new.request_comment;
        }
        if let Some(r) = self.resources.get_mut(&ruuid) {
            r.creation_order = Some(order);
        }
        self.ensure_offering_users_for_project(off.uuid, new.project);
        Ok(order)
    }

    fn consumer_resource(&self, user: &Uuid, uuid: &Uuid) -> ApiResult<Resource> {
        let r = self
            .resources
            .get(uuid)
            .filter(|r| self.can_see_resource(user, r))
            .ok_or_else(ApiError::not_found)?;
        if !self.can_access_project(user, &r.project) {
            return Err(ApiError::forbidden());
        }
        Ok(r.clone())
    }

    fn ensure_no_pending_order(&self, resource: &Uuid) -> ApiResult<()> {
        if self.orders.values().any(|o| {
            &o.resource == resource
                && matches!(
                    o.state.as_str(),
                    "pending-consumer" | "pending-provider" | "executing"
                )
        }) {
            return Err(ApiError::conflict("Resource already has a pending order."));
        }
        Ok(())
    }

    /// `POST /api/marketplace-resources/{uuid}/update_limits/`: an Update order.
    pub fn update_limits_order(
        &mut self,
        user: Uuid,
        resource: Uuid,
        limits: Json,
    ) -> ApiResult<Uuid> {
        let r = self.consumer_resource(&user, &resource)?;
        if r.state != "OK" {
            return Err(ApiError::invalid_state(&["OK"]));
        }
        self.ensure_no_pending_order(&resource)?;
        let limits = self.validate_limits(&r.offering, &limits)?;
        let mut attrs = Json::new();
        attrs.insert("old_limits".into(), Value::Object(r.limits.clone()));
        let state = self.initial_state_for(&user, &r.project);
        let order = self.insert_order(user, "Update", &r, limits, attrs, state);
        self.set_resource_state(&resource, "Updating");
        Ok(order)
    }

    /// `POST /api/marketplace-resources/{uuid}/switch_plan/`: an Update order to another plan of
    /// the offering (no limits: the plan's quotas apply).
    pub fn switch_plan_order(&mut self, user: Uuid, resource: Uuid, plan: Uuid) -> ApiResult<Uuid> {
        let r = self.consumer_resource(&user, &resource)?;
        if r.state != "OK" {
            return Err(ApiError::invalid_state(&["OK"]));
        }
        match self.plans.get(&plan) {
            Some(p) if p.offering == r.offering && !p.archived => {}
            _ => {
                return Err(ApiError::field(
                    "plan",
                    "Plan is not available for this offering.",
                ));
            }
        }
        if r.plan == Some(plan) {
            return Err(ApiError::field("plan", "Resource already uses this plan."));
        }
        self.ensure_no_pending_order(&resource)?;
        let state = self.initial_state_for(&user, &r.project);
        let order = self.insert_order(user, "Update", &r, Json::new(), Json::new(), state);
        if let Some(o) = self.orders.get_mut(&order) {
            o.plan = Some(plan);
        }
        self.set_resource_state(&resource, "Updating");
        Ok(order)
    }

    /// `POST /api/marketplace-resources/{uuid}/terminate/`: a Terminate order.
    pub fn terminate_order(
        &mut self,
        user: Uuid,
        resource: Uuid,
        attributes: Json,
    ) -> ApiResult<Uuid> {
        let r = self.consumer_resource(&user, &resource)?;
        if !matches!(r.state.as_str(), "OK" | "Erred") {
            return Err(ApiError::invalid_state(&["OK", "Erred"]));
        }
        self.ensure_no_pending_order(&resource)?;
        let state = self.initial_state_for(&user, &r.project);
        let order = self.insert_order(user, "Terminate", &r, Json::new(), attributes, state);
        self.set_resource_state(&resource, "Terminating");
        Ok(order)
    }

    pub fn set_resource_state(&mut self, resource: &Uuid, state: &str) {
        if let Some(r) = self.resources.get_mut(resource) {
            r.state = state.to_string();
            r.modified = now();
        }
    }

    fn emit_order_state(&mut self, order: &Uuid) {
        let Some(o) = self.orders.get(order) else {
            return;
        };
        let Some(off) = self.offerings.get(&o.offering) else {
            return;
        };
        let announce = match o.state.as_str() {
            "pending-provider" | "pending-consumer" => {
                PENDING_EVENT_TYPES.contains(&off.type_.as_str())
            }
            "done" => off.type_ == SITE_AGENT_OFFERING && o.type_ != "Create",
            _ => false,
        };
        if announce {
            let payload =
                json!({"order_uuid": o.uuid.simple().to_string(), "order_state": o.state});
            let offering = o.offering;
            self.emit(&offering, "order", payload);
        }
    }

    /// Moves an order to `to` and applies the resource side effects of §2.4.
    fn transition(&mut self, order: &Uuid, to: &str) {
        let ts = now();
        let Some(o) = self.orders.get_mut(order) else {
            return;
        };
        o.state = to.to_string();
        o.modified = ts;
        if TERMINAL.contains(&to) {
            o.completed_at = Some(ts);
        }
        let (type_, resource, limits, plan) =
            (o.type_.clone(), o.resource, o.limits.clone(), o.plan);
        match (type_.as_str(), to) {
            ("Create" | "Restore", "done") => {
                self.set_resource_state(&resource, "OK");
                if let Some(plan) = plan {
                    let pp = PlanPeriod {
                        uuid: new_uuid(),
                        resource,
                        plan,
                        start: ts,
                        end: None,
                    };
                    self.plan_periods.insert(pp.uuid, pp);
                }
            }
            ("Update", "done") => {
                if let Some(r) = self.resources.get_mut(&resource) {
                    if !limits.is_empty() {
                        r.limits = limits;
                    }
                    r.plan = plan.or(r.plan);
                }
                self.set_resource_state(&resource, "OK");
            }
            ("Terminate", "done") => {
                self.set_resource_state(&resource, "Terminated");
                for pp in self
                    .plan_periods
                    .values_mut()
                    .filter(|p| p.resource == resource && p.end.is_none())
                {
                    pp.end = Some(ts);
                }
            }
            ("Create" | "Restore" | "Update", "erred") => {
                self.set_resource_state(&resource, "Erred")
            }
            ("Terminate", "erred") => self.set_resource_state(&resource, "OK"),
            ("Create", "rejected" | "canceled") => self.set_resource_state(&resource, "Terminated"),
            (_, "rejected" | "canceled")
                if self
                    .resources
                    .get(&resource)
                    .is_some_and(|r| r.state != "OK") =>
            {
                self.set_resource_state(&resource, "OK");
            }
            _ => {}
        }
        self.emit_order_state(order);
        if to == "executing"
            && let Err(message) = self.allocation_on_executing(&type_, &resource)
        {
            // The 2024 server's order processor raised: it errs the order itself.
            if let Some(o) = self.orders.get_mut(order) {
                o.error_message = message;
            }
            self.transition(order, "erred");
        }
    }

    fn provider_order(&self, user: &Uuid, order: &Uuid) -> ApiResult<Order> {
        let o = self.visible_order(user, order)?;
        if !self.can_manage_offering(user, &o.offering) {
            return Err(ApiError::forbidden());
        }
        Ok(o.clone())
    }

    fn require_state(o: &Order, valid: &[&str]) -> ApiResult<()> {
        if valid.contains(&o.state.as_str()) {
            Ok(())
        } else {
            Err(ApiError::invalid_state(valid))
        }
    }

    fn require_offering_type(&self, o: &Order, allowed: &[&str]) -> ApiResult<()> {
        let t = self
            .offerings
            .get(&o.offering)
            .map(|x| x.type_.clone())
            .unwrap_or_default();
        if allowed.contains(&t.as_str()) {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(&format!(
                "The order's offering with {t} type does not support this action"
            )))
        }
    }

    pub fn approve_by_provider(&mut self, user: Uuid, order: Uuid) -> ApiResult<()> {
        let o = self.provider_order(&user, &order)?;
        Self::require_state(&o, &["pending-provider"])?;
        if let Some(o) = self.orders.get_mut(&order) {
            o.provider_reviewed_by = Some(user);
            o.provider_reviewed_at = Some(now());
        }
        self.transition(&order, "executing");
        Ok(())
    }

    pub fn reject_by_provider(
        &mut self,
        user: Uuid,
        order: Uuid,
        comment: Option<String>,
    ) -> ApiResult<()> {
        let o = self.provider_order(&user, &order)?;
        Self::require_state(&o, &["pending-provider"])?;
        if let Some(o) = self.orders.get_mut(&order) {
            o.provider_reviewed_by = Some(user);
            o.provider_reviewed_at = Some(now());
            o.provider_rejection_comment = comment.unwrap_or_default();
        }
        self.transition(&order, "rejected");
        Ok(())
    }

    pub fn set_state_executing(&mut self, user: Uuid, order: Uuid) -> ApiResult<()> {
        let o = self.provider_order(&user, &order)?;
        Self::require_state(&o, &["pending-consumer", "pending-provider", "erred"])?;
        self.require_offering_type(&o, &[SITE_AGENT_OFFERING])?;
        self.transition(&order, "executing");
        Ok(())
    }

    pub fn set_state_done(&mut self, user: Uuid, order: Uuid) -> ApiResult<()> {
        let o = self.provider_order(&user, &order)?;
        Self::require_state(&o, &["executing"])?;
        self.require_offering_type(&o, AGENT_DONE_TYPES)?;
        self.transition(&order, "done");
        Ok(())
    }

    pub fn set_state_erred(
        &mut self,
        user: Uuid,
        order: Uuid,
        message: String,
        traceback: String,
    ) -> ApiResult<()> {
        let o = self.provider_order(&user, &order)?;
        self.require_offering_type(&o, AGENT_DONE_TYPES)?;
        if self.api_profile.is_2024() && o.state == "done" {
            // The 2024 callbacks raise on done → erred: an unhandled exception.
            return Err(ApiError::server_error_page());
        }
        self.transition(&order, "erred");
        if let Some(o) = self.orders.get_mut(&order) {
            o.error_message = message;
            o.error_traceback = traceback;
        }
        Ok(())
    }

    pub fn set_order_backend_id(
        &mut self,
        user: Uuid,
        order: Uuid,
        backend_id: String,
    ) -> ApiResult<()> {
        self.provider_order(&user, &order)?;
        if let Some(o) = self.orders.get_mut(&order) {
            o.backend_id = backend_id;
            o.modified = now();
        }
        Ok(())
    }

    pub fn approve_by_consumer(&mut self, user: Uuid, order: Uuid) -> ApiResult<()> {
        let o = self.visible_order(&user, &order)?.clone();
        if !self.can_approve_as_consumer(&user, &o.project) {
            return Err(ApiError::forbidden());
        }
        Self::require_state(&o, &["pending-consumer"])?;
        if let Some(o) = self.orders.get_mut(&order) {
            o.consumer_reviewed_by = Some(user);
            o.consumer_reviewed_at = Some(now());
        }
        self.transition(&order, "pending-provider");
        Ok(())
    }

    pub fn reject_by_consumer(
        &mut self,
        user: Uuid,
        order: Uuid,
        comment: Option<String>,
    ) -> ApiResult<()> {
        let o = self.visible_order(&user, &order)?.clone();
        if !self.can_approve_as_consumer(&user, &o.project) {
            return Err(ApiError::forbidden());
        }
        Self::require_state(&o, &["pending-consumer"])?;
        if let Some(o) = self.orders.get_mut(&order) {
            o.consumer_reviewed_by = Some(user);
            o.consumer_reviewed_at = Some(now());
            o.consumer_rejection_comment = comment.unwrap_or_default();
        }
        self.transition(&order, "rejected");
        Ok(())
    }

    pub fn cancel_order(&mut self, user: Uuid, order: Uuid) -> ApiResult<()> {
        let o = self.visible_order(&user, &order)?.clone();
        if !self.can_access_project(&user, &o.project) && !self.is_staff(&user) {
            return Err(ApiError::forbidden());
        }
        Self::require_state(&o, &["pending-consumer", "pending-provider"])?;
        self.transition(&order, "canceled");
        Ok(())
    }
}

/// Mastermind's `validate_min_max_limit`, for the components its `get_components_map` checks
/// (limit-based, or prepaid one-time): a bound of 0 or none is no bound. Raised from the
/// serializer's `validate`, so the error is a `non_field_errors` one.
fn validate_min_max_limit(value: f64, c: &Component) -> ApiResult<()> {
    if !(c.billing_type == "limit" || (c.billing_type == "one" && c.is_prepaid)) {
        return Ok(());
    }
    // Python's `%s` of the number: exponent form from 1e16 on.
    let py = |v: f64| match num(v) {
        Value::Number(n) if n.is_i64() => n.to_string(),
        _ if v.abs() >= 1e16 => format!("{v:e}").replace("e", "e+").replace("e+-", "e-"),
        _ => v.to_string(),
    };
    if let Some(max) = c.max_value.filter(|m| *m != 0) {
        if value > max as f64 {
            return Err(ApiError::field(
                "non_field_errors",
                format!("The limit {} value cannot be more than {max}.", py(value)),
            ));
        }
    }
    if let Some(min) = c.min_value.filter(|m| *m != 0) {
        if value < min as f64 {
            return Err(ApiError::field(
                "non_field_errors",
                format!("The limit {} value cannot be less than {min}.", py(value)),
            ));
        }
    }
    Ok(())
}

fn num(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

const ORDER_FILTERS: &[Filter] = &[
    f("offering_uuid", "offering_uuid", Kind::UuidMulti),
    f("offering", "offering_uuid", Kind::Uuid),
    f("state", "state", Kind::Choice(ORDER_STATES)),
    f("type", "type", Kind::Choice(ORDER_TYPES)),
    f("resource_uuid", "marketplace_resource_uuid", Kind::Uuid),
    f("resource", "marketplace_resource_uuid", Kind::Uuid),
    f("project_uuid", "project_uuid", Kind::Uuid),
    f("customer_uuid", "customer_uuid", Kind::Uuid),
    f("provider_uuid", "provider_uuid", Kind::Uuid),
    f("offering_type", "offering_type", Kind::Exact),
    f("resource_name", "resource_name", Kind::Contains),
    f("slug", "slug", Kind::Exact),
    f("created", "created", Kind::After),
    f("created_before", "created", Kind::Before),
    f("modified", "modified", Kind::After),
    f("modified_before", "modified", Kind::Before),
];

async fn list_orders(ctx: Ctx) -> ApiResult<Response> {
    ctx.sniff_agent("Order processing");
    let items: Vec<Value> = {
        let store = ctx.store();
        // Mastermind's default ordering is newest first.
        store
            .orders
            .values()
            .rev()
            .filter(|o| store.can_see_order(&ctx.user, o))
            .map(|o| store.render_order(o))
            .collect()
    };
    ctx.list(items, ORDER_FILTERS)
}

async fn get_order(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let v = {
        let store = ctx.store();
        store.render_order(store.visible_order(&ctx.user, &id)?)
    };
    Ok(ctx.object(v))
}

async fn create_order(ctx: Ctx, body: Body) -> ApiResult<Response> {
    let offering = body
        .uuid_ref("offering")?
        .ok_or_else(|| ApiError::required("offering"))?;
    let project = body
        .uuid_ref("project")?
        .ok_or_else(|| ApiError::required("project"))?;
    let plan = body.uuid_ref("plan")?;
    let new = NewOrder {
        offering,
        project,
        plan,
        attributes: body.obj("attributes")?,
        limits: body.obj("limits")?,
        request_comment: body.str("request_comment").map(str::to_string),
    };
    let user = ctx.user;
    let order = ctx.mutate(|s| s.create_order(user, new))?;
    let store = ctx.store();
    let o = store.orders.get(&order).ok_or_else(ApiError::not_found)?;
    Ok(created(store.render_order(o)))
}

macro_rules! order_action {
    ($name:ident, |$s:ident, $u:ident, $o:ident, $b:ident| $call:expr, $resp:expr) => {
        async fn $name(ctx: Ctx, Path(id): Path<String>, $b: Body) -> ApiResult<Response> {
            let $o = path_uuid(&id)?;
            let $u = ctx.user;
            ctx.mutate(|$s| $call)?;
            Ok($resp)
        }
    };
}

order_action!(
    approve_by_provider,
    |s, u, o, _b| s.approve_by_provider(u, o),
    axum::Json(json!({"detail": "Order has been approved."})).into_response()
);
order_action!(
    reject_by_provider,
    |s, u, o, b| s.reject_by_provider(
        u,
        o,
        b.str("provider_rejection_comment").map(str::to_string)
    ),
    ok_empty()
);
order_action!(
    set_state_executing,
    |s, u, o, _b| s.set_state_executing(u, o),
    ok_empty()
);
order_action!(
    set_state_done,
    |s, u, o, _b| s.set_state_done(u, o),
    ok_empty()
);
order_action!(
    set_state_erred,
    |s, u, o, b| s.set_state_erred(
        u,
        o,
        b.str("error_message").unwrap_or_default().to_string(),
        b.str("error_traceback").unwrap_or_default().to_string()
    ),
    ok_empty()
);
order_action!(
    approve_by_consumer,
    |s, u, o, _b| s.approve_by_consumer(u, o),
    ok_empty()
);
order_action!(
    reject_by_consumer,
    |s, u, o, b| s.reject_by_consumer(
        u,
        o,
        b.str("consumer_rejection_comment").map(str::to_string)
    ),
    ok_empty()
);
order_action!(
    cancel_order,
    |s, u, o, _b| s.cancel_order(u, o),
    StatusCode::ACCEPTED.into_response()
);

async fn set_backend_id(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let order = path_uuid(&id)?;
    let backend_id = body.required_str("backend_id")?.to_string();
    let user = ctx.user;
    ctx.mutate(|s| s.set_order_backend_id(user, order, backend_id))?;
    Ok(status_ok("Order backend_id has been changed."))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/marketplace-orders/",
            get(list_orders).head(list_orders).post(create_order),
        )
        .route("/api/marketplace-orders/{uuid}/", get(get_order))
        .route(
            "/api/marketplace-orders/{uuid}/approve_by_provider/",
            post(approve_by_provider),
        )
        .route(
            "/api/marketplace-orders/{uuid}/reject_by_provider/",
            post(reject_by_provider),
        )
        .route(
            "/api/marketplace-orders/{uuid}/approve_by_consumer/",
            post(approve_by_consumer),
        )
        .route(
            "/api/marketplace-orders/{uuid}/reject_by_consumer/",
            post(reject_by_consumer),
        )
        .route(
            "/api/marketplace-orders/{uuid}/set_state_executing/",
            post(set_state_executing),
        )
        .route(
            "/api/marketplace-orders/{uuid}/set_state_done/",
            post(set_state_done),
        )
        .route(
            "/api/marketplace-orders/{uuid}/set_state_erred/",
            post(set_state_erred),
        )
        .route(
            "/api/marketplace-orders/{uuid}/set_backend_id/",
            post(set_backend_id),
        )
        .route("/api/marketplace-orders/{uuid}/cancel/", post(cancel_order))
}
