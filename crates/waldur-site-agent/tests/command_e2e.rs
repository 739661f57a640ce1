//! End to end through the binary with the `command` backend: `waldur-sim --demo` in process, the
//! Python example backend (`examples/command-backend/site_backend.py`) as the site. An order
//! placed in the simulator ends `done` after one `--once` cycle, and the site holds it.

use assert_cmd::Command;
use waldur_sim::SimServer;
use waldur_sim::consumer::ConsumerClient;

mod common;
use common::limits;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/command-backend/site_backend.py"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_once_order_cycle_through_the_command_backend_ends_done() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "python3 is needed (CI=true, not skipping)"
        );
        eprintln!("NOTE: skipping the command backend e2e test: no python3");
        return;
    }
    let sim = SimServer::start_demo().await.expect("simulator");
    let demo = sim.demo().clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("site.json");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"offerings:
  - name: e2e-command
    waldur_api_url: "{api}"
    waldur_api_token: "{token}"
    waldur_offering_uuid: "{offering}"
    backend_type: command
    order_processing_backend: command
    membership_sync_backend: command
    reporting_backend: command
    backend_settings:
      command: python3
      args: ["{EXAMPLE}"]
      timeout_seconds: 30
      allocation_prefix: ex_
      settings: {{state_file: "{state}"}}
    backend_components:
      cpu: {{limit: 10, measured_unit: k-Hours, unit_factor: 60000, accounting_type: usage, label: CPU}}
      gpu: {{measured_unit: gpu-Hours, accounting_type: limit, label: GPU}}
"#,
            api = demo.api_url,
            token = demo.provider_token,
            offering = demo.offering_uuid,
            state = state.display(),
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
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    let order = consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("gpu", 20)]),
            "command alloc",
        )
        .await
        .expect("create order");
    let out = Command::cargo_bin("waldur-site-agent")
        .expect("binary")
        .args(["-m", "order_process", "-c"])
        .arg(&config)
        .arg("--once")
        .output()
        .expect("agent runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "order_process --once failed:\n{log}");
    let o = consumer.order(&order).await.expect("order");
    assert_eq!(o["state"], "done", "{o}\n{log}");
    let resource_uuid = o["marketplace_resource_uuid"].as_str().expect("resource");
    let resource = consumer.resource(resource_uuid).await.expect("resource");
    let backend_id = resource["backend_id"].as_str().expect("backend id");
    assert!(backend_id.starts_with("ex_"), "{backend_id}");
    let site: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state")).expect("json");
    assert_eq!(
        site["resources"][backend_id]["limits"]["gpu"], 20.0,
        "{site}"
    );
}
