//! `backend_settings` of a MOAB offering, with the defaults of the Python agent.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use backend_api::BackendError;
use backend_api::spec::{Kind, Setting, SettingIssue};

/// The MOAB backend settings. Unknown keys are ignored here and warned about by
/// `validate-config`; [`SETTINGS`] documents every field (a test keeps the two in step).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct MoabSettings {
    pub project_prefix: String,
    pub allocation_prefix: String,
    /// Directory of the `mam-*` programs; empty = look them up on `PATH`.
    pub mam_bin_path: String,
    /// Seconds before a `mam-*` command is killed (not configurable upstream).
    pub command_timeout_seconds: u64,
}

impl Default for MoabSettings {
    fn default() -> Self {
        MoabSettings {
            project_prefix: String::new(),
            allocation_prefix: String::new(),
            mam_bin_path: String::new(),
            command_timeout_seconds: 60,
        }
    }
}

/// Every key of [`MoabSettings`].
pub const SETTINGS: &[Setting] = &[
    Setting::new(
        "project_prefix",
        Kind::Prefix,
        "`\"\"`",
        "project accounts are `lower(project_prefix + project slug)`",
    ),
    Setting::new(
        "allocation_prefix",
        Kind::Prefix,
        "`\"\"`",
        "allocation accounts (backend ids) are `lower(allocation_prefix + resource slug)`",
    ),
    Setting::new(
        "mam_bin_path",
        Kind::Path,
        "`\"\"` (look up on `PATH`)",
        "directory of the `mam-*` programs",
    ),
    Setting::new(
        "command_timeout_seconds",
        Kind::Integer,
        "60",
        "a `mam-*` call running longer is killed (transient error)",
    ),
];

impl MoabSettings {
    /// [`MoabSettings::parse`] with the problems joined into one error.
    pub fn from_map(map: &Map<String, Value>) -> Result<Self, BackendError> {
        Self::parse(map).map_err(|issues| {
            let text: Vec<String> = issues
                .iter()
                .map(|i| format!("moab {}: {}", i.path, i.reason))
                .collect();
            BackendError::Config(text.join("; "))
        })
    }

    /// Parse and validate, every problem with its key path.
    pub fn parse(map: &Map<String, Value>) -> Result<Self, Vec<SettingIssue>> {
        let settings: MoabSettings =
            serde_json::from_value(Value::Object(map.clone())).map_err(|e| {
                vec![SettingIssue {
                    path: "backend_settings".to_owned(),
                    reason: format!("not valid for moab: {e}"),
                }]
            })?;
        let mut issues = Vec::new();
        for (key, value) in [
            ("project_prefix", &settings.project_prefix),
            ("allocation_prefix", &settings.allocation_prefix),
        ] {
            if !value.is_empty()
                && let Err(reason) = agent_config::names::check_prefix(value)
            {
                issues.push(SettingIssue::setting(key, reason));
            }
        }
        if settings.command_timeout_seconds == 0 || settings.command_timeout_seconds > 3600 {
            issues.push(SettingIssue::setting(
                "command_timeout_seconds",
                format!(
                    "must be between 1 and 3600, found {}",
                    settings.command_timeout_seconds
                ),
            ));
        }
        if issues.is_empty() {
            Ok(settings)
        } else {
            Err(issues)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_settings_match_the_struct() {
        let Ok(Value::Object(fields)) = serde_json::to_value(MoabSettings::default()) else {
            panic!("settings serialize to an object");
        };
        let mut fields: Vec<&str> = fields.keys().map(String::as_str).collect();
        let mut documented: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        fields.sort_unstable();
        documented.sort_unstable();
        assert_eq!(fields, documented);
    }

    #[test]
    fn every_problem_is_reported() {
        let map = serde_json::json!({
            "project_prefix": "a b",
            "allocation_prefix": "x,y",
            "command_timeout_seconds": 0,
        });
        let Value::Object(map) = map else {
            unreachable!()
        };
        let issues = MoabSettings::parse(&map).expect_err("refused");
        assert_eq!(issues.len(), 3, "{issues:?}");
    }
}
