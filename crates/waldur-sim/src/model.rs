//! Domain entities held by the simulator's [`crate::store::Store`].
//!
//! These are the simulator's own records, not wire DTOs: the JSON Mastermind sends is built from
//! them in `render.rs`, so every response carries the complete field set the SDK models expect.

use indexmap::IndexMap;
use jiff::Timestamp;
use serde_json::{Map, Value};
use uuid::Uuid;

pub type Json = Map<String, Value>;

#[derive(Debug, Clone)]
pub struct User {
    pub uuid: Uuid,
    pub username: String,
    pub full_name: String,
    pub email: String,
    pub token: String,
    pub is_staff: bool,
    pub is_active: bool,
    pub created: Timestamp,
}

impl User {
    pub fn first_name(&self) -> &str {
        self.full_name.split_whitespace().next().unwrap_or("")
    }
    pub fn last_name(&self) -> String {
        self.full_name
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Debug, Clone)]
pub struct Customer {
    pub uuid: Uuid,
    pub name: String,
    pub slug: String,
    pub abbreviation: String,
    pub owners: Vec<Uuid>,
    pub created: Timestamp,
}

#[derive(Debug, Clone)]
pub struct ServiceProvider {
    pub uuid: Uuid,
    pub customer: Uuid,
    pub created: Timestamp,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub uuid: Uuid,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub customer: Uuid,
    pub end_date: Option<String>,
    pub created: Timestamp,
}

#[derive(Debug, Clone)]
pub struct ProjectRole {
    pub uuid: Uuid,
    pub project: Uuid,
    pub user: Uuid,
    pub role: String,
    pub expiration_time: Option<String>,
    pub created: Timestamp,
    pub created_by: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub struct Component {
    pub uuid: Uuid,
    pub type_: String,
    pub name: String,
    pub description: String,
    pub measured_unit: String,
    pub billing_type: String,
    pub unit_factor: i64,
    pub limit_period: Option<String>,
    pub limit_amount: Option<i64>,
    pub article_code: String,
    pub max_value: Option<i64>,
    pub min_value: Option<i64>,
    pub max_available_limit: Option<i64>,
    pub is_boolean: bool,
    pub default_limit: Option<i64>,
    pub is_prepaid: bool,
    pub is_builtin: bool,
}

#[derive(Debug, Clone)]
pub struct Offering {
    pub uuid: Uuid,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub type_: String,
    pub state: String,
    pub customer: Uuid,
    pub backend_id: String,
    pub shared: bool,
    pub billable: bool,
    pub plugin_options: Json,
    pub secret_options: Json,
    pub service_attributes: Json,
    pub attributes: Json,
    pub components: Vec<Component>,
    pub partitions: Vec<String>,
    pub created: Timestamp,
    /// agent_type -> last request time, fed by User-Agent sniffing (§1.6).
    pub integration_status: IndexMap<String, Timestamp>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub uuid: Uuid,
    pub offering: Uuid,
    pub name: String,
    pub description: String,
    pub unit: String,
    pub unit_price: String,
    pub prices: Json,
    pub quotas: Json,
    pub archived: bool,
    pub backend_id: String,
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub uuid: Uuid,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub offering: Uuid,
    pub project: Uuid,
    pub plan: Option<Uuid>,
    pub state: String,
    pub backend_id: String,
    pub effective_id: String,
    pub limits: Json,
    pub attributes: Json,
    pub current_usages: Json,
    pub backend_metadata: Json,
    pub endpoints: Vec<(Uuid, String, String)>,
    pub options: Option<Value>,
    pub error_message: String,
    pub error_traceback: String,
    pub end_date: Option<String>,
    pub last_sync: Timestamp,
    pub downscaled: bool,
    pub paused: bool,
    pub restrict_member_access: bool,
    pub creation_order: Option<Uuid>,
    pub created: Timestamp,
    pub modified: Timestamp,
    /// Counter carried by `resource` events (§7.4).
    pub sequence_number: u64,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub uuid: Uuid,
    pub type_: String,
    pub state: String,
    pub offering: Uuid,
    pub project: Uuid,
    pub resource: Uuid,
    pub plan: Option<Uuid>,
    pub old_plan: Option<Uuid>,
    pub attributes: Json,
    pub limits: Json,
    pub backend_id: String,
    pub created_by: Uuid,
    pub error_message: String,
    pub error_traceback: String,
    pub request_comment: Option<String>,
    pub provider_rejection_comment: String,
    pub consumer_rejection_comment: String,
    pub consumer_reviewed_by: Option<Uuid>,
    pub consumer_reviewed_at: Option<Timestamp>,
    pub provider_reviewed_by: Option<Uuid>,
    pub provider_reviewed_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub created: Timestamp,
    pub modified: Timestamp,
    pub slug: String,
}

#[derive(Debug, Clone)]
pub struct OfferingUser {
    pub uuid: Uuid,
    pub offering: Uuid,
    pub user: Uuid,
    pub username: Option<String>,
    pub state: String,
    pub runtime_state: String,
    pub is_restricted: bool,
    pub service_provider_comment: String,
    pub service_provider_comment_url: String,
    pub created: Timestamp,
    pub modified: Timestamp,
}

#[derive(Debug, Clone)]
pub struct PlanPeriod {
    pub uuid: Uuid,
    pub resource: Uuid,
    pub plan: Uuid,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct ComponentUsage {
    pub uuid: Uuid,
    pub resource: Uuid,
    pub component_type: String,
    /// Amount in hundredths: Mastermind stores usage with two decimal places.
    pub usage_cents: i64,
    pub date: Timestamp,
    pub billing_period: jiff::civil::Date,
    pub description: String,
    pub missing_usage_policy: String,
    pub recurring: bool,
    pub plan_period: Option<Uuid>,
    pub modified_by: Option<Uuid>,
    pub created: Timestamp,
}

#[derive(Debug, Clone)]
pub struct ComponentUserUsage {
    pub uuid: Uuid,
    pub component_usage: Uuid,
    pub username: String,
    pub user: Option<String>,
    pub usage_cents: i64,
    pub date: Timestamp,
    pub created: Timestamp,
    pub modified: Timestamp,
}

#[derive(Debug, Clone)]
pub struct UserUsageLimit {
    pub uuid: Uuid,
    pub resource: Uuid,
    pub component_type: String,
    pub user: Uuid,
    pub limit: String,
}

#[derive(Debug, Clone)]
pub struct SshKey {
    pub uuid: Uuid,
    pub user: Uuid,
    pub name: String,
    pub public_key: String,
}

#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub uuid: Uuid,
    pub offering: Uuid,
    pub name: String,
    pub created_by: Uuid,
    pub version: Option<String>,
    pub dependencies: Vec<Value>,
    pub config_file_path: Option<String>,
    pub config_file_content: Option<String>,
    pub last_restarted: Timestamp,
    pub created: Timestamp,
    pub modified: Timestamp,
}

#[derive(Debug, Clone)]
pub struct AgentService {
    pub uuid: Uuid,
    pub identity: Uuid,
    pub name: String,
    pub mode: Option<String>,
    pub state: String,
    pub statistics: Json,
    pub created: Timestamp,
    pub modified: Timestamp,
}

#[derive(Debug, Clone)]
pub struct AgentProcessor {
    pub uuid: Uuid,
    pub service: Uuid,
    pub name: String,
    pub backend_type: String,
    pub backend_version: Option<String>,
    pub last_run: Timestamp,
    pub created: Timestamp,
    pub modified: Timestamp,
}

#[derive(Debug, Clone)]
pub struct EventSubscription {
    pub uuid: Uuid,
    pub user: Uuid,
    pub description: String,
    pub observable_objects: Vec<Value>,
    pub created: Timestamp,
    pub modified: Timestamp,
}

#[derive(Debug, Clone)]
pub struct SubscriptionQueue {
    pub uuid: Uuid,
    pub subscription: Uuid,
    pub offering: Uuid,
    pub object_type: String,
    pub created: Timestamp,
}

impl SubscriptionQueue {
    pub fn queue_name(&self) -> String {
        format!(
            "subscription_{}_offering_{}_{}",
            self.subscription.simple(),
            self.offering.simple(),
            self.object_type
        )
    }
}

/// The unified per-identity queue (`register_queue`, §7.3B).
#[derive(Debug, Clone)]
pub struct AgentQueue {
    pub consumer_uuid: Uuid,
    pub identity: Uuid,
    pub user: Uuid,
    pub object_types: Vec<String>,
}

impl AgentQueue {
    pub fn queue_name(&self) -> String {
        format!("consumer_{}", self.consumer_uuid.simple())
    }
}

#[derive(Debug, Clone)]
pub struct BackendResource {
    pub uuid: Uuid,
    pub name: String,
    pub project: Uuid,
    pub offering: Uuid,
    pub backend_id: String,
    pub backend_metadata: Json,
    pub created: Timestamp,
}

#[derive(Debug, Clone)]
pub struct BackendResourceRequest {
    pub uuid: Uuid,
    pub offering: Uuid,
    pub state: String,
    pub started: Option<Timestamp>,
    pub finished: Option<Timestamp>,
    pub error_message: String,
    pub error_traceback: String,
    pub created: Timestamp,
    pub modified: Timestamp,
}
