//! Bench driver (`bench/okd.py`): N resources through the backend against a running Kubernetes
//! API: create with limits, add one user, read back; then delete. Prints one JSON line.
//! Env: OKD_URL, OKD_TOKEN, OKD_N (default 20).

use std::time::Instant;

use backend_api::{CreateRequest, MembershipBackend, OrderBackend, ResourceView, UserGrant};
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
        .unwrap_or(20);
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
    let requests = http_kit::request_count("okd");
    let start = Instant::now();
    for v in &views {
        backend.delete_resource(v).await.expect("delete");
    }
    println!(
        "{}",
        json!({"n": n, "create_and_user_seconds": create_s, "create_and_user_requests": requests,
               "delete_seconds": start.elapsed().as_secs_f64(),
               "delete_requests": http_kit::request_count("okd") - requests})
    );
}
