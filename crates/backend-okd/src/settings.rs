//! `backend_settings` of an `okd` offering (the upstream plugin's keys and defaults, plus
//! `role_mapping`, `ca_bundle`-as-`verify_cert`, timeouts and retries), parsed once at start-up.
//! `parse` returns every problem with its key path.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use agent_config::Secret;
use backend_api::spec::{Kind, Setting, SettingIssue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

/// How requests are authenticated (`token_config.token_type`).
#[derive(Clone, Debug, PartialEq)]
pub enum TokenConfig {
    /// A fixed bearer token (`token`, or `token_config.token`). A 401 is a configuration error.
    Static(Secret),
    /// `<service_account_path>/token`, re-read when the file changes or after a 401.
    ServiceAccount(PathBuf),
    /// A token file managed by something else, re-read when it changes or after a 401.
    File(PathBuf),
    /// OAuth2 refresh-token grant at `token_endpoint`.
    OAuth {
        client_id: String,
        client_secret: Option<Secret>,
        refresh_token: Secret,
        token_endpoint: Url,
    },
}

/// `verify_cert`: a bool, or the path of a CA bundle (which implies verification).
#[derive(Clone, Debug, PartialEq)]
pub enum Verify {
    On,
    Off,
    CaBundle(PathBuf),
}

/// Parsed `backend_settings` of the `okd` backend.
#[derive(Clone, Debug)]
pub struct OkdSettings {
    pub api_url: Url,
    pub token: TokenConfig,
    pub verify: Verify,
    pub namespace_prefix: String,
    pub customer_prefix: String,
    pub project_prefix: String,
    pub allocation_prefix: String,
    /// ClusterRole for users whose Waldur role `role_mapping` does not name.
    pub default_role: String,
    /// Waldur role (lower case: `owner`, `manager`, `member`, ...) → ClusterRole.
    pub role_mapping: BTreeMap<String, String>,
    /// `auto` (discovery), `openshift` or `kubernetes`.
    pub cluster_type: ClusterType,
    pub timeout: Duration,
    pub max_retries: u32,
    /// How long a delete waits for the namespace to leave `Terminating`.
    pub delete_wait: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterType {
    Auto,
    OpenShift,
    Kubernetes,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
struct RawSettings {
    api_url: Option<String>,
    token: Option<Secret>,
    token_config: Option<Value>,
    verify_cert: Option<Value>,
    namespace_prefix: Option<String>,
    customer_prefix: Option<String>,
    project_prefix: Option<String>,
    allocation_prefix: Option<String>,
    default_role: Option<String>,
    role_mapping: Option<BTreeMap<String, String>>,
    cluster_type: Option<String>,
    timeout_seconds: Option<f64>,
    max_retries: Option<u32>,
    delete_wait_seconds: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawTokenConfig {
    token_type: Option<String>,
    token: Option<Secret>,
    service_account_path: Option<String>,
    token_file_path: Option<String>,
    oauth_config: Option<RawOAuth>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawOAuth {
    client_id: Option<String>,
    client_secret: Option<Secret>,
    refresh_token: Option<Secret>,
    token_endpoint: Option<String>,
}

/// Every key of `backend_settings` for `okd`: the docs table, the catalogue and the
/// unknown-key check.
pub const SETTINGS: &[Setting] = &[
    Setting::new(
        "api_url",
        Kind::Url,
        "`https://localhost:8443`",
        "Kubernetes / OpenShift API server",
    ),
    Setting::new(
        "token",
        Kind::String,
        "none",
        "static bearer token (when no `token_config`); a 401 is reported as a configuration error, the token is kept",
    )
    .secret(),
    Setting::new(
        "token_config",
        Kind::Object,
        "static from `token`",
        "`token_type`: `static` (`token`), `service_account` (`service_account_path`, default `/var/run/secrets/kubernetes.io/serviceaccount`, reads `<path>/token`), `file` (`token_file_path`) or `oauth` (`oauth_config`: `client_id`, `client_secret`, `refresh_token`, `token_endpoint`). File tokens are re-read when the file changes and after a 401. Holds secrets (masked).",
    )
    .secret(),
    Setting::new(
        "verify_cert",
        Kind::BoolOrPath,
        "true",
        "`true`/`false`, or the path of a PEM CA bundle to verify the API server with",
    ),
    Setting::new(
        "namespace_prefix",
        Kind::Prefix,
        "`waldur-`",
        "prefix of every project/namespace the agent manages",
    ),
    Setting::new(
        "customer_prefix",
        Kind::Prefix,
        "`org-`",
        "prefix of the customer id in the `waldur/organization` annotation",
    ),
    Setting::new(
        "project_prefix",
        Kind::Prefix,
        "`proj-`",
        "prefix of the project id in the `waldur/parent` annotation",
    ),
    Setting::new(
        "allocation_prefix",
        Kind::Prefix,
        "`alloc-`",
        "prefix of the resource's project name, after `namespace_prefix`",
    ),
    Setting::new(
        "default_role",
        Kind::Name,
        "`edit`",
        "ClusterRole bound for users whose Waldur role `role_mapping` does not name",
    ),
    Setting::new(
        "role_mapping",
        Kind::Object,
        "`{owner: admin, manager: edit, admin: edit, member: view}`",
        "Waldur role → ClusterRole; entries given replace the defaults of the same role",
    ),
    Setting::new(
        "cluster_type",
        Kind::Enum(&["auto", "openshift", "kubernetes"]),
        "`auto`",
        "`auto`: OpenShift projects when discovery lists `project.openshift.io`, else Namespaces",
    ),
    Setting::new(
        "timeout_seconds",
        Kind::Number,
        "30",
        "timeout of every API request",
    ),
    Setting::new(
        "max_retries",
        Kind::Integer,
        "3",
        "retries of idempotent requests after transient failures (≤ 10)",
    ),
    Setting::new(
        "delete_wait_seconds",
        Kind::Number,
        "30",
        "how long a terminate waits for the namespace to be gone (it stays `Terminating` while its content is removed)",
    ),
];

/// The keys [`OkdSettings::parse`] reads.
pub fn read_keys() -> Vec<String> {
    match serde_json::to_value(RawSettings::default()) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn non_blank(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The default role mapping (the README's promise: owner → admin, manager → edit, member → view).
pub fn default_role_mapping() -> BTreeMap<String, String> {
    [
        ("owner", "admin"),
        ("manager", "edit"),
        ("admin", "edit"),
        ("member", "view"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect()
}

fn valid_role_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.contains('/')
        && !name.contains('%')
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'))
}

fn valid_prefix(p: &str) -> bool {
    p.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl OkdSettings {
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
        let api_url_text =
            non_blank(raw.api_url).unwrap_or_else(|| "https://localhost:8443".to_owned());
        let api_url = match Url::parse(&api_url_text) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(u),
            Ok(_) => {
                issues.push(SettingIssue::setting(
                    "api_url",
                    format!("'{api_url_text}' must be an http:// or https:// URL"),
                ));
                None
            }
            Err(e) => {
                issues.push(SettingIssue::setting(
                    "api_url",
                    format!("'{api_url_text}' is not a URL: {e}"),
                ));
                None
            }
        };

        let token = parse_token(raw.token, raw.token_config, &mut issues);

        let verify = match raw.verify_cert {
            None | Some(Value::Null) | Some(Value::Bool(true)) => Verify::On,
            Some(Value::Bool(false)) => Verify::Off,
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Verify::On,
                "false" | "no" | "0" => Verify::Off,
                "" => Verify::On,
                _ => Verify::CaBundle(PathBuf::from(s.trim())),
            },
            Some(other) => {
                issues.push(SettingIssue::setting(
                    "verify_cert",
                    format!("must be true, false or a CA bundle path, got {other}"),
                ));
                Verify::On
            }
        };

        let mut prefix = |key: &str, v: Option<String>, default: &str| -> String {
            let p = v
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|| default.to_owned());
            if !valid_prefix(&p) {
                issues.push(SettingIssue::setting(
                    key,
                    format!(
                        "'{p}' may only hold lower-case letters, digits and '-' (it starts Kubernetes names)"
                    ),
                ));
            }
            p
        };
        let namespace_prefix = prefix("namespace_prefix", raw.namespace_prefix, "waldur-");
        let customer_prefix = prefix("customer_prefix", raw.customer_prefix, "org-");
        let project_prefix = prefix("project_prefix", raw.project_prefix, "proj-");
        let allocation_prefix = prefix("allocation_prefix", raw.allocation_prefix, "alloc-");

        let default_role = non_blank(raw.default_role).unwrap_or_else(|| "edit".to_owned());
        if !valid_role_name(&default_role) {
            issues.push(SettingIssue::setting(
                "default_role",
                format!("'{default_role}' is not a ClusterRole name"),
            ));
        }
        let mut role_mapping = default_role_mapping();
        for (waldur_role, cluster_role) in raw.role_mapping.unwrap_or_default() {
            let cluster_role = cluster_role.trim().to_owned();
            if !valid_role_name(&cluster_role) {
                issues.push(SettingIssue::setting(
                    &format!("role_mapping.{waldur_role}"),
                    format!("'{cluster_role}' is not a ClusterRole name"),
                ));
            }
            role_mapping.insert(normalise_role(&waldur_role), cluster_role);
        }

        let cluster_type = match non_blank(raw.cluster_type).as_deref() {
            None | Some("auto") => ClusterType::Auto,
            Some("openshift") | Some("okd") => ClusterType::OpenShift,
            Some("kubernetes") => ClusterType::Kubernetes,
            Some(other) => {
                issues.push(SettingIssue::setting(
                    "cluster_type",
                    format!("'{other}' is not one of auto, openshift, kubernetes"),
                ));
                ClusterType::Auto
            }
        };
        let seconds = |key: &str, v: Option<f64>, default: f64, issues: &mut Vec<SettingIssue>| {
            let v = v.unwrap_or(default);
            if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
                issues.push(SettingIssue::setting(
                    key,
                    format!("must be between 0 and 3600, got {v}"),
                ));
                return Duration::from_secs_f64(default);
            }
            Duration::from_secs_f64(v)
        };
        let timeout = seconds("timeout_seconds", raw.timeout_seconds, 30.0, &mut issues);
        let delete_wait = seconds(
            "delete_wait_seconds",
            raw.delete_wait_seconds,
            30.0,
            &mut issues,
        );
        let max_retries = raw.max_retries.unwrap_or(3);
        if max_retries > 10 {
            issues.push(SettingIssue::setting("max_retries", "must be at most 10"));
        }

        match (api_url, token) {
            (Some(api_url), Some(token)) if issues.is_empty() => Ok(OkdSettings {
                api_url,
                token,
                verify,
                namespace_prefix,
                customer_prefix,
                project_prefix,
                allocation_prefix,
                default_role,
                role_mapping,
                cluster_type,
                timeout,
                max_retries,
                delete_wait,
            }),
            _ => Err(issues),
        }
    }

    /// The ClusterRole for a Waldur role (`None`: `default_role`).
    pub fn cluster_role(&self, waldur_role: Option<&str>) -> &str {
        waldur_role
            .map(normalise_role)
            .and_then(|r| self.role_mapping.get(&r))
            .map_or(self.default_role.as_str(), String::as_str)
    }
}

/// `PROJECT.MANAGER`, `Manager`, `project_manager`, `customer.owner` → `manager` / `owner`.
pub fn normalise_role(role: &str) -> String {
    let r = role.trim().to_ascii_lowercase();
    let r = r.rsplit(['.', ':']).next().unwrap_or(&r).to_owned();
    for prefix in ["project_", "customer_", "project ", "customer "] {
        if let Some(rest) = r.strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
    r
}

fn parse_token(
    token: Option<Secret>,
    config: Option<Value>,
    issues: &mut Vec<SettingIssue>,
) -> Option<TokenConfig> {
    let token = token.filter(|t| !t.is_empty());
    let Some(config) = config.filter(|v| !v.is_null()) else {
        return match token {
            Some(t) => Some(TokenConfig::Static(t)),
            None => {
                issues.push(SettingIssue::setting(
                    "token",
                    "a token is required: set `token` or `token_config` (is the ${VAR} it references set?)",
                ));
                None
            }
        };
    };
    let raw: RawTokenConfig = match serde_json::from_value(config) {
        Ok(r) => r,
        Err(e) => {
            issues.push(SettingIssue::setting("token_config", e.to_string()));
            return None;
        }
    };
    let kind = non_blank(raw.token_type).unwrap_or_else(|| "static".to_owned());
    match kind.as_str() {
        "static" => match raw.token.filter(|t| !t.is_empty()).or(token) {
            Some(t) => Some(TokenConfig::Static(t)),
            None => {
                issues.push(SettingIssue::setting(
                    "token_config.token",
                    "a static token is required (here or in `token`)",
                ));
                None
            }
        },
        "service_account" => Some(TokenConfig::ServiceAccount(
            PathBuf::from(
                non_blank(raw.service_account_path)
                    .unwrap_or_else(|| "/var/run/secrets/kubernetes.io/serviceaccount".to_owned()),
            )
            .join("token"),
        )),
        "file" => match non_blank(raw.token_file_path) {
            Some(p) => Some(TokenConfig::File(PathBuf::from(p))),
            None => {
                issues.push(SettingIssue::setting(
                    "token_config.token_file_path",
                    "is required for token_type: file",
                ));
                None
            }
        },
        "oauth" => {
            let Some(o) = raw.oauth_config else {
                issues.push(SettingIssue::setting(
                    "token_config.oauth_config",
                    "is required for token_type: oauth",
                ));
                return None;
            };
            let mut missing = |key: &str| {
                issues.push(SettingIssue::setting(
                    &format!("token_config.oauth_config.{key}"),
                    "is required for token_type: oauth",
                ));
            };
            let client_id = non_blank(o.client_id);
            let refresh_token = o.refresh_token.filter(|t| !t.is_empty());
            let endpoint = non_blank(o.token_endpoint);
            if client_id.is_none() {
                missing("client_id");
            }
            if refresh_token.is_none() {
                missing("refresh_token");
            }
            if endpoint.is_none() {
                missing("token_endpoint");
            }
            let token_endpoint = match endpoint.as_deref().map(Url::parse) {
                Some(Ok(u)) if u.scheme() == "http" || u.scheme() == "https" => Some(u),
                Some(_) => {
                    issues.push(SettingIssue::setting(
                        "token_config.oauth_config.token_endpoint",
                        "must be an http:// or https:// URL",
                    ));
                    None
                }
                None => None,
            };
            Some(TokenConfig::OAuth {
                client_id: client_id?,
                client_secret: o.client_secret.filter(|s| !s.is_empty()),
                refresh_token: refresh_token?,
                token_endpoint: token_endpoint?,
            })
        }
        other => {
            issues.push(SettingIssue::setting(
                "token_config.token_type",
                format!("'{other}' is not one of static, service_account, file, oauth"),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<OkdSettings, Vec<SettingIssue>> {
        let Value::Object(m) = v else {
            panic!("object")
        };
        OkdSettings::parse(&m)
    }

    #[test]
    fn every_read_key_is_documented_and_nothing_else() {
        let mut documented: Vec<String> = SETTINGS.iter().map(|s| s.key.to_owned()).collect();
        documented.sort();
        let mut read = read_keys();
        read.sort();
        assert_eq!(read, documented);
    }

    #[test]
    fn defaults_of_the_plugin() {
        let s = parse(json!({"token": "sha256~abc"})).expect("parse");
        assert_eq!(s.api_url.as_str(), "https://localhost:8443/");
        assert_eq!(s.namespace_prefix, "waldur-");
        assert_eq!(s.allocation_prefix, "alloc-");
        assert_eq!(s.default_role, "edit");
        assert_eq!(s.verify, Verify::On);
        assert_eq!(s.token, TokenConfig::Static(Secret::new("sha256~abc")));
        assert!(!format!("{s:?}").contains("sha256~abc"));
    }

    #[test]
    fn the_four_token_sources() {
        let s = parse(json!({"token_config": {"token_type": "service_account"}})).expect("sa");
        assert_eq!(
            s.token,
            TokenConfig::ServiceAccount(PathBuf::from(
                "/var/run/secrets/kubernetes.io/serviceaccount/token"
            ))
        );
        let s = parse(json!({"token_config": {"token_type": "file", "token_file_path": "/t"}}))
            .expect("file");
        assert_eq!(s.token, TokenConfig::File(PathBuf::from("/t")));
        let s = parse(
            json!({"token_config": {"token_type": "oauth", "oauth_config": {
            "client_id": "c", "client_secret": "s", "refresh_token": "r",
            "token_endpoint": "https://oauth.example/oauth/token"}}}),
        )
        .expect("oauth");
        assert!(matches!(s.token, TokenConfig::OAuth { .. }));
        let s = parse(json!({"token_config": {"token_type": "static", "token": "x"}})).expect("st");
        assert_eq!(s.token, TokenConfig::Static(Secret::new("x")));
    }

    #[test]
    fn every_problem_is_named() {
        let issues = parse(json!({"api_url": "ftp://x", "namespace_prefix": "Bad_",
            "token_config": {"token_type": "oauth", "oauth_config": {"client_id": "c"}},
            "default_role": "a/b", "timeout_seconds": 0}))
        .expect_err("bad");
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        for want in [
            "backend_settings.api_url",
            "backend_settings.namespace_prefix",
            "backend_settings.token_config.oauth_config.refresh_token",
            "backend_settings.token_config.oauth_config.token_endpoint",
            "backend_settings.default_role",
            "backend_settings.timeout_seconds",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        let issues = parse(json!({})).expect_err("no token");
        assert_eq!(issues[0].path, "backend_settings.token");
    }

    #[test]
    fn verify_cert_bool_or_ca_bundle() {
        let s = parse(json!({"token": "t", "verify_cert": false})).expect("p");
        assert_eq!(s.verify, Verify::Off);
        let s = parse(json!({"token": "t", "verify_cert": "/etc/ca.pem"})).expect("p");
        assert_eq!(s.verify, Verify::CaBundle(PathBuf::from("/etc/ca.pem")));
        let s = parse(json!({"token": "t", "verify_cert": "true"})).expect("p");
        assert_eq!(s.verify, Verify::On);
    }

    #[test]
    fn role_mapping_defaults_and_overrides() {
        let s = parse(json!({"token": "t"})).expect("p");
        assert_eq!(s.cluster_role(Some("owner")), "admin");
        assert_eq!(s.cluster_role(Some("PROJECT.MANAGER")), "edit");
        assert_eq!(s.cluster_role(Some("Member")), "view");
        assert_eq!(s.cluster_role(Some("project_member")), "view");
        assert_eq!(s.cluster_role(Some("auditor")), "edit");
        assert_eq!(s.cluster_role(None), "edit");
        let s = parse(json!({"token": "t", "default_role": "view",
            "role_mapping": {"manager": "admin"}}))
        .expect("p");
        assert_eq!(s.cluster_role(Some("manager")), "admin");
        assert_eq!(s.cluster_role(Some("owner")), "admin");
        assert_eq!(s.cluster_role(None), "view");
    }
}
