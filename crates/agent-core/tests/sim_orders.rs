//! order_process against the simulator (agent-behaviour §3.1, §8 `test_transient_api_errors`,
//! `test_order_state_filtering`, §9 lessons 1–3): consumer orders go through Mastermind's real
//! state machine, faults are injected per route, the site is `MemoryBackend`.

mod sim_common;

use std::sync::Arc;

use agent_core::{RegistrationOutcome, order_process, register_agent};
use backend_api::testkit::{Fault, MemoryBackend, MemoryResource};
use serde_json::json;
use sim_common::*;
use waldur_sim::FaultConfig;

#[tokio::test]
async fn create_order_becomes_a_site_resource_and_is_done_once() {
    let w = world().await;
    let order = w.create_order("alloc-one", 5).await;
    assert_eq!(w.order_state(&order).await, "pending-provider");

    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&order).await, "done");
    let resource = w.resource_of(&order).await;
    let backend_id = resource["backend_id"].as_str().expect("backend_id set");
    assert_eq!(
        backend_id, "demo-project",
        "project_slug policy names the account after the project"
    );
    assert_eq!(resource["state"], "OK");
    let on_site = w.site.resource(backend_id).expect("the site has it");
    assert_eq!(
        on_site.limits.get("cpu"),
        Some(&5.0),
        "ordered limits in Waldur units"
    );

    // A second cycle finds nothing to do and creates nothing twice.
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.site.count_calls("create"), 1);
    assert_eq!(w.site.resource_ids().len(), 1);
}

#[tokio::test]
async fn create_orders_cost_at_most_six_requests_each() {
    let w = world().await;
    let mut orders = Vec::new();
    for i in 0..5 {
        orders.push(w.create_order(&format!("alloc-{i}"), 1 + i).await);
    }
    w.sim.reset_stats();
    assert_clean(&order_process(&w.ctx).await);
    let total = w.sim.stats().total;
    for o in &orders {
        assert_eq!(w.order_state(o).await, "done");
    }
    // Each order's own calls plus a handful shared by the cycle (order list, offering, ...).
    assert!(
        total <= 6 * orders.len() as u64 + 6,
        "{total} requests for {} orders",
        orders.len()
    );
    // One project, project_slug policy: ids collide on the site and get suffixes.
    let mut ids = w.site.resource_ids();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            "demo-project",
            "demo-project-0",
            "demo-project-1",
            "demo-project-2",
            "demo-project-3"
        ]
    );
}

#[tokio::test]
async fn update_and_terminate_orders_reach_the_site() {
    let w = world().await;
    let (resource, backend_id) = w.provisioned("alloc-lifecycle", 5).await;

    let update = w
        .consumer
        .update_limits(&resource, limits(&[("cpu", 9), ("mem", 4)]))
        .await
        .expect("update order");
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&update).await, "done");
    let site = w.site.resource(&backend_id).expect("still there");
    assert_eq!(site.limits.get("cpu"), Some(&9.0));
    assert_eq!(
        w.waldur_limits(&resource).get("cpu"),
        Some(&json!(9)),
        "Waldur stores the new limits once the order is done"
    );

    let terminate = w.consumer.terminate(&resource).await.expect("terminate");
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&terminate).await, "done");
    assert!(w.site.resource(&backend_id).is_none(), "site account gone");
    assert_eq!(w.waldur_resource_state(&resource), "Terminated");
}

/// 5xx, 429 and dropped connections on approval: the order stays pending-provider, is never
/// erred, the site is untouched; the next clean cycle completes it.
#[tokio::test]
async fn transient_waldur_errors_during_approval_keep_the_order_pending() {
    let faults = [
        ("503", failing(APPROVE, None, 503)),
        ("500", failing(APPROVE, None, 500)),
        ("429", failing(APPROVE, None, 429)),
        ("drop", dropping(APPROVE, None)),
    ];
    for (what, fault) in faults {
        let w = world().await;
        let order = w.create_order(&format!("alloc-{what}"), 3).await;
        w.sim.set_faults(fault);
        let cycle = order_process(&w.ctx).await;
        assert!(cycle.transient_only(), "{what}: {:?}", cycle.errors);
        assert_eq!(w.order_state(&order).await, "pending-provider", "{what}");
        assert_eq!(w.count("POST", SET_ERRED), 0, "{what}: never erred");
        assert_eq!(w.site.count_calls("create"), 0, "{what}");

        w.clear_faults();
        assert_clean(&order_process(&w.ctx).await);
        assert_eq!(w.order_state(&order).await, "done", "{what}");
        assert_eq!(w.site.resource_ids().len(), 1, "{what}");
    }
}

/// The same faults after provisioning started (reading the order state before
/// `set_state_done`, or `set_state_done` itself): the order stays executing, is not erred, and
/// the next cycle finishes it without creating a second site account.
#[tokio::test]
async fn transient_waldur_errors_during_execution_leave_the_order_executing() {
    let faults = [
        ("503 on set_state_done", failing(SET_DONE, None, 503)),
        ("429 on set_state_done", failing(SET_DONE, None, 429)),
        ("drop on order re-read", dropping(ORDER, Some("GET"))),
        (
            "502 on resource read",
            failing(
                "/api/marketplace-provider-resources/{uuid}/",
                Some("GET"),
                502,
            ),
        ),
    ];
    for (what, fault) in faults {
        let w = world().await;
        let order = w.create_order("alloc-exec", 3).await;
        w.sim.set_faults(fault);
        let cycle = order_process(&w.ctx).await;
        assert!(cycle.transient_only(), "{what}: {:?}", cycle.errors);
        assert_eq!(w.order_state(&order).await, "executing", "{what}");
        assert_eq!(w.count("POST", SET_ERRED), 0, "{what}: never erred");

        w.clear_faults();
        assert_clean(&order_process(&w.ctx).await);
        assert_eq!(w.order_state(&order).await, "done", "{what}");
        assert_eq!(w.site.resource_ids(), vec!["demo-project"], "{what}");
        assert!(w.site.count_calls("create") <= 1, "{what}: created once");
    }
}

#[tokio::test]
async fn a_4xx_during_approval_keeps_the_order_pending_and_not_erred() {
    let w = world().await;
    let order = w.create_order("alloc-400", 3).await;
    w.sim.set_faults(failing(APPROVE, None, 400));
    let cycle = order_process(&w.ctx).await;
    assert!(cycle.has_failures());
    assert!(!cycle.transient_only(), "a 400 is not transient");
    assert_eq!(w.order_state(&order).await, "pending-provider");
    assert_eq!(w.count("POST", SET_ERRED), 0);
    assert_eq!(w.site.count_calls("create"), 0);
}

#[tokio::test]
async fn a_4xx_during_execution_errs_the_order() {
    let w = world().await;
    let order = w.create_order("alloc-exec-400", 3).await;
    w.sim.set_faults(failing(SET_BACKEND_ID, None, 400));
    let cycle = order_process(&w.ctx).await;
    assert!(cycle.has_failures());
    assert_eq!(w.order_state(&order).await, "erred");
    assert!(
        !w.order_error(&order).is_empty(),
        "the reason reaches Waldur"
    );
    assert_eq!(w.count("POST", SET_ERRED), 1);
    assert_eq!(
        w.waldur_resource_state(&w.resource_uuid_of(&order).await),
        "Erred"
    );
}

#[tokio::test]
async fn transient_site_failure_leaves_the_order_for_the_next_cycle() {
    let w = world().await;
    let order = w.create_order("alloc-flaky", 3).await;
    w.site.fail_next("create", Fault::Transient, 1);
    let first = order_process(&w.ctx).await;
    assert!(first.transient_only(), "{:?}", first.errors);
    assert_eq!(w.order_state(&order).await, "executing");
    assert_eq!(w.count("POST", SET_ERRED), 0);
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&order).await, "done");
}

#[tokio::test]
async fn permanent_site_failure_errs_the_order_with_the_reason() {
    let w = world().await;
    let order = w.create_order("alloc-broken", 3).await;
    w.site.fail_next("create", Fault::Permanent, 1);
    order_process(&w.ctx).await;
    assert_eq!(w.order_state(&order).await, "erred");
    let message = w.order_error(&order);
    assert!(
        message.contains("injected permanent failure"),
        "error message says why: {message}"
    );
}

/// Text the agent writes to Waldur goes through the same scrubber as the log: a configured secret
/// that a site's error output echoes never reaches the order's error message.
#[tokio::test]
async fn secrets_are_scrubbed_from_error_messages_written_to_waldur() {
    let w = world().await;
    // Stands for a password that a site command echoed in its error output.
    w.ctx.settings.redactor.add(["permanent failure in create"]);
    let order = w.create_order("alloc-echo", 3).await;
    w.site.fail_next("create", Fault::Permanent, 1);
    order_process(&w.ctx).await;
    assert_eq!(w.order_state(&order).await, "erred");
    let message = w.order_error(&order);
    assert!(
        !message.contains("permanent failure in create") && message.contains("***"),
        "{message}"
    );
}

/// Only pending-provider and executing orders are processed; done, erred and pending-consumer
/// orders are left exactly as they are.
#[tokio::test]
async fn only_pending_provider_and_executing_orders_are_processed() {
    let w = world().await;
    let demo = w.sim.demo().clone();
    let done = w.create_order("alloc-done", 1).await;
    w.set_order_state(&done, "done");
    let erred = w.create_order("alloc-erred", 1).await;
    w.set_order_state(&erred, "erred");
    // A plain project member's order waits for the consumer side: pending-consumer.
    w.add_member("alice").await;
    let alice = demo
        .users
        .iter()
        .find(|u| u.username == "alice")
        .expect("alice");
    let member = waldur_sim::consumer::ConsumerClient::new(&demo.api_url, &alice.token);
    let waiting = member
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits(&[("cpu", 1)]),
            "alloc-waiting",
        )
        .await
        .expect("member order");
    assert_eq!(w.order_state(&waiting).await, "pending-consumer");
    // Executing through the provider API (approved elsewhere, e.g. by another agent run).
    let executing = w.create_order("alloc-executing", 4).await;
    w.provider
        .post(
            &format!("marketplace-orders/{executing}/set_state_executing/"),
            json!({}),
        )
        .await
        .expect("set executing");

    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&done).await, "done");
    assert_eq!(w.order_state(&erred).await, "erred");
    assert_eq!(w.order_state(&waiting).await, "pending-consumer");
    assert_eq!(w.order_state(&executing).await, "done");
    assert_eq!(
        w.site.count_calls("create"),
        1,
        "only the executing order reached the site: {:?}",
        w.site.calls()
    );
    assert_eq!(w.count("POST", APPROVE), 0, "nothing needed approval");
    assert_eq!(w.count("POST", SET_DONE), 1);
}

/// `set_state_done` only after re-reading the order: a consumer-side cancel while the site
/// works leaves the order canceled (Waldur is not asked to mark it done).
#[tokio::test]
async fn an_order_canceled_while_executing_is_not_marked_done() {
    let site = HookedSite::new(MemoryBackend::new());
    let w = World::start(Setup {
        orders: Some(Arc::new(site.clone())),
        site: site.inner.clone(),
        ..Setup::default()
    })
    .await;
    let order = w.create_order("alloc-cancel", 2).await;
    let sim = w.sim.clone();
    let order_id = uuid(&order);
    site.set_hook(move || {
        sim.mutate(|s| {
            if let Some(o) = s.orders.get_mut(&order_id) {
                o.state = "canceled".into();
            }
            Ok(())
        })
        .expect("cancel meanwhile");
    });
    let cycle = order_process(&w.ctx).await;
    assert!(!cycle.has_failures(), "not a failure: {:?}", cycle.errors);
    assert_eq!(w.order_state(&order).await, "canceled");
    assert_eq!(w.count("POST", SET_DONE), 0, "set_state_done not called");
    assert_eq!(w.count("POST", SET_ERRED), 0);
    assert_eq!(
        w.count("GET", ORDER),
        1,
        "the state was re-read before deciding"
    );
}

/// A resource whose backend id the site already has is done without re-creating it.
#[tokio::test]
async fn create_with_an_existing_backend_id_reuses_the_site_resource() {
    let w = world().await;
    let order = w.create_order("alloc-existing", 3).await;
    let resource = w.resource_uuid_of(&order).await;
    w.set_resource_backend_id(&resource, "acc-existing");
    w.site.insert_resource(
        "acc-existing",
        MemoryResource {
            limits: [("cpu".to_owned(), 3.0), ("mem".to_owned(), 2.0)].into(),
            ..MemoryResource::default()
        },
    );
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&order).await, "done");
    assert_eq!(w.site.count_calls("create"), 0, "{:?}", w.site.calls());
    assert_eq!(w.site.resource_ids(), vec!["acc-existing"]);
    assert_eq!(w.resource(&resource).await["backend_id"], "acc-existing");
}

/// A backend id Waldur knows but the site lacks is created again with that same id.
#[tokio::test]
async fn create_with_a_backend_id_missing_on_the_site_recreates_it_with_the_same_id() {
    let w = world().await;
    let order = w.create_order("alloc-lost", 3).await;
    let resource = w.resource_uuid_of(&order).await;
    w.set_resource_backend_id(&resource, "acc-lost");
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&order).await, "done");
    assert_eq!(
        w.site
            .calls()
            .iter()
            .filter(|c| c.starts_with("create:"))
            .cloned()
            .collect::<Vec<_>>(),
        vec!["create:acc-lost"]
    );
    assert_eq!(
        w.site
            .resource("acc-lost")
            .expect("recreated")
            .limits
            .get("cpu"),
        Some(&3.0)
    );
    assert_eq!(w.resource(&resource).await["backend_id"], "acc-lost");
}

/// A 2024 Mastermind answers 404 to the agent-identity endpoints: registration reports
/// "unsupported" and orders are processed as usual.
#[tokio::test]
async fn old_mastermind_without_identity_endpoints_is_not_an_error() {
    let w = world().await;
    let old: FaultConfig = serde_json::from_value(json!({
        "seed": 1,
        "rules": [
            {"route": "/api/marketplace-site-agent-identities/*", "error_rate": 1.0, "error_status": 404},
            {"route": "/api/marketplace-site-agent-services/*", "error_rate": 1.0, "error_status": 404}
        ]
    }))
    .expect("faults");
    w.sim.set_faults(old);
    let outcome = register_agent(
        &w.ctx,
        "order_process",
        "OfferingOrderProcessor",
        jiff::Timestamp::now(),
    )
    .await;
    assert_eq!(outcome, RegistrationOutcome::Unsupported);
    let order = w.create_order("alloc-old", 2).await;
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&order).await, "done");
    assert!(w.sim.state().identities.is_empty());

    // The same calls on a current Mastermind register the agent.
    w.clear_faults();
    let outcome = register_agent(
        &w.ctx,
        "order_process",
        "OfferingOrderProcessor",
        jiff::Timestamp::now(),
    )
    .await;
    assert!(
        matches!(outcome, RegistrationOutcome::Registered(_)),
        "{outcome:?}"
    );
    assert_eq!(w.sim.state().identities.len(), 1);
}

/// Project service and course accounts get access with the resource's creation.
#[tokio::test]
async fn created_resources_get_the_project_service_and_course_accounts() {
    let w = world().await;
    let project = uuid(&w.sim.demo().project_uuid);
    w.sim
        .mutate(|s| {
            s.add_project_account(
                waldur_sim::accounts::AccountKind::Service,
                project,
                "svc-ci",
                "",
                "CI robot",
                None,
            )?;
            s.add_project_account(
                waldur_sim::accounts::AccountKind::Course,
                project,
                "course-hpc101",
                "",
                "",
                None,
            )
            .map(|_| ())
        })
        .expect("accounts");
    let (_, backend_id) = w.provisioned("alloc-accounts", 2).await;
    let users = w.site_users(&backend_id);
    assert!(users.contains(&"svc-ci".to_owned()), "{users:?}");
    assert!(users.contains(&"course-hpc101".to_owned()), "{users:?}");
}
