//! Wire models for the Mastermind responses and requests the agent uses.
//!
//! Tolerant on input: every field has a default (so `field=` selections and older servers parse),
//! unknown fields are ignored, `null` reads as the default (the client drops nulls before
//! decoding), numbers may arrive as JSON numbers or decimal strings, and enums keep values they do
//! not know in `Unknown(..)`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::ids::normalize_uuid;

/// Component type → amount.
pub type Amounts = BTreeMap<String, f64>;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $wire:literal $(= $code:literal)?),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)*
            /// A value this client does not know (newer server).
            Unknown(String),
        }

        impl $name {
            /// The exact wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $wire,)*
                    $name::Unknown(other) => other,
                }
            }

            pub fn from_wire(text: &str) -> Self {
                match text {
                    $($wire => $name::$variant,)*
                    other => $name::Unknown(other.to_owned()),
                }
            }

            /// Mastermind's integer code (some event payloads send it instead of the label).
            pub fn from_code(code: i64) -> Self {
                match code {
                    $($($code => $name::$variant,)?)*
                    other => $name::Unknown(other.to_string()),
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::Unknown(String::new())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                match Value::deserialize(deserializer)? {
                    Value::String(text) => Ok($name::from_wire(&text)),
                    Value::Number(n) => Ok(n.as_i64().map($name::from_code)
                        .unwrap_or_else(|| $name::Unknown(n.to_string()))),
                    other => Ok($name::Unknown(other.to_string())),
                }
            }
        }
    };
}

wire_enum!(
    /// Order state (`marketplace-orders` `state`).
    OrderState {
        PendingConsumer => "pending-consumer" = 1,
        Executing => "executing" = 2,
        Done => "done" = 3,
        Erred => "erred" = 4,
        Canceled => "canceled" = 5,
        Rejected => "rejected" = 6,
        PendingProvider => "pending-provider" = 7,
        PendingProject => "pending-project" = 8,
        PendingStartDate => "pending-start-date" = 9,
    }
);

impl OrderState {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            OrderState::Done | OrderState::Erred | OrderState::Canceled | OrderState::Rejected
        )
    }
}

wire_enum!(
    /// Order type.
    OrderType {
        Create => "Create" = 1,
        Update => "Update" = 2,
        Terminate => "Terminate" = 3,
        Restore => "Restore" = 4,
    }
);

wire_enum!(
    /// Marketplace resource state.
    ResourceState {
        Creating => "Creating" = 1,
        Ok => "OK" = 2,
        Erred => "Erred" = 3,
        Updating => "Updating" = 4,
        Terminating => "Terminating" = 5,
        Terminated => "Terminated" = 6,
    }
);

wire_enum!(
    /// Offering-user state (wire = label; `offering_user` events send the integer code).
    OfferingUserState {
        Requested => "Requested" = 1,
        Creating => "Creating" = 2,
        PendingAccountLinking => "Pending account linking" = 3,
        PendingAdditionalValidation => "Pending additional validation" = 4,
        Ok => "OK" = 5,
        RequestedDeletion => "Requested deletion" = 6,
        Deleting => "Deleting" = 7,
        Deleted => "Deleted" = 8,
        ErrorCreating => "Error creating" = 9,
        ErrorDeleting => "Error deleting" = 10,
    }
);

/// Numbers that may arrive as JSON numbers or decimal strings.
pub mod amount {
    use super::*;

    pub fn parse(value: &Value) -> Option<f64> {
        match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
        .filter(|v| v.is_finite())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(parse(&value).unwrap_or(0.0))
    }

    pub fn deserialize_opt<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<f64>, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(parse(&value))
    }

    /// `{component: number|string}`; entries that are not numbers are dropped.
    pub fn deserialize_map<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Amounts, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let mut out = Amounts::new();
        if let Value::Object(map) = value {
            for (key, v) in map {
                if let Some(n) = parse(&v) {
                    out.insert(key, n);
                }
            }
        }
        Ok(out)
    }

    /// Limits and quotas `{component: number|string}`: like [`deserialize_map`], but an entry
    /// that is not a finite number is kept as NaN instead of dropped, so the agent's limit
    /// check refuses it by name (a dropped limit would mean no limit on the site at all).
    pub fn deserialize_limits<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Amounts, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let mut out = Amounts::new();
        if let Value::Object(map) = value {
            for (key, v) in map {
                out.insert(key, parse(&v).unwrap_or(f64::NAN));
            }
        }
        Ok(out)
    }

    /// A limit that may be absent: present but not a finite number reads as NaN (refused by the
    /// agent's limit check by name), not as absent (which would mean "no limit").
    pub fn deserialize_opt_limit<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<f64>, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(match value {
            Value::Null => None,
            other => Some(parse(&other).unwrap_or(f64::NAN)),
        })
    }

    /// An amount as JSON: whole numbers as integers (up to 2^53, exact), others as decimals.
    pub fn to_json(value: f64) -> Value {
        if value.fract() == 0.0 && value.abs() <= 9_007_199_254_740_991.0 {
            Value::from(value as i64)
        } else {
            Value::from(value)
        }
    }
}

/// UUID fields: normalised to 32 hex whether the server sends dashed or hex.
mod uuid_hex {
    use super::*;
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(normalize_uuid(&text))
    }
    pub fn deserialize_opt<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        Ok(text.map(|t| normalize_uuid(&t)).filter(|t| !t.is_empty()))
    }
}

/// `OrderDetails`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Order {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    #[serde(rename = "type")]
    pub order_type: OrderType,
    pub state: OrderState,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub resource_uuid: Option<String>,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub marketplace_resource_uuid: Option<String>,
    pub resource_name: String,
    pub attributes: Map<String, Value>,
    #[serde(deserialize_with = "amount::deserialize_limits")]
    pub limits: Amounts,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub plan_uuid: Option<String>,
    pub plan_name: Option<String>,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub old_plan_uuid: Option<String>,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub new_plan_uuid: Option<String>,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub project_uuid: Option<String>,
    pub project_name: String,
    pub project_slug: String,
    pub project_description: String,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub customer_uuid: Option<String>,
    pub customer_name: String,
    pub customer_slug: String,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub offering_uuid: Option<String>,
    pub offering_type: String,
    pub offering_plugin_options: Map<String, Value>,
    pub backend_id: String,
    pub error_message: String,
    pub created_by_username: Option<String>,
    pub created_by_full_name: Option<String>,
    pub created_by_email: Option<String>,
    pub created: Option<String>,
    pub modified: Option<String>,
    pub url: String,
}

impl Order {
    /// The marketplace resource this order is about (`marketplace_resource_uuid`, falling back
    /// to `resource_uuid`).
    pub fn target_resource_uuid(&self) -> Option<&str> {
        self.marketplace_resource_uuid
            .as_deref()
            .or(self.resource_uuid.as_deref())
    }
}

/// An offering component as embedded in a provider resource.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct OfferingComponent {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    #[serde(rename = "type")]
    pub component_type: String,
    pub name: String,
    pub description: String,
    pub measured_unit: String,
    /// `fixed`, `usage`, `limit`, `one`, `few`.
    pub billing_type: String,
    #[serde(deserialize_with = "amount::deserialize_opt")]
    pub unit_factor: Option<f64>,
    pub limit_period: Option<String>,
    #[serde(deserialize_with = "amount::deserialize_opt")]
    pub limit_amount: Option<f64>,
    #[serde(deserialize_with = "amount::deserialize_opt")]
    pub max_value: Option<f64>,
    #[serde(deserialize_with = "amount::deserialize_opt")]
    pub min_value: Option<f64>,
    #[serde(deserialize_with = "amount::deserialize_opt")]
    pub default_limit: Option<f64>,
    pub article_code: String,
    pub is_boolean: bool,
    pub is_prepaid: bool,
    pub is_builtin: bool,
}

/// `Resource` as seen from `/api/marketplace-provider-resources/`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ProviderResource {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    pub url: String,
    pub name: String,
    pub slug: String,
    pub backend_id: String,
    pub effective_id: String,
    pub state: ResourceState,
    pub resource_type: String,
    #[serde(deserialize_with = "amount::deserialize_limits")]
    pub limits: Amounts,
    #[serde(deserialize_with = "amount::deserialize_map")]
    pub current_usages: Amounts,
    pub attributes: Map<String, Value>,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub offering_uuid: Option<String>,
    pub offering_type: String,
    pub offering_backend_id: String,
    pub offering_plugin_options: Map<String, Value>,
    pub offering_components: Vec<OfferingComponent>,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub plan_uuid: Option<String>,
    pub plan_name: String,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub project_uuid: Option<String>,
    pub project_name: String,
    pub project_slug: String,
    pub project_description: String,
    pub project_end_date: Option<String>,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub customer_uuid: Option<String>,
    pub customer_name: String,
    pub customer_slug: String,
    pub downscaled: bool,
    pub paused: bool,
    pub restrict_member_access: bool,
    pub backend_metadata: Map<String, Value>,
    pub error_message: String,
    pub end_date: Option<String>,
    pub last_sync: Option<String>,
    pub created: Option<String>,
    pub modified: Option<String>,
    pub order_in_progress: Option<Value>,
    pub username: Option<String>,
}

/// A project member as returned by `…/{uuid}/team/` (`ProjectUser`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ProjectUser {
    pub url: String,
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    /// Waldur username (CUID).
    pub username: String,
    pub full_name: String,
    pub role: String,
    pub expiration_time: Option<String>,
    pub offering_user_username: Option<String>,
    pub offering_user_state: Option<OfferingUserState>,
    pub email: Option<String>,
}

/// `OfferingUser`. `user_*` profile attributes beyond the common ones land in `extra`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct OfferingUser {
    pub url: String,
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    pub user: String,
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub user_uuid: String,
    pub username: Option<String>,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub offering_uuid: Option<String>,
    pub state: OfferingUserState,
    pub user_username: String,
    pub user_full_name: Option<String>,
    pub user_first_name: Option<String>,
    pub user_last_name: Option<String>,
    pub user_email: Option<String>,
    pub is_restricted: bool,
    pub service_provider_comment: String,
    pub created: Option<String>,
    pub modified: Option<String>,
    /// The other `user_*` profile attributes that carry a value. Everything else the server
    /// sends is dropped while parsing: an offering of thousands of users would otherwise keep
    /// ~60 fields per user for the whole cycle.
    #[serde(flatten, deserialize_with = "profile_attributes")]
    pub extra: Map<String, Value>,
}

/// Keeps `user_*` keys whose value is not null, "" or [] (what `extra` is for).
fn profile_attributes<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Map<String, Value>, D::Error> {
    struct Attributes;
    impl<'de> serde::de::Visitor<'de> for Attributes {
        type Value = Map<String, Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an offering user object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut kept = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if !key.starts_with("user_") {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
                let value: Value = map.next_value()?;
                let empty = match &value {
                    Value::Null => true,
                    Value::String(s) => s.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => false,
                };
                if !empty {
                    kept.insert(key, value);
                }
            }
            Ok(kept)
        }
    }
    deserializer.deserialize_map(Attributes)
}

impl OfferingUser {
    /// The site username when set and not blank.
    pub fn username(&self) -> Option<&str> {
        self.username
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }
}

/// A SLURM partition attached to an offering.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct OfferingPartition {
    pub partition_name: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ProviderOfferingDetails` (fields selected with `field=` are the only ones present).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ProviderOffering {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    pub name: String,
    pub slug: String,
    #[serde(rename = "type")]
    pub offering_type: String,
    pub state: String,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub customer_uuid: Option<String>,
    pub customer_name: String,
    pub backend_id: String,
    pub components: Vec<OfferingComponent>,
    pub plugin_options: Map<String, Value>,
    pub secret_options: Map<String, Value>,
    pub partitions: Vec<OfferingPartition>,
    pub plans: Vec<Value>,
    pub integration_status: Vec<Value>,
}

impl ProviderOffering {
    pub fn plugin_option_str(&self, key: &str) -> Option<&str> {
        self.plugin_options.get(key).and_then(Value::as_str)
    }
    pub fn plugin_option_bool(&self, key: &str) -> bool {
        truthy(self.plugin_options.get(key))
    }
}

/// Python-style truthiness of an optional JSON value (plugin options are loosely typed).
pub fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|v| v != 0.0),
        Some(Value::String(s)) => {
            let s = s.trim().to_ascii_lowercase();
            !s.is_empty() && s != "false" && s != "0" && s != "no"
        }
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// `ComponentUsage` (one per resource, component and billing month).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ComponentUsage {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    #[serde(rename = "type")]
    pub component_type: String,
    pub name: String,
    /// `None` when the server sent something unparsable.
    #[serde(deserialize_with = "amount::deserialize_opt")]
    pub usage: Option<f64>,
    pub date: Option<String>,
    pub billing_period: Option<String>,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub resource_uuid: Option<String>,
    pub description: String,
}

/// `ComponentUserUsage`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ComponentUserUsage {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    /// Hyperlink to the parent `ComponentUsage`.
    pub component_usage: String,
    pub username: String,
    pub user: Option<String>,
    #[serde(deserialize_with = "amount::deserialize_opt")]
    pub usage: Option<f64>,
    pub component_type: String,
    pub billing_period: Option<String>,
}

/// `ComponentUserUsageLimit`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ComponentUserUsageLimit {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    pub resource: String,
    pub component: String,
    pub component_type: String,
    /// The user the limit applies to: a user URL in Mastermind's serializer (the Python agent
    /// read it as a username); see [`ComponentUserUsageLimit::username`].
    pub user: String,
    /// The username, where the server sends it.
    pub username: Option<String>,
    #[serde(deserialize_with = "amount::deserialize_opt_limit")]
    pub limit: Option<f64>,
}

impl ComponentUserUsageLimit {
    /// The resource's UUID, from `resource` (a resource URL, or a bare UUID): `None` when it
    /// names no resource we can tell.
    pub fn resource_uuid(&self) -> Option<String> {
        crate::uuid_from_url(self.resource.trim())
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ServiceProvider {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    pub url: String,
    pub name: String,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub customer_uuid: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SshKey {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    pub name: String,
    pub public_key: String,
    pub fingerprint_sha256: String,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub user_uuid: Option<String>,
    #[serde(rename = "type")]
    pub key_type: String,
}

/// `/api/users/me/`. Permissions are kept loosely typed: servers trim them differently.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct CurrentUser {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    pub username: String,
    pub full_name: String,
    pub email: String,
    pub is_staff: bool,
    pub is_support: bool,
    pub permissions: Vec<Value>,
}

/// `ProviderPlanDetails`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Plan {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    pub name: String,
    #[serde(deserialize_with = "amount::deserialize_limits")]
    pub quotas: Amounts,
    pub archived: bool,
    pub backend_id: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct VersionInfo {
    pub version: String,
    pub latest_version: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct UserAttributeConfig {
    pub exposed_fields: Vec<String>,
    pub is_default: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{package, version}` entry of an agent identity.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Dependency {
    pub package: String,
    pub version: String,
}

/// Body of `POST/PUT /api/marketplace-site-agent-identities/`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AgentIdentityRequest {
    /// Offering UUID.
    pub offering: String,
    pub name: String,
    pub version: String,
    /// UTC ISO-8601.
    pub last_restarted: String,
    pub dependencies: Vec<Dependency>,
    pub config_file_path: String,
    pub config_file_content: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AgentIdentity {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    pub url: String,
    pub offering: String,
    pub name: String,
    pub version: Option<String>,
    pub last_restarted: Option<String>,
    pub services: Vec<AgentService>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AgentService {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    pub url: String,
    pub name: String,
    pub mode: Option<String>,
    /// `Active`, `Idle`, `Error`.
    pub state: String,
    pub statistics: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AgentProcessor {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    pub url: String,
    pub name: String,
    pub backend_type: String,
    pub backend_version: Option<String>,
    pub last_run: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ObservableObject {
    pub object_type: String,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub offering_uuid: Option<String>,
    pub object_id: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct EventSubscription {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    pub url: String,
    pub description: String,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub user_uuid: Option<String>,
    pub user_username: String,
    pub observable_objects: Vec<ObservableObject>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct EventSubscriptionQueue {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub event_subscription_uuid: Option<String>,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub offering_uuid: Option<String>,
    pub object_type: String,
    pub queue_name: String,
    pub vhost: String,
}

/// Answer of `register_queue` (unified agent queue).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AgentQueue {
    pub rmq_username: String,
    pub queue_name: String,
    pub vhost: String,
    pub observable_object_types: Vec<String>,
}

/// `ResourceApiKeyStatus`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ResourceApiKey {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub resource_uuid: Option<String>,
    pub resource_backend_id: String,
    pub client_id: Option<String>,
    pub state: String,
    pub error_message: String,
    pub modified: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Project {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    pub url: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub end_date: Option<String>,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub customer_uuid: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A project service account or course account (same fields the agent reads).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct OfferingAccount {
    #[serde(deserialize_with = "uuid_hex::deserialize")]
    pub uuid: String,
    pub username: Option<String>,
    /// `OK`, `Closed`, `Erred`, `Pending`.
    pub state: String,
    #[serde(deserialize_with = "uuid_hex::deserialize_opt")]
    pub project_uuid: Option<String>,
    pub email: Option<String>,
}

/// Answer of `check_unique_backend_id`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct BackendIdCheck {
    pub is_unique: bool,
    pub is_valid_format: Option<bool>,
    pub errors: Vec<String>,
}

/// Answer of `set_membership_sync_statuses`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct MembershipSyncResult {
    pub stored: i64,
    pub skipped: Vec<String>,
}

/// One `usages[]` entry of `set_usage`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UsageItem {
    #[serde(rename = "type")]
    pub component_type: String,
    /// Decimal string with two decimals (Waldur rejects more).
    pub amount: String,
}

/// One `usages[]` entry of `set_user_usages`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UserUsageItem {
    pub username: String,
    pub usage: String,
    pub date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// One entry of `set_endpoints`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointItem {
    pub name: String,
    pub url: String,
}

/// Format an amount the way Waldur accepts it: two decimals.
pub fn format_amount(value: f64) -> String {
    format!("{:.2}", round2(value))
}

/// Round to two decimals (half away from zero).
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offering_user_keeps_only_profile_attributes_with_a_value() {
        let u: OfferingUser = serde_json::from_value(serde_json::json!({
            "uuid": "e290513cc7d34d77883628bd0418f6a2", "username": "u1", "state": "OK",
            "user_username": "u1", "user_email": "u1@example.com",
            "user_organization": "Uni", "user_affiliations": ["staff"], "user_phone_number": "",
            "user_nationalities": [], "user_birth_date": null, "user_uid_number": 1001,
            "offering_name": "Cluster", "consent_data": {"a": 1}, "has_consent": true,
        }))
        .expect("offering user");
        assert_eq!(u.user_email.as_deref(), Some("u1@example.com"));
        assert_eq!(u.username(), Some("u1"));
        let keys: Vec<&str> = u.extra.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["user_organization", "user_affiliations", "user_uid_number"]
        );
    }

    #[test]
    fn enums_keep_wire_strings_and_unknown_values() {
        let state: OrderState = serde_json::from_str("\"pending-provider\"").expect("json");
        assert_eq!(state, OrderState::PendingProvider);
        let odd: OrderState = serde_json::from_str("\"on-hold\"").expect("json");
        assert_eq!(odd, OrderState::Unknown("on-hold".into()));
        assert_eq!(serde_json::to_string(&odd).expect("json"), "\"on-hold\"");
        let ou: OfferingUserState =
            serde_json::from_str("\"Pending account linking\"").expect("json");
        assert_eq!(ou, OfferingUserState::PendingAccountLinking);
        let by_code: OfferingUserState = serde_json::from_str("5").expect("json");
        assert_eq!(by_code, OfferingUserState::Ok);
        assert_eq!(ResourceState::Ok.as_str(), "OK");
        assert_eq!(OfferingUserState::ErrorCreating.as_str(), "Error creating");
    }

    #[test]
    fn amounts_accept_strings_and_numbers() {
        let usage: ComponentUsage =
            serde_json::from_value(serde_json::json!({"uuid": "0d7d5d1b-0f7c-4b0f-8a0b-3c8c3b8c7b7c", "type": "cpu", "usage": "12.3400"}))
                .expect("json");
        assert_eq!(usage.usage, Some(12.34));
        assert_eq!(usage.uuid, "0d7d5d1b0f7c4b0f8a0b3c8c3b8c7b7c");
        let res: ProviderResource = serde_json::from_value(
            serde_json::json!({"uuid": "ab", "limits": {"cpu": 10, "mem": "2.5", "bad": "x"}}),
        )
        .expect("json");
        assert_eq!(res.limits.get("cpu"), Some(&10.0));
        assert_eq!(res.limits.get("mem"), Some(&2.5));
        // Kept, as NaN, so that the limit check refuses it instead of the limit vanishing.
        assert!(res.limits["bad"].is_nan());
        let order: Order = serde_json::from_value(
            serde_json::json!({"uuid": "ab", "limits": {"gpu": "inf", "cpu": [], "mem": 1e30}}),
        )
        .expect("json");
        assert!(order.limits["gpu"].is_nan());
        assert!(order.limits["cpu"].is_nan());
        assert_eq!(order.limits["mem"], 1e30);
        let usage: ProviderResource = serde_json::from_value(
            serde_json::json!({"uuid": "ab", "current_usages": {"cpu": "x", "mem": 1}}),
        )
        .expect("json");
        assert!(
            !usage.current_usages.contains_key("cpu"),
            "usages still drop junk"
        );
    }

    #[test]
    fn a_per_user_limit_that_is_not_a_number_is_kept_as_nan() {
        let parse = |v: serde_json::Value| -> ComponentUserUsageLimit {
            serde_json::from_value(serde_json::json!({"uuid": "ab", "limit": v})).expect("json")
        };
        assert!(
            parse(serde_json::json!("inf"))
                .limit
                .is_some_and(f64::is_nan)
        );
        assert_eq!(parse(serde_json::json!("2.5")).limit, Some(2.5));
        let absent: ComponentUserUsageLimit =
            serde_json::from_value(serde_json::json!({"uuid": "ab"})).expect("json");
        assert_eq!(absent.limit, None);
    }

    #[test]
    fn whole_amounts_go_out_as_integers() {
        assert_eq!(amount::to_json(5.0), serde_json::json!(5));
        assert_eq!(amount::to_json(0.5), serde_json::json!(0.5));
        assert_eq!(amount::to_json(1e30), serde_json::json!(1e30));
    }

    #[test]
    fn amounts_are_formatted_with_two_decimals() {
        assert_eq!(format_amount(1.005_1), "1.01");
        assert_eq!(format_amount(10.0), "10.00");
        assert_eq!(format_amount(0.004), "0.00");
    }

    #[test]
    fn truthiness_follows_python() {
        assert!(truthy(Some(&serde_json::json!(true))));
        assert!(truthy(Some(&serde_json::json!("yes"))));
        assert!(!truthy(Some(&serde_json::json!(""))));
        assert!(!truthy(Some(&serde_json::json!(0))));
        assert!(!truthy(None));
    }
}
