//! Event handlers against the simulator (agent-behaviour §3.4.4, §8 `test_order_state_filtering`,
//! `test_offering_user_handler`, account messages): the payloads are the ones the simulator
//! recorded for real state changes, handed to `agent_core::events::handle_event` as the STOMP
//! or MQTT transport would.

mod sim_common;

use agent_core::events::{HandlerOutcome, handle_event};
use serde_json::{Value, json};
use sim_common::*;
use waldur_sim::resources::ResourceFlag;

impl World {
    /// The newest recorded event of `object_type` matching `pred`.
    fn last_event(&self, object_type: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.event_payloads(object_type)
            .into_iter()
            .rev()
            .find(|p| pred(p))
            .unwrap_or_else(|| panic!("no matching {object_type} event recorded"))
    }
}

#[tokio::test]
async fn order_event_is_processed_like_polling() {
    let w = world().await;
    let order = w.create_order("alloc-event", 2).await;
    let event = w.last_event("order", |p| p["order_uuid"] == order.as_str());
    assert_eq!(event["order_state"], "pending-provider");
    let outcome = handle_event(&w.ctx, Some("order"), &event).await;
    assert_eq!(outcome, HandlerOutcome::Handled);
    assert_eq!(w.order_state(&order).await, "done");
    assert_eq!(w.site.resource_ids(), vec!["demo-project"]);

    // Redelivered (or late) message for an order already done: re-read, nothing changes.
    w.sim.reset_stats();
    let outcome = handle_event(&w.ctx, Some("order"), &event).await;
    assert!(outcome.should_ack(), "{outcome:?}");
    assert_eq!(w.count("POST", SET_DONE), 0);
    assert_eq!(w.count("POST", APPROVE), 0);
    assert_eq!(w.site.count_calls("create"), 1);
}

/// Events naming a non-actionable state cost no request at all.
#[tokio::test]
async fn order_events_in_non_actionable_states_make_no_requests() {
    let w = world().await;
    let order = w.create_order("alloc-ignored", 2).await;
    w.sim.reset_stats();
    for state in [
        "done",
        "erred",
        "pending-consumer",
        "canceled",
        "rejected",
        "pending-project",
        "pending-start-date",
    ] {
        let outcome = handle_event(
            &w.ctx,
            Some("order"),
            &json!({"order_uuid": order, "order_state": state}),
        )
        .await;
        assert!(
            matches!(outcome, HandlerOutcome::Ignored(_)),
            "{state}: {outcome:?}"
        );
    }
    assert_eq!(w.sim.stats().total, 0);
    assert_eq!(w.order_state(&order).await, "pending-provider");

    // "executing" is processed (no approval needed).
    w.provider
        .post(
            &format!("marketplace-orders/{order}/set_state_executing/"),
            json!({}),
        )
        .await
        .expect("executing");
    let outcome = handle_event(
        &w.ctx,
        Some("order"),
        &json!({"order_uuid": order, "order_state": "executing"}),
    )
    .await;
    assert_eq!(outcome, HandlerOutcome::Handled);
    assert_eq!(w.order_state(&order).await, "done");
    assert_eq!(w.count("POST", APPROVE), 0);
}

/// A Waldur outage during an event-driven order: tried once, reported as transient so the
/// broker redelivers it; the order is never erred. Redelivery completes it.
#[tokio::test]
async fn order_event_during_an_outage_is_redelivered_not_erred() {
    let w = world().await;
    let order = w.create_order("alloc-outage", 2).await;
    w.sim.set_faults(failing(APPROVE, None, 503));
    let event = json!({"order_uuid": order, "order_state": "pending-provider"});
    let outcome = handle_event(&w.ctx, Some("order"), &event).await;
    assert!(
        matches!(outcome, HandlerOutcome::TransientFailure(_)),
        "{outcome:?}"
    );
    assert!(!outcome.should_ack(), "redelivered");
    assert_eq!(
        w.count("POST", APPROVE),
        1,
        "one attempt per delivery: no retry in place while other events wait"
    );
    assert_eq!(w.order_state(&order).await, "pending-provider");
    assert_eq!(w.count("POST", SET_ERRED), 0);

    w.clear_faults();
    assert_eq!(
        handle_event(&w.ctx, Some("order"), &event).await,
        HandlerOutcome::Handled
    );
    assert_eq!(w.order_state(&order).await, "done");
}

/// user_role granted/revoked: the user is added to / removed from the project's resources
/// without waiting for a membership cycle.
#[tokio::test]
async fn user_role_events_grant_and_revoke_access() {
    let w = world().await;
    let (_, backend_id) = w.provisioned("alloc-roles", 2).await;
    w.add_member("bob").await;
    let bob = w.user_uuid("bob");
    let granted = w.last_event("user_role", |p| {
        p["user_uuid"] == bob.as_str() && p["granted"] == true
    });
    assert_eq!(
        handle_event(&w.ctx, Some("user_role"), &granted).await,
        HandlerOutcome::Handled
    );
    assert!(w.site_users(&backend_id).contains(&"bob".to_owned()));
    assert!(
        w.site
            .calls()
            .iter()
            .any(|c| c.starts_with("add_users") && c.contains("bob")),
        "added by the event"
    );

    w.remove_member("bob").await;
    let revoked = w.last_event("user_role", |p| {
        p["user_uuid"] == bob.as_str() && p["granted"] == false
    });
    assert_eq!(
        handle_event(&w.ctx, Some("user_role"), &revoked).await,
        HandlerOutcome::Handled
    );
    assert!(!w.site_users(&backend_id).contains(&"bob".to_owned()));
}

/// A resource event (here: paused by the provider) runs the full sync of that resource.
#[tokio::test]
async fn resource_event_syncs_that_resource() {
    let w = world().await;
    let (resource, backend_id) = w.provisioned("alloc-res-event", 2).await;
    let staff = w.staff_uuid();
    let id = uuid(&resource);
    w.sim
        .mutate(|s| s.set_resource_flag(staff, id, ResourceFlag::Paused, true))
        .expect("pause");
    let event = w.last_event("resource", |p| p["resource_uuid"] == resource.as_str());
    assert_eq!(
        handle_event(&w.ctx, Some("resource"), &event).await,
        HandlerOutcome::Handled
    );
    assert!(w.site.resource(&backend_id).expect("site").paused);
}

/// `offering_user` / `username_set` (waldur_username policy: Mastermind sets the username when
/// the user joins): access to the listed resources.
#[tokio::test]
async fn username_set_event_adds_the_user_to_the_listed_resources() {
    let w = world().await;
    let (_, backend_id) = w.provisioned("alloc-username-set", 2).await;
    w.add_member("carol").await;
    let event = w.last_event("offering_user", |p| {
        p["action"] == "username_set" && p["username"] == "carol"
    });
    assert_eq!(event["resource_backend_ids"], json!([backend_id]));
    assert_eq!(
        handle_event(&w.ctx, Some("offering_user"), &event).await,
        HandlerOutcome::Handled
    );
    assert!(w.site_users(&backend_id).contains(&"carol".to_owned()));

    // Other offering_user actions need no work.
    let other = json!({"offering_user_uuid": event["offering_user_uuid"], "action": "update"});
    assert!(matches!(
        handle_event(&w.ctx, Some("offering_user"), &other).await,
        HandlerOutcome::Ignored(_)
    ));
}

/// service_account / course_account create and delete re-sync the project's resources.
#[tokio::test]
async fn account_events_add_and_remove_the_account() {
    let w = world().await;
    let (_, backend_id) = w.provisioned("alloc-account-event", 2).await;
    let project = uuid(&w.sim.demo().project_uuid);
    let account = w
        .sim
        .mutate(|s| {
            s.add_project_account(
                waldur_sim::accounts::AccountKind::Course,
                project,
                "course-ml",
                "",
                "",
                None,
            )
        })
        .expect("course account");
    let created = w.last_event("course_account", |p| p["action"] == "create");
    assert_eq!(
        handle_event(&w.ctx, Some("course_account"), &created).await,
        HandlerOutcome::Handled
    );
    assert!(w.site_users(&backend_id).contains(&"course-ml".to_owned()));

    w.sim
        .mutate(|s| s.close_project_account(&account))
        .expect("close");
    let deleted = w.last_event("course_account", |p| p["action"] == "delete");
    assert_eq!(
        handle_event(&w.ctx, Some("course_account"), &deleted).await,
        HandlerOutcome::Handled
    );
    assert!(!w.site_users(&backend_id).contains(&"course-ml".to_owned()));
}

#[tokio::test]
async fn malformed_messages_are_acknowledged_away() {
    let w = world().await;
    for (kind, payload) in [
        (None, json!([1, 2])),
        (Some("order"), json!({"order_state": "pending-provider"})),
        (Some("resource"), json!({})),
        (
            Some("user_role"),
            json!({"user_uuid": "ab", "project_uuid": "cd"}),
        ),
    ] {
        let outcome = handle_event(&w.ctx, kind, &payload).await;
        assert!(
            matches!(outcome, HandlerOutcome::PermanentFailure(_)),
            "{kind:?} {payload}: {outcome:?}"
        );
        assert!(outcome.should_ack(), "never redelivered forever");
    }
}
