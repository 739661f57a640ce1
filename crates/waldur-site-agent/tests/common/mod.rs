//! Shared by the end-to-end tests of the binary: finding the real services and small helpers.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use serde_json::{Map, Value, json};

/// Where `scripts/services/slurm-up.sh` writes `SLURM_CONF`.
pub const SLURM_ENV: &str = "/tmp/waldur-services/slurm/env.sh";

/// `true` when the service is there; otherwise fail under `CI=true`, or print a note and
/// return `false` (the test then returns early).
pub fn require(what: &str, ok: bool, how: &str) -> bool {
    if ok {
        return true;
    }
    let msg = format!("{what} is not available: {how}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("note: skipping: {msg}");
    false
}

/// `SLURM_CONF` of the real SLURM, when sacctmgr reaches it.
pub fn slurm_conf() -> Option<String> {
    let conf = std::fs::read_to_string(SLURM_ENV)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("export SLURM_CONF="))
                .map(|v| v.trim().trim_matches('"').to_owned())
        })
        .or_else(|| std::env::var("SLURM_CONF").ok())
        .filter(|c| Path::new(c).is_file());
    let reachable = conf.as_ref().is_some_and(|c| {
        Command::new("sacctmgr")
            .env("SLURM_CONF", c)
            .args(["--parsable2", "--noheader", "show", "cluster"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if require(
        "real SLURM",
        reachable,
        "start it with `bash scripts/services/slurm-up.sh` (as root)",
    ) {
        conf
    } else {
        None
    }
}

/// `sacctmgr ARGS` on `conf`'s cluster, holding the agents' machine-wide SLURM write lock as
/// `docs/backends/slurm.md` asks of operators' scripts: a test's cleanup `remove account` beside
/// an agent's `load` once cost the load its new associations and left slurmdbd spinning.
pub fn sacctmgr(conf: &str, args: &[&str]) -> std::process::Output {
    let _lock = slurm_write_lock();
    Command::new("sacctmgr")
        .env("SLURM_CONF", conf)
        .args(args)
        .output()
        .expect("sacctmgr runs")
}

/// Wait for and hold the agents' machine-wide SLURM write lock (their default `write_lock_dir`).
pub fn slurm_write_lock() -> backend_slurm::gate::HeldWriteLock {
    let lock_dir = backend_slurm::default_lock_dir();
    backend_slurm::hold_write_lock(Path::new(&lock_dir)).expect("SLURM write lock")
}

/// Users associated with `account` (sacctmgr's view).
pub fn sacctmgr_users(conf: &str, account: &str) -> Vec<String> {
    let out = sacctmgr(
        conf,
        &[
            "-nP",
            "show",
            "assoc",
            &format!("account={account}"),
            "format=user",
        ],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Remove the accounts whose names start with each of `prefixes`, one prefix after the other
/// (allocations before projects before customers).
pub fn remove_accounts_by_prefix(conf: &str, prefixes: &[String]) {
    for prefix in prefixes {
        let out = sacctmgr(conf, &["-nP", "show", "account", "format=account"]);
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|a| a.starts_with(prefix.as_str()))
            .map(str::to_owned)
            .collect();
        if !names.is_empty() {
            sacctmgr(conf, &["-i", "delete", "account", &names.join(",")]);
        }
    }
}

/// Order limits as the consumer API takes them.
pub fn limits(pairs: &[(&str, i64)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect()
}

/// CPU in k-Hours as a usage component (a 10 k-Hour cap), one line of `backend_components`.
pub const CPU_KHOURS: &str = "      cpu: {limit: 10, measured_unit: k-Hours, unit_factor: 60000, accounting_type: usage, label: CPU}\n";

/// GPU-hours as a limit component written as `gres/gpu` minutes.
pub const GPU_HOURS: &str = "      gpu:\n        measured_unit: gpu-Hours\n        accounting_type: limit\n        label: GPU\n        target_components:\n          gres/gpu: {factor: 60}\n";

/// One SLURM offering as the end-to-end tests configure it against the simulator's demo
/// offering: the order, membership and reporting roles on `slurm`, `{tag}_c_` / `{tag}_p_` /
/// `{tag}_a_` account prefixes (so runs never meet each other's accounts), no home directories.
pub struct SlurmOffering<'a> {
    pub name: &'a str,
    pub tag: &'a str,
    /// Extra offering-level lines (event settings), indented by four spaces.
    pub offering_extra: &'a str,
    /// Extra `backend_settings` lines, indented by six spaces.
    pub settings: &'a str,
    /// `backend_components` lines, indented by six spaces ([`CPU_KHOURS`], [`GPU_HOURS`], ...).
    pub components: &'a str,
}

/// The YAML configuration of `offering`.
pub fn slurm_config(demo: &waldur_sim::DemoInfo, offering: SlurmOffering) -> String {
    let SlurmOffering {
        name,
        tag,
        offering_extra,
        settings,
        components,
    } = offering;
    format!(
        "offerings:\n  - name: {name}\n    waldur_api_url: \"{api}\"\n    waldur_api_token: \"{token}\"\n    \
         waldur_offering_uuid: \"{uuid}\"\n    backend_type: slurm\n    order_processing_backend: slurm\n    \
         membership_sync_backend: slurm\n    reporting_backend: slurm\n{offering_extra}    backend_settings:\n      \
         default_account: root\n      customer_prefix: \"{tag}_c_\"\n      project_prefix: \"{tag}_p_\"\n      \
         allocation_prefix: \"{tag}_a_\"\n      enable_user_homedir_account_creation: false\n{settings}    \
         backend_components:\n{components}",
        api = demo.api_url,
        token = demo.provider_token,
        uuid = demo.offering_uuid,
    )
}

/// The agent run as cron runs it, against one configuration and one SLURM.
pub struct Run {
    pub config: std::path::PathBuf,
    pub conf: String,
    pub _dir: tempfile::TempDir,
}

impl Run {
    /// `waldur-site-agent -m MODE -c CONFIG --once` with this run's SLURM.
    pub fn agent(&self, mode: &str) -> (bool, String) {
        agent_with_env(&self.config, mode, &[("SLURM_CONF", self.conf.as_str())])
    }
}

/// `waldur-site-agent -m MODE -c CONFIG --once`; returns (success, combined output).
pub fn agent(config: &Path, mode: &str) -> (bool, String) {
    agent_with_env(config, mode, &[])
}

/// [`agent`] with extra environment variables.
pub fn agent_with_env(config: &Path, mode: &str, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_waldur-site-agent"))
        .env("WALDUR_SITE_AGENT_LOG_LEVEL", "INFO")
        .envs(env.iter().copied())
        .args(["-m", mode, "-c"])
        .arg(config)
        .arg("--once")
        .output()
        .expect("agent runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// What `waldur-site-agent validate-config` said about a configuration.
pub struct Validated {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Run `validate-config` on `yaml` (written to a temporary file) with extra environment
/// variables (the `${VAR}` a documented example refers to).
pub fn validate_config(yaml: &str, env: &[(&str, &str)]) -> Validated {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_waldur-site-agent"))
        .envs(env.iter().copied())
        .args(["validate-config", "-c"])
        .arg(&path)
        .output()
        .expect("waldur-site-agent runs");
    Validated {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The first YAML block of a page under `docs/` (e.g. `backends/okd.md`).
pub fn docs_yaml_example(page: &str) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs")
            .join(page),
    )
    .expect("docs page");
    let start = text.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + text[start..].find("```").expect("end of the yaml block");
    text[start..end].to_owned()
}
