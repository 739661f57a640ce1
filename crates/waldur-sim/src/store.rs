//! The simulator's whole state, kept behind one mutex. Domain modules add `impl Store` blocks with
//! their transitions; this file holds the maps, id/time helpers and the permission model.

use indexmap::IndexMap;
use jiff::Timestamp;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::model::*;

/// A state change worth an event (§7.4), queued while the store is locked and published after.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimEvent {
    pub offering_uuid: String,
    pub object_type: String,
    pub payload: Value,
}

pub const SITE_AGENT_OFFERING: &str = "Marketplace.Slurm";

#[derive(Debug, Default)]
pub struct Store {
    /// Scheme, host and port used for every hyperlink, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    pub category: Uuid,
    pub users: IndexMap<Uuid, User>,
    pub customers: IndexMap<Uuid, Customer>,
    pub service_providers: IndexMap<Uuid, ServiceProvider>,
    pub projects: IndexMap<Uuid, Project>,
    pub project_roles: Vec<ProjectRole>,
    pub offerings: IndexMap<Uuid, Offering>,
    pub plans: IndexMap<Uuid, Plan>,
    pub resources: IndexMap<Uuid, Resource>,
    pub orders: IndexMap<Uuid, Order>,
    pub offering_users: IndexMap<Uuid, OfferingUser>,
    pub plan_periods: IndexMap<Uuid, PlanPeriod>,
    pub component_usages: IndexMap<Uuid, ComponentUsage>,
    pub user_usages: IndexMap<Uuid, ComponentUserUsage>,
    pub user_usage_limits: IndexMap<Uuid, UserUsageLimit>,
    pub ssh_keys: IndexMap<Uuid, SshKey>,
    pub identities: IndexMap<Uuid, AgentIdentity>,
    pub services: IndexMap<Uuid, AgentService>,
    pub processors: IndexMap<Uuid, AgentProcessor>,
    pub subscriptions: IndexMap<Uuid, EventSubscription>,
    pub subscription_queues: IndexMap<Uuid, SubscriptionQueue>,
    pub agent_queues: IndexMap<Uuid, AgentQueue>,
    pub backend_resources: IndexMap<Uuid, BackendResource>,
    pub backend_resource_requests: IndexMap<Uuid, BackendResourceRequest>,
    pub membership_statuses: IndexMap<Uuid, Vec<Value>>,
    /// Project service accounts and course accounts.
    pub project_accounts: IndexMap<Uuid, crate::accounts::ProjectAccount>,
    /// Whether `set_usage` accepts dates in past billing months.
    pub allow_usage_backfill: bool,
    /// Which Mastermind the simulator answers as (renderers and transitions differ).
    pub api_profile: crate::profile::ApiProfile,
    /// 2024 profile: the SLURM allocation behind a Marketplace.Slurm resource (resource uuid →
    /// allocation state label), see [`crate::slurm_remote`].
    pub allocations: IndexMap<Uuid, String>,
    pub outbox: Vec<SimEvent>,
    slug_counter: u64,
}

pub fn now() -> Timestamp {
    // Microsecond precision: Python's datetime parsers do not take nanoseconds.
    Timestamp::now()
        .round(jiff::Unit::Microsecond)
        .unwrap_or_else(|_| Timestamp::now())
}

pub fn new_uuid() -> Uuid {
    Uuid::new_v4()
}

pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "item".to_string()
    } else {
        out.chars().take(40).collect()
    }
}

impl Store {
    pub fn new(base_url: String) -> Self {
        Self {
            base_url,
            category: new_uuid(),
            allow_usage_backfill: true,
            ..Default::default()
        }
    }

    pub fn url(&self, path: &str, uuid: &Uuid) -> String {
        format!("{}/api/{}/{}/", self.base_url, path, uuid.simple())
    }

    /// A slug unique across the simulator, as Mastermind appends a counter on collision.
    pub fn unique_slug(&mut self, name: &str) -> String {
        self.slug_counter += 1;
        format!("{}-{}", slugify(name), self.slug_counter)
    }

    pub fn emit(&mut self, offering: &Uuid, object_type: &str, payload: Value) {
        self.outbox.push(SimEvent {
            offering_uuid: offering.simple().to_string(),
            object_type: object_type.to_string(),
            payload,
        });
    }

    // ---- authentication -------------------------------------------------------------------

    pub fn user_by_token(&self, token: &str) -> Option<&User> {
        self.users.values().find(|u| u.token == token)
    }

    pub fn user(&self, uuid: &Uuid) -> ApiResult<&User> {
        self.users.get(uuid).ok_or_else(ApiError::not_found)
    }

    // ---- permission model -----------------------------------------------------------------

    pub fn is_staff(&self, user: &Uuid) -> bool {
        self.users.get(user).is_some_and(|u| u.is_staff)
    }

    pub fn is_customer_owner(&self, user: &Uuid, customer: &Uuid) -> bool {
        self.customers
            .get(customer)
            .is_some_and(|c| c.owners.contains(user))
    }

    /// Owner of the offering's customer (service-provider owner) or staff.
    pub fn can_manage_offering(&self, user: &Uuid, offering: &Uuid) -> bool {
        self.is_staff(user)
            || self
                .offerings
                .get(offering)
                .is_some_and(|o| self.is_customer_owner(user, &o.customer))
    }

    pub fn project_role(&self, user: &Uuid, project: &Uuid) -> Option<&ProjectRole> {
        self.project_roles
            .iter()
            .find(|r| &r.user == user && &r.project == project)
    }

    /// Consumer-side access: staff, owner of the project's customer, or any project role.
    pub fn can_access_project(&self, user: &Uuid, project: &Uuid) -> bool {
        self.is_staff(user)
            || self
                .projects
                .get(project)
                .is_some_and(|p| self.is_customer_owner(user, &p.customer))
            || self.project_role(user, project).is_some()
    }

    /// Who may approve as consumer: staff, customer owner, or project manager.
    pub fn can_approve_as_consumer(&self, user: &Uuid, project: &Uuid) -> bool {
        self.is_staff(user)
            || self
                .projects
                .get(project)
                .is_some_and(|p| self.is_customer_owner(user, &p.customer))
            || self
                .project_role(user, project)
                .is_some_and(|r| r.role == "PROJECT.MANAGER")
    }

    pub fn can_see_resource(&self, user: &Uuid, r: &Resource) -> bool {
        self.can_manage_offering(user, &r.offering) || self.can_access_project(user, &r.project)
    }

    pub fn can_see_order(&self, user: &Uuid, o: &Order) -> bool {
        self.can_manage_offering(user, &o.offering) || self.can_access_project(user, &o.project)
    }

    /// Offerings a user can see as provider (staff: all).
    pub fn managed_offerings(&self, user: &Uuid) -> Vec<Uuid> {
        self.offerings
            .keys()
            .filter(|o| self.can_manage_offering(user, o))
            .copied()
            .collect()
    }

    // ---- lookups with visibility (invisible → 404) ----------------------------------------

    pub fn visible_order(&self, user: &Uuid, uuid: &Uuid) -> ApiResult<&Order> {
        self.orders
            .get(uuid)
            .filter(|o| self.can_see_order(user, o))
            .ok_or_else(ApiError::not_found)
    }

    pub fn visible_resource(&self, user: &Uuid, uuid: &Uuid) -> ApiResult<&Resource> {
        self.resources
            .get(uuid)
            .filter(|r| self.can_see_resource(user, r))
            .ok_or_else(ApiError::not_found)
    }

    pub fn provider_resource(&self, user: &Uuid, uuid: &Uuid) -> ApiResult<&Resource> {
        self.resources
            .get(uuid)
            .filter(|r| self.can_manage_offering(user, &r.offering))
            .ok_or_else(ApiError::not_found)
    }

    pub fn visible_offering(&self, user: &Uuid, uuid: &Uuid) -> ApiResult<&Offering> {
        // Provider offerings are listed for everyone authenticated; secrets are hidden in render.
        let _ = user;
        self.offerings.get(uuid).ok_or_else(ApiError::not_found)
    }

    pub fn offering_of_resource(&self, r: &Resource) -> Option<&Offering> {
        self.offerings.get(&r.offering)
    }

    pub fn resolve_user_ref(&self, value: &Value) -> Option<Uuid> {
        value
            .as_str()
            .and_then(crate::query::parse_uuid_ref)
            .filter(|u| self.users.contains_key(u))
    }

    // ---- offering users created by Mastermind on membership -------------------------------

    /// Mirrors Mastermind creating offering users when a user is in a project holding a
    /// resource of the offering: `waldur_username` sets the username at once (state OK),
    /// `service_provider` leaves it for the agent (state Requested).
    pub fn ensure_offering_user(&mut self, offering: Uuid, user: Uuid) {
        if self
            .offering_users
            .values()
            .any(|ou| ou.offering == offering && ou.user == user)
        {
            return;
        }
        let Some(off) = self.offerings.get(&offering) else {
            return;
        };
        let policy = off
            .plugin_options
            .get("username_generation_policy")
            .and_then(Value::as_str)
            .unwrap_or("service_provider")
            .to_string();
        let Some(u) = self.users.get(&user) else {
            return;
        };
        let username = match policy.as_str() {
            "waldur_username" => Some(u.username.clone()),
            "full_name" => Some(slugify(&u.full_name).replace('-', "_")),
            "anonymized" => Some(format!(
                "{}_{}",
                off.plugin_options
                    .get("username_anonymized_prefix")
                    .and_then(Value::as_str)
                    .unwrap_or("walduruser"),
                self.offering_users
                    .values()
                    .filter(|o| o.offering == offering)
                    .count()
                    + 1
            )),
            _ => None,
        };
        let ts = now();
        let ou = OfferingUser {
            uuid: new_uuid(),
            offering,
            user,
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
        let uuid = ou.uuid;
        let has_username = ou.username.is_some();
        self.offering_users.insert(uuid, ou);
        if has_username {
            self.emit_offering_user_username_set(&uuid);
        }
    }

    /// Creates offering users for every member of the project for the given offering.
    pub fn ensure_offering_users_for_project(&mut self, offering: Uuid, project: Uuid) {
        let mut members: Vec<Uuid> = self
            .project_roles
            .iter()
            .filter(|r| r.project == project)
            .map(|r| r.user)
            .collect();
        members.dedup();
        for m in members {
            self.ensure_offering_user(offering, m);
        }
    }

    pub fn emit_offering_user_username_set(&mut self, ou_uuid: &Uuid) {
        let Some(ou) = self.offering_users.get(ou_uuid).cloned() else {
            return;
        };
        let Some(off) = self.offerings.get(&ou.offering) else {
            return;
        };
        if off.type_ != SITE_AGENT_OFFERING {
            return;
        }
        let project_ids: Vec<Uuid> = self
            .project_roles
            .iter()
            .filter(|r| r.user == ou.user)
            .map(|r| r.project)
            .collect();
        let backend_ids: Vec<Value> = self
            .resources
            .values()
            .filter(|r| {
                r.offering == ou.offering
                    && project_ids.contains(&r.project)
                    && r.state != "Terminated"
                    && !r.backend_id.is_empty()
            })
            .map(|r| Value::String(r.backend_id.clone()))
            .collect();
        let payload = serde_json::json!({
            "username": ou.username,
            "offering_user_uuid": ou.uuid.simple().to_string(),
            "user_uuid": ou.user.simple().to_string(),
            "state": offering_user_state_code(&ou.state),
            "action": "username_set",
            "resource_backend_ids": backend_ids,
        });
        self.emit(&ou.offering, "offering_user", payload);
    }
}

/// Integer codes of offering-user states (`OfferingUserStates`), used in event payloads.
pub fn offering_user_state_code(state: &str) -> i64 {
    match state {
        "Requested" => 1,
        "Creating" => 2,
        "Pending account linking" => 3,
        "Pending additional validation" => 4,
        "OK" => 5,
        "Requested deletion" => 6,
        "Deleting" => 7,
        "Deleted" => 8,
        "Error creating" => 9,
        "Error deleting" => 10,
        _ => 0,
    }
}
