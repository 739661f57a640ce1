//! Bench driver (`bench/rancher.py`): N resources through the backend against running Rancher +
//! Keycloak doubles: create with limits, add one user, one usage report; then delete. Prints one
//! JSON line. Env: RANCHER_INFO (the JSON line of `site-sim rancher`), RANCHER_N (default 20).

use std::time::Instant;

use backend_api::{
    BillingPeriod, CreateRequest, MembershipBackend, OrderBackend, ResourceView, UsageBackend,
    UserGrant,
};
use backend_rancher::{RancherBackend, RancherSettings};
use indexmap::IndexMap;
use serde_json::{Value, json};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let info: Value =
        serde_json::from_str(&std::env::var("RANCHER_INFO").expect("RANCHER_INFO")).expect("json");
    let n: usize = std::env::var("RANCHER_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let Value::Object(map) = json!({
        "backend_url": info["url"], "username": info["access_key"], "password": info["secret_key"],
        "cluster_id": info["cluster_id"], "keycloak_enabled": true, "keycloak_use_user_id": false,
        "keycloak": {"keycloak_url": info["keycloak_url"], "keycloak_realm": "waldur",
                     "keycloak_user_realm": "master", "keycloak_username": info["keycloak_username"],
                     "keycloak_password": info["keycloak_password"]},
    }) else {
        unreachable!()
    };
    let settings = RancherSettings::parse(&map).expect("settings");
    let components: IndexMap<String, agent_config::BackendComponent> = ["cpu", "memory", "storage"]
        .iter()
        .map(|k| {
            let c: agent_config::BackendComponent = serde_json::from_value(json!({
                "measured_unit": "x", "accounting_type": "limit", "label": k,
                "type": if *k == "memory" { "ram" } else { k }
            }))
            .expect("component");
            ((*k).to_owned(), c)
        })
        .collect();
    let backend = RancherBackend::new("bench", settings, components, None).expect("backend");
    let limits: backend_api::Limits = [("cpu", 4.0), ("memory", 16.0), ("storage", 100.0)]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
    let total = || http_kit::request_count("rancher") + http_kit::request_count("keycloak");
    let start = Instant::now();
    let mut views = Vec::new();
    for i in 0..n {
        let id = backend.backend_id_for(&format!("rs{i}")).expect("id");
        let resource = ResourceView {
            uuid: format!("bench-{i}"),
            name: format!("bench {i}"),
            backend_id: id.clone(),
            customer_slug: "acme".into(),
            project_slug: format!("p{i}"),
            limits: limits.clone(),
            ..Default::default()
        };
        backend
            .create_resource(CreateRequest {
                resource: resource.clone(),
                backend_id: id,
                context: Default::default(),
            })
            .await
            .expect("create");
        backend
            .add_users(
                &resource,
                &[UserGrant {
                    username: "alice".into(),
                    ..Default::default()
                }],
            )
            .await
            .expect("add user");
        views.push(resource);
    }
    let create_s = start.elapsed().as_secs_f64();
    let create_requests = total();
    let ids: Vec<String> = views.iter().map(|v| v.backend_id.clone()).collect();
    let now = jiff::Zoned::now();
    let start = Instant::now();
    backend
        .usage_report(&ids, &BillingPeriod::containing(&now))
        .await
        .expect("usage");
    let usage_s = start.elapsed().as_secs_f64();
    let usage_requests = total() - create_requests;
    let start = Instant::now();
    for v in &views {
        backend.delete_resource(v).await.expect("delete");
    }
    println!(
        "{}",
        json!({"n": n, "create_and_user_seconds": create_s, "create_and_user_requests": create_requests,
               "usage_seconds": usage_s, "usage_requests": usage_requests,
               "delete_seconds": start.elapsed().as_secs_f64(),
               "delete_requests": total() - create_requests - usage_requests})
    );
}
