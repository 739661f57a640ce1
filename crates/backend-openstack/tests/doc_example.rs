//! The configuration example in `docs/backends/openstack.md` must load and build as written.

use agent_config::AgentConfig;
use backend_api::BuildContext;

const DOC: &str = include_str!("../../../docs/backends/openstack.md");

fn first_yaml_block(doc: &str) -> &str {
    let start = doc.find("```yaml\n").expect("doc has a yaml block") + "```yaml\n".len();
    let len = doc[start..].find("```").expect("yaml block is closed");
    &doc[start..start + len]
}

#[test]
fn documented_example_loads_and_builds() {
    // The loader expands ${VAR}; stand in for it with fixed values.
    let yaml = first_yaml_block(DOC)
        .replace("${WALDUR_API_TOKEN}", "token-value")
        .replace("${OPENSTACK_PASSWORD}", "doc-password");
    let config: AgentConfig = serde_saphyr::from_str(&yaml).expect("example deserializes");
    let offering = &config.offerings[0];
    assert_eq!(offering.backend_type, "openstack");
    assert_eq!(offering.backend_components["ram"].unit_factor, 1024.0);
    let handles = backend_openstack::build(&BuildContext::new(offering)).expect("builds");
    assert_eq!(handles.kind, "openstack");
    let settings = backend_openstack::OpenStackSettings::from_backend_settings(
        &offering.name,
        &offering.backend_settings,
    )
    .expect("settings");
    assert_eq!(settings.default_role, "member");
    assert_eq!(settings.limits_mapping["ram"].resource_name, "ram");
    assert!(!format!("{settings:?}").contains("doc-password"));
}
