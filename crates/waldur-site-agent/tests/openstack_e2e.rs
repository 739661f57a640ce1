//! End to end through the binary: `waldur-sim --demo` (in process) and the real Keystone started
//! by `bash scripts/services/keystone-up.sh`. Orders and project membership go through the
//! simulator's REST API; the agent runs `--once` per mode; Keystone is checked through its API.
//!
//! Without Keystone: with `CI=true` the test fails saying how to start it; otherwise it prints a
//! note and returns.

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use backend_openstack::{KeystoneClient, OpenStackSettings};
use serde_json::{Value, json};
use waldur_sim::SimServer;
use waldur_sim::consumer::ConsumerClient;

const ENV_FILE: &str = "/tmp/waldur-services/keystone/env.sh";

mod common;

use common::agent;
use common::limits;

fn keystone_url() -> Option<String> {
    let url = std::fs::read_to_string(ENV_FILE).ok().and_then(|text| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("OS_AUTH_URL="))
            .map(str::to_owned)
    });
    let reachable = url.as_ref().is_some_and(|u| {
        Process::new("curl")
            .args(["-sf", "--max-time", "5", u])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if reachable {
        return url;
    }
    let msg = "real Keystone is not running: start it with `bash scripts/services/keystone-up.sh`";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("note: skipping: {msg}");
    None
}

fn settings(auth_url: &str, password: &str) -> Value {
    json!({
        "auth_url": auth_url,
        "username": "admin",
        "password": password,
        "project_name": "admin",
        "domain_name": "Default",
        "default_role": "member",
        "create_users_if_not_exist": true,
        "sync_user_emails": true,
        "project_prefix": "",
        "limits_mapping": {"gpu": {"service": "compute", "resource_name": "e2e_gpus"}}
    })
}

fn write_config(path: &Path, sim: &SimServer, auth_url: &str, password: &str, prefix: &str) {
    let demo = sim.demo();
    let mut backend_settings = settings(auth_url, password);
    backend_settings["project_prefix"] = json!(prefix);
    let config = json!({
        "offerings": [{
            "name": "keystone-e2e",
            "waldur_api_url": demo.api_url,
            "waldur_api_token": demo.provider_token,
            "waldur_offering_uuid": demo.offering_uuid,
            "backend_type": "openstack",
            "order_processing_backend": "openstack",
            "membership_sync_backend": "openstack",
            "backend_settings": backend_settings,
            "backend_components": {
                "gpu": {"measured_unit": "gpu-Hours", "accounting_type": "limit", "label": "GPU"}
            }
        }]
    });
    // JSON is YAML.
    std::fs::write(path, serde_json::to_string_pretty(&config).expect("json"))
        .expect("config written");
}

struct Keystone {
    client: KeystoneClient,
    domain: String,
}

impl Keystone {
    async fn new(auth_url: &str) -> Keystone {
        let parsed = OpenStackSettings::from_backend_settings(
            "e2e",
            settings(auth_url, "admin").as_object().expect("object"),
        )
        .expect("settings");
        let client = KeystoneClient::new("e2e", &parsed).expect("client");
        if !client
            .list_services()
            .await
            .expect("services")
            .iter()
            .any(|s| s.service_type == "compute")
        {
            client
                .create_service("compute", "nova")
                .await
                .expect("compute service");
        }
        let domain = client
            .find_domain_id("Default")
            .await
            .expect("domain")
            .expect("Default domain exists");
        Keystone { client, domain }
    }

    async fn project(&self, name: &str) -> Option<backend_openstack::keystone::Project> {
        self.client
            .find_project(name, &self.domain)
            .await
            .expect("find project")
    }

    async fn members(&self, project_id: &str) -> Vec<String> {
        self.client
            .role_assignments(&[("scope.project.id", project_id)])
            .await
            .expect("assignments")
            .into_iter()
            .filter_map(|a| a.user.map(|u| u.name))
            .collect()
    }

    async fn projects_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .client
            .list_projects(&self.domain)
            .await
            .expect("projects")
            .into_iter()
            .filter(|p| p.name.starts_with(prefix))
            .map(|p| p.name)
            .collect();
        names.sort();
        names
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_members_pause_and_terminate_reach_real_keystone() {
    let Some(auth_url) = keystone_url() else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let keystone = Keystone::new(&auth_url).await;
    let sim = SimServer::start_demo().await.expect("simulator");
    let demo = sim.demo().clone();
    let prefix = format!("e2e{}-", std::process::id() % 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let config: PathBuf = dir.path().join("config.yaml");
    write_config(&config, &sim, &auth_url, "admin", &prefix);
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let staff = ConsumerClient::new(&demo.api_url, &demo.staff_token);

    // Create: a Keystone project with its unified limit.
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("gpu", 7)]),
            "os alloc",
        )
        .await
        .expect("create order");
    let (ok, log) = agent(&config, "order_process");
    assert!(ok, "order_process failed:\n{log}");
    let o = consumer.order(&order).await.expect("order");
    assert_eq!(o["state"], "done", "{o}");
    let resource_uuid = o["marketplace_resource_uuid"]
        .as_str()
        .expect("resource")
        .to_owned();
    let name = consumer.resource(&resource_uuid).await.expect("resource")["backend_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let project = keystone
        .project(&name)
        .await
        .expect("the Keystone project exists");
    assert!(project.enabled);
    let limit = keystone
        .client
        .project_limits(&project.id)
        .await
        .expect("limits");
    assert!(
        limit
            .iter()
            .any(|l| l.resource_name == "e2e_gpus" && l.resource_limit == 7),
        "{limit:?}"
    );

    // A user added to the Waldur project gets the role; removal revokes it.
    let member = demo.users.first().expect("users").clone();
    consumer
        .add_user_to_project(&demo.project_uuid, &member.uuid, "PROJECT.MEMBER")
        .await
        .expect("add user");
    let (ok, log) = agent(&config, "membership_sync");
    assert!(ok, "{log}");
    assert!(
        keystone
            .members(&project.id)
            .await
            .contains(&member.username),
        "{:?}",
        keystone.members(&project.id).await
    );

    // Pause disables the project; unpausing enables it.
    staff
        .post(
            &format!("marketplace-resources/{resource_uuid}/set_paused/"),
            json!({"paused": true}),
        )
        .await
        .expect("pause");
    assert!(agent(&config, "membership_sync").0);
    assert!(
        !keystone.project(&name).await.expect("project").enabled,
        "paused project must be disabled"
    );
    staff
        .post(
            &format!("marketplace-resources/{resource_uuid}/set_paused/"),
            json!({"paused": false}),
        )
        .await
        .expect("unpause");
    assert!(agent(&config, "membership_sync").0);
    assert!(keystone.project(&name).await.expect("project").enabled);

    // A second run changes nothing.
    let before = (
        keystone.projects_with_prefix(&prefix).await,
        keystone.members(&project.id).await,
    );
    agent(&config, "order_process");
    agent(&config, "membership_sync");
    assert_eq!(
        (
            keystone.projects_with_prefix(&prefix).await,
            keystone.members(&project.id).await
        ),
        before
    );

    consumer
        .remove_user_from_project(&demo.project_uuid, &member.uuid, "PROJECT.MEMBER")
        .await
        .expect("remove user");
    assert!(agent(&config, "membership_sync").0);
    assert!(
        !keystone
            .members(&project.id)
            .await
            .contains(&member.username),
        "role must be revoked"
    );

    // Terminate removes the project.
    let terminate = consumer.terminate(&resource_uuid).await.expect("terminate");
    assert!(agent(&config, "order_process").0);
    assert_eq!(
        consumer.order(&terminate).await.expect("order")["state"],
        "done"
    );
    assert!(
        keystone.project(&name).await.is_none(),
        "terminated project still exists"
    );

    // A wrong password: one clear error naming the offering, no crash, no secret in the output.
    let wrong = dir.path().join("wrong.yaml");
    write_config(&wrong, &sim, &auth_url, "wrong-Pa55word-xyz", &prefix);
    consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("gpu", 1)]),
            "os wrong",
        )
        .await
        .expect("order");
    let (ok, log) = agent(&wrong, "order_process");
    assert!(!ok, "a cycle with a rejected login must fail");
    assert!(
        !log.contains("wrong-Pa55word-xyz"),
        "the password leaked:\n{log}"
    );
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"level\":\"error\""))
        .collect();
    assert!(
        !errors.is_empty() && errors.len() <= 2,
        "expected one clear error, got:\n{log}"
    );
    assert!(
        errors.iter().any(|l| l.contains("keystone-e2e")),
        "the error names the offering:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}
