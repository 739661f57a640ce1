//! A site prepared by the upstream plugin itself (`waldur-site-agent-rancher` 1.0.7 from PyPI,
//! Keycloak enabled) against the doubles is taken over by this backend: the project found by the
//! id upstream recorded, its members read, a new member added and limits changed without a
//! duplicate group or binding, and terminate cleans up. Needs the Python venv of
//! `crates/site-sim/tests/rancher-plugin/run.sh` (`SITE_SIM_VENV`, default
//! `/tmp/waldur-site-sim-venv`): without it the test prints a note and passes, except under
//! `CI=true`, where it installs the plugin with pip (and fails when it cannot).

use std::path::PathBuf;
use std::process::Command;

use agent_config::{AccountingType, BackendComponent};
use backend_api::{MembershipBackend, OrderBackend, ResourceView, UserGrant};
use backend_rancher::{RancherBackend, RancherSettings};
use indexmap::IndexMap;
use serde_json::{Value, json};
use site_sim::{KeycloakOptions, RancherOptions, RancherStack};

fn venv() -> PathBuf {
    PathBuf::from(
        std::env::var("SITE_SIM_VENV").unwrap_or_else(|_| "/tmp/waldur-site-sim-venv".into()),
    )
}

fn plugin_ready() -> bool {
    Command::new(venv().join("bin/python"))
        .args(["-c", "import waldur_site_agent_rancher"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The venv with the plugin: there, installed under CI, or `None` (a note outside CI).
fn python() -> Option<PathBuf> {
    if plugin_ready() {
        return Some(venv().join("bin/python"));
    }
    if !in_ci() {
        eprintln!(
            "NOTE: skipping the upstream takeover check: waldur-site-agent-rancher is not installed in {} (bash crates/site-sim/tests/rancher-plugin/run.sh makes it); under CI=true it installs and runs",
            venv().display()
        );
        return None;
    }
    if !venv().join("bin/python").exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv())
            .status()
            .expect("python3 runs");
        assert!(made.success(), "making the venv {}", venv().display());
    }
    let pip = Command::new(venv().join("bin/pip"))
        .args([
            "install",
            "-q",
            "waldur-site-agent==1.0.7",
            "waldur-site-agent-rancher==1.0.7",
        ])
        .status()
        .expect("pip runs");
    assert!(pip.success(), "pip install of the upstream plugin failed");
    Some(venv().join("bin/python"))
}

fn component(kind: &str) -> BackendComponent {
    BackendComponent {
        measured_unit: "unit".into(),
        unit_factor: 1.0,
        unit_factor_reporting: None,
        accounting_type: AccountingType::Limit,
        label: kind.into(),
        limit: None,
        extra: [("type".to_owned(), json!(kind))].into_iter().collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_prepared_by_the_upstream_plugin_is_taken_over() {
    let Some(python) = python() else { return };
    let s = RancherStack::start(
        RancherOptions::default(),
        KeycloakOptions {
            demo: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .expect("doubles");
    let dir = tempfile::tempdir().expect("tempdir");
    let info_path = dir.path().join("info.json");
    std::fs::write(&info_path, serde_json::to_string(&s.info()).expect("json")).expect("write");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upstream-prepare.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .env("SIM_INFO", &info_path)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the upstream plugin failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let project_id = stdout.lines().last().expect("backend id").trim().to_owned();
    assert!(project_id.contains(":p-"), "{project_id}");
    let groups_before = s.keycloak.groups("waldur");
    assert_eq!(groups_before.len(), 2, "{groups_before:?}");
    assert_eq!(s.rancher.bindings().len(), 1);

    let i = s.info();
    let Value::Object(map) = json!({
        "backend_url": i.rancher.url, "username": i.rancher.access_key, "password": i.rancher.secret_key,
        "cluster_id": i.rancher.cluster_id, "keycloak_enabled": true, "keycloak_use_user_id": false,
        "keycloak": {"keycloak_url": i.keycloak_url, "keycloak_realm": "waldur", "keycloak_user_realm": "master",
                     "keycloak_username": i.keycloak_username, "keycloak_password": i.keycloak_password},
    }) else {
        unreachable!()
    };
    let components: IndexMap<String, BackendComponent> = [("cpu", "cpu"), ("memory", "ram")]
        .into_iter()
        .map(|(k, t)| (k.to_owned(), component(t)))
        .collect();
    let b = RancherBackend::new(
        "takeover",
        RancherSettings::parse(&map).expect("settings"),
        components,
        None,
    )
    .expect("backend");
    let r = ResourceView {
        backend_id: project_id.clone(),
        slug: "legacy".into(),
        project_slug: "physics".into(),
        customer_slug: "uni".into(),
        ..Default::default()
    };
    let info = b.pull_resource(&r).await.expect("pull").expect("found");
    assert_eq!(info.users, vec!["alice".to_owned()]);
    assert_eq!(info.limits.get("cpu"), Some(&2.0));
    assert_eq!(info.limits.get("memory"), Some(&4.0));
    let added = b
        .add_users(
            &r,
            &[UserGrant {
                username: "bob".into(),
                ..Default::default()
            }],
        )
        .await
        .expect("add");
    assert_eq!(added, vec!["bob".to_owned()]);
    let limits = [("cpu".to_owned(), 3.0), ("memory".to_owned(), 8.0)]
        .into_iter()
        .collect();
    b.set_limits(&r, &limits).await.expect("limits");
    let quota = s
        .kubernetes
        .object("resourcequotas", "waldur-legacy", "custom-resource-quota")
        .expect("upstream's quota");
    assert_eq!(
        quota["spec"]["hard"],
        json!({"limits.cpu": "3", "limits.memory": "8Gi"})
    );
    let groups = s.keycloak.groups("waldur");
    assert_eq!(groups.len(), 2, "no duplicate group: {groups:?}");
    assert_eq!(groups[1].1, vec!["alice".to_owned(), "bob".to_owned()]);
    assert_eq!(s.rancher.bindings().len(), 1, "no duplicate binding");
    assert_eq!(s.rancher.projects().len(), 1);
    b.delete_resource(&r).await.expect("delete");
    assert!(s.rancher.projects().is_empty());
    assert!(s.keycloak.groups("waldur").is_empty());
}
