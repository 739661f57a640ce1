//! `backend_settings` of a SLURM offering, with the defaults of the Python agent.

use serde::Deserialize;
use serde_json::{Map, Value};

use backend_api::BackendError;
use backend_api::names::validate_site_name;

/// Which `DefaultAccount=` a new user association gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
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

/// The SLURM backend settings (`backend_settings:` of an offering). Unknown keys are ignored.
#[derive(Clone, Debug, Deserialize)]
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
    /// Directory of the lock file that keeps agents of other processes on this machine (one
    /// systemd unit per mode) from writing to the same cluster at once (extension). Empty: lock
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
            write_lock_dir: default_lock_dir(),
        }
    }
}

/// `/run/lock` where it exists (shared by systemd units, unlike a private `/tmp`), else the
/// temporary directory.
fn default_lock_dir() -> String {
    let run_lock = std::path::Path::new("/run/lock");
    if run_lock.is_dir() {
        run_lock.display().to_string()
    } else {
        std::env::temp_dir().display().to_string()
    }
}

impl SlurmSettings {
    /// Parse and validate an offering's `backend_settings`.
    pub fn from_map(map: &Map<String, Value>) -> Result<Self, BackendError> {
        let settings: SlurmSettings = serde_json::from_value(Value::Object(map.clone()))
            .map_err(|e| BackendError::Config(format!("slurm backend_settings: {e}")))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), BackendError> {
        let config = |msg: String| Err(BackendError::Config(msg));
        if self.execution_mode != "cli" {
            return config(format!(
                "slurm backend_settings.execution_mode '{}' is not supported by this agent; use 'cli'",
                self.execution_mode
            ));
        }
        if self.default_account.is_none()
            && self.default_account_policy == DefaultAccountPolicy::Common
        {
            return config(
                "slurm backend_settings.default_account is required (or set default_account_policy: none)"
                    .to_owned(),
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
            if let Some(v) = value {
                validate_site_name("setting value", v).map_err(|e| {
                    BackendError::Config(format!("slurm backend_settings.{key}: {e}"))
                })?;
            }
        }
        // Prefixes become part of account names; an empty prefix is fine.
        for (key, value) in [
            ("customer_prefix", &self.customer_prefix),
            ("project_prefix", &self.project_prefix),
            ("allocation_prefix", &self.allocation_prefix),
        ] {
            if !value.is_empty() {
                validate_site_name("prefix", value).map_err(|e| {
                    BackendError::Config(format!("slurm backend_settings.{key}: {e}"))
                })?;
            }
        }
        if u32::from_str_radix(self.default_homedir_umask.trim(), 8).is_err()
            || self.default_homedir_umask.trim().len() > 4
        {
            return config(format!(
                "slurm backend_settings.default_homedir_umask '{}' is not an octal umask like 0077",
                self.default_homedir_umask
            ));
        }
        if self.qos_enforcement_enabled
            && self.enforce_offering_qos == Some(true)
            && (self.qos_paused.is_some() || self.qos_downscaled.is_some())
        {
            return config(
                "slurm backend_settings: qos_paused/qos_downscaled cannot be combined with \
                 qos_enforcement_enabled and enforce_offering_qos: true (pausing uses GrpSubmitJobs then)"
                    .to_owned(),
            );
        }
        Ok(())
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
