//! MOAB backend: Waldur resources become MOAB Accounting Manager (MAM 9.1) accounts with one fund
//! each, the `deposit` limit becomes the fund's deposits, team members become account users, and
//! the month's usage records give usage (per user and in total).
//!
//! # Accounts
//!
//! ```text
//! <project_prefix><project slug>        description = project name, organization = itself
//! └ <allocation_prefix><resource slug>  description = resource name, organization = project
//!                                       + one fund (constraint Account=<allocation>)
//! ```
//!
//! Names come from [`backend_api::hierarchy`] (flat: MAM accounts have no parent) and pass
//! [`backend_api::names::validate_site_name`] before any command runs; usernames too. Every
//! argument is one argv item: a description with spaces and quotes reaches MAM as one `-d` value
//! (upstream splits a command string and sends `-d "My` `project"`). Only `|` and control
//! characters are dropped from descriptions (they would break the `|`-separated listing).
//!
//! # Limits
//!
//! One component, `deposit` (unit factor 1, whole credits, checked by
//! [`backend_api::units::site_amount`]). The limit is the fund's `Allocated` amount (deposits
//! minus withdrawals): `set_limits` deposits or withdraws the difference, so writing the same
//! limit twice changes nothing (upstream deposits the full limit again on every update).
//!
//! # Integrity
//!
//! Writes are serialized per site (every backend of the process reaching the same `mam-*` programs;
//! no lock across processes yet). A create is confirmed by reading the account and
//! its fund back; a limit change by reading the fund back; a removal by reading that neither the
//! account nor its funds are left. The fund is looked up *before* its account is deleted.
//!
//! # Call pattern
//!
//! A batch of N creates: one `mam-list-accounts`, one `mam-create-account` per new project
//! account, `mam-create-account` + `mam-create-fund` per allocation, one `mam-list-funds`, one
//! `mam-deposit` per non-zero deposit, and one `mam-list-accounts` + `mam-list-funds` read-back.
//! `pull_resources` for any number: two calls. Usage for any number of accounts: one
//! `mam-list-usagerecords`.

pub mod settings;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_config::{BackendRole, OfferingConfig};
use async_trait::async_trait;
use backend_api::command::{
    CommandLine, CommandRunner, ProcessRunner, generic_transient, parsable,
};
use backend_api::hierarchy::{AccountPlan, Hierarchy, Tier};
use backend_api::names::validate_site_name;
use backend_api::spec::{BackendSpec, SettingIssue};
use backend_api::units::{MAX_EXACT_INTEGER, site_amount};
use backend_api::{
    BackendError, BackendHandles, BackendHealth, BackendResourceInfo, BackendResult, BillingPeriod,
    BuildContext, CreateRequest, Diagnostics, Limits, MembershipBackend, OrderBackend,
    ResourceView, SiteCheck, UsageBackend, UsageReport, UserGrant,
};

pub use settings::MoabSettings;

/// The only component.
pub const DEPOSIT: &str = "deposit";

/// What the `moab` backend is, for the registry, `validate-config` and the plugin catalogue.
pub static SPEC: BackendSpec = BackendSpec {
    name: "moab",
    description: "MOAB Accounting Manager through the mam-* CLI: allocations as accounts with \
                  one fund each, the deposit limit as the fund's deposits, usage from usage \
                  records",
    roles: &[
        BackendRole::OrderProcessing,
        BackendRole::MembershipSync,
        BackendRole::Reporting,
    ],
    settings: settings::SETTINGS,
    components: "one component, `deposit` (credits, unit factor 1: whole amounts); it must be \
                 present and no other key is accepted",
    check,
    build,
};

/// The start-up checks of [`build`], without running anything.
fn check(offering: &OfferingConfig) -> Vec<SettingIssue> {
    let mut issues = MoabSettings::parse(&offering.backend_settings)
        .err()
        .unwrap_or_default();
    if !offering.backend_components.contains_key(DEPOSIT) {
        issues.push(SettingIssue::component(
            DEPOSIT,
            "is required: MOAB offerings have one `deposit` component",
        ));
    }
    for key in offering.backend_components.keys() {
        if key != DEPOSIT {
            issues.push(SettingIssue::component(
                key,
                "MOAB has only the `deposit` component",
            ));
        }
    }
    issues
}

/// MAM's "try later" messages, on top of the operating system's.
pub fn is_transient_output(output: &str) -> bool {
    let lower = output.to_ascii_lowercase();
    generic_transient(output)
        || [
            "failed sending message",
            "failed to connect",
            "could not connect",
            "server is busy",
        ]
        .iter()
        .any(|n| lower.contains(n))
}

/// Registry constructor for backend name `moab`.
pub fn build(ctx: &BuildContext<'_>) -> Result<BackendHandles, BackendError> {
    let issues = check(ctx.offering);
    if !issues.is_empty() {
        let text: Vec<String> = issues
            .iter()
            .map(|i| format!("{}: {}", i.path, i.reason))
            .collect();
        return Err(BackendError::Config(text.join("; ")));
    }
    let settings = MoabSettings::from_map(&ctx.offering.backend_settings)?;
    let runner = ProcessRunner::new(Duration::from_secs(settings.command_timeout_seconds.max(1)))
        .with_transient_rule(is_transient_output)
        .shared();
    Ok(handles(Arc::new(MoabBackend::new(settings, runner))))
}

/// Registry handles sharing one backend instance.
pub fn handles(backend: Arc<MoabBackend>) -> BackendHandles {
    BackendHandles {
        kind: "moab",
        health: backend.clone(),
        orders: Some(backend.clone()),
        membership: Some(backend.clone()),
        usage: Some(backend),
        usernames: None,
    }
}

/// One row of `mam-list-accounts`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountRow {
    pub description: String,
    pub organization: String,
    pub active: bool,
    pub users: BTreeSet<String>,
}

/// One row of `mam-list-funds`.
#[derive(Clone, Debug, PartialEq)]
pub struct FundRow {
    pub id: u64,
    pub allocated: f64,
}

/// The MOAB backend.
pub struct MoabBackend {
    settings: MoabSettings,
    hierarchy: Hierarchy,
    runner: Arc<dyn CommandRunner>,
    /// Shared by every backend of this process that reaches the same `mam-*` programs.
    writes: Arc<tokio::sync::Mutex<()>>,
}

/// A description as one argument: no `|` (the listing's separator), no control characters.
pub fn description(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| *c != '|')
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cleaned.trim().to_owned()
}

/// The same error again, for every request a shared failure concerns.
fn again(e: &BackendError) -> BackendError {
    if e.is_transient() {
        BackendError::transient(e.to_string())
    } else {
        BackendError::permanent(e.to_string())
    }
}

/// One writer per MAM site (the `mam-*` programs reached through `bin_path`) in this process.
fn site_gate(bin_path: &str) -> Arc<tokio::sync::Mutex<()>> {
    static GATES: std::sync::OnceLock<
        std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::OnceLock::new();
    let gates = GATES.get_or_init(Default::default);
    let mut gates = gates.lock().unwrap_or_else(|p| p.into_inner());
    gates.entry(bin_path.to_owned()).or_default().clone()
}

fn permanent(message: String) -> BackendError {
    BackendError::Permanent(message)
}

impl MoabBackend {
    pub fn new(settings: MoabSettings, runner: Arc<dyn CommandRunner>) -> Self {
        let settings_bin = settings.mam_bin_path.clone();
        let hierarchy = Hierarchy {
            root_account: String::new(),
            parent_account: Some(String::new()),
            customer_prefix: String::new(),
            project_prefix: settings.project_prefix.clone(),
            allocation_prefix: settings.allocation_prefix.clone(),
        };
        MoabBackend {
            settings,
            hierarchy,
            runner,
            writes: site_gate(&settings_bin),
        }
    }

    fn command(&self, program: &str) -> CommandLine {
        let path = if self.settings.mam_bin_path.is_empty() {
            PathBuf::from(program)
        } else {
            PathBuf::from(&self.settings.mam_bin_path).join(program)
        };
        CommandLine::new(path)
    }

    async fn run(&self, command: CommandLine) -> BackendResult<String> {
        Ok(self.runner.run(&command).await?.stdout)
    }

    /// `mam-list-accounts`, all or one.
    pub async fn accounts(
        &self,
        only: Option<&str>,
    ) -> BackendResult<BTreeMap<String, AccountRow>> {
        let mut c = self.command("mam-list-accounts").args([
            "--raw",
            "--quiet",
            "--show",
            "Name,Description,Organization,Active,Users",
        ]);
        if let Some(a) = only {
            c = c.args(["-a", a]);
        }
        let out = self.run(c).await?;
        Ok(parsable::rows(&out)
            .filter(|r| !r.get(0).is_empty())
            .map(|r| {
                (
                    r.get(0).to_owned(),
                    AccountRow {
                        description: r.get(1).to_owned(),
                        organization: r.get(2).to_owned(),
                        active: !r.get(3).eq_ignore_ascii_case("false"),
                        users: r
                            .get(4)
                            .split(',')
                            .filter(|u| !u.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    },
                )
            })
            .collect())
    }

    /// `mam-list-funds`, all or one account's: account → funds.
    pub async fn funds(&self, only: Option<&str>) -> BackendResult<BTreeMap<String, Vec<FundRow>>> {
        let mut c = self.command("mam-list-funds").args([
            "--raw",
            "--quiet",
            "--show",
            "Id,Constraints,Allocated",
        ]);
        if let Some(a) = only {
            c = c.args(["-a", a]);
        }
        let out = self.run(c).await?;
        let mut map: BTreeMap<String, Vec<FundRow>> = BTreeMap::new();
        for row in parsable::rows(&out) {
            let Ok(id) = row.get(0).parse::<u64>() else {
                tracing::warn!(line = row.line, "unparsable mam-list-funds row");
                continue;
            };
            let account = row
                .get(1)
                .split(',')
                .find_map(|c| c.trim().strip_prefix("Account="))
                .unwrap_or("")
                .to_owned();
            let allocated = row.get(2).parse::<f64>().unwrap_or(0.0);
            map.entry(account)
                .or_default()
                .push(FundRow { id, allocated });
        }
        Ok(map)
    }

    /// The deposit (site credits) of `limits`, checked; absent = 0.
    fn site_deposit(&self, limits: &Limits) -> BackendResult<i64> {
        for (key, value) in limits {
            if key != DEPOSIT {
                return Err(BackendError::Limit(backend_api::units::LimitError::new(
                    key,
                    *value,
                    "MOAB has only the `deposit` component",
                    0.0,
                    0.0,
                )));
            }
        }
        match limits.get(DEPOSIT) {
            Some(v) => Ok(site_amount(DEPOSIT, *v, 1.0, MAX_EXACT_INTEGER)?),
            None => Ok(0),
        }
    }

    fn plan(&self, resource: &ResourceView, backend_id: &str) -> BackendResult<AccountPlan> {
        let mut plan = self.hierarchy.plan(resource, backend_id)?;
        for account in &mut plan.accounts {
            account.description = description(match account.tier {
                Tier::Allocation => &resource.name,
                _ => &resource.project_name,
            });
        }
        Ok(plan)
    }

    fn info(
        &self,
        id: &str,
        account: &AccountRow,
        funds: Option<&Vec<FundRow>>,
    ) -> BackendResourceInfo {
        let allocated = funds
            .and_then(|f| f.first())
            .map(|f| f.allocated)
            .unwrap_or(0.0);
        BackendResourceInfo {
            backend_id: id.to_owned(),
            parent_id: account.organization.clone(),
            users: account.users.iter().cloned().collect(),
            limits: [(DEPOSIT.to_owned(), allocated)].into(),
            ..Default::default()
        }
    }

    async fn create_account(
        &self,
        name: &str,
        description: &str,
        organization: &str,
    ) -> BackendResult<()> {
        self.run(self.command("mam-create-account").args([
            "-a",
            name,
            "-d",
            description,
            "-o",
            organization,
        ]))
        .await
        .map(drop)
    }

    async fn move_deposit(&self, account: &str, fund: &FundRow, want: i64) -> BackendResult<()> {
        let diff = want as f64 - fund.allocated;
        if diff == 0.0 {
            return Ok(());
        }
        let (program, amount) = if diff > 0.0 {
            ("mam-deposit", diff)
        } else {
            ("mam-withdraw", -diff)
        };
        self.run(self.command(program).args([
            "-a".to_owned(),
            account.to_owned(),
            "-z".to_owned(),
            backend_api::units::fmt_amount(amount),
            "-f".to_owned(),
            fund.id.to_string(),
        ]))
        .await
        .map(drop)
    }

    /// Delete allocation accounts (funds looked up first) and project accounts left empty.
    async fn delete_batch(&self, resources: &[ResourceView]) -> Vec<BackendResult<()>> {
        let _write = self.writes.lock().await;
        let mut results: Vec<Option<BackendResult<()>>> =
            (0..resources.len()).map(|_| None).collect();
        for (i, r) in resources.iter().enumerate() {
            if let Err(e) = validate_site_name("account name", &r.backend_id) {
                results[i] = Some(Err(e));
            }
        }
        if results.iter().all(Option::is_some) {
            return results.into_iter().flatten().collect();
        }
        let (accounts, funds) = match tokio::try_join!(self.accounts(None), self.funds(None)) {
            Ok(x) => x,
            Err(e) => {
                return results
                    .into_iter()
                    .map(|r| r.unwrap_or_else(|| Err(again(&e))))
                    .collect();
            }
        };
        let mut projects = BTreeSet::new();
        for (i, r) in resources.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            let id = r.backend_id.as_str();
            let mut step = Ok(());
            if let Some(account) = accounts.get(id) {
                if account.organization != id && !account.organization.is_empty() {
                    projects.insert(account.organization.clone());
                }
                step = self
                    .run(self.command("mam-delete-account").args(["-a", id]))
                    .await
                    .map(drop);
            }
            for fund in funds.get(id).into_iter().flatten() {
                if step.is_err() {
                    break;
                }
                step = self
                    .run(
                        self.command("mam-delete-fund")
                            .args(["-f".to_owned(), fund.id.to_string()]),
                    )
                    .await
                    .map(drop);
            }
            if step.is_err() {
                results[i] = Some(step);
            }
        }
        // Read back: neither account nor fund left.
        let (accounts, funds) = match tokio::try_join!(self.accounts(None), self.funds(None)) {
            Ok(x) => x,
            Err(e) => {
                return results
                    .into_iter()
                    .map(|r| r.unwrap_or_else(|| Err(again(&e))))
                    .collect();
            }
        };
        for (i, r) in resources.iter().enumerate() {
            if results[i].is_none() {
                let id = r.backend_id.as_str();
                results[i] = Some(if accounts.contains_key(id) || funds.contains_key(id) {
                    Err(BackendError::transient(format!(
                        "MOAB still lists account {id} or its fund after the removal"
                    )))
                } else {
                    Ok(())
                });
            }
        }
        for project in projects {
            let used = accounts
                .iter()
                .any(|(name, a)| a.organization == project && *name != project);
            if !used && accounts.contains_key(&project) {
                let removed = self
                    .run(self.command("mam-delete-account").args(["-a", &project]))
                    .await;
                if let Err(e) = removed {
                    tracing::warn!(%project, error = %e, "could not remove the empty project account");
                }
                for fund in funds.get(&project).into_iter().flatten() {
                    let _ = self
                        .run(
                            self.command("mam-delete-fund")
                                .args(["-f".to_owned(), fund.id.to_string()]),
                        )
                        .await;
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect()
    }

    /// Create a batch; `preloaded` is the account list `check_ids` read for it.
    async fn create_batch(
        &self,
        requests: Vec<CreateRequest>,
        preloaded: Option<BTreeMap<String, AccountRow>>,
    ) -> Vec<BackendResult<BackendResourceInfo>> {
        let mut results: Vec<Option<BackendResult<BackendResourceInfo>>> =
            (0..requests.len()).map(|_| None).collect();
        let mut prepared: Vec<(usize, AccountPlan, i64)> = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, request) in requests.iter().enumerate() {
            let checked = self
                .plan(&request.resource, &request.backend_id)
                .and_then(|plan| Ok((plan, self.site_deposit(&request.resource.limits)?)));
            match checked {
                Err(e) => results[i] = Some(Err(e)),
                Ok(_) if !seen.insert(request.backend_id.to_lowercase()) => {
                    results[i] = Some(Err(BackendError::Duplicate {
                        backend_id: request.backend_id.clone(),
                    }))
                }
                Ok((plan, deposit)) => prepared.push((i, plan, deposit)),
            }
        }
        if prepared.is_empty() {
            return results
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Err(permanent("no result".into()))))
                .collect();
        }
        let _write = self.writes.lock().await;
        let fail_all = |results: &mut Vec<Option<BackendResult<BackendResourceInfo>>>,
                        prepared: &[(usize, AccountPlan, i64)],
                        e: &BackendError| {
            for (i, _, _) in prepared {
                results[*i].get_or_insert_with(|| Err(again(e)));
            }
        };
        let listed = match preloaded {
            Some(accounts) => Ok(accounts),
            None => self.accounts(None).await,
        };
        let existing = match listed {
            Ok(a) => a,
            Err(e) => {
                fail_all(&mut results, &prepared, &e);
                return results
                    .into_iter()
                    .map(|r| r.unwrap_or_else(|| Err(again(&e))))
                    .collect();
            }
        };
        let mut projects_done: BTreeMap<String, BackendResult<()>> = BTreeMap::new();
        let mut created = Vec::new();
        for (i, plan, deposit) in &prepared {
            let (Some(project), Some(allocation)) = (plan.project(), plan.allocation()) else {
                results[*i] = Some(Err(permanent("incomplete account plan".into())));
                continue;
            };
            if existing.contains_key(&allocation.name) {
                results[*i] = Some(Err(BackendError::Duplicate {
                    backend_id: allocation.name.clone(),
                }));
                continue;
            }
            if !existing.contains_key(&project.name) {
                if !projects_done.contains_key(&project.name) {
                    let made = self
                        .create_account(&project.name, &project.description, &project.organization)
                        .await;
                    projects_done.insert(project.name.clone(), made);
                }
                if let Some(Err(e)) = projects_done.get(&project.name) {
                    results[*i] = Some(Err(again(e)));
                    continue;
                }
            }
            if let Err(e) = self
                .create_account(
                    &allocation.name,
                    &allocation.description,
                    &allocation.organization,
                )
                .await
            {
                results[*i] = Some(Err(e));
                continue;
            }
            if let Err(e) = self
                .run(
                    self.command("mam-create-fund")
                        .args(["-a", &allocation.name]),
                )
                .await
            {
                // Leave no account without its fund behind.
                let _ = self
                    .run(
                        self.command("mam-delete-account")
                            .args(["-a", &allocation.name]),
                    )
                    .await;
                results[*i] = Some(Err(e));
                continue;
            }
            created.push((*i, allocation.name.clone(), *deposit));
        }
        if !created.is_empty() {
            match self.funds(None).await {
                Ok(funds) => {
                    for (i, name, deposit) in &created {
                        let step = match funds.get(name).and_then(|f| f.first()) {
                            Some(fund) => self.move_deposit(name, fund, *deposit).await,
                            None => Err(BackendError::transient(format!(
                                "MOAB does not list the fund just created for {name}"
                            ))),
                        };
                        if let Err(e) = step {
                            results[*i] = Some(Err(e));
                        }
                    }
                }
                Err(e) => {
                    for (i, _, _) in &created {
                        results[*i] = Some(Err(again(&e)));
                    }
                }
            }
            // Read back what was created.
            match tokio::try_join!(self.accounts(None), self.funds(None)) {
                Ok((accounts, funds)) => {
                    for (i, name, deposit) in &created {
                        if results[*i].is_some() {
                            continue;
                        }
                        let info = accounts
                            .get(name)
                            .map(|a| self.info(name, a, funds.get(name)));
                        results[*i] = Some(match info {
                            Some(info)
                                if funds.contains_key(name)
                                    && info.limits.get(DEPOSIT) == Some(&(*deposit as f64)) =>
                            {
                                Ok(info)
                            }
                            _ => Err(BackendError::transient(format!(
                                "MOAB does not show account {name} with its fund and deposit \
                                 after the create"
                            ))),
                        });
                    }
                }
                Err(e) => {
                    for (i, _, _) in &created {
                        results[*i].get_or_insert_with(|| Err(again(&e)));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(permanent("no result".into()))))
            .collect()
    }

    async fn set_active(&self, resource: &ResourceView, active: bool) -> BackendResult<bool> {
        let id = resource.backend_id.as_str();
        validate_site_name("account name", id)?;
        let _write = self.writes.lock().await;
        let accounts = self.accounts(Some(id)).await?;
        let account = accounts
            .get(id)
            .ok_or_else(|| permanent(format!("MOAB has no account {id}")))?;
        if account.active == active {
            return Ok(false);
        }
        let flag = if active { "-A" } else { "-I" };
        self.run(self.command("mam-modify-account").args(["-a", id, flag]))
            .await?;
        let back = self.accounts(Some(id)).await?;
        if back.get(id).map(|a| a.active) != Some(active) {
            return Err(BackendError::transient(format!(
                "MOAB account {id} did not change its Active flag"
            )));
        }
        Ok(true)
    }
}

#[async_trait]
impl BackendHealth for MoabBackend {
    fn kind(&self) -> &'static str {
        "moab"
    }

    async fn ping(&self) -> BackendResult<()> {
        self.run(
            self.command("mam-list-accounts")
                .args(["--raw", "--quiet", "--show", "Name"]),
        )
        .await
        .map(drop)
    }

    async fn diagnostics(&self) -> Diagnostics {
        let mut d = Diagnostics::new("moab");
        match self.accounts(None).await {
            Ok(accounts) => {
                let managed = accounts
                    .keys()
                    .filter(|n| n.starts_with(&self.settings.allocation_prefix.to_lowercase()))
                    .count();
                d.check(
                    "mam-list-accounts",
                    true,
                    format!(
                        "{} accounts ({managed} with the allocation prefix)",
                        accounts.len()
                    ),
                );
            }
            Err(e) => d.check("mam-list-accounts", false, e.to_string()),
        }
        match self.funds(None).await {
            Ok(funds) => d.check(
                "mam-list-funds",
                true,
                format!("{} funds", funds.values().map(Vec::len).sum::<usize>()),
            ),
            Err(e) => d.check("mam-list-funds", false, e.to_string()),
        }
        d
    }
}

#[async_trait]
impl OrderBackend for MoabBackend {
    fn backend_id_for(&self, base_slug: &str) -> BackendResult<String> {
        self.hierarchy.allocation_id(base_slug)
    }

    fn check_limits(&self, _resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        self.site_deposit(limits).map(drop)
    }

    async fn pull_resource(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Option<BackendResourceInfo>> {
        let id = resource.backend_id.as_str();
        validate_site_name("account name", id)?;
        let (accounts, funds) = tokio::try_join!(self.accounts(Some(id)), self.funds(Some(id)))?;
        Ok(accounts.get(id).map(|a| self.info(id, a, funds.get(id))))
    }

    async fn create_resource(&self, request: CreateRequest) -> BackendResult<BackendResourceInfo> {
        self.create_resources(vec![request])
            .await
            .pop()
            .unwrap_or_else(|| Err(permanent("no result".into())))
    }

    async fn create_resources(
        &self,
        requests: Vec<CreateRequest>,
    ) -> Vec<BackendResult<BackendResourceInfo>> {
        self.create_batch(requests, None).await
    }

    /// One `mam-list-accounts` for the whole cycle; the create reuses it.
    async fn check_ids(&self, requests: &[CreateRequest]) -> BackendResult<SiteCheck> {
        let accounts = self.accounts(None).await?;
        let existing = requests
            .iter()
            .filter(|r| accounts.contains_key(&r.backend_id.to_lowercase()))
            .map(|r| r.backend_id.clone())
            .collect();
        Ok(SiteCheck {
            existing,
            reads: Some(Box::new(accounts)),
        })
    }

    async fn create_checked(
        &self,
        requests: Vec<CreateRequest>,
        check: SiteCheck,
    ) -> Vec<BackendResult<BackendResourceInfo>> {
        let preloaded = check
            .reads
            .and_then(|r| r.downcast::<BTreeMap<String, AccountRow>>().ok())
            .map(|b| *b);
        self.create_batch(requests, preloaded).await
    }

    async fn set_limits(&self, resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        let id = resource.backend_id.as_str();
        validate_site_name("account name", id)?;
        let want = self.site_deposit(limits)?;
        let _write = self.writes.lock().await;
        let mut funds = self.funds(Some(id)).await?;
        if !funds.contains_key(id) {
            if !self.accounts(Some(id)).await?.contains_key(id) {
                return Err(permanent(format!("MOAB has no account {id}")));
            }
            tracing::warn!(account = id, "the account has no fund: creating one");
            self.run(self.command("mam-create-fund").args(["-a", id]))
                .await?;
            funds = self.funds(Some(id)).await?;
        }
        let fund = funds
            .get(id)
            .and_then(|f| f.first())
            .cloned()
            .ok_or_else(|| BackendError::transient(format!("no fund listed for {id}")))?;
        self.move_deposit(id, &fund, want).await?;
        let back = self.funds(Some(id)).await?;
        match back.get(id).and_then(|f| f.first()) {
            Some(f) if f.allocated == want as f64 => Ok(()),
            _ => Err(BackendError::transient(format!(
                "MOAB does not show the deposit {want} on the fund of {id}"
            ))),
        }
    }

    async fn delete_resource(&self, resource: &ResourceView) -> BackendResult<()> {
        self.delete_batch(std::slice::from_ref(resource))
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    async fn delete_resources(&self, resources: &[ResourceView]) -> Vec<BackendResult<()>> {
        self.delete_batch(resources).await
    }

    async fn add_users_after_create(
        &self,
        resource: &ResourceView,
        users: &[UserGrant],
    ) -> BackendResult<Vec<String>> {
        self.add_users(resource, users).await
    }
}

#[async_trait]
impl MembershipBackend for MoabBackend {
    async fn pull_resources(
        &self,
        resources: &[ResourceView],
    ) -> BackendResult<BTreeMap<String, BackendResourceInfo>> {
        let (accounts, funds) = tokio::try_join!(self.accounts(None), self.funds(None))?;
        Ok(resources
            .iter()
            .filter_map(|r| {
                accounts.get(&r.backend_id).map(|a| {
                    (
                        r.backend_id.clone(),
                        self.info(&r.backend_id, a, funds.get(&r.backend_id)),
                    )
                })
            })
            .collect())
    }

    async fn add_users(
        &self,
        resource: &ResourceView,
        users: &[UserGrant],
    ) -> BackendResult<Vec<String>> {
        let id = resource.backend_id.as_str();
        validate_site_name("account name", id)?;
        for u in users {
            validate_site_name("username", &u.username)?;
        }
        let _write = self.writes.lock().await;
        let accounts = self.accounts(Some(id)).await?;
        let account = accounts
            .get(id)
            .ok_or_else(|| permanent(format!("MOAB has no account {id}")))?;
        for u in users {
            if !account.users.contains(&u.username) {
                self.run(self.command("mam-modify-account").args([
                    "-a".to_owned(),
                    id.to_owned(),
                    "--add-user".to_owned(),
                    format!("+{}", u.username),
                ]))
                .await?;
            }
        }
        let back = self.accounts(Some(id)).await?;
        let have = back.get(id).map(|a| a.users.clone()).unwrap_or_default();
        let missing: Vec<&str> = users
            .iter()
            .map(|u| u.username.as_str())
            .filter(|u| !have.contains(*u))
            .collect();
        if !missing.is_empty() {
            return Err(BackendError::transient(format!(
                "MOAB does not list {} on account {id} after adding",
                missing.join(", ")
            )));
        }
        Ok(users.iter().map(|u| u.username.clone()).collect())
    }

    async fn remove_users(
        &self,
        resource: &ResourceView,
        usernames: &[String],
    ) -> BackendResult<Vec<String>> {
        let id = resource.backend_id.as_str();
        validate_site_name("account name", id)?;
        for u in usernames {
            validate_site_name("username", u)?;
        }
        let _write = self.writes.lock().await;
        let accounts = self.accounts(Some(id)).await?;
        let Some(account) = accounts.get(id) else {
            return Ok(usernames.to_vec());
        };
        for u in usernames {
            if account.users.contains(u) {
                self.run(
                    self.command("mam-modify-account")
                        .args(["-a", id, "--del-user", u]),
                )
                .await?;
            }
        }
        let back = self.accounts(Some(id)).await?;
        if let Some(a) = back.get(id)
            && let Some(left) = usernames.iter().find(|u| a.users.contains(*u))
        {
            return Err(BackendError::transient(format!(
                "MOAB still lists {left} on account {id} after removing"
            )));
        }
        Ok(usernames.to_vec())
    }

    async fn pause(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.set_active(resource, false).await
    }

    /// MAM has no reduced service level: nothing to do.
    async fn downscale(&self, _resource: &ResourceView) -> BackendResult<bool> {
        Ok(false)
    }

    async fn restore(&self, resource: &ResourceView) -> BackendResult<bool> {
        self.set_active(resource, true).await
    }
}

/// `YYYY-MM-DD HH:MM:SS` on MAM's clock (the host's timezone) for an instant.
fn mam_time(instant: &jiff::Zoned) -> String {
    instant
        .with_time_zone(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[async_trait]
impl UsageBackend for MoabBackend {
    async fn usage_report(
        &self,
        backend_ids: &[String],
        period: &BillingPeriod,
    ) -> BackendResult<BTreeMap<String, UsageReport>> {
        let wanted: BTreeSet<&str> = backend_ids.iter().map(String::as_str).collect();
        if wanted.is_empty() {
            return Ok(BTreeMap::new());
        }
        let start = mam_time(&period.start());
        let last = period
            .end()
            .checked_sub(jiff::SignedDuration::from_secs(1))
            .map_err(|e| permanent(format!("billing period: {e}")))?;
        let end = mam_time(&last);
        let out = self
            .run(self.command("mam-list-usagerecords").args([
                "--raw",
                "--quiet",
                "--show",
                "Account,User,Charge",
                "-s",
                &start,
                "-e",
                &end,
            ]))
            .await?;
        let mut report: BTreeMap<String, UsageReport> = BTreeMap::new();
        for row in parsable::rows(&out) {
            let account = row.get(0);
            if !wanted.contains(account) {
                continue;
            }
            let Ok(charge) = row.get(2).parse::<f64>() else {
                tracing::warn!(line = row.line, "unparsable usage record");
                continue;
            };
            let entry = report.entry(account.to_owned()).or_default();
            *entry.total.entry(DEPOSIT.to_owned()).or_default() += charge;
            *entry
                .per_user
                .entry(row.get(1).to_owned())
                .or_default()
                .entry(DEPOSIT.to_owned())
                .or_default() += charge;
        }
        Ok(report)
    }
}
