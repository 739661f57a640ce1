//! Black-box tests of the simulator over HTTP: auth and error shapes, the order, resource and
//! offering-user state machines, pagination, usage upserts, faults, stats and events.

use reqwest::StatusCode;
use serde_json::{Value, json};
use waldur_sim::{FaultConfig, FaultRule, SimOptions, SimServer};

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(sim: &SimServer) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Api {
            base: sim.api_url(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        };
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Token {t}"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the simulator");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body is readable");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("body is JSON")
        };
        (status, headers, value)
    }

    async fn get(
        &self,
        path: &str,
        token: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self
            .call(reqwest::Method::POST, path, Some(token), Some(body))
            .await;
        (s, v)
    }
}

async fn create_order(api: &Api, sim: &SimServer, token: &str, name: &str) -> Value {
    let d = sim.demo();
    let (status, order) = api
        .post("marketplace-orders/", token, json!({
            "offering": format!("{}marketplace-public-offerings/{}/", d.api_url, d.offering_uuid),
            "project": d.project_uuid,
            "plan": d.plan_uuid,
            "limits": {"cpu": 10, "gpu": 2},
            "attributes": {"name": name},
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    order
}

#[tokio::test]
async fn authentication_errors_have_drf_shapes() {
    let sim = SimServer::start_demo().await.expect("simulator starts");
    let api = Api::new(&sim);
    let (s, h, v) = api
        .call(reqwest::Method::GET, "users/me/", None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        v,
        json!({"detail": "Authentication credentials were not provided."})
    );
    assert_eq!(
        h.get("www-authenticate").and_then(|x| x.to_str().ok()),
        Some("Token")
    );
    let (s, _, v) = api.get("users/me/", "nope").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["detail"], "Invalid token.");
    let (s, _, v) = api.get("users/me/", &sim.demo().provider_token).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["username"], "provider-owner");
    assert_eq!(v["permissions"][0]["role_name"], "CUSTOMER.OWNER");
    let (s, _, v) = api
        .get(
            "marketplace-orders/00000000000000000000000000000000/",
            &sim.demo().provider_token,
        )
        .await;
    assert_eq!(
        (s, v),
        (StatusCode::NOT_FOUND, json!({"detail": "Not found."}))
    );
}

#[tokio::test]
async fn order_lifecycle_moves_resource_states() {
    let sim = SimServer::start_demo().await.expect("simulator starts");
    let api = Api::new(&sim);
    let d = sim.demo().clone();
    let order = create_order(&api, &sim, &d.consumer_token, "alloc one").await;
    assert_eq!(
        order["state"], "pending-provider",
        "owner orders skip consumer review"
    );
    assert_eq!(order["type"], "Create");
    let ou = order["uuid"].as_str().expect("uuid").to_string();
    assert_eq!(ou.len(), 32, "UUIDs are 32-hex");
    let res = order["marketplace_resource_uuid"]
        .as_str()
        .expect("resource uuid")
        .to_string();
    let p = &d.provider_token;

    let (_, _, r) = api
        .get(&format!("marketplace-provider-resources/{res}/"), p)
        .await;
    assert_eq!(r["state"], "Creating");
    assert_eq!(r["limits"], json!({"cpu": 10, "gpu": 2}));

    let (s, v) = api
        .post(
            &format!("marketplace-orders/{ou}/set_state_done/"),
            p,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v,
        json!({"detail": "Valid states for operation: executing."})
    );

    // The consumer can see the order but may not act as provider.
    let (s, _) = api
        .post(
            &format!("marketplace-orders/{ou}/approve_by_provider/"),
            &d.consumer_token,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, _) = api
        .post(
            &format!("marketplace-orders/{ou}/approve_by_provider/"),
            p,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = api
        .post(
            &format!("marketplace-orders/{ou}/approve_by_provider/"),
            p,
            json!({}),
        )
        .await;
    assert_eq!(
        (s, v["detail"].clone()),
        (
            StatusCode::CONFLICT,
            json!("Valid states for operation: pending-provider.")
        )
    );

    let (s, v) = api
        .post(
            &format!("marketplace-provider-resources/{res}/set_backend_id/"),
            p,
            json!({"backend_id": "acc1"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = api
        .post(
            &format!("marketplace-orders/{ou}/set_state_done/"),
            p,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, o) = api
        .get(
            &format!("marketplace-orders/{ou}/?field=state&field=completed_at"),
            p,
        )
        .await;
    assert_eq!(
        o.as_object().map(|m| m.len()),
        Some(2),
        "field= selects keys: {o}"
    );
    assert_eq!(o["state"], "done");
    assert!(o["completed_at"].is_string());
    let (_, _, r) = api
        .get(&format!("marketplace-resources/{res}/"), &d.consumer_token)
        .await;
    assert_eq!(r["state"], "OK");
    assert_eq!(r["backend_id"], "acc1");

    // Update: resource Updating, limits copied on done.
    let (s, v) = api
        .post(
            &format!("marketplace-resources/{res}/update_limits/"),
            &d.consumer_token,
            json!({"limits": {"cpu": 42}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let upd = v["order_uuid"].as_str().expect("order uuid").to_string();
    assert_eq!(
        sim.state()
            .resources
            .values()
            .next()
            .map(|r| r.state.clone()),
        Some("Updating".into())
    );
    api.post(
        &format!("marketplace-orders/{upd}/approve_by_provider/"),
        p,
        json!({}),
    )
    .await;
    let (s, _) = api
        .post(
            &format!("marketplace-orders/{upd}/set_state_done/"),
            p,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, r) = api
        .get(&format!("marketplace-provider-resources/{res}/"), p)
        .await;
    assert_eq!(
        (r["state"].clone(), r["limits"]["cpu"].clone()),
        (json!("OK"), json!(42))
    );

    // Terminate erred → back to OK; then terminate done → Terminated.
    let (_, v) = api
        .post(
            &format!("marketplace-resources/{res}/terminate/"),
            &d.consumer_token,
            json!({}),
        )
        .await;
    let t1 = v["order_uuid"].as_str().expect("order uuid").to_string();
    let (s, _) = api
        .post(
            &format!("marketplace-orders/{t1}/set_state_erred/"),
            p,
            json!({"error_message": "boom"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, r) = api
        .get(&format!("marketplace-provider-resources/{res}/"), p)
        .await;
    assert_eq!(r["state"], "OK");
    let (_, v) = api
        .post(
            &format!("marketplace-resources/{res}/terminate/"),
            &d.consumer_token,
            json!({}),
        )
        .await;
    let t2 = v["order_uuid"].as_str().expect("order uuid").to_string();
    api.post(
        &format!("marketplace-orders/{t2}/approve_by_provider/"),
        p,
        json!({}),
    )
    .await;
    api.post(
        &format!("marketplace-orders/{t2}/set_state_done/"),
        p,
        json!({}),
    )
    .await;
    let (_, _, r) = api
        .get(&format!("marketplace-provider-resources/{res}/"), p)
        .await;
    assert_eq!(r["state"], "Terminated");
    let (s, v) = api
        .post(
            &format!("marketplace-resources/{res}/terminate/"),
            &d.consumer_token,
            json!({}),
        )
        .await;
    assert_eq!(
        (s, v["detail"].clone()),
        (
            StatusCode::CONFLICT,
            json!("Valid states for operation: OK, Erred.")
        )
    );
}

#[tokio::test]
async fn member_orders_need_consumer_approval_and_rejection_terminates() {
    let sim = SimServer::start_demo().await.expect("simulator starts");
    let api = Api::new(&sim);
    let d = sim.demo().clone();
    let alice = &d.users[0];
    let (s, v) = api
        .post(
            &format!("projects/{}/add_user/", d.project_uuid),
            &d.consumer_token,
            json!({"user": alice.uuid, "role": "PROJECT.MEMBER"}),
        )
        .await;
    assert_eq!(
        (s, v),
        (StatusCode::CREATED, json!({"expiration_time": null}))
    );
    let order = create_order(&api, &sim, &alice.token, "alice alloc").await;
    assert_eq!(order["state"], "pending-consumer");
    let ou = order["uuid"].as_str().expect("uuid");
    let (s, _) = api
        .post(
            &format!("marketplace-orders/{ou}/approve_by_consumer/"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a plain member cannot approve");
    // An unrelated user does not even see the order.
    let (s, _, _) = api
        .get(&format!("marketplace-orders/{ou}/"), &d.users[1].token)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api
        .post(
            &format!("marketplace-orders/{ou}/approve_by_consumer/"),
            &d.consumer_token,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api
        .post(
            &format!("marketplace-orders/{ou}/reject_by_provider/"),
            &d.provider_token,
            json!({"provider_rejection_comment": "no"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, o) = api
        .get(&format!("marketplace-orders/{ou}/"), &d.provider_token)
        .await;
    assert_eq!(
        (o["state"].clone(), o["provider_rejection_comment"].clone()),
        (json!("rejected"), json!("no"))
    );
    let res = o["marketplace_resource_uuid"].as_str().expect("resource");
    let (_, _, r) = api
        .get(
            &format!("marketplace-provider-resources/{res}/"),
            &d.provider_token,
        )
        .await;
    assert_eq!(r["state"], "Terminated");
    // Offering user created as Mastermind does, with the waldur username at once.
    let (_, _, ous) = api
        .get(
            &format!(
                "marketplace-offering-users/?offering_uuid={}&user_uuid={}",
                d.offering_uuid, alice.uuid
            ),
            &d.provider_token,
        )
        .await;
    assert_eq!(ous[0]["username"], "alice");
    assert_eq!(ous[0]["state"], "OK");
}

#[tokio::test]
async fn pagination_headers_filters_and_errors() {
    let sim = SimServer::start_demo().await.expect("simulator starts");
    let api = Api::new(&sim);
    let d = sim.demo().clone();
    for i in 0..12 {
        create_order(&api, &sim, &d.consumer_token, &format!("alloc {i}")).await;
    }
    let p = &d.provider_token;
    let (s, h, v) = api
        .get(
            "marketplace-orders/?state=pending-provider&state=executing",
            p,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().map(Vec::len), Some(10), "default page size");
    assert_eq!(h["x-result-count"], "12");
    let link = h["link"].to_str().expect("ascii link");
    assert!(
        link.contains("rel=\"next\"") && link.contains("page=2") && link.starts_with("<http://"),
        "{link}"
    );
    assert!(!link.contains("rel=\"prev\""));
    let (_, h, v) = api.get("marketplace-orders/?page=2&page_size=5", p).await;
    assert_eq!(v.as_array().map(Vec::len), Some(5));
    let link = h["link"].to_str().expect("ascii link");
    assert!(
        link.contains("rel=\"prev\"") && link.contains("page=3>; rel=\"last\""),
        "{link}"
    );
    let (s, _, v) = api.get("marketplace-orders/?page=9", p).await;
    assert_eq!(
        (s, v),
        (StatusCode::NOT_FOUND, json!({"detail": "Invalid page."}))
    );
    let (_, _, v) = api.get("marketplace-orders/?page_size=1000", p).await;
    assert_eq!(v.as_array().map(Vec::len), Some(12));
    let (s, _, v) = api.get("marketplace-orders/?state=bogus", p).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["state"][0],
        "Select a valid choice. bogus is not one of the available choices."
    );
    let (_, h, v) = api.get("marketplace-orders/?state=done", p).await;
    assert_eq!(
        (v, h["x-result-count"].clone()),
        (json!([]), "0".parse().expect("header"))
    );
    // Dashed UUIDs are accepted in filters and paths.
    let dashed = uuid::Uuid::try_parse(&d.offering_uuid)
        .expect("uuid")
        .hyphenated()
        .to_string();
    let (_, h, _) = api
        .get(&format!("marketplace-orders/?offering_uuid={dashed}"), p)
        .await;
    assert_eq!(h["x-result-count"], "12");
    let (s, _, v) = api
        .get(&format!("marketplace-provider-offerings/{dashed}/"), p)
        .await;
    assert_eq!(
        (s, v["type"].clone()),
        (StatusCode::OK, json!("Marketplace.Slurm"))
    );
    // HEAD returns the count only.
    let (s, h, v) = api
        .call(reqwest::Method::HEAD, "marketplace-orders/", Some(p), None)
        .await;
    assert_eq!(
        (s, h["x-result-count"].to_str().ok(), v),
        (StatusCode::OK, Some("12"), Value::Null)
    );
}

#[tokio::test]
async fn offering_user_state_machine_with_service_provider_policy() {
    let sim = SimServer::start(SimOptions {
        demo: true,
        demo_username_policy: "service_provider".into(),
        ..Default::default()
    })
    .await
    .expect("simulator starts");
    let api = Api::new(&sim);
    let d = sim.demo().clone();
    create_order(&api, &sim, &d.consumer_token, "alloc").await;
    api.post(
        &format!("projects/{}/add_user/", d.project_uuid),
        &d.consumer_token,
        json!({"user": d.users[1].uuid, "role": "PROJECT.ADMIN"}),
    )
    .await;
    let (_, _, list) = api
        .get(
            &format!("marketplace-offering-users/?user_uuid={}", d.users[1].uuid),
            &d.provider_token,
        )
        .await;
    assert_eq!(list[0]["state"], "Requested");
    assert!(list[0]["username"].is_null());
    let ou = list[0]["uuid"].as_str().expect("uuid").to_string();
    let p = &d.provider_token;
    let (s, _) = api
        .post(
            &format!("marketplace-offering-users/{ou}/set_validation_complete/"),
            p,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        api.post(
            &format!("marketplace-offering-users/{ou}/begin_creating/"),
            p,
            json!({})
        )
        .await
        .0,
        StatusCode::OK
    );
    let (s, v) = api
        .post(
            &format!("marketplace-offering-users/{ou}/begin_creating/"),
            p,
            json!({}),
        )
        .await;
    assert_eq!(
        (s, v["detail"].clone()),
        (
            StatusCode::CONFLICT,
            json!("Valid states for operation: Requested, Error creating.")
        )
    );
    let (s, v) = api
        .post(
            &format!("marketplace-offering-users/{ou}/set_pending_account_linking/"),
            p,
            json!({"comment": "link", "comment_url": "https://idp"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _, v) = api
        .call(
            reqwest::Method::PATCH,
            &format!("marketplace-offering-users/{ou}/"),
            Some(p),
            Some(json!({"username": "bob01"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["state"].clone(), v["username"].clone()),
        (json!("OK"), json!("bob01")),
        "username promotes to OK"
    );
    let events = sim.events();
    let ev = events
        .iter()
        .find(|e| e.event.object_type == "offering_user")
        .expect("offering_user event");
    assert_eq!(ev.event.payload["username"], "bob01");
    assert_eq!(ev.event.payload["state"], 5);
    assert!(
        events
            .iter()
            .any(|e| e.event.object_type == "user_role" && e.event.payload["granted"] == true)
    );
}

#[tokio::test]
async fn set_usage_upserts_and_validates() {
    let sim = SimServer::start_demo().await.expect("simulator starts");
    let api = Api::new(&sim);
    let d = sim.demo().clone();
    let p = &d.provider_token;
    let order = create_order(&api, &sim, &d.consumer_token, "alloc").await;
    let res = order["marketplace_resource_uuid"]
        .as_str()
        .expect("resource")
        .to_string();
    let (s, v) = api
        .post(
            "marketplace-component-usages/set_usage/",
            p,
            json!({"resource": res, "usages": [{"type": "cpu", "amount": "1.00"}]}),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::BAD_REQUEST,
            json!({"resource": ["Resource is not in valid state."]})
        ),
        "Creating resources reject usage"
    );
    let ou = order["uuid"].as_str().expect("uuid");
    api.post(
        &format!("marketplace-orders/{ou}/approve_by_provider/"),
        p,
        json!({}),
    )
    .await;
    api.post(
        &format!("marketplace-orders/{ou}/set_state_done/"),
        p,
        json!({}),
    )
    .await;
    for amount in ["1.50", "2.25"] {
        let (s, v) = api.post("marketplace-component-usages/set_usage/", p, json!({"resource": res, "usages": [{"type": "cpu", "amount": amount}, {"type": "mem", "amount": 3}]})).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (_, h, v) = api
        .get(
            &format!("marketplace-component-usages/?resource_uuid={res}&type=cpu"),
            p,
        )
        .await;
    assert_eq!(
        h["x-result-count"], "1",
        "one row per resource, component and month"
    );
    assert_eq!(v[0]["usage"], "2.25");
    let (s, v) = api
        .post(
            "marketplace-component-usages/set_usage/",
            p,
            json!({"resource": res, "usages": [{"type": "disk", "amount": "1"}]}),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::BAD_REQUEST,
            json!(["These components are invalid: disk."])
        )
    );
    let (s, v) = api
        .post(
            "marketplace-component-usages/set_usage/",
            p,
            json!({"resource": res, "usages": [{"type": "cpu", "amount": "1.234"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["usages"][0]["amount"][0],
        "Ensure that there are no more than 2 decimal places."
    );
    let (s, v) = api
        .post(
            "marketplace-component-usages/set_usage/",
            p,
            json!({"usages": []}),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::BAD_REQUEST,
            json!(["Either plan_period or resource should be provided."])
        )
    );
    // Per-user usage attached to the component usage row.
    let (_, _, rows) = api
        .get(
            &format!("marketplace-component-usages/?resource_uuid={res}&type=cpu"),
            p,
        )
        .await;
    let cu = rows[0]["uuid"].as_str().expect("uuid");
    let (s, _) = api.post(&format!("marketplace-component-usages/{cu}/set_user_usages/"), p, json!({"usages": [{"username": "alice", "usage": "1.00"}, {"username": "bob", "usage": "0.50"}]})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, h, _) = api
        .get(
            &format!("marketplace-component-user-usages/?resource_uuid={res}"),
            p,
        )
        .await;
    assert_eq!(h["x-result-count"], "2");
    // The consumer cannot report usage.
    let (s, _) = api
        .post(
            "marketplace-component-usages/set_usage/",
            &d.consumer_token,
            json!({"resource": res, "usages": [{"type": "cpu", "amount": "1"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn faults_and_stats_are_per_route() {
    let sim = SimServer::start_demo().await.expect("simulator starts");
    let api = Api::new(&sim);
    let p = sim.demo().provider_token.clone();
    sim.set_faults(FaultConfig {
        seed: 7,
        rules: vec![FaultRule {
            route: "/api/version/".into(),
            method: None,
            error_rate: 1.0,
            error_status: 503,
            latency_ms: 0,
            drop_rate: 0.0,
            drop_after_rate: 0.0,
        }],
    });
    let (s, _, v) = api.get("version/", &p).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"detail": "Simulated fault."})
        )
    );
    let (s, _, _) = api.get("users/me/", &p).await;
    assert_eq!(s, StatusCode::OK, "other routes unaffected");
    let stats = sim.stats();
    assert_eq!(stats.count("GET", "/api/version/"), 1);
    assert_eq!(stats.routes["GET /api/version/"].errors, 1);
    assert_eq!(stats.count("GET", "/api/users/me/"), 1);
    // Admin endpoint needs staff; it reports the same counters.
    let (s, _, _) = api
        .get(
            &format!("{}__sim/stats", api.base.trim_end_matches("api/")),
            &p,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, v) = api
        .get(
            &format!("{}__sim/stats", api.base.trim_end_matches("api/")),
            &sim.demo().staff_token,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["routes"]["GET /api/version/"]["count"], 1);
    sim.set_faults(FaultConfig::default());
    assert_eq!(api.get("version/", &p).await.0, StatusCode::OK);
}

#[tokio::test]
async fn events_reach_legacy_and_unified_queues() {
    let sim = SimServer::start_demo().await.expect("simulator starts");
    let api = Api::new(&sim);
    let d = sim.demo().clone();
    let p = &d.provider_token;
    let (s, ident) = api
        .post(
            "marketplace-site-agent-identities/",
            p,
            json!({"offering": d.offering_uuid, "name": format!("agent-{}", d.offering_uuid)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ident}");
    let iu = ident["uuid"].as_str().expect("uuid");
    let (s, svc) = api
        .post(
            &format!("marketplace-site-agent-identities/{iu}/register_service/"),
            p,
            json!({"name": "order_process", "mode": "order_process"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api
        .post(
            &format!("marketplace-site-agent-identities/{iu}/register_service/"),
            p,
            json!({"name": "order_process"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "idempotent by name");
    let su = svc["uuid"].as_str().expect("uuid");
    let (s, _) = api
        .post(
            &format!("marketplace-site-agent-services/{su}/register_processor/"),
            p,
            json!({"name": "P", "backend_type": "slurm"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, sub) = api
        .post(
            &format!("marketplace-site-agent-identities/{iu}/register_event_subscription/"),
            p,
            json!({"observable_object_type": "order"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let sub_uuid = sub["uuid"].as_str().expect("uuid").to_string();
    let (s, q) = api
        .post(
            &format!("event-subscriptions/{sub_uuid}/create_queue/"),
            p,
            json!({"offering_uuid": d.offering_uuid, "object_type": "order"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        q["queue_name"],
        format!("subscription_{sub_uuid}_offering_{}_order", d.offering_uuid)
    );
    let (s, uq) = api
        .post(
            &format!("marketplace-site-agent-identities/{iu}/register_queue/"),
            p,
            json!({"object_types": ["order"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let order = create_order(&api, &sim, &d.consumer_token, "evented").await;
    let events = sim.events();
    let rec = events
        .iter()
        .find(|e| e.event.object_type == "order")
        .expect("order event");
    assert_eq!(
        rec.event.payload,
        json!({"order_uuid": order["uuid"], "order_state": "pending-provider"})
    );
    let legacy = rec
        .deliveries
        .iter()
        .find(|x| x.path == "legacy")
        .expect("legacy delivery");
    assert_eq!(legacy.queue_name, q["queue_name"].as_str().expect("name"));
    assert_eq!(legacy.vhost, sub["user_uuid"].as_str().expect("user uuid"));
    let unified = rec
        .deliveries
        .iter()
        .find(|x| x.path == "unified")
        .expect("unified delivery");
    assert_eq!(unified.queue_name, uq["queue_name"].as_str().expect("name"));
    assert_eq!(unified.payload["order_type"], "Create");
    assert_eq!(unified.payload["object_type"], "order");
}

async fn order_with_limits(api: &Api, sim: &SimServer, limits: Value) -> (StatusCode, Value) {
    let d = sim.demo();
    api.post(
        "marketplace-orders/",
        &d.consumer_token,
        json!({
            "offering": format!("{}marketplace-public-offerings/{}/", d.api_url, d.offering_uuid),
            "project": d.project_uuid,
            "plan": d.plan_uuid,
            "limits": limits,
            "attributes": {"name": "bounded"},
        }),
    )
    .await
}

#[tokio::test]
async fn order_limits_are_checked_against_min_and_max_value_like_mastermind() {
    let sim = SimServer::start_demo().await.expect("simulator starts");
    let api = Api::new(&sim);
    let d = sim.demo().clone();
    // Without bounds Mastermind takes any non-negative number, however large.
    let (s, v) = order_with_limits(&api, &sim, json!({"gpu": 1e30})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = order_with_limits(&api, &sim, json!({"gpu": -1})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // The provider sets bounds on the limit-based gpu component.
    let offering = format!("marketplace-provider-offerings/{}/", d.offering_uuid);
    let (_, _, o) = api.get(&offering, &d.provider_token).await;
    let gpu = o["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["type"] == "gpu")
        .expect("gpu component")
        .clone();
    let (s, v) = api
        .post(
            &format!("{offering}update_offering_component/"),
            &d.provider_token,
            json!({"uuid": gpu["uuid"], "type": "gpu", "name": gpu["name"],
                   "billing_type": "limit", "measured_unit": gpu["measured_unit"],
                   "unit_factor": gpu["unit_factor"], "limit_period": gpu["limit_period"],
                   "min_value": 2, "max_value": 10}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, _, o) = api.get(&offering, &d.provider_token).await;
    let gpu = o["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["type"] == "gpu")
        .expect("gpu component")
        .clone();
    assert_eq!(
        (gpu["min_value"].clone(), gpu["max_value"].clone()),
        (json!(2), json!(10))
    );

    for (limit, message) in [
        (json!(11), "The limit 11 value cannot be more than 10."),
        (json!(1e30), "The limit 1e+30 value cannot be more than 10."),
        (json!(1), "The limit 1 value cannot be less than 2."),
    ] {
        let (s, v) = order_with_limits(&api, &sim, json!({"gpu": limit})).await;
        assert_eq!(
            (s, v),
            (
                StatusCode::BAD_REQUEST,
                json!({"non_field_errors": [message]})
            )
        );
    }
    let (s, v) = order_with_limits(&api, &sim, json!({"gpu": 10, "cpu": 1e9})).await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "within bounds; usage components are not bounded: {v}"
    );
}

#[tokio::test]
async fn demo_offering_kind_okd_seeds_the_okd_offering() {
    let sim = SimServer::start(SimOptions {
        demo: true,
        demo_offering_kind: waldur_sim::DemoOfferingKind::Okd,
        ..Default::default()
    })
    .await
    .expect("simulator starts");
    let api = Api::new(&sim);
    let demo = sim.demo().clone();
    assert!(!demo.offering_uuid.is_empty() && !demo.plan_uuid.is_empty());
    let (status, _, o) = api
        .get(
            &format!("marketplace-provider-offerings/{}/", demo.offering_uuid),
            &demo.provider_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{o}");
    assert_eq!(o["name"], "Demo OKD cluster");
    assert_eq!(o["type"], "Marketplace.Slurm");
    let comps: Vec<(String, String, String)> = o["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or("").to_string(),
                c["billing_type"].as_str().unwrap_or("").to_string(),
                c["measured_unit"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want = [
        ("cpu", "Core"),
        ("memory", "GB"),
        ("storage", "GB"),
        ("pods", "Count"),
    ];
    assert_eq!(comps.len(), 4, "{comps:?}");
    for (t, unit) in want {
        assert!(
            comps.contains(&(t.to_string(), "limit".to_string(), unit.to_string())),
            "{t}: {comps:?}"
        );
    }
    // The default stays the SLURM offering.
    let slurm = SimServer::start_demo().await.expect("simulator starts");
    let (_, _, o) = api
        .get(
            &format!(
                "{}marketplace-provider-offerings/{}/",
                slurm.api_url(),
                slurm.demo().offering_uuid
            ),
            &slurm.demo().provider_token,
        )
        .await;
    assert_eq!(o["name"], "Demo SLURM cluster");
    assert!("okd".parse::<waldur_sim::DemoOfferingKind>().is_ok());
    assert!("rancher".parse::<waldur_sim::DemoOfferingKind>().is_ok());
    assert!(
        "no-such-kind"
            .parse::<waldur_sim::DemoOfferingKind>()
            .is_err()
    );
}
