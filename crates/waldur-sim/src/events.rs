//! Event routing (§7): every state change queued by the store is fanned out to the legacy
//! per-type queues (`create_queue`) and the unified per-identity queues (`register_queue`),
//! recorded in a bounded log and handed to the configured [`EventSink`]s (STOMP, MQTT).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Value, json};

use crate::query::parse_uuid_ref;
use crate::store::{SimEvent, Store};

const LOG_CAPACITY: usize = 5_000;

/// One message for one queue.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// `legacy` (subscription queue) or `unified` (consumer queue).
    pub path: &'static str,
    pub vhost: String,
    pub queue_name: String,
    /// STOMP destination the simulator publishes to: `/amq/queue/<queue>`. Mastermind uses
    /// `/queue/<queue>`, but RabbitMQ re-declares `/queue/` destinations on SEND and its STOMP
    /// plugin (3.10) cannot pass `x-overflow`, so that SEND fails with PRECONDITION_FAILED on a
    /// queue declared with the §7.1 arguments; `/amq/queue/` routes to the same queue unchanged.
    pub destination: String,
    /// MQTT topic `subscription/<sub>/offering/<offering>/<object type>` (legacy path only).
    pub mqtt_topic: Option<String>,
    pub offering_uuid: String,
    pub object_type: String,
    pub payload: Value,
}

/// A state change and where it went.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub timestamp: String,
    pub event: SimEvent,
    pub deliveries: Vec<Delivery>,
}

/// Receives every delivery; implementations publish to a broker. Must not block for long.
pub trait EventSink: Send + Sync {
    fn publish(&self, delivery: &Delivery);
}

#[derive(Default)]
pub struct EventHub {
    log: Mutex<VecDeque<EventRecord>>,
    sinks: Mutex<Vec<Arc<dyn EventSink>>>,
}

impl EventHub {
    pub fn add_sink(&self, sink: Arc<dyn EventSink>) {
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sink);
    }

    /// Resolves the queues of each event (needs the store for subscriptions and enrichment).
    pub fn route(&self, store: &Store, events: &[SimEvent]) -> Vec<EventRecord> {
        events
            .iter()
            .map(|ev| EventRecord {
                timestamp: crate::store::now().to_string(),
                event: ev.clone(),
                deliveries: deliveries_for(store, ev),
            })
            .collect()
    }

    pub fn publish(&self, records: Vec<EventRecord>) {
        let sinks: Vec<Arc<dyn EventSink>> =
            self.sinks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for rec in &records {
            for d in &rec.deliveries {
                for s in &sinks {
                    s.publish(d);
                }
            }
        }
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        for rec in records {
            if log.len() >= LOG_CAPACITY {
                log.pop_front();
            }
            log.push_back(rec);
        }
    }

    pub fn log(&self) -> Vec<EventRecord> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

fn deliveries_for(store: &Store, ev: &SimEvent) -> Vec<Delivery> {
    let Some(offering) = parse_uuid_ref(&ev.offering_uuid) else {
        return vec![];
    };
    let mut out = vec![];
    for q in store.subscription_queues.values() {
        if q.offering != offering || q.object_type != ev.object_type {
            continue;
        }
        let Some(sub) = store.subscriptions.get(&q.subscription) else {
            continue;
        };
        let name = q.queue_name();
        out.push(Delivery {
            path: "legacy",
            vhost: sub.user.simple().to_string(),
            destination: format!("/amq/queue/{}", name.replace('/', "_")),
            mqtt_topic: Some(format!(
                "subscription/{}/offering/{}/{}",
                sub.uuid.simple(),
                offering.simple(),
                ev.object_type
            )),
            queue_name: name,
            offering_uuid: ev.offering_uuid.clone(),
            object_type: ev.object_type.clone(),
            payload: ev.payload.clone(),
        });
    }
    for q in store.agent_queues.values() {
        let Some(identity) = store.identities.get(&q.identity) else {
            continue;
        };
        if identity.offering != offering
            || !(q.object_types.is_empty() || q.object_types.contains(&ev.object_type))
        {
            continue;
        }
        out.push(Delivery {
            path: "unified",
            vhost: q.user.simple().to_string(),
            destination: format!("/amq/queue/{}", q.queue_name()),
            mqtt_topic: None,
            queue_name: q.queue_name(),
            offering_uuid: ev.offering_uuid.clone(),
            object_type: ev.object_type.clone(),
            payload: enrich(store, ev),
        });
    }
    out
}

/// The unified path adds `offering_uuid`, `object_type` and per-type context (§7.4).
fn enrich(store: &Store, ev: &SimEvent) -> Value {
    let mut p = ev.payload.clone();
    let Value::Object(m) = &mut p else { return p };
    m.insert("offering_uuid".into(), json!(ev.offering_uuid));
    m.insert("object_type".into(), json!(ev.object_type));
    let get_uuid = |k: &str| m.get(k).and_then(Value::as_str).and_then(parse_uuid_ref);
    match ev.object_type.as_str() {
        "order" => {
            if let Some(o) = get_uuid("order_uuid").and_then(|u| store.orders.get(&u)) {
                let r = store.resources.get(&o.resource);
                let project = store.projects.get(&o.project);
                let extra = json!({
                    "order_type": o.type_,
                    "resource_uuid": o.resource.simple().to_string(),
                    "resource_backend_id": r.map(|r| r.backend_id.clone()).unwrap_or_default(),
                    "resource_name": r.map(|r| r.name.clone()).unwrap_or_default(),
                    "project_uuid": o.project.simple().to_string(),
                    "project_name": project.map(|p| p.name.clone()).unwrap_or_default(),
                    "attributes": o.attributes,
                    "limits": o.limits,
                    "plan_uuid": o.plan.map(|p| p.simple().to_string()),
                });
                if let Value::Object(e) = extra {
                    m.extend(e);
                }
            }
        }
        "resource" => {
            if let Some(r) = get_uuid("resource_uuid").and_then(|u| store.resources.get(&u)) {
                let project = store.projects.get(&r.project);
                m.insert("resource_name".into(), json!(r.name));
                m.insert("resource_state".into(), json!(r.state));
                m.insert("project_uuid".into(), json!(r.project.simple().to_string()));
                m.insert(
                    "project_name".into(),
                    json!(project.map(|p| p.name.clone()).unwrap_or_default()),
                );
                m.insert("limits".into(), Value::Object(r.limits.clone()));
            }
        }
        "user_role" => {
            if let Some(u) = get_uuid("user_uuid").and_then(|u| store.users.get(&u)) {
                m.insert("user_email".into(), json!(u.email));
                m.insert("user_full_name".into(), json!(u.full_name));
            }
        }
        _ => {}
    }
    p
}
