//! The processors against the Waldur simulator (in process), with the in-memory site double:
//! orders placed, users added and usage read the way a consumer and a site would produce them.

use std::sync::Arc;

use agent_config::OfferingConfig;
use agent_core::events::{HandlerOutcome, handle_event};
use agent_core::{CoreSettings, OfferingContext, membership_sync, order_process, report};
use backend_api::testkit::{Fault, MemoryBackend};
use backend_api::{BaseUsernameBackend, OfferingBackends, UsageReport};
use serde_json::{Map, Value, json};
use waldur_client::{Auth, ClientOptions, Secret, WaldurClient};
use waldur_sim::consumer::ConsumerClient;
use waldur_sim::{FaultConfig, SimServer};

struct World {
    sim: SimServer,
    site: MemoryBackend,
    ctx: OfferingContext,
    consumer: ConsumerClient,
}

async fn world() -> World {
    let sim = SimServer::start_demo().await.expect("simulator starts");
    let demo = sim.demo().clone();
    let site = MemoryBackend::new();
    let handles = site.handles();
    let backends = OfferingBackends {
        orders: handles.orders.clone(),
        membership: handles.membership.clone(),
        usage: handles.usage.clone(),
        usernames: Arc::new(BaseUsernameBackend),
        health: vec![handles.health.clone()],
    };
    let config: OfferingConfig = serde_json::from_value(json!({
        "name": "sim offering",
        "waldur_api_url": demo.api_url,
        "waldur_api_token": demo.provider_token,
        "waldur_offering_uuid": demo.offering_uuid,
        "backend_type": "memory",
        "backend_components": {
            "cpu": {"measured_unit": "k-Hours", "unit_factor": 60000, "accounting_type": "usage", "label": "CPU"},
            "mem": {"measured_unit": "gb-Hours", "unit_factor": 61440, "accounting_type": "usage", "label": "RAM"}
        }
    }))
    .expect("offering config");
    let client = WaldurClient::new(ClientOptions::new(
        config.waldur_api_url.clone(),
        Auth::Token(Secret::new(demo.provider_token.clone())),
    ))
    .expect("client");
    let ctx = OfferingContext::new(config, client, backends, CoreSettings::default());
    let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
    World {
        sim,
        site,
        ctx,
        consumer,
    }
}

fn limits(pairs: &[(&str, i64)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect()
}

impl World {
    async fn create_order(&self, name: &str, cpu: i64) -> String {
        let demo = self.sim.demo();
        self.consumer
            .create_order(
                &demo.offering_uuid,
                &demo.project_uuid,
                Some(&demo.plan_uuid),
                limits(&[("cpu", cpu), ("mem", 2)]),
                name,
            )
            .await
            .expect("consumer places a Create order")
    }

    async fn order(&self, uuid: &str) -> Value {
        self.consumer.order(uuid).await.expect("order readable")
    }

    async fn order_state(&self, uuid: &str) -> String {
        self.order(uuid).await["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn resource_of(&self, order: &str) -> Value {
        let o = self.order(order).await;
        let uuid = o["marketplace_resource_uuid"]
            .as_str()
            .expect("order names its resource")
            .to_owned();
        self.consumer
            .resource(&uuid)
            .await
            .expect("resource readable")
    }
}

#[tokio::test]
async fn create_order_becomes_a_site_resource_and_is_done_once() {
    let w = world().await;
    let order = w.create_order("alloc-one", 5).await;
    assert_eq!(w.order_state(&order).await, "pending-provider");

    let cycle = order_process(&w.ctx).await;
    assert!(!cycle.has_failures(), "{:?}", cycle.errors);
    assert_eq!(w.order_state(&order).await, "done");
    let resource = w.resource_of(&order).await;
    let backend_id = resource["backend_id"]
        .as_str()
        .expect("backend_id set")
        .to_owned();
    assert!(!backend_id.is_empty());
    assert_eq!(resource["state"], "OK");
    let on_site = w
        .site
        .resource(&backend_id)
        .expect("the site has the resource");
    assert_eq!(
        on_site.limits.get("cpu"),
        Some(&5),
        "ordered limits reach the site in Waldur units"
    );

    // A second cycle finds nothing to do and creates nothing twice.
    order_process(&w.ctx).await;
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
    let cycle = order_process(&w.ctx).await;
    assert!(!cycle.has_failures(), "{:?}", cycle.errors);
    let stats = w.sim.stats();
    for o in &orders {
        assert_eq!(w.order_state(o).await, "done");
    }
    let total = stats.total;
    for (route, s) in &stats.routes {
        println!("{route}: {}", s.count);
    }
    // Each order's own calls plus a handful shared by the cycle (order list, offering, users, ...).
    let shared = 6;
    println!(
        "order_process: {total} requests for {} Create orders",
        orders.len()
    );
    assert!(
        total <= 6 * orders.len() as u64 + shared,
        "{total} requests for {} orders",
        orders.len()
    );
    // All five share one project and the demo offering names accounts after the project slug,
    // so ids collide and are retried with suffixes: one site resource per order all the same.
    assert_eq!(
        w.site.resource_ids().len(),
        orders.len(),
        "one site resource per order"
    );
}

#[tokio::test]
async fn update_and_terminate_orders_reach_the_site() {
    let w = world().await;
    let order = w.create_order("alloc-lifecycle", 5).await;
    order_process(&w.ctx).await;
    let resource = w.resource_of(&order).await;
    let uuid = resource["uuid"].as_str().expect("uuid").to_owned();
    let backend_id = resource["backend_id"]
        .as_str()
        .expect("backend id")
        .to_owned();

    let update = w
        .consumer
        .update_limits(&uuid, limits(&[("cpu", 9), ("mem", 4)]))
        .await
        .expect("update order");
    order_process(&w.ctx).await;
    assert_eq!(w.order_state(&update).await, "done");
    assert_eq!(
        w.site
            .resource(&backend_id)
            .expect("still there")
            .limits
            .get("cpu"),
        Some(&9)
    );

    let terminate = w.consumer.terminate(&uuid).await.expect("terminate order");
    order_process(&w.ctx).await;
    assert_eq!(w.order_state(&terminate).await, "done");
    assert!(
        w.site.resource(&backend_id).is_none(),
        "terminate removes the site resource"
    );
    let resource = w.consumer.resource(&uuid).await.expect("resource");
    assert_eq!(resource["state"], "Terminated");
}

#[tokio::test]
async fn transient_site_failure_leaves_the_order_for_the_next_cycle() {
    let w = world().await;
    let order = w.create_order("alloc-flaky", 3).await;
    w.site.fail_next("create", Fault::Transient, 1);
    let first = order_process(&w.ctx).await;
    assert!(first.has_failures());
    let state = w.order_state(&order).await;
    assert_ne!(state, "erred", "a transient failure never errs the order");
    assert_ne!(state, "done");
    let second = order_process(&w.ctx).await;
    assert!(!second.has_failures(), "{:?}", second.errors);
    assert_eq!(w.order_state(&order).await, "done");
}

#[tokio::test]
async fn waldur_5xx_leaves_the_order_untouched() {
    let w = world().await;
    let order = w.create_order("alloc-5xx", 3).await;
    let faults: FaultConfig = serde_json::from_value(json!({
        "seed": 7,
        "rules": [{"route": "/api/marketplace-orders/{uuid}/approve_by_provider/", "error_rate": 1.0, "error_status": 503}]
    }))
    .expect("fault config");
    w.sim.set_faults(faults);
    let first = order_process(&w.ctx).await;
    assert!(first.has_failures());
    assert_eq!(
        w.order_state(&order).await,
        "pending-provider",
        "503 on approve keeps the order pending"
    );
    assert_eq!(w.site.count_calls("create"), 0);
    w.sim.set_faults(FaultConfig::default());
    order_process(&w.ctx).await;
    assert_eq!(w.order_state(&order).await, "done");
}

#[tokio::test]
async fn permanent_site_failure_errs_the_order_with_the_reason() {
    let w = world().await;
    let order = w.create_order("alloc-broken", 3).await;
    w.site.fail_next("create", Fault::Permanent, 1);
    order_process(&w.ctx).await;
    let o = w.order(&order).await;
    assert_eq!(o["state"], "erred");
    assert!(
        o["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("injected permanent failure"),
        "error message says why: {o}"
    );
}

#[tokio::test]
async fn project_members_get_access_and_leavers_lose_it() {
    let w = world().await;
    let order = w.create_order("alloc-team", 3).await;
    order_process(&w.ctx).await;
    let backend_id = w.resource_of(&order).await["backend_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let demo = w.sim.demo().clone();
    let member = demo.users.first().expect("demo has users").clone();

    w.consumer
        .add_user_to_project(&demo.project_uuid, &member.uuid, "PROJECT.MEMBER")
        .await
        .expect("add user");
    let cycle = membership_sync(&w.ctx).await;
    assert!(!cycle.has_failures(), "{:?}", cycle.errors);
    let users = w.site.resource(&backend_id).expect("resource").users;
    assert!(
        users.contains(&member.username),
        "{users:?} should contain {}",
        member.username
    );

    w.consumer
        .remove_user_from_project(&demo.project_uuid, &member.uuid, "PROJECT.MEMBER")
        .await
        .expect("remove user");
    membership_sync(&w.ctx).await;
    let users = w.site.resource(&backend_id).expect("resource").users;
    assert!(
        !users.contains(&member.username),
        "{users:?} still contains {}",
        member.username
    );
}

#[tokio::test]
async fn usage_is_reported_once_and_not_resent_when_unchanged() {
    let w = world().await;
    let order = w.create_order("alloc-usage", 3).await;
    order_process(&w.ctx).await;
    let resource = w.resource_of(&order).await;
    let backend_id = resource["backend_id"].as_str().expect("id").to_owned();
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    w.site.set_usage(
        &backend_id,
        now.year(),
        now.month(),
        UsageReport {
            total: [("cpu".to_owned(), 1.234), ("mem".to_owned(), 0.5)].into(),
            per_user: Default::default(),
        },
    );
    w.sim.reset_stats();
    let cycle = report(&w.ctx).await;
    assert!(!cycle.has_failures(), "{:?}", cycle.errors);
    let set_usage = "/api/marketplace-component-usages/set_usage/";
    assert_eq!(w.sim.stats().count("POST", set_usage), 1);
    let recorded: Vec<(String, i64)> = {
        let store = w.sim.state();
        store
            .component_usages
            .values()
            .map(|u| (u.component_type.clone(), u.usage_cents))
            .collect()
    };
    assert!(
        recorded.contains(&("cpu".to_owned(), 123)),
        "cpu rounded to 2 decimals: {recorded:?}"
    );
    assert!(recorded.contains(&("mem".to_owned(), 50)), "{recorded:?}");

    report(&w.ctx).await;
    assert_eq!(
        w.sim.stats().count("POST", set_usage),
        1,
        "unchanged usage is not re-sent"
    );
}

#[tokio::test]
async fn order_event_is_handled_like_polling_and_terminal_states_are_ignored() {
    let w = world().await;
    let order = w.create_order("alloc-event", 2).await;
    let outcome = handle_event(
        &w.ctx,
        Some("order"),
        &json!({"order_uuid": order, "order_state": "pending-provider"}),
    )
    .await;
    assert_eq!(outcome, HandlerOutcome::Handled);
    assert_eq!(w.order_state(&order).await, "done");

    w.sim.reset_stats();
    let outcome = handle_event(
        &w.ctx,
        Some("order"),
        &json!({"order_uuid": order, "order_state": "done"}),
    )
    .await;
    assert!(matches!(outcome, HandlerOutcome::Ignored(_)));
    assert_eq!(
        w.sim.stats().total,
        0,
        "a done order event costs no request"
    );

    let outcome = handle_event(&w.ctx, None, &json!([1, 2])).await;
    assert!(
        matches!(outcome, HandlerOutcome::PermanentFailure(_)),
        "{outcome:?}"
    );
    assert!(
        outcome.should_ack(),
        "a malformed message is acknowledged away, never redelivered forever"
    );
}
