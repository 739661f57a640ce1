//! Bench driver (`bench/opennebula.py`): N VDCs with networking and limits through the backend
//! against a running OpenNebula (the site-sim double), then deleted. Prints one JSON line.
//! Env: ONE_URL, ONE_CREDENTIALS, ONE_N (default 20).

use std::time::Instant;

use backend_api::{CreateRequest, OrderBackend, ResourceView};
use backend_opennebula::{OneBackend, OneSettings};
use indexmap::IndexMap;
use serde_json::{Value, json};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::var("ONE_URL").expect("ONE_URL");
    let credentials = std::env::var("ONE_CREDENTIALS").expect("ONE_CREDENTIALS");
    let n: usize = std::env::var("ONE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let Value::Object(map) =
        json!({"api_url": url, "credentials": credentials, "vm_poll_seconds": 0.05})
    else {
        unreachable!()
    };
    let settings = OneSettings::parse(&map).expect("settings");
    let backend = OneBackend::new("bench", settings, IndexMap::new(), None).expect("backend");
    let Value::Object(options) = json!({
        "zone_id": 0, "cluster_ids": [0, 100], "external_network_id": 10,
        "virtual_router_template_id": 8,
        "security_group_defaults": [{"direction": "INBOUND", "protocol": "TCP", "range": "22:22"}],
    }) else {
        unreachable!()
    };
    let limits: backend_api::Limits = [
        ("cpu", 4.0),
        ("ram", 8192.0),
        ("storage", 20480.0),
        ("floating_ip", 2.0),
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
            limits: limits.clone(),
            offering_plugin_options: options.clone(),
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
        views.push(resource);
    }
    let created = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for v in &views {
        backend.delete_resource(v).await.expect("delete");
    }
    println!(
        "{}",
        json!({"create_seconds": created, "delete_seconds": start.elapsed().as_secs_f64()})
    );
}
