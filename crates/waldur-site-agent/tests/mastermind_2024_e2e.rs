//! End to end through the binary against a Mastermind from 2024 (`waldur-sim --api-profile
//! 2024`, in process) and the real SLURM of `bash scripts/services/slurm-up.sh`: Create,
//! Update twice, membership sync twice, report, Terminate — nothing is erred, usage lands in the
//! current month only, and each endpoint that server lacks is logged once per run.
//!
//! Without SLURM: with `CI=true` the test fails saying how to start it; otherwise it prints a note
//! and returns.

use std::process::Command as Process;

use waldur_sim::consumer::ConsumerClient;
use waldur_sim::{ApiProfile, SimOptions, SimServer};

mod common;
use common::{Run, limits, remove_accounts_by_prefix, sacctmgr, sacctmgr_users, slurm_conf};

const SET_AS_ERRED: &str = "/api/marketplace-provider-resources/{uuid}/set_as_erred/";
const SET_STATE_ERRED: &str = "/api/marketplace-orders/{uuid}/set_state_erred/";

fn account_limits(conf: &str, account: &str) -> String {
    let out = sacctmgr(
        conf,
        &[
            "--parsable2",
            "--noheader",
            "show",
            "assoc",
            &format!("account={account}"),
            "format=user,grptresmins",
        ],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with('|'))
        .unwrap_or_default()
        .to_owned()
}

fn cleanup(conf: &str, tag: &str) {
    remove_accounts_by_prefix(conf, &[tag.to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2024_mastermind_is_served_through_a_whole_lifecycle_on_real_slurm() {
    let Some(conf) = slurm_conf() else { return };
    let sim = SimServer::start(SimOptions {
        demo: true,
        api_profile: ApiProfile::Mastermind2024,
        ..SimOptions::default()
    })
    .await
    .expect("simulator");
    let demo = sim.demo().clone();
    let tag = format!("m24{}", std::process::id() % 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"offerings:
  - name: m2024
    waldur_api_url: "{api}"
    waldur_api_token: "{token}"
    waldur_offering_uuid: "{offering}"
    backend_type: slurm
    order_processing_backend: slurm
    membership_sync_backend: slurm
    reporting_backend: slurm
    backend_settings:
      default_account: root
      customer_prefix: "{tag}_c_"
      project_prefix: "{tag}_p_"
      allocation_prefix: "{tag}_a_"
      enable_user_homedir_account_creation: false
    backend_components:
      cpu: {{limit: 10, measured_unit: k-Hours, unit_factor: 60000, accounting_type: usage, label: CPU}}
      gpu:
        measured_unit: gpu-Hours
        accounting_type: limit
        label: GPU
        target_components:
          gres/gpu: {{factor: 60}}
"#,
            api = demo.api_url,
            token = demo.provider_token,
            offering = demo.offering_uuid,
        ),
    )
    .expect("config written");
    let run = Run {
        config,
        conf: conf.clone(),
        _dir: dir,
    };
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let member = demo.users.first().expect("demo users").clone();
    consumer
        .add_user_to_project(&demo.project_uuid, &member.uuid, "PROJECT.MEMBER")
        .await
        .expect("add user");

    // Create: the account is named after the order's project slug (the resource has none) and
    // the team is associated at once.
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("gpu", 20)]),
            "m2024 alloc",
        )
        .await
        .expect("create order");
    let (ok, log) = run.agent("order_process");
    assert!(ok, "order_process --once failed:\n{log}");
    let o = consumer.order(&order).await.expect("order");
    assert_eq!(o["state"], "done", "{o}\n{log}");
    let resource = o["marketplace_resource_uuid"]
        .as_str()
        .expect("resource")
        .to_owned();
    let account = consumer.resource(&resource).await.expect("resource")["backend_id"]
        .as_str()
        .expect("backend_id")
        .to_owned();
    assert!(account.starts_with(&format!("{tag}_a_")), "{account}");
    assert!(
        sacctmgr_users(&conf, &account).contains(&member.username),
        "{:?}",
        sacctmgr_users(&conf, &account)
    );
    let id = uuid::Uuid::parse_str(&resource).expect("uuid");
    assert_eq!(
        sim.state().allocations.get(&id).map(String::as_str),
        Some("OK"),
        "the SLURM allocation is set OK after the Create"
    );

    // Two Updates: the second one is only approved by that server because the first one set
    // the allocation OK again.
    for gpu in [30, 40] {
        let update = consumer
            .update_limits(&resource, limits(&[("gpu", gpu)]))
            .await
            .expect("update order");
        let (ok, log) = run.agent("order_process");
        assert!(ok, "{log}");
        let o = consumer.order(&update).await.expect("order");
        assert_eq!(o["state"], "done", "{o}\n{log}");
        let grp = account_limits(&conf, &account);
        assert!(
            grp.contains(&format!("gres/gpu={}", gpu * 60)),
            "GrpTRESMins of {account}: {grp}"
        );
    }

    // Membership twice: nothing erred, each missing endpoint logged once per run.
    for _ in 0..2 {
        let (ok, log) = run.agent("membership_sync");
        assert!(ok, "membership_sync --once failed:\n{log}");
        // At most once: a resource whose `last_sync` is recent is not refreshed at all.
        assert!(
            log.matches("Waldur has no marketplace-provider-resources/{uuid}/refresh_last_sync/")
                .count()
                <= 1,
            "{log}"
        );
    }
    assert_eq!(sim.state().resources[&id].state, "OK");

    // Report: the current month only (that server writes any set_usage into it).
    let (ok, log) = run.agent("report");
    assert!(ok, "report --once failed:\n{log}");
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let this_month = jiff::civil::date(now.year(), now.month(), 1);
    let months: Vec<jiff::civil::Date> = sim
        .state()
        .component_usages
        .values()
        .map(|u| u.billing_period)
        .collect();
    assert!(months.iter().all(|m| *m == this_month), "{months:?}\n{log}");
    assert_eq!(
        log.matches("Waldur has no marketplace-component-usages/set_usage/ billing period")
            .count(),
        1,
        "{log}"
    );

    // Terminate.
    let terminate = consumer.terminate(&resource).await.expect("terminate");
    let (ok, log) = run.agent("order_process");
    assert!(ok, "{log}");
    assert_eq!(
        consumer.order(&terminate).await.expect("order")["state"],
        "done",
        "{log}"
    );
    assert!(sacctmgr_users(&conf, &account).is_empty());

    assert_eq!(sim.stats().count("POST", SET_AS_ERRED), 0);
    assert_eq!(sim.stats().count("POST", SET_STATE_ERRED), 0);
    cleanup(&conf, &tag);
}

/// `event_process` with `stomp_enabled` against a 2024 server, which has no event subscriptions:
/// the agent says so and polls the offering at the order_process period instead of leaving its
/// orders to the hourly sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_mode_on_a_2024_mastermind_polls_instead() {
    let Some(conf) = slurm_conf() else { return };
    let sim = SimServer::start(SimOptions {
        demo: true,
        api_profile: ApiProfile::Mastermind2024,
        ..SimOptions::default()
    })
    .await
    .expect("simulator");
    let demo = sim.demo().clone();
    let tag = format!("m24e{}", std::process::id() % 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"offerings:
  - name: m2024-events
    waldur_api_url: "{api}"
    waldur_api_token: "{token}"
    waldur_offering_uuid: "{offering}"
    backend_type: slurm
    order_processing_backend: slurm
    membership_sync_backend: slurm
    stomp_enabled: true
    websocket_use_tls: false
    stomp_ws_host: 127.0.0.1
    stomp_ws_port: 9
    backend_settings:
      default_account: root
      customer_prefix: "{tag}_c_"
      project_prefix: "{tag}_p_"
      allocation_prefix: "{tag}_a_"
      enable_user_homedir_account_creation: false
    backend_components:
      cpu: {{limit: 10, measured_unit: k-Hours, unit_factor: 60000, accounting_type: usage, label: CPU}}
"#,
            api = demo.api_url,
            token = demo.provider_token,
            offering = demo.offering_uuid,
        ),
    )
    .expect("config written");
    let log_path = dir.path().join("agent.log");
    let log_file = std::fs::File::create(&log_path).expect("log");
    let mut child = Process::new(assert_cmd::cargo::cargo_bin("waldur-site-agent"))
        .env("SLURM_CONF", &conf)
        .env("WALDUR_SITE_AGENT_LOG_LEVEL", "INFO")
        .env("WALDUR_SITE_AGENT_ORDER_PROCESS_PERIOD_MINUTES", "0.05")
        .env("WALDUR_SITE_AGENT_HEARTBEAT_PATH", dir.path().join("hb"))
        .args(["-m", "event_process", "--tick-seconds", "1", "-c"])
        .arg(&config)
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("agent starts");
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    // Placed after the initial pass, so only the fallback polling can do it.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("cpu", 1)]),
            "polled in event mode",
        )
        .await
        .expect("create order");
    let mut state = String::new();
    for _ in 0..60 {
        state = consumer.order(&order).await.expect("order")["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if state == "done" || state == "erred" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let _ = Process::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(state, "done", "{log}");
    assert!(log.contains("polled at the order_process period"), "{log}");
    cleanup(&conf, &tag);
}
