//! `validate-config` looks inside `backend_settings` with each backend's own rules, offline:
//! the four configurations of issue #12 that used to print OK and fail only at run time.

use assert_cmd::Command;

fn offering(backend: &str, roles: &str, settings: &str) -> String {
    format!(
        "offerings:
  - name: o
    waldur_api_url: http://127.0.0.1:9/api/
    waldur_api_token: tok
    waldur_offering_uuid: 0123456789abcdef0123456789abcdef
    backend_type: {backend}
{roles}
    backend_settings:
{settings}
    backend_components:
      cpu: {{measured_unit: k-Hours, unit_factor: 60000, accounting_type: limit, label: CPU}}
"
    )
}

/// (exit success, stdout, stderr) of `validate-config` on `yaml`.
fn validate(yaml: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let out = Command::cargo_bin("waldur-site-agent")
        .expect("binary")
        .args(["validate-config", "-c"])
        .arg(&path)
        .output()
        .expect("runs");
    let shown = |b: &[u8]| String::from_utf8_lossy(b).replace(&path.display().to_string(), "FILE");
    (out.status.success(), shown(&out.stdout), shown(&out.stderr))
}

const SLURM_ROLES: &str = "    order_processing_backend: slurm\n    reporting_backend: slurm";

#[test]
fn a_typo_in_a_setting_is_a_warning_naming_the_key_path() {
    let (ok, stdout, stderr) = validate(&offering(
        "slurm",
        SLURM_ROLES,
        "      default_account: root\n      qos_pasued: x",
    ));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("1 warning(s)"), "{stdout}");
    assert!(
        stderr.contains(
            "warning: FILE: offerings[0].backend_settings.qos_pasued: unknown key (did you mean 'qos_paused'?)"
        ),
        "{stderr}"
    );
}

#[test]
fn a_hostile_prefix_is_an_error() {
    let (ok, _, stderr) = validate(&offering(
        "slurm",
        SLURM_ROLES,
        "      default_account: root\n      allocation_prefix: \"a b\"",
    ));
    assert!(!ok);
    assert!(
        stderr.contains(
            "FILE: offerings[0].backend_settings.allocation_prefix: 'a b' is not a usable prefix"
        ),
        "{stderr}"
    );
}

#[test]
fn execution_mode_rest_is_an_error() {
    let (ok, _, stderr) = validate(&offering(
        "slurm",
        SLURM_ROLES,
        "      default_account: root\n      execution_mode: rest",
    ));
    assert!(!ok);
    assert!(
        stderr.contains(
            "FILE: offerings[0].backend_settings.execution_mode: 'rest' is not supported"
        ),
        "{stderr}"
    );
}

#[test]
fn a_role_the_backend_lacks_is_an_error() {
    let (ok, _, stderr) = validate(&offering(
        "openstack",
        "    order_processing_backend: openstack\n    reporting_backend: openstack",
        "      auth_url: http://127.0.0.1:9/v3\n      username: admin\n      password: pw\n      project_name: admin",
    ));
    assert!(!ok);
    assert!(
        stderr.contains(
            "FILE: offerings[0].reporting_backend: backend 'openstack' does not support usage reporting"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("pw\n"), "no secret in the output");
}

#[test]
fn wrong_value_types_and_component_names_are_errors_at_their_path() {
    let yaml = offering(
        "slurm",
        SLURM_ROLES,
        "      default_account: root\n      batch_load: \"yes please\"\n      default_account_policy: weird",
    );
    let (ok, _, stderr) = validate(&yaml);
    assert!(!ok);
    assert!(
        stderr.contains(
            "FILE: offerings[0].backend_settings.batch_load: expected bool, found a string"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("FILE: offerings[0].backend_settings.default_account_policy: 'weird' is not one of common, individual, none"),
        "{stderr}"
    );
    let yaml = offering("slurm", SLURM_ROLES, "      default_account: root")
        .replace("      cpu: {", "      \"cpu,x\": {");
    let (ok, _, stderr) = validate(&yaml);
    assert!(!ok);
    assert!(
        stderr.contains("FILE: offerings[0].backend_components.cpu,x:"),
        "{stderr}"
    );
}
