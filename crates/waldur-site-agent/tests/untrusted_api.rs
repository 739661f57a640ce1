//! The binary against a broken Waldur (wiremock): a listing that fails is logged at the default
//! level with what failed and why; `diagnostics` never prints a password embedded in the API URL.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const OFFERING: &str = "0123456789abcdef0123456789abcdef";
const URL_PASSWORD: &str = "pa55-w0rd-in-url";

async fn run_agent(args: Vec<String>, config: PathBuf) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = assert_cmd::Command::cargo_bin("waldur-site-agent").expect("binary");
        cmd.env_remove("WALDUR_SITE_AGENT_LOG_LEVEL")
            .args(&args)
            .arg("-c")
            .arg(&config)
            .output()
            .expect("runs")
    })
    .await
    .expect("join")
}

/// Waldur answering the listings with something that is not JSON.
async fn broken_waldur() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/marketplace-orders/"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy error page</html>"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/api/marketplace-provider-offerings/{OFFERING}/"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "uuid": OFFERING, "customer_uuid": "00000000000000000000000000000007",
            "components": [], "plugin_options": {}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/marketplace-provider-resources/"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[{\"uuid\": "))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/users/me/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"uuid": "00000000000000000000000000000005"})),
        )
        .mount(&server)
        .await;
    // Agent identity registration: an older Mastermind (404), logged once and skipped.
    server
}

/// A fake `sacctmgr` that answers the SLURM backend's preflight, so the cycle gets to the
/// order listing without any real SLURM.
fn fake_slurm_bin(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = dir.join("slurm-bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    for tool in ["sacctmgr", "sacct", "sinfo", "scancel"] {
        let p = bin.join(tool);
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").expect("write tool");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    bin
}

fn write_config(dir: &Path, api_url: &str) -> PathBuf {
    let config = dir.join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            r#"heartbeat_path: "{hb}"
offerings:
  - name: broken-listing
    waldur_api_url: "{api_url}"
    waldur_api_token: "token-value-1234"
    waldur_offering_uuid: "{OFFERING}"
    backend_type: slurm
    order_processing_backend: slurm
    reporting_backend: slurm
    backend_settings:
      default_account: root
      slurm_bin_path: "{bin}"
      keystone_url: "https://admin:{URL_PASSWORD}@keystone.example/v3"
"#,
            hb = dir.join("hb").display(),
            bin = fake_slurm_bin(dir).display(),
        ),
    )
    .expect("config");
    config
}

fn log_lines(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_listing_is_logged_at_the_default_level_with_its_cause() {
    let server = broken_waldur().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &format!("{}/api/", server.uri()));
    let out = run_agent(
        ["-m", "order_process,report", "--once"]
            .map(String::from)
            .to_vec(),
        config,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines = log_lines(&out);
    assert!(
        lines.iter().all(|l| l["level"] != "debug"),
        "the default level is info"
    );
    let not_processed: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "Offering not processed")
        .collect();
    let text = |mode: &str| -> String {
        not_processed
            .iter()
            .find(|l| l["mode"] == mode)
            .unwrap_or_else(|| panic!("no 'Offering not processed' line for {mode}: {lines:#?}"))
            .to_string()
    };
    let orders = text("order_process");
    assert!(
        orders.contains("\"level\":\"warning\"")
            && orders.contains("list orders: Waldur request GET ")
            && orders.contains("/api/marketplace-orders/")
            && orders.contains("unexpected response")
            && orders.contains("proxy error page"),
        "{orders}"
    );
    let report = text("report");
    assert!(
        report.contains("/api/marketplace-provider-resources/")
            && report.contains("unexpected response")
            && report.contains("EOF while parsing"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_masks_a_password_in_the_api_url() {
    let server = broken_waldur().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = server.uri();
    let with_password = uri.replacen("http://", &format!("http://agent:{URL_PASSWORD}@"), 1);
    let config = write_config(dir.path(), &format!("{with_password}/api/"));
    let masked = uri.replacen("http://", "http://agent:***@", 1);
    for args in [vec!["diagnostics", "--offline"], vec!["diagnostics"]] {
        let out = run_agent(args.iter().map(|s| s.to_string()).collect(), config.clone()).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !stdout.contains(URL_PASSWORD) && !stderr.contains(URL_PASSWORD),
            "{args:?} printed the URL password:\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains(&format!("waldur_api_url: {masked}/api/")),
            "{args:?}:\n{stdout}"
        );
        // A URL among the backend settings is masked the same way.
        assert!(
            stdout.contains("https://admin:***@keystone.example/v3"),
            "{args:?}:\n{stdout}"
        );
        if args.len() == 1 {
            // Online: the readiness check reached Waldur and the JSON report shows the URL masked.
            assert!(
                stdout.contains("waldur: reachable, authenticated as user"),
                "{stdout}"
            );
            assert!(
                stdout.contains(&format!("\"waldur_api_url\": \"{masked}/api/\"")),
                "{stdout}"
            );
        }
    }
}
