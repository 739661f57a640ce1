//! `docs/backends/moab.md`'s settings table is generated from [`backend_moab::SPEC`]; this test
//! fails when they disagree (`UPDATE_DOCS=1 cargo test -p backend-moab --test settings_docs`
//! rewrites the table). The page's configuration example must load and build as written.

use agent_config::AgentConfig;
use backend_api::BuildContext;
use backend_api::spec::documented_table;

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/backends/moab.md");

#[test]
fn settings_table_matches_the_declared_settings() {
    let page = std::fs::read_to_string(PAGE).expect("docs page");
    let want = backend_moab::SPEC.settings_table();
    let have = documented_table(&page).expect("settings-table markers in the page");
    if have != want && std::env::var("UPDATE_DOCS").is_ok_and(|v| v == "1") {
        let block = |table: &str| {
            format!("<!-- settings-table:begin -->\n{table}<!-- settings-table:end -->")
        };
        let page = page.replacen(&block(have), &block(&want), 1);
        std::fs::write(PAGE, page).expect("rewrite page");
        return;
    }
    assert_eq!(have, want, "docs/backends/moab.md settings table is stale");
}

#[test]
fn documented_example_loads_and_builds() {
    let page = std::fs::read_to_string(PAGE).expect("docs page");
    let start = page.find("```yaml\n").expect("yaml block") + "```yaml\n".len();
    let len = page[start..].find("```").expect("closed");
    let yaml = page[start..start + len].replace("${WALDUR_API_TOKEN}", "token-value");
    let config: AgentConfig = serde_saphyr::from_str(&yaml).expect("example deserializes");
    let offering = &config.offerings[0];
    assert_eq!(offering.backend_type, "moab");
    let handles = backend_moab::build(&BuildContext::new(offering)).expect("builds");
    assert_eq!(handles.kind, "moab");
}
