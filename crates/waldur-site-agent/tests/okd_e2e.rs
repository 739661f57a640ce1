//! End to end through the binary: `waldur-sim --offering-kind okd` (in process) and the
//! Kubernetes/OpenShift double of `site-sim` (in process), in OpenShift and plain-Kubernetes
//! mode. Create → project + quota; a member and a manager → `view` and `edit` RoleBindings;
//! update limits → quota changed; pause → quota zero; unpause → the previous quota; report →
//! usage in Waldur; terminate → project gone; a second run changes nothing; the
//! service-account token file is rotated during the test and picked up without a restart.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use site_sim::kubernetes::{PodUsage, Usage};
use site_sim::{KubeOptions, KubeServer};
use waldur_sim::consumer::ConsumerClient;
use waldur_sim::{DemoOfferingKind, SimOptions, SimServer};

mod common;

use common::agent;
use common::limits;

fn write_config(path: &Path, sim: &SimServer, kube: &KubeServer, sa_dir: &Path) {
    let demo = sim.demo();
    let config = json!({
        "offerings": [{
            "name": "okd-e2e",
            "waldur_api_url": demo.api_url,
            "waldur_api_token": demo.provider_token,
            "waldur_offering_uuid": demo.offering_uuid,
            "backend_type": "okd",
            "order_processing_backend": "okd",
            "membership_sync_backend": "okd",
            "reporting_backend": "okd",
            "backend_settings": {
                "api_url": kube.url(),
                "verify_cert": true,
                "namespace_prefix": "waldur-",
                "token_config": {"token_type": "service_account",
                                 "service_account_path": sa_dir},
                "delete_wait_seconds": 5,
            },
            "backend_components": {
                "cpu": {"measured_unit": "Core", "accounting_type": "limit", "label": "CPU"},
                "memory": {"measured_unit": "GB", "accounting_type": "limit", "label": "Memory"},
                "storage": {"measured_unit": "GB", "accounting_type": "limit", "label": "Storage"},
                "pods": {"measured_unit": "Count", "accounting_type": "limit", "label": "Pods"}
            }
        }]
    });
    std::fs::write(path, serde_json::to_string_pretty(&config).expect("json")).expect("config");
}

fn hard(kube: &KubeServer, ns: &str) -> Value {
    kube.object("resourcequotas", ns, "waldur-quota")
        .map(|q| q["spec"]["hard"].clone())
        .unwrap_or(Value::Null)
}

fn role_of(kube: &KubeServer, ns: &str, user: &str) -> Option<String> {
    kube.object("rolebindings", ns, &format!("waldur-{user}"))
        .and_then(|rb| rb["roleRef"]["name"].as_str().map(str::to_owned))
}

/// Everything the agent manages, for "a second run changes nothing".
fn snapshot(kube: &KubeServer, ns: &str, users: [&str; 2]) -> Value {
    let rv = |plural: &str, name: &str| {
        kube.object(plural, if plural == "namespaces" { "" } else { ns }, name)
            .map(|o| o["metadata"]["resourceVersion"].clone())
    };
    json!({
        "ns": rv("namespaces", ns),
        "quota": rv("resourcequotas", "waldur-quota"),
        "rb_0": rv("rolebindings", &format!("waldur-{}", users[0])),
        "rb_1": rv("rolebindings", &format!("waldur-{}", users[1])),
    })
}

async fn lifecycle(openshift: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sa_dir = dir.path().join("serviceaccount");
    std::fs::create_dir_all(&sa_dir).expect("mkdir");
    let kube = KubeServer::start(KubeOptions {
        openshift,
        sa_token_file: Some(sa_dir.join("token")),
        terminate_after: Duration::from_millis(50),
        ..KubeOptions::default()
    })
    .await
    .expect("kubernetes double");
    let sim = SimServer::start(SimOptions {
        demo: true,
        demo_offering_kind: DemoOfferingKind::Okd,
        ..SimOptions::default()
    })
    .await
    .expect("simulator");
    let demo = sim.demo().clone();
    let config = dir.path().join("config.yaml");
    write_config(&config, &sim, &kube, &sa_dir);
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let staff = ConsumerClient::new(&demo.api_url, &demo.staff_token);

    // Create: project (or namespace) + quota.
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("cpu", 4), ("memory", 16), ("storage", 100), ("pods", 50)]),
            "okd alloc",
        )
        .await
        .expect("create order");
    let (ok, log) = agent(&config, "order_process");
    assert!(ok, "order_process failed:\n{log}");
    let o = consumer.order(&order).await.expect("order");
    assert_eq!(o["state"], "done", "{o}\n{log}");
    let resource_uuid = o["marketplace_resource_uuid"]
        .as_str()
        .expect("resource")
        .to_owned();
    let ns = consumer.resource(&resource_uuid).await.expect("resource")["backend_id"]
        .as_str()
        .expect("backend id")
        .to_owned();
    assert!(ns.starts_with("waldur-alloc-"), "{ns}");
    let namespace = kube
        .object("namespaces", "", &ns)
        .expect("namespace exists");
    assert!(namespace["metadata"]["annotations"]["waldur/organization"].is_string());
    assert_eq!(
        hard(&kube, &ns),
        json!({"requests.cpu": "4", "limits.cpu": "8", "requests.memory": "16Gi",
               "limits.memory": "32Gi", "requests.storage": "100Gi", "pods": "50"})
    );

    // The service-account token is rotated: the agent reads the new file, no restart.
    kube.rotate_sa_token().expect("rotate");

    // A member and a manager → view and edit.
    let member = demo.users[1].clone();
    let manager = demo.users[2].clone();
    consumer
        .add_user_to_project(&demo.project_uuid, &member.uuid, "PROJECT.MEMBER")
        .await
        .expect("member");
    consumer
        .add_user_to_project(&demo.project_uuid, &manager.uuid, "PROJECT.MANAGER")
        .await
        .expect("manager");
    let (ok, log) = agent(&config, "membership_sync");
    assert!(ok, "membership_sync:\n{log}");
    assert_eq!(
        role_of(&kube, &ns, &member.username).as_deref(),
        Some("view"),
        "{log}"
    );
    assert_eq!(
        role_of(&kube, &ns, &manager.username).as_deref(),
        Some("edit"),
        "{log}"
    );

    // Update limits → quota changed.
    let update = consumer
        .update_limits(
            &resource_uuid,
            limits(&[("cpu", 6), ("memory", 24), ("storage", 100), ("pods", 50)]),
        )
        .await
        .expect("update");
    let (ok, log) = agent(&config, "order_process");
    assert!(ok, "{log}");
    assert_eq!(consumer.order(&update).await.expect("o")["state"], "done");
    assert_eq!(hard(&kube, &ns)["requests.cpu"], "6");
    assert_eq!(hard(&kube, &ns)["limits.memory"], "48Gi");

    // Pause → quota zero; unpause → the previous quota.
    staff
        .post(
            &format!("marketplace-resources/{resource_uuid}/set_paused/"),
            json!({"paused": true}),
        )
        .await
        .expect("pause");
    let (ok, log) = agent(&config, "membership_sync");
    assert!(ok, "{log}");
    assert_eq!(hard(&kube, &ns)["requests.cpu"], "0", "{log}");
    assert_eq!(hard(&kube, &ns)["pods"], "0");
    staff
        .post(
            &format!("marketplace-resources/{resource_uuid}/set_paused/"),
            json!({"paused": false}),
        )
        .await
        .expect("unpause");
    let (ok, log) = agent(&config, "membership_sync");
    assert!(ok, "{log}");
    assert_eq!(
        hard(&kube, &ns),
        json!({"requests.cpu": "6", "limits.cpu": "12", "requests.memory": "24Gi",
               "limits.memory": "48Gi", "requests.storage": "100Gi", "pods": "50"}),
        "{log}"
    );

    // Report → usage from the quota's status.used in Waldur.
    kube.set_usage(
        &ns,
        Usage {
            pods: vec![PodUsage {
                requests: [("cpu", "1500m"), ("memory", "2Gi")]
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    let (ok, log) = agent(&config, "report");
    assert!(ok, "report:\n{log}");
    let resource = uuid::Uuid::parse_str(&resource_uuid).expect("uuid");
    let cpu_cents: Vec<i64> = sim
        .state()
        .component_usages
        .values()
        .filter(|u| u.resource == resource && u.component_type == "cpu")
        .map(|u| u.usage_cents)
        .collect();
    assert_eq!(cpu_cents, vec![150], "cpu usage 1.5 cores in Waldur\n{log}");

    // A second run changes nothing.
    let users = [member.username.as_str(), manager.username.as_str()];
    let before = snapshot(&kube, &ns, users);
    assert!(
        before["rb_0"].is_string() && before["rb_1"].is_string(),
        "{before}"
    );
    for mode in ["order_process", "membership_sync"] {
        let (ok, log) = agent(&config, mode);
        assert!(ok, "{mode}:\n{log}");
    }
    assert_eq!(
        snapshot(&kube, &ns, users),
        before,
        "a second run changed the site"
    );

    // Terminate → project gone.
    let terminate = consumer.terminate(&resource_uuid).await.expect("terminate");
    let (ok, log) = agent(&config, "order_process");
    assert!(ok, "{log}");
    assert_eq!(
        consumer.order(&terminate).await.expect("o")["state"],
        "done",
        "{log}"
    );
    assert!(kube.object("namespaces", "", &ns).is_none(), "project gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okd_lifecycle_through_the_binary_openshift() {
    lifecycle(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okd_lifecycle_through_the_binary_plain_kubernetes() {
    lifecycle(false).await;
}
