//! order_process scenarios (agent-behaviour §8, §9) against a stateful fake Mastermind and the
//! in-memory backend.

mod common;

use backend_api::testkit::{Fault, MemoryResource};
use common::*;
use serde_json::json;

#[tokio::test]
async fn create_orders_are_approved_created_and_done_within_six_requests_each() {
    let h = harness().await;
    for n in 1..=3u32 {
        h.waldur.add_order(n, "Create", "pending-provider", 100 + n);
        h.waldur
            .add_resource(100 + n, &format!("alloc{n}"), "", "Creating");
        h.waldur
            .add_member(100 + n, 200, "alice", Some("alice"), "OK");
    }
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.processed, 3, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    for n in 1..=3u32 {
        assert_eq!(h.waldur.order_state(n), "done");
        assert_eq!(
            h.waldur.resource(100 + n)["backend_id"],
            json!(format!("alloc{n}"))
        );
        let site = h
            .backend
            .resource(&format!("alloc{n}"))
            .expect("created on site");
        assert!(
            site.users.contains("alice"),
            "team member added after create"
        );
        // Requests that concern this order or its resource.
        let own = h
            .waldur
            .log()
            .iter()
            .filter(|l| l.contains(&uuid(n)) || l.contains(&uuid(100 + n)))
            .count();
        println!("order {n}: {own} requests of its own");
        assert!(
            own <= 6,
            "order {n} used {own} requests: {:#?}",
            h.waldur.log()
        );
    }
    // One batched create call for the whole cycle.
    assert_eq!(h.backend.count_calls("create"), 3);
    println!(
        "total requests for 3 create orders: {}",
        h.waldur.log().len()
    );
}

#[tokio::test]
async fn transient_waldur_error_during_approval_leaves_the_order_pending() {
    let h = harness().await;
    h.waldur.add_order(1, "Create", "pending-provider", 101);
    h.waldur.add_resource(101, "alloc1", "", "Creating");
    h.waldur.fail("POST approve_by_provider", &[503]);
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 1);
    assert_eq!(h.waldur.order_state(1), "pending-provider");
    assert_eq!(h.waldur.count("set_state_erred"), 0);
    // Next cycle succeeds.
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.order_state(1), "done");
}

#[tokio::test]
async fn permanent_error_before_provisioning_never_errs_the_order() {
    let h = harness().await;
    h.waldur.add_order(1, "Create", "pending-provider", 101);
    h.waldur.add_resource(101, "alloc1", "", "Creating");
    h.waldur.fail("POST approve_by_provider", &[400]);
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 1);
    assert_eq!(h.waldur.order_state(1), "pending-provider");
    assert_eq!(h.waldur.count("set_state_erred"), 0);
}

#[tokio::test]
async fn permanent_backend_error_after_provisioning_errs_the_order_with_a_message() {
    let h = harness().await;
    h.waldur.add_order(1, "Create", "executing", 101);
    h.waldur.add_resource(101, "alloc1", "", "Creating");
    h.backend.fail_next("create", Fault::Permanent, 1);
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 1);
    assert_eq!(h.waldur.order_state(1), "erred");
    let msg = h.waldur.lock().orders[&uuid(1)]["error_message"].clone();
    assert!(
        msg.as_str()
            .unwrap_or_default()
            .contains("injected permanent failure"),
        "{msg}"
    );
}

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
async fn transient_backend_error_keeps_the_order_executing() {
    let h = harness().await;
    h.waldur.add_order(1, "Create", "executing", 101);
    h.waldur.add_resource(101, "alloc1", "", "Creating");
    h.backend.fail_next("create", Fault::Transient, 1);
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 1);
    assert_eq!(h.waldur.order_state(1), "executing");
    assert_eq!(h.waldur.count("set_state_erred"), 0);
    agent_core::order_process(&h.ctx).await;
    assert_eq!(h.waldur.order_state(1), "done");
}

#[tokio::test]
async fn set_state_done_only_when_the_reread_order_is_still_executing() {
    let h = harness().await;
    h.waldur.add_order(1, "Create", "executing", 101);
    h.waldur.lock().orders.get_mut(&uuid(1)).expect("order")["reread_state"] = json!("canceled");
    h.waldur.add_resource(101, "alloc1", "", "Creating");
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.count("set_state_done"), 0);
    assert!(h.waldur.count("field=uuid&field=state") >= 1);
}

#[tokio::test]
async fn create_is_idempotent_when_the_site_already_has_the_resource() {
    let h = harness().await;
    h.waldur.add_order(1, "Create", "executing", 101);
    h.waldur.add_resource(101, "alloc1", "alloc1", "Creating");
    h.backend
        .insert_resource("alloc1", MemoryResource::default());
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.order_state(1), "done");
    assert_eq!(h.backend.count_calls("create"), 0);
}

#[tokio::test]
async fn known_backend_id_missing_on_the_site_is_recreated_with_the_same_id() {
    let h = harness().await;
    h.waldur.add_order(1, "Restore", "executing", 101);
    h.waldur
        .add_resource(101, "other-slug", "keepme", "Creating");
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(h.backend.resource("keepme").is_some());
    assert_eq!(
        h.waldur.count("set_backend_id"),
        0,
        "id unchanged, nothing to set"
    );
    assert_eq!(h.waldur.order_state(1), "done");
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
async fn terminate_and_update_orders_reach_the_site() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.waldur.add_resource(102, "a2", "a2", "OK");
    h.backend.insert_resource("a1", MemoryResource::default());
    h.backend.insert_resource("a2", MemoryResource::default());
    h.waldur.add_order(1, "Terminate", "executing", 101);
    h.waldur.add_order(2, "Update", "executing", 102);
    h.waldur.lock().orders.get_mut(&uuid(2)).expect("o")["limits"] = json!({"cpu": 42});
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(h.backend.resource("a1").is_none());
    assert_eq!(
        h.backend.resource("a2").expect("a2").limits.get("cpu"),
        Some(&42)
    );
    assert_eq!(h.waldur.order_state(1), "done");
    assert_eq!(h.waldur.order_state(2), "done");
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
async fn event_for_a_done_order_makes_no_changes() {
    let h = harness().await;
    h.waldur.add_order(1, "Create", "done", 101);
    let report = agent_core::process_order_by_uuid(&h.ctx, &uuid(1)).await;
    assert_eq!(report.failed, 0);
    assert_eq!(
        h.waldur
            .log()
            .iter()
            .filter(|l| l.starts_with("POST"))
            .count(),
        0
    );
    assert_eq!(h.waldur.log().len(), 1);
}

#[tokio::test]
async fn listing_asks_only_for_actionable_states() {
    let h = harness().await;
    h.waldur.add_order(1, "Create", "erred", 101);
    agent_core::order_process(&h.ctx).await;
    let first = h.waldur.log()[0].clone();
    assert!(
        first.contains("state=pending-provider&state=executing"),
        "{first}"
    );
    assert_eq!(h.waldur.log().len(), 1);
}

#[tokio::test]
async fn old_mastermind_without_identity_endpoints_is_not_an_error() {
    let h = harness().await;
    let outcome = agent_core::register_agent(
        &h.ctx,
        "order_process",
        "OrderProcessor",
        jiff::Timestamp::now(),
    )
    .await;
    assert_eq!(outcome, agent_core::RegistrationOutcome::Unsupported);
}

#[tokio::test]
async fn restore_of_a_soft_deleted_resource_gives_its_limits_back() {
    let h = harness().await;
    h.waldur.add_order(1, "Restore", "executing", 101);
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.backend.insert_resource(
        "a1",
        MemoryResource {
            limits: [("cpu".to_owned(), 0)].into(),
            ..MemoryResource::default()
        },
    );
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.order_state(1), "done");
    assert_eq!(
        h.backend.resource("a1").expect("a1").limits.get("cpu"),
        Some(&10)
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
async fn event_orders_retry_transient_failures() {
    let mut h = harness().await;
    h.ctx.settings.order_retry_delay = std::time::Duration::from_millis(1);
    h.ctx.settings.order_retry_attempts = 3;
    h.waldur.add_order(1, "Create", "pending-provider", 101);
    h.waldur.add_resource(101, "alloc1", "", "Creating");
    h.waldur.fail("POST approve_by_provider", &[503]);
    h.backend.fail_next("create", Fault::Transient, 1);
    let report = agent_core::process_order_by_uuid(&h.ctx, &uuid(1)).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.order_state(1), "done");
    assert_eq!(h.waldur.count("set_state_erred"), 0);
}

#[tokio::test]
async fn event_orders_give_up_after_the_configured_attempts() {
    let mut h = harness().await;
    h.ctx.settings.order_retry_delay = std::time::Duration::from_millis(1);
    h.ctx.settings.order_retry_attempts = 2;
    h.waldur.add_order(1, "Create", "executing", 101);
    h.waldur.add_resource(101, "alloc1", "", "Creating");
    h.backend.fail_next("create", Fault::Transient, 5);
    let report = agent_core::process_order_by_uuid(&h.ctx, &uuid(1)).await;
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(h.backend.count_calls("create"), 2);
    assert_eq!(h.waldur.order_state(1), "executing", "left for the sweep");
}

#[tokio::test]
async fn created_resources_get_the_project_service_accounts() {
    let h = harness().await;
    h.waldur.add_order(1, "Create", "executing", 101);
    h.waldur.add_resource(101, "alloc1", "", "Creating");
    h.waldur.add_account(false, "svc-bot", "OK");
    h.waldur.add_account(false, "svc-gone", "Closed");
    let report = agent_core::order_process(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let users = h.backend.resource("alloc1").expect("created").users;
    assert!(users.contains("svc-bot"), "{users:?}");
    assert!(!users.contains("svc-gone"), "{users:?}");
}
