//! Both OpenNebula examples of the upstream README (seed `004_*`, copied unchanged to
//! `examples/opennebula/`) load in `validate-config` without an error or a warning about their
//! settings. Only the Waldur connection keys every offering needs are added, after the
//! offering's `name`.

use assert_cmd::Command;

const EXAMPLES: &[&str] = &["vdc-config.yaml", "vm-config.yaml"];

fn with_waldur_keys(example: &str) -> String {
    let mut out = String::new();
    for line in example.lines() {
        out.push_str(line);
        out.push('\n');
        if line.trim_start().starts_with("- name:") {
            for extra in [
                "waldur_api_url: http://127.0.0.1:9/api/",
                "waldur_api_token: tok",
                "waldur_offering_uuid: 0123456789abcdef0123456789abcdef",
            ] {
                out.push_str("    ");
                out.push_str(extra);
                out.push('\n');
            }
        }
    }
    out
}

#[test]
fn every_seed_opennebula_example_validates() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/opennebula/");
    for name in EXAMPLES {
        let example = std::fs::read_to_string(format!("{root}{name}")).expect("example");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, with_waldur_keys(&example)).expect("write");
        let out = Command::cargo_bin("waldur-site-agent")
            .expect("binary")
            .args(["validate-config", "-c"])
            .arg(&path)
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stdout}\n{stderr}");
        assert!(
            !stderr.contains("backend_settings") && !stderr.contains("error"),
            "{name}: {stdout}\n{stderr}"
        );
    }
}

#[test]
fn the_docs_page_example_validates() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/backends/opennebula.md"
    ))
    .expect("docs page");
    let start = page.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let yaml = &page[start..start + page[start..].find("```").expect("end of block")];
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, yaml).expect("write");
    let out = Command::cargo_bin("waldur-site-agent")
        .expect("binary")
        .env("WALDUR_API_TOKEN", "t")
        .env("OPENNEBULA_CREDENTIALS", "oneadmin:pw")
        .args(["validate-config", "-c"])
        .arg(&path)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}
