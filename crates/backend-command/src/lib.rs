//! The `command` backend: a site's own executable implements any role through a JSON protocol
//! on standard input and output (`docs/backends/command.md`). The counterpart of upstream's
//! custom backends by entry point, which a compiled agent cannot load.
//!
//! One call = one process: the agent writes one request and closes stdin; the program writes one
//! response and exits. Calls have a timeout (the process group is killed), errors come back with
//! a class (transient, duplicate, ...), and the executable runs through the agent's one
//! [`backend_api::command::CommandRunner`] (argument vector, never a shell).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_config::{BackendRole, OfferingConfig};
use async_trait::async_trait;
use backend_api::command::{CommandLine, CommandRunner, ProcessRunner};
use backend_api::names::validate_site_name;
use backend_api::spec::{BackendSpec, Kind, Setting, SettingIssue};
use backend_api::{
    BackendError, BackendHandles, BackendHealth, BackendResourceInfo, BackendResult, BillingPeriod,
    BuildContext, CreateRequest, Diagnostics, Limits, MembershipBackend, OfferingUserView,
    OrderBackend, ResourceView, UsageBackend, UsageReport, UserGrant, UsernameBackend,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// The protocol version this agent speaks (`"protocol"` of every request and response).
pub const PROTOCOL_VERSION: u64 = 1;

/// Registry name.
pub const BACKEND_NAME: &str = "command";

/// The settings of a `command` offering.
pub const SETTINGS: &[Setting] = &[
    Setting::new(
        "command",
        Kind::Path,
        "required",
        "the executable implementing the protocol (absolute path, or a name on `PATH`)",
    ),
    Setting::new(
        "args",
        Kind::List,
        "none",
        "arguments put before nothing else: the request goes to stdin, never on the command line",
    ),
    Setting::new(
        "timeout_seconds",
        Kind::Integer,
        "60",
        "a call running longer is killed with its process group (transient error)",
    ),
    Setting::new(
        "allocation_prefix",
        Kind::Prefix,
        "`\"\"`",
        "backend ids are `lower(allocation_prefix + resource slug)`, checked by the site-name rule",
    ),
    Setting::new(
        "settings",
        Kind::Object,
        "none",
        "free-form settings handed to the executable in every request (`settings`)",
    ),
];

/// What the `command` backend is.
pub static SPEC: BackendSpec = BackendSpec {
    name: BACKEND_NAME,
    description: "a site's own executable implementing any role through a versioned JSON \
                  protocol on stdin/stdout (docs/backends/command.md)",
    roles: &[
        BackendRole::OrderProcessing,
        BackendRole::MembershipSync,
        BackendRole::Reporting,
        BackendRole::UsernameManagement,
    ],
    settings: SETTINGS,
    components: "keys are Waldur component names, passed to the executable as they are; limits \
                 and usage travel in Waldur units",
    check,
    build,
};

/// Parsed settings.
#[derive(Clone, Debug)]
pub struct CommandSettings {
    pub command: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
    pub allocation_prefix: String,
    /// Handed to the executable (`settings` of every request).
    pub settings: Map<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSettings {
    command: Option<String>,
    args: Vec<String>,
    timeout_seconds: Option<u64>,
    allocation_prefix: String,
    settings: Map<String, Value>,
}

impl CommandSettings {
    pub fn parse(map: &Map<String, Value>) -> Result<Self, Vec<SettingIssue>> {
        let raw: RawSettings = serde_json::from_value(Value::Object(map.clone())).map_err(|e| {
            vec![SettingIssue {
                path: "backend_settings".into(),
                reason: format!("not valid for command: {e}"),
            }]
        })?;
        let mut issues = Vec::new();
        let command = raw.command.map(|c| c.trim().to_owned()).unwrap_or_default();
        if command.is_empty() {
            issues.push(SettingIssue::setting(
                "command",
                "is required: the executable implementing the protocol",
            ));
        }
        let timeout = raw.timeout_seconds.unwrap_or(60);
        if timeout == 0 || timeout > 3600 {
            issues.push(SettingIssue::setting(
                "timeout_seconds",
                format!("must be between 1 and 3600, found {timeout}"),
            ));
        }
        if !raw.allocation_prefix.is_empty()
            && let Err(reason) = agent_config::names::check_prefix(&raw.allocation_prefix)
        {
            issues.push(SettingIssue::setting("allocation_prefix", reason));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(CommandSettings {
            command: PathBuf::from(command),
            args: raw.args,
            timeout: Duration::from_secs(timeout),
            allocation_prefix: raw.allocation_prefix,
            settings: raw.settings,
        })
    }
}

fn check(offering: &OfferingConfig) -> Vec<SettingIssue> {
    CommandSettings::parse(&offering.backend_settings)
        .err()
        .unwrap_or_default()
}

/// Registry constructor.
pub fn build(ctx: &BuildContext<'_>) -> Result<BackendHandles, BackendError> {
    let settings = CommandSettings::parse(&ctx.offering.backend_settings).map_err(|issues| {
        let text: Vec<String> = issues
            .iter()
            .map(|i| format!("command {}: {}", i.path, i.reason))
            .collect();
        BackendError::Config(format!(
            "offering '{}': {}",
            ctx.offering.name,
            text.join("; ")
        ))
    })?;
    let runner = ProcessRunner::new(settings.timeout).shared();
    let backend = Arc::new(CommandBackend::new(&ctx.offering.name, settings, runner));
    Ok(backend.handles())
}

/// The backend: every operation is one run of the executable.
pub struct CommandBackend {
    offering: String,
    settings: CommandSettings,
    runner: Arc<dyn CommandRunner>,
}

/// The error of a response with `"ok": false`.
#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    class: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    backend_id: Option<String>,
    #[serde(default)]
    comment_url: Option<String>,
}

#[derive(Deserialize)]
struct WireResponse {
    protocol: u64,
    ok: bool,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    error: Option<WireError>,
}

impl CommandBackend {
    pub fn new(offering: &str, settings: CommandSettings, runner: Arc<dyn CommandRunner>) -> Self {
        CommandBackend {
            offering: offering.to_owned(),
            settings,
            runner,
        }
    }

    /// Registry handles sharing this instance (every role).
    pub fn handles(self: Arc<Self>) -> BackendHandles {
        BackendHandles {
            kind: BACKEND_NAME,
            health: self.clone(),
            orders: Some(self.clone()),
            membership: Some(self.clone()),
            usage: Some(self.clone()),
            usernames: Some(self),
        }
    }

    /// Run one operation: write the request, read and check the response.
    async fn call(&self, operation: &'static str, params: Value) -> BackendResult<Value> {
        let request = json!({
            "protocol": PROTOCOL_VERSION,
            "operation": operation,
            "offering": self.offering,
            "settings": self.settings.settings,
            "params": params,
        });
        let command = CommandLine::new(&self.settings.command)
            .args(self.settings.args.iter().cloned())
            .stdin(request.to_string());
        let output = self.runner.run(&command).await?;
        let shown = self.settings.command.display();
        let line = output
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let response: WireResponse = serde_json::from_str(line).map_err(|e| {
            BackendError::permanent(format!(
                "command backend {shown}: {operation}: the answer is not a protocol response ({e})"
            ))
        })?;
        if response.protocol != PROTOCOL_VERSION {
            return Err(BackendError::Config(format!(
                "command backend {shown} answers protocol {}, this agent speaks {PROTOCOL_VERSION}",
                response.protocol
            )));
        }
        if response.ok {
            return Ok(response.result);
        }
        let error = response.error.unwrap_or(WireError {
            class: "permanent".into(),
            message: "failed without an error object".into(),
            backend_id: None,
            comment_url: None,
        });
        let message = format!("{shown}: {operation}: {}", error.message);
        Err(match error.class.as_str() {
            "transient" => BackendError::Transient(message),
            "not_ready" => BackendError::NotReady(message),
            "duplicate" => BackendError::Duplicate {
                backend_id: error.backend_id.unwrap_or_default(),
            },
            "config" => BackendError::Config(message),
            "unsupported" => BackendError::Unsupported {
                backend: BACKEND_NAME,
                operation,
            },
            "account_linking_required" => BackendError::AccountLinkingRequired {
                message: error.message,
                comment_url: error.comment_url,
            },
            "additional_validation_required" => BackendError::AdditionalValidationRequired {
                message: error.message,
                comment_url: error.comment_url,
            },
            _ => BackendError::Permanent(message),
        })
    }

    async fn call_as<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        params: Value,
    ) -> BackendResult<T> {
        let value = self.call(operation, params).await?;
        serde_json::from_value(value).map_err(|e| {
            BackendError::permanent(format!(
                "command backend {}: {operation}: unexpected result: {e}",
                self.settings.command.display()
            ))
        })
    }

    /// Runs of the executable so far.
    pub fn calls(&self) -> u64 {
        self.runner.calls()
    }
}

fn resource_json(resource: &ResourceView) -> Value {
    serde_json::to_value(resource).unwrap_or(Value::Null)
}

#[async_trait]
impl BackendHealth for CommandBackend {
    fn kind(&self) -> &'static str {
        BACKEND_NAME
    }

    async fn ping(&self) -> BackendResult<()> {
        self.call("ping", json!({})).await.map(|_| ())
    }

    async fn diagnostics(&self) -> Diagnostics {
        let mut d = Diagnostics::new(BACKEND_NAME);
        d.check(
            "settings",
            true,
            format!(
                "command={} timeout={}s protocol={PROTOCOL_VERSION}",
                self.settings.command.display(),
                self.settings.timeout.as_secs()
            ),
        );
        match self.ping().await {
            Ok(()) => d.check("ping", true, "the executable answers"),
            Err(e) => d.check("ping", false, e.to_string()),
        }
        d
    }
}

#[async_trait]
impl OrderBackend for CommandBackend {
    fn backend_id_for(&self, base_slug: &str) -> BackendResult<String> {
        let id = format!("{}{}", self.settings.allocation_prefix, base_slug).to_lowercase();
        validate_site_name("resource name", &id)?;
        Ok(id)
    }

    async fn pull_resource(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Option<BackendResourceInfo>> {
        self.call_as(
            "pull_resource",
            json!({"resource": resource_json(resource)}),
        )
        .await
    }

    async fn create_resource(&self, request: CreateRequest) -> BackendResult<BackendResourceInfo> {
        validate_site_name("resource name", &request.backend_id)?;
        backend_api::traits::check_plain_limits(&request.resource.limits)?;
        self.call_as(
            "create_resource",
            json!({
                "resource": resource_json(&request.resource),
                "backend_id": request.backend_id,
                "context": request.context,
            }),
        )
        .await
    }

    async fn set_limits(&self, resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        backend_api::traits::check_plain_limits(limits)?;
        self.call(
            "set_limits",
            json!({"resource": resource_json(resource), "limits": limits}),
        )
        .await
        .map(|_| ())
    }

    async fn delete_resource(&self, resource: &ResourceView) -> BackendResult<()> {
        self.call(
            "delete_resource",
            json!({"resource": resource_json(resource)}),
        )
        .await
        .map(|_| ())
    }

    async fn add_users_after_create(
        &self,
        resource: &ResourceView,
        users: &[UserGrant],
    ) -> BackendResult<Vec<String>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        MembershipBackend::add_users(self, resource, users).await
    }
}

#[async_trait]
impl MembershipBackend for CommandBackend {
    async fn pull_resources(
        &self,
        resources: &[ResourceView],
    ) -> BackendResult<BTreeMap<String, BackendResourceInfo>> {
        let list: Vec<Value> = resources.iter().map(resource_json).collect();
        self.call_as("pull_resources", json!({"resources": list}))
            .await
    }

    async fn add_users(
        &self,
        resource: &ResourceView,
        users: &[UserGrant],
    ) -> BackendResult<Vec<String>> {
        for user in users {
            validate_site_name("username", &user.username)?;
        }
        self.call_as(
            "add_users",
            json!({"resource": resource_json(resource), "users": users}),
        )
        .await
    }

    async fn remove_users(
        &self,
        resource: &ResourceView,
        usernames: &[String],
    ) -> BackendResult<Vec<String>> {
        for user in usernames {
            validate_site_name("username", user)?;
        }
        self.call_as(
            "remove_users",
            json!({"resource": resource_json(resource), "usernames": usernames}),
        )
        .await
    }

    async fn pause(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.call_as("pause", json!({"resource": resource_json(resource)}))
            .await
    }

    async fn downscale(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.call_as("downscale", json!({"resource": resource_json(resource)}))
            .await
    }

    async fn restore(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.call_as("restore", json!({"resource": resource_json(resource)}))
            .await
    }

    async fn resource_metadata(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Map<String, Value>> {
        match self
            .call_as(
                "resource_metadata",
                json!({"resource": resource_json(resource)}),
            )
            .await
        {
            Err(BackendError::Unsupported { .. }) => Ok(Map::new()),
            other => other,
        }
    }
}

#[async_trait]
impl UsageBackend for CommandBackend {
    async fn usage_report(
        &self,
        backend_ids: &[String],
        period: &BillingPeriod,
    ) -> BackendResult<BTreeMap<String, UsageReport>> {
        self.call_as(
            "usage_report",
            json!({
                "backend_ids": backend_ids,
                "period": {
                    "year": period.year,
                    "month": period.month,
                    "start": period.start().timestamp().to_string(),
                    "end": period.end().timestamp().to_string(),
                },
            }),
        )
        .await
    }
}

#[async_trait]
impl UsernameBackend for CommandBackend {
    fn kind(&self) -> &'static str {
        BACKEND_NAME
    }

    async fn get_username(&self, user: &OfferingUserView) -> BackendResult<Option<String>> {
        self.call_as("get_username", json!({"user": user})).await
    }

    async fn generate_username(&self, user: &OfferingUserView) -> BackendResult<String> {
        self.call_as("generate_username", json!({"user": user}))
            .await
    }
}
