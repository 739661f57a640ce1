//! Every OKD example of the upstream README (seed `001_*`, copied unchanged to `examples/okd/`)
//! loads in `validate-config` without an error or a warning about its settings, placed inside an offering.

mod common;

const EXAMPLES: &[&str] = &[
    "okd-config.yaml",
    "static-token.yaml",
    "service-account.yaml",
    "file-token.yaml",
    "oauth.yaml",
];

/// The fragment indented under an offering; `backend_type: okd` and the roles are added only
/// when the fragment does not say them.
fn offering(fragment: &str) -> String {
    let mut yaml = String::from(
        "offerings:
  - name: okd
    waldur_api_url: http://127.0.0.1:9/api/
    waldur_api_token: tok
    waldur_offering_uuid: 0123456789abcdef0123456789abcdef
    order_processing_backend: okd
    membership_sync_backend: okd
    reporting_backend: okd
",
    );
    if !fragment.contains("backend_type:") {
        yaml.push_str("    backend_type: okd\n");
    }
    for line in fragment.lines() {
        yaml.push_str("    ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

#[test]
fn every_seed_okd_example_validates() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/okd/");
    for name in EXAMPLES {
        let fragment = std::fs::read_to_string(format!("{root}{name}")).expect("example");
        let common::Validated { ok, stdout, stderr } =
            common::validate_config(&offering(&fragment), &[]);
        assert!(ok, "{name}: {stdout}\n{stderr}");
        // The README's components have no `label` (the loader warns and uses the key);
        // nothing about backend_settings may be refused or warned about.
        assert!(
            !stderr.contains("backend_settings") && !stderr.contains("error"),
            "{name}: {stdout}\n{stderr}"
        );
    }
}

#[test]
fn the_docs_page_example_validates() {
    let out = common::validate_config(
        &common::docs_yaml_example("backends/okd.md"),
        &[("WALDUR_API_TOKEN", "t")],
    );
    assert!(out.ok, "{}", out.stderr);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}
