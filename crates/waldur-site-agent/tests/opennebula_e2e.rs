//! End to end through the binary: `waldur-sim --offering-kind opennebula-vdc` and
//! `opennebula-vm` (in process) and the OpenNebula double of `site-sim` (in process).
//!
//! - A VDC order → group, VDC, quota, VNet, running virtual router, user credentials in Waldur;
//!   update limits → quota; report → usage; terminate → every object gone.
//! - A VM order in that VDC → running VM with the plan's size and disk, IP in metadata; a plan
//!   switch → resized; terminate → VM gone. A VM that fails to boot is cleaned up and its order
//!   erred naming the state.
//! - With connection resets on 30 % of calls, 20 VDC orders end with 20 VDCs and nothing else.
//! - Two VDCs created by two agents at once get different subnets.
//! - With `keycloak_enabled` (and the Keycloak double): a VDC order → Keycloak role groups,
//!   OpenNebula role groups with FireEdge views and the SAML mapping entries; project members
//!   join the user group (one without a Keycloak account only once it exists), a member who
//!   leaves is removed; a second run writes nothing; terminate → groups and entries gone.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use site_sim::opennebula::store::{UsageUpdate, VmFailure};
use site_sim::{FaultConfig, FaultRule, KeycloakOptions, KeycloakServer, OneOptions, OneServer};
use waldur_sim::consumer::ConsumerClient;
use waldur_sim::{DemoOfferingKind, SimOptions, SimServer};

mod common;

use common::agent;
use common::limits;

async fn one() -> OneServer {
    OneServer::start(OneOptions {
        vm_step: Duration::from_millis(30),
        ..OneOptions::default()
    })
    .await
    .expect("OpenNebula double")
}

async fn sim(kind: DemoOfferingKind) -> SimServer {
    SimServer::start(SimOptions {
        demo: true,
        demo_offering_kind: kind,
        ..SimOptions::default()
    })
    .await
    .expect("simulator")
}

fn write_config(path: &Path, sim: &SimServer, one: &OneServer, extra: Value) {
    let demo = sim.demo();
    let mut settings = json!({
        "api_url": one.info().url,
        "credentials": one.info().credentials,
        "vm_poll_seconds": 0.05,
        "vm_wait_seconds": 20,
        "max_retries": 5,
    });
    if let (Some(m), Value::Object(e)) = (settings.as_object_mut(), extra) {
        m.extend(e);
    }
    // Membership sync needs the Keycloak role groups.
    let membership = (settings["keycloak_enabled"] == json!(true)).then_some("opennebula");
    let config = json!({
        "offerings": [{
            "name": "opennebula-e2e",
            "waldur_api_url": demo.api_url,
            "waldur_api_token": demo.provider_token,
            "waldur_offering_uuid": demo.offering_uuid,
            "backend_type": "opennebula",
            "order_processing_backend": "opennebula",
            "reporting_backend": "opennebula",
            "membership_sync_backend": membership,
            "backend_settings": settings,
            "backend_components": {}
        }]
    });
    std::fs::write(path, serde_json::to_string_pretty(&config).expect("json")).expect("config");
}

/// Names per pool (VMs: those not DONE).
fn pools(one: &OneServer) -> BTreeMap<&'static str, Vec<String>> {
    let st = one.state().store();
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
                .filter(|v| v.state != 6)
                .map(|g| g.name.clone())
                .collect(),
        ),
    ])
}

async fn order_vdc(consumer: &ConsumerClient, sim: &SimServer, name: &str) -> String {
    let demo = sim.demo();
    consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[
                ("cpu", 4),
                ("ram", 8192),
                ("storage", 20480),
                ("floating_ip", 2),
            ]),
            name,
        )
        .await
        .expect("create order")
}

async fn resource_of(consumer: &ConsumerClient, order: &str) -> (String, Value) {
    let o = consumer.order(order).await.expect("order");
    let uuid = o["marketplace_resource_uuid"]
        .as_str()
        .expect("resource")
        .to_owned();
    let r = consumer.resource(&uuid).await.expect("resource");
    (uuid, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vdc_and_vm_lifecycles_through_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = one().await;
    let vdc_sim = sim(DemoOfferingKind::OpennebulaVdc).await;
    let vdc_config = dir.path().join("vdc.yaml");
    write_config(
        &vdc_config,
        &vdc_sim,
        &one,
        json!({"create_opennebula_user": true}),
    );
    let consumer = ConsumerClient::new(&vdc_sim.demo().api_url, &vdc_sim.demo().consumer_token);

    // VDC order → group, VDC, quota, VNet, running virtual router, user credentials.
    let order = order_vdc(&consumer, &vdc_sim, "tenant one").await;
    let (ok, log) = agent(&vdc_config, "order_process");
    assert!(ok, "order_process:\n{log}");
    assert_eq!(
        consumer.order(&order).await.expect("o")["state"],
        "done",
        "{log}"
    );
    let (resource_uuid, resource) = resource_of(&consumer, &order).await;
    let vdc = resource["backend_id"]
        .as_str()
        .expect("backend id")
        .to_owned();
    let p = pools(&one);
    assert!(
        p["vdcs"].contains(&vdc) && p["groups"].contains(&vdc),
        "{p:?}"
    );
    assert!(p["vnets"].contains(&format!("{vdc}_internal")), "{p:?}");
    assert!(p["vrouters"].contains(&format!("{vdc}_router")), "{p:?}");
    assert!(
        p["vms"].contains(&format!("{vdc}_router_vm")),
        "the router's VM runs: {p:?}"
    );
    assert!(p["secgroups"].contains(&format!("{vdc}_default")), "{p:?}");
    let meta = &resource["backend_metadata"];
    assert_eq!(
        meta["opennebula_username"],
        json!(format!("{vdc}_admin")),
        "{resource}"
    );
    assert!(
        meta["opennebula_password"]
            .as_str()
            .is_some_and(|p| p.len() >= 16)
    );
    let quota = |one: &OneServer| {
        let st = one.state().store();
        let g = st.groups.values().find(|g| g.name == vdc).expect("group");
        g.quota.vm.clone().expect("VM quota")
    };
    assert_eq!(quota(&one)[0..2], ["4".to_owned(), "8192".to_owned()]);

    // Update limits → quota.
    let update = consumer
        .update_limits(
            &resource_uuid,
            limits(&[
                ("cpu", 8),
                ("ram", 16384),
                ("storage", 20480),
                ("floating_ip", 2),
            ]),
        )
        .await
        .expect("update");
    let (ok, log) = agent(&vdc_config, "order_process");
    assert!(ok, "{log}");
    assert_eq!(
        consumer.order(&update).await.expect("o")["state"],
        "done",
        "{log}"
    );
    assert_eq!(quota(&one)[0..2], ["8".to_owned(), "16384".to_owned()]);

    // VM order in that VDC → running VM with the plan's size and disk, IP in metadata.
    let vm_sim = sim(DemoOfferingKind::OpennebulaVm).await;
    let vm_config = dir.path().join("vm.yaml");
    write_config(
        &vm_config,
        &vm_sim,
        &one,
        json!({"resource_type": "vm", "parent_vdc_backend_id": vdc}),
    );
    let vm_demo = vm_sim.demo().clone();
    let vm_consumer = ConsumerClient::new(&vm_demo.api_url, &vm_demo.consumer_token);
    let plan = |name: &str| {
        vm_sim
            .state()
            .plans
            .values()
            .find(|p| p.name == name)
            .map(|p| p.uuid.simple().to_string())
            .expect("plan")
    };
    let vm_order = vm_consumer
        .post(
            "marketplace-orders/",
            json!({"offering": vm_demo.offering_uuid, "project": vm_demo.project_uuid, "plan": plan("Small"),
                   "limits": {}, "attributes": {"name": "web", "ssh_public_key": "ssh-ed25519 AAAAC3Nz demo@host"}}),
        )
        .await
        .expect("vm order")["uuid"]
        .as_str()
        .expect("uuid")
        .to_owned();
    let (ok, log) = agent(&vm_config, "order_process");
    assert!(ok, "{log}");
    assert_eq!(
        vm_consumer.order(&vm_order).await.expect("o")["state"],
        "done",
        "{log}"
    );
    let (vm_uuid, vm_resource) = resource_of(&vm_consumer, &vm_order).await;
    let vm_name = vm_resource["backend_id"]
        .as_str()
        .expect("backend id")
        .to_owned();
    assert!(
        vm_resource["backend_metadata"]["ip_address"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.0.")),
        "{vm_resource}"
    );
    let size = |one: &OneServer| {
        let st = one.state().store();
        let vm = st
            .vms
            .values()
            .find(|v| v.name == vm_name && v.state != 6)
            .expect("vm");
        let disk = vm
            .template
            .vectors("DISK")
            .next()
            .and_then(|d| d.iter().find(|(k, _)| k == "SIZE").map(|(_, v)| v.clone()));
        (
            vm.state,
            vm.lcm,
            vm.template.get("VCPU").map(str::to_owned),
            vm.template.get("MEMORY").map(str::to_owned),
            disk,
            st.groups.get(&vm.gid).map(|g| g.name.clone()),
        )
    };
    assert_eq!(
        size(&one),
        (
            3,
            3,
            Some("1".into()),
            Some("512".into()),
            Some("5120".into()),
            Some(vdc.clone())
        )
    );

    // Plan switch → resized (power off, resize, grow the disk, resume).
    let switch = vm_consumer
        .switch_plan(&vm_uuid, &plan("Medium"))
        .await
        .expect("switch");
    let (ok, log) = agent(&vm_config, "order_process");
    assert!(ok, "{log}");
    assert_eq!(
        vm_consumer.order(&switch).await.expect("o")["state"],
        "done",
        "{log}"
    );
    assert_eq!(
        size(&one),
        (
            3,
            3,
            Some("2".into()),
            Some("2048".into()),
            Some("10240".into()),
            Some(vdc.clone())
        )
    );

    // A VM that fails to boot → cleaned up, order erred naming the state.
    // The next VM made fails to boot (names come from the project slug here).
    one.state().store().failures.push(VmFailure {
        name_contains: String::new(),
        state: "BOOT_FAILURE".into(),
        count: Some(1),
    });
    let vms_before = pools(&one)["vms"].clone();
    let broken = vm_consumer
        .post(
            "marketplace-orders/",
            json!({"offering": vm_demo.offering_uuid, "project": vm_demo.project_uuid, "plan": plan("Small"),
                   "limits": {}, "attributes": {"name": "broken"}}),
        )
        .await
        .expect("order")["uuid"]
        .as_str()
        .expect("uuid")
        .to_owned();
    let (_, log) = agent(&vm_config, "order_process");
    let o = vm_consumer.order(&broken).await.expect("o");
    assert_eq!(o["state"], "erred", "{o}\n{log}");
    assert!(
        o["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("BOOT_FAILURE")),
        "{o}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    one.state().store().advance(std::time::Instant::now());
    assert_eq!(
        pools(&one)["vms"],
        vms_before,
        "the failed VM is terminated"
    );

    // Report → usage in Waldur (VDC: quota counters; VM: its size).
    one.state()
        .store()
        .set_usage(
            &vdc,
            &UsageUpdate {
                group: vdc.clone(),
                cpu: Some(1.0),
                memory: Some(1024.0),
                size: Some(400),
                leases: Some(1),
                datastore: Some("-1".into()),
                network: Some("-1".into()),
                ..Default::default()
            },
        )
        .expect("usage");
    let (ok, log) = agent(&vdc_config, "report");
    assert!(ok, "report:\n{log}");
    let resource = uuid::Uuid::parse_str(&resource_uuid).expect("uuid");
    let usage: BTreeMap<String, i64> = vdc_sim
        .state()
        .component_usages
        .values()
        .filter(|u| u.resource == resource)
        .map(|u| (u.component_type.clone(), u.usage_cents))
        .collect();
    // The VM (2 vCPU, 2048 MB) runs in the VDC's group: its size counts in the quota too.
    assert_eq!(usage.get("cpu"), Some(&300), "{usage:?}\n{log}");
    assert_eq!(usage.get("storage"), Some(&40000), "{usage:?}");

    // Terminate the VM → gone; terminate the VDC → every object gone.
    let t = vm_consumer.terminate(&vm_uuid).await.expect("terminate");
    let (ok, log) = agent(&vm_config, "order_process");
    assert!(ok, "{log}");
    assert_eq!(
        vm_consumer.order(&t).await.expect("o")["state"],
        "done",
        "{log}"
    );
    assert!(!pools(&one)["vms"].contains(&vm_name));
    let t = consumer.terminate(&resource_uuid).await.expect("terminate");
    let (ok, log) = agent(&vdc_config, "order_process");
    assert!(ok, "{log}");
    assert_eq!(
        consumer.order(&t).await.expect("o")["state"],
        "done",
        "{log}"
    );
    for (pool, names) in pools(&one) {
        assert!(
            names.iter().all(|n| !n.starts_with(&vdc)),
            "{pool} still holds {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_vdcs_under_connection_resets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = one().await;
    let sim = sim(DemoOfferingKind::OpennebulaVdc).await;
    let config = dir.path().join("vdc.yaml");
    write_config(&config, &sim, &one, json!({}));
    let consumer = ConsumerClient::new(&sim.demo().api_url, &sim.demo().consumer_token);
    let mut orders = Vec::new();
    for i in 0..20 {
        orders.push(order_vdc(&consumer, &sim, &format!("reset {i}")).await);
    }
    one.set_faults(FaultConfig {
        seed: 11,
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
    let mut logs = String::new();
    for _ in 0..15 {
        let (_, log) = agent(&config, "order_process");
        logs.push_str(&log);
        let mut open = 0;
        for o in &orders {
            if consumer.order(o).await.expect("o")["state"] != "done" {
                open += 1;
            }
        }
        if open == 0 {
            break;
        }
    }
    one.set_faults(FaultConfig::default());
    for o in &orders {
        let state = consumer.order(o).await.expect("o")["state"].clone();
        assert_eq!(
            state,
            "done",
            "{o}: {}",
            &logs[logs.len().saturating_sub(4000)..]
        );
    }
    let p = pools(&one);
    // Names come from the project slug: demo-project, demo-project-0, ...
    let ours = |pool: &str| {
        p[pool]
            .iter()
            .filter(|n| n.starts_with("demo-project"))
            .count()
    };
    for pool in ["vdcs", "groups", "vnets", "vrouters", "secgroups", "vms"] {
        assert_eq!(ours(pool), 20, "{pool}: {p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_creating_at_once_take_different_subnets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = one().await;
    let (a, b) = (
        sim(DemoOfferingKind::OpennebulaVdc).await,
        sim(DemoOfferingKind::OpennebulaVdc).await,
    );
    let (ca, cb) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    write_config(&ca, &a, &one, json!({}));
    write_config(&cb, &b, &one, json!({}));
    let (ua, ub) = (
        ConsumerClient::new(&a.demo().api_url, &a.demo().consumer_token),
        ConsumerClient::new(&b.demo().api_url, &b.demo().consumer_token),
    );
    let oa = order_vdc(&ua, &a, "left").await;
    let ob = order_vdc(&ub, &b, "right").await;
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| agent(&ca, "order_process"));
        let hb = s.spawn(|| agent(&cb, "order_process"));
        (ha.join().expect("a"), hb.join().expect("b"))
    });
    assert!(ra.0 && rb.0, "{}\n{}", ra.1, rb.1);
    let (_, x) = resource_of(&ua, &oa).await;
    let (_, y) = resource_of(&ub, &ob).await;
    let (sx, sy) = (
        &x["backend_metadata"]["subnet"],
        &y["backend_metadata"]["subnet"],
    );
    assert!(sx.is_string() && sy.is_string(), "{x}\n{y}");
    assert_ne!(sx, sy);
    // Both demo projects have the same slug: one agent got the name, the other its next
    // candidate (a Duplicate, not a reuse of the first agent's objects), and both routers run.
    let (ix, iy) = (
        x["backend_id"].as_str().expect("id"),
        y["backend_id"].as_str().expect("id"),
    );
    assert_ne!(ix, iy);
    let st = one.state().store();
    for id in [ix, iy] {
        let vm = st
            .vms
            .values()
            .find(|v| v.name == format!("{id}_router_vm"))
            .unwrap_or_else(|| panic!("router VM of {id}\n{}\n{}", ra.1, rb.1));
        assert_eq!((vm.state, vm.lcm), (3, 3), "{id}\n{}\n{}", ra.1, rb.1);
    }
}

/// Writes sent to the OpenNebula double (every call but reads) and to Keycloak (not GET).
fn writes(one: &OneServer, kc: &KeycloakServer) -> u64 {
    let one_writes: u64 = one
        .stats()
        .routes
        .iter()
        .filter(|(k, _)| !k.ends_with(".info") && !k.contains("/__sim/"))
        .map(|(_, r)| r.count)
        .sum();
    let kc_writes: u64 = kc
        .stats()
        .routes
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("GET ") && !k.contains("openid-connect/token") && !k.contains("/__sim/")
        })
        .map(|(_, r)| r.count)
        .sum();
    one_writes + kc_writes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vdc_with_keycloak_role_groups_and_members_through_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = one().await;
    let kc = KeycloakServer::start(KeycloakOptions::default())
        .await
        .expect("Keycloak double");
    kc.ensure_realm("waldur");
    for u in ["alice", "bob"] {
        kc.add_user("waldur", u);
    }
    let sim = sim(DemoOfferingKind::OpennebulaVdc).await;
    let config = dir.path().join("vdc.yaml");
    let mapping = dir.path().join("keycloak_groups.yaml");
    let k = kc.info();
    write_config(
        &config,
        &sim,
        &one,
        json!({
            "keycloak_enabled": true, "keycloak_use_user_id": false,
            "saml_mapping_file": mapping.display().to_string(),
            "keycloak": {"keycloak_url": k.url, "keycloak_realm": "waldur", "keycloak_user_realm": "master",
                         "keycloak_username": k.username, "keycloak_password": k.password},
        }),
    );
    let demo = sim.demo().clone();
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let order = order_vdc(&consumer, &sim, "saml tenant").await;
    let (ok, log) = agent(&config, "order_process");
    assert!(ok, "order_process:\n{log}");
    assert_eq!(
        consumer.order(&order).await.expect("o")["state"],
        "done",
        "{log}"
    );
    let (resource_uuid, resource) = resource_of(&consumer, &order).await;
    let vdc = resource["backend_id"]
        .as_str()
        .expect("backend id")
        .to_owned();

    // Groups made: Keycloak parent + one child per role, OpenNebula role groups with views.
    let paths = |kc: &KeycloakServer| {
        kc.groups("waldur")
            .into_iter()
            .map(|g| g.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        paths(&kc),
        ["", "/admin", "/cloud", "/user"]
            .iter()
            .map(|r| format!("/vdc_{vdc}{r}"))
            .collect::<Vec<_>>()
    );
    {
        let st = one.state().store();
        let users = st
            .groups
            .values()
            .find(|g| g.name == format!("{vdc}-users"))
            .expect("users group");
        assert_eq!(
            users.template.get("SAML_GROUP"),
            Some(format!("/vdc_{vdc}/user").as_str())
        );
        let fireedge: Vec<_> = users.template.vectors("FIREEDGE").collect();
        assert!(
            fireedge
                .first()
                .is_some_and(|v| v.iter().any(|(k, v)| k == "VIEWS" && v == "user")),
            "{fireedge:?}"
        );
        assert!(
            st.groups
                .values()
                .any(|g| g.name == format!("{vdc}-admins"))
        );
        assert!(st.groups.values().any(|g| g.name == format!("{vdc}-cloud")));
    }
    let text = std::fs::read_to_string(&mapping).expect("mapping file");
    for role in ["admin", "user", "cloud"] {
        assert!(text.contains(&format!("\"/vdc_{vdc}/{role}\": ")), "{text}");
    }

    // Members: alice and carol (no Keycloak account yet) join; carol once she exists.
    let user = |name: &str| {
        demo.users
            .iter()
            .find(|u| u.username == name)
            .expect("demo user")
            .clone()
    };
    for name in ["alice", "carol"] {
        consumer
            .add_user_to_project(&demo.project_uuid, &user(name).uuid, "PROJECT.MEMBER")
            .await
            .expect("member");
    }
    let members = |kc: &KeycloakServer| {
        kc.groups("waldur")
            .into_iter()
            .find(|g| g.0 == format!("/vdc_{vdc}/user"))
            .map(|g| g.1)
    };
    let (ok, log) = agent(&config, "membership_sync");
    assert!(ok, "membership_sync:\n{log}");
    assert_eq!(members(&kc), Some(vec!["alice".to_owned()]), "{log}");
    kc.add_user("waldur", "carol");
    let (ok, log) = agent(&config, "membership_sync");
    assert!(ok, "{log}");
    assert_eq!(
        members(&kc),
        Some(vec!["alice".to_owned(), "carol".to_owned()]),
        "{log}"
    );
    // alice leaves → removed.
    consumer
        .remove_user_from_project(&demo.project_uuid, &user("alice").uuid, "PROJECT.MEMBER")
        .await
        .expect("remove");
    let (ok, log) = agent(&config, "membership_sync");
    assert!(ok, "{log}");
    assert_eq!(members(&kc), Some(vec!["carol".to_owned()]), "{log}");

    // A second run changes nothing.
    let before = writes(&one, &kc);
    let text_before = std::fs::read_to_string(&mapping).expect("mapping");
    for mode in ["order_process", "membership_sync"] {
        let (ok, log) = agent(&config, mode);
        assert!(ok, "{mode}:\n{log}");
    }
    assert_eq!(
        writes(&one, &kc),
        before,
        "a second run wrote to the sites: {:?} {:?}",
        one.stats()
            .routes
            .iter()
            .map(|(k, r)| (k, r.count))
            .collect::<Vec<_>>(),
        kc.stats()
            .routes
            .iter()
            .map(|(k, r)| (k, r.count))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        std::fs::read_to_string(&mapping).expect("mapping"),
        text_before
    );

    // Terminate → VDC, role groups, Keycloak groups and mapping entries gone.
    let t = consumer.terminate(&resource_uuid).await.expect("terminate");
    let (ok, log) = agent(&config, "order_process");
    assert!(ok, "{log}");
    assert_eq!(
        consumer.order(&t).await.expect("o")["state"],
        "done",
        "{log}"
    );
    for (pool, names) in pools(&one) {
        assert!(
            names.iter().all(|n| !n.starts_with(&vdc)),
            "{pool} still holds {names:?}"
        );
    }
    assert!(paths(&kc).is_empty(), "{:?}", paths(&kc));
    let text = std::fs::read_to_string(&mapping).expect("mapping");
    assert!(!text.contains(&format!("/vdc_{vdc}/")), "{text}");
}
