//! The unified event queue of upstream 1.0.7/1.0.8 against the simulator: `register_queue`
//! with the offering's object types, the RabbitMQ login it hands out, idempotent registration
//! (how a queue the broker lost is declared again), the retry without object types an older
//! server refuses, and the per-type fallback on a server without `register_queue`.

mod sim_common;

use agent_core::events::{self, object_type};
use agent_core::{RegistrationOutcome, register_agent};
use sim_common::*;
use waldur_sim::FaultConfig;

const REGISTER_QUEUE: &str = "/api/marketplace-site-agent-identities/{uuid}/register_queue/";

async fn registered(w: &World) -> agent_core::Registration {
    match register_agent(
        &w.ctx,
        "event_process",
        "EventProcessor",
        jiff::Timestamp::now(),
    )
    .await
    {
        RegistrationOutcome::Registered(r) => r,
        other => panic!("registration: {other:?}"),
    }
}

#[tokio::test]
async fn one_queue_for_every_object_type_and_registration_is_idempotent() {
    let w = world().await;
    let registration = registered(&w).await;
    let (plans, report) = events::register_subscriptions(&w.ctx, &registration, true).await;
    assert_clean(&report);
    assert_eq!(plans.len(), 1);
    let plan = &plans[0];
    assert!(plan.unified && plan.object_type.is_none());
    assert!(plan.queue.starts_with("consumer_"), "{plan:?}");
    assert_eq!(
        plan.stomp_destination(),
        format!("/amq/queue/{}", plan.queue)
    );
    // Login = the queue's RabbitMQ user; vhost = the Waldur user (hex).
    let (queue, user) = {
        let state = w.sim.state();
        let q = state.agent_queues.values().next().expect("queue").clone();
        (q.clone(), q.user)
    };
    assert_eq!(plan.login, queue.consumer_uuid.simple().to_string());
    assert_eq!(plan.vhost, user.simple().to_string());
    for t in [
        object_type::ORDER,
        object_type::USER_ROLE,
        object_type::RESOURCE,
        object_type::OFFERING_USER,
        object_type::SERVICE_ACCOUNT,
        object_type::COURSE_ACCOUNT,
        object_type::OFFERING_RESOURCES_SYNC,
    ] {
        assert!(
            queue.object_types.iter().any(|q| q == t),
            "{t} not registered"
        );
    }
    // Registering again (after the broker lost the queue) gives the same queue back.
    let again = events::register_unified_queue(
        &w.ctx,
        &registration.identity_uuid,
        &events::subscribed_types(&w.ctx),
    )
    .await
    .expect("register again");
    assert_eq!(&again, plan);
    assert_eq!(w.sim.state().agent_queues.len(), 1);
}

/// A server that does not know an object type answers 400; the queue is registered without it.
#[tokio::test]
async fn an_object_type_the_server_predates_is_dropped_on_400() {
    let w = world().await;
    let registration = registered(&w).await;
    w.sim.reset_stats();
    let mut types = events::subscribed_types(&w.ctx);
    types.push(object_type::SERVICE_PROVIDER_PROJECT_GROUP.to_owned());
    let plan = events::register_unified_queue(&w.ctx, &registration.identity_uuid, &types)
        .await
        .expect("registered without the unknown type");
    assert!(plan.unified);
    assert_eq!(w.count("POST", REGISTER_QUEUE), 2);
    let registered: Vec<String> = w.sim.state().agent_queues[0].object_types.clone();
    assert!(
        !registered
            .iter()
            .any(|t| t == object_type::SERVICE_PROVIDER_PROJECT_GROUP)
    );
    // Any other refusal is not retried.
    let other = events::register_unified_queue(
        &w.ctx,
        &registration.identity_uuid,
        &["no_such_type".to_owned()],
    )
    .await;
    assert!(other.is_err());
}

/// Without `register_queue` (404), one subscription and queue per object type, as before.
#[tokio::test]
async fn servers_without_register_queue_get_per_type_subscriptions() {
    let w = world().await;
    let registration = registered(&w).await;
    w.sim.set_faults(failing(REGISTER_QUEUE, Some("POST"), 404));
    let (plans, report) = events::register_subscriptions(&w.ctx, &registration, true).await;
    assert_clean(&report);
    w.sim.set_faults(FaultConfig::default());
    assert_eq!(plans.len(), events::subscribed_types(&w.ctx).len());
    assert!(
        plans
            .iter()
            .all(|p| !p.unified && p.queue.starts_with("subscription_"))
    );
}
