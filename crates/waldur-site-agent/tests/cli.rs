//! The binary from the outside: help text, validate-config, healthz, and no secret in any output.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use assert_cmd::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agent-config/tests/fixtures")
}

fn agent() -> Command {
    let mut cmd = Command::cargo_bin("waldur-site-agent").expect("binary is built");
    cmd.env_remove("WALDUR_SITE_AGENT_LOG_LEVEL");
    cmd
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_mentions_every_mode_and_variable() {
    let out = agent().arg("--help").output().expect("runs");
    assert!(out.status.success());
    let help = stdout_of(&out);
    for word in [
        "order_process",
        "report",
        "membership_sync",
        "event_process",
        "WALDUR_SITE_AGENT_ORDER_PROCESS_PERIOD_MINUTES",
        "WALDUR_SITE_AGENT_REPORT_PERIOD_MINUTES",
        "WALDUR_SITE_AGENT_MEMBERSHIP_SYNC_PERIOD_MINUTES",
        "WALDUR_SITE_AGENT_RECONCILIATION_PERIOD_MINUTES",
        "WALDUR_SITE_AGENT_LOG_LEVEL",
        "SENTRY_ENVIRONMENT",
        "WALDUR_SITE_AGENT_MAX_RESPONSE_MB",
        "WALDUR_SITE_AGENT_MAX_PAGES",
        "WALDUR_SITE_AGENT_HEARTBEAT_PATH",
        "WALDUR_SITE_AGENT_STOMP_UNHEALTHY_AFTER_MINUTES",
        "WALDUR_SITE_AGENT_STOMP_HANDLER_STUCK_AFTER_MINUTES",
        "WALDUR_SITE_AGENT_RESOURCE_STATUS_RECONCILIATION_MINUTES",
        "validate-config",
        "diagnostics",
        "load-components",
        "sync-offering-users",
        "healthz",
        "--once",
        "--config-file",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let out = agent().arg("version").output().expect("runs");
    assert!(out.status.success());
    assert_eq!(
        stdout_of(&out).trim(),
        format!("waldur-site-agent {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn validate_config_accepts_the_seed_examples() {
    for name in [
        "openstack-keystone.yaml",
        "core-reference.yaml",
        "rancher-offering.yaml",
        "rancher-legacy-projects.yaml",
        "rancher-legacy-keycloak.yaml",
    ] {
        let path = fixtures().join("seeds").join(name);
        let out = agent()
            .args([
                "validate-config",
                "--known-backends",
                "slurm,moab,openstack,rancher",
                "-c",
            ])
            .arg(&path)
            .env("WALDUR_API_TOKEN", "t0ken-value")
            .env("OPENSTACK_PASSWORD", "os-pass-value")
            .env("STOMP_PASSWORD", "stomp-pass-value")
            .output()
            .expect("runs");
        assert!(out.status.success(), "{name}: {}", stderr_of(&out));
        assert!(
            stdout_of(&out).starts_with(&format!("{}: OK (", path.display())),
            "{}",
            stdout_of(&out)
        );
    }
}

#[test]
fn validate_config_rejects_unknown_backends_by_path() {
    let path = fixtures().join("seeds/core-reference.yaml");
    let out = agent()
        .args(["validate-config", "--known-backends", "slurm", "-c"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "{}: offerings[1].order_processing_backend: unknown backend 'moab' (this build has: slurm)",
            path.display()
        )),
        "{err}"
    );
    // Warnings are printed too.
    assert!(err.contains("warning: "), "{err}");
}

#[test]
fn validate_config_prints_every_problem_of_broken_files() {
    let cases: [(&str, &[&str]); 5] = [
        ("bad-yaml.yaml", &[":5: invalid YAML: "]),
        (
            "missing-variable.yaml",
            &[
                ": offerings[0].waldur_api_token: environment variable WALDUR_TEST_TOKEN_THAT_IS_NOT_SET is not set",
            ],
        ),
        (
            "bad-timezone.yaml",
            &[": timezone: 'Mars/Olympus_Mons' is not a known IANA time zone"],
        ),
        (
            "reporting-periods-zero.yaml",
            &[": reporting_periods: must be between 1 and 12 (months reported), found 0"],
        ),
        (
            "many-problems.yaml",
            &[
                ": log_level: ",
                ": reporting_periods: ",
                ": log_shipping.ship_interval_seconds: ",
                ": offerings[0].waldur_api_url: ",
                ": offerings[0].backend_settings.default_homedir_umask: ",
                ": offerings[0].backend_components.cpu.measured_unit: required key is missing",
                ": offerings[0].backend_components.mem.limit_period: ",
                ": offerings[1].oidc_client_secret: ",
            ],
        ),
    ];
    for (name, expected) in cases {
        let path = fixtures().join("broken").join(name);
        let out = agent()
            .args(["validate-config", "-c"])
            .arg(&path)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = stderr_of(&out);
        for part in expected {
            let line = format!("{}{part}", path.display());
            assert!(err.contains(&line), "{name}: expected {line:?} in:\n{err}");
        }
        let problem_lines = err.lines().filter(|l| !l.starts_with("warning: ")).count();
        assert_eq!(problem_lines, expected.len(), "{name}:\n{err}");
    }
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = agent()
        .args(["validate-config", "-c", "/nonexistent/agent.yaml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).starts_with("/nonexistent/agent.yaml: cannot read the configuration file"),
        "{}",
        stderr_of(&out)
    );
}

/// A SLURM offering whose `backend_settings.allocation_prefix` is `prefix` (YAML-quoted).
fn config_with_prefix(dir: &std::path::Path, prefix: &str) -> PathBuf {
    let path = dir.join("prefix.yaml");
    let text = format!(
        r#"offerings:
  - name: "Cluster"
    waldur_api_url: "http://127.0.0.1:9/api/"
    waldur_api_token: "token-value"
    waldur_offering_uuid: "0123456789abcdef0123456789abcdef"
    backend_type: "slurm"
    order_processing_backend: "slurm"
    backend_settings:
      default_account: "root"
      allocation_prefix: {prefix:?}
"#
    );
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn validate_config_refuses_hostile_prefixes_by_key_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (prefix, why) in [
        ("x;rm -rf /", "character U+003B (';') is not allowed"),
        ("-i", "it starts with '-' and would be read as an option"),
    ] {
        let path = config_with_prefix(dir.path(), prefix);
        let out = agent()
            .args(["validate-config", "-c"])
            .arg(&path)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(1), "{prefix}: {}", stdout_of(&out));
        let err = stderr_of(&out);
        let expected = format!(
            "{}: offerings[0].backend_settings.allocation_prefix: '{prefix}' is not a usable prefix: {why}",
            path.display()
        );
        assert!(
            err.contains(&expected),
            "{prefix}: expected {expected:?} in:\n{err}"
        );
    }
    // The same file with an ordinary prefix is fine: the refusal is the prefix's.
    let path = config_with_prefix(dir.path(), "hpc_");
    let out = agent()
        .args(["validate-config", "-c"])
        .arg(&path)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr_of(&out));
}

#[test]
fn config_paths_that_are_not_small_regular_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.yaml");
    // A comment line repeated past the 16 MiB cap: valid YAML, but no agent configuration.
    std::fs::write(&big, "# padding\n".repeat(1_800_000)).expect("write");
    for (path, why) in [
        (PathBuf::from("/dev/zero"), "it is not a regular file"),
        (dir.path().to_path_buf(), "it is a directory"),
        (big, "it is larger than 16 MiB"),
    ] {
        for command in [
            &["validate-config"][..],
            &["-m", "order_process", "--once"][..],
        ] {
            let started = std::time::Instant::now();
            let out = agent()
                .args(command)
                .arg("-c")
                .arg(&path)
                .output()
                .expect("runs");
            assert_eq!(out.status.code(), Some(1), "{} {command:?}", path.display());
            let err = stderr_of(&out);
            assert!(
                err.starts_with(&format!(
                    "{}: cannot read the configuration file: {why}",
                    path.display()
                )),
                "{} {command:?}: {err}",
                path.display()
            );
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} took {:?}",
                path.display(),
                started.elapsed()
            );
        }
    }
}

#[test]
fn healthz_liveness_follows_the_heartbeat_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hb = dir.path().join("heartbeat");
    let probe = |max_age: &str| {
        agent()
            .args([
                "healthz",
                "--liveness-only",
                "--max-age",
                max_age,
                "--heartbeat-file",
            ])
            .arg(&hb)
            .output()
            .expect("runs")
    };
    let missing = probe("300");
    assert_eq!(missing.status.code(), Some(1));
    assert!(stdout_of(&missing).starts_with("not live:"));

    std::fs::write(&hb, "1700000000.0").expect("write heartbeat");
    let fresh = probe("300");
    assert!(fresh.status.success(), "{}", stdout_of(&fresh));
    assert!(stdout_of(&fresh).starts_with("live:"));

    let ten_minutes_ago = SystemTime::now() - Duration::from_secs(600);
    std::fs::File::options()
        .write(true)
        .open(&hb)
        .expect("open")
        .set_modified(ten_minutes_ago)
        .expect("set mtime");
    let stale = probe("300");
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        stdout_of(&stale).contains("old (max 300s)"),
        "{}",
        stdout_of(&stale)
    );
    assert!(probe("900").status.success());
}

/// Upstream 1.0.8: `WALDUR_SITE_AGENT_HEARTBEAT_PATH` names the heartbeat file for the agent and
/// the probe (no config needed for liveness then).
#[test]
fn healthz_reads_the_heartbeat_named_by_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hb = dir.path().join("hb-from-env");
    let probe = || {
        agent()
            .env("WALDUR_SITE_AGENT_HEARTBEAT_PATH", &hb)
            .args([
                "-c",
                "/nonexistent/config.yaml",
                "healthz",
                "--liveness-only",
            ])
            .output()
            .expect("runs")
    };
    assert_eq!(probe().status.code(), Some(1));
    std::fs::write(&hb, "1700000000.0").expect("heartbeat");
    let live = probe();
    assert!(live.status.success(), "{}", stdout_of(&live));
    assert!(stdout_of(&live).contains("live:"));
}

/// Readiness gives up after `--readiness-timeout` (default 5 s) on a Waldur that accepts the
/// connection and never answers, instead of hanging until the probe is killed.
#[test]
fn healthz_readiness_is_bounded_by_its_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hb = dir.path().join("hb");
    std::fs::write(&hb, "1700000000.0").expect("heartbeat");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "offerings:\n  - name: silent\n    waldur_api_url: http://127.0.0.1:{port}/api/\n    waldur_api_token: t\n    waldur_offering_uuid: 0123456789abcdef0123456789abcdef\n    backend_type: slurm\n"
        ),
    )
    .expect("config");
    let started = std::time::Instant::now();
    let out = agent()
        .args(["-c"])
        .arg(&config)
        .args(["healthz", "--readiness-timeout", "1", "--heartbeat-file"])
        .arg(&hb)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    assert!(stdout_of(&out).contains("not ready"), "{}", stdout_of(&out));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

const SECRET_TOKEN: &str = "tok-9f8e7d6c5b4a";
const SECRET_PASSWORD: &str = "pw-Zq81!x";
const SECRET_CLIENT: &str = "oauth-cl1ent-s3cret";

fn secret_config(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("agent.yaml");
    let text = format!(
        r#"sentry_dsn: ""
heartbeat_path: "{hb}"
offerings:
  - name: "Cluster {SECRET_TOKEN}"
    waldur_api_url: "http://127.0.0.1:9/api/"
    waldur_api_token: "${{TEST_AGENT_TOKEN}}"
    waldur_offering_uuid: "0123456789abcdef0123456789abcdef"
    backend_type: "slurm"
    order_processing_backend: "slurm"
    backend_settings:
      default_account: "root"
      keycloak:
        keycloak_password: "{SECRET_PASSWORD}"
      token_config:
        oauth_config:
          client_secret: "{SECRET_CLIENT}"
"#,
        hb = dir.join("hb").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn assert_no_secret(what: &str, text: &str) {
    for s in [SECRET_TOKEN, SECRET_PASSWORD, SECRET_CLIENT] {
        assert!(!text.contains(s), "{what} leaks {s}:\n{text}");
    }
}

#[test]
fn diagnostics_output_has_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = secret_config(dir.path());
    let out = agent()
        .args(["diagnostics", "--offline", "-c"])
        .arg(&config)
        .env("TEST_AGENT_TOKEN", SECRET_TOKEN)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    assert!(text.contains("offering[0] Cluster ***"), "{text}");
    assert!(text.contains("default_account"), "{text}");
    assert_no_secret("diagnostics stdout", &text);
    assert_no_secret("diagnostics stderr", &stderr_of(&out));

    // Online: the connection error text goes through the same redaction.
    let online = agent()
        .args(["diagnostics", "-c"])
        .arg(&config)
        .env("TEST_AGENT_TOKEN", SECRET_TOKEN)
        .output()
        .expect("runs");
    assert_eq!(online.status.code(), Some(1));
    assert!(
        stdout_of(&online).contains("waldur: FAILED"),
        "{}",
        stdout_of(&online)
    );
    assert_no_secret("diagnostics (online)", &stdout_of(&online));
}

#[test]
fn agent_logs_are_json_and_have_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = secret_config(dir.path());
    let out = agent()
        .args(["-m", "order_process,report", "--once", "-c"])
        .arg(&config)
        .env("TEST_AGENT_TOKEN", SECRET_TOKEN)
        .env("WALDUR_SITE_AGENT_LOG_LEVEL", "debug")
        .output()
        .expect("runs");
    // Waldur is unreachable (port 9), so no offering gets processed.
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let logs = stdout_of(&out);
    assert_no_secret("logs", &logs);
    let mut saw_offering = false;
    for line in logs.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("every line is JSON");
        for key in ["timestamp", "level", "logger", "event"] {
            assert!(v.get(key).is_some(), "{key} missing in {line}");
        }
        if v["offering"] == "Cluster ***" {
            saw_offering = true;
        }
    }
    assert!(
        saw_offering,
        "the offering name (which holds the token) is logged redacted:\n{logs}"
    );
    let hb = std::fs::read_to_string(dir.path().join("hb")).expect("heartbeat written");
    assert!(hb.parse::<f64>().is_ok(), "{hb}");
}

#[test]
fn bad_period_variable_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = secret_config(dir.path());
    let out = agent()
        .args(["--once", "-c"])
        .arg(&config)
        .env("TEST_AGENT_TOKEN", SECRET_TOKEN)
        .env("WALDUR_SITE_AGENT_ORDER_PROCESS_PERIOD_MINUTES", "soon")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout_of(&out).contains("WALDUR_SITE_AGENT_ORDER_PROCESS_PERIOD_MINUTES"));
}

#[test]
fn seed_examples_validate_against_the_backends_of_this_build() {
    let seeds = fixtures().join("seeds");
    let out = agent()
        .env("WALDUR_API_TOKEN", "token-from-env")
        .env("OPENSTACK_PASSWORD", "password-from-env")
        .env("STOMP_PASSWORD", "stomp-from-env")
        .arg("validate-config")
        .arg("-c")
        .arg(seeds.join("openstack-keystone.yaml"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "the OpenStack seed example must validate: {}",
        stderr_of(&out)
    );

    // The core reference has a SLURM offering and a MOAB one: both accepted (with warnings for
    // the keys upstream's base code reads and ours ignores).
    let out = agent()
        .arg("validate-config")
        .arg("-c")
        .arg(seeds.join("core-reference.yaml"))
        .output()
        .expect("runs");
    let errors: Vec<String> = stderr_of(&out)
        .lines()
        .filter(|l| !l.starts_with("warning:"))
        .map(str::to_owned)
        .collect();
    #[cfg(feature = "moab")]
    assert!(
        out.status.success() && errors.is_empty(),
        "the core reference validates: {errors:?}"
    );
    #[cfg(not(feature = "moab"))]
    assert!(
        errors
            .iter()
            .all(|l| l.contains("offerings[1]") && l.contains("unknown backend 'moab'")),
        "only the MOAB offering is refused: {errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_of_real_cycles_have_no_secret() {
    let sim = waldur_sim::SimServer::start_demo()
        .await
        .expect("simulator");
    let demo = sim.demo().clone();
    let consumer = waldur_sim::consumer::ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            Default::default(),
            "logs",
        )
        .await
        .expect("order");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            r#"heartbeat_path: "{hb}"
offerings:
  - name: logs
    waldur_api_url: "{api}"
    waldur_api_token: "${{TEST_AGENT_TOKEN}}"
    waldur_offering_uuid: "{offering}"
    backend_type: slurm
    order_processing_backend: slurm
    membership_sync_backend: slurm
    reporting_backend: slurm
    backend_settings:
      default_account: root
      slurm_bin_path: /nonexistent/slurm/bin
      ldap_bind_password: "{SECRET_PASSWORD}"
"#,
            hb = dir.path().join("hb").display(),
            api = demo.api_url,
            offering = demo.offering_uuid,
        ),
    )
    .expect("config");
    let out = agent()
        .args(["-m", "order_process,report,membership_sync", "--once", "-c"])
        .arg(&config)
        .env("TEST_AGENT_TOKEN", &demo.provider_token)
        .env("WALDUR_SITE_AGENT_LOG_LEVEL", "debug")
        .output()
        .expect("runs");
    let logs = format!("{}{}", stdout_of(&out), stderr_of(&out));
    // The site is missing, so the order fails: real requests, real errors, all logged at debug.
    assert_eq!(out.status.code(), Some(1), "{logs}");
    assert!(
        logs.contains("/nonexistent/slurm/bin"),
        "the failing command is named: {logs}"
    );
    assert!(
        !logs.contains(&demo.provider_token),
        "the Waldur token leaked:\n{logs}"
    );
    assert!(
        !logs.contains(SECRET_PASSWORD),
        "a backend password leaked:\n{logs}"
    );
    for line in stdout_of(&out).lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("every line is JSON");
    }
}

/// The binary called by upstream's console-script names (a symlink, as in the container image):
/// each runs the matching subcommand with upstream's flags.
#[test]
fn upstream_program_names_run_their_subcommands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_waldur-site-agent"));
    let link = |name: &str| {
        let path = dir.path().join(name);
        std::os::unix::fs::symlink(&bin, &path).expect("symlink");
        path
    };
    let run = |path: &PathBuf, args: &[&str], env: &[(&str, &PathBuf)]| {
        let mut cmd = std::process::Command::new(path);
        cmd.args(args).env_remove("WALDUR_SITE_AGENT_LOG_LEVEL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("runs")
    };

    // waldur_site_healthz --liveness-only --max-age N: upstream's probe line in its chart
    let healthz = link("waldur_site_healthz");
    let hb = dir.path().join("heartbeat");
    let env = [("WALDUR_SITE_AGENT_HEARTBEAT_PATH", &hb)];
    let missing = run(&healthz, &["--liveness-only", "--max-age", "300"], &env);
    assert_eq!(missing.status.code(), Some(1), "{}", stdout_of(&missing));
    std::fs::write(&hb, "1700000000.0").expect("write heartbeat");
    let fresh = run(&healthz, &["--liveness-only", "--max-age", "300"], &env);
    assert!(fresh.status.success(), "{}", stdout_of(&fresh));
    assert!(stdout_of(&fresh).starts_with("live:"));

    // waldur_site_agent -m MODE -c FILE with a subcommand-free line is the agent itself
    let agent_name = link("waldur_site_agent");
    let help = run(&agent_name, &["--help"], &[]);
    assert!(help.status.success());
    assert!(stdout_of(&help).contains("order_process"));

    // the config-reading helpers take -m and -c, and report a missing file like the agent
    let missing_cfg = dir.path().join("absent.yaml");
    let missing_cfg = missing_cfg.to_str().expect("utf-8 path");
    for name in [
        "waldur_site_diagnostics",
        "waldur_site_load_components",
        "waldur_sync_offering_users",
    ] {
        let out = run(
            &link(name),
            &["-m", "order_process", "-c", missing_cfg],
            &[],
        );
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr_of(&out));
        let text = format!("{}{}", stdout_of(&out), stderr_of(&out));
        assert!(text.contains("absent.yaml"), "{name}: {text}");
    }
    // and reject a flag upstream does not have
    let out = run(&link("waldur_site_healthz2"), &["--help"], &[]);
    assert!(out.status.success(), "an unknown name is the agent");
    let out = run(&healthz, &["--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
}
