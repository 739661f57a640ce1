//! The `keycloak:` block of `backend_settings` (the keys of waldur-mastermind and the upstream
//! plugins), parsed once with every problem reported by its key path.

use std::path::PathBuf;

use agent_config::Secret;
use backend_api::spec::{Kind, Setting, SettingIssue};
use serde_json::{Map, Value};
use url::Url;

/// How the admin client logs in.
#[derive(Clone, Debug, PartialEq)]
pub enum KeycloakAuth {
    /// Password grant of an admin user of `keycloak_user_realm` (`admin-cli` by default).
    Password {
        username: String,
        password: Secret,
        /// For a confidential client.
        client_secret: Option<Secret>,
    },
    /// The service account of a confidential client (`client_id` + `client_secret`).
    ClientCredentials { client_secret: Secret },
}

/// A parsed `keycloak:` block.
#[derive(Clone, Debug, PartialEq)]
pub struct KeycloakConfig {
    /// Server URL (with `/auth` on Keycloak < 17 or when so deployed).
    pub url: Url,
    /// The realm whose groups and users are managed.
    pub realm: String,
    /// The realm the admin logs in to.
    pub user_realm: String,
    pub client_id: String,
    pub auth: KeycloakAuth,
    pub verify_tls: bool,
    pub ca_bundle: Option<PathBuf>,
}

/// Every key of the `keycloak:` block (docs table and unknown-key check).
pub const SETTINGS: &[Setting] = &[
    Setting::new(
        "keycloak_url",
        Kind::Url,
        "`https://localhost/auth/`",
        "Keycloak server URL (include `/auth/` when the server is served there)",
    ),
    Setting::new(
        "keycloak_realm",
        Kind::String,
        "`waldur`",
        "realm whose groups and users are managed",
    ),
    Setting::new(
        "keycloak_user_realm",
        Kind::String,
        "`master`",
        "realm the admin user (or client) logs in to",
    ),
    Setting::new(
        "client_id",
        Kind::String,
        "`admin-cli`",
        "OIDC client of the login",
    ),
    Setting::new(
        "keycloak_username",
        Kind::String,
        "none",
        "admin user (password grant); leave out to log in with `keycloak_client_secret` (client credentials)",
    ),
    Setting::new(
        "keycloak_password",
        Kind::String,
        "none",
        "password of `keycloak_username`",
    )
    .secret(),
    Setting::new(
        "keycloak_client_secret",
        Kind::String,
        "none",
        "secret of a confidential `client_id`: with `keycloak_username`, sent along the password; without, the client's service account logs in (client credentials)",
    )
    .secret(),
    Setting::new(
        "keycloak_ssl_verify",
        Kind::BoolOrPath,
        "true",
        "`true`/`false`, or the path of a PEM CA bundle",
    ),
    Setting::new(
        "keycloak_sync_frequency",
        Kind::Number,
        "none",
        "accepted for compatibility with waldur-mastermind's settings; not used by the agent",
    ),
];

fn text(m: &Map<String, Value>, key: &str) -> Option<String> {
    match m.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

impl KeycloakConfig {
    /// Parse the block at `path` (e.g. `keycloak`, issues read `backend_settings.keycloak.<key>`).
    pub fn parse(path: &str, block: &Value) -> Result<KeycloakConfig, Vec<SettingIssue>> {
        let issue =
            |key: &str, reason: String| SettingIssue::setting(&format!("{path}.{key}"), reason);
        let empty = Map::new();
        let m = match block {
            Value::Object(m) => m,
            Value::Null => &empty,
            other => {
                return Err(vec![SettingIssue::setting(
                    path,
                    format!("must be a mapping, got {other}"),
                )]);
            }
        };
        let mut issues = Vec::new();
        for (key, value) in m {
            if !SETTINGS.iter().any(|s| s.key == key) {
                issues.push(issue(
                    key,
                    format!(
                        "unknown key; the keys are {}",
                        SETTINGS
                            .iter()
                            .map(|s| s.key)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            if !matches!(
                value,
                Value::String(_) | Value::Bool(_) | Value::Number(_) | Value::Null
            ) {
                issues.push(issue(key, format!("must be a single value, got {value}")));
            }
        }
        let url_text = text(m, "keycloak_url").unwrap_or_else(|| "https://localhost/auth/".into());
        let url = match Url::parse(&url_text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            Ok(_) | Err(_) => {
                issues.push(issue(
                    "keycloak_url",
                    format!("'{url_text}' must be an http:// or https:// URL"),
                ));
                None
            }
        };
        let realm = text(m, "keycloak_realm").unwrap_or_else(|| "waldur".into());
        let user_realm = text(m, "keycloak_user_realm").unwrap_or_else(|| "master".into());
        let client_id = text(m, "client_id").unwrap_or_else(|| "admin-cli".into());
        let secret = |key: &str| text(m, key).map(Secret::new);
        let auth = match (
            text(m, "keycloak_username"),
            secret("keycloak_client_secret"),
        ) {
            (Some(username), client_secret) => match secret("keycloak_password") {
                Some(password) => Some(KeycloakAuth::Password {
                    username,
                    password,
                    client_secret,
                }),
                None => {
                    issues.push(issue(
                        "keycloak_password",
                        format!("is required with keycloak_username '{username}'"),
                    ));
                    None
                }
            },
            (None, Some(client_secret)) => Some(KeycloakAuth::ClientCredentials { client_secret }),
            (None, None) => {
                issues.push(issue(
                    "keycloak_username",
                    "is required (with keycloak_password), or give keycloak_client_secret to log in as the client's service account".into(),
                ));
                None
            }
        };
        let (verify_tls, ca_bundle) = match m.get("keycloak_ssl_verify") {
            None | Some(Value::Null) | Some(Value::Bool(true)) => (true, None),
            Some(Value::Bool(false)) => (false, None),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "" | "true" | "yes" | "1" => (true, None),
                "false" | "no" | "0" => (false, None),
                _ => (true, Some(PathBuf::from(s.trim()))),
            },
            Some(other) => {
                issues.push(issue(
                    "keycloak_ssl_verify",
                    format!("must be true, false or a CA bundle path, got {other}"),
                ));
                (true, None)
            }
        };
        match (url, auth) {
            (Some(url), Some(auth)) if issues.is_empty() => Ok(KeycloakConfig {
                url,
                realm,
                user_realm,
                client_id,
                auth,
                verify_tls,
                ca_bundle,
            }),
            _ => Err(issues),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_block_parses() {
        let c = KeycloakConfig::parse(
            "keycloak",
            &json!({"keycloak_url": "https://keycloak.example.com/auth/", "keycloak_realm": "waldur",
                "keycloak_user_realm": "master", "keycloak_username": "keycloak-admin",
                "keycloak_password": "pw", "keycloak_ssl_verify": true, "keycloak_sync_frequency": 15}),
        )
        .expect("parses");
        assert_eq!(c.client_id, "admin-cli");
        assert!(matches!(c.auth, KeycloakAuth::Password { .. }));
        assert!(!format!("{c:?}").contains("pw\""));
    }

    #[test]
    fn client_credentials_and_problems() {
        let c = KeycloakConfig::parse(
            "keycloak",
            &json!({"keycloak_url": "http://kc", "client_id": "agent", "keycloak_client_secret": "s", "keycloak_ssl_verify": "false"}),
        )
        .expect("parses");
        assert!(matches!(c.auth, KeycloakAuth::ClientCredentials { .. }));
        assert!(!c.verify_tls);
        let issues = KeycloakConfig::parse(
            "keycloak",
            &json!({"keycloak_url": "ftp://x", "keycloak_username": "a", "keycloak_pasword": "typo"}),
        )
        .expect_err("three problems");
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert!(
            paths.contains(&"backend_settings.keycloak.keycloak_pasword"),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"backend_settings.keycloak.keycloak_url"),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"backend_settings.keycloak.keycloak_password"),
            "{paths:?}"
        );
    }
}
