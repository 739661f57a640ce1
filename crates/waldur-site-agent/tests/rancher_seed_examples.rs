//! Every Rancher example of the upstream README (seed `003_*`, copied unchanged to
//! `examples/rancher/`) loads in `validate-config`: the complete file, the "Rancher only" and
//! "with Keycloak" configurations in the legacy `waldur:` / `backend:` / `components:` layout
//! (warnings name the legacy keys, nothing about the settings is refused), the components
//! fragment, and the GPU-pool offerings, whose backend settings are accepted (the README leaves
//! out `accounting_type` and the Waldur URL there, which the agent, like upstream's loader,
//! requires).

mod common;

fn validate(yaml: &str) -> (bool, String) {
    let out = common::validate_config(yaml, &[]);
    (out.ok, format!("{}{}", out.stdout, out.stderr))
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../examples/rancher/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("example")
}

/// Nothing about `backend_settings.<key>` or a component's mapping, and no error.
fn settings_clean(name: &str, text: &str) {
    for line in text.lines() {
        assert!(
            !line.contains("backend_settings.") && !line.contains("k8s_resource"),
            "{name}: {line}\n{text}"
        );
    }
}

#[test]
fn complete_and_legacy_examples_validate() {
    for name in [
        "rancher-offering-config.yaml",
        "basic.yaml",
        "full-keycloak.yaml",
    ] {
        let (ok, text) = validate(&example(name));
        assert!(ok, "{name}: {text}");
        assert!(!text.contains("error"), "{name}: {text}");
        settings_clean(name, &text);
    }
}

#[test]
fn the_components_fragment_validates_inside_an_offering() {
    let mut yaml = String::from(
        "offerings:
  - name: rancher
    waldur_api_url: http://127.0.0.1:9/api/
    waldur_api_token: tok
    waldur_offering_uuid: 0123456789abcdef0123456789abcdef
    backend_type: rancher
    backend_settings:
      backend_url: https://rancher.example.com
      username: token-abcde
      password: secret
      cluster_id: c-m-1234abcd
",
    );
    for line in example("components.yaml").lines() {
        yaml.push_str("    ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    let (ok, text) = validate(&yaml);
    assert!(ok, "{text}");
    settings_clean("components.yaml", &text);
}

#[test]
fn gpu_pool_offerings_have_accepted_backend_settings() {
    let (ok, text) = validate(&example("gpu-pools.yaml"));
    assert!(!ok, "the README leaves out required keys: {text}");
    settings_clean("gpu-pools.yaml", &text);
    for line in text.lines().filter(|l| !l.starts_with("warning")) {
        assert!(
            line.contains("waldur_api_url") || line.contains("accounting_type"),
            "only the keys the README leaves out may be missing: {line}"
        );
    }
}

#[test]
fn the_docs_page_example_validates() {
    let out = common::validate_config(
        &common::docs_yaml_example("backends/rancher.md"),
        &[
            ("WALDUR_API_TOKEN", "t"),
            ("RANCHER_SECRET_KEY", "s"),
            ("KEYCLOAK_PASSWORD", "p"),
        ],
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(out.ok, "{text}");
    assert!(!text.contains("warning:"), "{text}");
}
