//! `event_process` end to end: the simulator publishes like Mastermind to the real RabbitMQ
//! (web-stomp) or mosquitto (MQTT over WebSocket); the agent binary subscribes, handles the events
//! on the real SLURM, and acknowledges them. Services: `bash scripts/services/up.sh slurm rabbitmq
//! mosquitto` with `RABBITMQ_WITH_MANAGEMENT=1`.
//!
//! Without the services: with `CI=true` the tests fail saying what to start; otherwise they print
//! a note and return.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use waldur_sim::consumer::ConsumerClient;
use waldur_sim::{BrokerOptions, SimOptions, SimServer};

mod common;
use common::{
    CPU_KHOURS, SlurmOffering, limits, remove_accounts_by_prefix, require, sacctmgr_users,
    slurm_conf, slurm_config,
};
const RABBITMQ_ADMIN: &str = "http://waldur:waldur@127.0.0.1:15672";

/// One test at a time: one of them restarts RabbitMQ.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
        .is_ok()
}

fn services(mqtt: bool) -> Option<String> {
    let conf = slurm_conf();
    if !require(
        "real SLURM",
        conf.is_some(),
        "run `bash scripts/services/slurm-up.sh`",
    ) {
        return None;
    }
    let rabbit = port_open(61613) && port_open(15674) && port_open(15672);
    if !require(
        "RabbitMQ with web-stomp and the management API",
        rabbit,
        "run `RABBITMQ_WITH_MANAGEMENT=1 bash scripts/services/rabbitmq-up.sh`",
    ) {
        return None;
    }
    if mqtt
        && !require(
            "mosquitto",
            port_open(1883) && port_open(9001),
            "run `bash scripts/services/mosquitto-up.sh`",
        )
    {
        return None;
    }
    conf
}

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(config: &Path, slurm_conf: &str, reconciliation_minutes: &str, log: PathBuf) -> Agent {
        let out = std::fs::File::create(&log).expect("log file");
        let child = Process::new(assert_cmd::cargo::cargo_bin("waldur-site-agent"))
            .env("SLURM_CONF", slurm_conf)
            .env("WALDUR_SITE_AGENT_LOG_LEVEL", "INFO")
            .env(
                "WALDUR_SITE_AGENT_RECONCILIATION_PERIOD_MINUTES",
                reconciliation_minutes,
            )
            .args(["-m", "event_process", "-c"])
            .arg(config)
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("agent starts");
        Agent { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log shows `needle` `count` times.
    async fn wait_log(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().matches(needle).count() >= count {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Process::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
    }
}

fn config(sim: &SimServer, tag: &str, transport: &str) -> String {
    let demo = sim.demo();
    let events = match transport {
        "stomp" => format!(
            "    stomp_enabled: true\n    websocket_use_tls: false\n    stomp_ws_host: \"{}\"\n    stomp_ws_port: {}\n    stomp_ws_path: \"{}\"\n",
            demo.stomp_ws_host.clone().unwrap_or_else(|| "127.0.0.1".into()),
            demo.stomp_ws_port.unwrap_or(15674),
            demo.stomp_ws_path.clone().unwrap_or_else(|| "/ws".into()),
        ),
        _ => "    mqtt_enabled: true\n    websocket_use_tls: false\n    mqtt_host: \"127.0.0.1\"\n    mqtt_port: 9001\n    mqtt_use_websocket: true\n    mqtt_ws_path: \"/\"\n".to_owned(),
    };
    slurm_config(
        demo,
        SlurmOffering {
            name: &format!("events-{tag}"),
            tag,
            offering_extra: &events,
            settings: "",
            components: CPU_KHOURS,
        },
    )
}

async fn sim_with_brokers(mqtt: bool) -> SimServer {
    sim_with(mqtt, "waldur_username").await
}

async fn sim_with(mqtt: bool, username_policy: &str) -> SimServer {
    let brokers = BrokerOptions {
        rabbitmq_admin: Some(RABBITMQ_ADMIN.into()),
        stomp: Some("127.0.0.1:61613".into()),
        stomp_ws: Some("ws://127.0.0.1:15674/ws".into()),
        mqtt: mqtt.then(|| "127.0.0.1:1883".to_owned()),
        mqtt_ws: mqtt.then(|| "ws://127.0.0.1:9001/".to_owned()),
    };
    SimServer::start(SimOptions {
        demo: true,
        brokers,
        demo_username_policy: username_policy.to_owned(),
        ..SimOptions::default()
    })
    .await
    .expect("simulator")
}

async fn wait_order(
    consumer: &ConsumerClient,
    order: &str,
    timeout: Duration,
) -> (String, Duration) {
    let start = Instant::now();
    loop {
        let state = consumer.order(order).await.expect("order")["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if state == "done" || state == "erred" || start.elapsed() > timeout {
            return (state, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_user(conf: &str, account: &str, user: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if sacctmgr_users(conf, account).iter().any(|u| u == user) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn orders_and_members_by_events(transport: &str) {
    let _serial = SERIAL.lock().await;
    let Some(conf) = services(transport == "mqtt") else {
        return;
    };
    let sim = sim_with_brokers(transport == "mqtt").await;
    let demo = sim.demo().clone();
    let tag = format!("ev{}{}", &transport[..1], std::process::id() % 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, config(&sim, &tag, transport)).expect("config");
    // Reconciliation every 60 minutes: after the initial pass, only events can do the work.
    let agent = Agent::start(&cfg, &conf, "60", dir.path().join("agent.log"));
    assert!(
        agent
            .wait_log("\"status\":\"Connected\"", 1, Duration::from_secs(30))
            .await,
        "the agent never connected:\n{}",
        agent.log()
    );
    assert!(
        agent
            .wait_log("Cycle finished", 1, Duration::from_secs(30))
            .await,
        "initial pass:\n{}",
        agent.log()
    );

    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("cpu", 1)]),
            "by event",
        )
        .await
        .expect("create order");
    let (state, took) = wait_order(&consumer, &order, Duration::from_secs(30)).await;
    assert_eq!(
        state,
        "done",
        "order not done by event within 30 s:\n{}",
        agent.log()
    );
    println!(
        "{transport}: Create order done {} ms after it was placed",
        took.as_millis()
    );
    assert_eq!(
        agent.log().matches("Cycle finished").count(),
        1,
        "no polling cycle ran besides the initial pass"
    );

    let resource = consumer.order(&order).await.expect("order")["marketplace_resource_uuid"]
        .as_str()
        .expect("uuid")
        .to_owned();
    let account = consumer.resource(&resource).await.expect("resource")["backend_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let member = demo.users.first().expect("users").clone();
    consumer
        .add_user_to_project(&demo.project_uuid, &member.uuid, "PROJECT.MEMBER")
        .await
        .expect("add user");
    assert!(
        wait_user(&conf, &account, &member.username, Duration::from_secs(30)).await,
        "{} never got an association with {account}:\n{}",
        member.username,
        agent.log()
    );
    drop(agent);
    cleanup(&conf, &tag);
}

fn cleanup(conf: &str, tag: &str) {
    let prefixes: Vec<String> = ["a", "p", "c"]
        .iter()
        .map(|kind| format!("{tag}_{kind}_"))
        .collect();
    remove_accounts_by_prefix(conf, &prefixes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_events_drive_orders_and_memberships() {
    orders_and_members_by_events("stomp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_events_drive_orders_and_memberships() {
    orders_and_members_by_events("mqtt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_across_a_broker_restart() {
    let _serial = SERIAL.lock().await;
    let Some(conf) = services(false) else { return };
    let sim = sim_with_brokers(false).await;
    let demo = sim.demo().clone();
    let tag = format!("evr{}", std::process::id() % 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, config(&sim, &tag, "stomp")).expect("config");
    // The default 60-minute sweep: what the broker never delivered must be caught up when the
    // connection comes back, not at the next sweep.
    let agent = Agent::start(&cfg, &conf, "60", dir.path().join("agent.log"));
    assert!(
        agent
            .wait_log("\"status\":\"Connected\"", 1, Duration::from_secs(30))
            .await,
        "{}",
        agent.log()
    );

    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let down = Process::new("bash")
        .arg(repo.join("scripts/services/rabbitmq-down.sh"))
        .status()
        .expect("down script");
    assert!(down.success());
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("cpu", 1)]),
            "while down",
        )
        .await
        .expect("create order while the broker is down");
    let up = Process::new("bash")
        .arg(repo.join("scripts/services/rabbitmq-up.sh"))
        .env("RABBITMQ_WITH_MANAGEMENT", "1")
        .status()
        .expect("up script");
    assert!(up.success(), "RabbitMQ did not come back");
    let (state, _) = wait_order(&consumer, &order, Duration::from_secs(60)).await;
    assert_eq!(
        state,
        "done",
        "the order placed while the broker was down was lost:\n{}",
        agent.log()
    );
    assert!(
        agent
            .wait_log("\"status\":\"Connected\"", 2, Duration::from_secs(60))
            .await,
        "the agent did not reconnect by itself:\n{}",
        agent.log()
    );
    // And events flow again after the reconnect.
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("cpu", 2)]),
            "after restart",
        )
        .await
        .expect("create order");
    let (state, _) = wait_order(&consumer, &order, Duration::from_secs(30)).await;
    assert_eq!(state, "done", "{}", agent.log());
    drop(agent);
    cleanup(&conf, &tag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_set_later_is_applied() {
    let _serial = SERIAL.lock().await;
    let Some(conf) = services(false) else { return };
    // The service provider names accounts: members join without a username.
    let sim = sim_with(false, "service_provider").await;
    let demo = sim.demo().clone();
    let tag = format!("evu{}", std::process::id() % 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, config(&sim, &tag, "stomp")).expect("config");
    let agent = Agent::start(&cfg, &conf, "60", dir.path().join("agent.log"));
    assert!(
        agent
            .wait_log("\"status\":\"Connected\"", 1, Duration::from_secs(30))
            .await,
        "{}",
        agent.log()
    );

    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("cpu", 1)]),
            "late username",
        )
        .await
        .expect("order");
    let (state, _) = wait_order(&consumer, &order, Duration::from_secs(30)).await;
    assert_eq!(state, "done", "{}", agent.log());
    let resource = consumer.order(&order).await.expect("order")["marketplace_resource_uuid"]
        .as_str()
        .expect("uuid")
        .to_owned();
    let account = consumer.resource(&resource).await.expect("resource")["backend_id"]
        .as_str()
        .expect("id")
        .to_owned();

    let member = demo.users.first().expect("users").clone();
    consumer
        .add_user_to_project(&demo.project_uuid, &member.uuid, "PROJECT.MEMBER")
        .await
        .expect("add user");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !sacctmgr_users(&conf, &account)
            .iter()
            .any(|u| u.starts_with(&member.username)),
        "no association before the username exists: {:?}\n{}",
        sacctmgr_users(&conf, &account),
        agent.log()
    );

    // The provider sets the username later; Waldur publishes `username_set`.
    let provider = ConsumerClient::new(&demo.api_url, &demo.provider_token);
    let users = provider
        .get(&format!(
            "marketplace-offering-users/?offering_uuid={}&user_uuid={}",
            demo.offering_uuid, member.uuid
        ))
        .await
        .expect("offering users");
    let ou = users
        .as_array()
        .and_then(|a| a.first())
        .expect("the join created an offering user");
    let ou_uuid = ou["uuid"].as_str().expect("uuid").to_owned();
    let username = format!("{}_{tag}", member.username);
    let patched = reqwest::Client::new()
        .patch(format!(
            "{}marketplace-offering-users/{ou_uuid}/",
            demo.api_url
        ))
        .header("Authorization", format!("Token {}", demo.provider_token))
        .json(&json!({"username": username}))
        .send()
        .await
        .expect("patch");
    assert!(patched.status().is_success(), "{}", patched.status());
    assert!(
        wait_user(&conf, &account, &username, Duration::from_secs(30)).await,
        "{username} never got an association after username_set:\n{}",
        agent.log()
    );
    drop(agent);
    cleanup(&conf, &tag);
}

/// Brings SLURM back (idempotent) when dropped.
struct SlurmBack(PathBuf);

impl Drop for SlurmBack {
    fn drop(&mut self) {
        let _ = Process::new("bash")
            .arg(self.0.join("scripts/services/slurm-up.sh"))
            .stdout(Stdio::null())
            .status();
    }
}

/// Stop slurmdbd (the site is down for writes and reads) without touching the rest of SLURM.
fn stop_slurmdbd() {
    // Not in the middle of someone's write: a killed write's half-renumbered tree is what an
    // operator's restore is for, not what this test is about.
    let _no_writes = common::slurm_write_lock();
    let pid_file = "/tmp/waldur-services/slurm/run/slurmdbd.pid.bg";
    let pid = std::fs::read_to_string(pid_file).expect("slurmdbd pid file");
    let _ = Process::new("kill").args(["-TERM", pid.trim()]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while port_open(6819) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!port_open(6819), "slurmdbd did not stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_site_down_membership_events_go_on_and_orders_complete_when_it_returns() {
    let _serial = SERIAL.lock().await;
    let Some(conf) = services(false) else { return };
    let sim = sim_with_brokers(false).await;
    let demo = sim.demo().clone();
    let tag = format!("evd{}", std::process::id() % 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, config(&sim, &tag, "stomp")).expect("config");
    // The default 60-minute sweep: only events and their redelivery can do the work.
    let agent = Agent::start(&cfg, &conf, "60", dir.path().join("agent.log"));
    assert!(
        agent
            .wait_log("\"status\":\"Connected\"", 1, Duration::from_secs(30))
            .await,
        "{}",
        agent.log()
    );
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");

    stop_slurmdbd();
    // Whatever happens below, SLURM is whole again for the tests after this one.
    let _restart = SlurmBack(repo.clone());
    let mut orders = Vec::new();
    for i in 0..20 {
        orders.push(
            consumer
                .create_order(
                    &demo.offering_uuid,
                    &demo.project_uuid,
                    Some(&demo.plan_uuid),
                    limits(&[("cpu", 1)]),
                    &format!("down {i}"),
                )
                .await
                .expect("create order"),
        );
    }
    // Five membership events for the project, behind the twenty orders in the queue: three
    // users join, two of them leave again.
    let members: Vec<_> = demo.users.iter().take(3).cloned().collect();
    assert_eq!(members.len(), 3, "the demo has three ordinary users");
    for user in &members {
        consumer
            .add_user_to_project(&demo.project_uuid, &user.uuid, "PROJECT.MEMBER")
            .await
            .expect("add user");
    }
    for user in members.iter().take(2) {
        consumer
            .remove_user_from_project(&demo.project_uuid, &user.uuid, "PROJECT.MEMBER")
            .await
            .expect("remove user");
    }
    // The membership events are handled while every order is still waiting for the site.
    let started = Instant::now();
    let handled_roles = |log: &str| {
        log.lines()
            .filter(|l| l.contains("\"user_role\"") && l.contains("event handled"))
            .count()
    };
    while handled_roles(&agent.log()) < 5 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let handled = handled_roles(&agent.log()) >= 5;
    let mut waiting = 0;
    for o in &orders {
        if consumer.order(o).await.expect("order")["state"] != "done" {
            waiting += 1;
        }
    }
    assert!(
        handled,
        "membership events were held up behind the failing orders:\n{}",
        agent.log()
    );
    assert_eq!(waiting, 20, "no order can be done while slurmdbd is down");

    let up = Process::new("bash")
        .arg(repo.join("scripts/services/slurm-up.sh"))
        .status()
        .expect("up script");
    assert!(up.success(), "SLURM did not come back");
    for o in &orders {
        let (state, _) = wait_order(&consumer, o, Duration::from_secs(120)).await;
        assert_eq!(state, "done", "order {o}:\n{}", agent.log());
    }
    let stats = sim.stats();
    assert_eq!(
        stats.count("POST", "/api/marketplace-orders/{uuid}/set_state_done/"),
        20,
        "each order marked done once"
    );
    assert_eq!(
        stats.count("POST", "/api/marketplace-orders/{uuid}/set_state_erred/"),
        0,
        "no order erred because the site was down"
    );
    drop(agent);
    cleanup(&conf, &tag);
}

/// The unified queue of upstream 1.0.7/1.0.8 on the real RabbitMQ: the agent registers one
/// `consumer_…` queue for every object type and logs in as its `rmq_username` with the API
/// token; when the queue disappears from the broker (SUBSCRIBE answers NOT_FOUND), the agent
/// registers it again — Waldur declares it — and events flow once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unified_queue_lost_by_the_broker_is_registered_again() {
    let _serial = SERIAL.lock().await;
    let Some(conf) = services(false) else { return };
    let sim = sim_with_brokers(false).await;
    let demo = sim.demo().clone();
    let tag = format!("evq{}", std::process::id() % 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, config(&sim, &tag, "stomp")).expect("config");
    let agent = Agent::start(&cfg, &conf, "60", dir.path().join("agent.log"));
    assert!(
        agent
            .wait_log("\"status\":\"Connected\"", 1, Duration::from_secs(30))
            .await,
        "{}",
        agent.log()
    );
    // One queue, registered through register_queue, carrying every type the agent handles.
    let (queue, vhost, types) = {
        let state = sim.state();
        assert_eq!(state.agent_queues.len(), 1, "one unified queue");
        assert!(state.subscriptions.is_empty(), "no per-type subscriptions");
        let q = state.agent_queues[0].clone();
        (q.queue_name(), q.user.simple().to_string(), q.object_types)
    };
    for t in [
        "order",
        "user_role",
        "resource",
        "offering_user",
        "offering_resources_sync",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} missing from {types:?}");
    }
    assert!(
        agent.log().contains(&format!("/amq/queue/{queue}")),
        "{}",
        agent.log()
    );

    // The broker loses the queue.
    let admin = waldur_sim::broker::RabbitAdmin::new(RABBITMQ_ADMIN).expect("admin");
    admin
        .delete_queue(&vhost, &queue)
        .await
        .expect("queue deleted");
    assert!(
        agent
            .wait_log("registering it again", 1, Duration::from_secs(60))
            .await,
        "the agent did not register the lost queue again:\n{}",
        agent.log()
    );
    // Subscribed again (the health watcher, polling every 2 s, may never see the short gap).
    assert!(
        agent
            .wait_log("subscribed to STOMP queue", 2, Duration::from_secs(90))
            .await,
        "the agent did not reconnect to the declared queue:\n{}",
        agent.log()
    );
    assert_eq!(
        sim.state().agent_queues.len(),
        1,
        "the same queue, not a second one"
    );

    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("cpu", 1)]),
            "after requeue",
        )
        .await
        .expect("create order");
    let (state, _) = wait_order(&consumer, &order, Duration::from_secs(30)).await;
    assert_eq!(state, "done", "{}", agent.log());
    drop(agent);
    cleanup(&conf, &tag);
}
