//! `docs/backends/opennebula.md`'s settings table is generated from
//! [`backend_opennebula::SPEC`]; this test fails when they disagree
//! (`UPDATE_DOCS=1 cargo test -p backend-opennebula --test settings_docs` rewrites the table).

use backend_api::spec::documented_table;

#[test]
fn settings_table_matches_the_declared_settings() {
    let page_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/backends/opennebula.md"
    );
    let page = std::fs::read_to_string(page_path).expect("docs page");
    let want = backend_opennebula::SPEC.settings_table();
    let have = documented_table(&page).expect("settings-table markers in the page");
    if have != want && std::env::var("UPDATE_DOCS").is_ok_and(|v| v == "1") {
        let block = |table: &str| {
            format!("<!-- settings-table:begin -->\n{table}<!-- settings-table:end -->")
        };
        let page = page.replacen(&block(have), &block(&want), 1);
        std::fs::write(page_path, page).expect("rewrite page");
        return;
    }
    assert_eq!(
        have, want,
        "docs/backends/opennebula.md settings table is stale"
    );
}
