//! `backend_settings` of a SLURM offering, with the defaults of the Python agent.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use backend_api::BackendError;
use backend_api::names::validate_site_name;
use backend_api::spec::{Kind, Setting, SettingIssue};

/// Which `DefaultAccount=` a new user association gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAccountPolicy {
    /// `DefaultAccount=<default_account>`.
    #[default]
    Common,
    /// `DefaultAccount=<the allocation account>`.
    Individual,
    /// No `DefaultAccount=` token.
    None,
}

/// The SLURM backend settings (`backend_settings:` of an offering). Unknown keys are ignored
/// here and warned about by `validate-config`; [`SETTINGS`] documents every field (a test keeps
/// the two in step).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct SlurmSettings {
    /// `DefaultAccount=` for new users (policy `common`) and fallback root of the hierarchy.
    pub default_account: Option<String>,
    /// Parent of customer accounts; defaults to `default_account`, then `root`.
    pub root_account: Option<String>,
    pub default_account_policy: DefaultAccountPolicy,
    pub customer_prefix: String,
    pub project_prefix: String,
    pub allocation_prefix: String,
    /// Flat mode: project accounts go directly under this account, no customer tier.
    pub parent_account: Option<String>,
    /// Adds `cluster=<name>` (sacctmgr) / `--cluster=<name>` (sacct, scancel) to every command.
    pub cluster_name: Option<String>,
    /// Only `cli` is implemented here.
    pub execution_mode: String,
    /// Directory of sacctmgr, sacct, scancel, sinfo; empty = look them up on `PATH`.
    pub slurm_bin_path: String,
    pub default_partition: Option<String>,
    pub enforce_offering_partitions: bool,
    pub qos_default: String,
    pub qos_downscaled: Option<String>,
    pub qos_paused: Option<String>,
    pub qos_enforcement_enabled: bool,
    pub enforce_offering_qos: Option<bool>,
    /// Zero the limits instead of removing the account on termination.
    pub soft_delete: bool,
    pub enable_user_homedir_account_creation: bool,
    pub default_homedir_umask: String,
    pub homedir_base_path: Option<String>,
    /// Path of the helper that creates home directories (not configurable upstream).
    pub mkhomedir_helper_path: String,
    /// Seconds before a SLURM command is killed (not configurable upstream).
    pub command_timeout_seconds: u64,
    /// Create the missing accounts and user associations of a batch with one `sacctmgr load`
    /// (extension; needs `cluster_name`). `false` keeps one `add` call per group.
    pub batch_load: bool,
    /// At most this many accounts per SLURM write that lists accounts (`add`/`modify`/
    /// `remove`): slurmdbd rewrites its association tree in one transaction per call, and a
    /// huge one holds it for minutes (extension).
    pub write_chunk_size: usize,
    /// At most this many rows (accounts, user associations, new users) per `sacctmgr load`
    /// (extension).
    pub load_chunk_rows: usize,
    /// A `sacctmgr load` carries fewer than `load_chunk_rows` rows when the last one showed
    /// that many would take longer than this (rows cost more on big clusters) (extension).
    pub write_chunk_seconds: u64,
    /// Directory of the lock file that keeps agents of other processes on this machine (one
    /// systemd unit per mode) from writing to SLURM accounting at once (extension). Empty: lock
    /// within this process only.
    pub write_lock_dir: String,
}

impl Default for SlurmSettings {
    fn default() -> Self {
        SlurmSettings {
            default_account: None,
            root_account: None,
            default_account_policy: DefaultAccountPolicy::Common,
            customer_prefix: String::new(),
            project_prefix: String::new(),
            allocation_prefix: String::new(),
            parent_account: None,
            cluster_name: None,
            execution_mode: "cli".to_owned(),
            slurm_bin_path: "/usr/bin".to_owned(),
            default_partition: None,
            enforce_offering_partitions: false,
            qos_default: "normal".to_owned(),
            qos_downscaled: None,
            qos_paused: None,
            qos_enforcement_enabled: false,
            enforce_offering_qos: None,
            soft_delete: false,
            enable_user_homedir_account_creation: true,
            default_homedir_umask: "0077".to_owned(),
            homedir_base_path: None,
            mkhomedir_helper_path: "/sbin/mkhomedir_helper".to_owned(),
            command_timeout_seconds: 120,
            batch_load: true,
            write_chunk_size: 1000,
            load_chunk_rows: 5000,
            write_chunk_seconds: 30,
            write_lock_dir: default_lock_dir(),
        }
    }
}

/// `/run/lock` where it exists (shared by systemd units, unlike a private `/tmp`), else the
/// temporary directory.
pub fn default_lock_dir() -> String {
    let run_lock = std::path::Path::new("/run/lock");
    if run_lock.is_dir() {
        run_lock.display().to_string()
    } else {
        std::env::temp_dir().display().to_string()
    }
}

/// Every key of [`SlurmSettings`], documented: the source of `docs/backends/slurm.md`'s table,
/// the catalogue's JSON Schema and `validate-config`'s unknown-key check.
pub const SETTINGS: &[Setting] = &[
    Setting::new(
        "default_account",
        Kind::Name,
        "required (policy `common`)",
        "`DefaultAccount=` of new users; fallback root",
    ),
    Setting::new(
        "root_account",
        Kind::Name,
        "`default_account`, then `root`",
        "parent of customer accounts",
    ),
    Setting::new(
        "default_account_policy",
        Kind::Enum(&["common", "individual", "none"]),
        "`common`",
        "`DefaultAccount=` of new users: `default_account`, the allocation, or none",
    ),
    Setting::new(
        "customer_prefix",
        Kind::Prefix,
        "`\"\"`",
        "prefix of customer account names",
    ),
    Setting::new(
        "project_prefix",
        Kind::Prefix,
        "`\"\"`",
        "prefix of project account names",
    ),
    Setting::new(
        "allocation_prefix",
        Kind::Prefix,
        "`\"\"`",
        "prefix of allocation account names",
    ),
    Setting::new(
        "parent_account",
        Kind::Name,
        "none",
        "flat tree under this account (no customer tier)",
    ),
    Setting::new(
        "cluster_name",
        Kind::Name,
        "none",
        "`cluster=` on every command; `diagnostics` fails when it differs from the offering's `backend_id`",
    ),
    Setting::new(
        "execution_mode",
        Kind::String,
        "`cli`",
        "only `cli` is implemented; `rest` (slurmrestd) is refused",
    ),
    Setting::new(
        "slurm_bin_path",
        Kind::Path,
        "`/usr/bin`",
        "directory of `sacctmgr`, `sacct`, `scancel`; `\"\"` = `PATH`",
    ),
    Setting::new(
        "default_partition",
        Kind::Name,
        "none",
        "`Partition=` of new associations",
    ),
    Setting::new(
        "enforce_offering_partitions",
        Kind::Bool,
        "false",
        "use the offering's partitions for new associations",
    ),
    Setting::new("qos_default", Kind::Name, "`normal`", "QoS set by restore"),
    Setting::new("qos_paused", Kind::Name, "none", "QoS set by pause"),
    Setting::new("qos_downscaled", Kind::Name, "none", "QoS set by downscale"),
    Setting::new(
        "qos_enforcement_enabled",
        Kind::Bool,
        "false",
        "per-association QoS grants",
    ),
    Setting::new(
        "enforce_offering_qos",
        Kind::Bool,
        "none",
        "with `qos_enforcement_enabled`: use the offering's QoS; pause by `GrpSubmitJobs=0`",
    ),
    Setting::new(
        "soft_delete",
        Kind::Bool,
        "false",
        "terminate zeroes the limits instead of removing the account",
    ),
    Setting::new(
        "enable_user_homedir_account_creation",
        Kind::Bool,
        "true",
        "`mkhomedir_helper <user> <umask>` for users without a home",
    ),
    Setting::new(
        "default_homedir_umask",
        Kind::String,
        "`0077`",
        "umask of new homes (octal)",
    ),
    Setting::new(
        "homedir_base_path",
        Kind::Path,
        "none",
        "where homes are looked for (else the passwd entry)",
    ),
    Setting::new(
        "mkhomedir_helper_path",
        Kind::Path,
        "`/sbin/mkhomedir_helper`",
        "ours: the home-directory helper",
    ),
    Setting::new(
        "command_timeout_seconds",
        Kind::Integer,
        "120",
        "ours: a SLURM command running longer is killed with its process group",
    ),
    Setting::new(
        "batch_load",
        Kind::Bool,
        "true",
        "ours: `sacctmgr load` for a batch of creates and for a membership cycle's new associations (needs `cluster_name`)",
    ),
    Setting::new(
        "write_chunk_size",
        Kind::Integer,
        "1000",
        "ours: at most this many accounts per SLURM write that lists accounts (`add`/`modify`/`remove`), so no single slurmdbd transaction runs for minutes",
    ),
    Setting::new(
        "load_chunk_rows",
        Kind::Integer,
        "5000",
        "ours: at most this many rows (accounts, user associations, new users' default-account lines) per `sacctmgr load` of creates or of a membership cycle",
    ),
    Setting::new(
        "write_chunk_seconds",
        Kind::Integer,
        "30",
        "ours: the next `sacctmgr load` carries fewer rows than `load_chunk_rows` when the last one showed a chunk that size would hold slurmdbd longer than this (its tree rewrite costs more per row on a big cluster)",
    ),
    Setting::new(
        "write_lock_dir",
        Kind::Path,
        "`/run/lock` (else the temp dir)",
        "ours: where `waldur-site-agent-slurm.lock` lives, the lock that keeps agents of other processes (one systemd unit per mode) and your own scripts (`flock /run/lock/waldur-site-agent-slurm.lock sacctmgr …`) from writing to SLURM accounting at once (slurmdbd can corrupt its tree otherwise); `\"\"` = lock within the process only",
    ),
];

impl SlurmSettings {
    /// Parse and validate an offering's `backend_settings`.
    pub fn from_map(map: &Map<String, Value>) -> Result<Self, BackendError> {
        Self::parse(map).map_err(|issues| {
            let text: Vec<String> = issues
                .iter()
                .map(|i| format!("slurm {}: {}", i.path, i.reason))
                .collect();
            BackendError::Config(text.join("; "))
        })
    }

    /// Parse and validate, every problem with its key path (`validate-config` shows them all).
    pub fn parse(map: &Map<String, Value>) -> Result<Self, Vec<SettingIssue>> {
        let settings: SlurmSettings =
            serde_json::from_value(Value::Object(map.clone())).map_err(|e| {
                vec![SettingIssue {
                    path: "backend_settings".to_owned(),
                    reason: format!("not valid for slurm: {e}"),
                }]
            })?;
        let issues = settings.issues();
        if issues.is_empty() {
            Ok(settings)
        } else {
            Err(issues)
        }
    }

    fn issues(&self) -> Vec<SettingIssue> {
        let mut issues = Vec::new();
        let mut issue = |key: &str, reason: String| issues.push(SettingIssue::setting(key, reason));
        if self.execution_mode != "cli" {
            issue(
                "execution_mode",
                format!(
                    "'{}' is not supported by this agent (slurmrestd is not implemented; any rest_api settings are unused); use 'cli'",
                    self.execution_mode.escape_default()
                ),
            );
        }
        if self.default_account.is_none()
            && self.default_account_policy == DefaultAccountPolicy::Common
        {
            issue(
                "default_account",
                "is required (or set default_account_policy: none)".to_owned(),
            );
        }
        let named = [
            ("default_account", self.default_account.as_deref()),
            ("root_account", self.root_account.as_deref()),
            ("parent_account", self.parent_account.as_deref()),
            ("cluster_name", self.cluster_name.as_deref()),
            ("default_partition", self.default_partition.as_deref()),
            ("qos_default", Some(self.qos_default.as_str())),
            ("qos_paused", self.qos_paused.as_deref()),
            ("qos_downscaled", self.qos_downscaled.as_deref()),
        ];
        for (key, value) in named {
            if let Some(v) = value
                && let Err(e) = validate_site_name("setting value", v)
            {
                issue(key, e.to_string());
            }
        }
        // Prefixes become part of account names; an empty prefix is fine.
        for (key, value) in [
            ("customer_prefix", &self.customer_prefix),
            ("project_prefix", &self.project_prefix),
            ("allocation_prefix", &self.allocation_prefix),
        ] {
            if !value.is_empty()
                && let Err(e) = validate_site_name("prefix", value)
            {
                issue(key, e.to_string());
            }
        }
        if u32::from_str_radix(self.default_homedir_umask.trim(), 8).is_err()
            || self.default_homedir_umask.trim().len() > 4
        {
            issue(
                "default_homedir_umask",
                format!(
                    "'{}' is not an octal umask like 0077",
                    self.default_homedir_umask
                ),
            );
        }
        if self.write_chunk_size == 0 {
            issue("write_chunk_size", "must be at least 1".to_owned());
        }
        if self.load_chunk_rows == 0 {
            issue("load_chunk_rows", "must be at least 1".to_owned());
        }
        if self.write_chunk_seconds == 0 {
            issue("write_chunk_seconds", "must be at least 1".to_owned());
        }
        if self.command_timeout_seconds == 0 {
            issue("command_timeout_seconds", "must be at least 1".to_owned());
        }
        if self.qos_enforcement_enabled
            && self.enforce_offering_qos == Some(true)
            && (self.qos_paused.is_some() || self.qos_downscaled.is_some())
        {
            issue(
                "qos_paused",
                "qos_paused/qos_downscaled cannot be combined with qos_enforcement_enabled and \
                 enforce_offering_qos: true (pausing uses GrpSubmitJobs then)"
                    .to_owned(),
            );
        }
        issues
    }

    /// Parent of customer accounts (`root_account` → `default_account` → `root`).
    pub fn root(&self) -> &str {
        self.root_account
            .as_deref()
            .or(self.default_account.as_deref())
            .unwrap_or("root")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(json: Value) -> Map<String, Value> {
        match json {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn defaults_follow_the_python_agent() {
        let s = SlurmSettings::from_map(&map(serde_json::json!({
            "default_account": "root",
            "customer_prefix": "hpc_",
            "project_prefix": "hpc_",
            "allocation_prefix": "hpc_",
            "unknown_key": 1
        })))
        .expect("valid settings");
        assert_eq!(s.qos_default, "normal");
        assert_eq!(s.slurm_bin_path, "/usr/bin");
        assert_eq!(s.default_account_policy, DefaultAccountPolicy::Common);
        assert!(s.enable_user_homedir_account_creation);
        assert_eq!(s.default_homedir_umask, "0077");
        assert_eq!(s.root(), "root");
    }

    #[test]
    fn every_field_is_documented_and_nothing_else() {
        let mut fields: Vec<String> = match serde_json::to_value(SlurmSettings::default()) {
            Ok(Value::Object(m)) => m.keys().cloned().collect(),
            other => panic!("settings serialize to an object, got {other:?}"),
        };
        fields.sort();
        let mut documented: Vec<String> = SETTINGS.iter().map(|s| s.key.to_owned()).collect();
        documented.sort();
        assert_eq!(fields, documented, "SlurmSettings fields vs SETTINGS");
    }

    #[test]
    fn execution_mode_rest_is_an_error_at_its_key() {
        let issues = SlurmSettings::parse(&map(serde_json::json!({
            "default_account": "root", "execution_mode": "rest",
            "rest_api": {"url": "http://slurmrestd:6820"}
        })))
        .expect_err("rest is refused");
        assert_eq!(issues[0].path, "backend_settings.execution_mode");
    }

    #[test]
    fn bad_settings_are_config_errors_naming_the_key() {
        for (json, needle) in [
            (
                serde_json::json!({"default_account": "root", "execution_mode": "rest"}),
                "execution_mode",
            ),
            (serde_json::json!({}), "default_account"),
            (
                serde_json::json!({"default_account": "root", "cluster_name": "a,b"}),
                "cluster_name",
            ),
            (
                serde_json::json!({"default_account": "root", "default_account_policy": "weird"}),
                "weird",
            ),
            (
                serde_json::json!({"default_account": "root", "default_homedir_umask": "99"}),
                "umask",
            ),
        ] {
            let err = SlurmSettings::from_map(&map(json)).expect_err(needle);
            assert!(matches!(err, BackendError::Config(_)), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}
