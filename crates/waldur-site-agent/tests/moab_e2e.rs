//! End to end through the binary with the `moab` backend: `waldur-sim --demo --offering-kind
//! moab` in process and the `site-sim` MAM double (`mam-*` programs on a directory the config
//! names). Create → accounts, fund and deposit; a member → user on the account; update → the new
//! deposit; charges → usage per user and in total; terminate → account and fund gone; a second
//! run changes nothing.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use site_sim::moab::{MoabState, load, run_in_dir};
use waldur_sim::consumer::ConsumerClient;
use waldur_sim::{DemoOfferingKind, SimOptions, SimServer};

mod common;
use common::{agent, limits};

/// `target/debug/site-sim`, built if needed.
fn site_sim_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--offline",
            "-q",
            "-p",
            "site-sim",
            "--bin",
            "site-sim",
        ])
        .status()
        .expect("cargo build site-sim");
    assert!(status.success(), "building site-sim");
    dir.join("site-sim")
}

/// The state without the call counters.
fn objects(dir: &Path) -> MoabState {
    let mut state = load(dir).expect("state");
    state.calls.clear();
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moab_orders_members_usage_and_terminate_reach_the_mam_double() {
    let sim = SimServer::start(SimOptions {
        demo: true,
        demo_offering_kind: DemoOfferingKind::Moab,
        ..Default::default()
    })
    .await
    .expect("simulator");
    let demo = sim.demo().clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let mam = dir.path().join("mam");
    let bin = site_sim::moab::install(&mam, &site_sim_binary()).expect("mam-* installed");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"offerings:
  - name: e2e-moab
    waldur_api_url: "{api}"
    waldur_api_token: "{token}"
    waldur_offering_uuid: "{offering}"
    backend_type: moab
    order_processing_backend: moab
    membership_sync_backend: moab
    reporting_backend: moab
    backend_settings:
      project_prefix: p_
      allocation_prefix: a_
      mam_bin_path: "{bin}"
    backend_components:
      deposit: {{measured_unit: credits, unit_factor: 1, accounting_type: limit, label: Deposit}}
"#,
            api = demo.api_url,
            token = demo.provider_token,
            offering = demo.offering_uuid,
            bin = bin.display(),
        ),
    )
    .expect("config written");
    let out = Command::cargo_bin("waldur-site-agent")
        .expect("binary")
        .args(["validate-config", "-c"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);

    // 1. Create: project account, allocation account with its fund and the deposit.
    let name = "My \"MOAB\" allocation";
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("deposit", 100)]),
            name,
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
    let resource = consumer.resource(&resource_uuid).await.expect("resource");
    let account = resource["backend_id"].as_str().expect("id").to_owned();
    assert!(account.starts_with("a_"), "{account}");
    let state = objects(&mam);
    let acc = state.accounts.get(&account).expect("account on MAM");
    assert_eq!(
        acc.description, name,
        "the name reaches MAM as one description"
    );
    assert!(acc.organization.starts_with("p_"), "{acc:?}");
    assert!(
        state.accounts.contains_key(&acc.organization),
        "project account"
    );
    let fund = state
        .funds
        .values()
        .find(|f| f.account == account)
        .expect("fund");
    assert_eq!(fund.allocated, 100.0);

    // 2. A member becomes a user of the account.
    let member = demo.users.first().expect("demo users").clone();
    consumer
        .add_user_to_project(&demo.project_uuid, &member.uuid, "PROJECT.MEMBER")
        .await
        .expect("add user");
    let (ok, log) = agent(&config, "membership_sync");
    assert!(ok, "membership_sync failed:\n{log}");
    let state = objects(&mam);
    assert!(
        state.accounts[&account].users.contains(&member.username),
        "{:?}\n{log}",
        state.accounts[&account]
    );

    // 3. Update: the fund holds the new deposit.
    let update = consumer
        .update_limits(&resource_uuid, limits(&[("deposit", 150)]))
        .await
        .expect("update");
    let (ok, log) = agent(&config, "order_process");
    assert!(ok, "order_process failed:\n{log}");
    assert_eq!(
        consumer.order(&update).await.expect("order")["state"],
        "done",
        "{log}"
    );
    let state = objects(&mam);
    let fund = state
        .funds
        .values()
        .find(|f| f.account == account)
        .expect("fund");
    assert_eq!(fund.allocated, 150.0);

    // 4. Charges are reported per user and in total.
    for amount in ["12.5", "7.25"] {
        let args: Vec<String> = ["-a", &account, "-u", &member.username, "-z", amount]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let out =
            run_in_dir(&mam, "mam-charge", &args, &site_sim::moab::now_local()).expect("charge");
        assert_eq!(out.code, 0, "{out:?}");
    }
    let (ok, log) = agent(&config, "report");
    assert!(ok, "report failed:\n{log}");
    let resource_id = uuid::Uuid::parse_str(&resource_uuid).expect("uuid");
    let (total, users): (Vec<i64>, Vec<(String, i64)>) = {
        let store = sim.state();
        let usages: Vec<_> = store
            .component_usages
            .values()
            .filter(|u| u.resource == resource_id && u.component_type == "deposit")
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
    assert_eq!(total, vec![1975], "total usage in cents\n{log}");
    assert!(
        users.contains(&(member.username.clone(), 1975)),
        "per-user usage {users:?}"
    );

    // 5. Terminate: account and fund gone (and the project account with its last allocation).
    let terminate = consumer.terminate(&resource_uuid).await.expect("terminate");
    let (ok, log) = agent(&config, "order_process");
    assert!(ok, "order_process failed:\n{log}");
    assert_eq!(
        consumer.order(&terminate).await.expect("order")["state"],
        "done",
        "{log}"
    );
    let state = objects(&mam);
    assert!(!state.accounts.contains_key(&account), "{state:?}");
    assert!(
        state.funds.values().all(|f| f.account != account),
        "{state:?}"
    );

    // 6. A second run changes nothing.
    let before = objects(&mam);
    for mode in ["order_process", "membership_sync"] {
        let (ok, log) = agent(&config, mode);
        assert!(ok, "{mode} failed:\n{log}");
    }
    assert_eq!(objects(&mam), before, "a second run changed the site");
}
