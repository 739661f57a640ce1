//! End to end through the binary: `waldur-sim --demo` (in process) and the real SLURM started by
//! `bash scripts/services/slurm-up.sh`. A consumer's orders and project changes go through the
//! simulator's REST API; the agent runs `--once` per mode as cron would; SLURM is checked with
//! `sacctmgr` directly.
//!
//! Without SLURM: with `CI=true` the test fails saying how to start it; otherwise it prints a note
//! and returns.

use std::process::Command as Process;

use serde_json::json;
use waldur_sim::SimServer;
use waldur_sim::consumer::ConsumerClient;

mod common;
use common::{CPU_KHOURS, GPU_HOURS, Run, SlurmOffering, limits, slurm_conf, slurm_config};

/// One test at a time: concurrent sacctmgr writers see each other's accounts late.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Site {
    conf: String,
}

impl Site {
    fn sacctmgr(&self, args: &[&str]) -> String {
        let mut all = vec!["--parsable2", "--noheader"];
        all.extend_from_slice(args);
        let out = common::sacctmgr(&self.conf, &all);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `account|user|grptresmins|qos` lines of one account.
    fn assoc(&self, account: &str) -> Vec<Vec<String>> {
        self.sacctmgr(&[
            "show",
            "assoc",
            &format!("account={account}"),
            "format=account,user,grptresmins,qos",
        ])
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
    }

    fn account_limits(&self, account: &str) -> String {
        self.assoc(account)
            .into_iter()
            .find(|f| f.get(1).is_some_and(String::is_empty))
            .and_then(|f| f.get(2).cloned())
            .unwrap_or_default()
    }

    fn users(&self, account: &str) -> Vec<String> {
        self.assoc(account)
            .into_iter()
            .filter_map(|f| f.get(1).cloned().filter(|u| !u.is_empty()))
            .collect()
    }

    fn accounts_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.sacctmgr(&["show", "account", "format=account"])
            .lines()
            .map(str::trim)
            .filter(|a| a.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }
}

/// The parent (project) account of an allocation account.
fn site_parent(site: &Site, account: &str) -> String {
    site.sacctmgr(&[
        "show",
        "assoc",
        &format!("account={account}"),
        "format=parentname",
    ])
    .lines()
    .map(str::trim)
    .find(|l| !l.is_empty())
    .unwrap_or_default()
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_members_pause_and_terminate_reach_real_slurm() {
    let _serial = SERIAL.lock().await;
    let Some(conf) = slurm_conf() else { return };
    let site = Site { conf: conf.clone() };
    // The paused QoS must exist on the cluster (an operator creates it once).
    site.sacctmgr(&["-i", "add", "qos", "waldur_e2e_paused"]);

    let sim = SimServer::start_demo().await.expect("simulator");
    let demo = sim.demo().clone();
    let tag = format!("e2e{}", std::process::id() % 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        slurm_config(
            &demo,
            SlurmOffering {
                name: "e2e",
                tag: &tag,
                offering_extra: "",
                settings: "      qos_paused: waldur_e2e_paused\n      qos_default: normal\n",
                components: &format!("{CPU_KHOURS}{GPU_HOURS}"),
            },
        ),
    )
    .expect("config written");
    let run = Run {
        config,
        conf,
        _dir: dir,
    };
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let staff = ConsumerClient::new(&demo.api_url, &demo.staff_token);

    // 1. Create: the order becomes an account with the ordered limits; the order is done.
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("gpu", 20)]),
            "e2e alloc",
        )
        .await
        .expect("create order");
    let (ok, log) = run.agent("order_process");
    assert!(ok, "order_process --once failed:\n{log}");
    let o = consumer.order(&order).await.expect("order");
    assert_eq!(o["state"], "done", "{o}");
    let resource_uuid = o["marketplace_resource_uuid"]
        .as_str()
        .expect("resource")
        .to_owned();
    let resource = consumer.resource(&resource_uuid).await.expect("resource");
    let account = resource["backend_id"]
        .as_str()
        .expect("backend_id")
        .to_owned();
    assert!(account.starts_with(&format!("{tag}_a_")), "{account}");
    let grp = site.account_limits(&account);
    assert!(
        grp.contains("gres/gpu=1200") && grp.contains("cpu=600000"),
        "GrpTRESMins of {account}: {grp}"
    );

    // 2. A user added to the project gets an association.
    let member = demo.users.first().expect("demo users").clone();
    consumer
        .add_user_to_project(&demo.project_uuid, &member.uuid, "PROJECT.MEMBER")
        .await
        .expect("add user");
    let (ok, log) = run.agent("membership_sync");
    assert!(ok, "membership_sync --once failed:\n{log}");
    assert!(
        site.users(&account).contains(&member.username),
        "{:?}",
        site.users(&account)
    );

    // 2b. The project moves to another customer (Waldur sends no event): membership sync moves
    //     the project account under the new customer account.
    let project_uuid = uuid::Uuid::parse_str(&demo.project_uuid).expect("project uuid");
    let new_customer = uuid::Uuid::parse_str(&demo.provider_customer_uuid).expect("customer uuid");
    let new_slug = sim
        .mutate(|s| {
            if let Some(p) = s.projects.get_mut(&project_uuid) {
                p.customer = new_customer;
            }
            Ok(s.customers
                .get(&new_customer)
                .map(|c| c.slug.clone())
                .unwrap_or_default())
        })
        .expect("move project");
    let (ok, log) = run.agent("membership_sync");
    assert!(ok, "{log}");
    let parent = site.sacctmgr(&[
        "show",
        "assoc",
        &format!("account={}", site_parent(&site, &account)),
        "format=parentname",
    ]);
    assert!(
        parent
            .lines()
            .any(|l| l.trim() == format!("{tag}_c_{new_slug}").to_lowercase()),
        "project account not moved under the new customer: {parent}"
    );
    // Back to the consumer's customer, whose owner places the next orders.
    let old_customer = uuid::Uuid::parse_str(&demo.customer_uuid).expect("customer uuid");
    sim.mutate(|s| {
        if let Some(p) = s.projects.get_mut(&project_uuid) {
            p.customer = old_customer;
        }
        Ok(())
    })
    .expect("move project back");

    // 3. update_limits changes GrpTRESMins.
    let update = consumer
        .update_limits(&resource_uuid, limits(&[("gpu", 30)]))
        .await
        .expect("update order");
    let (ok, log) = run.agent("order_process");
    assert!(ok, "{log}");
    assert_eq!(
        consumer.order(&update).await.expect("order")["state"],
        "done"
    );
    assert!(
        site.account_limits(&account).contains("gres/gpu=1800"),
        "{}",
        site.account_limits(&account)
    );

    // 4. Pausing sets the paused QoS; unpausing restores the default.
    staff
        .post(
            &format!("marketplace-resources/{resource_uuid}/set_paused/"),
            json!({"paused": true}),
        )
        .await
        .expect("staff pauses the resource");
    let (ok, log) = run.agent("membership_sync");
    assert!(ok, "{log}");
    let qos: Vec<String> = site
        .assoc(&account)
        .into_iter()
        .filter_map(|f| f.get(3).cloned())
        .collect();
    assert!(
        qos.iter().all(|q| q == "waldur_e2e_paused"),
        "paused QoS on every association: {qos:?}"
    );
    staff
        .post(
            &format!("marketplace-resources/{resource_uuid}/set_paused/"),
            json!({"paused": false}),
        )
        .await
        .expect("staff unpauses");
    run.agent("membership_sync");
    let qos: Vec<String> = site
        .assoc(&account)
        .into_iter()
        .filter_map(|f| f.get(3).cloned())
        .collect();
    assert!(qos.iter().all(|q| q == "normal"), "restored QoS: {qos:?}");

    // 5. Running everything again creates nothing twice.
    let before = site.accounts_with_prefix(&tag);
    run.agent("order_process");
    run.agent("membership_sync");
    assert_eq!(
        site.accounts_with_prefix(&tag),
        before,
        "a second run changed the account set"
    );

    // 6. Terminate removes the account.
    let terminate = consumer
        .terminate(&resource_uuid)
        .await
        .expect("terminate order");
    let (ok, log) = run.agent("order_process");
    assert!(ok, "{log}");
    assert_eq!(
        consumer.order(&terminate).await.expect("order")["state"],
        "done"
    );
    assert!(
        site.assoc(&account).is_empty(),
        "account {account} still has associations"
    );

    // 7. A hostile name is refused before sacctmgr runs, and the order is erred saying why.
    let project = uuid::Uuid::parse_str(&demo.project_uuid).expect("project uuid");
    sim.mutate(|s| {
        if let Some(p) = s.projects.get_mut(&project) {
            p.slug = "x,parent=root".to_owned();
        }
        Ok(())
    })
    .expect("rename project");
    let hostile = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("gpu", 1)]),
            "hostile",
        )
        .await
        .expect("create order");
    let (ok, log) = run.agent("order_process");
    assert!(!ok, "a refused order makes --once fail");
    let o = consumer.order(&hostile).await.expect("order");
    assert_eq!(o["state"], "erred", "{o}");
    let message = o["error_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("refused") && message.contains("x,parent=root"),
        "error says why: {message}\n{log}"
    );
    assert!(
        site.accounts_with_prefix(&format!("{tag}_a_x")).is_empty(),
        "nothing was created for the hostile name"
    );
}

/// Sum of `CPUTimeRAW` (seconds) per user of the completed jobs of `account`, once `jobs` are done.
fn sacct_cpu_seconds(
    site: &Site,
    account: &str,
    jobs: usize,
) -> Option<std::collections::BTreeMap<String, f64>> {
    let out = Process::new("sacct")
        .env("SLURM_CONF", &site.conf)
        .args([
            "-a",
            "-X",
            "-n",
            "-P",
            "-A",
            account,
            "--format=User,State,CPUTimeRAW",
            "-S",
            "now-1days",
        ])
        .output()
        .expect("sacct");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split('|').collect())
        .filter(|f: &Vec<&str>| f.len() == 3)
        .collect();
    if rows.len() < jobs || rows.iter().any(|f| f[1] != "COMPLETED") {
        return None;
    }
    let mut per_user = std::collections::BTreeMap::new();
    for f in rows {
        *per_user.entry(f[0].to_owned()).or_insert(0.0) += f[2].parse::<f64>().unwrap_or(0.0);
    }
    Some(per_user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_posts_exactly_what_sacct_shows_for_real_jobs() {
    let _serial = SERIAL.lock().await;
    let Some(conf) = slurm_conf() else { return };
    let site = Site { conf: conf.clone() };
    let sim = SimServer::start_demo().await.expect("simulator");
    let demo = sim.demo().clone();
    let tag = format!("rep{}", std::process::id() % 100_000);
    let member = demo.users.first().expect("demo users").clone();
    // A Unix account to run jobs as (tests run as root; it may exist from an earlier run).
    let _ = Process::new("useradd")
        .args(["-m", &member.username])
        .output();

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        slurm_config(
            &demo,
            SlurmOffering {
                name: "report-e2e",
                tag: &tag,
                offering_extra: "",
                settings: "",
                components: "      cpu: {limit: 1000, measured_unit: CPU-minutes, unit_factor: 1, accounting_type: usage, label: CPU}\n",
            },
        ),
    )
    .expect("config");
    let run = Run {
        config,
        conf: conf.clone(),
        _dir: dir,
    };
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    consumer
        .add_user_to_project(&demo.project_uuid, &member.uuid, "PROJECT.MEMBER")
        .await
        .expect("add user");
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[]),
            "report e2e",
        )
        .await
        .expect("order");
    let (ok, log) = run.agent("order_process");
    assert!(ok, "{log}");
    let resource_uuid = consumer.order(&order).await.expect("order")["marketplace_resource_uuid"]
        .as_str()
        .expect("uuid")
        .to_owned();
    let account = consumer.resource(&resource_uuid).await.expect("resource")["backend_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(
        site.users(&account).contains(&member.username),
        "{:?}",
        site.users(&account)
    );

    // Real jobs, as the member.
    for cmd in [
        format!(
            "SLURM_CONF={conf} sbatch --chdir=/tmp -o /dev/null -A {account} -c 2 --wrap 'sleep 3'"
        ),
        format!("SLURM_CONF={conf} srun --chdir=/tmp -A {account} -c 1 sleep 2"),
    ] {
        let out = Process::new("su")
            .args([member.username.as_str(), "-c", cmd.as_str()])
            .output()
            .expect("su");
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let per_user = loop {
        if let Some(p) = sacct_cpu_seconds(&site, &account, 2) {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "jobs did not complete"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let cents = |seconds: f64| (seconds / 60.0 * 100.0).round() as i64;
    let expected_total: i64 = cents(per_user.values().sum());
    assert!(expected_total > 0, "jobs used CPU time: {per_user:?}");

    let (ok, log) = run.agent("report");
    assert!(ok, "report --once failed:\n{log}");
    let resource = uuid::Uuid::parse_str(&resource_uuid).expect("uuid");
    let (total, users): (Vec<i64>, Vec<(String, i64)>) = {
        let store = sim.state();
        let usages: Vec<_> = store
            .component_usages
            .values()
            .filter(|u| u.resource == resource && u.component_type == "cpu")
            .filter(|u| {
                u.billing_period.month()
                    == jiff::Zoned::now()
                        .with_time_zone(jiff::tz::TimeZone::UTC)
                        .month()
            })
            .collect();
        let ids: Vec<_> = usages.iter().map(|u| u.uuid).collect();
        (
            usages.iter().map(|u| u.usage_cents).collect(),
            store
                .user_usages
                .values()
                .filter(|u| ids.contains(&u.component_usage))
                .map(|u| (u.username.clone(), u.usage_cents))
                .collect(),
        )
    };
    assert_eq!(
        total,
        vec![expected_total],
        "cpu usage posted (hundredths of CPU-minutes) vs sacct"
    );
    assert!(
        users.contains(&(member.username.clone(), cents(per_user[&member.username]))),
        "per-user usage {users:?} vs sacct {per_user:?}"
    );

    // A second report with nothing new does not post again.
    sim.reset_stats();
    assert!(run.agent("report").0);
    assert_eq!(
        sim.stats()
            .count("POST", "/api/marketplace-component-usages/set_usage/"),
        0
    );
    let _ = site.sacctmgr(&[
        "-i",
        "delete",
        "user",
        &member.username,
        &format!("account={account}"),
    ]);
}

/// Issue #21: limits out of range are refused, never saturated into "unlimited". Hostile
/// orders on the demo offering (whose `gpu` has no `max_value`, so Mastermind takes them) are
/// erred (when approved) or rejected (when pending) with a message naming component, value and
/// allowed range, and nothing is written to SLURM for them; an Update to such a value leaves the
/// old `GrpTRESMins`; a fraction of a gpu-Hour is written exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_limits_are_refused_and_never_reach_real_slurm() {
    let _serial = SERIAL.lock().await;
    let Some(conf) = slurm_conf() else { return };
    let site = Site { conf: conf.clone() };
    let sim = SimServer::start_demo().await.expect("simulator");
    let demo = sim.demo().clone();
    let tag = format!("lim{}", std::process::id() % 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        slurm_config(
            &demo,
            SlurmOffering {
                name: "limits-e2e",
                tag: &tag,
                offering_extra: "",
                settings: "",
                components: &format!("{CPU_KHOURS}{GPU_HOURS}"),
            },
        ),
    )
    .expect("config written");
    let run = Run {
        config,
        conf,
        _dir: dir,
    };
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let provider = ConsumerClient::new(&demo.api_url, &demo.provider_token);
    let gpu = |value: serde_json::Value| {
        let mut m = serde_json::Map::new();
        m.insert("gpu".to_owned(), value);
        m
    };
    let huge: serde_json::Value =
        serde_json::from_str("99999999999999999999").expect("json number");
    let create = |limits: serde_json::Map<String, serde_json::Value>, name: &'static str| {
        let consumer = &consumer;
        let demo = &demo;
        async move {
            consumer
                .create_order(
                    &demo.offering_uuid,
                    &demo.project_uuid,
                    Some(&demo.plan_uuid),
                    limits,
                    name,
                )
                .await
                .expect("Mastermind (the simulator) accepts the order")
        }
    };
    let approve = |order: String| {
        let provider = &provider;
        async move {
            provider
                .post(
                    &format!("marketplace-orders/{order}/approve_by_provider/"),
                    json!({}),
                )
                .await
                .expect("provider approves");
        }
    };

    // 1. Approved hostile Creates are erred, saying which limit and what is allowed.
    for (value, shown) in [(json!(1e30), "gpu=1e30"), (huge.clone(), "gpu=1e20")] {
        let order = create(gpu(value), "hostile gpu").await;
        approve(order.clone()).await;
        let (ok, log) = run.agent("order_process");
        assert!(!ok, "an erred order makes --once fail:\n{log}");
        let o = consumer.order(&order).await.expect("order");
        assert_eq!(o["state"], "erred", "{o}");
        let message = o["error_message"].as_str().unwrap_or_default();
        assert!(
            message.contains(shown) && message.contains("allowed for gpu: 0 to "),
            "error names component, value and range: {message}"
        );
        assert!(log.contains(shown), "the log says so too:\n{log}");
        assert!(
            site.accounts_with_prefix(&tag).is_empty(),
            "no SLURM account for a refused order: {:?}",
            site.accounts_with_prefix(&tag)
        );
    }

    // 2. A pending hostile Create is rejected with the reason (never approved, never erred).
    let pending = create(gpu(huge.clone()), "hostile pending").await;
    let (ok, log) = run.agent("order_process");
    assert!(ok, "{log}");
    let o = consumer.order(&pending).await.expect("order");
    assert_eq!(o["state"], "rejected", "{o}");
    assert!(
        o["provider_rejection_comment"]
            .as_str()
            .unwrap_or_default()
            .contains("gpu=1e20"),
        "{o}"
    );
    assert!(site.accounts_with_prefix(&tag).is_empty());

    // 3. Half a gpu-Hour is 30 GPU-minutes, exactly, and Waldur keeps 0.5.
    let half = create(gpu(json!(0.5)), "half gpu hour").await;
    let (ok, log) = run.agent("order_process");
    assert!(ok, "{log}");
    let o = consumer.order(&half).await.expect("order");
    assert_eq!(o["state"], "done", "{o}");
    let resource_uuid = o["marketplace_resource_uuid"]
        .as_str()
        .expect("resource")
        .to_owned();
    let resource = consumer.resource(&resource_uuid).await.expect("resource");
    let account = resource["backend_id"]
        .as_str()
        .expect("backend_id")
        .to_owned();
    let grp = site.account_limits(&account);
    assert!(
        grp.contains("gres/gpu=30"),
        "GrpTRESMins of {account}: {grp}"
    );
    assert!(!grp.contains("9223372036854775807"), "{grp}");
    let (ok, log) = run.agent("membership_sync");
    assert!(ok, "{log}");
    assert_eq!(
        consumer.resource(&resource_uuid).await.expect("resource")["limits"]["gpu"],
        json!(0.5),
        "reading back does not round or grow it"
    );

    // 4. An Update to a hostile value leaves the old GrpTRESMins: erred when approved,
    //    rejected when pending.
    let update = consumer
        .update_limits(&resource_uuid, gpu(json!(1e30)))
        .await
        .expect("update order");
    approve(update.clone()).await;
    let (ok, log) = run.agent("order_process");
    assert!(!ok, "{log}");
    let o = consumer.order(&update).await.expect("order");
    assert_eq!(o["state"], "erred", "{o}");
    assert!(
        o["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("gpu=1e30"),
        "{o}"
    );
    assert_eq!(site.account_limits(&account), grp, "old GrpTRESMins kept");
    let (ok, log) = run.agent("membership_sync");
    assert!(ok, "the erred resource is set back to OK: {log}");
    let update = consumer
        .update_limits(&resource_uuid, gpu(huge))
        .await
        .expect("update order");
    let (ok, log) = run.agent("order_process");
    assert!(ok, "{log}");
    assert_eq!(
        consumer.order(&update).await.expect("order")["state"],
        "rejected"
    );
    assert_eq!(site.account_limits(&account), grp, "old GrpTRESMins kept");

    // Clean up what this test created on the shared cluster.
    let terminate = consumer
        .terminate(&resource_uuid)
        .await
        .expect("terminate order");
    let (ok, log) = run.agent("order_process");
    assert!(ok, "{log}");
    assert_eq!(
        consumer.order(&terminate).await.expect("order")["state"],
        "done"
    );
    for kind in ["a", "p", "c"] {
        for name in site.accounts_with_prefix(&format!("{tag}_{kind}_")) {
            site.sacctmgr(&["-i", "delete", "account", &name]);
        }
    }
}
