//! The loader against the seed READMEs' example configurations and deliberately broken files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use agent_config::{
    AccountingType, BackendRole, ConfigErrors, Loaded, load_str_with_env, validate_backend_names,
};
use serde_json::{Map, Value};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel)).expect("fixture is readable")
}

/// The variables the seed examples reference, as an operator would export them.
fn seed_env(name: &str) -> Option<String> {
    let vars: HashMap<&str, &str> = [
        ("WALDUR_API_TOKEN", "waldur-token-from-env"),
        ("OPENSTACK_PASSWORD", "openstack-password-from-env"),
        ("STOMP_PASSWORD", "stomp-password-from-env"),
    ]
    .into_iter()
    .collect();
    vars.get(name).map(|v| (*v).to_owned())
}

fn load(rel: &str) -> Result<Loaded, ConfigErrors> {
    load_str_with_env(&read(rel), rel, &seed_env)
}

fn load_ok(rel: &str) -> Loaded {
    match load(rel) {
        Ok(l) => l,
        Err(e) => panic!("{rel} must load, got:\n{e}"),
    }
}

fn load_err(rel: &str) -> ConfigErrors {
    match load(rel) {
        Ok(l) => panic!("{rel} must not load, got {:?}", l.config),
        Err(e) => e,
    }
}

fn rendered(errors: &ConfigErrors) -> Vec<String> {
    errors.errors.iter().map(ToString::to_string).collect()
}

fn has_warning(loaded: &Loaded, path: &str, reason_part: &str) -> bool {
    loaded
        .warnings
        .iter()
        .any(|w| w.path == path && w.reason.contains(reason_part))
}

// ---------------------------------------------------------------- complete seed examples

#[test]
fn openstack_keystone_seed_loads_with_expanded_secrets() {
    let loaded = load_ok("seeds/openstack-keystone.yaml");
    let o = &loaded.config.offerings[0];
    assert_eq!(o.waldur_api_url, "https://waldur.example.com/api/");
    assert_eq!(o.waldur_api_token.expose(), "waldur-token-from-env");
    assert_eq!(
        o.setting_str("password"),
        Some("openstack-password-from-env")
    );
    assert_eq!(o.backend_type, "openstack");
    assert!(o.stomp_enabled);
    assert_eq!(
        o.role_backend(BackendRole::MembershipSync),
        Some("openstack")
    );
    // No `name` in this example: the UUID stands in, with a warning.
    assert_eq!(o.name, "your-offering-uuid");
    assert!(has_warning(&loaded, "offerings[0].name", "missing"));
    // stomp_host/port/username/password are not keys of ours: warned, not fatal.
    for key in [
        "stomp_host",
        "stomp_port",
        "stomp_username",
        "stomp_password",
    ] {
        assert!(
            has_warning(&loaded, &format!("offerings[0].{key}"), "unknown key"),
            "{key} should be warned about: {:?}",
            loaded.warnings
        );
    }
    // The STOMP password sits under an unknown key but is still known as a secret.
    assert!(
        loaded
            .secrets
            .iter()
            .any(|s| s == "stomp-password-from-env")
    );
    assert!(
        loaded
            .secrets
            .iter()
            .any(|s| s == "openstack-password-from-env")
    );
    assert!(loaded.secrets.iter().any(|s| s == "waldur-token-from-env"));
}

#[test]
fn core_reference_seed_loads_both_offerings() {
    let loaded = load_ok("seeds/core-reference.yaml");
    let cfg = &loaded.config;
    assert_eq!(cfg.sentry_dsn, None, "empty sentry_dsn means no Sentry");
    assert_eq!(cfg.timezone, "UTC");
    assert_eq!(cfg.offerings.len(), 2);
    let slurm = &cfg.offerings[0];
    assert_eq!(slurm.name, "Example SLURM Offering");
    assert_eq!(slurm.waldur_api_url, "http://localhost:8081/api/");
    assert!(slurm.mqtt_enabled);
    assert!(slurm.resource_import_enabled);
    let keys: Vec<&str> = slurm
        .backend_components
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["cpu", "mem"], "file order is kept");
    let cpu = &slurm.backend_components["cpu"];
    assert_eq!(cpu.unit_factor, 60000.0);
    assert_eq!(cpu.accounting_type, AccountingType::Usage);
    assert_eq!(slurm.backend_components["mem"].limit, Some(10.0));
    let moab = &cfg.offerings[1];
    assert_eq!(moab.backend_components["deposit"].label, "Deposit (EUR)");
    assert_eq!(
        moab.backend_components["deposit"].accounting_type,
        AccountingType::Limit
    );
    // The template's blank token and UUID load, and are pointed out.
    assert!(has_warning(
        &loaded,
        "offerings[0].waldur_api_token",
        "empty"
    ));
    assert!(has_warning(
        &loaded,
        "offerings[1].waldur_offering_uuid",
        "empty"
    ));
}

#[test]
fn rancher_seed_loads() {
    let loaded = load_ok("seeds/rancher-offering.yaml");
    let o = &loaded.config.offerings[0];
    assert_eq!(o.waldur_api_url, "https://your-waldur.com/");
    assert_eq!(o.backend_components.len(), 3);
    assert_eq!(o.backend_components["memory"].label, "Memory (GB)");
    // `type` is a known pass-through component key: no warning for it.
    assert_eq!(
        o.backend_components["cpu"].extra["type"],
        Value::from("cpu")
    );
    assert!(!loaded.warnings.iter().any(|w| w.path.ends_with(".type")));
    let keycloak_password = o.backend_settings["keycloak"]["keycloak_password"].as_str();
    assert_eq!(keycloak_password, Some("your-keycloak-password"));
    assert!(loaded.secrets.iter().any(|s| s == "your-keycloak-password"));
    assert!(loaded.secrets.iter().any(|s| s == "your-secret-key"));
}

#[test]
fn rancher_legacy_layout_seeds_load() {
    for rel in [
        "seeds/rancher-legacy-projects.yaml",
        "seeds/rancher-legacy-keycloak.yaml",
    ] {
        let loaded = load_ok(rel);
        let o = &loaded.config.offerings[0];
        assert_eq!(o.waldur_api_url, "https://waldur.example.com/api/", "{rel}");
        assert_eq!(o.waldur_api_token.expose(), "your-waldur-api-token-here");
        assert_eq!(
            o.waldur_offering_uuid,
            "12345678-1234-5678-9abc-123456789012"
        );
        assert_eq!(o.setting_str("cluster_id"), Some("c-m-1234abcd"));
        let cpu = &o.backend_components["cpu"];
        assert_eq!(cpu.label, "CPU");
        assert_eq!(cpu.accounting_type, AccountingType::Fixed);
        assert!(has_warning(&loaded, "waldur", "legacy section"), "{rel}");
        assert!(has_warning(
            &loaded,
            "offerings[0].backend",
            "backend_settings"
        ));
        assert!(has_warning(
            &loaded,
            "offerings[0].components",
            "backend_components"
        ));
    }
    let keycloak = load_ok("seeds/rancher-legacy-keycloak.yaml");
    assert_eq!(keycloak.config.offerings[0].backend_components.len(), 4);
}

// ---------------------------------------------------------------- excerpts
//
// Several README examples show only the part of a config that their section is about (no Waldur
// connection, or only `backend_settings`). Each is kept verbatim and loaded inside a minimal
// complete configuration: the excerpt's own keys win over the template's.

fn template_offering() -> Map<String, Value> {
    let v = serde_json::json!({
        "name": "excerpt",
        "waldur_api_url": "https://waldur.example.com/api/",
        "waldur_api_token": "template-token",
        "waldur_offering_uuid": "0123456789abcdef0123456789abcdef",
        "backend_type": "slurm",
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("literal object"),
    }
}

fn parse_excerpt(rel: &str) -> Map<String, Value> {
    match serde_saphyr::from_str::<Value>(&read(rel)).expect("excerpt is YAML") {
        Value::Object(m) => m,
        other => panic!("{rel}: excerpt is not a mapping: {other}"),
    }
}

fn load_json(root: Value, rel: &str) -> Result<Loaded, ConfigErrors> {
    // JSON is YAML, so the merged tree goes through the normal loader.
    load_str_with_env(&root.to_string(), rel, &seed_env)
}

/// Offerings that leave out the Waldur connection.
fn load_root_excerpt(rel: &str) -> Result<Loaded, ConfigErrors> {
    let mut root = parse_excerpt(rel);
    match root.get_mut("offerings") {
        Some(Value::Array(offerings)) => {
            for o in offerings {
                let Value::Object(o) = o else { continue };
                for (k, v) in template_offering() {
                    let aliased = (k == "waldur_offering_uuid" && o.contains_key("uuid"))
                        || (k == "waldur_api_url" && o.contains_key("api_url"));
                    if !aliased {
                        o.entry(k).or_insert(v);
                    }
                }
            }
        }
        _ => {
            root.insert(
                "offerings".to_owned(),
                Value::Array(vec![Value::Object(template_offering())]),
            );
        }
    }
    load_json(Value::Object(root), rel)
}

/// Keys of one offering only.
fn load_offering_excerpt(rel: &str) -> Result<Loaded, ConfigErrors> {
    let mut offering = template_offering();
    offering.extend(parse_excerpt(rel));
    load_json(serde_json::json!({ "offerings": [offering] }), rel)
}

#[test]
fn opennebula_excerpts_load() {
    for rel in [
        "seeds/excerpts/opennebula-vdc.yaml",
        "seeds/excerpts/opennebula-vm.yaml",
    ] {
        let loaded = load_root_excerpt(rel).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let o = &loaded.config.offerings[0];
        assert_eq!(o.backend_type, "opennebula");
        assert!(o.backend_components.is_empty());
        assert!(loaded.secrets.iter().any(|s| s == "oneadmin:password"));
    }
    let vm = load_root_excerpt("seeds/excerpts/opennebula-vm.yaml").expect("loads");
    assert_eq!(
        vm.config.offerings[0].backend_settings["template_id"],
        Value::from(0)
    );
}

#[test]
fn okd_excerpts_load() {
    for rel in [
        "seeds/excerpts/okd-offering.yaml",
        "seeds/excerpts/okd-static-token.yaml",
        "seeds/excerpts/okd-service-account-token.yaml",
        "seeds/excerpts/okd-file-token.yaml",
        "seeds/excerpts/okd-oauth-token.yaml",
        "seeds/excerpts/rancher-roles.yaml",
        "seeds/excerpts/rancher-component.yaml",
    ] {
        load_offering_excerpt(rel).unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
    let okd = load_offering_excerpt("seeds/excerpts/okd-offering.yaml").expect("loads");
    let o = &okd.config.offerings[0];
    assert_eq!(o.backend_type, "okd");
    // No labels in this example: the component key is used, with a warning.
    assert_eq!(o.backend_components["pods"].label, "pods");
    assert!(has_warning(
        &okd,
        "offerings[0].backend_components.cpu.label",
        "missing"
    ));
    let oauth = load_offering_excerpt("seeds/excerpts/okd-oauth-token.yaml").expect("loads");
    for secret in ["your-oauth-client-secret", "your-refresh-token"] {
        assert!(oauth.secrets.iter().any(|s| s == secret), "{secret}");
    }
}

#[test]
fn root_level_excerpts_load_with_warnings() {
    let events = load_root_excerpt("seeds/excerpts/okd-event-processing.yaml").expect("loads");
    assert!(has_warning(&events, "agent_mode", "unknown key"));
    assert!(has_warning(&events, "event_processing", "unknown key"));
    assert!(events.secrets.iter().any(|s| s == "your-secure-password"));

    let logging = load_root_excerpt("seeds/excerpts/rancher-logging.yaml").expect("loads");
    assert_eq!(logging.config.log_level, "DEBUG");
    assert!(has_warning(&logging, "logging.level", "log_level"));
}

#[test]
fn rancher_gpu_pool_excerpt_lacks_only_billing_types() {
    // This README example omits `accounting_type` (and `billing_type`) on every component; upstream
    // rejects that too. Everything else in it loads, and each gap is reported at its own path.
    let err = load_root_excerpt("seeds/excerpts/rancher-gpu-pools.yaml").expect_err("incomplete");
    let mut paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    paths.sort_unstable();
    let mut expected = Vec::new();
    for i in 0..2 {
        for c in ["cpu", "gpu", "memory"] {
            expected.push(format!(
                "offerings[{i}].backend_components.{c}.accounting_type"
            ));
        }
    }
    assert_eq!(paths, expected);
    assert!(
        err.errors
            .iter()
            .all(|e| e.reason == "required key is missing")
    );
}

#[test]
fn elided_core_example_is_reported_with_its_line() {
    // The core README's "..." example elides lines; it is not YAML, and says where.
    let err = load("seeds/excerpts/core-elided.yaml").expect_err("pseudo-YAML");
    assert_eq!(err.errors.len(), 1);
    assert!(err.errors[0].line.is_some());
    assert!(
        err.errors[0].reason.starts_with("invalid YAML"),
        "{}",
        err.errors[0]
    );
}

// ---------------------------------------------------------------- broken files

#[test]
fn bad_yaml_reports_the_line() {
    let err = load_err("broken/bad-yaml.yaml");
    assert_eq!(err.errors.len(), 1, "{err}");
    let e = &err.errors[0];
    let line = e.line.expect("a line number");
    assert!((4..=6).contains(&line), "line {line}: {e}");
    assert!(
        e.to_string()
            .starts_with(&format!("broken/bad-yaml.yaml:{line}: invalid YAML")),
        "{e}"
    );
}

#[test]
fn wrong_type_reports_key_path() {
    let err = load_err("broken/wrong-type.yaml");
    assert_eq!(
        rendered(&err),
        [
            "broken/wrong-type.yaml: offerings[0].verify_ssl: invalid type: string \"sometimes\", expected a boolean"
        ]
    );
}

#[test]
fn unknown_accounting_type_is_rejected() {
    let err = load_err("broken/unknown-accounting-type.yaml");
    assert_eq!(err.errors.len(), 1, "{err}");
    assert_eq!(
        err.errors[0].path,
        "offerings[0].backend_components.cpu.accounting_type"
    );
    assert!(
        err.errors[0].reason.contains("unknown variant `hourly`")
            && err.errors[0].reason.contains("`usage`, `limit`, `one`"),
        "{}",
        err.errors[0]
    );
}

#[test]
fn missing_variable_is_named() {
    let err = load_err("broken/missing-variable.yaml");
    assert_eq!(err.errors.len(), 1, "{err}");
    assert_eq!(err.errors[0].path, "offerings[0].waldur_api_token");
    assert!(
        err.errors[0]
            .reason
            .starts_with("environment variable WALDUR_TEST_TOKEN_THAT_IS_NOT_SET is not set"),
        "{}",
        err.errors[0]
    );
}

#[test]
fn bad_timezone_is_rejected() {
    let err = load_err("broken/bad-timezone.yaml");
    assert_eq!(err.errors.len(), 1, "{err}");
    assert_eq!(err.errors[0].path, "timezone");
    assert!(
        err.errors[0]
            .reason
            .starts_with("'Mars/Olympus_Mons' is not a known IANA time zone"),
        "{}",
        err.errors[0]
    );
}

#[test]
fn missing_credentials_are_rejected() {
    let err = load_err("broken/no-credentials.yaml");
    assert_eq!(
        rendered(&err),
        [
            "broken/no-credentials.yaml: offerings[0].waldur_api_token: no credentials: set waldur_api_token, or all of oidc_token_url, oidc_client_id and oidc_client_secret"
        ]
    );
}

#[test]
fn reporting_periods_zero_is_rejected() {
    let err = load_err("broken/reporting-periods-zero.yaml");
    assert_eq!(
        rendered(&err),
        [
            "broken/reporting-periods-zero.yaml: reporting_periods: must be between 1 and 12 (months reported), found 0"
        ]
    );
}

#[test]
fn hostile_prefixes_and_account_names_are_refused_offline() {
    let err = load_err("broken/hostile-names.yaml");
    let f = "broken/hostile-names.yaml";
    assert_eq!(
        rendered(&err),
        [
            format!(
                "{f}: offerings[0].backend_settings.allocation_prefix: 'x;rm -rf /' is not a usable prefix: character U+003B (';') is not allowed (only ASCII letters, digits, '_', '-', '.' and '@')"
            ),
            format!(
                "{f}: offerings[1].backend_settings.allocation_prefix: '-i' is not a usable prefix: it starts with '-' and would be read as an option"
            ),
            format!(
                "{f}: offerings[1].backend_settings.namespace_prefix: expected a string prefix, found a number"
            ),
            format!(
                "{f}: offerings[1].backend_settings.default_account: 'ro\\u{{200b}}ot' is not a usable name: character U+200B (ZERO WIDTH SPACE) is not allowed (only ASCII letters, digits, '_', '-', '.' and '@')"
            ),
            format!(
                "{f}: offerings[1].backend_settings.qos_paused: 'paused\\u{{202e}}' is not a usable name: character U+202E (RIGHT-TO-LEFT OVERRIDE) is not allowed (only ASCII letters, digits, '_', '-', '.' and '@')"
            ),
        ]
    );
    // The empty customer_prefix and the ordinary project_prefix of offering 0 are fine.
    assert!(
        err.errors
            .iter()
            .all(|e| !e.path.ends_with("customer_prefix") && !e.path.ends_with("project_prefix")),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = load_err("broken/many-problems.yaml");
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "log_level",
        "reporting_periods",
        "log_shipping.ship_interval_seconds",
        "offerings[0].waldur_api_url",
        "offerings[0].backend_settings.default_homedir_umask",
        "offerings[0].backend_components.cpu.measured_unit",
        "offerings[0].backend_components.mem.limit_period",
        "offerings[1].oidc_client_secret",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    assert_eq!(paths.len(), 8, "{err}");
}

#[test]
fn unknown_keys_are_warnings_and_values_are_normalised() {
    let loaded = load_ok("warnings/unknown-keys.yaml");
    assert!(has_warning(&loaded, "colour", "unknown key"));
    assert!(has_warning(
        &loaded,
        "offerings[0].stomp_enabeld",
        "unknown key"
    ));
    assert!(has_warning(
        &loaded,
        "offerings[0].backend_components.cpu.unit_facter",
        "not a known component key"
    ));
    assert_eq!(
        loaded.warnings[0].to_string(),
        format!(
            "warnings/unknown-keys.yaml: {}: {}",
            loaded.warnings[0].path, loaded.warnings[0].reason
        )
    );
    let o = &loaded.config.offerings[0];
    assert_eq!(o.waldur_api_url, "https://waldur.example.com/api/");
    assert_eq!(o.backend_type, "slurm");
    assert_eq!(loaded.config.log_level, "INFO");
}

#[test]
fn debug_output_hides_secrets() {
    let loaded = load_ok("seeds/openstack-keystone.yaml");
    let debug = format!("{loaded:?}");
    assert!(!debug.contains("waldur-token-from-env"), "{debug}");
    assert!(debug.contains("***"));
    // backend_settings is free-form JSON: its Debug shows values, so callers must not log it raw;
    // the config's Secret fields and the collected secret list never print.
    assert!(!format!("{:?}", loaded.secrets).contains("password"));
    assert!(!format!("{:?}", loaded.config.offerings[0].waldur_api_token).contains("waldur"));
}

#[test]
fn backend_names_are_checked_against_the_build() {
    let loaded = load_ok("seeds/core-reference.yaml");
    let errors = validate_backend_names(
        &loaded.config,
        |role, name| name == "slurm" || (role == BackendRole::UsernameManagement && name == "base"),
        &["slurm"],
    );
    let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "offerings[1].order_processing_backend: unknown backend 'moab' (this build has: slurm)",
            "offerings[1].membership_sync_backend: unknown backend 'moab' (this build has: slurm)",
            "offerings[1].reporting_backend: unknown backend 'moab' (this build has: slurm)",
        ]
    );
    assert_eq!(
        errors[0].clone().in_file("c.yaml").to_string(),
        "c.yaml: offerings[1].order_processing_backend: unknown backend 'moab' (this build has: slurm)"
    );
}

// ---------------------------------------------------------------- upstream 1.0.8 rules

fn offering_with(extra: Value) -> Result<Loaded, ConfigErrors> {
    let mut offering = template_offering();
    if let Value::Object(m) = extra {
        offering.extend(m);
    }
    load_json(serde_json::json!({ "offerings": [offering] }), "rules.yaml")
}

/// The three OIDC keys go together, also next to a static token (upstream 1.0.8).
#[test]
fn oidc_keys_are_all_set_or_all_unset() {
    let err = offering_with(serde_json::json!({
        "oidc_token_url": "https://sso.example.com/token",
        "oidc_client_id": "agent"
    }))
    .expect_err("two of three OIDC keys");
    assert_eq!(
        rendered(&err),
        [
            "rules.yaml: offerings[0].oidc_client_secret: oidc_token_url, oidc_client_id and oidc_client_secret must be set together; missing: oidc_client_secret"
        ]
    );
    offering_with(serde_json::json!({
        "oidc_token_url": "https://sso.example.com/token",
        "oidc_client_id": "agent",
        "oidc_client_secret": "s3cret"
    }))
    .expect("all three, next to a token");
}

/// STOMP logs in with the static token: an OIDC-only offering cannot have `stomp_enabled`.
#[test]
fn stomp_needs_a_static_token() {
    let oidc_only = serde_json::json!({
        "waldur_api_token": "",
        "oidc_token_url": "https://sso.example.com/token",
        "oidc_client_id": "agent",
        "oidc_client_secret": "s3cret",
        "stomp_enabled": true
    });
    let err = offering_with(oidc_only).expect_err("stomp with OIDC only");
    assert_eq!(rendered(&err).len(), 1);
    assert!(
        rendered(&err)[0].starts_with(
            "rules.yaml: offerings[0].stomp_enabled: stomp_enabled needs waldur_api_token"
        ),
        "{:?}",
        rendered(&err)
    );
    offering_with(serde_json::json!({"stomp_enabled": true})).expect("token and STOMP");
}

/// The two 1.0.7 offering keys load (default off).
#[test]
fn upstream_107_offering_keys_load() {
    let loaded = offering_with(serde_json::json!({
        "preserve_unmanaged_backend_users": true,
        "omit_anomalous_usage_components": true
    }))
    .expect("loads");
    let o = &loaded.config.offerings[0];
    assert!(o.preserve_unmanaged_backend_users && o.omit_anomalous_usage_components);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let plain = offering_with(serde_json::json!({})).expect("loads");
    assert!(!plain.config.offerings[0].preserve_unmanaged_backend_users);
    assert!(!plain.config.offerings[0].omit_anomalous_usage_components);
}

/// `global_proxy`: http, https, socks5 and socks5h; anything else is refused.
#[test]
fn global_proxy_schemes() {
    for proxy in [
        "http://proxy:3128",
        "https://proxy:3129",
        "socks5://proxy:1080",
        "socks5h://user:pw@proxy:1080",
    ] {
        let mut root = serde_json::json!({ "offerings": [template_offering()] });
        root["global_proxy"] = Value::String(proxy.into());
        load_json(root, "proxy.yaml").unwrap_or_else(|e| panic!("{proxy}: {:?}", rendered(&e)));
    }
    let mut root = serde_json::json!({ "offerings": [template_offering()] });
    root["global_proxy"] = Value::String("ftp://proxy:21".into());
    let err = load_json(root, "proxy.yaml").expect_err("ftp proxy");
    assert!(
        rendered(&err)[0].contains("global_proxy"),
        "{:?}",
        rendered(&err)
    );
}
