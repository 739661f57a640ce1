//! Per-offering Waldur context shared by the processors: the client, the backends, the offering's
//! details and per-cycle caches (offering users, teams per project, SSH keys).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agent_config::{AgentConfig, OfferingConfig};
use backend_api::{BackendError, OfferingBackends};
use jiff::tz::TimeZone;
use tokio::sync::Mutex;
use waldur_client::{
    OfferingAccount, OfferingUser, OfferingUserFilter, ProjectUser, ProviderOffering, WaldurClient,
    normalize_uuid,
};

use crate::error::{CoreError, CoreResult};

/// Agent-wide settings the processors read.
#[derive(Clone, Debug)]
pub struct CoreSettings {
    /// Billing-month timezone (report).
    pub timezone: TimeZone,
    /// Months reported: the current one and `n - 1` before it (1..=12).
    pub reporting_periods: u32,
    /// Put backend error text into Waldur error messages (else a generic message).
    pub expose_backend_error_details: bool,
    /// Orders of one offering processed at once.
    pub order_concurrency: usize,
    /// Agent version for identity registration.
    pub agent_version: String,
    /// Scrubs every configured secret from text the agent writes to Waldur (the log writer uses
    /// the same one).
    pub redactor: agent_config::Redactor,
}

impl Default for CoreSettings {
    fn default() -> Self {
        CoreSettings {
            timezone: TimeZone::UTC,
            reporting_periods: 2,
            expose_backend_error_details: true,
            order_concurrency: 8,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            redactor: agent_config::Redactor::default(),
        }
    }
}

impl CoreSettings {
    /// Settings from the loaded configuration. An unknown timezone is an error (upstream's
    /// silent fallback made backends and processor disagree on the billing month).
    pub fn from_config(config: &AgentConfig) -> CoreResult<Self> {
        let timezone = TimeZone::get(config.timezone.trim()).map_err(|e| {
            CoreError::invalid(format!("timezone '{}' is not valid: {e}", config.timezone))
        })?;
        Ok(CoreSettings {
            timezone,
            reporting_periods: config.reporting_periods.clamp(1, 12),
            expose_backend_error_details: config.expose_backend_error_details,
            order_concurrency: config.order_concurrency.max(1),
            redactor: agent_config::Redactor::new(agent_config::secret_values_of(config).iter()),
            ..CoreSettings::default()
        })
    }
}

/// Fields of the offering every processor needs (one GET per cycle).
pub const OFFERING_FIELDS: &[&str] = &[
    "uuid",
    "components",
    "customer_uuid",
    "partitions",
    "plugin_options",
];

/// What lives as long as the offering: its configuration, Waldur client, backends and settings,
/// what was learnt about the server, which resources are being worked on, and the shutdown
/// signal. Shared by every run of every processor of the offering.
pub struct Offering {
    pub config: OfferingConfig,
    /// Offering UUID, 32 hex.
    pub offering_uuid: String,
    pub client: WaldurClient,
    pub backends: OfferingBackends,
    pub settings: CoreSettings,
    /// Set once a Mastermind without service/course account listings was seen (logged once).
    accounts_unsupported: AtomicBool,
    /// Set once Waldur refused membership sync statuses for this offering (logged once).
    pub(crate) sync_statuses_refused: AtomicBool,
    /// Set once a Mastermind without agent-identity endpoints was seen (logged once).
    pub(crate) identity_unsupported: AtomicBool,
    /// What was learnt about the server: endpoints it lacks (each logged once).
    pub features: crate::features::ServerFeatures,
    /// Resources whose orders are being applied right now (by a polling pass, an event handler
    /// or a reconciliation pass), so that no two of them work on one resource at once.
    busy_resources: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Fires on shutdown: processors finish the item in hand and start no new one.
    cancel: tokio_util::sync::CancellationToken,
    /// (resource uuid, billing period) → fingerprint of the usage Waldur confirmed for it, so a
    /// report cycle reads and sends only what changed since (see `report.rs`).
    pub(crate) reported: std::sync::Mutex<HashMap<(String, String), u64>>,
    /// The report cycle's resource listing, reused while Waldur's fingerprint of it holds (see
    /// `report.rs`).
    pub(crate) report_listing: std::sync::Mutex<Option<crate::report::ListedResources>>,
    /// `None` when no backend of the offering reads grant attributes: then every grant shares
    /// this one empty map instead of a map per offering user.
    no_user_attributes: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
}

/// One run of a processor (a polling cycle, an event, a sweep): the [`Offering`] (reached
/// through `Deref`) plus caches of Waldur data (offering, offering users, teams, SSH keys,
/// service and course accounts) that live as long as the run. Every processor entry point starts
/// its own run with [`OfferingContext::new_run`], so runs that overlap (an event handler during a
/// reconciliation pass) never clear or share each other's caches.
pub struct OfferingContext {
    shared: Arc<Offering>,
    offering: Mutex<Option<Arc<ProviderOffering>>>,
    offering_users: Mutex<Option<Arc<Vec<OfferingUser>>>>,
    teams: Mutex<HashMap<String, Arc<Vec<ProjectUser>>>>,
    ssh_keys: Mutex<Option<Arc<BTreeMap<String, String>>>>,
    accounts: Mutex<Option<Arc<AccountLists>>>,
    /// [`crate::convert::user_attributes`] per offering user, made once a run and shared by
    /// every grant of that user.
    user_attributes:
        std::sync::Mutex<HashMap<String, Arc<serde_json::Map<String, serde_json::Value>>>>,
}

impl std::ops::Deref for OfferingContext {
    type Target = Offering;
    fn deref(&self) -> &Offering {
        &self.shared
    }
}

/// Changing the offering's settings or backends is for setting it up (tests, the binary), before
/// any run shares it; doing it later is a programming error.
impl std::ops::DerefMut for OfferingContext {
    fn deref_mut(&mut self) -> &mut Offering {
        Arc::get_mut(&mut self.shared).expect("an offering is configured before its runs share it")
    }
}

/// The right to apply orders to one resource; released on drop.
pub struct ResourceClaim<'a> {
    offering: &'a Offering,
    resource: String,
}

impl Drop for ResourceClaim<'_> {
    fn drop(&mut self) {
        self.offering
            .busy_resources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.resource);
    }
}

impl Offering {
    /// Shutdown was requested: start no new item.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Claim `resource` unless another task is applying its orders (`None` then: that task
    /// sees the same orders, so this one leaves them).
    pub fn try_claim_resource(&self, resource: &str) -> Option<ResourceClaim<'_>> {
        let inserted = self
            .busy_resources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(resource.to_owned());
        inserted.then(|| ResourceClaim {
            offering: self,
            resource: resource.to_owned(),
        })
    }

    /// Claim `resource`, waiting for whoever holds it (event handlers: their order must run).
    pub async fn claim_resource(&self, resource: &str) -> ResourceClaim<'_> {
        let mut delay = std::time::Duration::from_millis(20);
        loop {
            if let Some(claim) = self.try_claim_resource(resource) {
                return claim;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_millis(500));
        }
    }

    /// Name for logs and reports.
    pub fn name(&self) -> &str {
        &self.config.name
    }
}

impl OfferingContext {
    pub fn new(
        config: OfferingConfig,
        client: WaldurClient,
        backends: OfferingBackends,
        settings: CoreSettings,
    ) -> Self {
        let offering_uuid = normalize_uuid(&config.waldur_offering_uuid);
        let attributes_unused = !backends.health.is_empty()
            && backends
                .health
                .iter()
                .all(|b| !b.capabilities().uses_user_attributes);
        Self::run_of(Arc::new(Offering {
            config,
            offering_uuid,
            client,
            backends,
            settings,
            accounts_unsupported: AtomicBool::new(false),
            sync_statuses_refused: AtomicBool::new(false),
            identity_unsupported: AtomicBool::new(false),
            features: Default::default(),
            busy_resources: Default::default(),
            cancel: tokio_util::sync::CancellationToken::new(),
            reported: Default::default(),
            report_listing: Default::default(),
            no_user_attributes: attributes_unused.then(Default::default),
        }))
    }

    fn run_of(shared: Arc<Offering>) -> Self {
        OfferingContext {
            shared,
            offering: Mutex::new(None),
            offering_users: Mutex::new(None),
            teams: Mutex::new(HashMap::new()),
            ssh_keys: Mutex::new(None),
            accounts: Mutex::new(None),
            user_attributes: Default::default(),
        }
    }

    /// The attributes a grant of `user` carries (none without an offering user), made once
    /// this run.
    pub fn grant_attributes(
        &self,
        user: Option<&OfferingUser>,
    ) -> Arc<serde_json::Map<String, serde_json::Value>> {
        if let Some(empty) = &self.no_user_attributes {
            return empty.clone();
        }
        let Some(user) = user else {
            return Arc::default();
        };
        let mut made = self
            .user_attributes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        made.entry(user.uuid.clone())
            .or_insert_with(|| Arc::new(crate::convert::user_attributes(user)))
            .clone()
    }

    /// Share the agent's shutdown signal with this offering's processors (call right after
    /// [`OfferingContext::new`], before any run exists).
    pub fn with_cancellation(mut self, cancel: tokio_util::sync::CancellationToken) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared.cancel = cancel,
            None => tracing::error!("with_cancellation called on a shared offering; ignored"),
        }
        self
    }

    /// A new run of the same offering, with empty caches: what every processor entry point
    /// works in, so it sees fresh Waldur data and leaves other runs' caches alone.
    pub fn new_run(&self) -> OfferingContext {
        Self::run_of(self.shared.clone())
    }

    /// Offering details (components, customer, partitions, plugin options), cached per cycle.
    pub async fn offering(&self) -> CoreResult<Arc<ProviderOffering>> {
        let mut slot = self.offering.lock().await;
        if let Some(offering) = slot.as_ref() {
            return Ok(offering.clone());
        }
        let fetched = Arc::new(
            self.client
                .get_offering(&self.offering_uuid, OFFERING_FIELDS)
                .await?,
        );
        *slot = Some(fetched.clone());
        Ok(fetched)
    }

    /// Unrestricted offering users of this offering (all fields the server exposes), cached.
    pub async fn offering_users(&self) -> CoreResult<Arc<Vec<OfferingUser>>> {
        let mut slot = self.offering_users.lock().await;
        if let Some(users) = slot.as_ref() {
            return Ok(users.clone());
        }
        let filter = OfferingUserFilter {
            offering_uuid: Some(self.offering_uuid.clone()),
            is_restricted: Some(false),
            ..OfferingUserFilter::default()
        };
        let fetched = Arc::new(self.client.list_offering_users(&filter).await?);
        *slot = Some(fetched.clone());
        Ok(fetched)
    }

    /// Forget the cached offering users (after usernames changed).
    pub async fn invalidate_offering_users(&self) {
        *self.offering_users.lock().await = None;
    }

    /// The team of a resource, cached per project (all resources of a project share a team).
    pub async fn team(
        &self,
        resource_uuid: &str,
        project_uuid: &str,
    ) -> CoreResult<Arc<Vec<ProjectUser>>> {
        let key = if project_uuid.is_empty() {
            format!("resource:{resource_uuid}")
        } else {
            project_uuid.to_owned()
        };
        if let Some(team) = self.teams.lock().await.get(&key) {
            return Ok(team.clone());
        }
        let fetched = Arc::new(self.client.resource_team(resource_uuid, false).await?);
        // Only cache non-empty teams: an empty one may be Waldur not having committed it yet.
        if !fetched.is_empty() {
            self.teams.lock().await.insert(key, fetched.clone());
        }
        Ok(fetched)
    }

    /// SSH keys of the service provider's users (key uuid → public key); failures give none.
    pub async fn ssh_keys(&self) -> Arc<BTreeMap<String, String>> {
        let mut slot = self.ssh_keys.lock().await;
        if let Some(keys) = slot.as_ref() {
            return keys.clone();
        }
        let keys = match self.fetch_ssh_keys().await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(offering = %self.name(), error = %e, "cannot read service provider SSH keys");
                BTreeMap::new()
            }
        };
        let keys = Arc::new(keys);
        *slot = Some(keys.clone());
        keys
    }

    async fn fetch_ssh_keys(&self) -> CoreResult<BTreeMap<String, String>> {
        let offering = self.offering().await?;
        let customer = offering
            .customer_uuid
            .clone()
            .ok_or_else(|| CoreError::invalid("offering has no customer_uuid"))?;
        let providers = self.client.list_service_providers(&customer).await?;
        let provider = providers.first().ok_or_else(|| {
            CoreError::invalid(format!("no service provider for customer {customer}"))
        })?;
        let keys = self.client.service_provider_keys(&provider.uuid).await?;
        Ok(keys.into_iter().map(|k| (k.uuid, k.public_key)).collect())
    }

    /// Project service accounts and course accounts of the offering (offering-scoped listings,
    /// which agent tokens may read), cached per cycle. Best-effort: a listing that fails counts
    /// as empty; a Mastermind without these endpoints (404) is logged once.
    pub async fn accounts(&self) -> Arc<AccountLists> {
        let mut slot = self.accounts.lock().await;
        if let Some(accounts) = slot.as_ref() {
            return accounts.clone();
        }
        let service = self
            .client
            .list_project_service_accounts(&self.offering_uuid)
            .await;
        let course = self.client.list_course_accounts(&self.offering_uuid).await;
        let keep =
            |kind: &str, result: Result<Vec<OfferingAccount>, waldur_client::WaldurError>| {
                match result {
                    Ok(list) => list,
                    Err(e) if e.is_not_found() => {
                        if !self.accounts_unsupported.swap(true, Ordering::Relaxed) {
                            tracing::info!(offering = %self.name(), "Waldur has no {kind} listing; {kind}s are not synced");
                        }
                        Vec::new()
                    }
                    Err(e) => {
                        tracing::warn!(offering = %self.name(), error = %e, "cannot list {kind}s; skipping them this cycle");
                        Vec::new()
                    }
                }
            };
        let lists = Arc::new(AccountLists {
            service: keep("project service account", service),
            course: keep("course account", course),
        });
        *slot = Some(lists.clone());
        lists
    }

    /// Message and traceback put into Waldur for a failure (`set_state_erred`, `set_as_erred`),
    /// honouring `expose_backend_error_details` the way upstream does: when exposed, the error
    /// text and its structured detail; when not, a backend's own message (its errors are written
    /// for users) without detail, except the raw output of a site command, and a generic message
    /// for anything else (Waldur or internal failures).
    /// Every configured secret is scrubbed from both: a site's error output may echo one.
    pub fn error_details(&self, error: &CoreError) -> (String, String) {
        let scrub = |text: String| self.settings.redactor.scrub(&text);
        if self.settings.expose_backend_error_details {
            return (scrub(error.to_string()), scrub(format!("{error:?}")));
        }
        let message = match error {
            CoreError::Backend(BackendError::Command { exit, .. }) => {
                format!("A site command failed (exit {exit}). Please contact the service provider.")
            }
            CoreError::Backend(e) => e.to_string(),
            _ => GENERIC_ERROR_MESSAGE.to_owned(),
        };
        (scrub(message), String::new())
    }

    /// The message part of [`OfferingContext::error_details`].
    pub fn error_message(&self, error: &CoreError) -> String {
        self.error_details(error).0
    }

    pub(crate) fn mark_identity_unsupported(&self) -> bool {
        !self.identity_unsupported.swap(true, Ordering::Relaxed)
    }
}

/// What Waldur is told when backend error details are hidden and the failure is not a backend's.
pub const GENERIC_ERROR_MESSAGE: &str =
    "Internal backend error. Please contact the service provider.";

/// The offering's project service accounts and course accounts.
#[derive(Clone, Debug, Default)]
pub struct AccountLists {
    pub service: Vec<OfferingAccount>,
    pub course: Vec<OfferingAccount>,
}

impl AccountLists {
    /// Usernames of a project's accounts in `state` (`OK` → should have access, `Closed` → not).
    pub fn usernames(&self, project_uuid: &str, state: &str) -> Vec<String> {
        let project = normalize_uuid(project_uuid);
        let mut names: Vec<String> = self
            .service
            .iter()
            .chain(self.course.iter())
            .filter(|a| a.project_uuid.as_deref() == Some(project.as_str()))
            .filter(|a| a.state.eq_ignore_ascii_case(state))
            .filter_map(|a| a.username.as_deref().map(str::trim))
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        names
    }
}
