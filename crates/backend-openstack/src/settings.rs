//! `backend_settings` of an `openstack` offering, parsed and validated once at start-up.
//!
//! Secrets (`password`, `application_credential_secret`) arrive already `${VAR}`-expanded by the
//! config loader and are kept in [`Secret`] so they never reach a log line or a `Debug` dump.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use agent_config::Secret;
use backend_api::BackendError;
use backend_api::spec::{Kind, Setting};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

/// Keystone refuses project names longer than this.
pub const MAX_PROJECT_NAME_LEN: usize = 64;
/// Keystone refuses user names longer than this.
pub const MAX_USER_NAME_LEN: usize = 255;

/// How the agent authenticates to Keystone.
#[derive(Clone, Debug, PartialEq)]
pub enum Credentials {
    /// `username` / `password` in `user_domain_name`, token scoped as [`Scope`] says.
    Password {
        username: String,
        password: Secret,
        user_domain_name: String,
        scope: Scope,
    },
    /// An application credential; its scope is fixed when the credential is created.
    ApplicationCredential { id: String, secret: Secret },
}

/// Scope of a password-issued token.
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    Project {
        name: String,
        domain_name: String,
    },
    /// `system: all` (needs a system role assignment, as `keystone-manage bootstrap` gives admin).
    System,
}

/// Where one Waldur component goes in Keystone unified limits.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitTarget {
    /// Service **type** (`compute`) or, when no service has that type, service **name** (`nova`).
    pub service: String,
    /// Unified-limit resource name (`cores`, `ram`, `instances`, ...).
    pub resource_name: String,
}

/// Parsed `backend_settings` for the `openstack` backend.
#[derive(Clone, Debug)]
pub struct OpenStackSettings {
    /// Keystone v3 base URL, always ending in `/v3` (no trailing slash).
    pub auth_url: Url,
    pub credentials: Credentials,
    /// Domain holding the projects and users the agent manages.
    pub domain_name: String,
    /// Skips the domain look-up when set (useful for credentials that cannot list domains).
    pub domain_id: Option<String>,
    /// Role granted to project members.
    pub default_role: String,
    pub create_users_if_not_exist: bool,
    pub sync_user_emails: bool,
    pub verify_ssl: bool,
    pub ca_bundle: Option<PathBuf>,
    /// Prefix of Keystone project names (`project_prefix`, else `allocation_prefix`).
    pub name_prefix: String,
    /// Waldur component key → unified-limit target.
    pub limits_mapping: BTreeMap<String, LimitTarget>,
    /// Region of registered and project limits (none = region-less limits).
    pub limits_region_id: Option<String>,
    /// Create a missing registered limit (default limit 0) instead of failing.
    pub create_registered_limits: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries of idempotent calls after transient failures.
    pub max_retries: u32,
    /// First backoff delay; doubles per retry.
    pub retry_base_delay: Duration,
}

/// The raw YAML shape; every key optional so that errors can name the missing one.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
struct RawSettings {
    auth_url: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
    user_domain_name: Option<String>,
    project_name: Option<String>,
    project_domain_name: Option<String>,
    system_scope: Option<bool>,
    domain_name: Option<String>,
    domain_id: Option<String>,
    application_credential_id: Option<String>,
    application_credential_secret: Option<Secret>,
    default_role: Option<String>,
    create_users_if_not_exist: Option<bool>,
    sync_user_emails: Option<bool>,
    verify_ssl: Option<bool>,
    ca_bundle: Option<String>,
    project_prefix: Option<String>,
    allocation_prefix: Option<String>,
    limits_mapping: Option<BTreeMap<String, LimitTarget>>,
    region_id: Option<String>,
    create_registered_limits: Option<bool>,
    timeout_seconds: Option<f64>,
    max_retries: Option<u32>,
    retry_base_delay_ms: Option<u64>,
}

/// Every key of `backend_settings` for `openstack`, documented: the source of
/// `docs/backends/openstack.md`'s table, the catalogue's schema and the unknown-key check.
pub const SETTINGS: &[Setting] = &[
    Setting::new(
        "auth_url",
        Kind::Url,
        "required",
        "Keystone URL. `https://host:5000`, `https://host:5000/v3` and `https://host/identity/v3/` are accepted; `/v3` is appended when missing.",
    ),
    Setting::new(
        "username",
        Kind::String,
        "none",
        "user the agent authenticates as (required unless an application credential is set)",
    ),
    Setting::new(
        "password",
        Kind::String,
        "none",
        "its password (never logged, `Debug` prints `***`)",
    )
    .secret(),
    Setting::new(
        "user_domain_name",
        Kind::String,
        "`domain_name`",
        "domain of `username`",
    ),
    Setting::new(
        "project_name",
        Kind::String,
        "none",
        "project the token is scoped to (required for password auth unless `system_scope`)",
    ),
    Setting::new(
        "project_domain_name",
        Kind::String,
        "`domain_name`",
        "domain of `project_name`",
    ),
    Setting::new(
        "system_scope",
        Kind::Bool,
        "false",
        "scope the token to `system: all` instead of a project",
    ),
    Setting::new(
        "domain_name",
        Kind::String,
        "`Default`",
        "domain where projects and users are looked up and created",
    ),
    Setting::new(
        "domain_id",
        Kind::String,
        "none",
        "skip the domain look-up (for credentials that may not list domains)",
    ),
    Setting::new(
        "application_credential_id",
        Kind::String,
        "none",
        "authenticate with an application credential instead of a password (with `application_credential_secret`; the credential carries its own scope)",
    ),
    Setting::new(
        "application_credential_secret",
        Kind::String,
        "none",
        "the application credential's secret",
    )
    .secret(),
    Setting::new(
        "default_role",
        Kind::String,
        "`member`",
        "role granted to members on their project. If `_member_` (the seed's value, used by pre-Queens Keystone) does not exist but `member` does, `member` is used with a warning.",
    ),
    Setting::new(
        "create_users_if_not_exist",
        Kind::Bool,
        "true",
        "create missing Keystone users (without password: they log in through federation/SSO, or an operator sets one). When `false`, members without a Keystone user are skipped with a warning.",
    ),
    Setting::new(
        "sync_user_emails",
        Kind::Bool,
        "true",
        "set the Keystone user's email from Waldur when they differ",
    ),
    Setting::new(
        "verify_ssl",
        Kind::Bool,
        "true",
        "verify Keystone's TLS certificate (set `false` only for testing)",
    ),
    Setting::new(
        "ca_bundle",
        Kind::Path,
        "none",
        "PEM file with extra CA certificates to trust (e.g. a private CA)",
    ),
    Setting::new(
        "project_prefix",
        Kind::Prefix,
        "`allocation_prefix`",
        "prefix of Keystone project names",
    ),
    Setting::new(
        "allocation_prefix",
        Kind::Prefix,
        "empty",
        "prefix of Keystone project names when `project_prefix` is not set",
    ),
    Setting::new(
        "limits_mapping",
        Kind::Object,
        "empty",
        "Waldur component → `{service, resource_name}` unified limit (see below)",
    ),
    Setting::new(
        "region_id",
        Kind::String,
        "none",
        "region of registered and project limits (none = region-less)",
    ),
    Setting::new(
        "create_registered_limits",
        Kind::Bool,
        "true",
        "create a missing registered limit (default limit 0)",
    ),
    Setting::new(
        "timeout_seconds",
        Kind::Number,
        "30",
        "timeout of every Keystone request",
    ),
    Setting::new(
        "max_retries",
        Kind::Integer,
        "3",
        "retries of idempotent calls after transient failures (≤ 10)",
    ),
    Setting::new(
        "retry_base_delay_ms",
        Kind::Integer,
        "200",
        "first backoff delay, doubled per retry with jitter (capped at 10 s)",
    ),
];

/// The keys [`OpenStackSettings::from_backend_settings`] reads (for the test that keeps
/// [`SETTINGS`] complete).
pub fn read_keys() -> Vec<String> {
    match serde_json::to_value(RawSettings::default()) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn non_blank(value: Option<String>) -> Option<String> {
    value.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn non_blank_secret(value: Option<Secret>) -> Option<Secret> {
    value.filter(|s| !s.is_empty())
}

impl OpenStackSettings {
    /// Parse an offering's `backend_settings`. `offering` names the offering in errors.
    pub fn from_backend_settings(
        offering: &str,
        settings: &Map<String, Value>,
    ) -> Result<Self, BackendError> {
        let config_error =
            |msg: String| BackendError::Config(format!("offering '{offering}': {msg}"));
        let raw: RawSettings = serde_json::from_value(Value::Object(settings.clone()))
            .map_err(|e| config_error(format!("backend_settings for openstack: {e}")))?;

        let auth_url = non_blank(raw.auth_url).ok_or_else(|| {
            config_error(
                "backend_settings.auth_url is required (e.g. https://keystone.example.com:5000/v3)"
                    .into(),
            )
        })?;
        let auth_url = normalise_auth_url(&auth_url)
            .map_err(|e| config_error(format!("backend_settings.auth_url: {e}")))?;

        let domain_name = non_blank(raw.domain_name).unwrap_or_else(|| "Default".to_owned());
        let app_id = non_blank(raw.application_credential_id);
        let app_secret = non_blank_secret(raw.application_credential_secret);
        let credentials = match (app_id, app_secret) {
            (Some(id), Some(secret)) => Credentials::ApplicationCredential { id, secret },
            (Some(_), None) | (None, Some(_)) => {
                return Err(config_error(
                    "application_credential_id and application_credential_secret must be set together"
                        .into(),
                ));
            }
            (None, None) => {
                let username = non_blank(raw.username).ok_or_else(|| {
                    config_error(
                        "backend_settings.username (with password) or application_credential_id \
                         (with application_credential_secret) is required"
                            .into(),
                    )
                })?;
                let password = non_blank_secret(raw.password).ok_or_else(|| {
                    config_error(format!(
                        "backend_settings.password is empty for user '{username}' (is the ${{VAR}} it references set?)"
                    ))
                })?;
                let scope = if raw.system_scope.unwrap_or(false) {
                    Scope::System
                } else {
                    let name = non_blank(raw.project_name).ok_or_else(|| {
                        config_error(
                            "backend_settings.project_name is required for password authentication \
                             (or set system_scope: true)"
                                .into(),
                        )
                    })?;
                    Scope::Project {
                        name,
                        domain_name: non_blank(raw.project_domain_name)
                            .unwrap_or_else(|| domain_name.clone()),
                    }
                };
                Credentials::Password {
                    username,
                    password,
                    user_domain_name: non_blank(raw.user_domain_name)
                        .unwrap_or_else(|| domain_name.clone()),
                    scope,
                }
            }
        };

        let name_prefix = non_blank(raw.project_prefix)
            .or_else(|| non_blank(raw.allocation_prefix))
            .unwrap_or_default();
        let limits_mapping = raw.limits_mapping.unwrap_or_default();
        for (component, target) in &limits_mapping {
            if target.service.trim().is_empty() || target.resource_name.trim().is_empty() {
                return Err(config_error(format!(
                    "backend_settings.limits_mapping.{component}: service and resource_name must not be empty"
                )));
            }
        }
        let timeout_seconds = raw.timeout_seconds.unwrap_or(30.0);
        if !(timeout_seconds.is_finite() && timeout_seconds > 0.0 && timeout_seconds <= 3600.0) {
            return Err(config_error(format!(
                "backend_settings.timeout_seconds must be between 0 and 3600, got {timeout_seconds}"
            )));
        }

        Ok(OpenStackSettings {
            auth_url,
            credentials,
            domain_name,
            domain_id: non_blank(raw.domain_id),
            default_role: non_blank(raw.default_role).unwrap_or_else(|| "member".to_owned()),
            create_users_if_not_exist: raw.create_users_if_not_exist.unwrap_or(true),
            sync_user_emails: raw.sync_user_emails.unwrap_or(true),
            verify_ssl: raw.verify_ssl.unwrap_or(true),
            ca_bundle: non_blank(raw.ca_bundle).map(PathBuf::from),
            name_prefix,
            limits_mapping,
            limits_region_id: non_blank(raw.region_id),
            create_registered_limits: raw.create_registered_limits.unwrap_or(true),
            timeout: Duration::from_secs_f64(timeout_seconds),
            max_retries: raw.max_retries.unwrap_or(3).min(10),
            retry_base_delay: Duration::from_millis(raw.retry_base_delay_ms.unwrap_or(200)),
        })
    }

    /// Who authenticates, for messages (never the secret).
    pub fn principal(&self) -> String {
        match &self.credentials {
            Credentials::Password {
                username,
                user_domain_name,
                ..
            } => format!("user '{username}' (domain '{user_domain_name}')"),
            Credentials::ApplicationCredential { id, .. } => {
                format!("application credential '{id}'")
            }
        }
    }
}

/// Accept `https://host:5000`, `https://host:5000/v3` and `https://host/identity/v3/`; always
/// return the form ending in `/v3`.
pub fn normalise_auth_url(raw: &str) -> Result<Url, String> {
    let mut url = Url::parse(raw.trim()).map_err(|e| format!("'{raw}' is not a URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("'{raw}' must be an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials do not belong in the URL; use username/password".into());
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_owned();
    let path = if path.ends_with("/v3") {
        path
    } else {
        format!("{path}/v3")
    };
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<OpenStackSettings, BackendError> {
        let Value::Object(map) = v else {
            panic!("test input must be an object")
        };
        OpenStackSettings::from_backend_settings("os-test", &map)
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
    fn seed_example_parses_with_its_defaults() {
        let s = parse(json!({
            "auth_url": "https://keystone.example.com:5000/v3",
            "username": "admin",
            "password": "s3cret",
            "project_name": "admin",
            "domain_name": "Default",
            "default_role": "_member_",
            "create_users_if_not_exist": true,
            "sync_user_emails": true,
        }))
        .expect("seed settings parse");
        assert_eq!(s.auth_url.as_str(), "https://keystone.example.com:5000/v3");
        assert_eq!(s.default_role, "_member_");
        assert!(s.create_users_if_not_exist && s.sync_user_emails && s.verify_ssl);
        match &s.credentials {
            Credentials::Password {
                username,
                password,
                user_domain_name,
                scope,
            } => {
                assert_eq!(username, "admin");
                assert_eq!(password.expose(), "s3cret");
                assert_eq!(user_domain_name, "Default");
                assert_eq!(
                    scope,
                    &Scope::Project {
                        name: "admin".into(),
                        domain_name: "Default".into()
                    }
                );
            }
            other => panic!("expected password credentials, got {other:?}"),
        }
        assert_eq!(s.timeout, Duration::from_secs(30));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let s = parse(json!({
            "auth_url": "http://k:5000/v3", "username": "admin", "password": "hunter2-pw",
            "project_name": "admin",
        }))
        .expect("parse");
        let dumped = format!("{s:?}");
        assert!(!dumped.contains("hunter2-pw"), "{dumped}");
        assert!(dumped.contains("***"));
        let s = parse(json!({
            "auth_url": "http://k:5000/v3", "application_credential_id": "abc",
            "application_credential_secret": "app-secret-xyz",
        }))
        .expect("parse");
        assert!(!format!("{s:?}").contains("app-secret-xyz"));
        assert_eq!(s.principal(), "application credential 'abc'");
    }

    #[test]
    fn missing_pieces_are_named() {
        let err = parse(json!({"username": "a", "password": "b"})).expect_err("no auth_url");
        assert!(err.to_string().contains("auth_url"), "{err}");
        assert!(err.to_string().contains("os-test"), "{err}");
        let err = parse(
            json!({"auth_url": "http://k/v3", "username": "a", "password": "",
            "project_name": "p"}),
        )
        .expect_err("blank password");
        assert!(err.to_string().contains("password"), "{err}");
        let err = parse(json!({"auth_url": "http://k/v3", "username": "a", "password": "x"}))
            .expect_err("no project");
        assert!(err.to_string().contains("project_name"), "{err}");
        let err = parse(json!({"auth_url": "http://k/v3", "application_credential_id": "a"}))
            .expect_err("half an app credential");
        assert!(err.to_string().contains("application_credential_secret"));
        let err = parse(
            json!({"auth_url": "ftp://k/v3", "username": "a", "password": "x",
            "project_name": "p"}),
        )
        .expect_err("bad scheme");
        assert!(matches!(err, BackendError::Config(_)));
    }

    #[test]
    fn system_scope_needs_no_project() {
        let s = parse(
            json!({"auth_url": "http://k:5000", "username": "a", "password": "x",
            "system_scope": true}),
        )
        .expect("parse");
        assert!(matches!(
            s.credentials,
            Credentials::Password {
                scope: Scope::System,
                ..
            }
        ));
        assert_eq!(s.auth_url.as_str(), "http://k:5000/v3");
    }

    #[test]
    fn auth_url_forms_are_normalised() {
        for (input, want) in [
            ("http://k:5000", "http://k:5000/v3"),
            ("http://k:5000/", "http://k:5000/v3"),
            ("http://k:5000/v3/", "http://k:5000/v3"),
            ("https://k/identity/v3", "https://k/identity/v3"),
            ("https://k/identity", "https://k/identity/v3"),
        ] {
            assert_eq!(normalise_auth_url(input).expect(input).as_str(), want);
        }
        assert!(normalise_auth_url("http://u:p@k/v3").is_err());
        assert!(normalise_auth_url("not a url").is_err());
    }

    #[test]
    fn limits_mapping_and_prefixes() {
        let s = parse(json!({
            "auth_url": "http://k/v3", "username": "a", "password": "x", "project_name": "p",
            "allocation_prefix": "wa_",
            "limits_mapping": {"cores": {"service": "compute", "resource_name": "cores"},
                               "ram": {"service": "compute", "resource_name": "ram"}},
            "region_id": "RegionOne", "create_registered_limits": false, "timeout_seconds": 5,
        }))
        .expect("parse");
        assert_eq!(s.name_prefix, "wa_");
        assert_eq!(s.limits_mapping.len(), 2);
        assert_eq!(s.limits_mapping["ram"].resource_name, "ram");
        assert_eq!(s.limits_region_id.as_deref(), Some("RegionOne"));
        assert!(!s.create_registered_limits);
        assert_eq!(s.timeout, Duration::from_secs(5));

        let s = parse(
            json!({"auth_url": "http://k/v3", "username": "a", "password": "x",
            "project_name": "p", "project_prefix": "os-", "allocation_prefix": "wa_"}),
        )
        .expect("parse");
        assert_eq!(s.name_prefix, "os-", "project_prefix wins");

        let err = parse(
            json!({"auth_url": "http://k/v3", "username": "a", "password": "x",
            "project_name": "p", "limits_mapping": {"cores": {"service": "compute"}}}),
        )
        .expect_err("resource_name missing");
        assert!(err.to_string().contains("resource_name"), "{err}");
        let err = parse(
            json!({"auth_url": "http://k/v3", "username": "a", "password": "x",
            "project_name": "p", "timeout_seconds": 0}),
        )
        .expect_err("zero timeout");
        assert!(err.to_string().contains("timeout_seconds"));
    }
}
