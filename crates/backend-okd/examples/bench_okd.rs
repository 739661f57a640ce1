//! Bench driver (`bench/okd.py`): N resources through the backend against a running Kubernetes
//! API: create with limits and add one user (a Create order); one membership pass over all of
//! them as `agent_core::membership` makes it with an unchanged team (`pull_resources`, then per
//! resource `restore` and `resource_metadata`); then delete. Prints one JSON line with the wall
//! time and the API requests (the kit's counter `okd`) of each phase.
//! Env: OKD_URL, OKD_TOKEN, OKD_N (default 100).

use std::time::Instant;

use backend_api::{
    BackendHealth, CreateRequest, MembershipBackend, OrderBackend, ResourceView, UserGrant,
};
use backend_okd::{OkdBackend, OkdSettings};
use indexmap::IndexMap;
use serde_json::{Value, json};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::var("OKD_URL").expect("OKD_URL");
    let token = std::env::var("OKD_TOKEN").expect("OKD_TOKEN");
    let n: usize = std::env::var("OKD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let Value::Object(map) = json!({"api_url": url, "token": token, "verify_cert": false}) else {
        unreachable!()
    };
    let settings = OkdSettings::parse(&map).expect("settings");
    let backend = OkdBackend::new("bench", settings, IndexMap::new(), None).expect("backend");
    let limits: backend_api::Limits = [
        ("cpu", 4.0),
        ("memory", 16.0),
        ("storage", 100.0),
        ("pods", 10.0),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), *v))
    .collect();
    // Discovery and the first connection, as a running agent has them already.
    backend.ping().await.expect("ping");
    let _ = backend.api().openshift().await.expect("discovery");
    let before = http_kit::request_count("okd");
    let start = Instant::now();
    let mut views = Vec::new();
    for i in 0..n {
        let id = backend.backend_id_for(&format!("rs{i}")).expect("id");
        let resource = ResourceView {
            name: format!("bench {i}"),
            backend_id: id.clone(),
            customer_slug: "acme".into(),
            project_slug: "webdev".into(),
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
                    role: Some("member".into()),
                    ..Default::default()
                }],
            )
            .await
            .expect("add user");
        views.push(resource);
    }
    let create_s = start.elapsed().as_secs_f64();
    let created = http_kit::request_count("okd");
    let start = Instant::now();
    let infos = backend.pull_resources(&views).await.expect("pull");
    assert_eq!(infos.len(), n);
    for v in &views {
        backend.restore(v).await.expect("restore");
        backend.resource_metadata(v).await.expect("metadata");
    }
    let membership_s = start.elapsed().as_secs_f64();
    let synced = http_kit::request_count("okd");
    let start = Instant::now();
    for v in &views {
        backend.delete_resource(v).await.expect("delete");
    }
    println!(
        "{}",
        json!({"n": n, "create_and_user_seconds": create_s,
               "create_and_user_requests": created - before,
               "membership_seconds": membership_s, "membership_requests": synced - created,
               "delete_seconds": start.elapsed().as_secs_f64(),
               "delete_requests": http_kit::request_count("okd") - synced})
    );
}
