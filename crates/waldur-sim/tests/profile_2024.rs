//! The `2024` API profile: a Mastermind from late 2024, as the simulator answers it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use waldur_sim::{ApiProfile, SimOptions, SimServer};

async fn sim(profile: ApiProfile) -> SimServer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    SimServer::start(SimOptions {
        demo: true,
        api_profile: profile,
        ..Default::default()
    })
    .await
    .expect("simulator starts")
}

struct Reply {
    status: StatusCode,
    content_type: String,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    fn is_django_404(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
            && self.content_type.starts_with("text/html")
            && self.text.contains("<h1>Not Found</h1>")
    }
}

async fn call(
    sim: &SimServer,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    let url = format!("{}{path}", sim.api_url());
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("Authorization", format!("Token {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request reaches the simulator");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.expect("body");
    Reply {
        status,
        content_type,
        text,
    }
}

async fn get(sim: &SimServer, path: &str) -> Reply {
    call(sim, Method::GET, path, &sim.demo().provider_token, None).await
}

async fn post(sim: &SimServer, path: &str, body: Value) -> Reply {
    call(
        sim,
        Method::POST,
        path,
        &sim.demo().provider_token,
        Some(body),
    )
    .await
}

/// A Create order by the consumer, approved by the provider: (order, resource).
async fn approved_create(sim: &SimServer, name: &str) -> (String, String) {
    let d = sim.demo().clone();
    let order = call(
        sim,
        Method::POST,
        "marketplace-orders/",
        &d.consumer_token,
        Some(json!({
            "offering": format!("{}marketplace-public-offerings/{}/", d.api_url, d.offering_uuid),
            "project": d.project_uuid,
            "plan": d.plan_uuid,
            "limits": {"cpu": 10, "gpu": 2},
            "attributes": {"name": name},
        })),
    )
    .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.text);
    let order = order.json();
    let uuid = order["uuid"].as_str().expect("uuid").to_owned();
    let resource = order["marketplace_resource_uuid"]
        .as_str()
        .expect("resource")
        .to_owned();
    if order["state"] == "pending-consumer" {
        let r = call(
            sim,
            Method::POST,
            &format!("marketplace-orders/{uuid}/approve_by_consumer/"),
            &d.consumer_token,
            None,
        )
        .await;
        assert!(r.status.is_success(), "{}", r.text);
    }
    let r = post(
        sim,
        &format!("marketplace-orders/{uuid}/approve_by_provider/"),
        json!({}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    (uuid, resource)
}

async fn order_state(sim: &SimServer, order: &str) -> Value {
    get(sim, &format!("marketplace-orders/{order}/"))
        .await
        .json()
}

#[tokio::test]
async fn endpoints_of_later_servers_answer_djangos_html_404() {
    let sim = sim(ApiProfile::Mastermind2024).await;
    let d = sim.demo().clone();
    let r = get(&sim, "marketplace-site-agent-identities/").await;
    assert!(
        r.is_django_404(),
        "{} {} {}",
        r.status,
        r.content_type,
        r.text
    );
    for path in [
        "event-subscriptions/",
        "component-user-usage-limits/",
        "marketplace-resource-api-keys/",
        "backend-resources/",
        "no-such-endpoint/",
    ] {
        let r = get(&sim, path).await;
        assert!(r.is_django_404(), "{path}: {} {}", r.status, r.text);
    }
    let (_, resource) = approved_create(&sim, "alloc-404").await;
    for action in [
        "refresh_last_sync",
        "set_limits",
        "set_as_ok",
        "set_endpoints",
        "set_membership_sync_statuses",
        "set_paused",
    ] {
        let r = post(
            &sim,
            &format!("marketplace-provider-resources/{resource}/{action}/"),
            json!({}),
        )
        .await;
        assert!(r.is_django_404(), "{action}: {} {}", r.status, r.text);
    }
    // What the 2024 server does have still works.
    let r = post(
        &sim,
        &format!("marketplace-provider-resources/{resource}/set_backend_id/"),
        json!({"backend_id": "alloc_404"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = post(
        &sim,
        &format!(
            "marketplace-provider-offerings/{}/check_unique_backend_id/",
            d.offering_uuid
        ),
        json!({"backend_id": "x"}),
    )
    .await;
    assert!(r.is_django_404(), "{}", r.text);
    // A known route with an object that does not exist is DRF's JSON 404, as before.
    let r = get(
        &sim,
        "marketplace-provider-resources/00000000000000000000000000000000/",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["detail"], "Not found.");
}

#[tokio::test]
async fn resources_have_no_slugs_orders_do_and_offering_users_have_no_state() {
    let sim = sim(ApiProfile::Mastermind2024).await;
    let d = sim.demo().clone();
    let (order, resource) = approved_create(&sim, "alloc-slugs").await;
    let r = get(&sim, &format!("marketplace-provider-resources/{resource}/"))
        .await
        .json();
    assert!(
        r.get("project_slug").is_none() && r.get("customer_slug").is_none(),
        "{r}"
    );
    assert!(r.get("slug").is_some());
    let o = order_state(&sim, &order).await;
    assert!(
        o["project_slug"].as_str().is_some_and(|s| !s.is_empty()),
        "{o}"
    );
    assert!(
        o["customer_slug"].as_str().is_some_and(|s| !s.is_empty()),
        "{o}"
    );

    let list = get(
        &sim,
        &format!(
            "marketplace-offering-users/?offering_uuid={}",
            d.offering_uuid
        ),
    )
    .await
    .json();
    let users = list.as_array().expect("list");
    assert!(!users.is_empty());
    assert!(users.iter().all(|u| u.get("state").is_none()), "{list}");
    // The state filter is an unknown parameter there: ignored.
    let filtered = get(
        &sim,
        &format!(
            "marketplace-offering-users/?offering_uuid={}&state=Requested%20deletion",
            d.offering_uuid
        ),
    )
    .await
    .json();
    assert_eq!(filtered.as_array().map(Vec::len), Some(users.len()));
    let ou = users[0]["uuid"].as_str().expect("uuid");
    let r = post(
        &sim,
        &format!("marketplace-offering-users/{ou}/begin_creating/"),
        json!({}),
    )
    .await;
    assert!(r.is_django_404(), "{}", r.text);
    let r = post(
        &sim,
        &format!("marketplace-offering-users/{ou}/update_restricted/"),
        json!({"is_restricted": false}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let team = get(
        &sim,
        &format!("marketplace-provider-resources/{resource}/team/"),
    )
    .await
    .json();
    assert!(
        team.as_array()
            .expect("team")
            .iter()
            .all(|m| m.get("offering_user_state").is_none()
                && m.get("offering_user_username").is_some()),
        "{team}"
    );
}

#[tokio::test]
async fn set_usage_ignores_the_date_and_user_usage_is_one_at_a_time() {
    let sim = sim(ApiProfile::Mastermind2024).await;
    let (order, resource) = approved_create(&sim, "alloc-usage").await;
    let r = post(
        &sim,
        &format!("marketplace-orders/{order}/set_state_done/"),
        json!({}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let this_month = format!("{:04}-{:02}-01", now.year(), now.month());
    let r = post(
        &sim,
        "marketplace-component-usages/set_usage/",
        json!({"resource": resource, "date": "2020-01-01T00:00:00+00:00", "usages": [{"type": "cpu", "amount": "7.00"}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let usages = get(
        &sim,
        &format!("marketplace-component-usages/?resource_uuid={resource}"),
    )
    .await
    .json();
    let usages = usages.as_array().expect("list").clone();
    assert_eq!(usages.len(), 1);
    assert_eq!(
        usages[0]["billing_period"],
        this_month.as_str(),
        "{usages:?}"
    );
    let cu = usages[0]["uuid"].as_str().expect("uuid");
    let r = post(
        &sim,
        &format!("marketplace-component-usages/{cu}/set_user_usages/"),
        json!({"usages": [{"username": "u1", "usage": "1.00"}]}),
    )
    .await;
    assert!(r.is_django_404(), "{}", r.text);
    let r = post(
        &sim,
        &format!("marketplace-component-usages/{cu}/set_user_usage/"),
        json!({"username": "u1", "usage": "1.00"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Erring a done order raises on that server.
    let r = post(
        &sim,
        &format!("marketplace-orders/{order}/set_state_erred/"),
        json!({"error_message": "x"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.content_type.starts_with("text/html"),
        "{}",
        r.content_type
    );
}

/// An Update order on a resource whose allocation was never set OK is erred by the server at
/// approval; once the allocation is OK, the next Update executes.
#[tokio::test]
async fn updates_need_the_slurm_allocation_ok() {
    let sim = sim(ApiProfile::Mastermind2024).await;
    let d = sim.demo().clone();
    let (order, resource) = approved_create(&sim, "alloc-fsm").await;
    assert_eq!(order_state(&sim, &order).await["state"], "executing");
    post(
        &sim,
        &format!("marketplace-provider-resources/{resource}/set_backend_id/"),
        json!({"backend_id": "alloc_fsm"}),
    )
    .await;
    let r = post(
        &sim,
        &format!("marketplace-orders/{order}/set_state_done/"),
        json!({}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let update = |limit: i64| {
        let d = d.clone();
        let resource = resource.clone();
        let sim = &sim;
        async move {
            let r = call(
                sim,
                Method::POST,
                &format!("marketplace-resources/{resource}/update_limits/"),
                &d.consumer_token,
                Some(json!({"limits": {"cpu": limit, "gpu": 2}})),
            )
            .await;
            assert!(r.status.is_success(), "{}", r.text);
            let uuid = r.json()["order_uuid"]
                .as_str()
                .expect("order_uuid")
                .to_owned();
            let o = order_state(sim, &uuid).await;
            if o["state"] == "pending-consumer" {
                call(
                    sim,
                    Method::POST,
                    &format!("marketplace-orders/{uuid}/approve_by_consumer/"),
                    &d.consumer_token,
                    None,
                )
                .await;
            }
            let r = post(
                sim,
                &format!("marketplace-orders/{uuid}/approve_by_provider/"),
                json!({}),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            uuid
        }
    };
    let first = update(20).await;
    let o = order_state(&sim, &first).await;
    assert_eq!(o["state"], "erred", "{o}");
    assert_eq!(
        o["error_message"],
        "Can't switch from state '5' using method 'schedule_updating'"
    );

    // That server has no set_as_ok: only staff puts the resource back (here, the test).
    let id = uuid::Uuid::parse_str(&resource).expect("uuid");
    assert_eq!(sim.state().resources[&id].state, "Erred");
    sim.mutate(|s| {
        s.set_resource_state(&id, "OK");
        Ok(())
    })
    .expect("resource OK");
    // Set OK as the agents of the time did; the next Update executes.
    let r = post(
        &sim,
        &format!("marketplace-slurm-remote/{resource}/set_state/"),
        json!({"state": "ok"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let second = update(30).await;
    assert_eq!(order_state(&sim, &second).await["state"], "executing");
    // Updating twice in a row needs OK again (the allocation is "Update Scheduled" now).
    let r = post(
        &sim,
        &format!("marketplace-slurm-remote/{resource}/set_state/"),
        json!({"state": "update_scheduled"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
}

#[tokio::test]
async fn the_current_server_has_no_slurm_allocations_and_answers_json_404() {
    let sim = sim(ApiProfile::Current).await;
    let (_, resource) = approved_create(&sim, "alloc-current").await;
    let r = post(
        &sim,
        &format!("marketplace-slurm-remote/{resource}/set_state/"),
        json!({"state": "ok"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = get(&sim, "marketplace-site-agent-identities/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = get(&sim, &format!("marketplace-provider-resources/{resource}/"))
        .await
        .json();
    assert!(r["project_slug"].as_str().is_some_and(|s| !s.is_empty()));
}
