//! The conformance suite against `site-sim`'s Rancher + Kubernetes + Keycloak doubles, in plain
//! `cargo test`; plus the Rancher-specific rules: a quota on every namespace, a Keycloak group
//! shared by the resources of one project, takeover of what the upstream plugin made, a user
//! who appears in Keycloak later, clear login errors.

use std::collections::BTreeMap;

use agent_config::{AccountingType, BackendComponent};
use backend_api::testkit::conformance::{self, BatchFixture, Fixture};
use backend_api::{
    BackendError, BackendHealth, BillingPeriod, CreateRequest, Limits, MembershipBackend,
    OrderBackend, ResourceView, UsageReport, UserGrant,
};
use backend_rancher::{RancherBackend, RancherSettings};
use indexmap::IndexMap;
use serde_json::{Value, json};
use site_sim::kubernetes::{PodUsage, Usage};
use site_sim::{KeycloakOptions, RancherOptions, RancherStack};

async fn stack() -> RancherStack {
    RancherStack::start(
        RancherOptions::default(),
        KeycloakOptions {
            demo: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .expect("doubles start")
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

fn components() -> IndexMap<String, BackendComponent> {
    [
        ("cpu", "cpu"),
        ("memory", "ram"),
        ("storage", "storage"),
        ("gpu", "gpu"),
    ]
    .into_iter()
    .map(|(k, t)| (k.to_owned(), component(t)))
    .collect()
}

fn settings_json(s: &RancherStack, by_id: bool) -> Value {
    let i = s.info();
    json!({
        "backend_url": i.rancher.url, "username": i.rancher.access_key, "password": i.rancher.secret_key,
        "cluster_id": i.rancher.cluster_id, "namespace_labels": {"gpu-pool": "h100-2x"},
        "keycloak_enabled": true, "keycloak_use_user_id": by_id, "max_retries": 1, "timeout_seconds": 5,
        "keycloak": {"keycloak_url": i.keycloak_url, "keycloak_realm": "waldur", "keycloak_user_realm": "master",
                     "keycloak_username": i.keycloak_username, "keycloak_password": i.keycloak_password},
    })
}

fn backend_from(settings: Value) -> RancherBackend {
    let Value::Object(map) = settings else {
        unreachable!()
    };
    let settings = RancherSettings::parse(&map).expect("settings");
    RancherBackend::new("rancher-test", settings, components(), None).expect("backend")
}

fn backend(s: &RancherStack) -> RancherBackend {
    backend_from(settings_json(s, false))
}

fn view(slug: &str, project: &str) -> ResourceView {
    ResourceView {
        uuid: format!("{slug}-0000-uuid"),
        name: format!("Allocation {slug}"),
        slug: slug.to_owned(),
        project_slug: project.into(),
        project_name: "Physics".into(),
        customer_slug: "uni".into(),
        customer_name: "University".into(),
        ..Default::default()
    }
}

fn limits(pairs: &[(&str, f64)]) -> Limits {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn grant(user: &str) -> UserGrant {
    UserGrant {
        username: user.to_owned(),
        ..Default::default()
    }
}

fn fixture(slug: &str) -> Fixture {
    Fixture {
        resource: view(slug, slug),
        initial_limits: limits(&[("cpu", 4.0), ("memory", 16.0), ("storage", 100.0)]),
        updated_limits: limits(&[("cpu", 6.0), ("memory", 32.0), ("gpu", 2.0)]),
        users: vec![grant("alice"), grant("bob")],
    }
}

async fn create(b: &RancherBackend, r: &mut ResourceView, l: Limits) {
    r.limits = l;
    r.backend_id = b.backend_id_for(&r.slug).expect("id");
    b.create_resource(CreateRequest {
        resource: r.clone(),
        backend_id: r.backend_id.clone(),
        context: Default::default(),
    })
    .await
    .expect("create");
}

fn hard(s: &RancherStack, ns: &str) -> Value {
    s.kubernetes
        .object("resourcequotas", ns, "custom-resource-quota")
        .map(|q| q["spec"]["hard"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn rancher_passes_the_conformance_suite_against_the_doubles() {
    let s = stack().await;
    let b = backend(&s);
    b.ping().await.expect("ping");
    conformance::order_and_membership_lifecycle(&b, fixture("life")).await;
    conformance::batch_partial_failure_and_order(
        &b,
        BatchFixture {
            first: view("b1", "batch"),
            second: view("b2", "batch"),
            third: view("b3", "batch"),
            limits: limits(&[("cpu", 2.0), ("memory", 4.0)]),
        },
    )
    .await;
    conformance::idempotent_writes_and_unit_round_trip(
        &b,
        fixture("idem"),
        &[limits(&[("cpu", 0.5), ("memory", 1.0), ("gpu", 0.0)])],
    )
    .await;

    // Usage: what runs in the namespace comes back from status.used through the proxy.
    let mut r = view("usage", "usage");
    create(
        &b,
        &mut r,
        limits(&[
            ("cpu", 8.0),
            ("memory", 16.0),
            ("storage", 50.0),
            ("gpu", 2.0),
        ]),
    )
    .await;
    let req = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>()
    };
    s.kubernetes.set_usage(
        "waldur-usage",
        Usage {
            pods: vec![PodUsage {
                requests: req(&[("cpu", "500m"), ("memory", "512Mi")]),
                limits: req(&[("cpu", "1500m"), ("memory", "1536Mi")]),
            }],
            persistentvolumeclaims: vec![req(&[("storage", "10Gi")])],
            used: req(&[("requests.nvidia.com/gpu", "1")]),
        },
    );
    let mut expected = BTreeMap::new();
    expected.insert(
        r.backend_id.clone(),
        UsageReport {
            total: limits(&[
                ("cpu", 1.5),
                ("memory", 1.5),
                ("storage", 10.0),
                ("gpu", 1.0),
            ]),
            per_user: BTreeMap::new(),
        },
    );
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let period = BillingPeriod::new(now.year(), now.month(), jiff::tz::TimeZone::UTC);
    conformance::usage_round_trip(&b, std::slice::from_ref(&r.backend_id), &period, &expected)
        .await;
    b.delete_resource(&r).await.expect("delete");

    let i = s.info();
    s.shutdown().await;
    conformance::site_down_is_transient(
        &b,
        &fixture("down"),
        &[&i.rancher.secret_key, &i.keycloak_password],
    )
    .await;
}

#[tokio::test]
async fn namespaces_groups_sharing_and_every_namespace_quota() {
    let s = stack().await;
    let b = backend(&s);
    let mut one = view("one", "physics");
    let mut two = view("two", "physics");
    create(&b, &mut one, limits(&[("cpu", 2.0), ("memory", 4.0)])).await;
    create(&b, &mut two, limits(&[("cpu", 1.0)])).await;

    // Namespace labels: pod security and the GPU pool.
    let ns = s
        .kubernetes
        .object("namespaces", "", "waldur-one")
        .expect("namespace");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    assert_eq!(ns["metadata"]["labels"]["gpu-pool"], "h100-2x");
    // One shared group, one binding per project.
    let groups = s.keycloak.groups("waldur");
    assert_eq!(
        groups.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        vec![
            "/c_cmdemo12",
            "/c_cmdemo12/project_physics_workloads-manage"
        ]
    );
    let bindings = s.rancher.bindings();
    assert_eq!(bindings.len(), 2, "{bindings:?}");
    assert!(
        bindings
            .iter()
            .all(|b| b["groupPrincipalId"]
                == "keycloakoidc_group://project_physics_workloads-manage")
    );

    // A second namespace in the project (made in Rancher's UI): limits go to both.
    let project_id = b
        .pull_resource(&one)
        .await
        .expect("pull")
        .expect("exists")
        .backend_metadata["project_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let i = s.info();
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/v3/clusters/{}/namespaces",
            i.rancher.url, i.rancher.cluster_id
        ))
        .basic_auth(&i.rancher.access_key, Some(&i.rancher.secret_key))
        .json(&json!({"name": "waldur-one-extra", "projectId": project_id}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 201);
    b.set_limits(&one, &limits(&[("cpu", 3.0), ("memory", 8.0)]))
        .await
        .expect("limits");
    for ns in ["waldur-one", "waldur-one-extra"] {
        assert_eq!(
            hard(&s, ns),
            json!({"limits.cpu": "3", "limits.memory": "8Gi"}),
            "{ns}"
        );
    }

    // Members: alice and bob join, bob leaves; the group stays while alice is in it.
    let added = b
        .add_users(&one, &[grant("alice"), grant("bob")])
        .await
        .expect("add");
    assert_eq!(added, vec!["alice".to_owned(), "bob".to_owned()]);
    b.remove_users(&one, &["bob".to_owned()])
        .await
        .expect("remove");
    assert_eq!(
        s.keycloak.groups("waldur")[1].1,
        vec!["alice".to_owned()],
        "bob left"
    );
    // Terminating one resource keeps the group the other is bound to.
    b.delete_resource(&one).await.expect("delete one");
    assert_eq!(s.keycloak.groups("waldur").len(), 2, "shared group kept");
    assert_eq!(s.rancher.bindings().len(), 1);
    let info = b.pull_resource(&two).await.expect("pull").expect("two");
    assert_eq!(info.users, vec!["alice".to_owned()]);
    // The last one takes the groups and the binding with it.
    b.delete_resource(&two).await.expect("delete two");
    assert!(s.keycloak.groups("waldur").is_empty());
    assert!(s.rancher.bindings().is_empty());
    assert!(s.rancher.projects().is_empty());
}

#[tokio::test]
async fn a_user_missing_from_keycloak_is_granted_once_it_appears() {
    let s = stack().await;
    let b = backend(&s);
    let mut r = view("late", "late");
    create(&b, &mut r, limits(&[("cpu", 1.0)])).await;
    let added = b
        .add_users(&r, &[grant("alice"), grant("newcomer")])
        .await
        .expect("no error for the missing user");
    assert_eq!(
        added,
        vec!["alice".to_owned()],
        "newcomer not reported added"
    );
    s.keycloak.add_user("waldur", "newcomer");
    let added = b.add_users(&r, &[grant("newcomer")]).await.expect("add");
    assert_eq!(added, vec!["newcomer".to_owned()]);
    let info = b.pull_resource(&r).await.expect("pull").expect("exists");
    assert_eq!(info.users, vec!["alice".to_owned(), "newcomer".to_owned()]);
}

#[tokio::test]
async fn what_the_upstream_plugin_made_is_taken_over() {
    let s = stack().await;
    let i = s.info();
    let http = reqwest::Client::new();
    let rancher = |m: reqwest::Method, p: &str| {
        http.request(m, format!("{}{p}", i.rancher.url))
            .basic_auth(&i.rancher.access_key, Some(&i.rancher.secret_key))
    };
    // As upstream 1.0.7 leaves it: project by name (no resource annotation), its namespace and
    // quota, the groups (via python-keycloak) and the binding; Waldur holds the project id.
    let p: Value = rancher(reqwest::Method::POST, "/v3/projects")
        .json(&json!({"type": "project", "clusterId": i.rancher.cluster_id, "name": "waldur-legacy",
            "annotations": {"waldur/organization": "uni", "waldur/managed": "true", "waldur/project_slug": "legacy"}}))
        .send().await.expect("sent").json().await.expect("json");
    let pid = p["id"].as_str().expect("id").to_owned();
    rancher(
        reqwest::Method::POST,
        &format!("/v3/clusters/{}/namespaces", i.rancher.cluster_id),
    )
    .json(&json!({"name": "waldur-legacy", "projectId": pid}))
    .send()
    .await
    .expect("sent");
    let kc_settings = settings_json(&s, false);
    let kc = keycloak_admin::KeycloakAdmin::new(
        "upstream",
        &keycloak_admin::KeycloakConfig::parse("keycloak", &kc_settings["keycloak"]).expect("kc"),
        None,
        std::time::Duration::from_secs(5),
        Default::default(),
    )
    .expect("kc client");
    let parent = kc
        .ensure_group(None, "c_cmdemo12", "")
        .await
        .expect("parent");
    let child = kc
        .ensure_group(
            Some(&parent.group.id),
            "project_legacy_workloads-manage",
            "",
        )
        .await
        .expect("child");
    let alice = kc
        .find_user("alice", false)
        .await
        .expect("find")
        .expect("alice");
    kc.add_member(&alice.id, &child.group.id)
        .await
        .expect("member");
    rancher(reqwest::Method::POST, "/v3/projectroletemplatebindings")
        .json(&json!({"type": "projectRoleTemplateBinding", "roleTemplateId": "workloads-manage",
            "projectId": pid, "groupPrincipalId": "keycloakoidc_group://project_legacy_workloads-manage"}))
        .send().await.expect("sent");

    let b = backend(&s);
    let mut r = view("legacy", "legacy");
    r.backend_id = pid.clone();
    let info = b
        .pull_resource(&r)
        .await
        .expect("pull")
        .expect("found by id");
    assert_eq!(info.backend_id, pid);
    assert_eq!(info.users, vec!["alice".to_owned()]);
    b.set_limits(&r, &limits(&[("cpu", 2.0)]))
        .await
        .expect("limits");
    assert_eq!(hard(&s, "waldur-legacy"), json!({"limits.cpu": "2"}));
    let added = b.add_users(&r, &[grant("bob")]).await.expect("add");
    assert_eq!(added, vec!["bob".to_owned()]);
    assert_eq!(s.keycloak.groups("waldur").len(), 2, "no duplicate groups");
    assert_eq!(s.rancher.bindings().len(), 1, "no duplicate binding");
    b.delete_resource(&r).await.expect("delete");
    assert!(s.keycloak.groups("waldur").is_empty());
}

#[tokio::test]
async fn refused_logins_are_clear_in_diagnostics_and_errors() {
    let s = stack().await;
    let mut settings = settings_json(&s, false);
    settings["password"] = json!("wrong-secret-key");
    settings["keycloak"]["keycloak_password"] = json!("wrong-kc-password");
    let b = backend_from(settings);
    let d = b.diagnostics().await;
    let text = serde_json::to_string(
        &d.checks
            .iter()
            .map(|c| (&c.name, c.ok, &c.detail))
            .collect::<Vec<_>>(),
    )
    .expect("json");
    assert!(
        !d.checks
            .iter()
            .find(|c| c.name == "rancher login")
            .expect("check")
            .ok,
        "{text}"
    );
    assert!(
        !d.checks
            .iter()
            .find(|c| c.name == "keycloak login")
            .expect("check")
            .ok,
        "{text}"
    );
    assert!(
        text.contains("backend_settings.username/password"),
        "{text}"
    );
    assert!(text.contains("user 'admin'"), "{text}");
    assert!(
        !text.contains("wrong-secret-key") && !text.contains("wrong-kc-password"),
        "{text}"
    );
    match b.ping().await {
        Err(BackendError::Config(m)) => assert!(m.contains("API key"), "{m}"),
        other => panic!("a refused key is a configuration error, got {other:?}"),
    }
    let mut r = view("x", "x");
    r.backend_id = "waldur-x".into();
    assert!(matches!(
        b.pull_resource(&r).await,
        Err(BackendError::Config(_))
    ));
}

#[tokio::test]
async fn transient_rancher_and_keycloak_faults_are_retried() {
    let s = stack().await;
    let b = backend_from({
        let mut v = settings_json(&s, false);
        v["max_retries"] = json!(4);
        v
    });
    let mut r = view("faulty", "faulty");
    create(&b, &mut r, limits(&[("cpu", 1.0)])).await;
    let rule = |route: &str| site_sim::FaultRule {
        route: route.into(),
        method: Some("GET".into()),
        error_rate: 0.3,
        error_status: 503,
        latency_ms: 0,
        drop_rate: 0.0,
        drop_after_rate: 0.0,
    };
    s.rancher.set_faults(site_sim::FaultConfig {
        seed: 5,
        rules: vec![rule("/v3/*"), rule("/k8s/*")],
    });
    s.keycloak.set_faults(site_sim::FaultConfig {
        seed: 6,
        rules: vec![rule("/admin/*")],
    });
    for _ in 0..5 {
        let info = b.pull_resource(&r).await.expect("retried").expect("exists");
        assert_eq!(info.limits.get("cpu"), Some(&1.0));
    }
    let stats = s.rancher.stats();
    assert!(
        stats.routes.values().map(|r| r.errors).sum::<u64>() > 0,
        "faults were injected: {stats:?}"
    );
}
