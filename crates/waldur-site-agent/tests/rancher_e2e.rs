//! End to end through the binary: `waldur-sim --offering-kind rancher` (in process) and
//! `site-sim`'s Rancher + Kubernetes + Keycloak doubles (in process).
//!
//! - Create → Rancher project, namespace with the GPU-pool label, quota, Keycloak groups and
//!   the binding; a second resource of the same project shares the group (its own binding).
//! - Members join → in the child group; one whose Keycloak account does not exist yet is no
//!   error and gets access on the cycle after it appears; one leaves → removed.
//! - Update limits → the quota of every namespace of the project; report → usage in Waldur;
//!   a second run changes nothing; terminate one resource → its project and binding gone, the
//!   shared group kept; terminate the other → group and binding gone.
//! - A site prepared as the upstream plugin leaves it (Waldur holding the Rancher project id) is
//!   taken over without duplicate groups or bindings.

use std::path::Path;

use assert_cmd::Command;
use serde_json::{Value, json};
use site_sim::kubernetes::{PodUsage, Usage};
use site_sim::{KeycloakOptions, RancherOptions, RancherStack};
use waldur_sim::consumer::ConsumerClient;
use waldur_sim::{DemoOfferingKind, SimOptions, SimServer};

mod common;

use common::agent;
use common::limits;

const GROUP: &str = "/c_cmdemo12/project_demo-project_workloads-manage";

fn write_config(path: &Path, sim: &SimServer, stack: &RancherStack) {
    let demo = sim.demo();
    let i = stack.info();
    let config = json!({
        "offerings": [{
            "name": "rancher-e2e",
            "waldur_api_url": demo.api_url,
            "waldur_api_token": demo.provider_token,
            "waldur_offering_uuid": demo.offering_uuid,
            "backend_type": "rancher",
            "order_processing_backend": "rancher",
            "membership_sync_backend": "rancher",
            "reporting_backend": "rancher",
            "backend_settings": {
                "backend_url": i.rancher.url,
                "username": i.rancher.access_key,
                "password": i.rancher.secret_key,
                "cluster_id": i.rancher.cluster_id,
                "project_prefix": "waldur-",
                "default_role": "workloads-manage",
                "namespace_labels": {"gpu-pool": "h100-2x"},
                "keycloak_enabled": true,
                "keycloak_use_user_id": false,
                "keycloak": {
                    "keycloak_url": i.keycloak_url,
                    "keycloak_realm": "waldur",
                    "keycloak_user_realm": "master",
                    "keycloak_username": i.keycloak_username,
                    "keycloak_password": i.keycloak_password,
                },
            },
            "backend_components": {
                "cpu": {"type": "cpu", "measured_unit": "cores", "accounting_type": "limit", "label": "CPU"},
                "memory": {"type": "ram", "measured_unit": "GB", "accounting_type": "limit", "label": "Memory"},
                "storage": {"type": "storage", "measured_unit": "GB", "accounting_type": "limit", "label": "Storage"},
                "gpu": {"type": "gpu", "measured_unit": "units", "accounting_type": "limit", "label": "GPU"}
            }
        }]
    });
    std::fs::write(path, serde_json::to_string_pretty(&config).expect("json")).expect("config");
}

fn hard(stack: &RancherStack, ns: &str) -> Value {
    stack
        .kubernetes
        .object("resourcequotas", ns, "custom-resource-quota")
        .map(|q| q["spec"]["hard"].clone())
        .unwrap_or(Value::Null)
}

fn members(stack: &RancherStack, path: &str) -> Option<Vec<String>> {
    stack
        .keycloak
        .groups("waldur")
        .into_iter()
        .find(|(p, _)| p == path)
        .map(|(_, m)| m)
}

fn group_paths(stack: &RancherStack) -> Vec<String> {
    stack
        .keycloak
        .groups("waldur")
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

async fn start() -> (RancherStack, SimServer) {
    let stack = RancherStack::start(
        RancherOptions::default(),
        KeycloakOptions::default(),
        Default::default(),
    )
    .await
    .expect("doubles");
    stack.keycloak.ensure_realm("waldur");
    let sim = SimServer::start(SimOptions {
        demo: true,
        demo_offering_kind: DemoOfferingKind::Rancher,
        ..SimOptions::default()
    })
    .await
    .expect("simulator");
    (stack, sim)
}

async fn create(
    consumer: &ConsumerClient,
    sim: &SimServer,
    config: &Path,
    name: &str,
    l: &[(&str, i64)],
) -> (String, String) {
    let demo = sim.demo();
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(l),
            name,
        )
        .await
        .expect("create order");
    let (ok, log) = agent(config, "order_process");
    assert!(ok, "order_process failed:\n{log}");
    let o = consumer.order(&order).await.expect("order");
    assert_eq!(o["state"], "done", "{o}\n{log}");
    let resource = o["marketplace_resource_uuid"]
        .as_str()
        .expect("resource")
        .to_owned();
    let backend_id = consumer.resource(&resource).await.expect("resource")["backend_id"]
        .as_str()
        .expect("backend id")
        .to_owned();
    (resource, backend_id)
}

/// Writes the agent sent to the doubles (Rancher and Keycloak), for "changes nothing".
fn writes(stack: &RancherStack) -> u64 {
    let count = |stats: site_sim::RequestStats| {
        stats
            .routes
            .iter()
            .filter(|(k, _)| {
                !k.starts_with("GET ")
                    && !k.contains("openid-connect/token")
                    && !k.contains("/__sim/")
            })
            .map(|(_, r)| r.count)
            .sum::<u64>()
    };
    count(stack.rancher.stats()) + count(stack.keycloak.stats())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rancher_lifecycle_through_the_binary() {
    let (stack, sim) = start().await;
    for u in ["alice", "bob"] {
        stack.keycloak.add_user("waldur", u);
    }
    let demo = sim.demo().clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    write_config(&config, &sim, &stack);
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);

    // Create → project, namespace with the GPU-pool label, quota, groups, binding.
    let (res_a, ns_a) = create(
        &consumer,
        &sim,
        &config,
        "rancher alloc",
        &[("cpu", 4), ("memory", 16), ("storage", 100), ("gpu", 1)],
    )
    .await;
    assert!(ns_a.starts_with("waldur-"), "{ns_a}");
    let ns = stack
        .kubernetes
        .object("namespaces", "", &ns_a)
        .expect("namespace");
    assert_eq!(ns["metadata"]["labels"]["gpu-pool"], "h100-2x");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    assert_eq!(
        hard(&stack, &ns_a),
        json!({"limits.cpu": "4", "limits.memory": "16Gi", "requests.storage": "100Gi",
               "requests.nvidia.com/gpu": "1"})
    );
    assert_eq!(
        group_paths(&stack),
        vec!["/c_cmdemo12".to_owned(), GROUP.to_owned()]
    );
    assert_eq!(stack.rancher.bindings().len(), 1);

    // A second resource of the same project: its own project, the same group.
    let (res_b, ns_b) = create(&consumer, &sim, &config, "second alloc", &[("cpu", 1)]).await;
    assert_ne!(ns_a, ns_b);
    assert_eq!(group_paths(&stack).len(), 2, "the group is shared");
    let bindings = stack.rancher.bindings();
    assert_eq!(bindings.len(), 2, "one binding per project");
    assert!(
        bindings.iter().all(|b| b["groupPrincipalId"]
            == "keycloakoidc_group://project_demo-project_workloads-manage")
    );

    // Members: alice, bob and carol (carol has no Keycloak account yet).
    let user = |name: &str| {
        demo.users
            .iter()
            .find(|u| u.username == name)
            .expect("demo user")
            .clone()
    };
    for name in ["alice", "bob", "carol"] {
        consumer
            .add_user_to_project(&demo.project_uuid, &user(name).uuid, "PROJECT.MEMBER")
            .await
            .expect("member");
    }
    let (ok, log) = agent(&config, "membership_sync");
    assert!(ok, "membership_sync:\n{log}");
    assert_eq!(
        members(&stack, GROUP),
        Some(vec!["alice".to_owned(), "bob".to_owned()]),
        "{log}"
    );
    // carol appears in Keycloak (first login): access on the next cycle.
    stack.keycloak.add_user("waldur", "carol");
    let (ok, log) = agent(&config, "membership_sync");
    assert!(ok, "{log}");
    assert_eq!(
        members(&stack, GROUP),
        Some(vec!["alice".into(), "bob".into(), "carol".into()]),
        "{log}"
    );
    // bob leaves.
    consumer
        .remove_user_from_project(&demo.project_uuid, &user("bob").uuid, "PROJECT.MEMBER")
        .await
        .expect("remove");
    let (ok, log) = agent(&config, "membership_sync");
    assert!(ok, "{log}");
    assert_eq!(
        members(&stack, GROUP),
        Some(vec!["alice".into(), "carol".into()]),
        "{log}"
    );

    // A second namespace in project A (made in Rancher); update limits → both quotas.
    let i = stack.info();
    let project_a = stack
        .rancher
        .projects()
        .into_iter()
        .find(|p| p["name"] == ns_a.as_str())
        .expect("project A");
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/v3/clusters/{}/namespaces",
            i.rancher.url, i.rancher.cluster_id
        ))
        .basic_auth(&i.rancher.access_key, Some(&i.rancher.secret_key))
        .json(&json!({"name": format!("{ns_a}-extra"), "projectId": project_a["id"]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 201);
    let update = consumer
        .update_limits(
            &res_a,
            limits(&[("cpu", 8), ("memory", 32), ("storage", 100), ("gpu", 2)]),
        )
        .await
        .expect("update");
    let (ok, log) = agent(&config, "order_process");
    assert!(ok, "{log}");
    assert_eq!(consumer.order(&update).await.expect("o")["state"], "done");
    let want = json!({"limits.cpu": "8", "limits.memory": "32Gi", "requests.storage": "100Gi",
                      "requests.nvidia.com/gpu": "2"});
    assert_eq!(hard(&stack, &ns_a), want, "{log}");
    assert_eq!(
        hard(&stack, &format!("{ns_a}-extra")),
        want,
        "every namespace"
    );

    // Report → usage from status.used of all the project's namespaces.
    let req = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    for ns in [ns_a.clone(), format!("{ns_a}-extra")] {
        stack.kubernetes.set_usage(
            &ns,
            Usage {
                pods: vec![PodUsage {
                    limits: req(&[("cpu", "750m"), ("memory", "1Gi")]),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
    }
    let (ok, log) = agent(&config, "report");
    assert!(ok, "report:\n{log}");
    let resource = uuid::Uuid::parse_str(&res_a).expect("uuid");
    let cpu_cents: Vec<i64> = sim
        .state()
        .component_usages
        .values()
        .filter(|u| u.resource == resource && u.component_type == "cpu")
        .map(|u| u.usage_cents)
        .collect();
    assert_eq!(cpu_cents, vec![150], "1.5 cores over two namespaces\n{log}");

    // A second run changes nothing.
    let before = writes(&stack);
    let groups_before = stack.keycloak.groups("waldur");
    for mode in ["order_process", "membership_sync"] {
        let (ok, log) = agent(&config, mode);
        assert!(ok, "{mode}:\n{log}");
    }
    assert_eq!(writes(&stack), before, "a second run wrote to the site");
    assert_eq!(stack.keycloak.groups("waldur"), groups_before);

    // Terminate A → its project and binding gone, the shared group kept for B.
    let terminate = consumer.terminate(&res_a).await.expect("terminate");
    let (ok, log) = agent(&config, "order_process");
    assert!(ok, "{log}");
    assert_eq!(
        consumer.order(&terminate).await.expect("o")["state"],
        "done",
        "{log}"
    );
    assert!(
        !stack
            .rancher
            .projects()
            .iter()
            .any(|p| p["name"] == ns_a.as_str()),
        "project A gone"
    );
    assert_eq!(stack.rancher.bindings().len(), 1, "B's binding kept");
    assert_eq!(
        members(&stack, GROUP),
        Some(vec!["alice".into(), "carol".into()]),
        "shared group kept with its members"
    );
    // Terminate B → group and binding gone.
    let terminate = consumer.terminate(&res_b).await.expect("terminate");
    let (ok, log) = agent(&config, "order_process");
    assert!(ok, "{log}");
    assert_eq!(
        consumer.order(&terminate).await.expect("o")["state"],
        "done",
        "{log}"
    );
    assert!(stack.rancher.projects().is_empty());
    assert!(stack.rancher.bindings().is_empty());
    assert!(group_paths(&stack).is_empty(), "{:?}", group_paths(&stack));
    let _ = ns_b;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_prepared_by_the_upstream_plugin_is_taken_over() {
    let (stack, sim) = start().await;
    for u in ["alice", "bob"] {
        stack.keycloak.add_user("waldur", u);
    }
    let demo = sim.demo().clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    write_config(&config, &sim, &stack);
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let provider = ConsumerClient::new(&demo.api_url, &demo.provider_token);
    let i = stack.info();
    let http = reqwest::Client::new();
    let rancher = |m: reqwest::Method, p: &str| {
        http.request(m, format!("{}{p}", i.rancher.url))
            .basic_auth(&i.rancher.access_key, Some(&i.rancher.secret_key))
    };

    // The order, processed as upstream 1.0.7 does: project by name, namespace, quota, the
    // groups (python-keycloak), the binding, alice in the group; Waldur gets the project id.
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("cpu", 2)]),
            "legacy alloc",
        )
        .await
        .expect("order");
    let p: Value = rancher(reqwest::Method::POST, "/v3/projects")
        .json(&json!({"type": "project", "clusterId": i.rancher.cluster_id, "name": "waldur-legacy-alloc",
            "description": "legacy alloc (Customer: Research University, Project: Demo project)",
            "annotations": {"waldur/organization": "research-university", "waldur/managed": "true",
                            "waldur/project_slug": "demo-project"}}))
        .send().await.expect("sent").json().await.expect("json");
    let pid = p["id"].as_str().expect("id").to_owned();
    rancher(
        reqwest::Method::POST,
        &format!("/v3/clusters/{}/namespaces", i.rancher.cluster_id),
    )
    .json(&json!({"name": "waldur-legacy-alloc", "projectId": pid}))
    .send()
    .await
    .expect("sent");
    let yaml = "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: custom-resource-quota\n  namespace: waldur-legacy-alloc\nspec:\n  hard:\n    limits.cpu: 2000m\n";
    rancher(
        reqwest::Method::POST,
        &format!("/v3/clusters/{}?action=importYaml", i.rancher.cluster_id),
    )
    .json(&json!({"yaml": yaml, "namespace": "waldur-legacy-alloc"}))
    .send()
    .await
    .expect("sent");
    let kc_token: Value = http
        .post(format!(
            "{}/realms/master/protocol/openid-connect/token",
            i.keycloak_url
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", i.keycloak_username.as_str()),
            ("password", i.keycloak_password.as_str()),
        ])
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("token");
    let token = kc_token["access_token"].as_str().expect("token").to_owned();
    let kc = format!("{}/admin/realms/waldur", i.keycloak_url);
    let made = http
        .post(format!("{kc}/groups"))
        .bearer_auth(&token)
        .json(&json!({"name": "c_cmdemo12", "attributes": {"managed_by": ["waldur-site-agent"]}}))
        .send()
        .await
        .expect("sent");
    let parent = made.headers()["location"]
        .to_str()
        .expect("location")
        .rsplit('/')
        .next()
        .expect("id")
        .to_owned();
    let made = http
        .post(format!("{kc}/groups/{parent}/children"))
        .bearer_auth(&token)
        .json(&json!({"name": "project_demo-project_workloads-manage"}))
        .send()
        .await
        .expect("sent");
    let child = made.headers()["location"]
        .to_str()
        .expect("location")
        .rsplit('/')
        .next()
        .expect("id")
        .to_owned();
    let alice: Value = http
        .get(format!("{kc}/users?username=alice&exact=true"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("users");
    http.put(format!(
        "{kc}/users/{}/groups/{child}",
        alice[0]["id"].as_str().expect("id")
    ))
    .bearer_auth(&token)
    .send()
    .await
    .expect("sent");
    rancher(reqwest::Method::POST, "/v3/projectroletemplatebindings")
        .json(&json!({"type": "projectRoleTemplateBinding", "roleTemplateId": "workloads-manage",
            "projectId": pid, "groupPrincipalId": "keycloakoidc_group://project_demo-project_workloads-manage"}))
        .send().await.expect("sent");
    let _ = provider
        .post(
            &format!("marketplace-orders/{order}/approve_by_provider/"),
            json!({}),
        )
        .await;
    let res = consumer.order(&order).await.expect("order")["marketplace_resource_uuid"]
        .as_str()
        .expect("resource")
        .to_owned();
    provider
        .post(
            &format!("marketplace-provider-resources/{res}/set_backend_id/"),
            json!({"backend_id": pid}),
        )
        .await
        .expect("backend id");
    provider
        .post(
            &format!("marketplace-orders/{order}/set_state_done/"),
            json!({}),
        )
        .await
        .expect("done");
    let o = consumer.order(&order).await.expect("order");
    assert_eq!(o["state"], "done", "{o}");
    assert_eq!(
        consumer.resource(&res).await.expect("resource")["backend_id"],
        pid.as_str()
    );

    // Our agent takes over: alice stays, bob joins, limits change, no duplicates.
    for name in ["alice", "bob"] {
        let u = demo
            .users
            .iter()
            .find(|u| u.username == name)
            .expect("user");
        consumer
            .add_user_to_project(&demo.project_uuid, &u.uuid, "PROJECT.MEMBER")
            .await
            .expect("member");
    }
    let (ok, log) = agent(&config, "membership_sync");
    assert!(ok, "membership_sync:\n{log}");
    assert_eq!(
        members(&stack, GROUP),
        Some(vec!["alice".into(), "bob".into()]),
        "{log}"
    );
    assert_eq!(group_paths(&stack).len(), 2, "no duplicate groups");
    assert_eq!(stack.rancher.bindings().len(), 1, "no duplicate binding");
    let update = consumer
        .update_limits(&res, limits(&[("cpu", 3)]))
        .await
        .expect("update");
    let (ok, log) = agent(&config, "order_process");
    assert!(ok, "{log}");
    assert_eq!(
        consumer.order(&update).await.expect("o")["state"],
        "done",
        "{log}"
    );
    assert_eq!(
        hard(&stack, "waldur-legacy-alloc"),
        json!({"limits.cpu": "3"})
    );
    assert_eq!(stack.rancher.projects().len(), 1, "no second project");

    let terminate = consumer.terminate(&res).await.expect("terminate");
    let (ok, log) = agent(&config, "order_process");
    assert!(ok, "{log}");
    assert_eq!(
        consumer.order(&terminate).await.expect("o")["state"],
        "done",
        "{log}"
    );
    assert!(stack.rancher.projects().is_empty());
    assert!(stack.rancher.bindings().is_empty());
    assert!(group_paths(&stack).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_clear_in_diagnostics_and_on_the_order() {
    let (stack, sim) = start().await;
    let demo = sim.demo().clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    write_config(&config, &sim, &stack);
    let text = std::fs::read_to_string(&config).expect("config");
    let secret = stack.info().rancher.secret_key;
    let kc_password = stack.info().keycloak_password;
    let text = text
        .replace(&secret, "wrong-secret-key")
        .replace(&kc_password, "wrong-kc-password");
    std::fs::write(&config, text).expect("config");

    let out = Command::cargo_bin("waldur-site-agent")
        .expect("binary")
        .args(["diagnostics", "-c"])
        .arg(&config)
        .output()
        .expect("runs");
    let diag = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(diag.contains("rancher login"), "{diag}");
    assert!(
        diag.contains("backend_settings.username/password"),
        "{diag}"
    );
    assert!(
        diag.contains("keycloak login") && diag.contains("user 'admin'"),
        "{diag}"
    );
    assert!(
        !diag.contains("wrong-secret-key") && !diag.contains("wrong-kc-password"),
        "{diag}"
    );

    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("cpu", 1)]),
            "refused",
        )
        .await
        .expect("order");
    let (_, log) = agent(&config, "order_process");
    assert!(log.contains("rejected the credentials"), "{log}");
    assert!(!log.contains("wrong-secret-key"), "{log}");
    let o = consumer.order(&order).await.expect("order");
    assert_ne!(o["state"], "done", "{o}");
    assert!(stack.rancher.projects().is_empty());
}
