//! order_process scenarios against the wiremock fake Mastermind (`common`), kept for what the
//! simulator cannot express: the exact `set_state_erred` payload (error detail exposure),
//! Waldur-side backend-id uniqueness answers, same-resource order sequencing within one listing,
//! Restore orders, and faults that hit only the first N requests of a route. Everything else is
//! covered against the real state machines in `sim_orders.rs` / `sim_events.rs`.

mod common;

use backend_api::testkit::{Fault, MemoryResource};
use common::*;
use serde_json::json;

#[tokio::test]
async fn exposed_error_details_include_a_traceback() {
    let h = harness().await;
    h.waldur.add_order(1, "Create", "executing", 101);
    h.waldur.add_resource(101, "alloc1", "", "Creating");
    h.backend.fail_next("create", Fault::Permanent, 1);
    agent_core::order_process(&h.ctx).await;
    let order = h.waldur.lock().orders[&uuid(1)].clone();
    assert!(
        order["error_traceback"]
            .as_str()
            .unwrap_or_default()
            .contains("Permanent"),
        "{order}"
    );
}

#[tokio::test]
async fn hidden_error_details_keep_backend_messages_and_hide_the_rest() {
    let mut h = harness().await;
    h.ctx.settings.expose_backend_error_details = false;
    // A backend error: its own message, no traceback (upstream `format_waldur_error_details`).
    h.waldur.add_order(1, "Create", "executing", 101);
    h.waldur.add_resource(101, "alloc1", "", "Creating");
    h.backend.fail_next("create", Fault::Permanent, 1);
    // A Waldur failure after provisioning started: a generic message only.
    h.waldur.add_order(2, "Create", "executing", 102);
    h.waldur.add_resource(102, "alloc2", "", "Creating");
    h.waldur.fail(
        &format!(
            "POST /api/marketplace-provider-resources/{}/set_backend_id/",
            uuid(102)
        ),
        &[400],
    );
    agent_core::order_process(&h.ctx).await;
    let first = h.waldur.lock().orders[&uuid(1)].clone();
    assert_eq!(first["state"], "erred");
    assert_eq!(
        first["error_message"],
        json!("injected permanent failure in create")
    );
    assert_eq!(first["error_traceback"], json!(""));
    let second = h.waldur.lock().orders[&uuid(2)].clone();
    assert_eq!(second["state"], "erred");
    assert_eq!(
        second["error_message"],
        json!(agent_core::context::GENERIC_ERROR_MESSAGE)
    );
    assert!(
        !second.to_string().contains("injected"),
        "Waldur's answer must not leak: {second}"
    );
}

#[tokio::test]
async fn project_slug_policy_renames_on_waldur_and_site_collisions() {
    let h = harness_with(|c| {
        c.backend_settings
            .insert("check_backend_id_uniqueness".into(), json!(true));
    })
    .await;
    h.waldur.add_order(1, "Create", "executing", 101);
    h.waldur.add_resource(101, "alloc1", "", "Creating");
    h.waldur.add_resource(102, "older", "proj", "OK");
    h.waldur.lock().resources.get_mut(&uuid(101)).expect("r")["offering_plugin_options"] =
        json!({"account_name_generation_policy": "project_slug"});
    // Taken on the site but unknown to Waldur: the site refuses it as a duplicate.
    h.backend
        .insert_resource("proj-0", MemoryResource::default());
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.resource(101)["backend_id"], json!("proj-1"));
    assert_eq!(h.waldur.order_state(1), "done");
}

#[tokio::test]
async fn orders_of_the_same_resource_run_in_sequence() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "", "Creating");
    h.waldur.add_order(1, "Create", "executing", 101);
    h.waldur.add_order(2, "Terminate", "executing", 101);
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let calls = h.backend.calls();
    let create = calls
        .iter()
        .position(|c| c.starts_with("create:"))
        .expect("create");
    let delete = calls
        .iter()
        .position(|c| c.starts_with("delete:"))
        .expect("delete");
    assert!(create < delete, "{calls:?}");
}

#[tokio::test]
async fn restore_of_a_soft_deleted_resource_gives_its_limits_back() {
    let h = harness().await;
    h.waldur.add_order(1, "Restore", "executing", 101);
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.backend.insert_resource(
        "a1",
        MemoryResource {
            limits: [("cpu".to_owned(), 0.0)].into(),
            ..MemoryResource::default()
        },
    );
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.order_state(1), "done");
    assert_eq!(
        h.backend.resource("a1").expect("a1").limits.get("cpu"),
        Some(&10.0)
    );
    assert_eq!(h.backend.count_calls("create"), 0);
}

#[tokio::test]
async fn terminate_of_a_resource_never_created_on_the_site_is_done() {
    let h = harness().await;
    h.waldur.add_order(1, "Terminate", "executing", 101);
    h.waldur.add_resource(101, "a1", "", "Erred");
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.order_state(1), "done");
    assert_eq!(h.backend.count_calls("delete"), 0);
}

#[tokio::test]
async fn event_orders_are_tried_once_and_left_for_redelivery_on_transient_failures() {
    let h = harness().await;
    h.waldur.add_order(1, "Create", "pending-provider", 101);
    h.waldur.add_resource(101, "alloc1", "", "Creating");
    h.waldur.fail("POST approve_by_provider", &[503]);
    h.backend.fail_next("create", Fault::Transient, 1);
    // No retry in place: each delivery is one attempt, and a transient failure says so.
    let report = agent_core::process_order_by_uuid(&h.ctx, &uuid(1)).await;
    assert_eq!((report.failed, report.transient), (1, 1), "{report:?}");
    assert_eq!(h.waldur.order_state(1), "pending-provider");
    let report = agent_core::process_order_by_uuid(&h.ctx, &uuid(1)).await;
    assert_eq!((report.failed, report.transient), (1, 1), "{report:?}");
    assert_eq!(h.backend.count_calls("create"), 1);
    let report = agent_core::process_order_by_uuid(&h.ctx, &uuid(1)).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.order_state(1), "done");
    assert_eq!(h.waldur.count("set_state_erred"), 0);
}
