//! Event-mode reconciliation sweeps (agent-behaviour §3.4.5) and the forced
//! `offering_resources_sync`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use backend_api::testkit::{Fault, MemoryResource};
use common::*;
use serde_json::json;

#[tokio::test]
async fn stuck_orders_are_listed_with_modified_before_and_processed() {
    let h = harness().await;
    h.waldur.add_order(1, "Create", "executing", 101);
    h.waldur.add_resource(101, "alloc1", "", "Creating");
    let report = agent_core::sweeps::stuck_orders(&h.ctx, Duration::from_secs(1800)).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.processed, 1);
    assert_eq!(h.waldur.order_state(1), "done");
    let listing = h.waldur.log()[0].clone();
    assert!(listing.contains("modified_before="), "{listing}");
    assert!(
        listing.contains("state=pending-provider&state=executing"),
        "{listing}"
    );
}

#[tokio::test]
async fn stuck_orders_need_an_order_backend() {
    let mut h = harness().await;
    h.ctx.backends.orders = None;
    h.waldur.add_order(1, "Create", "executing", 101);
    let report = agent_core::sweeps::stuck_orders(&h.ctx, Duration::from_secs(60)).await;
    assert_eq!(report.processed + report.failed, 0);
    assert!(h.waldur.log().is_empty());
}

#[tokio::test]
async fn stuck_offering_users_get_their_usernames() {
    let mut h = harness().await;
    h.ctx.backends.usernames = Arc::new(h.backend.clone());
    h.waldur.lock().offering["plugin_options"] = json!({
        "username_generation_policy": "service_provider",
        "service_provider_can_create_offering_user": true
    });
    h.waldur.add_member(101, 300, "frank", None, "Creating");
    h.waldur
        .add_member(101, 301, "gina", None, "Error creating");
    h.backend
        .fail_next("generate_username", Fault::Transient, 1);
    let report = agent_core::sweeps::stuck_offering_users(&h.ctx).await;
    // frank: transient backend failure → left for the next sweep; gina: begin_creating + username.
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(report.processed, 1, "{report:?}");
    let users = h.waldur.lock().offering_users.clone();
    assert_eq!(users[0]["state"], "Creating");
    assert_eq!(users[1]["state"], "OK");
    assert_eq!(users[1]["username"], "gina");
    let listing = h
        .waldur
        .log()
        .into_iter()
        .find(|l| l.starts_with("GET /api/marketplace-offering-users/"))
        .expect("listed");
    for state in ["state=Requested", "state=Creating", "state=Error+creating"] {
        assert!(listing.contains(state), "{listing}");
    }
    // The next sweep picks frank up.
    let report = agent_core::sweeps::stuck_offering_users(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.lock().offering_users[0]["username"], "frank");
}

#[tokio::test]
async fn stuck_order_sweep_applies_what_a_lost_event_left() {
    let h = harness().await;
    h.waldur.add_order(1, "Terminate", "executing", 101);
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.backend.insert_resource("a1", MemoryResource::default());
    let report = agent_core::sweeps::stuck_orders(&h.ctx, std::time::Duration::ZERO).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.order_state(1), "done");
    assert!(h.backend.resource("a1").is_none());
}

#[tokio::test]
async fn forced_sync_recreates_lost_resources_then_syncs_members_then_orders() {
    let h = harness().await;
    // Lost on the site, known to Waldur.
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.waldur.add_member(101, 200, "alice", Some("alice"), "OK");
    // Still there.
    h.waldur.add_resource(102, "a2", "a2", "OK");
    h.backend.insert_resource("a2", MemoryResource::default());
    // An order waiting.
    h.waldur.add_resource(103, "a3", "", "Creating");
    h.waldur.add_order(1, "Create", "executing", 103);
    let report = agent_core::process_offering_resources_sync(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let a1 = h
        .backend
        .resource("a1")
        .expect("recreated with the same id");
    assert!(
        a1.users.contains("alice"),
        "membership sync ran after recreation"
    );
    assert_eq!(a1.limits.get("cpu"), Some(&10.0), "Waldur limits reapplied");
    assert_eq!(
        h.backend.count_calls("create"),
        2,
        "a1 recreated, a3 created"
    );
    assert_eq!(h.waldur.order_state(1), "done");
    assert_eq!(h.waldur.resource(101)["state"], "OK");
}

#[tokio::test]
async fn forced_sync_sets_a_resource_erred_when_it_cannot_be_recreated() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.backend.fail_next("create", Fault::Permanent, 1);
    let report = agent_core::process_offering_resources_sync(&h.ctx).await;
    assert!(report.failed >= 1, "{report:?}");
    assert_eq!(h.waldur.resource(101)["state"], "Erred");
}

#[tokio::test]
async fn forced_sync_recreates_nothing_when_the_site_cannot_be_read() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.backend.fail_next("pull", Fault::Transient, 2);
    let report = agent_core::process_offering_resources_sync(&h.ctx).await;
    assert!(report.failed >= 1, "{report:?}");
    assert_eq!(h.backend.count_calls("create"), 0);
    assert_eq!(h.waldur.resource(101)["state"], "OK");
}
