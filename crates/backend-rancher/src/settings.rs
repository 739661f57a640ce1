//! `backend_settings` of a `rancher` offering (the upstream plugin's keys and defaults, plus
//! timeouts and retries), parsed once at start-up with every problem reported by its key path,
//! and the component → ResourceQuota key mapping of `backend_components`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use agent_config::{BackendComponent, Secret};
use backend_api::spec::{Kind, Setting, SettingIssue};
use indexmap::IndexMap;
use keycloak_admin::KeycloakConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

/// Parsed `backend_settings` of the `rancher` backend.
#[derive(Clone, Debug)]
pub struct RancherSettings {
    /// Rancher base URL (the API is `<backend_url>/v3`).
    pub backend_url: Url,
    /// API key access key (`token-xxxxx`).
    pub access_key: String,
    /// API key secret key.
    pub secret_key: Secret,
    pub cluster_id: String,
    pub verify_tls: bool,
    pub ca_bundle: Option<PathBuf>,
    pub project_prefix: String,
    /// Rancher role template bound to the Keycloak group.
    pub default_role: String,
    /// Waldur usernames are Keycloak user ids (looked up by id, then by username).
    pub keycloak_use_user_id: bool,
    pub namespace_labels: BTreeMap<String, String>,
    /// `Some` when `keycloak_enabled`.
    pub keycloak: Option<KeycloakConfig>,
    pub timeout: Duration,
    pub max_retries: u32,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
struct RawSettings {
    backend_url: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
    cluster_id: Option<String>,
    verify_cert: Option<Value>,
    project_prefix: Option<String>,
    default_role: Option<String>,
    keycloak_use_user_id: Option<bool>,
    namespace_labels: Option<BTreeMap<String, String>>,
    keycloak_enabled: Option<bool>,
    keycloak: Option<Value>,
    timeout_seconds: Option<f64>,
    max_retries: Option<u32>,
}

/// Every key of `backend_settings` for `rancher`.
pub const SETTINGS: &[Setting] = &[
    Setting::new(
        "backend_url",
        Kind::Url,
        "`https://localhost`",
        "Rancher server URL, without `/v3`",
    ),
    Setting::new(
        "username",
        Kind::String,
        "required",
        "Rancher API key: access key (`token-xxxxx`; an unscoped key)",
    ),
    Setting::new(
        "password",
        Kind::String,
        "required",
        "Rancher API key: secret key",
    )
    .secret(),
    Setting::new(
        "cluster_id",
        Kind::String,
        "required",
        "the cluster's id (`c-m-1234abcd`, not a project id `c-…:p-…`)",
    ),
    Setting::new(
        "verify_cert",
        Kind::BoolOrPath,
        "true",
        "`true`/`false`, or the path of a PEM CA bundle to verify Rancher with",
    ),
    Setting::new(
        "project_prefix",
        Kind::Prefix,
        "`waldur-`",
        "prefix of the Rancher project (and namespace) name, before the resource slug",
    ),
    Setting::new(
        "default_role",
        Kind::Name,
        "`workloads-manage`",
        "Rancher project role template bound to the resource's Keycloak group",
    ),
    Setting::new(
        "keycloak_use_user_id",
        Kind::Bool,
        "true",
        "Waldur usernames are Keycloak user ids (looked up by id, then by username; members are reported by id); `false`: by username",
    ),
    Setting::new(
        "namespace_labels",
        Kind::Object,
        "`{}`",
        "extra labels of every namespace the agent creates (e.g. `gpu-pool: h100-2x` for GPU-pool steering)",
    ),
    Setting::new(
        "keycloak_enabled",
        Kind::Bool,
        "false",
        "manage access through Keycloak groups (without it the backend does no membership sync)",
    ),
    Setting::new(
        "keycloak",
        Kind::Object,
        "none",
        "the Keycloak admin login: `keycloak_url`, `keycloak_realm`, `keycloak_user_realm`, `client_id`, `keycloak_username` + `keycloak_password` (password grant) or `keycloak_client_secret` alone (client credentials), `keycloak_ssl_verify`. Holds secrets: `keycloak_password` and `keycloak_client_secret` are masked in output (by their names; the URL, realm and user stay readable).",
    )
    .secret(),
    Setting::new(
        "timeout_seconds",
        Kind::Number,
        "30",
        "timeout of every Rancher and Keycloak request",
    ),
    Setting::new(
        "max_retries",
        Kind::Integer,
        "3",
        "retries of idempotent requests after transient failures (≤ 10)",
    ),
];

/// The keys [`RancherSettings::parse`] reads.
pub fn read_keys() -> Vec<String> {
    match serde_json::to_value(RawSettings::default()) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn non_blank(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// A label key or value Kubernetes accepts (the name part of a key, a value).
fn valid_label_part(s: &str, max: usize) -> bool {
    s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
}

fn valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    !name.is_empty()
        && valid_label_part(name, 63)
        && prefix.is_none_or(|p| {
            !p.is_empty()
                && p.len() <= 253
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
        })
}

impl RancherSettings {
    /// Parse `backend_settings`, returning every problem with its key path.
    pub fn parse(settings: &Map<String, Value>) -> Result<Self, Vec<SettingIssue>> {
        let mut issues = Vec::new();
        let raw: RawSettings = match serde_json::from_value(Value::Object(settings.clone())) {
            Ok(r) => r,
            Err(e) => {
                return Err(vec![SettingIssue {
                    path: "backend_settings".into(),
                    reason: e.to_string(),
                }]);
            }
        };
        let url_text = non_blank(raw.backend_url).unwrap_or_else(|| "https://localhost".to_owned());
        let backend_url = match Url::parse(url_text.trim_end_matches('/')) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {
                if u.path().trim_end_matches('/').ends_with("/v3") {
                    issues.push(SettingIssue::setting(
                        "backend_url",
                        format!("'{url_text}' ends with /v3; give the server URL without it"),
                    ));
                }
                Some(u)
            }
            _ => {
                issues.push(SettingIssue::setting(
                    "backend_url",
                    format!("'{url_text}' must be an http:// or https:// URL"),
                ));
                None
            }
        };
        let access_key = non_blank(raw.username).unwrap_or_default();
        if access_key.is_empty() {
            issues.push(SettingIssue::setting(
                "username",
                "is required: the access key of a Rancher API key (token-xxxxx)",
            ));
        }
        let secret_key = raw.password.unwrap_or_else(|| Secret::new(""));
        if secret_key.is_empty() {
            issues.push(SettingIssue::setting(
                "password",
                "is required: the secret key of the Rancher API key",
            ));
        }
        let cluster_id = non_blank(raw.cluster_id).unwrap_or_default();
        if cluster_id.is_empty() {
            issues.push(SettingIssue::setting(
                "cluster_id",
                "is required: the cluster's id, e.g. c-m-1234abcd",
            ));
        } else if cluster_id.contains(':') {
            issues.push(SettingIssue::setting(
                "cluster_id",
                format!(
                    "'{cluster_id}' is a project id; give the cluster's id (the part before ':')"
                ),
            ));
        } else if !cluster_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            issues.push(SettingIssue::setting(
                "cluster_id",
                format!("'{cluster_id}' is not a Rancher cluster id"),
            ));
        }
        let (verify_tls, ca_bundle) = match raw.verify_cert {
            None | Some(Value::Null) | Some(Value::Bool(true)) => (true, None),
            Some(Value::Bool(false)) => (false, None),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "" | "true" | "yes" | "1" => (true, None),
                "false" | "no" | "0" => (false, None),
                _ => (true, Some(PathBuf::from(s.trim()))),
            },
            Some(other) => {
                issues.push(SettingIssue::setting(
                    "verify_cert",
                    format!("must be true, false or a CA bundle path, got {other}"),
                ));
                (true, None)
            }
        };
        let project_prefix = raw
            .project_prefix
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| "waldur-".to_owned());
        if !project_prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            issues.push(SettingIssue::setting(
                "project_prefix",
                format!(
                    "'{project_prefix}' may only hold lower-case letters, digits and '-' (it starts namespace names)"
                ),
            ));
        }
        let default_role =
            non_blank(raw.default_role).unwrap_or_else(|| "workloads-manage".to_owned());
        if !default_role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            issues.push(SettingIssue::setting(
                "default_role",
                format!("'{default_role}' is not a Rancher role template id"),
            ));
        }
        let namespace_labels = raw.namespace_labels.unwrap_or_default();
        for (k, v) in &namespace_labels {
            if !valid_label_key(k) {
                issues.push(SettingIssue::setting(
                    &format!("namespace_labels.{k}"),
                    "is not a Kubernetes label key",
                ));
            }
            if !valid_label_part(v, 63) {
                issues.push(SettingIssue::setting(
                    &format!("namespace_labels.{k}"),
                    format!("'{v}' is not a Kubernetes label value"),
                ));
            }
        }
        let keycloak = if raw.keycloak_enabled.unwrap_or(false) {
            match KeycloakConfig::parse("keycloak", raw.keycloak.as_ref().unwrap_or(&Value::Null)) {
                Ok(c) => Some(c),
                Err(more) => {
                    issues.extend(more);
                    None
                }
            }
        } else {
            None
        };
        let timeout = match raw.timeout_seconds {
            None => Duration::from_secs(30),
            Some(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Duration::from_secs_f64(s),
            Some(s) => {
                issues.push(SettingIssue::setting(
                    "timeout_seconds",
                    format!("{s} must be between 0 and 3600"),
                ));
                Duration::from_secs(30)
            }
        };
        let max_retries = raw.max_retries.unwrap_or(3);
        if max_retries > 10 {
            issues.push(SettingIssue::setting(
                "max_retries",
                format!("{max_retries} is more than 10"),
            ));
        }
        match backend_url {
            Some(backend_url) if issues.is_empty() => Ok(RancherSettings {
                backend_url,
                access_key,
                secret_key,
                cluster_id,
                verify_tls,
                ca_bundle,
                project_prefix,
                default_role,
                keycloak_use_user_id: raw.keycloak_use_user_id.unwrap_or(true),
                namespace_labels,
                keycloak,
                timeout,
                max_retries,
            }),
            _ => Err(issues),
        }
    }
}

/// How a component's limit is written into the ResourceQuota's `spec.hard`.
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaKey {
    /// `limits.cpu`, `limits.memory`, `requests.storage`, `requests.nvidia.com/gpu`,
    /// `requests.<k8s_resource>`.
    pub hard: String,
    pub unit: QuotaUnit,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QuotaUnit {
    /// Cores, written in millicores (`4000m`).
    Cpu,
    /// GiB (Waldur GB), written in MiB (`16384Mi`).
    Memory,
    /// A plain count (GPUs, custom resources).
    Count,
}

/// The component mapping of the seed: `type` cpu → `limits.cpu`, ram → `limits.memory`,
/// storage → `requests.storage`, gpu → `requests.nvidia.com/gpu`; a `k8s_resource` gives
/// `requests.<k8s_resource>`. A component without `type` takes its key as type (`memory` =
/// `ram`). Components without a mapping (`pods`, ...) get no quota (as upstream).
pub fn quota_keys(
    components: &IndexMap<String, BackendComponent>,
) -> Result<IndexMap<String, QuotaKey>, Vec<SettingIssue>> {
    let mut out = IndexMap::new();
    let mut issues = Vec::new();
    for (key, c) in components {
        let kind = c
            .extra
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(key.as_str())
            .to_ascii_lowercase();
        let custom = match c.extra.get("k8s_resource") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(other) => {
                issues.push(SettingIssue::component(
                    &format!("{key}.k8s_resource"),
                    format!("must be a resource name such as nvidia.com/gpu-h100, got {other}"),
                ));
                continue;
            }
        };
        let mapped = match (custom, kind.as_str()) {
            (Some(r), "cpu") => Some((format!("requests.{r}"), QuotaUnit::Cpu)),
            (Some(r), "ram" | "memory" | "storage") => {
                Some((format!("requests.{r}"), QuotaUnit::Memory))
            }
            (Some(r), _) => Some((format!("requests.{r}"), QuotaUnit::Count)),
            (None, "cpu") => Some(("limits.cpu".to_owned(), QuotaUnit::Cpu)),
            (None, "ram" | "memory") => Some(("limits.memory".to_owned(), QuotaUnit::Memory)),
            (None, "storage") => Some(("requests.storage".to_owned(), QuotaUnit::Memory)),
            (None, "gpu") => Some(("requests.nvidia.com/gpu".to_owned(), QuotaUnit::Count)),
            (None, _) => None,
        };
        if let Some((hard, unit)) = mapped {
            if let Some(other) = out
                .iter()
                .find(|(_, q): &(&String, &QuotaKey)| q.hard == hard)
                .map(|(k, _)| k.clone())
            {
                issues.push(SettingIssue::component(
                    key,
                    format!("writes the quota key {hard}, as {other} does"),
                ));
                continue;
            }
            out.insert(key.clone(), QuotaKey { hard, unit });
        }
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn read_keys_match_the_catalogue() {
        let mut a = read_keys();
        let mut b: Vec<String> = SETTINGS.iter().map(|s| s.key.to_owned()).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn seed_settings_parse_and_problems_are_named() {
        let s = RancherSettings::parse(&map(json!({
            "backend_url": "https://rancher.example.com", "username": "token-abc", "password": "s",
            "cluster_id": "c-m-1234abcd", "verify_cert": true, "project_prefix": "waldur-",
            "default_role": "workloads-manage", "keycloak_enabled": true, "keycloak_use_user_id": true,
            "namespace_labels": {"gpu-pool": "h100-2x"},
            "keycloak": {"keycloak_url": "https://kc/auth/", "keycloak_realm": "waldur",
                "keycloak_user_realm": "master", "keycloak_username": "admin", "keycloak_password": "p",
                "keycloak_ssl_verify": true, "keycloak_sync_frequency": 15}
        })))
        .expect("parses");
        assert!(s.keycloak.is_some());
        assert_eq!(s.namespace_labels["gpu-pool"], "h100-2x");
        let issues = RancherSettings::parse(&map(json!({
            "backend_url": "https://r/v3", "cluster_id": "c-1:p-2",
            "namespace_labels": {"bad key!": "x"}, "keycloak_enabled": true, "keycloak": {}
        })))
        .expect_err("problems");
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        for want in [
            "backend_settings.backend_url",
            "backend_settings.username",
            "backend_settings.password",
            "backend_settings.cluster_id",
            "backend_settings.namespace_labels.bad key!",
            "backend_settings.keycloak.keycloak_username",
        ] {
            assert!(paths.contains(&want), "{want} in {paths:?}");
        }
        assert!(!format!("{s:?}").contains("\"s\""));
    }

    #[test]
    fn component_mapping_follows_the_seed() {
        let comp = |extra: Value| BackendComponent {
            measured_unit: "x".into(),
            unit_factor: 1.0,
            unit_factor_reporting: None,
            accounting_type: agent_config::AccountingType::Limit,
            label: "x".into(),
            limit: None,
            extra: map(extra).into_iter().collect(),
        };
        let mut c = IndexMap::new();
        c.insert("cpu".to_owned(), comp(json!({"type": "cpu"})));
        c.insert("memory".to_owned(), comp(json!({"type": "ram"})));
        c.insert("storage".to_owned(), comp(json!({})));
        c.insert("gpu".to_owned(), comp(json!({"type": "gpu"})));
        c.insert(
            "gpu_h100".to_owned(),
            comp(json!({"type": "gpu", "k8s_resource": "nvidia.com/gpu-h100"})),
        );
        c.insert("pods".to_owned(), comp(json!({"type": "pods"})));
        let q = quota_keys(&c).expect("mapping");
        assert_eq!(q["cpu"].hard, "limits.cpu");
        assert_eq!(q["memory"].hard, "limits.memory");
        assert_eq!(q["storage"].hard, "requests.storage");
        assert_eq!(q["gpu"].hard, "requests.nvidia.com/gpu");
        assert_eq!(q["gpu_h100"].hard, "requests.nvidia.com/gpu-h100");
        assert!(!q.contains_key("pods"));
    }
}
