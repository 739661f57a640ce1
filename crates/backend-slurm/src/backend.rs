//! [`SlurmBackend`]: the backend-api capabilities on top of sacctmgr / sacct.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use indexmap::IndexMap;
use jiff::tz::TimeZone;
use serde_json::{Map, Value};

use agent_config::BackendComponent;
use backend_api::command::{CommandLine, CommandRunner};
use backend_api::names::{validate_site_name, validate_site_token};
use backend_api::{
    BackendError, BackendHealth, BackendResourceInfo, BackendResult, BillingPeriod, Capabilities,
    Check, CreateRequest, Diagnostics, Limits, MembershipBackend, MembershipChange, OrderBackend,
    ResourceView, SiteCheck, UsageBackend, UsageReport, UserGrant,
};

use crate::gate::ClusterGate;
use crate::hierarchy::{AccountPlan, AddGroup, Hierarchy, Tier, missing_account_groups};
use crate::pacer::LoadPacer;
use crate::sacctmgr::{
    AccountState, LoadAccount, LoadReport, LoadUser, SlurmCommands, UserAssocOptions,
    accounts_from_rows, is_jobs_running, is_nothing_changed, parse_assoc_rows, parse_first_column,
    parse_load_report, parse_tres_names, parse_user_defaults, render_load_file,
};
use crate::settings::{DefaultAccountPolicy, SlurmSettings};
use crate::tres::{ComponentMap, TresAmounts, format_tres, parse_limit_tres, prepaid_months};
use crate::usage::{aggregate, sacct_window};

/// How long the cluster's TRES list is trusted before it is read again.
const TRES_CACHE_TTL: Duration = Duration::from_secs(600);
/// How long a `check_ids` answer may stand in for the create's own existence check.
const SNAPSHOT_TTL: Duration = Duration::from_secs(5);
/// How long the account tree as last read (see [`KnownTree`]) answers the membership calls of
/// a cycle instead of another `show assoc`. A membership cycle reads the tree once at its start;
/// changes made on the site by others meanwhile are seen by the next cycle's read.
const KNOWN_TREE_TTL: Duration = Duration::from_secs(30);

/// Accounts as the last `show assoc` showed them (`None`: asked for and not listed), with when.
/// Every read refreshes it; membership sync and the per-resource reads after it (metadata,
/// per-user limits) use it instead of reading each account again.
#[derive(Default)]
struct KnownTree {
    accounts: BTreeMap<String, (Instant, Option<AccountState>)>,
}

impl KnownTree {
    fn record(&mut self, names: &[String], states: &BTreeMap<String, AccountState>) {
        let now = Instant::now();
        // Bounded by the accounts of the last TTL, not by everything ever read.
        self.accounts
            .retain(|_, (at, _)| at.elapsed() < KNOWN_TREE_TTL);
        for name in names {
            self.accounts
                .insert(name.clone(), (now, states.get(name).cloned()));
        }
    }

    /// The states of `names` when every one of them was listed within the TTL. An account
    /// seen missing is asked for again: "does not exist" must come from the site itself.
    fn covering(&self, names: &[String]) -> Option<BTreeMap<String, AccountState>> {
        let mut out = BTreeMap::new();
        for name in names {
            let (at, state) = self.accounts.get(name)?;
            if at.elapsed() >= KNOWN_TREE_TTL {
                return None;
            }
            out.insert(name.clone(), state.clone()?);
        }
        Some(out)
    }

    fn forget<'a>(&mut self, names: impl IntoIterator<Item = &'a String>) {
        for name in names {
            self.accounts.remove(name);
        }
    }
}

/// The status flag a resource's account must show (pause, downscale, restore).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum StatusTarget {
    Qos(String),
    /// `GrpSubmitJobs` (QoS enforcement): 0 to stop new work, -1 to clear.
    SubmitJobs(i64),
}

impl StatusTarget {
    fn holds(&self, state: &AccountState) -> bool {
        match self {
            StatusTarget::Qos(q) => state.qos == *q,
            StatusTarget::SubmitJobs(v) => {
                let current: Option<i64> = state.grp_submit_jobs.trim().parse().ok();
                current == (*v >= 0).then_some(*v)
            }
        }
    }

    fn assignment(&self) -> String {
        match self {
            StatusTarget::Qos(q) => format!("qos={q}"),
            StatusTarget::SubmitJobs(v) => format!("GrpSubmitJobs={v}"),
        }
    }
}

/// A membership change done: the usernames of its additions that have access, and whether the
/// status flag had to be written.
type Applied = (Vec<String>, bool);

/// One resource's membership work, worked out against the account as read.
struct MemberWork {
    index: usize,
    account: String,
    /// Every valid username of the change's additions (they have access afterwards).
    wanted: Vec<String>,
    add: Vec<String>,
    remove: Vec<String>,
    options: UserAssocOptions,
    status: Option<StatusTarget>,
}

impl MemberWork {
    fn done_in(&self, state: &AccountState) -> bool {
        self.add.iter().all(|u| state.users.contains_key(u))
            && self.remove.iter().all(|u| !state.users.contains_key(u))
            && self.status.as_ref().is_none_or(|t| t.holds(state))
    }

    /// Keep only what `state` does not show yet.
    fn narrow_to(&mut self, state: &AccountState) {
        self.add.retain(|u| !state.users.contains_key(u));
        self.remove.retain(|u| state.users.contains_key(u));
        if self.status.as_ref().is_some_and(|t| t.holds(state)) {
            self.status = None;
        }
    }

    fn has_writes(&self) -> bool {
        !self.add.is_empty() || !self.remove.is_empty() || self.status.is_some()
    }
}

/// The account states read by `check_ids`, with what was asked and when; handed to the create
/// in [`backend_api::SiteCheck::reads`].
struct ExistenceSnapshot {
    taken: Instant,
    queried: BTreeSet<String>,
    states: BTreeMap<String, AccountState>,
    /// Default accounts of the requests' users, read alongside (for the load file's user lines).
    user_defaults: Option<UserDefaults>,
}

/// `list user` answer: who was asked, and the default account of those SLURM knows.
#[derive(Clone, Default)]
struct UserDefaults {
    queried: BTreeSet<String>,
    defaults: BTreeMap<String, String>,
}

impl UserDefaults {
    /// The answer when it covers every one of `users`.
    fn covering(this: Option<&Self>, users: &BTreeSet<String>) -> Option<BTreeMap<String, String>> {
        let this = this?;
        users.is_subset(&this.queried).then(|| {
            this.defaults
                .iter()
                .filter(|(u, _)| users.contains(*u))
                .map(|(u, d)| (u.clone(), d.clone()))
                .collect()
        })
    }
}
/// Accounts per sacct call (keeps the command line well below any limit).
const SACCT_ACCOUNTS_PER_CALL: usize = 500;

/// The SLURM backend. Cheap to share (`Arc`); all state is behind mutexes.
pub struct SlurmBackend {
    settings: SlurmSettings,
    hierarchy: Hierarchy,
    components: ComponentMap,
    commands: SlurmCommands,
    runner: Arc<dyn CommandRunner>,
    /// One writer at a time per cluster (see [`crate::gate`]).
    gate: Arc<ClusterGate>,
    tres_cache: Mutex<Option<(Instant, BTreeSet<String>)>>,
    /// The cluster `sacctmgr load` files name when `cluster_name` is not configured: the only
    /// cluster of the accounting database, found once.
    discovered_cluster: Mutex<Option<String>>,
    /// (account, user) associations made by a batch create, consumed by `add_users_after_create`
    /// so the same associations are not checked again right after.
    fresh_assocs: Mutex<BTreeSet<(String, String)>>,
    known: Mutex<KnownTree>,
    /// Sizes `sacctmgr load` chunks by what the last load's rows cost.
    pacer: LoadPacer,
    /// Timezone sacct interprets `--starttime`/`--endtime` in.
    local_tz: TimeZone,
}

/// What a create request needs once validated.
struct Prepared {
    plan: AccountPlan,
    tres: TresAmounts,
    users: Vec<String>,
    options: UserAssocOptions,
}

/// What one `sacctmgr load` verifiably created.
struct LoadOutcome {
    /// State of every account the file listed that exists now.
    states: BTreeMap<String, AccountState>,
    /// (allocation, user) associations that exist now.
    assocs: BTreeSet<(String, String)>,
    /// Every account the file listed (whether the read-back showed it or not).
    listed: BTreeSet<String>,
    /// Accounts the load found existing and moved under the planned parent: created by
    /// someone else between the existence check and the load, so never ours.
    moved: BTreeSet<String>,
}

/// A load file only we can read, removed when dropped.
struct LoadFile {
    path: std::path::PathBuf,
}

impl LoadFile {
    fn create(text: &str) -> std::io::Result<Self> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "waldur-slurm-load-{}-{nanos}-{}.cfg",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // create_new: never follow a planted symlink or reuse someone else's file.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let file_guard = LoadFile { path };
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        Ok(file_guard)
    }
}

impl Drop for LoadFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove sacctmgr load file");
        }
    }
}

/// A one-row `sacctmgr` read slower than this is mostly waiting, not working (see
/// [`round_trip_note`]).
const SLOW_ROUND_TRIP: Duration = Duration::from_millis(100);

/// What one `sacctmgr` read costs, with the likely cause when it is slow: slurmdbd (22.05 at
/// least) sends each answer as a length header and a body in two writes, so the body waits for
/// the client's delayed ACK (about 40 ms on Linux), four times per call. Measured here: 180 ms
/// per read and 1.0 s per one-account load, 7 ms and 0.13 s with `quickack 1` on the route.
pub(crate) fn round_trip_note(took: Duration) -> String {
    let ms = took.as_millis();
    if took < SLOW_ROUND_TRIP {
        return format!("{ms} ms for a one-row read");
    }
    format!(
        "{ms} ms for a one-row read: slurmdbd's answers are probably waiting for delayed ACKs \
         (about 40 ms each, several per call). `quickack 1` on this host's route to slurmdbd \
         usually brings a call to a few ms; see docs/backends/slurm.md, \"Latency\""
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A copy of an error for every item a failed batch call concerned.
fn share_error(e: &BackendError) -> BackendError {
    match e {
        BackendError::Command {
            command,
            exit,
            output,
            transient,
        } => BackendError::Command {
            command: command.clone(),
            exit: exit.clone(),
            output: output.clone(),
            transient: *transient,
        },
        BackendError::Duplicate { backend_id } => BackendError::Duplicate {
            backend_id: backend_id.clone(),
        },
        BackendError::Config(m) => BackendError::Config(m.clone()),
        other if other.is_transient() => BackendError::transient(other.to_string()),
        other => BackendError::permanent(other.to_string()),
    }
}

fn validate_partition_or_qos(what: &'static str, name: &str) -> BackendResult<()> {
    validate_site_name(what, name)?;
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Ok(())
    } else {
        Err(BackendError::InvalidName {
            what,
            value: name.to_owned(),
            reason: "partition and QoS names may only contain letters, digits, '_' and '-'".into(),
        })
    }
}

impl SlurmBackend {
    pub fn new(
        settings: SlurmSettings,
        components: IndexMap<String, BackendComponent>,
        runner: Arc<dyn CommandRunner>,
    ) -> BackendResult<Self> {
        for key in components.keys() {
            // Component keys are TRES names and end up inside GrpTRESMins=...
            validate_site_token("component (TRES) name", key)?;
        }
        let hierarchy = Hierarchy {
            root_account: settings.root().to_owned(),
            parent_account: settings.parent_account.clone(),
            customer_prefix: settings.customer_prefix.clone(),
            project_prefix: settings.project_prefix.clone(),
            allocation_prefix: settings.allocation_prefix.clone(),
        };
        let commands =
            SlurmCommands::new(&settings.slurm_bin_path, settings.cluster_name.as_deref());
        let components = ComponentMap::new(components);
        let lock_dir = settings.write_lock_dir.trim();
        let gate = ClusterGate::shared(
            &settings.slurm_bin_path,
            settings.cluster_name.as_deref(),
            (!lock_dir.is_empty()).then(|| std::path::PathBuf::from(lock_dir)),
        );
        for tres in components.tres_names() {
            validate_site_token("component (TRES) name", &tres)?;
        }
        let pacer = LoadPacer::new(
            settings.load_chunk_rows,
            Duration::from_secs(settings.write_chunk_seconds),
        );
        Ok(SlurmBackend {
            settings,
            hierarchy,
            components,
            commands,
            runner,
            gate,
            tres_cache: Mutex::new(None),
            discovered_cluster: Mutex::new(None),
            fresh_assocs: Mutex::new(BTreeSet::new()),
            known: Mutex::new(KnownTree::default()),
            pacer,
            local_tz: TimeZone::system(),
        })
    }

    /// Override the timezone sacct runs in (tests; sites whose sacct runs with another `TZ`).
    pub fn with_local_timezone(mut self, tz: TimeZone) -> Self {
        self.local_tz = tz;
        self
    }

    pub fn settings(&self) -> &SlurmSettings {
        &self.settings
    }

    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    pub fn commands(&self) -> &SlurmCommands {
        &self.commands
    }

    /// Commands run so far (for call-count tests and benchmarks).
    pub fn calls(&self) -> u64 {
        self.runner.calls()
    }

    async fn exec(&self, cmd: CommandLine) -> BackendResult<String> {
        tracing::debug!(command = %cmd.display(), "slurm command");
        Ok(self.runner.run(&cmd).await?.stdout)
    }

    /// Run a command that changes the accounting database: one at a time per cluster.
    async fn exec_write(&self, cmd: CommandLine) -> BackendResult<String> {
        let _turn = self.gate.write().await;
        self.exec(cmd).await
    }

    /// Run a modifying command; `Ok(false)` when sacctmgr says nothing changed (exit 1).
    async fn exec_change(&self, cmd: CommandLine) -> BackendResult<bool> {
        match self.exec_write(cmd).await {
            Ok(_) => Ok(true),
            Err(BackendError::Command { output, .. }) if is_nothing_changed(&output) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// TRES the cluster knows (cached). Empty when it cannot be read: then nothing is filtered.
    async fn cluster_tres(&self) -> BTreeSet<String> {
        if let Some((at, names)) = lock(&self.tres_cache).as_ref()
            && at.elapsed() < TRES_CACHE_TTL
        {
            return names.clone();
        }
        match self.exec(self.commands.list_tres()).await {
            Ok(out) => {
                let names: BTreeSet<String> = parse_tres_names(&out).into_iter().collect();
                *lock(&self.tres_cache) = Some((Instant::now(), names.clone()));
                names
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list cluster TRES; writing limits unfiltered");
                BTreeSet::new()
            }
        }
    }

    async fn filter_known_tres(&self, tres: TresAmounts) -> TresAmounts {
        let known = self.cluster_tres().await;
        if known.is_empty() {
            return tres;
        }
        tres.into_iter()
            .filter(|(k, _)| {
                let keep = known.contains(k);
                if !keep {
                    tracing::warn!(tres = %k, "cluster has no such TRES; limit not written");
                }
                keep
            })
            .collect()
    }

    /// One `show assoc` for many accounts.
    pub async fn account_states(
        &self,
        names: &[String],
    ) -> BackendResult<BTreeMap<String, AccountState>> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let out = self.exec(self.commands.show_assocs(names)).await?;
        let states = accounts_from_rows(&parse_assoc_rows(&out));
        lock(&self.known).record(names, &states);
        Ok(states)
    }

    /// Which of `names` exist, under which parent, with which users: what a create needs to
    /// know before it writes, at half the cost of [`account_states`](Self::account_states).
    /// Limits and QoS are left empty, so the answer is not kept as the known tree.
    async fn account_presence(
        &self,
        names: &[String],
    ) -> BackendResult<BTreeMap<String, AccountState>> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let out = self.exec(self.commands.show_presence(names)).await?;
        Ok(accounts_from_rows(&parse_assoc_rows(&out)))
    }

    /// The states of `names` from the tree as last read when it covers them (within
    /// [`KNOWN_TREE_TTL`]), else one `show assoc`.
    async fn known_states(
        &self,
        names: &[String],
    ) -> BackendResult<BTreeMap<String, AccountState>> {
        let known = lock(&self.known).covering(names);
        match known {
            Some(states) => Ok(states),
            None => self.account_states(names).await,
        }
    }

    /// One account from the tree as last read, else read.
    async fn known_state(&self, name: &str) -> BackendResult<Option<AccountState>> {
        Ok(self.known_states(&[name.to_owned()]).await?.remove(name))
    }

    /// At most `write_chunk_size` accounts per write.
    fn chunk(&self) -> usize {
        self.settings.write_chunk_size.max(1)
    }

    async fn account_state(&self, name: &str) -> BackendResult<Option<AccountState>> {
        Ok(self.account_states(&[name.to_owned()]).await?.remove(name))
    }

    fn months_for(&self, resource: &ResourceView) -> i64 {
        if !self.components.has_prepaid() {
            return 1;
        }
        let end = resource
            .end_date
            .as_deref()
            .and_then(|d| d.get(..10))
            .and_then(|d| d.parse::<jiff::civil::Date>().ok());
        let created = resource
            .attributes
            .get("created")
            .and_then(Value::as_str)
            .and_then(|d| d.get(..10))
            .and_then(|d| d.parse::<jiff::civil::Date>().ok())
            .unwrap_or_else(|| jiff::Zoned::now().date());
        end.map_or(1, |end| prepaid_months(created, end))
    }

    /// Waldur limits of a resource → TRES limits to write; refused (before any write) when one
    /// cannot be represented (see [`ComponentMap::limits_to_tres`]).
    async fn site_limits(
        &self,
        resource: &ResourceView,
        limits: &Limits,
    ) -> BackendResult<TresAmounts> {
        let tres = self
            .components
            .resource_tres(limits, self.months_for(resource))?;
        Ok(self.filter_known_tres(tres).await)
    }

    fn qos_enforced(&self, resource: &ResourceView) -> bool {
        self.settings.qos_enforcement_enabled
            && self.settings.enforce_offering_qos.unwrap_or_else(|| {
                resource
                    .offering_plugin_options
                    .get("enforce_qos")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            })
    }

    fn offering_partitions(resource: &ResourceView) -> Vec<String> {
        let Some(Value::Array(items)) = resource.offering_plugin_options.get("partitions") else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| match item {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o
                    .get("partition_name")
                    .or_else(|| o.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            })
            .collect()
    }

    /// The `add user` variant for this resource (spec §1.7 "add user").
    fn user_options(
        &self,
        resource: &ResourceView,
        allocation: &str,
    ) -> BackendResult<UserAssocOptions> {
        let default_account = match self.settings.default_account_policy {
            DefaultAccountPolicy::Common => self.settings.default_account.clone(),
            DefaultAccountPolicy::Individual => Some(allocation.to_owned()),
            DefaultAccountPolicy::None => None,
        };
        let offering_partitions = if self.settings.enforce_offering_partitions {
            Self::offering_partitions(resource)
        } else {
            Vec::new()
        };
        let fallback = || -> Vec<String> {
            if !offering_partitions.is_empty() {
                offering_partitions.clone()
            } else {
                self.settings.default_partition.iter().cloned().collect()
            }
        };
        let qos = resource
            .attributes
            .get("qos")
            .and_then(Value::as_str)
            .filter(|q| !q.trim().is_empty());
        let mut options = UserAssocOptions {
            default_account,
            ..Default::default()
        };
        match qos {
            Some(q) if self.qos_enforced(resource) => {
                validate_partition_or_qos("QoS name", q)?;
                options.qos_levels = vec![q.to_owned()];
                options.default_qos = Some(q.to_owned());
                options.partitions = match resource
                    .attributes
                    .get("partition")
                    .and_then(Value::as_str)
                    .filter(|p| !p.trim().is_empty())
                {
                    Some(p) => vec![p.to_owned()],
                    None => fallback(),
                };
            }
            _ => options.partitions = fallback(),
        }
        for p in &options.partitions {
            validate_partition_or_qos("partition name", p)?;
        }
        options.partitions.sort();
        options.partitions.dedup();
        Ok(options)
    }

    fn valid_usernames(users: impl IntoIterator<Item = String>) -> BackendResult<Vec<String>> {
        let mut names = Vec::new();
        for u in users {
            validate_site_name("username", &u)?;
            names.push(u);
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn info(&self, backend_id: &str, state: &AccountState) -> BackendResourceInfo {
        let mut metadata = Map::new();
        if !state.qos.is_empty() {
            metadata.insert("qos".to_owned(), Value::String(state.qos.clone()));
        }
        BackendResourceInfo {
            backend_id: backend_id.to_owned(),
            parent_id: state.parent.clone(),
            users: state.users.keys().cloned().collect(),
            limits: self
                .components
                .tres_to_limits(&parse_limit_tres(&state.grp_tres_mins)),
            backend_metadata: metadata,
            endpoints: Vec::new(),
        }
    }

    fn prepare(&self, request: &CreateRequest) -> BackendResult<(String, Vec<String>)> {
        validate_site_name("account name", &request.backend_id)?;
        let allocation = request.backend_id.to_lowercase();
        let mut users = Vec::new();
        for grant in &request.context.users {
            match validate_site_name("username", &grant.username) {
                Ok(()) => users.push(grant.username.clone()),
                // One bad username must not block the allocation; it simply gets no association.
                Err(e) => tracing::warn!(error = %e, "skipping user of new allocation"),
            }
        }
        users.sort();
        users.dedup();
        Ok((allocation, users))
    }

    /// Home directories for users that lack one (`mkhomedir_helper <user> <umask>`).
    /// Users unknown to the system are skipped: the helper needs a passwd entry.
    pub async fn create_homedirs(&self, usernames: &BTreeSet<String>) {
        if !self.settings.enable_user_homedir_account_creation {
            return;
        }
        for user in usernames {
            if validate_site_name("username", user).is_err() {
                continue;
            }
            let entry = match nix::unistd::User::from_name(user) {
                Ok(Some(entry)) => entry,
                Ok(None) => {
                    tracing::debug!(user, "no passwd entry; home directory not created");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(user, error = %e, "passwd lookup failed");
                    continue;
                }
            };
            let home = match &self.settings.homedir_base_path {
                Some(base) => Path::new(base).join(user),
                None => entry.dir.clone(),
            };
            if home.is_dir() {
                continue;
            }
            let cmd = CommandLine::new(&self.settings.mkhomedir_helper_path)
                .arg(user.clone())
                .arg(self.settings.default_homedir_umask.trim());
            if let Err(e) = self.exec(cmd).await {
                tracing::warn!(user, error = %e, "could not create home directory");
            }
        }
    }

    /// Add `users × accounts` associations, grouped into as few calls as the options allow.
    /// On a failed group, accounts are retried one by one. Returns the associations made.
    async fn add_assocs(
        &self,
        wanted: BTreeMap<(Vec<String>, UserAssocOptions), Vec<String>>,
    ) -> BTreeSet<(String, String)> {
        let mut made = BTreeSet::new();
        for ((users, options), accounts) in wanted {
            if users.is_empty() || accounts.is_empty() {
                continue;
            }
            for accounts in accounts.chunks(self.chunk()) {
                let accounts = accounts.to_vec();
                let batch = self.add_users_retrying(&users, &accounts, &options).await;
                let ok_accounts: Vec<String> = match batch {
                    Ok(_) => accounts,
                    Err(e) if accounts.len() > 1 => {
                        tracing::warn!(error = %e, "batched add user failed; retrying per account");
                        let mut ok = Vec::new();
                        for account in accounts {
                            let single = std::slice::from_ref(&account);
                            match self
                                .exec_change(self.commands.add_users(&users, single, &options))
                                .await
                            {
                                Ok(_) => ok.push(account),
                                Err(e) => tracing::warn!(account, error = %e, "add user failed"),
                            }
                        }
                        ok
                    }
                    Err(e) => {
                        tracing::warn!(accounts = ?accounts, error = %e, "add user failed");
                        Vec::new()
                    }
                };
                for account in ok_accounts {
                    for user in &users {
                        made.insert((account.clone(), user.clone()));
                    }
                }
            }
        }
        lock(&self.known).forget(made.iter().map(|(account, _)| account));
        made
    }

    /// `add user`, retried a few times while slurmdbd has not yet made just-added accounts
    /// visible ("doesn't exist [on cluster]"); seen here when several sacctmgr run at once.
    async fn add_users_retrying(
        &self,
        users: &[String],
        accounts: &[String],
        options: &UserAssocOptions,
    ) -> BackendResult<bool> {
        let policy = backend_api::RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(300),
            max_delay: Duration::from_millis(2400),
            jitter: true,
        };
        policy
            .run(
                || self.exec_change(self.commands.add_users(users, accounts, options)),
                |e| {
                    let not_visible = matches!(e, BackendError::Command { output, .. }
                        if output.contains("doesn't exist"));
                    if not_visible {
                        tracing::debug!("accounts not visible yet; retrying add user");
                    }
                    not_visible
                },
            )
            .await
    }

    async fn add_accounts_group(
        &self,
        names: &[String],
        parent: &str,
        description: &str,
        organization: &str,
        limits: &TresAmounts,
    ) -> BackendResult<bool> {
        self.exec_change(self.commands.add_accounts(
            names,
            parent,
            description,
            organization,
            &format_tres(limits),
        ))
        .await
    }

    /// The account states a `check_ids` read, when they are recent and cover `names`.
    fn fresh_snapshot(
        snapshot: Option<ExistenceSnapshot>,
        names: &[String],
    ) -> Option<(BTreeMap<String, AccountState>, Option<UserDefaults>)> {
        let snapshot = snapshot?;
        let fresh = snapshot.taken.elapsed() < SNAPSHOT_TTL;
        if !fresh || !names.iter().all(|n| snapshot.queried.contains(n)) {
            return None;
        }
        let states = snapshot
            .states
            .into_iter()
            .filter(|(name, _)| names.contains(name))
            .collect();
        Some((states, snapshot.user_defaults))
    }

    /// Batched creation; see the crate docs for the call pattern.
    async fn create_batch(
        &self,
        requests: Vec<CreateRequest>,
        snapshot: Option<ExistenceSnapshot>,
    ) -> Vec<BackendResult<BackendResourceInfo>> {
        // The whole read → add → read-back sequence runs alone on the cluster: an account seen
        // missing below cannot be created by another batch of this machine before we add it.
        let _sequence = self.gate.sequence().await;
        let n = requests.len();
        let mut results: Vec<Option<BackendResult<BackendResourceInfo>>> =
            std::iter::repeat_with(|| None).take(n).collect();
        let mut prepared: Vec<Option<Prepared>> = std::iter::repeat_with(|| None).take(n).collect();
        let mut seen_ids = BTreeSet::new();
        for (i, request) in requests.iter().enumerate() {
            let outcome = async {
                let (allocation, users) = self.prepare(request)?;
                if !seen_ids.insert(allocation.clone()) {
                    return Err(BackendError::Duplicate {
                        backend_id: allocation,
                    });
                }
                let plan = self.hierarchy.plan(&request.resource, &allocation)?;
                let options = self.user_options(&request.resource, &allocation)?;
                let tres = self
                    .site_limits(&request.resource, &request.resource.limits)
                    .await?;
                Ok(Prepared {
                    plan,
                    tres,
                    users,
                    options,
                })
            }
            .await;
            match outcome {
                Ok(p) => prepared[i] = Some(p),
                Err(e) => results[i] = Some(Err(e)),
            }
        }

        if prepared.iter().all(Option::is_none) {
            return results.into_iter().flatten().collect();
        }
        let all_names: Vec<String> = prepared
            .iter()
            .flatten()
            .flat_map(|p| p.plan.accounts.iter().map(|a| a.name.clone()))
            .chain(self.load_anchor_accounts())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (states, user_defaults) = match Self::fresh_snapshot(snapshot, &all_names) {
            Some((states, defaults)) => (Ok(states), defaults),
            None => (self.account_presence(&all_names).await, None),
        };
        let mut states = match states {
            Ok(s) => s,
            Err(e) => {
                for (i, p) in prepared.iter().enumerate() {
                    if p.is_some() {
                        results[i] = Some(Err(share_error(&e)));
                    }
                }
                return results.into_iter().flatten().collect();
            }
        };
        for (i, slot) in prepared.iter_mut().enumerate() {
            let duplicate = slot
                .as_ref()
                .and_then(|p| p.plan.allocation())
                .filter(|a| states.contains_key(&a.name))
                .map(|a| a.name.clone());
            if let Some(backend_id) = duplicate {
                results[i] = Some(Err(BackendError::Duplicate { backend_id }));
                *slot = None;
            }
        }

        // One `sacctmgr load` for the missing tree when cheaper; whatever it did not create is
        // then added by the per-command path below, so a failure errs only the orders concerned.
        let mut loaded_assocs: BTreeSet<(String, String)> = BTreeSet::new();
        // Accounts our own load just listed: if SLURM did not show one at the read-back but
        // then answers "Nothing new added", the load made it; the read-back below confirms it
        // (parent included) instead of calling it someone else's.
        let mut loaded_names: BTreeSet<String> = BTreeSet::new();
        let mut failed: BTreeMap<String, BackendError> = BTreeMap::new();
        {
            let active: Vec<&Prepared> = prepared.iter().flatten().collect();
            if let Some(outcome) = self
                .load_missing(&active, &states, user_defaults.as_ref())
                .await
            {
                states.extend(outcome.states);
                loaded_assocs = outcome.assocs;
                loaded_names = outcome.listed;
                for name in outcome.moved {
                    failed.insert(name.clone(), BackendError::Duplicate { backend_id: name });
                }
            }
        }

        let existing: BTreeSet<String> = states.keys().cloned().collect();
        let active: Vec<&Prepared> = prepared.iter().flatten().collect();
        let plans: Vec<&AccountPlan> = active.iter().map(|p| &p.plan).collect();
        let limits: Vec<&TresAmounts> = active.iter().map(|p| &p.tres).collect();
        // At most `write_chunk_size` accounts per `add account`.
        let groups: Vec<AddGroup> = missing_account_groups(&plans, &limits, &existing)
            .into_iter()
            .flat_map(|group| {
                group
                    .names
                    .chunks(self.chunk())
                    .map(|names| AddGroup {
                        names: names.to_vec(),
                        ..group.clone()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        for group in groups {
            if let Some(parent_error) = failed.get(&group.parent) {
                let message = format!(
                    "parent account '{}' could not be created: {parent_error}",
                    group.parent
                );
                let transient = parent_error.is_transient();
                for name in &group.names {
                    let e = if transient {
                        BackendError::transient(message.clone())
                    } else {
                        BackendError::permanent(message.clone())
                    };
                    failed.insert(name.clone(), e);
                }
                continue;
            }
            let batch = self
                .add_accounts_group(
                    &group.names,
                    &group.parent,
                    &group.description,
                    &group.organization,
                    &group.limits,
                )
                .await;
            match batch {
                // "Nothing new added": every allocation of the group exists already, so it
                // belongs to someone else. Never report that as our create.
                Ok(false) if group.tier == Tier::Allocation => {
                    for name in group.names.iter().filter(|n| !loaded_names.contains(*n)) {
                        failed.insert(
                            name.clone(),
                            BackendError::Duplicate {
                                backend_id: name.clone(),
                            },
                        );
                    }
                }
                Ok(_) => {}
                Err(e) if group.names.len() > 1 => {
                    tracing::warn!(error = %e, tier = ?group.tier, "batched add account failed; retrying one by one");
                    for name in &group.names {
                        match self
                            .add_accounts_group(
                                std::slice::from_ref(name),
                                &group.parent,
                                &group.description,
                                &group.organization,
                                &group.limits,
                            )
                            .await
                        {
                            Ok(false)
                                if group.tier == Tier::Allocation
                                    && !loaded_names.contains(name) =>
                            {
                                failed.insert(
                                    name.clone(),
                                    BackendError::Duplicate {
                                        backend_id: name.clone(),
                                    },
                                );
                            }
                            Ok(_) => {}
                            Err(e) => {
                                failed.insert(name.clone(), e);
                            }
                        }
                    }
                }
                Err(e) => {
                    if let Some(name) = group.names.first() {
                        failed.insert(name.clone(), e);
                    }
                }
            }
        }

        // Read back every allocation the per-command path added (the load path read its own
        // back): a create is confirmed by the site, never by an exit status.
        let unconfirmed: Vec<String> = prepared
            .iter()
            .filter_map(|p| p.as_ref()?.plan.allocation())
            .filter(|a| !states.contains_key(&a.name) && !failed.contains_key(&a.name))
            .map(|a| a.name.clone())
            .collect();
        if !unconfirmed.is_empty() {
            match self.account_states(&unconfirmed).await {
                Ok(read) => states.extend(read),
                Err(e) => {
                    for name in &unconfirmed {
                        failed.insert(
                            name.clone(),
                            BackendError::transient(format!(
                                "cannot read back the new SLURM account '{name}': {e}"
                            )),
                        );
                    }
                }
            }
        }
        for slot in &prepared {
            let Some(allocation) = slot.as_ref().and_then(|p| p.plan.allocation()) else {
                continue;
            };
            if failed.contains_key(&allocation.name) {
                continue;
            }
            let error = match states.get(&allocation.name) {
                None => BackendError::transient(format!(
                    "SLURM does not list the account '{}' after creating it; will retry",
                    allocation.name
                )),
                Some(state) if !state.parent.eq_ignore_ascii_case(&allocation.parent) => {
                    // Someone else's account of the same name, elsewhere in the tree.
                    BackendError::Duplicate {
                        backend_id: allocation.name.clone(),
                    }
                }
                Some(_) => continue,
            };
            failed.insert(allocation.name.clone(), error);
        }

        // Users of the allocations that now exist, grouped by identical user set and options.
        let mut wanted: BTreeMap<(Vec<String>, UserAssocOptions), Vec<String>> = BTreeMap::new();
        for (i, slot) in prepared.iter().enumerate() {
            let Some(p) = slot else { continue };
            if let Some(e) = p.plan.accounts.iter().find_map(|a| failed.get(&a.name)) {
                results[i] = Some(Err(share_error(e)));
                continue;
            }
            if let Some(allocation) = p.plan.allocation() {
                let users: Vec<String> = p
                    .users
                    .iter()
                    .filter(|u| !loaded_assocs.contains(&(allocation.name.clone(), (*u).clone())))
                    .cloned()
                    .collect();
                if !users.is_empty() {
                    wanted
                        .entry((users, p.options.clone()))
                        .or_default()
                        .push(allocation.name.clone());
                }
            }
        }
        let mut made = self.add_assocs(wanted).await;
        made.extend(loaded_assocs);
        let homedir_users: BTreeSet<String> = made.iter().map(|(_, u)| u.clone()).collect();
        self.create_homedirs(&homedir_users).await;
        lock(&self.fresh_assocs).extend(made.iter().cloned());

        for (i, slot) in prepared.into_iter().enumerate() {
            let Some(p) = slot else { continue };
            if results[i].is_some() {
                continue;
            }
            let Some(allocation) = p.plan.allocation() else {
                continue;
            };
            let users = p
                .users
                .iter()
                .filter(|u| made.contains(&(allocation.name.clone(), (*u).clone())))
                .cloned()
                .collect();
            results[i] = Some(Ok(BackendResourceInfo {
                backend_id: allocation.name.clone(),
                parent_id: allocation.parent.clone(),
                users,
                limits: self.components.tres_to_limits(&p.tres),
                backend_metadata: Map::new(),
                endpoints: Vec::new(),
            }));
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(BackendError::permanent("request was not processed"))))
            .collect()
    }

    /// The cluster a load file names: `cluster_name`, else the accounting database's only
    /// cluster (one `list cluster`, cached). `None` (load off) when that is ambiguous.
    async fn cluster_for_load(&self) -> Option<String> {
        if let Some(c) = &self.settings.cluster_name {
            return Some(c.clone());
        }
        if let Some(c) = lock(&self.discovered_cluster).clone() {
            return Some(c);
        }
        let out = self.exec(self.commands.list_clusters()).await.ok()?;
        let clusters = parse_first_column(&out);
        match clusters.as_slice() {
            [only] if validate_site_name("cluster name", only).is_ok() => {
                *lock(&self.discovered_cluster) = Some(only.clone());
                Some(only.clone())
            }
            _ => {
                tracing::debug!(
                    ?clusters,
                    "several clusters and no cluster_name: not using sacctmgr load"
                );
                None
            }
        }
    }

    /// Accounts a load file hangs from (tree tops, the common default account); queried with
    /// the existence check so the load runs only when they exist on the cluster (which also
    /// proves the cluster exists: `load` would create an unknown one).
    fn load_anchor_accounts(&self) -> Vec<String> {
        if !self.settings.batch_load {
            return Vec::new();
        }
        let mut anchors = vec![match &self.hierarchy.parent_account {
            Some(p) => p.to_lowercase(),
            None => self.hierarchy.root_account.to_lowercase(),
        }];
        if self.settings.default_account_policy == DefaultAccountPolicy::Common
            && let Some(d) = &self.settings.default_account
        {
            anchors.push(d.to_lowercase());
        }
        anchors
    }

    /// The account and user lines a load file for `part` carries: the accounts not in
    /// `present` (parents first) and the plain user associations with their default accounts.
    fn load_lines(
        &self,
        part: &[&Prepared],
        present: &BTreeSet<String>,
        states: &BTreeMap<String, AccountState>,
        defaults: &BTreeMap<String, String>,
    ) -> (Vec<LoadAccount>, Vec<LoadUser>) {
        let plans: Vec<&AccountPlan> = part.iter().map(|p| &p.plan).collect();
        let limits: Vec<&TresAmounts> = part.iter().map(|p| &p.tres).collect();
        let accounts: Vec<LoadAccount> = missing_account_groups(&plans, &limits, present)
            .iter()
            .flat_map(|g| {
                g.names.iter().map(|name| LoadAccount {
                    name: name.clone(),
                    parent: g.parent.clone(),
                    description: g.description.clone(),
                    organization: g.organization.clone(),
                    grp_tres_mins: format_tres(&g.limits),
                })
            })
            .collect();
        let assocs: Vec<(&str, &[String], &UserAssocOptions)> = part
            .iter()
            .filter_map(|p| {
                let allocation = p.plan.allocation()?;
                Some((allocation.name.as_str(), p.users.as_slice(), &p.options))
            })
            .collect();
        let users = self.load_user_lines(&assocs, states, defaults);
        (accounts, users)
    }

    /// Create the missing accounts and plain user associations (no partition/QoS options) of
    /// `active` with `sacctmgr load` (files of at most `load_chunk_rows` rows, fewer as the
    /// [`pacer`](crate::pacer) says; parents in the first file that needs them), then read back
    /// what exists with one `show assoc` (presence columns). `None`
    /// when load is off, not cheaper than the per-command path, or its anchors are missing.
    async fn load_missing(
        &self,
        active: &[&Prepared],
        states: &BTreeMap<String, AccountState>,
        user_defaults: Option<&UserDefaults>,
    ) -> Option<LoadOutcome> {
        let anchors = self.load_anchor_accounts();
        let cluster = self.cluster_for_load().await?;
        let cluster = cluster.as_str();
        if anchors.is_empty() || active.is_empty() {
            return None;
        }
        let existing: BTreeSet<String> = states.keys().cloned().collect();
        let plans: Vec<&AccountPlan> = active.iter().map(|p| &p.plan).collect();
        let limits: Vec<&TresAmounts> = active.iter().map(|p| &p.tres).collect();
        let groups = missing_account_groups(&plans, &limits, &existing);
        let new_names: BTreeSet<&String> = groups.iter().flat_map(|g| &g.names).collect();
        if groups
            .iter()
            .any(|g| !existing.contains(&g.parent) && !new_names.contains(&g.parent))
        {
            tracing::debug!("a parent of the new accounts is missing; not using sacctmgr load");
            return None;
        }
        let user_groups: BTreeSet<(&Vec<String>, &UserAssocOptions)> = active
            .iter()
            .filter(|p| !p.users.is_empty())
            .map(|p| (&p.users, &p.options))
            .collect();
        // Users whose association options a load file expresses exactly.
        let plain =
            |p: &Prepared| p.options.partitions.is_empty() && p.options.qos_levels.is_empty();
        let load_users: BTreeSet<String> = active
            .iter()
            .filter(|p| plain(p))
            .flat_map(|p| p.users.iter().cloned())
            .collect();
        let known_defaults = UserDefaults::covering(user_defaults, &load_users);
        // loads + read-back, plus `list user` unless `check_ids` already read it.
        let loads = active
            .iter()
            .map(|p| 2 + 2 * p.users.len())
            .sum::<usize>()
            .div_ceil(self.settings.load_chunk_rows.max(1));
        let load_calls =
            loads + 1 + usize::from(!load_users.is_empty() && known_defaults.is_none());
        let per_command_calls = groups.len() + user_groups.len();
        if load_calls >= per_command_calls {
            return None;
        }
        let defaults = self
            .resolve_user_defaults(&load_users, known_defaults)
            .await
            .unwrap_or_default();

        let mut present = existing;
        let mut listed: Vec<LoadAccount> = Vec::new();
        let mut users: Vec<LoadUser> = Vec::new();
        let mut report = LoadReport::default();
        // Allocations per load: as many as bring at most the pacer's rows (`load_chunk_rows`,
        // fewer when the last load showed that many would not fit in `write_chunk_seconds`),
        // at the rows per allocation of the whole batch, then of the last load.
        let fitting = |rows_per_allocation: f64| {
            ((self.pacer.next_rows() as f64 / rows_per_allocation.max(1.0)) as usize).max(1)
        };
        let rows_each = {
            let (accounts, lines) = self.load_lines(active, &present, states, &defaults);
            (accounts.len() + lines.len()) as f64 / active.len().max(1) as f64
        };
        let mut per_load = fitting(rows_each);
        let mut rest = active;
        while !rest.is_empty() {
            let (part, tail) = rest.split_at(per_load.min(rest.len()));
            rest = tail;
            let (accounts, part_users) = self.load_lines(part, &present, states, &defaults);
            if accounts.is_empty() && part_users.is_empty() {
                continue;
            }
            // Later chunks hang from the accounts of earlier ones.
            present.extend(accounts.iter().map(|a| a.name.clone()));
            let rows = accounts.len() + part_users.len();
            let started = Instant::now();
            let ran = self
                .run_load(&render_load_file(cluster, &accounts, &part_users))
                .await;
            self.pacer.record(rows, started.elapsed());
            per_load = fitting(rows.max(1) as f64 / part.len() as f64);
            if let Some(part_report) = ran {
                listed.extend(accounts);
                users.extend(part_users);
                report.merge(part_report);
            }
        }
        lock(&self.known).forget(listed.iter().map(|a| &a.name));
        // The load's own report confirms an account it added under the planned parent, with
        // every user association the file gave it. Only what it does not confirm is read back
        // (presence columns: existence, parent, users); on a lone event order that saves one
        // sacctmgr round, a fifth of the latency.
        let mut confirmed: BTreeMap<String, AccountState> = listed
            .iter()
            .filter(|a| !report.changed_accounts.contains(&a.name))
            .filter(|a| {
                report
                    .accounts
                    .get(&a.name)
                    .is_some_and(|parent| parent.eq_ignore_ascii_case(&a.parent))
            })
            .map(|a| {
                let state = AccountState {
                    parent: a.parent.clone(),
                    grp_tres_mins: a.grp_tres_mins.clone(),
                    ..AccountState::default()
                };
                (a.name.clone(), state)
            })
            .collect();
        for u in &users {
            let added = report
                .user_assocs
                .contains(&(u.account.clone(), u.user.clone()));
            match confirmed.get_mut(&u.account) {
                Some(state) if added => {
                    state.users.insert(u.user.clone(), String::new());
                }
                _ => {
                    confirmed.remove(&u.account);
                }
            }
        }
        let unconfirmed: Vec<String> = listed
            .iter()
            .map(|a| a.name.clone())
            .filter(|n| !confirmed.contains_key(n))
            .collect();
        let mut verified = confirmed;
        match self.account_presence(&unconfirmed).await {
            Ok(read) => verified.extend(read),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read back the loaded accounts");
                return None;
            }
        }
        let moved: BTreeSet<String> = listed
            .iter()
            .map(|a| a.name.clone())
            .filter(|n| report.changed_accounts.contains(n))
            .collect();
        for name in &moved {
            tracing::error!(
                account = %name,
                "sacctmgr load found this account existing and moved it: something wrote to \
                 SLURM without holding the agent's lock; check the account's parent by hand"
            );
        }
        let names: Vec<String> = listed.into_iter().map(|a| a.name).collect();
        let assocs = users
            .iter()
            .filter(|u| {
                verified
                    .get(&u.account)
                    .is_some_and(|s| s.users.contains_key(&u.user))
            })
            .map(|u| (u.account.clone(), u.user.clone()))
            .collect();
        let missing = names.iter().filter(|n| !verified.contains_key(*n)).count();
        if missing > 0 {
            tracing::warn!(
                missing,
                "sacctmgr load left accounts out; adding them one by one"
            );
        }
        Some(LoadOutcome {
            states: verified,
            assocs,
            listed: names.into_iter().collect(),
            moved,
        })
    }

    /// One `sacctmgr load` of `text` and what it reports it added; `None` when the file could
    /// not even be written. A failed load reports nothing rather than an error: part of it may
    /// have been applied anyway, and the caller's read-back tells what exists.
    async fn run_load(&self, text: &str) -> Option<LoadReport> {
        let file = match LoadFile::create(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot write sacctmgr load file; adding one by one");
                return None;
            }
        };
        match self.exec_write(self.commands.load(&file.path)).await {
            Ok(out) => Some(parse_load_report(&out)),
            Err(e) => {
                tracing::warn!(error = %e, "sacctmgr load failed; adding what is missing one by one");
                Some(LoadReport::default())
            }
        }
    }

    /// `list user` for `users`: their default accounts (users SLURM does not know are absent).
    async fn list_user_defaults(&self, users: &BTreeSet<String>) -> BackendResult<UserDefaults> {
        let names: Vec<String> = users.iter().cloned().collect();
        let out = self.exec(self.commands.list_users(&names)).await?;
        Ok(UserDefaults {
            queried: users.clone(),
            defaults: parse_user_defaults(&out),
        })
    }

    /// The default accounts of `users`: `known` when given, else one `list user`. `None` when
    /// they cannot be read (the associations then go the per-command way).
    async fn resolve_user_defaults(
        &self,
        users: &BTreeSet<String>,
        known: Option<BTreeMap<String, String>>,
    ) -> Option<BTreeMap<String, String>> {
        if let Some(known) = known {
            return Some(known);
        }
        if users.is_empty() {
            return Some(BTreeMap::new());
        }
        match self.list_user_defaults(users).await {
            Ok(d) => Some(d.defaults),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list users; adding associations one by one");
                None
            }
        }
    }

    /// User lines of a load file. An existing user keeps the default account it has (load would
    /// otherwise change it); a new one gets the policy's, and with policy `common` also the
    /// association with the default account that `add user … DefaultAccount=` makes. Users who
    /// exist without a default are left to `add user`.
    fn load_user_lines(
        &self,
        assocs: &[(&str, &[String], &UserAssocOptions)],
        states: &BTreeMap<String, AccountState>,
        defaults: &BTreeMap<String, String>,
    ) -> Vec<LoadUser> {
        let common = self.settings.default_account_policy == DefaultAccountPolicy::Common;
        let mut new_user_default: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut default_lines = Vec::new();
        let mut lines = Vec::new();
        for (account, users, options) in assocs {
            if !options.partitions.is_empty() || !options.qos_levels.is_empty() {
                continue;
            }
            for user in users.iter() {
                let default_account = match defaults.get(user) {
                    Some(current) if current.is_empty() => continue,
                    Some(current) => Some(current.clone()),
                    None => {
                        if let Some(d) = new_user_default.get(user) {
                            d.clone()
                        } else {
                            let d = options.default_account.as_ref().map(|d| d.to_lowercase());
                            if common {
                                // The default account's association; it must exist to hang from.
                                match &d {
                                    Some(acc) if states.contains_key(acc) => {
                                        default_lines.push(LoadUser {
                                            account: acc.clone(),
                                            user: user.clone(),
                                            default_account: Some(acc.clone()),
                                            fairshare_parent: true,
                                        })
                                    }
                                    _ => continue,
                                }
                            }
                            new_user_default.insert(user.clone(), d.clone());
                            d
                        }
                    }
                };
                lines.push(LoadUser {
                    account: (*account).to_owned(),
                    user: user.clone(),
                    default_account,
                    fairshare_parent: true,
                });
            }
        }
        default_lines.extend(lines);
        default_lines
    }

    /// (customer, project, allocation) account of every resource in a tree with a customer
    /// tier; empty in flat mode.
    fn project_expectations(&self, resources: &[ResourceView]) -> Vec<(String, String, String)> {
        if self.hierarchy.is_flat() {
            return Vec::new();
        }
        let mut expected = Vec::new();
        for r in resources {
            let (Ok(customer), Ok(project)) = (
                self.hierarchy.customer_id(&r.customer_slug),
                self.hierarchy.project_id(&r.project_slug),
            ) else {
                continue;
            };
            if customer == project || validate_site_name("account name", &r.backend_id).is_err() {
                continue;
            }
            expected.push((customer, project, r.backend_id.to_lowercase()));
        }
        expected
    }

    /// The accounts of `expected` and the load anchors, sorted and unique.
    fn tree_names(&self, expected: &[(String, String, String)]) -> Vec<String> {
        expected
            .iter()
            .flat_map(|(c, p, a)| [c.clone(), p.clone(), a.clone()])
            .chain(self.load_anchor_accounts())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Move projects whose customer changed (and allocations whose project changed) in the tree.
    /// One `show assoc` for all, plus one call per move. Skipped in flat mode. Returns the number
    /// of accounts moved.
    pub async fn sync_resource_projects(&self, resources: &[ResourceView]) -> BackendResult<usize> {
        if self.hierarchy.is_flat() {
            return Ok(0);
        }
        let expected = self.project_expectations(resources);
        let names = self.tree_names(&expected);
        // Read with the resources by `pull_resources` when the membership cycle just did.
        let mut states = self.known_states(&names).await?;
        let mut moved = 0;
        for (customer, project, allocation) in &expected {
            let project_parent = states.get(project).map(|s| s.parent.clone());
            if project_parent.as_deref() != Some(customer.as_str()) {
                if !states.contains_key(customer) {
                    self.add_accounts_group(
                        std::slice::from_ref(customer),
                        &self.hierarchy.root_account.to_lowercase(),
                        "",
                        customer,
                        &TresAmounts::new(),
                    )
                    .await?;
                    states.insert(customer.clone(), AccountState::default());
                }
                if project_parent.is_some() {
                    lock(&self.known).forget([project]);
                    self.exec_change(self.commands.reparent(project, customer))
                        .await?;
                    tracing::info!(
                        project,
                        customer,
                        "moved project account to its new customer"
                    );
                    moved += 1;
                    if let Some(s) = states.get_mut(project) {
                        s.parent = customer.clone();
                    }
                }
            }
            if let Some(state) = states.get(allocation)
                && state.parent != *project
                && states.contains_key(project)
            {
                lock(&self.known).forget([allocation]);
                self.exec_change(self.commands.reparent(allocation, project))
                    .await?;
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Diagnostics check: `cluster_name` against the offering's backend id in Waldur.
    pub fn check_cluster_matches_offering(&self, offering_backend_id: &str) -> Check {
        let configured = self.settings.cluster_name.as_deref().unwrap_or("");
        let offering = offering_backend_id.trim();
        let (ok, detail) = match (configured.is_empty(), offering.is_empty()) {
            (_, true) => (
                true,
                "offering has no backend id; nothing to compare".to_owned(),
            ),
            (true, false) => (
                true,
                format!("cluster_name not set; offering backend id is '{offering}'"),
            ),
            (false, false) if configured.eq_ignore_ascii_case(offering) => (
                true,
                format!("cluster_name '{configured}' matches the offering"),
            ),
            (false, false) => (
                false,
                format!(
                    "cluster_name '{configured}' differs from the offering's backend id '{offering}': \
                     the agent may be pointed at the wrong cluster"
                ),
            ),
        };
        Check {
            name: "cluster matches offering".to_owned(),
            ok,
            detail,
        }
    }

    fn resource_account(resource: &ResourceView) -> BackendResult<String> {
        validate_site_name("account name", &resource.backend_id)?;
        Ok(resource.backend_id.to_lowercase())
    }

    /// What `resource`'s account must show for its Waldur flags (pause, downscale, restore).
    fn status_target(&self, resource: &ResourceView, account: &str) -> BackendResult<StatusTarget> {
        if self.qos_enforced(resource) {
            let stopped = resource.paused || resource.downscaled;
            return Ok(StatusTarget::SubmitJobs(if stopped { 0 } else { -1 }));
        }
        let (qos, setting, verb) = if resource.paused {
            (&self.settings.qos_paused, "qos_paused", "pause")
        } else if resource.downscaled {
            (&self.settings.qos_downscaled, "qos_downscaled", "downscale")
        } else {
            return Ok(StatusTarget::Qos(self.settings.qos_default.clone()));
        };
        qos.clone().map(StatusTarget::Qos).ok_or_else(|| {
            BackendError::Config(format!(
                "slurm backend_settings.{setting} is not set; cannot {verb} '{account}'"
            ))
        })
    }

    /// Membership changes of many resources (see the crate docs, "Call pattern"): the accounts
    /// from the tree as last read (one `show assoc` when it does not cover them), every
    /// difference worked out in memory, grouped writes of at most `write_chunk_size` accounts,
    /// one read-back. What the read-back does not show is written again resource by resource
    /// and read back once more, so a failed group fails only the resources it concerns.
    /// `Ok((added, status_changed))` per change, in input order.
    async fn apply_batch(&self, changes: &[MembershipChange]) -> Vec<BackendResult<Applied>> {
        let mut results: Vec<Option<BackendResult<Applied>>> = std::iter::repeat_with(|| None)
            .take(changes.len())
            .collect();
        let mut work = Vec::new();
        for (index, change) in changes.iter().enumerate() {
            let outcome = (|| {
                let view = &change.resource;
                let account = Self::resource_account(view)?;
                let wanted = Self::valid_usernames(change.add.iter().map(|u| u.username.clone()))?;
                let remove = Self::valid_usernames(change.remove.iter().cloned())?;
                let options = if wanted.is_empty() {
                    UserAssocOptions::default()
                } else {
                    self.user_options(view, &account)?
                };
                let status = if change.apply_status {
                    Some(self.status_target(view, &account)?)
                } else {
                    None
                };
                Ok::<_, BackendError>(MemberWork {
                    index,
                    account,
                    add: wanted.clone(),
                    wanted,
                    remove,
                    options,
                    status,
                })
            })();
            match outcome {
                Ok(w) => work.push(w),
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        let mut names: BTreeSet<String> = work.iter().map(|w| w.account.clone()).collect();
        if work.iter().any(|w| !w.wanted.is_empty()) {
            // A new user's default-account association hangs from an anchor (load files).
            names.extend(self.load_anchor_accounts());
        }
        let names: Vec<String> = names.into_iter().collect();
        let states = if work.is_empty() {
            Ok(BTreeMap::new())
        } else {
            self.known_states(&names).await
        };
        let states = match states {
            Ok(states) => states,
            Err(e) => {
                for w in &work {
                    results[w.index] = Some(Err(share_error(&e)));
                }
                return Self::collect_results(results);
            }
        };
        let mut active = Vec::new();
        for mut w in work {
            let Some(state) = states.get(&w.account) else {
                results[w.index] = Some(Err(BackendError::permanent(format!(
                    "SLURM account '{}' does not exist",
                    w.account
                ))));
                continue;
            };
            w.narrow_to(state);
            if w.has_writes() {
                active.push(w);
            } else {
                results[w.index] = Some(Ok((w.wanted, false)));
            }
        }
        if active.is_empty() {
            return Self::collect_results(results);
        }

        // Reads, writes and read-back run alone on the cluster, as a create batch does.
        let _sequence = self.gate.sequence().await;
        {
            let mut fresh = lock(&self.fresh_assocs);
            for w in &active {
                fresh.retain(|(a, u)| !(*a == w.account && w.remove.contains(u)));
            }
        }
        self.write_members(&active, &states).await;
        let touched: Vec<String> = active
            .iter()
            .map(|w| w.account.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut errors: BTreeMap<usize, BackendError> = BTreeMap::new();
        let mut redo = Vec::new();
        let mut done = Vec::new();
        match self.account_states(&touched).await {
            Ok(after) => {
                for mut w in active {
                    match after.get(&w.account) {
                        Some(state) if w.done_in(state) => done.push(w),
                        Some(state) => {
                            w.narrow_to(state);
                            redo.push(w);
                        }
                        None => {
                            errors.insert(
                                w.index,
                                BackendError::permanent(format!(
                                    "SLURM account '{}' no longer exists",
                                    w.account
                                )),
                            );
                            done.push(w);
                        }
                    }
                }
            }
            Err(e) => {
                for w in &active {
                    errors.insert(
                        w.index,
                        BackendError::transient(format!(
                            "cannot read back the membership changes of SLURM account '{}': {e}",
                            w.account
                        )),
                    );
                }
                done = active;
            }
        }
        if !redo.is_empty() {
            tracing::warn!(
                resources = redo.len(),
                "SLURM does not show every batched membership change; applying those one by one"
            );
            for w in &redo {
                if let Err(e) = self.write_member(w).await {
                    errors.insert(w.index, e);
                }
            }
            let accounts: Vec<String> = redo.iter().map(|w| w.account.clone()).collect();
            let again = self.account_states(&accounts).await;
            for w in redo {
                let shown = again
                    .as_ref()
                    .ok()
                    .and_then(|a| a.get(&w.account))
                    .is_some_and(|state| w.done_in(state));
                if shown {
                    errors.remove(&w.index);
                } else {
                    errors.entry(w.index).or_insert_with(|| {
                        BackendError::transient(format!(
                            "SLURM does not show the membership changes of account '{}' after \
                             writing them; will retry",
                            w.account
                        ))
                    });
                }
                done.push(w);
            }
        }
        let mut homedir_users = BTreeSet::new();
        for w in done {
            let outcome = match errors.remove(&w.index) {
                Some(e) => Err(e),
                None => {
                    homedir_users.extend(w.add.iter().cloned());
                    Ok((w.wanted, w.status.is_some()))
                }
            };
            results[w.index] = Some(outcome);
        }
        self.create_homedirs(&homedir_users).await;
        Self::collect_results(results)
    }

    fn collect_results<T>(results: Vec<Option<BackendResult<T>>>) -> Vec<BackendResult<T>> {
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(BackendError::permanent("request was not processed"))))
            .collect()
    }

    /// The grouped writes of a membership round; failures are logged (the read-back decides).
    /// Additions with plain options go into `sacctmgr load` files when that saves calls, the
    /// rest into one `add user` per (user set, options); removals into one `remove user` per
    /// user set; status flags into one `modify account` per value.
    async fn write_members(&self, active: &[MemberWork], states: &BTreeMap<String, AccountState>) {
        let chunk = self.chunk();
        let adding: Vec<&MemberWork> = active.iter().filter(|w| !w.add.is_empty()).collect();
        let plain =
            |w: &MemberWork| w.options.partitions.is_empty() && w.options.qos_levels.is_empty();
        let mut by_options: BTreeMap<(Vec<String>, UserAssocOptions), Vec<String>> =
            BTreeMap::new();
        for w in &adding {
            by_options
                .entry((w.add.clone(), w.options.clone()))
                .or_default()
                .push(w.account.clone());
        }
        let loadable: Vec<&MemberWork> = adding.iter().copied().filter(|w| plain(w)).collect();
        let plain_groups = by_options
            .keys()
            .filter(|(_, o)| o.partitions.is_empty() && o.qos_levels.is_empty());
        // load files (at most `load_chunk_rows` associations each: every one is a row inserted
        // into slurmdbd's association tree) + `list user`, against one `add user` per group.
        let associations: usize = loadable.iter().map(|w| w.add.len()).sum();
        let load_calls = associations.div_ceil(self.settings.load_chunk_rows.max(1)) + 1;
        if self.settings.batch_load && plain_groups.count() > load_calls {
            let users: BTreeSet<String> = loadable
                .iter()
                .flat_map(|w| w.add.iter().cloned())
                .collect();
            // One round: the cluster is cached after the first time, the users' defaults are not.
            let (cluster, defaults) = tokio::join!(
                self.cluster_for_load(),
                self.resolve_user_defaults(&users, None)
            );
            if let (Some(cluster), Some(defaults)) = (cluster, defaults) {
                let assocs: Vec<(&str, &[String], &UserAssocOptions)> = loadable
                    .iter()
                    .map(|w| (w.account.as_str(), w.add.as_slice(), &w.options))
                    .collect();
                // New users' default-account lines come first, so they load before the rest.
                let lines = self.load_user_lines(&assocs, states, &defaults);
                let mut rest = lines.as_slice();
                while !rest.is_empty() {
                    let (part, tail) = self.pacer.split_next(rest);
                    let started = Instant::now();
                    self.run_load(&render_load_file(&cluster, &[], part)).await;
                    self.pacer.record(part.len(), started.elapsed());
                    rest = tail;
                }
                // What the files did not carry (users without a default account) is redone
                // per resource after the read-back.
                by_options
                    .retain(|(_, o), _| !(o.partitions.is_empty() && o.qos_levels.is_empty()));
            }
        }
        for ((users, options), accounts) in by_options {
            for accounts in accounts.chunks(chunk) {
                if let Err(e) = self.add_users_retrying(&users, accounts, &options).await {
                    tracing::warn!(error = %e, "batched add user failed");
                }
            }
        }
        let mut by_users: BTreeMap<&Vec<String>, Vec<String>> = BTreeMap::new();
        for w in active.iter().filter(|w| !w.remove.is_empty()) {
            by_users
                .entry(&w.remove)
                .or_default()
                .push(w.account.clone());
        }
        for (users, accounts) in by_users {
            for accounts in accounts.chunks(chunk) {
                if let Err(e) = self
                    .exec_change(self.commands.remove_users(users, accounts))
                    .await
                {
                    tracing::warn!(error = %e, "batched remove user failed");
                }
            }
        }
        let mut by_status: BTreeMap<&StatusTarget, Vec<String>> = BTreeMap::new();
        for w in active {
            if let Some(target) = &w.status {
                by_status.entry(target).or_default().push(w.account.clone());
            }
        }
        for (target, accounts) in by_status {
            for accounts in accounts.chunks(chunk) {
                let cmd = self
                    .commands
                    .modify_accounts(accounts, &[target.assignment()]);
                if let Err(e) = self.exec_change(cmd).await {
                    tracing::warn!(error = %e, "batched account status change failed");
                }
            }
        }
    }

    /// One resource's membership writes, each its own command (the fallback of a batch).
    async fn write_member(&self, w: &MemberWork) -> BackendResult<()> {
        let account = std::slice::from_ref(&w.account);
        if !w.add.is_empty() {
            self.add_users_retrying(&w.add, account, &w.options).await?;
        }
        if !w.remove.is_empty() {
            match self
                .exec_change(self.commands.remove_users(&w.remove, account))
                .await
            {
                Ok(_) => {}
                Err(BackendError::Command { output, .. }) if is_jobs_running(&output) => {
                    for user in &w.remove {
                        if let Err(e) = self
                            .exec(self.commands.cancel_jobs(&w.account, Some(user)))
                            .await
                        {
                            tracing::warn!(user, account = %w.account, error = %e, "scancel failed");
                        }
                    }
                    self.exec_change(self.commands.remove_users(&w.remove, account))
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(target) = &w.status {
            self.exec_change(
                self.commands
                    .modify_accounts(account, &[target.assignment()]),
            )
            .await?;
        }
        Ok(())
    }

    /// One change through [`Self::apply_batch`].
    async fn apply_one(&self, change: MembershipChange) -> BackendResult<Applied> {
        self.apply_batch(std::slice::from_ref(&change))
            .await
            .pop()
            .unwrap_or_else(|| Err(BackendError::permanent("no result for membership change")))
    }

    /// `resource` with its flags set to `paused` / `downscaled`, for a status change alone.
    fn with_status(resource: &ResourceView, paused: bool, downscaled: bool) -> MembershipChange {
        MembershipChange {
            resource: ResourceView {
                paused,
                downscaled,
                ..resource.clone()
            },
            apply_status: true,
            ..MembershipChange::default()
        }
    }

    /// Remove an account, cancelling its jobs first when sacctmgr refuses because of them.
    async fn remove_account(&self, account: &str) -> BackendResult<bool> {
        let names = [account.to_owned()];
        match self
            .exec_change(self.commands.remove_accounts(&names))
            .await
        {
            Err(BackendError::Command { output, .. }) if is_jobs_running(&output) => {
                tracing::info!(account, "cancelling jobs before removing the account");
                if let Err(e) = self.exec(self.commands.cancel_jobs(account, None)).await {
                    tracing::warn!(account, error = %e, "scancel failed");
                }
                self.exec_change(self.commands.remove_accounts(&names))
                    .await
            }
            other => other,
        }
    }

    /// The limits read back must be the ones just written; anything else is retried.
    fn confirm_limits(
        account: &str,
        state: &AccountState,
        written: &TresAmounts,
    ) -> BackendResult<()> {
        let read = parse_limit_tres(&state.grp_tres_mins);
        let differing: Vec<String> = written
            .iter()
            .filter(|(tres, value)| read.get(*tres) != Some(*value))
            .map(|(tres, value)| {
                let now = read.get(tres).map_or("unset".to_owned(), i64::to_string);
                format!("{tres}={value} (SLURM shows {now})")
            })
            .collect();
        if differing.is_empty() {
            Ok(())
        } else {
            Err(BackendError::transient(format!(
                "SLURM account '{account}' did not take the new limits: {}; will retry",
                differing.join(", ")
            )))
        }
    }

    /// Remove (or, with `soft_delete`, zero) the accounts of many resources: one `remove` for
    /// all, one read-back, and each project account removed once, after its last allocation.
    /// A removal SLURM still shows afterwards is an error for that resource (retried later),
    /// never reported as done.
    async fn delete_batch(&self, resources: &[ResourceView]) -> Vec<BackendResult<()>> {
        let _sequence = self.gate.sequence().await;
        let mut results: Vec<Option<BackendResult<()>>> = std::iter::repeat_with(|| None)
            .take(resources.len())
            .collect();
        let protected = self.protected_accounts();
        let mut targets: Vec<(usize, String)> = Vec::new();
        for (i, resource) in resources.iter().enumerate() {
            if resource.backend_id.is_empty() {
                results[i] = Some(Ok(()));
                continue;
            }
            match Self::resource_account(resource) {
                Ok(account) if protected.contains(&account) => {
                    results[i] = Some(Err(BackendError::permanent(format!(
                        "refusing to remove '{account}': it is one of the offering's top accounts"
                    ))));
                }
                Ok(account) => targets.push((i, account)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let names: Vec<String> = targets
            .iter()
            .map(|(_, a)| a.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let outcome = if names.is_empty() {
            Ok(BTreeMap::new())
        } else if self.settings.soft_delete {
            self.zero_accounts(&names).await
        } else {
            self.remove_accounts_confirmed(&names).await
        };
        let errors = match outcome {
            Ok(errors) => errors,
            Err(e) => names.iter().map(|n| (n.clone(), share_error(&e))).collect(),
        };
        {
            let gone: BTreeSet<&String> =
                names.iter().filter(|n| !errors.contains_key(*n)).collect();
            lock(&self.fresh_assocs).retain(|(a, _)| !gone.contains(a));
        }
        if !self.settings.soft_delete {
            let emptied: BTreeSet<String> = targets
                .iter()
                .filter(|(_, account)| !errors.contains_key(account))
                .filter_map(|(i, account)| {
                    let project = self
                        .hierarchy
                        .project_id(&resources[*i].project_slug)
                        .ok()?;
                    (project != *account && !protected.contains(&project)).then_some(project)
                })
                .collect();
            self.remove_empty_projects(emptied).await;
        }
        for (i, account) in targets {
            results[i] = Some(match errors.get(&account) {
                Some(e) => Err(share_error(e)),
                None => Ok(()),
            });
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(BackendError::permanent("request was not processed"))))
            .collect()
    }

    /// `soft_delete`: zero every component's limit, confirmed by a read-back. Returns the
    /// accounts that failed, with why.
    async fn zero_accounts(
        &self,
        names: &[String],
    ) -> BackendResult<BTreeMap<String, BackendError>> {
        let zeros: TresAmounts = self
            .filter_known_tres(
                self.components
                    .tres_names()
                    .into_iter()
                    .map(|t| (t, 0))
                    .collect(),
            )
            .await;
        if zeros.is_empty() {
            return Ok(BTreeMap::new());
        }
        // Absent accounts answer "Nothing modified": there is nothing to zero.
        self.exec_change(self.commands.set_grp_tres_mins(names, &format_tres(&zeros)))
            .await?;
        let after = self.account_states(names).await?;
        Ok(names
            .iter()
            .filter_map(|name| {
                let state = after.get(name)?;
                Self::confirm_limits(name, state, &zeros)
                    .err()
                    .map(|e| (name.clone(), e))
            })
            .collect())
    }

    /// Remove the accounts with one command (absent ones answer "Nothing deleted"), then read
    /// back; what SLURM still lists is removed once more one by one (cancelling its jobs if they
    /// block it) and read back again. Returns the accounts still present, with why.
    async fn remove_accounts_confirmed(
        &self,
        names: &[String],
    ) -> BackendResult<BTreeMap<String, BackendError>> {
        let present = names;
        if let Err(e) = self
            .exec_change(self.commands.remove_accounts(present))
            .await
        {
            // Running jobs, or one odd account: the per-account pass below sorts it out.
            tracing::info!(error = %e, "batched remove account failed; removing one by one");
        }
        let after = self.account_states(present).await?;
        let mut errors = BTreeMap::new();
        let left: Vec<String> = present
            .iter()
            .filter(|n| after.contains_key(*n))
            .cloned()
            .collect();
        for account in &left {
            if let Err(e) = self.remove_account(account).await {
                errors.insert(account.clone(), e);
            }
        }
        if !left.is_empty() {
            let still = self.account_states(&left).await?;
            for account in left.iter().filter(|a| still.contains_key(*a)) {
                errors.entry(account.clone()).or_insert_with(|| {
                    BackendError::transient(format!(
                        "SLURM still lists account '{account}' after removing it; will retry"
                    ))
                });
            }
            for account in left.iter().filter(|a| !still.contains_key(*a)) {
                errors.remove(account);
            }
        }
        Ok(errors)
    }

    /// Remove the project accounts left without children (one `show assoc` per project, one
    /// `remove` for all). Failures are logged: the resources are gone either way, and the next
    /// removal in the project tries again.
    async fn remove_empty_projects(&self, projects: BTreeSet<String>) {
        let mut empty = Vec::new();
        for project in projects {
            match self.exec(self.commands.show_children(&project)).await {
                Ok(out) if parse_assoc_rows(&out).is_empty() => empty.push(project),
                Ok(_) => {}
                Err(e) => tracing::warn!(project, error = %e, "could not list project children"),
            }
        }
        if empty.is_empty() {
            return;
        }
        match self.remove_accounts_confirmed(&empty).await {
            Ok(errors) => {
                for (project, e) in errors {
                    tracing::warn!(project, error = %e, "could not remove empty project account");
                }
            }
            Err(e) => {
                tracing::warn!(projects = ?empty, error = %e, "could not remove empty project accounts")
            }
        }
    }

    fn protected_accounts(&self) -> BTreeSet<String> {
        [
            Some("root"),
            Some(self.settings.root()),
            self.settings.default_account.as_deref(),
            self.settings.parent_account.as_deref(),
        ]
        .into_iter()
        .flatten()
        .map(str::to_lowercase)
        .collect()
    }
}

#[async_trait]
impl BackendHealth for SlurmBackend {
    fn kind(&self) -> &'static str {
        "slurm"
    }

    async fn ping(&self) -> BackendResult<()> {
        let probe = self.settings.root().to_owned();
        match self.exec(self.commands.ping(&probe)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(BackendError::NotReady(format!(
                "sacctmgr is not answering: {e}"
            ))),
        }
    }

    async fn diagnostics(&self) -> Diagnostics {
        let mut d = Diagnostics::new("slurm");
        d.check(
            "settings",
            true,
            format!(
                "cluster_name={} root={} parent_account={} prefixes customer='{}' project='{}' allocation='{}' bin_path='{}'",
                self.settings.cluster_name.as_deref().unwrap_or("(none)"),
                self.settings.root(),
                self.settings.parent_account.as_deref().unwrap_or("(none)"),
                self.settings.customer_prefix,
                self.settings.project_prefix,
                self.settings.allocation_prefix,
                self.settings.slurm_bin_path,
            ),
        );
        match self.exec(self.commands.version()).await {
            Ok(out) if out.to_ascii_lowercase().contains("slurm") => {
                d.check("sacctmgr version", true, out.trim())
            }
            Ok(out) => d.check(
                "sacctmgr version",
                false,
                format!("unexpected output: {}", out.trim()),
            ),
            Err(e) => d.check("sacctmgr version", false, e.to_string()),
        }
        let started = Instant::now();
        let listed = self.exec(self.commands.list_clusters()).await;
        if listed.is_ok() {
            d.check(
                "sacctmgr round trip",
                true,
                round_trip_note(started.elapsed()),
            );
        }
        match listed {
            Ok(out) => {
                let clusters = parse_first_column(&out);
                match &self.settings.cluster_name {
                    Some(c) if !clusters.iter().any(|x| x.eq_ignore_ascii_case(c)) => d.check(
                        "cluster",
                        false,
                        format!("cluster_name '{c}' not among clusters {clusters:?}"),
                    ),
                    _ => d.check(
                        "cluster",
                        true,
                        format!("clusters: {}", clusters.join(", ")),
                    ),
                }
            }
            Err(e) => d.check("cluster", false, e.to_string()),
        }
        let tres = self.cluster_tres().await;
        let missing: Vec<String> = self
            .components
            .tres_names()
            .into_iter()
            .filter(|t| !tres.contains(t))
            .collect();
        d.check(
            "TRES",
            !tres.is_empty() && missing.is_empty(),
            if tres.is_empty() {
                "could not list TRES".to_owned()
            } else if missing.is_empty() {
                format!("{} TRES, all components known", tres.len())
            } else {
                format!(
                    "components not known to the cluster: {}",
                    missing.join(", ")
                )
            },
        );
        let mut required: Vec<String> = vec![self.settings.root().to_lowercase()];
        if let Some(a) = &self.settings.default_account {
            required.push(a.to_lowercase());
        }
        if let Some(a) = &self.settings.parent_account {
            required.push(a.to_lowercase());
        }
        required.sort();
        required.dedup();
        match self.account_states(&required).await {
            Ok(states) => {
                for name in &required {
                    d.check(
                        format!("account {name}"),
                        states.contains_key(name),
                        if states.contains_key(name) {
                            "exists"
                        } else {
                            "missing"
                        },
                    );
                }
            }
            Err(e) => d.check("accounts", false, e.to_string()),
        }
        let list = self.commands.list_accounts();
        match self.exec(list).await {
            Ok(out) => {
                let prefix = self.settings.allocation_prefix.to_lowercase();
                let count = parse_first_column(&out)
                    .iter()
                    .filter(|a| a.to_lowercase().starts_with(&prefix))
                    .count();
                d.check(
                    "allocation accounts",
                    true,
                    format!("{count} accounts with prefix '{prefix}'"),
                );
            }
            Err(e) => d.check("allocation accounts", false, e.to_string()),
        }
        d
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            supports_user_homedirs: true,
            supports_cycle_preflight: true,
            // Associations are by username only.
            uses_user_attributes: false,
            ..Capabilities::default()
        }
    }
}

#[async_trait]
impl OrderBackend for SlurmBackend {
    async fn check_ids(&self, requests: &[CreateRequest]) -> BackendResult<SiteCheck> {
        // One `show assoc` for the ids and everything their creation will look at (parents,
        // anchors); the create that follows reuses the answer instead of asking again.
        let mut names: BTreeSet<String> = self.load_anchor_accounts().into_iter().collect();
        let mut users: BTreeSet<String> = BTreeSet::new();
        for request in requests {
            let Ok((allocation, request_users)) = self.prepare(request) else {
                continue;
            };
            users.extend(request_users);
            match self.hierarchy.plan(&request.resource, &allocation) {
                Ok(plan) => names.extend(plan.accounts.iter().map(|a| a.name.clone())),
                Err(_) => {
                    names.insert(allocation);
                }
            }
        }
        let queried: Vec<String> = names.iter().cloned().collect();
        // With batch load the create's load file needs the users' default accounts: read them
        // alongside, so a lone order (event mode) waits for one read round instead of two.
        // The cluster's TRES list and (without `cluster_name`) its name are read in the same
        // round too: both are cached, so only the first create of a process pays for them.
        let (states, user_defaults) = if self.settings.batch_load {
            let read_defaults = async {
                if users.is_empty() {
                    None
                } else {
                    self.list_user_defaults(&users).await.ok()
                }
            };
            let (states, defaults, _, _) = tokio::join!(
                self.account_presence(&queried),
                read_defaults,
                self.cluster_tres(),
                self.cluster_for_load()
            );
            (states?, defaults)
        } else {
            (self.account_presence(&queried).await?, None)
        };
        let existing = requests
            .iter()
            .filter(|r| states.contains_key(&r.backend_id.to_lowercase()))
            .map(|r| r.backend_id.clone())
            .collect();
        let reads: Box<dyn std::any::Any + Send + Sync> = Box::new(ExistenceSnapshot {
            taken: Instant::now(),
            queried: names,
            states,
            user_defaults,
        });
        Ok(SiteCheck {
            existing,
            reads: Some(reads),
        })
    }

    fn backend_id_for(&self, base_slug: &str) -> BackendResult<String> {
        self.hierarchy.allocation_id(base_slug)
    }

    async fn pull_resource(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Option<BackendResourceInfo>> {
        if resource.backend_id.is_empty() {
            return Ok(None);
        }
        let account = Self::resource_account(resource)?;
        Ok(self
            .account_state(&account)
            .await?
            .map(|s| self.info(&account, &s)))
    }

    async fn create_resource(&self, request: CreateRequest) -> BackendResult<BackendResourceInfo> {
        self.create_batch(vec![request], None)
            .await
            .pop()
            .unwrap_or_else(|| Err(BackendError::permanent("no result for create")))
    }

    async fn create_resources(
        &self,
        requests: Vec<CreateRequest>,
    ) -> Vec<BackendResult<BackendResourceInfo>> {
        self.create_batch(requests, None).await
    }

    async fn create_checked(
        &self,
        requests: Vec<CreateRequest>,
        check: SiteCheck,
    ) -> Vec<BackendResult<BackendResourceInfo>> {
        let snapshot = check
            .reads
            .and_then(|reads| reads.downcast::<ExistenceSnapshot>().ok())
            .map(|snapshot| *snapshot);
        self.create_batch(requests, snapshot).await
    }

    fn check_limits(&self, resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        self.components
            .resource_tres(limits, self.months_for(resource))?;
        Ok(())
    }

    async fn set_limits(&self, resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        let account = Self::resource_account(resource)?;
        let tres = self.site_limits(resource, limits).await?;
        if tres.is_empty() {
            return Ok(());
        }
        self.exec_change(
            self.commands
                .set_grp_tres_mins(std::slice::from_ref(&account), &format_tres(&tres)),
        )
        .await?;
        let states = self.account_states(std::slice::from_ref(&account)).await?;
        match states.get(&account) {
            Some(state) => Self::confirm_limits(&account, state, &tres),
            None => Err(BackendError::permanent(format!(
                "SLURM account '{account}' does not exist"
            ))),
        }
    }

    async fn delete_resource(&self, resource: &ResourceView) -> BackendResult<()> {
        self.delete_batch(std::slice::from_ref(resource))
            .await
            .pop()
            .unwrap_or_else(|| Err(BackendError::permanent("no result for delete")))
    }

    async fn delete_resources(&self, resources: &[ResourceView]) -> Vec<BackendResult<()>> {
        self.delete_batch(resources).await
    }

    async fn add_users_after_create(
        &self,
        resource: &ResourceView,
        users: &[UserGrant],
    ) -> BackendResult<Vec<String>> {
        let account = Self::resource_account(resource)?;
        let mut fresh_hits = Vec::new();
        let mut rest = Vec::new();
        {
            let mut fresh = lock(&self.fresh_assocs);
            for u in users {
                if fresh.remove(&(account.clone(), u.username.clone())) {
                    fresh_hits.push(u.username.clone());
                } else {
                    rest.push(u.clone());
                }
            }
        }
        let mut added = if rest.is_empty() {
            Vec::new()
        } else {
            MembershipBackend::add_users(self, resource, &rest).await?
        };
        added.extend(fresh_hits);
        added.sort();
        added.dedup();
        Ok(added)
    }
}

#[async_trait]
impl MembershipBackend for SlurmBackend {
    async fn sync_projects(&self, resources: &[ResourceView]) -> BackendResult<usize> {
        self.sync_resource_projects(resources).await
    }

    async fn pull_resources(
        &self,
        resources: &[ResourceView],
    ) -> BackendResult<BTreeMap<String, BackendResourceInfo>> {
        let mut names = BTreeSet::new();
        for r in resources.iter().filter(|r| !r.backend_id.is_empty()) {
            names.insert(Self::resource_account(r)?);
        }
        // The membership cycle's one read: with the allocations, their parents (for
        // `sync_projects`) and the anchors a load file hangs from; the rest of the cycle works
        // from this answer (see `KnownTree`).
        names.extend(self.tree_names(&self.project_expectations(resources)));
        let names: Vec<String> = names.into_iter().collect();
        let states = self.account_states(&names).await?;
        let mut out = BTreeMap::new();
        for r in resources {
            let key = r.backend_id.to_lowercase();
            if let Some(state) = states.get(&key) {
                out.insert(r.backend_id.clone(), self.info(&key, state));
            }
        }
        Ok(out)
    }

    async fn apply_membership(
        &self,
        changes: &[MembershipChange],
    ) -> Vec<BackendResult<Vec<String>>> {
        self.apply_batch(changes)
            .await
            .into_iter()
            .map(|r| r.map(|(added, _)| added))
            .collect()
    }

    async fn add_users(
        &self,
        resource: &ResourceView,
        users: &[UserGrant],
    ) -> BackendResult<Vec<String>> {
        let change = MembershipChange {
            resource: resource.clone(),
            add: users.to_vec(),
            ..MembershipChange::default()
        };
        Ok(self.apply_one(change).await?.0)
    }

    async fn remove_users(
        &self,
        resource: &ResourceView,
        usernames: &[String],
    ) -> BackendResult<Vec<String>> {
        let users = Self::valid_usernames(usernames.iter().cloned())?;
        let change = MembershipChange {
            resource: resource.clone(),
            remove: users.clone(),
            ..MembershipChange::default()
        };
        self.apply_one(change).await?;
        Ok(users)
    }

    async fn pause(&self, resource: &ResourceView) -> BackendResult<bool> {
        Ok(self
            .apply_one(Self::with_status(resource, true, false))
            .await?
            .1)
    }

    async fn downscale(&self, resource: &ResourceView) -> BackendResult<bool> {
        Ok(self
            .apply_one(Self::with_status(resource, false, true))
            .await?
            .1)
    }

    async fn restore(&self, resource: &ResourceView) -> BackendResult<bool> {
        Ok(self
            .apply_one(Self::with_status(resource, false, false))
            .await?
            .1)
    }

    async fn resource_metadata(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Map<String, Value>> {
        let account = Self::resource_account(resource)?;
        Ok(self
            .known_state(&account)
            .await?
            .map(|s| self.info(&account, &s).backend_metadata)
            .unwrap_or_default())
    }

    async fn user_limits(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<BTreeMap<String, Limits>> {
        let account = Self::resource_account(resource)?;
        let Some(state) = self.known_state(&account).await? else {
            return Ok(BTreeMap::new());
        };
        Ok(state
            .users
            .iter()
            .filter(|(_, text)| !text.is_empty())
            .map(|(user, text)| {
                (
                    user.clone(),
                    self.components.tres_to_limits(&parse_limit_tres(text)),
                )
            })
            .filter(|(_, limits)| !limits.is_empty())
            .collect())
    }

    async fn set_user_limits(
        &self,
        resource: &ResourceView,
        username: &str,
        limits: &Limits,
    ) -> BackendResult<()> {
        let account = Self::resource_account(resource)?;
        validate_site_name("username", username)?;
        let mut tres = self
            .filter_known_tres(self.components.limits_to_tres(limits)?)
            .await;
        // Every offering TRES is written; absent ones are cleared with -1.
        for name in self.components.tres_names() {
            tres.entry(name).or_insert(-1);
        }
        let tres = self.filter_known_tres(tres).await;
        if tres.is_empty() {
            return Ok(());
        }
        let written = self
            .exec_change(self.commands.set_user_max_tres_mins(
                username,
                &account,
                &format_tres(&tres),
            ))
            .await;
        // Not read back here: the next read of the account shows it.
        lock(&self.known).forget([&account]);
        written?;
        Ok(())
    }
}

#[async_trait]
impl UsageBackend for SlurmBackend {
    async fn usage_report(
        &self,
        backend_ids: &[String],
        period: &BillingPeriod,
    ) -> BackendResult<BTreeMap<String, UsageReport>> {
        let mut accounts = BTreeSet::new();
        for id in backend_ids {
            validate_site_name("account name", id)?;
            accounts.insert(id.to_lowercase());
        }
        let accounts: Vec<String> = accounts.into_iter().collect();
        let (start, end) = sacct_window(period, &self.local_tz);
        let wanted = self.components.tres_names();
        let mut usage = BTreeMap::new();
        for chunk in accounts.chunks(SACCT_ACCOUNTS_PER_CALL) {
            let out = self.exec(self.commands.usage(chunk, &start, &end)).await?;
            usage.extend(aggregate(&out, &wanted));
        }
        let mut reports = BTreeMap::new();
        for id in backend_ids {
            let report = match usage.get(&id.to_lowercase()) {
                Some(u) => UsageReport {
                    total: self.components.usage_to_waldur(&u.total),
                    per_user: u
                        .per_user
                        .iter()
                        .map(|(user, t)| (user.clone(), self.components.usage_to_waldur(t)))
                        .collect(),
                },
                None => UsageReport {
                    total: self.components.usage_to_waldur(&BTreeMap::new()),
                    per_user: BTreeMap::new(),
                },
            };
            reports.insert(id.clone(), report);
        }
        Ok(reports)
    }
}
