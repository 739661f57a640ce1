//! Both OpenNebula examples of the upstream README (seed `004_*`, copied unchanged to
//! `examples/opennebula/`) load in `validate-config` without an error or a warning about their
//! settings. Only the Waldur connection keys every offering needs are added, after the
//! offering's `name`.

mod common;

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
        let common::Validated { ok, stdout, stderr } =
            common::validate_config(&with_waldur_keys(&example), &[]);
        assert!(ok, "{name}: {stdout}\n{stderr}");
        assert!(
            !stderr.contains("backend_settings") && !stderr.contains("error"),
            "{name}: {stdout}\n{stderr}"
        );
    }
}

#[test]
fn the_docs_page_example_validates() {
    let out = common::validate_config(
        &common::docs_yaml_example("backends/opennebula.md"),
        &[
            ("WALDUR_API_TOKEN", "t"),
            ("OPENNEBULA_CREDENTIALS", "oneadmin:pw"),
        ],
    );
    assert!(out.ok, "{}", out.stderr);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}
