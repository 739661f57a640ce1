//! A small stateful fake of the Mastermind endpoints the processors use, on top of wiremock,
//! with fault injection and a request log (for counting calls).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use agent_config::OfferingConfig;
use agent_core::{CoreSettings, OfferingContext};
use backend_api::testkit::MemoryBackend;
use backend_api::{BaseUsernameBackend, OfferingBackends};
use serde_json::{Value, json};
use waldur_client::{Auth, ClientOptions, Secret, WaldurClient};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const OFFERING: &str = "0000000000000000000000000000000f";
/// The API token of the test offering (tests check it never shows up in output).
pub const TOKEN: &str = "tok-5ecret-never-printed";

#[derive(Default)]
pub struct State {
    pub orders: BTreeMap<String, Value>,
    pub resources: BTreeMap<String, Value>,
    pub teams: BTreeMap<String, Vec<Value>>,
    pub offering_users: Vec<Value>,
    pub offering: Value,
    /// (resource uuid, billing period) → component usage records
    pub usages: BTreeMap<(String, String), Vec<Value>>,
    pub user_usages: Vec<Value>,
    /// "METHOD /path/" or "METHOD action" → statuses to return next
    pub faults: BTreeMap<String, Vec<u16>>,
    pub log: Vec<String>,
    pub bodies: Vec<(String, Value)>,
    /// `None` = the endpoint does not exist (older Mastermind: 404).
    pub service_accounts: Option<Vec<Value>>,
    pub course_accounts: Option<Vec<Value>>,
    /// resource uuid → last statuses sent with set_membership_sync_statuses
    pub sync_statuses: BTreeMap<String, Value>,
}

#[derive(Clone)]
pub struct FakeWaldur {
    pub state: Arc<Mutex<State>>,
}

pub fn uuid(n: u32) -> String {
    format!("{n:032x}")
}

impl FakeWaldur {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake state")
    }
    pub fn add_order(&self, n: u32, kind: &str, state: &str, resource: u32) {
        self.lock().orders.insert(
            uuid(n),
            json!({"uuid": uuid(n), "type": kind, "state": state,
                   "marketplace_resource_uuid": uuid(resource), "resource_uuid": uuid(resource),
                   "limits": {"cpu": 10}, "project_slug": "proj", "offering_uuid": OFFERING}),
        );
    }
    pub fn add_resource(&self, n: u32, slug: &str, backend_id: &str, state: &str) {
        self.lock().resources.insert(
            uuid(n),
            json!({"uuid": uuid(n), "name": slug, "slug": slug, "backend_id": backend_id,
                   "state": state, "project_uuid": uuid(900), "project_slug": "proj",
                   "limits": {"cpu": 10}, "offering_uuid": OFFERING,
                   "offering_plugin_options": {}, "backend_metadata": {}}),
        );
    }
    pub fn add_member(
        &self,
        resource: u32,
        user: u32,
        username: &str,
        ou_username: Option<&str>,
        ou_state: &str,
    ) {
        let mut s = self.lock();
        s.teams.entry(uuid(resource)).or_default().push(json!({
            "url": "", "uuid": uuid(user), "username": username, "full_name": username,
            "role": "PROJECT.MEMBER", "expiration_time": null,
            "offering_user_username": ou_username, "offering_user_state": ou_state, "email": null
        }));
        s.offering_users.push(json!({
            "uuid": uuid(user + 5000), "user_uuid": uuid(user), "username": ou_username,
            "state": ou_state, "user_username": username, "url": format!("https://w/api/marketplace-offering-users/{}/", uuid(user + 5000))
        }));
    }
    pub fn add_account(&self, course: bool, username: &str, state: &str) {
        let mut s = self.lock();
        let n = s.service_accounts.as_ref().map_or(0, Vec::len)
            + s.course_accounts.as_ref().map_or(0, Vec::len);
        let account = json!({"uuid": uuid(3000 + n as u32), "username": username, "state": state,
                             "project_uuid": uuid(900), "token": "svc-token-value"});
        let list = if course {
            &mut s.course_accounts
        } else {
            &mut s.service_accounts
        };
        list.get_or_insert_with(Vec::new).push(account);
    }
    pub fn fail(&self, key: &str, statuses: &[u16]) {
        self.lock().faults.insert(key.to_owned(), statuses.to_vec());
    }
    pub fn order_state(&self, n: u32) -> String {
        self.lock().orders[&uuid(n)]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
    pub fn resource(&self, n: u32) -> Value {
        self.lock().resources[&uuid(n)].clone()
    }
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }
    pub fn count(&self, needle: &str) -> usize {
        self.lock()
            .log
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
    pub fn bodies(&self, needle: &str) -> Vec<Value> {
        self.lock()
            .bodies
            .iter()
            .filter(|(k, _)| k.contains(needle))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn ok(v: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(v)
}

fn query_all(req: &Request, key: &str) -> Vec<String> {
    req.url
        .query_pairs()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

impl Respond for FakeWaldur {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let path = req.url.path().to_owned();
        let method = req.method.to_string();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let mut s = self.lock();
        s.log.push(format!(
            "{method} {path}?{}",
            req.url.query().unwrap_or_default()
        ));
        s.bodies.push((format!("{method} {path}"), body.clone()));
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let action = segments.get(3).copied().unwrap_or_default();
        for key in [format!("{method} {path}"), format!("{method} {action}")] {
            if let Some(list) = s.faults.get_mut(&key) {
                if !list.is_empty() {
                    let status = list.remove(0);
                    return ResponseTemplate::new(status)
                        .set_body_json(json!({"detail": "injected"}));
                }
            }
        }
        let id = segments.get(2).map(|s| s.to_string()).unwrap_or_default();
        match (
            method.as_str(),
            segments.get(1).copied().unwrap_or_default(),
            segments.len(),
        ) {
            ("GET", "marketplace-orders", 2) => {
                let states = query_all(req, "state");
                let list: Vec<Value> = s
                    .orders
                    .values()
                    .filter(|o| states.is_empty() || states.iter().any(|st| o["state"] == *st))
                    .cloned()
                    .collect();
                ok(json!(list))
            }
            ("GET", "marketplace-orders", 3) => match s.orders.get(&id) {
                // Simulates someone changing the order between the agent's work and its re-read.
                Some(o)
                    if o.get("reread_state").is_some() && !query_all(req, "field").is_empty() =>
                {
                    ok(json!({"uuid": id, "state": o["reread_state"]}))
                }
                Some(o) => ok(o.clone()),
                None => ResponseTemplate::new(404),
            },
            ("POST", "marketplace-orders", 4) => {
                let Some(order) = s.orders.get_mut(&id) else {
                    return ResponseTemplate::new(404);
                };
                let st = order["state"].as_str().unwrap_or_default().to_owned();
                let (allowed, target) = match action {
                    "approve_by_provider" => (st == "pending-provider", "executing"),
                    "reject_by_provider" => (st == "pending-provider", "rejected"),
                    "set_state_done" => (st == "executing", "done"),
                    "set_state_erred" => (true, "erred"),
                    _ => (false, ""),
                };
                if !allowed {
                    return ResponseTemplate::new(409)
                        .set_body_json(json!({"detail": "Valid states for operation"}));
                }
                order["state"] = json!(target);
                if action == "set_state_erred" {
                    order["error_message"] = body["error_message"].clone();
                    order["error_traceback"] = body["error_traceback"].clone();
                }
                ok(json!({}))
            }
            ("GET", "marketplace-provider-resources", 2) => {
                let states = query_all(req, "state");
                let list: Vec<Value> = s
                    .resources
                    .values()
                    .filter(|r| states.is_empty() || states.iter().any(|st| r["state"] == *st))
                    .cloned()
                    .collect();
                ok(json!(list))
            }
            ("GET", "marketplace-provider-resources", 3) => match s.resources.get(&id) {
                Some(r) => ok(r.clone()),
                None => ResponseTemplate::new(404),
            },
            ("GET", "marketplace-provider-resources", 4) if action == "team" => {
                ok(json!(s.teams.get(&id).cloned().unwrap_or_default()))
            }
            ("POST", "marketplace-provider-resources", 4) => {
                let Some(r) = s.resources.get_mut(&id) else {
                    return ResponseTemplate::new(404);
                };
                match action {
                    "set_backend_id" => r["backend_id"] = body["backend_id"].clone(),
                    "set_limits" => r["limits"] = body["limits"].clone(),
                    "set_backend_metadata" => {
                        r["backend_metadata"] = body["backend_metadata"].clone()
                    }
                    "set_as_ok" => r["state"] = json!("OK"),
                    "set_as_erred" => {
                        r["state"] = json!("Erred");
                        r["error_message"] = body["error_message"].clone();
                    }
                    "set_membership_sync_statuses" => {
                        let stored = body["statuses"].as_array().map_or(0, Vec::len);
                        s.sync_statuses.insert(id.clone(), body["statuses"].clone());
                        return ok(json!({"stored": stored, "skipped": []}));
                    }
                    _ => {}
                }
                ok(json!({"status": "OK"}))
            }
            ("GET", "marketplace-offering-users", 2) => ok(json!(s.offering_users)),
            ("GET", "marketplace-offering-users", 3) => {
                match s.offering_users.iter().find(|u| u["uuid"] == json!(id)) {
                    Some(u) => ok(u.clone()),
                    None => ResponseTemplate::new(404),
                }
            }
            ("PATCH", "marketplace-offering-users", 3) => {
                let Some(u) = s.offering_users.iter_mut().find(|u| u["uuid"] == json!(id)) else {
                    return ResponseTemplate::new(404);
                };
                u["username"] = body["username"].clone();
                u["state"] = json!("OK");
                ok(u.clone())
            }
            ("POST", "marketplace-offering-users", 4) => {
                let Some(u) = s.offering_users.iter_mut().find(|u| u["uuid"] == json!(id)) else {
                    return ResponseTemplate::new(404);
                };
                let target = match action {
                    "begin_creating" => "Creating",
                    "set_error_creating" => "Error creating",
                    "set_pending_account_linking" => "Pending account linking",
                    "set_pending_additional_validation" => "Pending additional validation",
                    "set_validation_complete" => "OK",
                    _ => return ResponseTemplate::new(404),
                };
                u["state"] = json!(target);
                ok(json!({}))
            }
            ("GET", "marketplace-provider-offerings", 3) => ok(s.offering.clone()),
            ("GET", "marketplace-provider-offerings", 4) => {
                let list = match action {
                    "list_project_service_accounts" => s.service_accounts.clone(),
                    "list_course_accounts" => s.course_accounts.clone(),
                    _ => None,
                };
                match list {
                    Some(list) => ok(json!(list)),
                    None => {
                        ResponseTemplate::new(404).set_body_json(json!({"detail": "Not found."}))
                    }
                }
            }
            ("POST", "marketplace-provider-offerings", 4)
                if action == "create_offering_component" =>
            {
                let mut component = body.clone();
                let n = s.offering["components"].as_array().map_or(0, Vec::len) as u32;
                component["uuid"] = json!(uuid(650 + n));
                if let Some(list) = s.offering["components"].as_array_mut() {
                    list.push(component);
                }
                ResponseTemplate::new(201)
            }
            ("POST", "marketplace-provider-offerings", 4)
                if action == "update_offering_component" =>
            {
                let Some(list) = s.offering["components"].as_array_mut() else {
                    return ResponseTemplate::new(400);
                };
                let Some(component) = list.iter_mut().find(|c| c["uuid"] == body["uuid"]) else {
                    return ResponseTemplate::new(400)
                        .set_body_json(json!({"detail": "no such component"}));
                };
                *component = body.clone();
                ok(json!({}))
            }
            ("GET", "users", 3) => ok(json!({
                "uuid": uuid(1), "username": "agent-bot", "full_name": "Agent Bot",
                "email": "", "is_staff": false, "is_support": false, "permissions": []
            })),
            ("POST", "marketplace-provider-offerings", 4)
                if action == "check_unique_backend_id" =>
            {
                let taken = s
                    .resources
                    .values()
                    .any(|r| r["backend_id"] == body["backend_id"]);
                ok(json!({"is_unique": !taken}))
            }
            ("GET", "marketplace-component-usages", 2) => {
                let p = query_all(req, "billing_period").pop().unwrap_or_default();
                match query_all(req, "resource_uuid").pop() {
                    Some(r) => ok(json!(s.usages.get(&(r, p)).cloned().unwrap_or_default())),
                    // By offering (this fake holds one): every resource's records of the month.
                    None => ok(json!(
                        s.usages
                            .iter()
                            .filter(|((_, period), _)| *period == p)
                            .flat_map(|((r, _), records)| records.iter().map(move |rec| {
                                let mut rec = rec.clone();
                                rec["resource_uuid"] = json!(r);
                                rec
                            }))
                            .collect::<Vec<_>>()
                    )),
                }
            }
            ("POST", "marketplace-component-usages", 3) if id == "set_usage" => {
                let r = body["resource"].as_str().unwrap_or_default().to_owned();
                let date = body["date"].as_str().unwrap_or_default();
                let period = format!("{}-01", &date[..7.min(date.len())]);
                let records = s.usages.entry((r, period)).or_default();
                for item in body["usages"].as_array().cloned().unwrap_or_default() {
                    let t = item["type"].clone();
                    match records.iter_mut().find(|rec| rec["type"] == t) {
                        Some(rec) => rec["usage"] = item["amount"].clone(),
                        None => {
                            let n = records.len() as u32 + 7000;
                            records
                                .push(json!({"uuid": uuid(n), "type": t, "usage": item["amount"]}));
                        }
                    }
                }
                ResponseTemplate::new(201)
            }
            ("POST", "marketplace-component-usages", 4) if action == "set_user_usages" => {
                s.user_usages
                    .push(json!({"component_usage": id, "usages": body["usages"]}));
                ResponseTemplate::new(201)
            }
            ("GET", "marketplace-component-user-usages", 2) => ok(json!([])),
            ("GET", "component-user-usage-limits", 2) => ok(json!([])),
            // A current Mastermind: it has agent identities (so it takes past billing periods).
            ("GET", "marketplace-site-agent-identities", 2) => ok(json!([])),
            ("GET", "marketplace-plans", 3) => ok(json!({"uuid": id, "quotas": {}})),
            ("GET", "marketplace-service-providers", 2) => ok(json!([{"uuid": uuid(800)}])),
            ("GET", "marketplace-service-providers", 4) => ok(json!([])),
            _ => ResponseTemplate::new(404).set_body_json(json!({"detail": "Not found."})),
        }
    }
}

pub struct Harness {
    pub server: MockServer,
    pub waldur: FakeWaldur,
    pub backend: MemoryBackend,
    pub ctx: OfferingContext,
}

pub async fn harness() -> Harness {
    harness_with(|_| {}).await
}

pub async fn harness_with(adjust: impl FnOnce(&mut OfferingConfig)) -> Harness {
    let server = MockServer::start().await;
    let waldur = FakeWaldur {
        state: Arc::new(Mutex::new(State::default())),
    };
    waldur.lock().offering = json!({
        "uuid": OFFERING, "customer_uuid": uuid(700),
        "components": [{"uuid": uuid(600), "type": "cpu", "billing_type": "usage"},
                       {"uuid": uuid(601), "type": "mem", "billing_type": "usage"}],
        "plugin_options": {}
    });
    Mock::given(wiremock::matchers::any())
        .respond_with(waldur.clone())
        .mount(&server)
        .await;
    let backend = MemoryBackend::new();
    let handles = backend.handles();
    let backends = OfferingBackends {
        orders: handles.orders.clone(),
        membership: handles.membership.clone(),
        usage: handles.usage.clone(),
        usernames: Arc::new(BaseUsernameBackend),
        health: vec![handles.health.clone()],
    };
    let mut config: OfferingConfig = serde_json::from_value(json!({
        "name": "test offering", "waldur_api_url": format!("{}/api/", server.uri()),
        "waldur_api_token": TOKEN, "waldur_offering_uuid": OFFERING, "backend_type": "memory"
    }))
    .expect("offering config");
    adjust(&mut config);
    let client = WaldurClient::new(ClientOptions::new(
        config.waldur_api_url.clone(),
        Auth::Token(Secret::new(TOKEN)),
    ))
    .expect("client");
    let ctx = OfferingContext::new(config, client, backends, CoreSettings::default());
    Harness {
        server,
        waldur,
        backend,
        ctx,
    }
}
