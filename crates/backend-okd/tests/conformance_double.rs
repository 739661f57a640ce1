//! The conformance suite against the Kubernetes/OpenShift double (`site-sim`), in plain
//! `cargo test`: OpenShift mode and plain Kubernetes mode; plus token sources, role mapping,
//! pause/restore to the previous limits, usage from `status.used`.

use std::collections::BTreeMap;
use std::time::Duration;

use backend_api::testkit::conformance::{self, BatchFixture, Fixture};
use backend_api::{
    BackendError, BackendHealth, BillingPeriod, Limits, MembershipBackend, OrderBackend,
    ResourceView, UsageBackend, UsageReport, UserGrant,
};
use backend_okd::{OkdBackend, OkdSettings};
use indexmap::IndexMap;
use serde_json::{Value, json};
use site_sim::kubernetes::{PodUsage, Usage};
use site_sim::{KubeOptions, KubeServer};

async fn double(openshift: bool) -> KubeServer {
    KubeServer::start(KubeOptions {
        openshift,
        terminate_after: Duration::from_millis(30),
        ..KubeOptions::default()
    })
    .await
    .expect("double starts")
}

fn backend_with(settings: Value) -> OkdBackend {
    let Value::Object(map) = settings else {
        unreachable!()
    };
    let settings = OkdSettings::parse(&map).expect("settings");
    OkdBackend::new("okd-test", settings, IndexMap::new(), None).expect("backend")
}

fn backend(server: &KubeServer) -> OkdBackend {
    backend_with(json!({
        "api_url": server.url(), "token": server.sa_token(), "max_retries": 1,
        "timeout_seconds": 5, "delete_wait_seconds": 5,
    }))
}

fn view(slug: &str) -> ResourceView {
    ResourceView {
        uuid: format!("0000{slug}-uuid"),
        name: format!("Allocation {slug}"),
        slug: slug.to_owned(),
        project_slug: "physics".into(),
        project_name: "Physics".into(),
        customer_slug: "uni".into(),
        ..Default::default()
    }
}

fn limits(pairs: &[(&str, f64)]) -> Limits {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn grant(user: &str, role: Option<&str>) -> UserGrant {
    UserGrant {
        username: user.to_owned(),
        role: role.map(str::to_owned),
        ..Default::default()
    }
}

fn fixture(slug: &str) -> Fixture {
    Fixture {
        resource: view(slug),
        initial_limits: limits(&[("cpu", 4.0), ("memory", 16.0), ("storage", 100.0)]),
        updated_limits: limits(&[("cpu", 6.0), ("memory", 32.0), ("pods", 20.0)]),
        users: vec![
            grant("alice", Some("member")),
            grant("bob", Some("manager")),
        ],
    }
}

async fn run_suite(openshift: bool) {
    let server = double(openshift).await;
    let b = backend(&server);
    conformance::order_and_membership_lifecycle(&b, fixture("life")).await;
    conformance::batch_partial_failure_and_order(
        &b,
        BatchFixture {
            first: view("b1"),
            second: view("b2"),
            third: view("b3"),
            limits: limits(&[("cpu", 2.0), ("memory", 4.0)]),
        },
    )
    .await;
    conformance::idempotent_writes_and_unit_round_trip(
        &b,
        fixture("idem"),
        &[limits(&[("cpu", 1.0), ("memory", 1.0), ("pods", 0.0)])],
    )
    .await;

    // Usage round trip: what runs in the namespace comes back from the quota's status.used.
    let mut r = view("usage");
    r.limits = limits(&[
        ("cpu", 8.0),
        ("memory", 16.0),
        ("storage", 50.0),
        ("pods", 10.0),
    ]);
    let id = b.backend_id_for(&r.slug).expect("id");
    r.backend_id = id.clone();
    b.create_resource(backend_api::CreateRequest {
        resource: r.clone(),
        backend_id: id.clone(),
        context: Default::default(),
    })
    .await
    .expect("create");
    server.set_usage(
        &id,
        Usage {
            pods: vec![
                PodUsage {
                    requests: [("cpu", "500m"), ("memory", "512Mi")]
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                },
                PodUsage {
                    requests: [("cpu", "1"), ("memory", "1Gi")]
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                },
            ],
            persistentvolumeclaims: vec![
                [("storage".to_owned(), "10Gi".to_owned())]
                    .into_iter()
                    .collect(),
            ],
            ..Default::default()
        },
    );
    let mut expected = BTreeMap::new();
    expected.insert(
        id.clone(),
        UsageReport {
            total: limits(&[
                ("cpu", 1.5),
                ("memory", 1.5),
                ("storage", 10.0),
                ("pods", 2.0),
            ]),
            per_user: BTreeMap::new(),
        },
    );
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let period = BillingPeriod::new(now.year(), now.month(), jiff::tz::TimeZone::UTC);
    conformance::usage_round_trip(&b, std::slice::from_ref(&id), &period, &expected).await;
    // status.used is a snapshot of now: an earlier period reports nothing.
    let earlier = BillingPeriod::new(now.year() - 1, now.month(), jiff::tz::TimeZone::UTC);
    let old = b
        .usage_report(std::slice::from_ref(&id), &earlier)
        .await
        .expect("usage");
    assert!(old.is_empty(), "{old:?}");
    b.delete_resource(&r).await.expect("delete");

    let secret = server.sa_token();
    server.shutdown().await;
    conformance::site_down_is_transient(&b, &fixture("down"), &[&secret]).await;
}

#[tokio::test]
async fn okd_passes_the_conformance_suite_against_the_openshift_double() {
    run_suite(true).await;
}

#[tokio::test]
async fn okd_passes_the_conformance_suite_against_plain_kubernetes() {
    run_suite(false).await;
}

async fn create(b: &OkdBackend, slug: &str, l: Limits) -> ResourceView {
    let mut r = view(slug);
    r.limits = l;
    r.backend_id = b.backend_id_for(slug).expect("id");
    b.create_resource(backend_api::CreateRequest {
        resource: r.clone(),
        backend_id: r.backend_id.clone(),
        context: Default::default(),
    })
    .await
    .expect("create");
    r
}

#[tokio::test]
async fn project_annotations_quota_and_role_mapping() {
    for openshift in [true, false] {
        let server = double(openshift).await;
        let b = backend(&server);
        let r = create(&b, "roles", limits(&[("cpu", 4.0), ("memory", 16.0)])).await;
        let ns = server
            .object("namespaces", "", "waldur-alloc-roles")
            .expect("namespace");
        let a = &ns["metadata"]["annotations"];
        assert_eq!(a["openshift.io/display-name"], "Allocation roles");
        assert_eq!(a["openshift.io/description"], "Allocation roles");
        assert_eq!(a["waldur/organization"], "waldur-org-uni");
        assert_eq!(a["waldur/parent"], "waldur-proj-physics");
        let q = server
            .object("resourcequotas", "waldur-alloc-roles", "waldur-quota")
            .expect("quota");
        assert_eq!(
            q["spec"]["hard"],
            json!({"requests.cpu": "4", "limits.cpu": "8",
                   "requests.memory": "16Gi", "limits.memory": "32Gi"})
        );

        let added = b
            .add_users(
                &r,
                &[
                    grant("member1", Some("member")),
                    grant("manager1", Some("PROJECT.MANAGER")),
                    grant("owner1", Some("owner")),
                    grant("other", None),
                ],
            )
            .await
            .expect("add");
        assert_eq!(added.len(), 4);
        let role = |user: &str| {
            server
                .object(
                    "rolebindings",
                    "waldur-alloc-roles",
                    &format!("waldur-{user}"),
                )
                .map(|rb| rb["roleRef"]["name"].as_str().unwrap_or("").to_owned())
        };
        assert_eq!(role("member1").as_deref(), Some("view"));
        assert_eq!(role("manager1").as_deref(), Some("edit"));
        assert_eq!(role("owner1").as_deref(), Some("admin"));
        assert_eq!(role("other").as_deref(), Some("edit"), "default_role");
        // A role change replaces the binding (roleRef is immutable).
        b.add_users(&r, &[grant("member1", Some("manager"))])
            .await
            .expect("promote");
        assert_eq!(role("member1").as_deref(), Some("edit"));
        b.remove_users(&r, &["member1".to_owned()])
            .await
            .expect("remove");
        assert_eq!(role("member1"), None);

        let meta = b.resource_metadata(&r).await.expect("metadata");
        assert_eq!(meta["name"], "waldur-alloc-roles");
        assert_eq!(meta["organization"], "waldur-org-uni");
        assert_eq!(meta["quotas"]["limits.cpu"], "8");
        assert_eq!(
            meta["kind"],
            if openshift { "Project" } else { "Namespace" }
        );
        assert!(meta["users"].as_array().expect("users").len() == 3);
        b.delete_resource(&r).await.expect("delete");
        assert!(
            server
                .object("namespaces", "", "waldur-alloc-roles")
                .is_none()
        );
    }
}

#[tokio::test]
async fn pause_downscale_restore_to_the_previous_limits() {
    let server = double(true).await;
    let b = backend(&server);
    let want = limits(&[
        ("cpu", 3.0),
        ("memory", 7.0),
        ("storage", 11.0),
        ("pods", 13.0),
    ]);
    let mut r = create(&b, "pause", want.clone()).await;
    let hard = || {
        server
            .object("resourcequotas", "waldur-alloc-pause", "waldur-quota")
            .expect("quota")["spec"]["hard"]
            .clone()
    };
    assert!(b.pause(&r).await.expect("pause"));
    assert_eq!(
        hard(),
        json!({"requests.cpu": "0", "limits.cpu": "0", "requests.memory": "0",
               "limits.memory": "0", "requests.storage": "0", "pods": "0"})
    );
    // Waldur still sees the resource's limits while it is paused.
    let pulled = b.pull_resource(&r).await.expect("pull").expect("exists");
    assert_eq!(pulled.limits, want);
    assert_eq!(pulled.backend_metadata["state"], "paused");
    // Limits changed while paused are remembered, the quota stays zero.
    let newer = limits(&[
        ("cpu", 5.0),
        ("memory", 7.0),
        ("storage", 11.0),
        ("pods", 13.0),
    ]);
    b.set_limits(&r, &newer).await.expect("set while paused");
    assert_eq!(hard()["requests.cpu"], "0");
    r.limits = limits(&[("cpu", 1.0)]); // restore must not use hard-coded or other values
    assert!(b.restore(&r).await.expect("restore"));
    assert_eq!(
        hard(),
        json!({"requests.cpu": "5", "limits.cpu": "10", "requests.memory": "7Gi",
               "limits.memory": "14Gi", "requests.storage": "11Gi", "pods": "13"})
    );
    assert!(!b.restore(&r).await.expect("restore again"));
    assert!(b.downscale(&r).await.expect("downscale"));
    assert_eq!(hard()["requests.cpu"], "1");
    assert_eq!(hard()["limits.memory"], "2Gi");
    assert!(!b.downscale(&r).await.expect("downscale again"));
    assert!(b.restore(&r).await.expect("restore"));
    assert_eq!(hard()["requests.cpu"], "5");
    b.delete_resource(&r).await.expect("delete");
}

#[tokio::test]
async fn static_token_401_is_one_clear_error_and_the_token_is_kept() {
    let server = double(true).await;
    let b = backend_with(
        json!({"api_url": server.url(), "token": "sha256~wrong-token",
        "max_retries": 0}),
    );
    server.reset_stats();
    let e = b.ping().await.expect_err("401");
    assert!(matches!(e, BackendError::Config(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("401") && text.contains("static token"),
        "{text}"
    );
    assert!(!text.contains("sha256~wrong-token"));
    // One request, no refresh loop; the next call sends the same token again (not wiped).
    let e2 = b.ping().await.expect_err("401 again");
    assert_eq!(e.to_string(), e2.to_string());
    assert_eq!(server.stats().total, 2, "{:?}", server.stats());
}

#[tokio::test]
async fn service_account_token_file_rotation_is_picked_up() {
    let dir = tempfile::tempdir().expect("tmp");
    let sa_dir = dir.path().join("sa");
    std::fs::create_dir_all(&sa_dir).expect("mkdir");
    let server = KubeServer::start(KubeOptions {
        sa_token_file: Some(sa_dir.join("token")),
        ..KubeOptions::default()
    })
    .await
    .expect("double");
    let b = backend_with(json!({"api_url": server.url(), "max_retries": 0,
        "token_config": {"token_type": "service_account",
                         "service_account_path": sa_dir.to_str().expect("utf-8")}}));
    b.ping().await.expect("first token");
    server.rotate_sa_token().expect("rotate");
    // The old token answers 401; the file changed: the next call reads it, no restart.
    b.ping().await.expect("rotated token picked up");
    let r = create(&b, "rot", limits(&[("cpu", 1.0)])).await;
    server.rotate_sa_token().expect("rotate again");
    b.set_limits(&r, &limits(&[("cpu", 2.0)]))
        .await
        .expect("after second rotation");
    b.delete_resource(&r).await.expect("delete");
}

#[tokio::test]
async fn file_token_source_reads_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = double(false).await;
    let path = dir.path().join("t");
    std::fs::write(&path, format!("{}\n", server.sa_token())).expect("write");
    let b = backend_with(json!({"api_url": server.url(), "max_retries": 0,
        "token_config": {"token_type": "file", "token_file_path": path}}));
    b.ping().await.expect("file token");
}

/// A server answering every request with 403 `Forbidden` (a token without the RBAC rights).
async fn forbidding_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = vec![0u8; 8192];
            let _ = sock.read(&mut buf).await;
            let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"namespaces is forbidden: User cannot list","reason":"Forbidden","code":403}"#;
            let resp = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    (format!("http://{addr}"), count)
}

#[tokio::test]
async fn a_403_is_a_permission_error_not_a_token_refresh() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("t");
    std::fs::write(&path, "some-token").expect("write");
    let (url, count) = forbidding_server().await;
    let b = backend_with(json!({"api_url": url, "max_retries": 3,
        "token_config": {"token_type": "file", "token_file_path": path}}));
    let e = b.ping().await.expect_err("403");
    assert!(!e.is_transient(), "{e:?}");
    assert!(e.to_string().contains("RBAC"), "{e}");
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no retry, no refresh"
    );
}

#[tokio::test]
async fn a_5xx_on_the_quota_read_is_not_absent() {
    let server = double(true).await;
    let b = backend(&server);
    let r = create(&b, "five", limits(&[("cpu", 1.0)])).await;
    server.set_faults(site_sim::FaultConfig {
        seed: 1,
        rules: vec![site_sim::FaultRule {
            route: "/api/v1/namespaces/{namespace}/resourcequotas/{name}".into(),
            method: Some("GET".into()),
            error_rate: 1.0,
            error_status: 503,
            latency_ms: 0,
            drop_rate: 0.0,
            drop_after_rate: 0.0,
        }],
    });
    let e = b
        .set_limits(&r, &limits(&[("cpu", 2.0)]))
        .await
        .expect_err("503");
    assert!(e.is_transient(), "{e:?}");
    server.set_faults(site_sim::FaultConfig::default());
    let q = server
        .object("resourcequotas", "waldur-alloc-five", "waldur-quota")
        .expect("quota");
    assert_eq!(
        q["spec"]["hard"]["requests.cpu"], "1",
        "no POST after a 5xx"
    );
    b.delete_resource(&r).await.expect("delete");
}

/// Writes are confirmed by their answers: a Create is the project request, the annotation
/// patch and the quota (no read-back); a limit change is one read and one PUT; a new member one
/// list and one POST.
#[tokio::test]
async fn writes_are_confirmed_by_their_answers_not_read_back() {
    for openshift in [true, false] {
        let server = double(openshift).await;
        let b = backend(&server);
        b.ping().await.expect("ping");
        let _ = b.api().openshift().await.expect("discovery");
        server.reset_stats();
        let r = create(&b, "count", limits(&[("cpu", 2.0), ("memory", 4.0)])).await;
        let s = server.stats();
        assert_eq!(s.total, if openshift { 3 } else { 2 }, "create: {s:?}");
        let pulled = b.pull_resource(&r).await.expect("pull").expect("exists");
        assert_eq!(pulled.limits, limits(&[("cpu", 2.0), ("memory", 4.0)]));

        server.reset_stats();
        b.set_limits(&r, &limits(&[("cpu", 3.0), ("memory", 4.0)]))
            .await
            .expect("limits");
        assert_eq!(server.stats().total, 2, "set limits: {:?}", server.stats());
        let q = server
            .object("resourcequotas", "waldur-alloc-count", "waldur-quota")
            .expect("quota");
        assert_eq!(q["spec"]["hard"]["limits.cpu"], "6");

        // Without a recent read of the resource: one list, one POST.
        let fresh = backend(&server);
        let _ = fresh.api().openshift().await.expect("discovery");
        server.reset_stats();
        let added = fresh
            .add_users(&r, &[grant("bob", Some("member"))])
            .await
            .expect("add");
        assert_eq!(added, vec!["bob".to_owned()]);
        assert_eq!(server.stats().total, 2, "add user: {:?}", server.stats());
        // After the resource was read (a membership pass): the POST alone.
        let _ = b.pull_resource(&r).await.expect("pull");
        server.reset_stats();
        let added = b
            .add_users(&r, &[grant("alice", Some("member"))])
            .await
            .expect("add");
        assert_eq!(added, vec!["alice".to_owned()]);
        assert_eq!(server.stats().total, 1, "add user: {:?}", server.stats());
        // Listed and present: nothing written.
        server.reset_stats();
        let added = fresh
            .add_users(&r, &[grant("alice", Some("member"))])
            .await
            .expect("add again");
        assert_eq!(added, vec!["alice".to_owned()]);
        assert_eq!(
            server.stats().total,
            1,
            "listed, present: {:?}",
            server.stats()
        );
        // A binding under that name without the agent's label (not listed) that grants the
        // same is kept as it is; one that grants something else is replaced.
        use k8s_openapi::api::rbac::v1::RoleBinding;
        let by_hand = |user: &str, role: &str| -> RoleBinding {
            serde_json::from_value(json!({
                "metadata": {"name": format!("waldur-{user}"), "namespace": "waldur-alloc-count"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            }))
            .expect("binding")
        };
        let rbs = fresh.api().rolebindings("waldur-alloc-count");
        for (user, role) in [("carol", "view"), ("dave", "admin")] {
            fresh
                .api()
                .create(&rbs, &by_hand(user, role))
                .await
                .expect("by hand")
                .expect("new");
        }
        let uid = |user: &str| {
            server
                .object(
                    "rolebindings",
                    "waldur-alloc-count",
                    &format!("waldur-{user}"),
                )
                .expect("binding")["metadata"]["uid"]
                .clone()
        };
        let (carol, dave) = (uid("carol"), uid("dave"));
        let added = fresh
            .add_users(
                &r,
                &[
                    grant("carol", Some("member")),
                    grant("dave", Some("member")),
                ],
            )
            .await
            .expect("add");
        assert_eq!(added, vec!["carol".to_owned(), "dave".to_owned()]);
        assert_eq!(uid("carol"), carol, "kept");
        assert_ne!(uid("dave"), dave, "replaced");
        let role = |user: &str| {
            server
                .object(
                    "rolebindings",
                    "waldur-alloc-count",
                    &format!("waldur-{user}"),
                )
                .expect("binding")["roleRef"]["name"]
                .clone()
        };
        assert_eq!(role("dave"), "view");
        // A revocation always reads the site: one list, one DELETE.
        server.reset_stats();
        let removed = b
            .remove_users(&r, &["alice".to_owned()])
            .await
            .expect("remove");
        assert_eq!(removed, vec!["alice".to_owned()]);
        assert_eq!(server.stats().total, 2, "remove user: {:?}", server.stats());
        assert!(
            server
                .object("rolebindings", "waldur-alloc-count", "waldur-alice")
                .is_none()
        );
        b.delete_resource(&r).await.expect("delete");
        server.shutdown().await;
    }
}

/// A membership pass over many resources lists namespaces, quotas and RoleBindings once; a
/// namespace without the agent's label (made by hand, or by another tool) is read on its own;
/// a terminating one is absent; a 5xx on a list is an error, not "absent".
#[tokio::test]
async fn a_membership_pass_lists_once_and_still_finds_unlabelled_namespaces() {
    let server = double(false).await;
    let b = backend(&server);
    let mut views = Vec::new();
    for i in 0..5 {
        let r = create(
            &b,
            &format!("many{i}"),
            limits(&[("cpu", f64::from(i + 1))]),
        )
        .await;
        b.add_users(&r, &[grant(&format!("user{i}"), Some("manager"))])
            .await
            .expect("add");
        views.push(r);
    }
    // A namespace the agent did not label, with a quota and a binding of the agent.
    let mut by_hand = view("byhand");
    by_hand.backend_id = "waldur-alloc-byhand".into();
    let plain = backend_with(json!({
        "api_url": server.url(), "token": server.sa_token(), "max_retries": 1,
        "timeout_seconds": 5, "cluster_type": "kubernetes",
    }));
    use k8s_openapi::api::core::v1::Namespace;
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": "waldur-alloc-byhand", "annotations": {"waldur/parent": "waldur-proj-x"}}
    }))
    .expect("namespace");
    plain
        .api()
        .create(&plain.api().namespaces(), &ns)
        .await
        .expect("create by hand")
        .expect("new");
    b.set_limits(&by_hand, &limits(&[("pods", 7.0)]))
        .await
        .expect("quota");
    b.add_users(&by_hand, &[grant("zed", None)])
        .await
        .expect("binding");
    views.push(by_hand);
    let mut missing = view("missing");
    missing.backend_id = "waldur-alloc-missing".into();
    views.push(missing);

    server.reset_stats();
    let infos = b.pull_resources(&views).await.expect("pull");
    let s = server.stats();
    // 3 lists, then the unlabelled namespace (namespace, quota, bindings) and the missing one.
    assert_eq!(s.total, 3 + 3 + 1, "{s:?}");
    assert_eq!(infos.len(), 6, "{:?}", infos.keys());
    for (i, r) in views.iter().take(5).enumerate() {
        let info = &infos[&r.backend_id];
        assert_eq!(info.limits, limits(&[("cpu", (i + 1) as f64)]));
        assert_eq!(info.users, vec![format!("user{i}")]);
        assert_eq!(info.parent_id, "waldur-proj-physics");
    }
    let hand = &infos["waldur-alloc-byhand"];
    assert_eq!(hand.limits, limits(&[("pods", 7.0)]));
    assert_eq!(hand.users, vec!["zed".to_owned()]);
    assert_eq!(hand.parent_id, "waldur-proj-x");
    // Each resource looks the same as when read on its own.
    for r in &views[..6] {
        let one = b.pull_resource(r).await.expect("pull").expect("exists");
        assert_eq!(one.limits, infos[&r.backend_id].limits);
        assert_eq!(one.users, infos[&r.backend_id].users);
        assert_eq!(
            one.backend_metadata, infos[&r.backend_id].backend_metadata,
            "{}",
            r.backend_id
        );
    }

    // Usage of many resources: one list.
    server.reset_stats();
    let ids: Vec<String> = views.iter().map(|v| v.backend_id.clone()).collect();
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let period = BillingPeriod::new(now.year(), now.month(), jiff::tz::TimeZone::UTC);
    let usage = b.usage_report(&ids, &period).await.expect("usage");
    assert_eq!(usage.len(), 6, "every quota, none for the missing one");
    assert_eq!(server.stats().total, 1, "{:?}", server.stats());

    // The rest of a membership pass (restore and metadata of each resource) is answered by
    // what the pass read; a write to a resource makes the next call read it again.
    server.reset_stats();
    let infos = b.pull_resources(&views).await.expect("pull");
    for r in &views[..6] {
        assert!(!b.restore(r).await.expect("restore"), "not paused");
        let meta = b.resource_metadata(r).await.expect("metadata");
        assert_eq!(meta, infos[&r.backend_id].backend_metadata);
    }
    assert_eq!(
        server.stats().total,
        3 + 3 + 1,
        "the pull's requests only: {:?}",
        server.stats()
    );
    assert!(b.pause(&views[0]).await.expect("pause"));
    server.reset_stats();
    let meta = b.resource_metadata(&views[0]).await.expect("metadata");
    assert_eq!(meta["state"], "paused");
    assert_eq!(
        server.stats().total,
        0,
        "the pause's answer updated what the pass read"
    );
    // A write that fails drops it: the next call reads again.
    server.set_faults(site_sim::FaultConfig {
        seed: 1,
        rules: vec![site_sim::FaultRule {
            route: "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings".into(),
            method: Some("POST".into()),
            error_rate: 1.0,
            error_status: 500,
            latency_ms: 0,
            drop_rate: 0.0,
            drop_after_rate: 0.0,
        }],
    });
    let e = b
        .add_users(&views[1], &[grant("newcomer", None)])
        .await
        .expect_err("500");
    assert!(e.is_transient(), "{e:?}");
    server.set_faults(site_sim::FaultConfig::default());
    server.reset_stats();
    let meta = b.resource_metadata(&views[1]).await.expect("metadata");
    assert_eq!(meta["users"], json!(["user1"]));
    assert_eq!(server.stats().total, 3, "read again after a failed write");
    let added = b
        .add_users(&views[1], &[grant("newcomer", None)])
        .await
        .expect("add");
    assert_eq!(added, vec!["newcomer".to_owned()]);
    server.reset_stats();
    let meta = b.resource_metadata(&views[1]).await.expect("metadata");
    assert_eq!(meta["users"], json!(["newcomer", "user1"]));
    assert_eq!(server.stats().total, 0, "the POST's answer is kept");
    assert!(b.restore(&views[0]).await.expect("restore"));
    assert_eq!(
        server
            .object("resourcequotas", &views[0].backend_id, "waldur-quota")
            .expect("quota")["spec"]["hard"]["requests.cpu"],
        "1"
    );

    server.set_faults(site_sim::FaultConfig {
        seed: 1,
        rules: vec![site_sim::FaultRule {
            route: "/api/v1/resourcequotas".into(),
            method: Some("GET".into()),
            error_rate: 1.0,
            error_status: 503,
            latency_ms: 0,
            drop_rate: 0.0,
            drop_after_rate: 0.0,
        }],
    });
    let e = b.pull_resources(&views).await.expect_err("503 on the list");
    assert!(e.is_transient(), "{e:?}");
    server.set_faults(site_sim::FaultConfig::default());
    for r in &views[..6] {
        b.delete_resource(r).await.expect("delete");
    }
    let infos = b.pull_resources(&views).await.expect("pull");
    assert!(infos.is_empty(), "{:?}", infos.keys());
    server.shutdown().await;
}
