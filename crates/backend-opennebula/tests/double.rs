//! The `opennebula` backend against the site-sim OpenNebula double: VDC lifecycle with
//! networking and a user, VM lifecycle with a plan switch, a VM that fails to boot, subnets of
//! concurrent creates, creates under connection resets, and the conformance checks that apply
//! (orders in batches, usage; the membership checks with Keycloak role groups are in keycloak_double.rs).

use std::collections::BTreeMap;
use std::time::Duration;

use backend_api::testkit::conformance::{self, BatchFixture};
use backend_api::{
    BackendError, BackendHealth, BillingPeriod, CreateRequest, Limits, OrderBackend, ResourceView,
    UsageBackend, UsageReport, UserContext,
};
use backend_opennebula::{OneBackend, OneSettings};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};
use site_sim::opennebula::store::{UsageUpdate, VmFailure};
use site_sim::{FaultConfig, FaultRule, OneOptions, OneServer};

async fn double() -> OneServer {
    OneServer::start(OneOptions {
        vm_step: Duration::from_millis(20),
        ..Default::default()
    })
    .await
    .expect("double starts")
}

fn backend_with(server: &OneServer, extra: Value) -> OneBackend {
    let mut s = json!({
        "api_url": server.info().url, "credentials": server.info().credentials,
        "max_retries": 3, "timeout_seconds": 5, "vm_poll_seconds": 0.02, "vm_wait_seconds": 10,
    });
    if let (Some(m), Value::Object(e)) = (s.as_object_mut(), extra) {
        m.extend(e);
    }
    let settings = OneSettings::parse(s.as_object().expect("object")).expect("settings");
    OneBackend::new("one-test", settings, IndexMap::new(), None).expect("backend")
}

fn networking() -> Map<String, Value> {
    json!({
        "cluster_ids": [0, 100], "external_network_id": 10, "virtual_router_template_id": 8,
        "security_group_defaults": [{"direction": "INBOUND", "protocol": "TCP", "range": "22:22"}],
    })
    .as_object()
    .cloned()
    .expect("object")
}

fn view(slug: &str, options: Map<String, Value>) -> ResourceView {
    ResourceView {
        uuid: format!("{slug}-uuid"),
        name: slug.to_owned(),
        slug: slug.to_owned(),
        offering_plugin_options: options,
        ..Default::default()
    }
}

fn limits(pairs: &[(&str, f64)]) -> Limits {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn request(b: &OneBackend, mut r: ResourceView, l: Limits) -> CreateRequest {
    r.backend_id = b.backend_id_for(&r.slug).expect("id");
    r.limits = l;
    CreateRequest {
        backend_id: r.backend_id.clone(),
        resource: r,
        context: UserContext::default(),
    }
}

fn summary(server: &OneServer) -> BTreeMap<&'static str, Vec<String>> {
    let st = server.state().store();
    let live = |v: &site_sim::opennebula::store::Vm| v.state != 6;
    BTreeMap::from([
        (
            "groups",
            st.groups.values().map(|g| g.name.clone()).collect(),
        ),
        ("vdcs", st.vdcs.values().map(|g| g.name.clone()).collect()),
        ("vnets", st.vnets.values().map(|g| g.name.clone()).collect()),
        (
            "vrouters",
            st.vrouters.values().map(|g| g.named.name.clone()).collect(),
        ),
        (
            "secgroups",
            st.secgroups.values().map(|g| g.name.clone()).collect(),
        ),
        ("users", st.users.values().map(|g| g.name.clone()).collect()),
        (
            "vms",
            st.vms
                .values()
                .filter(|v| live(v))
                .map(|g| g.name.clone())
                .collect(),
        ),
    ])
}

#[tokio::test]
async fn vdc_lifecycle_with_network_user_quota_and_usage() {
    let server = double().await;
    let b = backend_with(&server, json!({"create_opennebula_user": true}));
    b.ping().await.expect("ping");
    let req = request(
        &b,
        view("vdc1", networking()),
        limits(&[
            ("cpu", 4.0),
            ("ram", 8192.0),
            ("storage", 20480.0),
            ("floating_ip", 2.0),
        ]),
    );
    let r = req.resource.clone();
    let info = b.create_resource(req.clone()).await.expect("create");
    let meta = &info.backend_metadata;
    assert_eq!(meta["opennebula_username"], json!("vdc1_admin"));
    let password = meta["opennebula_password"]
        .as_str()
        .expect("password")
        .to_owned();
    assert!(password.len() >= 16);
    assert_eq!(meta["subnet"], json!("10.0.1.0/24"));
    let s = summary(&server);
    assert!(s["groups"].contains(&"vdc1".to_owned()) && s["vdcs"].contains(&"vdc1".to_owned()));
    assert!(
        s["vnets"].contains(&"vdc1_internal".to_owned()) && s["vrouters"] == vec!["vdc1_router"]
    );
    assert!(
        s["secgroups"].contains(&"vdc1_default".to_owned())
            && s["users"].contains(&"vdc1_admin".to_owned())
    );
    assert_eq!(s["vms"], vec!["vdc1_router_vm"], "the router's VM runs");
    {
        let st = server.state().store();
        let vr_vm = st
            .vms
            .values()
            .find(|v| v.name == "vdc1_router_vm")
            .expect("vm");
        assert_eq!((vr_vm.state, vr_vm.lcm), (3, 3));
        let vdc = st.vdcs.values().find(|v| v.name == "vdc1").expect("vdc");
        assert_eq!(vdc.clusters.len(), 2);
        assert_eq!(vdc.vnets.len(), 1);
    }
    let pulled = b.pull_resource(&r).await.expect("pull").expect("exists");
    assert_eq!(pulled.limits, r.limits);
    assert!(matches!(
        b.create_resource(req).await,
        Err(BackendError::Duplicate { .. })
    ));

    // Credentials survive a restart: a new backend reads them from the user's template.
    let again = backend_with(&server, json!({"create_opennebula_user": true}));
    let pulled = again
        .pull_resource(&r)
        .await
        .expect("pull")
        .expect("exists");
    assert_eq!(
        pulled.backend_metadata["opennebula_password"],
        json!(password)
    );
    let reset = again.reset_vdc_user_password("vdc1").await.expect("reset");
    assert_ne!(reset["opennebula_password"], json!(password));

    let updated = limits(&[("cpu", 8.0), ("ram", 16384.0)]);
    b.set_limits(&r, &updated).await.expect("set limits");
    let pulled = b.pull_resource(&r).await.expect("pull").expect("exists");
    assert_eq!(
        (
            pulled.limits["cpu"],
            pulled.limits["ram"],
            pulled.limits["storage"]
        ),
        (8.0, 16384.0, 20480.0)
    );
    assert!(matches!(
        b.check_limits(&r, &limits(&[("gpu", 1.0)])),
        Err(BackendError::Limit(_))
    ));

    server
        .state()
        .store()
        .set_usage(
            "vdc1",
            &UsageUpdate {
                group: "vdc1".into(),
                cpu: Some(2.0),
                memory: Some(2048.0),
                size: Some(300),
                leases: Some(1),
                datastore: Some("-1".into()),
                network: Some("-1".into()),
                ..Default::default()
            },
        )
        .expect("usage");
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let period = BillingPeriod::containing(&now);
    let expected: BTreeMap<String, UsageReport> = [(
        "vdc1".to_owned(),
        UsageReport {
            total: limits(&[
                ("cpu", 2.0),
                ("ram", 2048.0),
                ("storage", 300.0),
                ("floating_ip", 1.0),
            ]),
            per_user: BTreeMap::new(),
        },
    )]
    .into();
    conformance::usage_round_trip(&b, &["vdc1".to_owned()], &period, &expected).await;

    b.delete_resource(&r).await.expect("delete");
    let s = summary(&server);
    for (pool, names) in &s {
        assert!(
            names.iter().all(|n| !n.starts_with("vdc1")),
            "{pool} still holds {names:?}"
        );
    }
    b.delete_resource(&r).await.expect("delete again");
    assert!(b.pull_resource(&r).await.expect("pull").is_none());
}

#[tokio::test]
async fn vm_lifecycle_plan_switch_and_a_vm_that_fails_to_boot() {
    let server = double().await;
    let vdcs = backend_with(&server, json!({}));
    vdcs.create_resource(request(
        &vdcs,
        view("parent", networking()),
        limits(&[("cpu", 16.0)]),
    ))
    .await
    .expect("parent VDC");
    let b = backend_with(
        &server,
        json!({"resource_type": "vm", "parent_vdc_backend_id": "parent", "template_id": 0}),
    );
    let mut req = request(&b, view("vm1", Map::new()), Limits::new());
    req.context.plan_quotas = limits(&[("vcpu", 2.0), ("vm_ram", 2048.0), ("vm_disk", 10240.0)]);
    req.resource.attributes = json!({"ssh_public_key": "ssh-ed25519 AAAAC3Nz test@host"})
        .as_object()
        .cloned()
        .expect("object");
    let info = b.create_resource(req.clone()).await.expect("create VM");
    assert_eq!(
        info.limits, req.context.plan_quotas,
        "the plan's size, disk included"
    );
    let ip = info.backend_metadata["ip_address"]
        .as_str()
        .expect("ip")
        .to_owned();
    assert!(ip.starts_with("10.0.1."), "{ip}");
    {
        let st = server.state().store();
        let vm = st.vms.values().find(|v| v.name == "vm1").expect("vm");
        assert_eq!((vm.state, vm.lcm), (3, 3));
        assert_eq!(
            st.groups.get(&vm.gid).map(|g| g.name.as_str()),
            Some("parent")
        );
        let ctx = vm.template.vectors("CONTEXT").next().expect("context");
        assert!(
            ctx.iter()
                .any(|(k, v)| k == "SSH_PUBLIC_KEY" && v.contains("AAAAC3Nz"))
        );
    }
    let r = req.resource.clone();
    let bigger = limits(&[("vcpu", 4.0), ("vm_ram", 4096.0), ("vm_disk", 20480.0)]);
    b.set_limits(&r, &bigger).await.expect("plan switch");
    let pulled = b.pull_resource(&r).await.expect("pull").expect("exists");
    assert_eq!(pulled.limits, bigger);
    {
        let st = server.state().store();
        let vm = st.vms.values().find(|v| v.name == "vm1").expect("vm");
        assert_eq!((vm.state, vm.lcm), (3, 3), "resumed after the resize");
    }
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let usage = b
        .usage_report(&["vm1".to_owned()], &BillingPeriod::containing(&now))
        .await
        .expect("usage");
    assert_eq!(usage["vm1"].total, bigger);
    b.delete_resource(&r).await.expect("terminate");
    assert!(b.pull_resource(&r).await.expect("pull").is_none());

    server.state().store().failures.push(VmFailure {
        name_contains: "broken".into(),
        state: "BOOT_FAILURE".into(),
        count: None,
    });
    let mut bad = request(&b, view("broken", Map::new()), Limits::new());
    bad.context.plan_quotas = limits(&[("vcpu", 1.0), ("vm_ram", 512.0)]);
    let err = b.create_resource(bad).await.expect_err("boot failure");
    assert!(err.to_string().contains("BOOT_FAILURE"), "{err}");
    assert!(!err.is_transient());
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.state().store().advance(std::time::Instant::now());
    assert!(
        !summary(&server)["vms"].contains(&"broken".to_owned()),
        "the failed VM is terminated"
    );
}

#[tokio::test]
async fn two_vdcs_created_at_once_get_different_subnets() {
    let server = double().await;
    // Within one agent (the subnet lock) and across two agents (the check after the create).
    let b = backend_with(&server, json!({}));
    let other_agent = backend_with(&server, json!({}));
    let (x, y, z) = tokio::join!(
        b.create_resource(request(
            &b,
            view("left", networking()),
            limits(&[("cpu", 1.0)])
        )),
        b.create_resource(request(
            &b,
            view("right", networking()),
            limits(&[("cpu", 1.0)])
        )),
        other_agent.create_resource(request(
            &other_agent,
            view("third", networking()),
            limits(&[("cpu", 1.0)])
        )),
    );
    let subnets: std::collections::BTreeSet<String> = [x, y, z]
        .into_iter()
        .map(|r| r.expect("create").backend_metadata["subnet"].to_string())
        .collect();
    assert_eq!(subnets.len(), 3, "{subnets:?}");
}

/// Two agents (two offerings with the same prefix) creating the same name at once: one gets it,
/// the other a Duplicate (so the core tries its next id), and nothing of the winner's is touched.
#[tokio::test]
async fn the_same_name_from_two_agents_is_one_vdc_and_a_duplicate() {
    let server = double().await;
    let (a, b) = (
        backend_with(&server, json!({})),
        backend_with(&server, json!({})),
    );
    let (x, y) = tokio::join!(
        a.create_resource(request(
            &a,
            view("same", networking()),
            limits(&[("cpu", 1.0)])
        )),
        b.create_resource(request(
            &b,
            view("same", networking()),
            limits(&[("cpu", 1.0)])
        )),
    );
    let (ok, dup) = match (x, y) {
        (Ok(info), Err(e)) | (Err(e), Ok(info)) => (info, e),
        other => panic!("expected one create and one Duplicate: {other:?}"),
    };
    assert!(matches!(dup, BackendError::Duplicate { .. }), "{dup}");
    assert_eq!(ok.backend_id, "same");
    let s = summary(&server);
    let named = |pool: &str, name: &str| s[pool].iter().filter(|n| *n == name).count();
    assert_eq!(named("vdcs", "same"), 1, "{s:?}");
    assert_eq!(named("groups", "same"), 1, "{s:?}");
    assert_eq!(named("vrouters", "same_router"), 1, "{s:?}");
    assert_eq!(named("vms", "same_router_vm"), 1, "{s:?}");
    let st = server.state().store();
    let vm = st
        .vms
        .values()
        .find(|v| v.name == "same_router_vm")
        .expect("vm");
    assert_eq!(
        (vm.state, vm.lcm),
        (3, 3),
        "the winner's router keeps running"
    );
}

/// A group an operator made with the name the agent would use is theirs: a Duplicate, and the
/// group is left as it was.
#[tokio::test]
async fn a_group_made_by_someone_else_is_not_taken_over() {
    let server = double().await;
    server
        .state()
        .store()
        .call(
            0,
            "one.group.allocate",
            &[
                http_kit::xmlrpc::Value::String("oneadmin:session".into()),
                http_kit::xmlrpc::Value::String("held".into()),
            ],
        )
        .expect("the operator's group");
    let b = backend_with(&server, json!({}));
    let r = b
        .create_resource(request(
            &b,
            view("held", networking()),
            limits(&[("cpu", 1.0)]),
        ))
        .await;
    assert!(matches!(r, Err(BackendError::Duplicate { .. })), "{r:?}");
    let s = summary(&server);
    assert!(s["groups"].contains(&"held".to_owned()), "{s:?}");
    let held = |n: &String| n.starts_with("held");
    assert!(
        !s["vdcs"].iter().any(held) && !s["vnets"].iter().any(held) && !s["vms"].iter().any(held),
        "{s:?}"
    );
}

#[tokio::test]
async fn twenty_creates_under_connection_resets_leave_twenty_vdcs_and_nothing_else() {
    let server = double().await;
    let b = backend_with(&server, json!({"max_retries": 5}));
    server.set_faults(FaultConfig {
        seed: 7,
        rules: vec![FaultRule {
            route: "/RPC2/*".into(),
            method: None,
            error_rate: 0.0,
            error_status: 503,
            latency_ms: 0,
            drop_rate: 0.15,
            drop_after_rate: 0.15,
        }],
    });
    for i in 0..20 {
        let req = request(
            &b,
            view(&format!("reset{i:02}"), networking()),
            limits(&[("cpu", 2.0)]),
        );
        // The agent's cycle: a failed create is tried again on the next cycle.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match b.create_resource(req.clone()).await {
                Ok(_) => break,
                Err(BackendError::Duplicate { .. }) => {
                    // A reply lost after the VDC was made: the resource is there.
                    break;
                }
                Err(e) => assert!(attempts < 30, "reset{i:02}: {e}"),
            }
        }
    }
    server.set_faults(FaultConfig::default());
    let s = summary(&server);
    let ours = |pool: &str| s[pool].iter().filter(|n| n.starts_with("reset")).count();
    assert_eq!(ours("vdcs"), 20, "{s:?}");
    assert_eq!(ours("groups"), 20, "{s:?}");
    assert_eq!(ours("vnets"), 20, "{s:?}");
    assert_eq!(ours("vrouters"), 20, "{s:?}");
    assert_eq!(ours("secgroups"), 20, "{s:?}");
    assert_eq!(ours("vms"), 20, "one router VM each: {s:?}");
    let subnets: std::collections::BTreeSet<String> = server
        .state()
        .store()
        .vnets
        .values()
        .filter(|v| v.name.starts_with("reset"))
        .map(|v| v.ars[0].first.to_string())
        .collect();
    assert_eq!(subnets.len(), 20, "no subnet twice");
}

#[tokio::test]
async fn batches_and_a_site_that_is_down() {
    let server = double().await;
    let b = backend_with(&server, json!({}));
    conformance::batch_partial_failure_and_order(
        &b,
        BatchFixture {
            first: view("b1", Map::new()),
            second: view("b2", Map::new()),
            third: view("b3", Map::new()),
            limits: limits(&[("cpu", 2.0), ("ram", 1024.0)]),
        },
    )
    .await;
    let secret = server.info().password.clone();
    let r = request(&b, view("down", Map::new()), limits(&[("cpu", 1.0)]));
    server.shutdown().await;
    let errors = [
        b.ping().await.err(),
        b.pull_resource(&r.resource).await.err(),
        b.create_resource(r.clone()).await.err(),
        b.set_limits(&r.resource, &limits(&[("cpu", 2.0)]))
            .await
            .err(),
        b.delete_resource(&r.resource).await.err(),
    ];
    for e in &errors {
        let e = e.as_ref().expect("an error while the site is down");
        assert!(e.is_transient(), "{e}");
        assert!(!e.to_string().contains(&secret), "{e}");
    }
}

#[tokio::test]
async fn wrong_credentials_are_a_configuration_error_without_the_password() {
    let server = double().await;
    let settings =
        json!({"api_url": server.info().url, "credentials": "oneadmin:not-the-password"});
    let settings = OneSettings::parse(settings.as_object().expect("object")).expect("settings");
    let b = OneBackend::new("one-test", settings, IndexMap::new(), None).expect("backend");
    let err = b.ping().await.expect_err("refused");
    assert!(matches!(err, BackendError::Config(_)), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");
}
