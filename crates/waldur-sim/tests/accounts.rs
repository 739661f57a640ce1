//! Service and course accounts: seeded and staff-created accounts are listed per offering, and
//! create/close send the §7.4 `service_account` / `course_account` events.

use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use waldur_sim::consumer::ConsumerClient;
use waldur_sim::{Seed, SimOptions, SimServer};

async fn call(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("Authorization", format!("Token {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request reaches the simulator");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn sim_url(sim: &SimServer, path: &str) -> String {
    format!("http://{}/{path}", sim.addr())
}

async fn start() -> SimServer {
    let seed = Seed::from_yaml(
        "service_accounts:\n  - {project: Demo project, username: svc-seeded, email: svc@example.com}\n\
         course_accounts:\n  - {project: Demo project, username: student1, user: alice, state: Pending}\n",
    )
    .expect("seed parses");
    SimServer::start(SimOptions {
        demo: true,
        seed: Some(seed),
        ..Default::default()
    })
    .await
    .expect("simulator starts")
}

async fn list(sim: &SimServer, action: &str, query: &str) -> Vec<Value> {
    let d = sim.demo();
    let (s, v) = call(
        reqwest::Method::GET,
        format!(
            "{}marketplace-provider-offerings/{}/{action}/{query}",
            d.api_url, d.offering_uuid
        ),
        &d.provider_token,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().expect("a list").clone()
}

#[tokio::test]
async fn accounts_are_listed_for_offerings_with_resources_in_their_project() {
    let sim = start().await;
    let d = sim.demo().clone();
    assert!(
        list(&sim, "list_project_service_accounts", "")
            .await
            .is_empty(),
        "no resource of the offering in the project yet"
    );
    let mut limits = Map::new();
    limits.insert("cpu".into(), json!(1));
    ConsumerClient::new(&d.api_url, &d.consumer_token)
        .create_order(
            &d.offering_uuid,
            &d.project_uuid,
            Some(&d.plan_uuid),
            limits,
            "acc",
        )
        .await
        .expect("order placed");
    let services = list(&sim, "list_project_service_accounts", "").await;
    assert_eq!(services.len(), 1);
    assert_eq!(services[0]["username"], "svc-seeded");
    assert_eq!(services[0]["email"], "svc@example.com");
    assert_eq!(services[0]["state"], "OK");
    assert_eq!(services[0]["project_uuid"], json!(d.project_uuid));
    let courses = list(&sim, "list_course_accounts", "").await;
    assert_eq!(courses.len(), 1);
    assert_eq!(courses[0]["username"], "student1");
    assert_eq!(courses[0]["state"], "Pending");
    let alice = d
        .users
        .iter()
        .find(|u| u.username == "alice")
        .expect("alice");
    assert_eq!(courses[0]["user_uuid"], json!(alice.uuid));
    assert_eq!(courses[0]["project_slug"], "demo-project");
    assert!(
        list(&sim, "list_course_accounts", "?state=OK")
            .await
            .is_empty(),
        "state filter"
    );
    // Consumers do not manage the offering.
    let (s, _) = call(
        reqwest::Method::GET,
        format!(
            "{}marketplace-provider-offerings/{}/list_course_accounts/",
            d.api_url, d.offering_uuid
        ),
        &d.consumer_token,
        None,
    )
    .await;
    assert!(
        s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND,
        "{s}"
    );
}

#[tokio::test]
async fn creating_and_closing_accounts_send_events() {
    let sim = start().await;
    let d = sim.demo().clone();
    let mut limits = Map::new();
    limits.insert("cpu".into(), json!(1));
    ConsumerClient::new(&d.api_url, &d.consumer_token)
        .create_order(
            &d.offering_uuid,
            &d.project_uuid,
            Some(&d.plan_uuid),
            limits,
            "acc",
        )
        .await
        .expect("order placed");
    let body = json!({"kind": "service", "project": d.project_uuid, "username": "svc-new"});
    let (s, _) = call(
        reqwest::Method::POST,
        sim_url(&sim, "__sim/project-accounts"),
        &d.consumer_token,
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "staff only");
    let (s, created) = call(
        reqwest::Method::POST,
        sim_url(&sim, "__sim/project-accounts"),
        &d.staff_token,
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let account = created["uuid"].as_str().expect("uuid").to_string();
    assert_eq!(
        list(&sim, "list_project_service_accounts", "").await.len(),
        2
    );

    let (s, closed) = call(
        reqwest::Method::POST,
        sim_url(&sim, &format!("__sim/project-accounts/{account}/close")),
        &d.staff_token,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(closed["state"], "Closed");
    let (s, _) = call(
        reqwest::Method::POST,
        sim_url(&sim, &format!("__sim/project-accounts/{account}/close")),
        &d.staff_token,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "already closed");

    let payloads: Vec<Value> = sim
        .events()
        .into_iter()
        .filter(|e| e.event.object_type == "service_account")
        .map(|e| {
            assert_eq!(e.event.offering_uuid, d.offering_uuid);
            e.event.payload
        })
        .collect();
    let expected = |action: &str| {
        json!({
            "account_uuid": account,
            "account_username": "svc-new",
            "scope_type": "project",
            "project_uuid": d.project_uuid,
            "project_name": "Demo project",
            "action": action,
        })
    };
    assert_eq!(payloads, vec![expected("create"), expected("delete")]);

    let (s, bad) = call(
        reqwest::Method::POST,
        sim_url(&sim, "__sim/project-accounts"),
        &d.staff_token,
        Some(json!({"kind": "robot", "project": d.project_uuid, "username": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
}
