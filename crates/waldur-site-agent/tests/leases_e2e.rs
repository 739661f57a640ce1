//! Safe replicas: three agent processes (`-m event_process,order_process`, leader election on)
//! against waldur-sim with six OKD offerings and the Kubernetes double, which serves both the
//! OKD backend and the Leases. Every (offering, mode) has exactly one holder and the offerings
//! are spread over the replicas; `kill -9` of a holder moves its offerings within the lease
//! duration; 200 orders with two kills are each done exactly once (one approve and one
//! set_backend_id per order in the simulator's counters, one namespace per resource).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use site_sim::{KubeOptions, KubeServer};
use waldur_sim::consumer::ConsumerClient;
use waldur_sim::demo::demo_seed_of_kind;
use waldur_sim::seed::Seed;
use waldur_sim::{DemoOfferingKind, SimOptions, SimServer};

mod common;
use common::limits;

const LEASE_SECONDS: u64 = 15;
const NAMESPACE: &str = "default";

struct Agent {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(name: &str, config: &Path, dir: &Path, kube: &KubeServer) -> Agent {
        Agent::start_modes(name, "event_process,order_process", config, dir, kube)
    }

    fn start_modes(name: &str, modes: &str, config: &Path, dir: &Path, kube: &KubeServer) -> Agent {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_waldur-site-agent"))
            .args(["-m", modes, "-c"])
            .arg(config)
            .args(["--tick-seconds", "0.2"])
            .env("WALDUR_SITE_AGENT_LOG_LEVEL", "INFO")
            .env("WALDUR_SITE_AGENT_ORDER_PROCESS_PERIOD_MINUTES", "0.02")
            .env("WALDUR_SITE_AGENT_RECONCILIATION_PERIOD_MINUTES", "60")
            .env(
                "WALDUR_SITE_AGENT_HEARTBEAT_PATH",
                dir.join(format!("{name}.hb")),
            )
            .env("WALDUR_SITE_AGENT_LEADER_ELECTION", "true")
            .env("WALDUR_SITE_AGENT_LEASE_API_URL", kube.url())
            .env("WALDUR_SITE_AGENT_LEASE_TOKEN", kube.token())
            .env("WALDUR_SITE_AGENT_LEASE_NAMESPACE", NAMESPACE)
            .env("WALDUR_SITE_AGENT_LEASE_IDENTITY", name)
            .stdout(Stdio::from(out.try_clone().expect("clone")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("agent starts");
        Agent {
            name: name.to_owned(),
            child,
            log,
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Holder of each offering Lease, by name (free or expired Leases have none).
fn holders(kube: &KubeServer, names: &[String]) -> BTreeMap<String, Option<String>> {
    let now = jiff::Timestamp::now();
    names
        .iter()
        .map(|n| {
            let holder = kube.object("leases", NAMESPACE, n).and_then(|l| {
                let spec = &l["spec"];
                let h = spec["holderIdentity"].as_str().filter(|h| !h.is_empty())?;
                let renewed: jiff::Timestamp = spec["renewTime"].as_str()?.parse().ok()?;
                let d = spec["leaseDurationSeconds"].as_i64().unwrap_or(15);
                (renewed + jiff::SignedDuration::from_secs(d) > now).then(|| h.to_owned())
            });
            (n.clone(), holder)
        })
        .collect()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn lease_name(mode: &str, uuid: &str) -> String {
    waldur_site_agent::leases::lease_name(
        match mode {
            "order_process" => waldur_site_agent::cli::Mode::OrderProcess,
            _ => waldur_site_agent::cli::Mode::EventProcess,
        },
        uuid,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_six_offerings_and_do_each_order_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let sa_dir = dir.path().join("serviceaccount");
    std::fs::create_dir_all(&sa_dir).expect("mkdir");
    let kube = KubeServer::start(KubeOptions {
        sa_token_file: Some(sa_dir.join("token")),
        terminate_after: Duration::from_millis(50),
        ..KubeOptions::default()
    })
    .await
    .expect("kubernetes double");

    // Six OKD offerings: the demo's and five copies.
    let mut seed = Seed::default();
    let base = demo_seed_of_kind("waldur_username", DemoOfferingKind::Okd)
        .offerings
        .first()
        .cloned()
        .expect("demo offering");
    for i in 2..=6 {
        let mut o = base.clone();
        o.name = format!("OKD cluster {i}");
        o.uuid = None;
        for p in &mut o.plans {
            p.uuid = None;
        }
        seed.offerings.push(o);
    }
    let sim = SimServer::start(SimOptions {
        demo: true,
        demo_offering_kind: DemoOfferingKind::Okd,
        seed: Some(seed),
        ..SimOptions::default()
    })
    .await
    .expect("simulator");
    let demo = sim.demo().clone();
    let offerings: Vec<(String, String, String)> = {
        let s = sim.state();
        s.offerings
            .values()
            .filter(|o| o.name.contains("OKD"))
            .map(|o| {
                let plan = s
                    .plans
                    .values()
                    .find(|p| p.offering == o.uuid)
                    .map(|p| p.uuid.simple().to_string())
                    .expect("plan");
                (o.name.clone(), o.uuid.simple().to_string(), plan)
            })
            .collect()
    };
    assert_eq!(offerings.len(), 6, "{offerings:?}");

    let config = dir.path().join("config.yaml");
    // A namespace prefix per offering: the offerings share the demo project, and their
    // candidate names must not race each other (that is not what this test is about).
    let entries: Vec<Value> = offerings
        .iter()
        .enumerate()
        .map(|(i, (name, uuid, _))| {
            json!({
                "name": name,
                "waldur_api_url": demo.api_url,
                "waldur_api_token": demo.provider_token,
                "waldur_offering_uuid": uuid,
                "backend_type": "okd",
                "order_processing_backend": "okd",
                "membership_sync_backend": "okd",
                "reporting_backend": "okd",
                "backend_settings": {
                    "api_url": kube.url(),
                    "namespace_prefix": format!("waldur-o{i}-"),
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
            })
        })
        .collect();
    std::fs::write(
        &config,
        serde_json::to_string_pretty(&json!({"offerings": entries})).expect("json"),
    )
    .expect("config");

    let mut lease_names = Vec::new();
    for (_, uuid, _) in &offerings {
        for mode in ["order_process", "event_process"] {
            lease_names.push(lease_name(mode, uuid));
        }
    }
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start(&format!("agent-{i}"), &config, dir.path(), &kube))
        .collect();
    let logs = |agents: &[Agent]| {
        agents
            .iter()
            .map(|a| format!("--- {}:\n{}", a.name, a.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // 1. Every Lease held, by a running replica, two offerings per replica and mode.
    let spread = |h: &BTreeMap<String, Option<String>>, alive: &BTreeSet<String>| {
        if h.values()
            .any(|x| x.as_ref().is_none_or(|x| !alive.contains(x)))
        {
            return None;
        }
        let mut per: BTreeMap<(String, bool), usize> = BTreeMap::new();
        for (name, holder) in h {
            let key = (
                holder.clone().unwrap_or_default(),
                name.contains("order-process"),
            );
            *per.entry(key).or_default() += 1;
        }
        let share = 6usize.div_ceil(alive.len());
        per.values().all(|n| *n <= share).then_some(per)
    };
    let alive: BTreeSet<String> = agents.iter().map(|a| a.name.clone()).collect();
    let settled = Duration::from_secs(LEASE_SECONDS * 3);
    let end = Instant::now() + settled;
    let per = loop {
        if let Some(per) = spread(&holders(&kube, &lease_names), &alive) {
            break per;
        }
        assert!(
            Instant::now() < end,
            "leases not shared: {:?}\n{}",
            holders(&kube, &lease_names),
            logs(&agents)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(per.values().sum::<usize>(), 12, "{per:?}");
    assert!(
        per.values().all(|n| *n == 2),
        "two of six per replica and mode: {per:?}"
    );

    // 2. kill -9 a holder: its Leases move to the others within the lease duration (plus the
    //    one-second lease loop).
    let victim_held: Vec<String> = holders(&kube, &lease_names)
        .into_iter()
        .filter(|(_, h)| h.as_deref() == Some("agent-0"))
        .map(|(n, _)| n)
        .collect();
    assert!(!victim_held.is_empty());
    agents[0].kill9();
    let killed_at = Instant::now();
    let alive: BTreeSet<String> = ["agent-1".to_owned(), "agent-2".to_owned()].into();
    let moved_after = wait_for(
        "the victim's leases to move",
        Duration::from_secs(40),
        || {
            let h = holders(&kube, &lease_names);
            victim_held
                .iter()
                .all(|n| {
                    h.get(n)
                        .cloned()
                        .flatten()
                        .is_some_and(|x| alive.contains(&x))
                })
                .then(|| killed_at.elapsed())
        },
    );
    eprintln!("leases of the killed replica moved after {moved_after:?}");
    assert!(
        moved_after <= Duration::from_secs(LEASE_SECONDS + 2),
        "moved after {moved_after:?}\n{}",
        logs(&agents)
    );
    let h = holders(&kube, &lease_names);
    assert!(
        h.values()
            .all(|x| x.as_ref().is_some_and(|x| alive.contains(x))),
        "{h:?}"
    );

    // 3. 200 orders, a restart of the killed replica, then two more kills.
    agents[0] = Agent::start("agent-0", &config, dir.path(), &kube);
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let before = sim.stats();
    let mut orders = Vec::new();
    for i in 0..200 {
        let (_, uuid, plan) = &offerings[i % 6];
        let order = consumer
            .create_order(
                uuid,
                &demo.project_uuid,
                Some(plan),
                limits(&[("cpu", 1), ("memory", 1), ("storage", 1), ("pods", 1)]),
                &format!("replica order {i}"),
            )
            .await
            .expect("create order");
        orders.push(order);
        if i == 70 {
            agents[1].kill9();
        }
        if i == 140 {
            agents[2].kill9();
        }
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    agents[1] = Agent::start("agent-1", &config, dir.path(), &kube);
    let done_by = Instant::now() + Duration::from_secs(240);
    loop {
        let states: Vec<String> = {
            let s = sim.state();
            orders
                .iter()
                .map(|o| {
                    s.orders
                        .values()
                        .find(|x| x.uuid.simple().to_string() == *o)
                        .map(|x| x.state.clone())
                        .unwrap_or_default()
                })
                .collect()
        };
        let done = states.iter().filter(|s| *s == "done").count();
        if done == orders.len() {
            break;
        }
        assert!(
            states.iter().all(|s| s != "erred"),
            "an order erred: {states:?}\n{}",
            logs(&agents)
        );
        assert!(
            Instant::now() < done_by,
            "{done} of {} orders done\n{}",
            orders.len(),
            logs(&agents)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Exactly once: one approve and one set_backend_id per order, one namespace per resource.
    let after = sim.stats();
    let calls = |route: &str| after.count("POST", route) - before.count("POST", route);
    assert_eq!(
        calls("/api/marketplace-orders/{uuid}/approve_by_provider/"),
        200,
        "approve calls"
    );
    // Per object: the request log (bounded) must hold every request of this phase.
    assert!(
        after.total - before.total < 10_000,
        "request log overflowed"
    );
    let log = sim.request_log(10_000);
    let mut per_path: BTreeMap<String, usize> = BTreeMap::new();
    for e in log.iter().filter(|e| e.method == "POST" && e.status < 300) {
        if e.path.ends_with("/approve_by_provider/") || e.path.ends_with("/set_backend_id/") {
            *per_path.entry(e.path.clone()).or_default() += 1;
        }
    }
    let mut histogram: BTreeMap<(bool, usize), usize> = BTreeMap::new();
    for (p, n) in &per_path {
        *histogram
            .entry((p.ends_with("/set_backend_id/"), *n))
            .or_default() += 1;
    }
    eprintln!("calls per object (set_backend_id?, calls) -> objects: {histogram:?}");
    let twice: Vec<_> = per_path.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "repeated approve/set_backend_id: {twice:?}"
    );
    for o in &orders {
        let approve = format!("/api/marketplace-orders/{o}/approve_by_provider/");
        assert_eq!(per_path.get(&approve), Some(&1), "{approve}");
    }
    let set_backend: usize = per_path
        .iter()
        .filter(|(p, _)| p.ends_with("/set_backend_id/"))
        .map(|(_, n)| n)
        .sum();
    eprintln!(
        "set_backend_id calls: {set_backend} on {} distinct objects",
        per_path
            .keys()
            .filter(|p| p.ends_with("/set_backend_id/"))
            .count()
    );
    let backend_ids: BTreeSet<String> = {
        let s = sim.state();
        orders
            .iter()
            .filter_map(|o| {
                s.orders
                    .values()
                    .find(|x| x.uuid.simple().to_string() == *o)
            })
            .filter_map(|o| s.resources.get(&o.resource).map(|r| r.backend_id.clone()))
            .collect()
    };
    assert_eq!(backend_ids.len(), 200, "distinct backend ids");
    for ns in &backend_ids {
        assert!(
            kube.object("namespaces", "", ns).is_some(),
            "namespace {ns}"
        );
    }
    rejoin_and_graceful_release(&kube, &lease_names, &mut agents, &config, dir.path()).await;
    let namespaces = list_namespaces(&kube).await;
    let created: Vec<&String> = namespaces
        .iter()
        .filter(|n| n.starts_with("waldur-"))
        .collect();
    assert_eq!(
        created.len(),
        200,
        "one site namespace per order, no duplicate: {created:?}"
    );
}

/// Replicas rejoining get their share back; a replica stopped with SIGTERM releases its
/// Leases, which move at once instead of after the lease duration.
async fn rejoin_and_graceful_release(
    kube: &KubeServer,
    lease_names: &[String],
    agents: &mut [Agent],
    config: &Path,
    dir: &Path,
) {
    agents[2] = Agent::start("agent-2", config, dir, kube);
    let alive: BTreeSet<String> = agents.iter().map(|a| a.name.clone()).collect();
    let end = Instant::now() + Duration::from_secs(LEASE_SECONDS * 2);
    loop {
        let h = holders(kube, lease_names);
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        for holder in h.values().flatten() {
            *per.entry(holder.clone()).or_default() += 1;
        }
        if h.values()
            .all(|x| x.as_ref().is_some_and(|x| alive.contains(x)))
            && per.len() == 3
            && per.values().all(|n| *n == 4)
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "shares not restored after rejoining: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let held: Vec<String> = holders(kube, lease_names)
        .into_iter()
        .filter(|(_, h)| h.as_deref() == Some("agent-1"))
        .map(|(n, _)| n)
        .collect();
    let pid = agents[1].child.id().to_string();
    let stopped = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let at = Instant::now();
    let moved = wait_for(
        "released leases to move",
        Duration::from_secs(LEASE_SECONDS),
        || {
            let h = holders(kube, lease_names);
            held.iter()
                .all(|n| h.get(n).cloned().flatten().is_some_and(|x| x != "agent-1"))
                .then(|| at.elapsed())
        },
    );
    eprintln!("leases released on SIGTERM moved after {moved:?}");
    assert!(
        moved < Duration::from_secs(LEASE_SECONDS / 2),
        "released leases moved only after {moved:?}:\n{}",
        agents[1].log()
    );
    let status = agents[1].child.wait().expect("wait");
    assert!(status.success(), "SIGTERM exit: {status:?}");
    assert!(
        agents[1].log().contains("released lease"),
        "{}",
        agents[1].log()
    );
}

async fn list_namespaces(kube: &KubeServer) -> Vec<String> {
    let body: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/namespaces", kube.url()))
        .bearer_auth(kube.token())
        .send()
        .await
        .expect("list namespaces")
        .json()
        .await
        .expect("json");
    body["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
        .is_ok()
}

/// Events with leader election, over MQTT (mosquitto on 127.0.0.1): two `event_process`
/// replicas each receive every event of both offerings; only the holder of an offering's Lease
/// handles its events, the other hands them back unhandled. Every order placed after start is
/// done by events (reconciliation is an hour away), each approved once. (Over STOMP the
/// replicas share one queue per offering and a handed-back event is redelivered, possibly to
/// the holder; the gate is the same.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_handled_by_the_holder_only() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !common::require(
        "mosquitto (MQTT and MQTT over WebSocket)",
        port_open(1883) && port_open(9001),
        "run `bash scripts/services/mosquitto-up.sh`",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sa_dir = dir.path().join("serviceaccount");
    std::fs::create_dir_all(&sa_dir).expect("mkdir");
    let kube = KubeServer::start(KubeOptions {
        sa_token_file: Some(sa_dir.join("token")),
        terminate_after: Duration::from_millis(50),
        ..KubeOptions::default()
    })
    .await
    .expect("kubernetes double");
    let mut seed = Seed::default();
    let mut second = demo_seed_of_kind("waldur_username", DemoOfferingKind::Okd)
        .offerings
        .first()
        .cloned()
        .expect("demo offering");
    second.name = "OKD cluster 2".into();
    second.uuid = None;
    for p in &mut second.plans {
        p.uuid = None;
    }
    seed.offerings.push(second);
    let sim = SimServer::start(SimOptions {
        demo: true,
        demo_offering_kind: DemoOfferingKind::Okd,
        seed: Some(seed),
        brokers: waldur_sim::BrokerOptions {
            rabbitmq_admin: None,
            stomp: None,
            stomp_ws: None,
            mqtt: Some("127.0.0.1:1883".into()),
            mqtt_ws: Some("ws://127.0.0.1:9001/".into()),
        },
        ..SimOptions::default()
    })
    .await
    .expect("simulator");
    let demo = sim.demo().clone();
    let offerings: Vec<(String, String, String)> = {
        let s = sim.state();
        s.offerings
            .values()
            .filter(|o| o.name.contains("OKD"))
            .map(|o| {
                let plan = s
                    .plans
                    .values()
                    .find(|p| p.offering == o.uuid)
                    .map(|p| p.uuid.simple().to_string())
                    .expect("plan");
                (o.name.clone(), o.uuid.simple().to_string(), plan)
            })
            .collect()
    };
    assert_eq!(offerings.len(), 2);
    let entries: Vec<Value> = offerings
        .iter()
        .enumerate()
        .map(|(i, (name, uuid, _))| {
            json!({
                "name": name,
                "waldur_api_url": demo.api_url,
                "waldur_api_token": demo.provider_token,
                "waldur_offering_uuid": uuid,
                "backend_type": "okd",
                "order_processing_backend": "okd",
                "membership_sync_backend": "okd",
                "mqtt_enabled": true,
                "websocket_use_tls": false,
                "mqtt_host": "127.0.0.1",
                "mqtt_port": 9001,
                "mqtt_use_websocket": true,
                "mqtt_ws_path": "/",
                "backend_settings": {
                    "api_url": kube.url(),
                    "namespace_prefix": format!("waldur-e{i}-"),
                    "token_config": {"token_type": "service_account",
                                     "service_account_path": sa_dir},
                },
                "backend_components": {
                    "cpu": {"measured_unit": "Core", "accounting_type": "limit", "label": "CPU"},
                    "memory": {"measured_unit": "GB", "accounting_type": "limit", "label": "Memory"},
                    "storage": {"measured_unit": "GB", "accounting_type": "limit", "label": "Storage"},
                    "pods": {"measured_unit": "Count", "accounting_type": "limit", "label": "Pods"}
                }
            })
        })
        .collect();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        serde_json::to_string_pretty(&json!({"offerings": entries})).expect("json"),
    )
    .expect("config");
    let agents: Vec<Agent> = (0..2)
        .map(|i| {
            Agent::start_modes(
                &format!("ev-{i}"),
                "event_process",
                &config,
                dir.path(),
                &kube,
            )
        })
        .collect();
    let logs = || {
        agents
            .iter()
            .map(|a| format!("--- {}:\n{}", a.name, a.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let names: Vec<String> = offerings
        .iter()
        .map(|(_, uuid, _)| lease_name("event_process", uuid))
        .collect();
    // One lease each, both replicas connected to both queues.
    let end = Instant::now() + Duration::from_secs(LEASE_SECONDS * 3);
    loop {
        let h = holders(&kube, &names);
        let distinct: BTreeSet<_> = h.values().flatten().collect();
        let connected = agents
            .iter()
            .all(|a| a.log().matches("\"status\":\"Connected\"").count() >= 2);
        if distinct.len() == 2 && connected {
            break;
        }
        assert!(Instant::now() < end, "not settled: {h:?}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let mut orders = Vec::new();
    for i in 0..10 {
        let (_, uuid, plan) = &offerings[i % 2];
        orders.push(
            consumer
                .create_order(
                    uuid,
                    &demo.project_uuid,
                    Some(plan),
                    limits(&[("cpu", 1), ("memory", 1), ("storage", 1), ("pods", 1)]),
                    &format!("event order {i}"),
                )
                .await
                .expect("create order"),
        );
    }
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let done = {
            let s = sim.state();
            orders
                .iter()
                .filter(|o| {
                    s.orders
                        .values()
                        .any(|x| x.uuid.simple().to_string() == **o && x.state == "done")
                })
                .count()
        };
        if done == orders.len() {
            break;
        }
        assert!(
            Instant::now() < end,
            "{done} of 10 orders done by events\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for a in &agents {
        let log = a.log();
        assert!(
            !log.contains("cannot register the agent identity"),
            "{}: registration lost the race:\n{log}",
            a.name
        );
        assert!(
            !log.contains("closed by peer"),
            "{}: MQTT connections taken over by the other replica (same client id):\n{log}",
            a.name
        );
    }
    let log = sim.request_log(10_000);
    for o in &orders {
        let path = format!("/api/marketplace-orders/{o}/approve_by_provider/");
        let n = log
            .iter()
            .filter(|e| e.method == "POST" && e.path == path)
            .count();
        assert_eq!(n, 1, "{path} asked {n} times (only the holder may try)");
    }
}
