//! Event processing (agent-behaviour §3.4, waldur-api §7): which object types an offering
//! subscribes to, how the subscriptions are registered in Waldur, and what each message does.
//!
//! Transport-free: the binary connects the [`SubscriptionPlan`]s to STOMP or MQTT (crate
//! `agent-events`) and calls [`handle_event`] for each message. Handlers run the same code as the
//! polling modes, so duplicates and reordering are harmless: each handler re-reads the current state
//! from Waldur before acting.
//!
//! Acknowledgement policy (the caller applies it): [`HandlerOutcome::should_ack`] — a message is
//! acknowledged when handled or deliberately ignored; a transient failure is *not* acknowledged so
//! the broker redelivers it; a permanent failure is acknowledged (redelivery would fail the same way)
//! and logged, and the periodic reconciliation sweep picks the object up.

use serde::Deserialize;
use serde_json::Value;
use waldur_client::normalize_uuid;

use crate::context::OfferingContext;
use crate::error::CycleReport;
use crate::identity::Registration;
use crate::{membership, orders};

/// Observable object types the agent handles (waldur-api §7.2).
pub mod object_type {
    pub const ORDER: &str = "order";
    pub const USER_ROLE: &str = "user_role";
    pub const RESOURCE: &str = "resource";
    pub const OFFERING_USER: &str = "offering_user";
    pub const SERVICE_ACCOUNT: &str = "service_account";
    pub const COURSE_ACCOUNT: &str = "course_account";
    pub const IMPORTABLE_RESOURCES: &str = "importable_resources";
    pub const RESOURCE_PERIODIC_LIMITS: &str = "resource_periodic_limits";
    pub const OFFERING_RESOURCES_SYNC: &str = "offering_resources_sync";
    pub const RESOURCE_API_KEY_ROTATION: &str = "resource_api_key_rotation";
    /// Upstream 1.0.8 (for username backends that keep project groups; none of ours does).
    pub const SERVICE_PROVIDER_PROJECT_GROUP: &str = "service_provider_project_group";
}

/// Object types a server older than the agent may not know: `register_queue` answering 400 is
/// tried again without them (upstream 1.0.8), instead of losing every event of the offering.
const OPTIONAL_OBJECT_TYPES: &[&str] = &[object_type::SERVICE_PROVIDER_PROJECT_GROUP];

/// The object types an offering subscribes to, from its configured roles (§3.4.1).
pub fn object_types_for(ctx: &OfferingContext) -> Vec<&'static str> {
    use object_type::*;
    let config = &ctx.config;
    let mut types = Vec::new();
    if ctx.backends.orders.is_some() {
        types.push(ORDER);
    }
    if ctx.backends.membership.is_some() && config.stomp_membership_sync_enabled != Some(false) {
        types.extend([
            USER_ROLE,
            RESOURCE,
            SERVICE_ACCOUNT,
            COURSE_ACCOUNT,
            OFFERING_USER,
            OFFERING_RESOURCES_SYNC,
        ]);
    }
    // Resource import and SLURM periodic limits are not implemented by any backend of ours:
    // subscribing would only have their events acknowledged unread. Say so instead.
    if config.resource_import_enabled {
        tracing::warn!(offering = %ctx.name(), "resource_import_enabled is set, but this agent does not import resources; no importable_resources events are subscribed");
    }
    let periodic = config
        .backend_settings
        .get("periodic_limits")
        .and_then(|p| p.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if periodic {
        tracing::warn!(offering = %ctx.name(), "backend_settings.periodic_limits.enabled is set, but SLURM periodic limits are not implemented by this agent; no resource_periodic_limits events are subscribed");
    }
    types
}

/// Where to receive one stream of events, as Waldur provisioned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionPlan {
    /// The object type of this queue; `None` for the unified queue that carries every type (the
    /// payload then names its `object_type`).
    pub object_type: Option<String>,
    /// RabbitMQ vhost (the Waldur user's UUID hex).
    pub vhost: String,
    /// Broker login (subscription UUID hex, or the unified queue's RMQ user).
    pub login: String,
    /// Queue name; the STOMP destination is `/amq/queue/<queue>` on both paths.
    pub queue: String,
    /// Subscription UUID (legacy path; used in MQTT topics).
    pub subscription_uuid: Option<String>,
    pub unified: bool,
}

impl SubscriptionPlan {
    /// `/amq/queue/` subscribes to the queue Waldur declared without re-declaring it. The unified
    /// path's documented `/queue/<name>` makes RabbitMQ re-declare it without Waldur's
    /// `x-overflow`/TTL arguments, which fails with PRECONDITION_FAILED.
    pub fn stomp_destination(&self) -> String {
        format!("/amq/queue/{}", self.queue)
    }

    /// MQTT topic of the 0.7.x layout: `subscription/<sub>/offering/<offering>/<object type>`.
    pub fn mqtt_topic(&self, offering_uuid: &str) -> Option<String> {
        Some(format!(
            "subscription/{}/offering/{}/{}",
            self.subscription_uuid.as_deref()?,
            normalize_uuid(offering_uuid),
            self.object_type.as_deref()?
        ))
    }
}

/// Register the offering's event subscriptions in Waldur: the unified queue where the server has
/// it, else one subscription + queue per object type (legacy path). Per-type failures are
/// isolated: the returned plans cover what worked, the report counts what did not.
pub async fn register_subscriptions(
    ctx: &OfferingContext,
    registration: &Registration,
    prefer_unified: bool,
) -> (Vec<SubscriptionPlan>, CycleReport) {
    let mut report = CycleReport::new(ctx.name());
    let types: Vec<String> = object_types_for(ctx)
        .into_iter()
        .map(str::to_owned)
        .collect();
    if types.is_empty() {
        return (Vec::new(), report);
    }
    if prefer_unified {
        match register_unified_queue(ctx, &registration.identity_uuid, &types).await {
            Ok(plan) => {
                report.ok();
                return (vec![plan], report);
            }
            Err(e) if e.is_not_found() => {
                tracing::info!(offering = %ctx.name(), "no unified agent queue on this Waldur; using per-type subscriptions");
            }
            Err(e) => {
                tracing::warn!(offering = %ctx.name(), error = %e, "register_queue failed; using per-type subscriptions");
            }
        }
    }
    let description = format!(
        "Event subscription created by the site agent for identity agent-{}",
        ctx.offering_uuid
    );
    let mut plans = Vec::new();
    for object_type in types {
        let result = async {
            let subscription = ctx
                .client
                .register_event_subscription(
                    &registration.identity_uuid,
                    &object_type,
                    &description,
                )
                .await?;
            let queue = ctx
                .client
                .create_event_subscription_queue(
                    &subscription.uuid,
                    &ctx.offering_uuid,
                    &object_type,
                )
                .await?;
            let vhost = subscription
                .user_uuid
                .clone()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| normalize_uuid(&queue.vhost));
            let queue_name = if queue.queue_name.is_empty() {
                format!(
                    "subscription_{}_offering_{}_{}",
                    subscription.uuid, ctx.offering_uuid, object_type
                )
            } else {
                queue.queue_name.clone()
            };
            Ok::<_, waldur_client::WaldurError>(SubscriptionPlan {
                object_type: Some(object_type.clone()),
                vhost,
                login: subscription.uuid.clone(),
                queue: queue_name,
                subscription_uuid: Some(subscription.uuid),
                unified: false,
            })
        }
        .await;
        match result {
            Ok(plan) => {
                report.ok();
                plans.push(plan);
            }
            Err(e) => {
                tracing::warn!(offering = %ctx.name(), object_type = %object_type, error = %e, "cannot subscribe to events of this type");
                report.fail(&format!("subscribe {object_type}"), e);
            }
        }
    }
    (plans, report)
}

/// `POST marketplace-site-agent-identities/{identity}/register_queue/ {object_types}` (upstream
/// 1.0.7/1.0.8): the one `consumer_…` queue of the identity, carrying every object type. The call
/// is idempotent (200 for an existing queue, whose RabbitMQ password is reset to the token), so
/// it is also how a queue the broker lost (`NOT_FOUND` on SUBSCRIBE) is declared again. A 400 for
/// a list with object types an older server does not know is tried once more without them.
pub async fn register_unified_queue(
    ctx: &OfferingContext,
    identity_uuid: &str,
    types: &[String],
) -> Result<SubscriptionPlan, waldur_client::WaldurError> {
    let plan = |queue: waldur_client::AgentQueue| SubscriptionPlan {
        object_type: None,
        vhost: normalize_uuid(&queue.vhost),
        login: queue.rmq_username,
        queue: queue.queue_name,
        subscription_uuid: None,
        unified: true,
    };
    match ctx
        .client
        .register_agent_queue(identity_uuid, Some(types))
        .await
    {
        Ok(queue) => Ok(plan(queue)),
        Err(e)
            if e.status == Some(400)
                && types
                    .iter()
                    .any(|t| OPTIONAL_OBJECT_TYPES.contains(&t.as_str())) =>
        {
            tracing::warn!(offering = %ctx.name(), error = %e, "queue registration refused; trying again without the object types this Waldur may predate");
            let known: Vec<String> = types
                .iter()
                .filter(|t| !OPTIONAL_OBJECT_TYPES.contains(&t.as_str()))
                .cloned()
                .collect();
            ctx.client
                .register_agent_queue(identity_uuid, Some(&known))
                .await
                .map(plan)
        }
        Err(e) => Err(e),
    }
}

/// The object types `register_subscriptions` asks for, as owned strings.
pub fn subscribed_types(ctx: &OfferingContext) -> Vec<String> {
    object_types_for(ctx)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// What became of one message.
#[derive(Clone, Debug, PartialEq)]
pub enum HandlerOutcome {
    Handled,
    /// Nothing to do (terminal order state, unsupported type, ...).
    Ignored(String),
    /// Worth redelivering: Waldur or the site was unreachable.
    TransientFailure(String),
    /// Will fail the same way again (bad payload, rejected by the site).
    PermanentFailure(String),
}

impl HandlerOutcome {
    /// Acknowledge unless redelivery can help.
    pub fn should_ack(&self) -> bool {
        !matches!(self, HandlerOutcome::TransientFailure(_))
    }

    fn from_report(report: CycleReport, transient: bool) -> Self {
        if !report.has_failures() {
            return HandlerOutcome::Handled;
        }
        let message = report.errors.join("; ");
        if transient {
            HandlerOutcome::TransientFailure(message)
        } else {
            HandlerOutcome::PermanentFailure(message)
        }
    }
}

/// Order states for which an `order` event needs no work (§3.4.4).
const INACTIVE_ORDER_STATES: &[&str] = &[
    "done",
    "erred",
    "pending-consumer",
    "canceled",
    "rejected",
    "pending-project",
    "pending-start-date",
];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OrderMessage {
    order_uuid: String,
    order_state: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UserRoleMessage {
    user_uuid: Option<String>,
    project_uuid: String,
    resource_uuid: Option<String>,
    role_name: Option<String>,
    granted: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResourceMessage {
    resource_uuid: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OfferingUserMessage {
    offering_user_uuid: String,
    action: String,
    resource_backend_ids: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AccountMessage {
    project_uuid: String,
}

/// Handle one event message for `ctx`'s offering. `object_type` comes from the queue (legacy) or
/// is `None` for the unified queue, where the payload names it.
pub async fn handle_event(
    ctx: &OfferingContext,
    object_type: Option<&str>,
    payload: &Value,
) -> HandlerOutcome {
    let Some(kind) = object_type.map(str::to_owned).or_else(|| {
        payload
            .get("object_type")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }) else {
        return HandlerOutcome::PermanentFailure("message names no object_type".into());
    };
    let parse = |what: &str| -> Result<(), HandlerOutcome> {
        if payload.is_object() {
            Ok(())
        } else {
            Err(HandlerOutcome::PermanentFailure(format!(
                "{what} message is not a JSON object"
            )))
        }
    };
    if let Err(outcome) = parse(&kind) {
        return outcome;
    }
    let outcome = match kind.as_str() {
        object_type::ORDER => handle_order(ctx, payload).await,
        object_type::USER_ROLE => handle_user_role(ctx, payload).await,
        object_type::RESOURCE => {
            let m: ResourceMessage = decode(payload);
            if m.resource_uuid.is_empty() {
                return HandlerOutcome::PermanentFailure(
                    "resource message without resource_uuid".into(),
                );
            }
            finish(membership::process_resource_by_uuid(ctx, &m.resource_uuid).await)
        }
        object_type::OFFERING_USER => handle_offering_user(ctx, payload).await,
        object_type::OFFERING_RESOURCES_SYNC => {
            finish(membership::process_offering_resources_sync(ctx).await)
        }
        object_type::SERVICE_ACCOUNT | object_type::COURSE_ACCOUNT => {
            // Accounts are members of the project's resources: re-sync that project's teams.
            let m: AccountMessage = decode(payload);
            if m.project_uuid.is_empty() {
                return HandlerOutcome::PermanentFailure(format!(
                    "{kind} message without project_uuid"
                ));
            }
            finish(membership::process_project_user_sync(ctx, &m.project_uuid).await)
        }
        other => HandlerOutcome::Ignored(format!(
            "object type '{other}' is not handled by this agent"
        )),
    };
    match &outcome {
        HandlerOutcome::Handled => {
            tracing::info!(offering = %ctx.name(), object_type = %kind, "event handled")
        }
        HandlerOutcome::Ignored(why) => {
            tracing::debug!(offering = %ctx.name(), object_type = %kind, reason = %why, "event ignored")
        }
        HandlerOutcome::TransientFailure(e) => {
            tracing::warn!(offering = %ctx.name(), object_type = %kind, error = %e, "event failed; it will be redelivered")
        }
        HandlerOutcome::PermanentFailure(e) => {
            tracing::error!(offering = %ctx.name(), object_type = %kind, error = %e, "event failed; reconciliation will retry the object")
        }
    }
    outcome
}

fn decode<T: for<'de> Deserialize<'de> + Default>(payload: &Value) -> T {
    T::deserialize(payload).unwrap_or_default()
}

/// Map a processor report to an outcome: failures count as transient when every error was, which
/// the processors signal by leaving items for the next cycle rather than erring them.
fn finish(report: CycleReport) -> HandlerOutcome {
    let transient = matches!(
        crate::policy::next_step(&report, crate::policy::Trigger::Event, 0),
        crate::policy::Next::RetryAfter(_)
    );
    HandlerOutcome::from_report(report, transient)
}

async fn handle_order(ctx: &OfferingContext, payload: &Value) -> HandlerOutcome {
    let m: OrderMessage = decode(payload);
    if m.order_uuid.is_empty() {
        return HandlerOutcome::PermanentFailure("order message without order_uuid".into());
    }
    if INACTIVE_ORDER_STATES.contains(&m.order_state.as_str()) {
        return HandlerOutcome::Ignored(format!("order in state '{}'", m.order_state));
    }
    finish(orders::process_order_by_uuid(ctx, &m.order_uuid).await)
}

async fn handle_user_role(ctx: &OfferingContext, payload: &Value) -> HandlerOutcome {
    let m: UserRoleMessage = decode(payload);
    match (m.user_uuid.as_deref().filter(|u| !u.is_empty()), m.granted) {
        (Some(user), Some(granted)) => {
            if m.project_uuid.is_empty() {
                return HandlerOutcome::PermanentFailure(
                    "user_role message without project_uuid".into(),
                );
            }
            finish(
                membership::process_user_role_changed(
                    ctx,
                    user,
                    &m.project_uuid,
                    granted,
                    m.role_name.as_deref(),
                )
                .await,
            )
        }
        (Some(_), None) => {
            HandlerOutcome::PermanentFailure("user_role message without 'granted'".into())
        }
        (None, _) => match m.resource_uuid.as_deref().filter(|r| !r.is_empty()) {
            // No user: Waldur asks to re-sync a whole resource or project.
            Some(resource) => finish(membership::process_resource_by_uuid(ctx, resource).await),
            None if !m.project_uuid.is_empty() => {
                finish(membership::process_project_user_sync(ctx, &m.project_uuid).await)
            }
            None => HandlerOutcome::PermanentFailure(
                "user_role message names neither user, resource nor project".into(),
            ),
        },
    }
}

async fn handle_offering_user(ctx: &OfferingContext, payload: &Value) -> HandlerOutcome {
    let m: OfferingUserMessage = decode(payload);
    match m.action.as_str() {
        "username_set" => {
            if m.offering_user_uuid.is_empty() {
                return HandlerOutcome::PermanentFailure(
                    "username_set message without offering_user_uuid".into(),
                );
            }
            finish(
                membership::process_username_set(
                    ctx,
                    &m.offering_user_uuid,
                    &m.resource_backend_ids,
                )
                .await,
            )
        }
        other => HandlerOutcome::Ignored(format!("offering_user action '{other}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_not_acknowledged() {
        assert!(HandlerOutcome::Handled.should_ack());
        assert!(HandlerOutcome::Ignored("x".into()).should_ack());
        assert!(HandlerOutcome::PermanentFailure("x".into()).should_ack());
        assert!(!HandlerOutcome::TransientFailure("x".into()).should_ack());
    }

    #[test]
    fn destinations_and_topics() {
        let plan = SubscriptionPlan {
            object_type: Some("order".into()),
            vhost: "v".into(),
            login: "s".into(),
            queue: "subscription_s_offering_o_order".into(),
            subscription_uuid: Some("s".into()),
            unified: false,
        };
        assert_eq!(
            plan.stomp_destination(),
            "/amq/queue/subscription_s_offering_o_order"
        );
        assert_eq!(
            plan.mqtt_topic("0f0f0f0f-0000-0000-0000-000000000001")
                .as_deref(),
            Some("subscription/s/offering/0f0f0f0f000000000000000000000001/order")
        );
        let unified = SubscriptionPlan {
            unified: true,
            object_type: None,
            subscription_uuid: None,
            ..plan
        };
        assert_eq!(
            unified.stomp_destination(),
            "/amq/queue/subscription_s_offering_o_order"
        );
        assert_eq!(unified.mqtt_topic("o"), None);
    }
}
