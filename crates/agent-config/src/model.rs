//! The configuration model: upstream's YAML format (`agent-behaviour.md` §2), typed.
//!
//! These types are what the rest of the agent sees after loading: `${VAR}` references are already
//! expanded and every value validated. Unknown keys are tolerated at load time (with a warning), so
//! every struct here is permissive on input.

use std::collections::BTreeMap;
use std::fmt;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A configuration value that must never be printed: tokens, passwords, DSNs.
///
/// `Debug` and `Display` print `***`; use [`Secret::expose`] at the single place the value is sent.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret text, for the one place that sends it (an HTTP header, a CLI's stdin, ...).
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct AgentConfig {
    pub offerings: Vec<OfferingConfig>,
    #[serde(default)]
    pub sentry_dsn: Option<Secret>,
    #[serde(default)]
    pub elastic_apm_server_url: Option<String>,
    /// IANA zone used for billing months (report mode).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// HTTP(S)/SOCKS proxy for every Waldur API client (applied everywhere, unlike upstream).
    #[serde(default)]
    pub global_proxy: Option<String>,
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Number of billing months reported: the current one and `n - 1` before it (1..=12).
    #[serde(default = "default_reporting_periods")]
    pub reporting_periods: u32,
    #[serde(default = "default_true")]
    pub expose_backend_error_details: bool,
    #[serde(default)]
    pub log_shipping: LogShipping,
    /// Ours: address for `/healthz` and `/metrics` (e.g. `127.0.0.1:9090`); off when absent.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// Ours: path of the liveness heartbeat file.
    #[serde(default = "default_heartbeat_path")]
    pub heartbeat_path: String,
    /// Ours: how many orders of one offering are processed at once.
    #[serde(default = "default_order_concurrency")]
    pub order_concurrency: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct LogShipping {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_ship_interval")]
    pub ship_interval_seconds: u64,
    #[serde(default = "default_buffer_mb")]
    pub buffer_size_mb: u64,
    #[serde(default = "default_ship_level")]
    pub log_level: String,
}

impl Default for LogShipping {
    fn default() -> Self {
        LogShipping {
            enabled: false,
            ship_interval_seconds: default_ship_interval(),
            buffer_size_mb: default_buffer_mb(),
            log_level: default_ship_level(),
        }
    }
}

/// One entry of `offerings:`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct OfferingConfig {
    /// Display name; when absent the loader uses the offering UUID (with a warning).
    #[serde(default)]
    pub name: String,
    #[serde(alias = "api_url")]
    pub waldur_api_url: String,
    #[serde(default, alias = "api_token")]
    pub waldur_api_token: Secret,
    #[serde(default)]
    pub oidc_token_url: Option<String>,
    #[serde(default)]
    pub oidc_client_id: Option<String>,
    #[serde(default)]
    pub oidc_client_secret: Option<Secret>,
    #[serde(alias = "uuid")]
    pub waldur_offering_uuid: String,
    pub backend_type: String,
    /// Free-form, read by the backend named in `backend_type` (each backend parses its own struct).
    #[serde(default)]
    pub backend_settings: Map<String, Value>,
    /// Component key → definition, in file order.
    #[serde(default)]
    pub backend_components: IndexMap<String, BackendComponent>,

    #[serde(default)]
    pub order_processing_backend: Option<String>,
    #[serde(default)]
    pub membership_sync_backend: Option<String>,
    #[serde(default)]
    pub reporting_backend: Option<String>,
    #[serde(default)]
    pub username_management_backend: Option<String>,

    #[serde(default = "default_true")]
    pub verify_ssl: bool,
    #[serde(default)]
    pub resource_import_enabled: bool,
    #[serde(default)]
    pub username_reconciliation_enabled: bool,
    /// Upstream 1.0.7: keep site users Waldur never knew as offering users of this offering
    /// (any state) instead of removing every site user who is not on the resource's team.
    #[serde(default)]
    pub preserve_unmanaged_backend_users: bool,
    /// Upstream 1.0.7: when a component's usage would go down, leave out only that component
    /// and report the others (default: the whole submission is held back).
    #[serde(default)]
    pub omit_anomalous_usage_components: bool,

    // Event processing (STOMP over WebSocket, MQTT).
    #[serde(default)]
    pub stomp_enabled: bool,
    #[serde(default)]
    pub stomp_membership_sync_enabled: Option<bool>,
    #[serde(default)]
    pub stomp_ws_host: Option<String>,
    #[serde(default)]
    pub stomp_ws_port: Option<u16>,
    #[serde(default)]
    pub stomp_ws_path: Option<String>,
    #[serde(default = "default_true")]
    pub websocket_use_tls: bool,
    #[serde(default)]
    pub mqtt_enabled: bool,
    #[serde(default)]
    pub mqtt_host: Option<String>,
    #[serde(default)]
    pub mqtt_port: Option<u16>,
    #[serde(default)]
    pub mqtt_ws_path: Option<String>,
    #[serde(default)]
    pub mqtt_use_websocket: Option<bool>,
}

impl OfferingConfig {
    /// The role's backend name, `None` when the role is disabled (absent or blank).
    pub fn role_backend(&self, role: BackendRole) -> Option<&str> {
        let name = match role {
            BackendRole::OrderProcessing => self.order_processing_backend.as_deref(),
            BackendRole::MembershipSync => self.membership_sync_backend.as_deref(),
            BackendRole::Reporting => self.reporting_backend.as_deref(),
            BackendRole::UsernameManagement => Some(
                self.username_management_backend
                    .as_deref()
                    .unwrap_or("base"),
            ),
        };
        name.map(str::trim).filter(|n| !n.is_empty())
    }

    /// Whether membership is driven by events (so polling membership_sync skips this offering).
    pub fn membership_via_events(&self) -> bool {
        self.stomp_membership_sync_enabled
            .unwrap_or(self.stomp_enabled || self.mqtt_enabled)
    }

    /// Whether orders are driven by events (so polling order_process skips this offering).
    pub fn events_enabled(&self) -> bool {
        self.stomp_enabled || self.mqtt_enabled
    }

    /// Offering UUID as 32 lower-case hex digits (Waldur accepts both, queue names need this form).
    pub fn offering_uuid_hex(&self) -> String {
        self.waldur_offering_uuid
            .replace('-', "")
            .to_ascii_lowercase()
    }

    /// A `backend_settings` string, trimmed, `None` when absent or blank.
    pub fn setting_str(&self, key: &str) -> Option<&str> {
        self.backend_settings
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
}

/// The four backend roles of an offering (upstream's four config slots).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendRole {
    OrderProcessing,
    MembershipSync,
    Reporting,
    UsernameManagement,
}

impl BackendRole {
    pub fn config_key(self) -> &'static str {
        match self {
            BackendRole::OrderProcessing => "order_processing_backend",
            BackendRole::MembershipSync => "membership_sync_backend",
            BackendRole::Reporting => "reporting_backend",
            BackendRole::UsernameManagement => "username_management_backend",
        }
    }
}

/// How Waldur bills a component (`billing_type` on the Waldur side).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountingType {
    Usage,
    Limit,
    /// One-time / prepaid.
    One,
    Fixed,
}

impl AccountingType {
    /// The Waldur `billing_type` wire value.
    pub fn billing_type(self) -> &'static str {
        match self {
            AccountingType::Usage => "usage",
            AccountingType::Limit => "limit",
            AccountingType::One => "one",
            AccountingType::Fixed => "fixed",
        }
    }
}

/// One entry of `backend_components`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BackendComponent {
    pub measured_unit: String,
    /// Waldur unit → backend unit multiplier: `backend = waldur × unit_factor`.
    #[serde(default = "default_unit_factor")]
    pub unit_factor: f64,
    #[serde(default)]
    pub unit_factor_reporting: Option<f64>,
    pub accounting_type: AccountingType,
    pub label: String,
    #[serde(default)]
    pub limit: Option<f64>,
    /// Everything else (`target_components`, `description`, `min_value`, prepaid durations, ...),
    /// passed through to Waldur or read by backends.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl BackendComponent {
    /// Factor used to convert backend usage back into Waldur units.
    pub fn reporting_factor(&self) -> f64 {
        self.unit_factor_reporting.unwrap_or(self.unit_factor)
    }
}

fn default_timezone() -> String {
    "UTC".to_owned()
}
fn default_log_level() -> String {
    "INFO".to_owned()
}
fn default_reporting_periods() -> u32 {
    2
}
fn default_true() -> bool {
    true
}
fn default_ship_interval() -> u64 {
    60
}
fn default_buffer_mb() -> u64 {
    1
}
fn default_ship_level() -> String {
    "WARNING".to_owned()
}
fn default_unit_factor() -> f64 {
    1.0
}
fn default_heartbeat_path() -> String {
    "/tmp/waldur-site-agent-heartbeat".to_owned()
}
fn default_order_concurrency() -> usize {
    8
}
