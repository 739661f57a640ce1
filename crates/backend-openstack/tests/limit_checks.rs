//! Limits are checked, never saturated (issue #21): an amount Keystone cannot hold is refused
//! before any Keystone call, and no project is created for it.

use agent_config::{AccountingType, BackendComponent};
use backend_api::{BackendError, CreateRequest, OrderBackend, ResourceView, UserContext};
use backend_openstack::{OpenStackBackend, OpenStackSettings};
use indexmap::IndexMap;
use serde_json::{Value, json};
use wiremock::MockServer;

fn component(factor: f64) -> BackendComponent {
    BackendComponent {
        measured_unit: "GB".into(),
        unit_factor: factor,
        unit_factor_reporting: None,
        accounting_type: AccountingType::Limit,
        label: "x".into(),
        limit: None,
        extra: Default::default(),
    }
}

/// A backend pointed at a mock Keystone that answers nothing (every request would be recorded).
async fn backend() -> (OpenStackBackend, MockServer) {
    let server = MockServer::start().await;
    let Value::Object(map) = json!({
        "auth_url": format!("{}/v3", server.uri()), "username": "admin", "password": "pw-mock",
        "project_name": "admin", "retry_base_delay_ms": 10, "max_retries": 0,
        "timeout_seconds": 5,
        "limits_mapping": {"cores": {"service": "compute", "resource_name": "cores"},
                           "ram": {"service": "compute", "resource_name": "ram"}},
    }) else {
        unreachable!("object literal")
    };
    let settings = OpenStackSettings::from_backend_settings("mock", &map).expect("settings");
    let mut components = IndexMap::new();
    components.insert("cores".to_owned(), component(1.0));
    components.insert("ram".to_owned(), component(1024.0));
    components.insert("storage".to_owned(), component(1.0));
    let backend = OpenStackBackend::new("mock", settings, components).expect("backend");
    (backend, server)
}

async fn requests(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .expect("recording on")
        .len()
}

fn hostile() -> Vec<f64> {
    let huge: f64 = serde_json::from_str("99999999999999999999").expect("json number");
    vec![
        1e30,
        huge,
        f64::NAN,
        f64::INFINITY,
        -1.0,
        2_147_483_648.0,
        0.5,
    ]
}

#[tokio::test]
async fn unrepresentable_limits_are_refused_without_calling_keystone() {
    let (backend, server) = backend().await;
    let resource = ResourceView {
        uuid: "r1".into(),
        backend_id: "os_r1".into(),
        ..Default::default()
    };
    for bad in hostile() {
        let limits = [("cores".to_owned(), bad), ("ram".to_owned(), 2.0)].into();
        match backend.check_limits(&resource, &limits) {
            Err(BackendError::Limit(e)) => {
                assert_eq!(e.component, "cores");
                assert!(e.max <= 2_147_483_647.0, "{e}");
            }
            other => panic!("cores={bad}: expected a limit error, got {other:?}"),
        }
        let err = backend
            .set_limits(&resource, &limits)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, BackendError::Limit(_)),
            "cores={bad}: {err:?}"
        );
        let request = CreateRequest {
            resource: ResourceView {
                limits,
                ..resource.clone()
            },
            backend_id: "os_r1".into(),
            context: UserContext::default(),
        };
        let err = backend.create_resource(request).await.expect_err("refused");
        assert!(
            matches!(err, BackendError::Limit(_)),
            "cores={bad}: {err:?}"
        );
    }
    // An unmapped component is not sent to Keystone but is still checked.
    let err = backend
        .check_limits(&resource, &[("storage".to_owned(), f64::NAN)].into())
        .expect_err("NaN");
    assert!(err.to_string().contains("storage=NaN"), "{err}");
    assert_eq!(requests(&server).await, 0, "no Keystone call at all");
}

#[tokio::test]
async fn fractions_that_make_whole_megabytes_are_accepted() {
    let (backend, server) = backend().await;
    let resource = ResourceView::default();
    // 0.5 GB × 1024 = 512 MB: exact.
    backend
        .check_limits(
            &resource,
            &[("ram".to_owned(), 0.5), ("cores".to_owned(), 4.0)].into(),
        )
        .expect("representable");
    // 0.0001 GB = 0.1024 MB is not.
    let err = backend
        .check_limits(&resource, &[("ram".to_owned(), 0.0001)].into())
        .expect_err("not whole");
    assert!(err.to_string().contains("ram=0.0001"), "{err}");
    assert_eq!(requests(&server).await, 0);
}
