//! Regression scenarios against the simulator: each once exposed a processor bug, and each test
//! states the behaviour that fixed it.

mod sim_common;

use agent_core::events::{HandlerOutcome, handle_event};
use agent_core::{membership_sync, order_process};
use backend_api::testkit::Fault;
use sim_common::*;

/// A transient failure after the site created the account (Waldur 503 on `set_backend_id`)
/// must not make the next cycle create a second site account under another name: the order
/// should complete with the account that exists.
#[tokio::test]
async fn transient_failure_after_site_create_does_not_leak_a_second_account() {
    let w = world().await;
    let order = w.create_order("alloc-leak", 3).await;
    w.sim.set_faults(failing(SET_BACKEND_ID, None, 503));
    let first = order_process(&w.ctx).await;
    assert!(first.transient_only(), "{:?}", first.errors);
    assert_eq!(w.order_state(&order).await, "executing");
    w.clear_faults();
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&order).await, "done");
    assert_eq!(
        w.site.resource_ids(),
        vec!["demo-project"],
        "one site account per order"
    );
}

/// A user_role event whose site call fails transiently must be reported as transient, so the
/// transport does not acknowledge it (redelivery instead of waiting for the hourly sweep).
#[tokio::test]
async fn transient_failure_in_a_membership_event_is_redelivered() {
    let w = world().await;
    let (_, backend_id) = w.provisioned("alloc-role-flaky", 2).await;
    w.add_member("bob").await;
    let bob = w.user_uuid("bob");
    let granted = w
        .event_payloads("user_role")
        .into_iter()
        .rev()
        .find(|p| p["user_uuid"] == bob.as_str() && p["granted"] == true)
        .expect("user_role event");
    w.site.fail_next("add_users", Fault::Transient, 1);
    let outcome = handle_event(&w.ctx, Some("user_role"), &granted).await;
    assert!(
        matches!(outcome, HandlerOutcome::TransientFailure(_)),
        "{outcome:?}"
    );
    assert!(!w.site_users(&backend_id).contains(&"bob".to_owned()));
}

/// Per-user limits set in Waldur (`component-user-usage-limits`) reach the site user. Waldur's
/// `user` field is the user's hyperlink (`username` carries the name); the site user is the
/// offering user's username.
#[tokio::test]
async fn per_user_limits_from_waldur_reach_the_site_user() {
    let w = world().await;
    let (resource, backend_id) = w.provisioned("alloc-user-limits", 3).await;
    w.add_member("alice").await;
    let alice = uuid(&w.user_uuid("alice"));
    let rid = uuid(&resource);
    w.sim
        .mutate(|s| {
            let limit = waldur_sim::model::UserUsageLimit {
                uuid: uuid::Uuid::new_v4(),
                resource: rid,
                component_type: "cpu".into(),
                user: alice,
                limit: "10".into(),
            };
            s.user_usage_limits.insert(limit.uuid, limit);
            Ok(())
        })
        .expect("user limit");
    assert_clean(&membership_sync(&w.ctx).await);
    let site = w.site.resource(&backend_id).expect("site");
    assert_eq!(
        site.user_limits.get("alice").and_then(|l| l.get("cpu")),
        Some(&10.0),
        "{:?}",
        site.user_limits
    );
}
