//! The conformance suite against a stateful Keystone double, in plain `cargo test` (no real
//! Keystone needed; `real_keystone.rs` runs the same checks against the real one).

mod keystone_double;

use std::collections::BTreeMap;

use agent_config::{AccountingType, BackendComponent};
use backend_api::testkit::conformance::{self, BatchFixture, Fixture};
use backend_api::{ResourceView, UserGrant};
use backend_openstack::{OpenStackBackend, OpenStackSettings};
use indexmap::IndexMap;
use keystone_double::KeystoneDouble;
use serde_json::{Value, json};

const PASSWORD: &str = "double-admin-password";

fn backend(uri: &str) -> OpenStackBackend {
    let Value::Object(map) = json!({
        "auth_url": format!("{uri}/v3"), "username": "admin", "password": PASSWORD,
        "project_name": "admin", "project_prefix": "wt-", "max_retries": 1,
        "retry_base_delay_ms": 5, "timeout_seconds": 5,
        "limits_mapping": {
            "cores": {"service": "compute", "resource_name": "cores"},
            "ram": {"service": "compute", "resource_name": "ram"}
        }
    }) else {
        unreachable!("object literal")
    };
    let settings = OpenStackSettings::from_backend_settings("double", &map).expect("settings");
    let component = |unit_factor: f64| BackendComponent {
        measured_unit: "units".into(),
        unit_factor,
        unit_factor_reporting: None,
        accounting_type: AccountingType::Limit,
        label: "c".into(),
        limit: None,
        extra: BTreeMap::new(),
    };
    let mut components = IndexMap::new();
    components.insert("cores".to_owned(), component(1.0));
    components.insert("ram".to_owned(), component(1024.0));
    OpenStackBackend::new("double", settings, components).expect("backend")
}

fn view(slug: &str) -> ResourceView {
    ResourceView {
        uuid: format!("res-{slug}"),
        name: format!("Allocation {slug}"),
        slug: format!("alloc-{slug}"),
        project_slug: "physics".into(),
        project_name: "Physics".into(),
        ..Default::default()
    }
}

fn limits(pairs: &[(&str, f64)]) -> backend_api::Limits {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn fixture(slug: &str) -> Fixture {
    Fixture {
        resource: view(slug),
        initial_limits: limits(&[("cores", 4.0), ("ram", 8.0)]),
        updated_limits: limits(&[("cores", 6.0), ("ram", 16.0)]),
        users: ["alice", "bob"]
            .iter()
            .map(|u| UserGrant {
                username: (*u).to_owned(),
                email: Some(format!("{u}@example.org")),
                ..Default::default()
            })
            .collect(),
    }
}

#[tokio::test]
async fn openstack_passes_the_conformance_suite_against_the_keystone_double() {
    let (server, double) = KeystoneDouble::start().await;
    let backend = backend(&server.uri());
    conformance::order_and_membership_lifecycle(&backend, fixture("life")).await;
    conformance::batch_partial_failure_and_order(
        &backend,
        BatchFixture {
            first: view("b1"),
            second: view("b2"),
            third: view("b3"),
            limits: limits(&[("cores", 2.0), ("ram", 4.0)]),
        },
    )
    .await;
    // 0.5 GB of RAM is 512 MB in Keystone: a fraction that reads back exactly.
    conformance::idempotent_writes_and_unit_round_trip(
        &backend,
        fixture("idem"),
        &[limits(&[("cores", 1.0), ("ram", 0.5)])],
    )
    .await;
    double.set_down(true);
    conformance::site_down_is_transient(&backend, &fixture("down"), &[PASSWORD]).await;
}
