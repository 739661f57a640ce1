//! Issue #21 against the simulator: limits out of range are refused, never saturated into
//! "unlimited". The demo offering's `gpu` is a limit component with no `max_value`, which
//! Mastermind accepts at any size; the agent refuses before any site call, errs an executing
//! order with a message naming component, value and allowed range, rejects a pending one with
//! that message, and leaves the site's limits as they were.

mod sim_common;

use agent_core::{membership_sync, order_process};
use serde_json::{Map, Value, json};
use sim_common::*;

/// `99999999999999999999` as a JSON number (what a hostile consumer types).
fn huge() -> Value {
    serde_json::from_str("99999999999999999999").expect("json number")
}

fn gpu_limits(gpu: Value) -> Map<String, Value> {
    let mut limits = limits(&[("cpu", 5), ("mem", 2)]);
    limits.insert("gpu".into(), gpu);
    limits
}

async fn order_with(w: &World, name: &str, limits: Map<String, Value>) -> String {
    let demo = w.sim.demo();
    w.consumer
        .create_order(
            &demo.offering_uuid,
            &demo.project_uuid,
            Some(&demo.plan_uuid),
            limits,
            name,
        )
        .await
        .expect("the simulator, like Mastermind, accepts it")
}

fn rejection_comment(w: &World, order: &str) -> String {
    w.sim
        .state()
        .orders
        .get(&uuid(order))
        .map(|o| o.provider_rejection_comment.clone())
        .unwrap_or_default()
}

/// Sets an offering component's bounds in the simulator (as a provider editing the offering
/// after the order was placed).
fn set_bounds(w: &World, component: &str, min: Option<i64>, max: Option<i64>) {
    let offering = uuid(&w.sim.demo().offering_uuid);
    w.sim
        .mutate(|s| {
            let o = s.offerings.get_mut(&offering).expect("demo offering");
            let c = o
                .components
                .iter_mut()
                .find(|c| c.type_ == component)
                .expect("component");
            c.min_value = min;
            c.max_value = max;
            Ok(())
        })
        .expect("mutation");
}

#[tokio::test]
async fn an_executing_create_with_a_huge_gpu_limit_is_erred_before_any_site_call() {
    for (gpu, shown) in [(json!(1e30), "gpu=1e30"), (huge(), "gpu=1e20")] {
        let w = world().await;
        let order = order_with(&w, "alloc-huge", gpu_limits(gpu)).await;
        // Approved elsewhere (an auto-approving offering, a staff user): provisioning started.
        w.set_order_state(&order, "executing");
        w.sim.reset_stats();

        let cycle = order_process(&w.ctx).await;
        assert!(cycle.has_failures(), "the order is a failure of the cycle");
        assert_eq!(w.order_state(&order).await, "erred");
        let message = w.order_error(&order);
        assert!(
            message.contains(shown),
            "names component and value: {message}"
        );
        assert!(
            message.contains("allowed for gpu: 0 to 9007199254740991"),
            "names the allowed range: {message}"
        );
        assert_eq!(w.site.calls(), Vec::<String>::new(), "no site call at all");
        assert_eq!(
            w.count("POST", SET_BACKEND_ID),
            0,
            "no backend id reserved for it"
        );
        assert_eq!(w.count("POST", SET_DONE), 0);
    }
}

#[tokio::test]
async fn a_pending_create_with_a_hostile_limit_is_rejected_with_the_reason() {
    let w = world().await;
    let order = order_with(&w, "alloc-hostile", gpu_limits(json!(1e30))).await;
    assert_eq!(w.order_state(&order).await, "pending-provider");

    order_process(&w.ctx).await;
    assert_eq!(
        w.order_state(&order).await,
        "rejected",
        "never approved (and then erred), never done"
    );
    let comment = rejection_comment(&w, &order);
    assert!(
        comment.contains("gpu=1e30") && comment.contains("allowed for gpu"),
        "{comment}"
    );
    assert_eq!(w.count("POST", APPROVE), 0);
    assert_eq!(w.site.calls(), Vec::<String>::new(), "no site call");
    let resource = w.resource_of(&order).await;
    assert_eq!(resource["state"], "Terminated", "{resource}");
}

#[tokio::test]
async fn negative_and_non_numeric_limits_are_refused_by_name() {
    let w = world().await;
    // The simulator (like Mastermind) refuses negatives itself; a limit that reads as no
    // number at all (here put straight into the store) must not vanish into "no limit".
    let order = order_with(&w, "alloc-nan", gpu_limits(json!(2))).await;
    let id = uuid(&order);
    w.sim
        .mutate(|s| {
            let o = s.orders.get_mut(&id).expect("order");
            o.limits.insert("gpu".into(), json!("NaN"));
            o.state = "executing".into();
            let r = s.resources.get_mut(&o.resource).expect("resource");
            r.limits.insert("gpu".into(), json!("inf"));
            Ok(())
        })
        .expect("mutation");
    order_process(&w.ctx).await;
    assert_eq!(w.order_state(&order).await, "erred");
    let message = w.order_error(&order);
    assert!(
        message.contains("gpu=NaN") && message.contains("not a finite number"),
        "{message}"
    );
    assert_eq!(w.site.count_calls("create"), 0);
}

#[tokio::test]
async fn a_fraction_of_a_gpu_hour_is_provisioned_as_ordered() {
    let w = world().await;
    let order = order_with(&w, "alloc-half", gpu_limits(json!(0.5))).await;
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&order).await, "done");
    let resource = w.resource_of(&order).await;
    let backend_id = resource["backend_id"].as_str().expect("backend id");
    let site = w.site.resource(backend_id).expect("on the site");
    assert_eq!(site.limits.get("gpu"), Some(&0.5), "neither 0 nor 1");
    assert_eq!(
        w.waldur_limits(resource["uuid"].as_str().expect("uuid"))["gpu"],
        json!(0.5)
    );
    assert_eq!(w.count("POST", SET_LIMITS), 0, "read back equal: no echo");
}

#[tokio::test]
async fn min_and_max_value_of_the_offering_component_are_enforced() {
    let w = world().await;
    let order = order_with(&w, "alloc-bounded", gpu_limits(json!(50))).await;
    // The provider lowered the bound after the order was placed.
    set_bounds(&w, "gpu", Some(2), Some(10));
    w.set_order_state(&order, "executing");
    order_process(&w.ctx).await;
    assert_eq!(w.order_state(&order).await, "erred");
    assert_eq!(
        w.order_error(&order),
        "limit gpu=50 refused: above the component's max_value 10; allowed for gpu: 2 to 10"
    );
    assert_eq!(w.site.calls(), Vec::<String>::new());

    // Within the bounds, the same offering provisions.
    let ok = order_with(&w, "alloc-in-bounds", gpu_limits(json!(4))).await;
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&ok).await, "done");
}

#[tokio::test]
async fn an_update_to_a_huge_limit_is_erred_and_the_old_limits_stay() {
    let w = world().await;
    let order = order_with(&w, "alloc-update", gpu_limits(json!(2))).await;
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&order).await, "done");
    let resource = w.resource_uuid_of(&order).await;
    let backend_id = w.resource(&resource).await["backend_id"]
        .as_str()
        .expect("backend id")
        .to_owned();
    let before_site = w.site.resource(&backend_id).expect("site").limits;
    let before_waldur = w.waldur_limits(&resource);
    assert_eq!(before_site.get("gpu"), Some(&2.0));

    // Executing (approved elsewhere): erred.
    let update = w
        .consumer
        .update_limits(&resource, gpu_limits(json!(1e30)))
        .await
        .expect("update order");
    w.set_order_state(&update, "executing");
    order_process(&w.ctx).await;
    assert_eq!(w.order_state(&update).await, "erred");
    let message = w.order_error(&update);
    assert!(message.contains("gpu=1e30"), "{message}");
    assert_eq!(w.site.count_calls("set_limits"), 0, "no site write");
    assert_eq!(
        w.site.resource(&backend_id).expect("site").limits,
        before_site
    );
    assert_eq!(w.waldur_limits(&resource), before_waldur);

    // Pending: rejected with the reason, limits untouched too.
    w.set_resource_state(&resource, "OK");
    let update = w
        .consumer
        .update_limits(&resource, gpu_limits(huge()))
        .await
        .expect("update order");
    order_process(&w.ctx).await;
    assert_eq!(w.order_state(&update).await, "rejected");
    assert!(rejection_comment(&w, &update).contains("gpu=1e20"));
    assert_eq!(w.site.count_calls("set_limits"), 0);
    assert_eq!(
        w.site.resource(&backend_id).expect("site").limits,
        before_site
    );
    assert_eq!(w.waldur_limits(&resource), before_waldur);
}

#[tokio::test]
async fn a_huge_per_user_limit_is_refused_and_the_users_site_limits_stay() {
    let w = world().await;
    let (resource, backend_id) = w.provisioned("alloc-user-huge", 3).await;
    w.add_member("alice").await;
    assert_clean(&membership_sync(&w.ctx).await);
    let mut site = w.site.resource(&backend_id).expect("site");
    site.user_limits
        .insert("alice".into(), [("cpu".to_owned(), 5.0)].into());
    w.site.insert_resource(&backend_id, site);
    let alice = uuid(&w.user_uuid("alice"));
    let rid = uuid(&resource);
    // NaN and negatives fail the core's check (no site call); huge values pass Waldur's bounds
    // (none set) and are refused by the site's own check inside `set_user_limits`.
    for (bad, core_refuses) in [
        ("1e30", false),
        ("99999999999999999999", false),
        ("NaN", true),
        ("-3", true),
    ] {
        let calls_before = w.site.count_calls("set_user_limits");
        w.sim
            .mutate(|s| {
                s.user_usage_limits.clear();
                let limit = waldur_sim::model::UserUsageLimit {
                    uuid: uuid::Uuid::new_v4(),
                    resource: rid,
                    component_type: "cpu".into(),
                    user: alice,
                    limit: bad.into(),
                };
                s.user_usage_limits.insert(limit.uuid, limit);
                Ok(())
            })
            .expect("user limit");
        membership_sync(&w.ctx).await;
        let site = w.site.resource(&backend_id).expect("site");
        assert_eq!(
            site.user_limits.get("alice"),
            Some(&[("cpu".to_owned(), 5.0)].into()),
            "cpu={bad}: alice keeps her limits"
        );
        if core_refuses {
            assert_eq!(
                w.site.count_calls("set_user_limits"),
                calls_before,
                "cpu={bad}: no site call"
            );
        }
    }
    // A valid one is applied.
    w.sim
        .mutate(|s| {
            for l in s.user_usage_limits.values_mut() {
                l.limit = "7.5".into();
            }
            Ok(())
        })
        .expect("user limit");
    assert_clean(&membership_sync(&w.ctx).await);
    let site = w.site.resource(&backend_id).expect("site");
    assert_eq!(
        site.user_limits.get("alice").and_then(|l| l.get("cpu")),
        Some(&7.5)
    );
}
