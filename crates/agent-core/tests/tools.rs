//! Helper tools (agent-behaviour §4.7) against the fake Mastermind: load components,
//! diagnostics, sync offering users, readiness.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;

fn with_components(c: &mut agent_config::OfferingConfig) {
    c.backend_components = serde_json::from_value(json!({
        "cpu": {"measured_unit": "Hours", "accounting_type": "limit", "label": "CPU", "limit": 100},
        "license": {"measured_unit": "seat", "accounting_type": "one", "label": "License"},
        "storage": {"measured_unit": "GB", "accounting_type": "usage", "label": "Storage",
                    "description": "Scratch", "max_value": 500}
    }))
    .expect("components");
}

#[tokio::test]
async fn load_components_updates_existing_and_creates_new_ones() {
    let h = harness_with(with_components).await;
    h.waldur.lock().offering["components"][0]["limit_period"] = json!("annual");
    let report = agent_core::tools::load_components(&h.ctx)
        .await
        .expect("offering readable");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.updated, vec!["cpu".to_owned()]);
    assert_eq!(
        report.created,
        vec!["license".to_owned(), "storage".to_owned()]
    );
    assert_eq!(report.only_in_waldur, vec!["mem".to_owned()]);

    let update = &h.waldur.bodies("update_offering_component")[0];
    assert_eq!(update["uuid"], json!(uuid(600)));
    assert_eq!(update["limit_amount"], json!(100));
    assert_eq!(update["billing_type"], json!("limit"));
    assert_eq!(update["limit_period"], json!("annual"), "kept from Waldur");
    let creates = h.waldur.bodies("create_offering_component");
    let license = creates
        .iter()
        .find(|b| b["type"] == "license")
        .expect("license created");
    assert_eq!(license["is_prepaid"], json!(true));
    assert_eq!(license["billing_type"], json!("one"));
    assert!(
        license.get("limit_amount").is_none(),
        "unset fields are not sent"
    );
    let storage = creates
        .iter()
        .find(|b| b["type"] == "storage")
        .expect("storage created");
    assert_eq!(storage["description"], json!("Scratch"));
    assert_eq!(storage["max_value"], json!(500));
}

#[tokio::test]
async fn load_components_collects_per_component_errors() {
    let h = harness_with(with_components).await;
    h.waldur.fail("POST create_offering_component", &[400]);
    let report = agent_core::tools::load_components(&h.ctx)
        .await
        .expect("offering readable");
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert_eq!(report.errors[0].0, "license");
    assert_eq!(report.created, vec!["storage".to_owned()]);
    assert_eq!(report.updated, vec!["cpu".to_owned()]);
    assert!(!report.ok());
}

#[tokio::test]
async fn load_components_fails_when_the_offering_cannot_be_read() {
    let h = harness_with(with_components).await;
    h.waldur.fail(
        &format!("GET /api/marketplace-provider-offerings/{OFFERING}/"),
        &[403],
    );
    assert!(agent_core::tools::load_components(&h.ctx).await.is_err());
    assert_eq!(h.waldur.count("POST"), 0);
}

fn with_cluster(name: &'static str) -> impl FnOnce(&mut agent_config::OfferingConfig) {
    move |c| {
        c.backend_settings
            .insert("cluster_name".into(), json!(name));
        c.backend_settings
            .insert("rest_api_password".into(), json!("hunter2-very-secret"));
    }
}

#[tokio::test]
async fn diagnostics_reports_user_offering_orders_and_backends() {
    let h = harness_with(with_cluster("hpc1")).await;
    {
        let mut s = h.waldur.lock();
        s.offering["name"] = json!("HPC");
        s.offering["state"] = json!("Active");
        s.offering["backend_id"] = json!("hpc1");
    }
    h.waldur.add_order(1, "Create", "pending-provider", 101);
    h.waldur.add_order(2, "Create", "done", 102);
    let report = agent_core::tools::diagnostics(&h.ctx).await;
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.user.as_ref().expect("user").username, "agent-bot");
    let offering = report.waldur_offering.as_ref().expect("offering");
    assert_eq!(offering.name, "HPC");
    assert_eq!(offering.components.len(), 2);
    assert_eq!(report.pending_orders.as_ref().expect("orders").len(), 1);
    assert_eq!(report.backends.len(), 1);
    assert_eq!(report.backends[0].backend, "memory");
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.name == "cluster_name" && c.ok)
    );
    let orders_request = h
        .waldur
        .log()
        .into_iter()
        .find(|l| l.starts_with("GET /api/marketplace-orders/"))
        .expect("orders listed");
    assert!(
        orders_request.contains("field=project_name"),
        "{orders_request}"
    );
}

#[tokio::test]
async fn diagnostics_flags_a_cluster_name_mismatch_and_prints_no_secret() {
    let h = harness_with(with_cluster("hpc1")).await;
    h.waldur.lock().offering["backend_id"] = json!("other-cluster");
    let report = agent_core::tools::diagnostics(&h.ctx).await;
    assert!(!report.ok);
    let check = report
        .checks
        .iter()
        .find(|c| c.name == "cluster_name")
        .expect("cluster check");
    assert!(!check.ok);
    assert!(check.detail.contains("other-cluster"), "{}", check.detail);
    let printed = serde_json::to_string(&report).expect("json");
    assert!(!printed.contains(TOKEN), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
}

#[tokio::test]
async fn diagnostics_scrubs_secrets_a_backend_or_server_echoes() {
    let h = harness().await;
    let mut report = agent_core::tools::diagnostics(&h.ctx).await;
    report.checks[0].detail = format!("server said: bad token {TOKEN}");
    report.scrub(&[TOKEN.to_owned()]);
    assert_eq!(report.checks[0].detail, "server said: bad token ***");
}

#[tokio::test]
async fn diagnostics_fails_when_waldur_refuses_the_token() {
    let h = harness().await;
    h.waldur.fail("GET /api/users/me/", &[401]);
    let report = agent_core::tools::diagnostics(&h.ctx).await;
    assert!(!report.ok);
    assert!(report.user.is_none());
    let api = report
        .checks
        .iter()
        .find(|c| c.name == "waldur_api")
        .expect("api check");
    assert!(!api.ok);
    assert!(api.detail.contains("401"), "{}", api.detail);
}

#[tokio::test]
async fn sync_offering_users_runs_the_username_state_machine() {
    let mut h = harness().await;
    h.ctx.backends.usernames = Arc::new(h.backend.clone());
    h.waldur.lock().offering["plugin_options"] = json!({
        "username_generation_policy": "service_provider",
        "service_provider_can_create_offering_user": true
    });
    h.backend
        .set_generated_username("dave@example.org", "dave01");
    h.waldur
        .add_member(101, 300, "dave@example.org", None, "Requested");
    h.waldur.add_member(101, 301, "erin", Some("erin"), "OK");
    let run = agent_core::tools::sync_offering_users(&h.ctx)
        .await
        .expect("listed");
    assert!(run.generation_enabled);
    assert_eq!(run.considered, 1, "OK users are left alone: {run:?}");
    assert_eq!(run.changed, 1);
    assert!(run.errors.is_empty());
    let users = h.waldur.lock().offering_users.clone();
    assert_eq!(users[0]["username"], "dave01");
    assert_eq!(users[0]["state"], "OK");
    let listing = h
        .waldur
        .log()
        .into_iter()
        .find(|l| l.starts_with("GET /api/marketplace-offering-users/"))
        .expect("listed");
    assert!(listing.contains("is_restricted=false"), "{listing}");
}

#[tokio::test]
async fn sync_offering_users_changes_nothing_when_waldur_generates_usernames() {
    let mut h = harness().await;
    h.ctx.backends.usernames = Arc::new(h.backend.clone());
    h.waldur.add_member(101, 300, "dave", None, "Requested");
    let run = agent_core::tools::sync_offering_users(&h.ctx)
        .await
        .expect("listed");
    assert!(!run.generation_enabled);
    assert_eq!(run.changed, 0);
    assert_eq!(h.waldur.count("begin_creating"), 0);
}

#[tokio::test]
async fn readiness_asks_users_me_for_the_uuid_only() {
    let h = harness().await;
    agent_core::tools::readiness(&h.ctx).await.expect("ready");
    assert_eq!(
        h.waldur.log(),
        vec!["GET /api/users/me/?field=uuid".to_owned()]
    );
    h.waldur.fail("GET /api/users/me/", &[503]);
    assert!(agent_core::tools::readiness(&h.ctx).await.is_err());
}

#[tokio::test]
async fn readiness_over_offerings_needs_one_success() {
    let down = harness().await;
    let up = harness().await;
    down.waldur.fail("GET /api/users/me/", &[503, 503]);
    let contexts = [down.ctx, up.ctx];
    assert!(agent_core::tools::readiness_any(&contexts).await.is_ok());
    down.waldur.fail("GET /api/users/me/", &[503]);
    up.waldur.fail("GET /api/users/me/", &[401]);
    let failures = agent_core::tools::readiness_any(&contexts)
        .await
        .expect_err("none ready");
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(agent_core::tools::readiness_any(&[]).await.is_err());
}
