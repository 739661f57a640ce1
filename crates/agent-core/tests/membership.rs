//! membership_sync scenarios: team diff with stale users, status flags, self-healing, username
//! generation, per-resource failure isolation.

mod common;

use std::sync::Arc;

use backend_api::testkit::{Fault, MemoryResource};
use common::*;
use serde_json::json;

fn site_with_users(users: &[&str]) -> MemoryResource {
    MemoryResource {
        users: users.iter().map(|u| u.to_string()).collect(),
        ..MemoryResource::default()
    }
}

#[tokio::test]
async fn team_diff_adds_members_and_removes_stale_site_users() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.waldur.add_member(101, 200, "alice", Some("alice"), "OK");
    // bob has no offering user at all any more (left every project): still removed.
    h.backend.insert_resource("a1", site_with_users(&["bob"]));
    let report = agent_core::membership_sync(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let users = h.backend.resource("a1").expect("a1").users;
    assert!(users.contains("alice"));
    assert!(!users.contains("bob"));
    assert_eq!(h.waldur.count("refresh_last_sync"), 1);
}

#[tokio::test]
async fn erred_resources_are_set_ok_and_flags_are_applied() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "Erred");
    h.waldur.lock().resources.get_mut(&uuid(101)).expect("r")["paused"] = json!(true);
    h.backend.insert_resource("a1", MemoryResource::default());
    let report = agent_core::membership_sync(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.resource(101)["state"], "OK");
    assert!(h.backend.resource("a1").expect("a1").paused);
    // Metadata differs from Waldur's copy once, then is not re-sent.
    assert_eq!(h.waldur.count("set_backend_metadata"), 1);
    agent_core::membership_sync(&h.ctx).await;
    assert_eq!(h.waldur.count("set_backend_metadata"), 1);
}

#[tokio::test]
async fn limits_are_pushed_only_when_they_differ() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.backend.insert_resource(
        "a1",
        MemoryResource {
            limits: [("cpu".to_owned(), 10)].into(),
            ..MemoryResource::default()
        },
    );
    agent_core::membership_sync(&h.ctx).await;
    assert_eq!(
        h.waldur.count("set_limits"),
        0,
        "equal limits are not echoed"
    );
    h.backend.insert_resource(
        "a1",
        MemoryResource {
            limits: [("cpu".to_owned(), 20)].into(),
            ..MemoryResource::default()
        },
    );
    agent_core::membership_sync(&h.ctx).await;
    assert_eq!(h.waldur.count("set_limits"), 1);
    assert_eq!(h.waldur.resource(101)["limits"], json!({"cpu": 20}));
}

#[tokio::test]
async fn a_failing_resource_is_set_erred_and_the_others_go_on() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.waldur.add_resource(102, "a2", "a2", "OK");
    h.waldur.add_member(101, 200, "alice", Some("alice"), "OK");
    h.backend.insert_resource("a1", MemoryResource::default());
    h.backend.insert_resource("a2", MemoryResource::default());
    h.backend.fail_next("add_users", Fault::Permanent, 1);
    let report = agent_core::membership_sync(&h.ctx).await;
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(report.processed, 1);
    assert_eq!(h.waldur.resource(101)["state"], "Erred");
    assert_eq!(h.waldur.resource(102)["state"], "OK");
}

#[tokio::test]
async fn requested_offering_users_get_a_username_then_access() {
    let mut h = harness().await;
    h.ctx.backends.usernames = Arc::new(h.backend.clone());
    h.waldur.lock().offering["plugin_options"] = json!({
        "username_generation_policy": "service_provider",
        "service_provider_can_create_offering_user": true
    });
    h.backend
        .set_generated_username("carol@example.org", "carol01");
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.waldur
        .add_member(101, 300, "carol@example.org", None, "Requested");
    h.backend.insert_resource("a1", MemoryResource::default());
    let report = agent_core::membership_sync(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.count("begin_creating"), 1);
    let ou = h.waldur.lock().offering_users[0].clone();
    assert_eq!(ou["username"], "carol01");
    assert_eq!(ou["state"], "OK");
    assert!(
        h.backend
            .resource("a1")
            .expect("a1")
            .users
            .contains("carol01")
    );
}

#[tokio::test]
async fn usernames_are_not_generated_without_the_provider_permission() {
    let mut h = harness().await;
    h.ctx.backends.usernames = Arc::new(h.backend.clone());
    h.waldur.lock().offering["plugin_options"] =
        json!({"username_generation_policy": "service_provider"});
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.waldur.add_member(101, 300, "carol", None, "Requested");
    h.backend.insert_resource("a1", MemoryResource::default());
    agent_core::membership_sync(&h.ctx).await;
    assert_eq!(h.waldur.count("begin_creating"), 0);
    assert_eq!(h.backend.count_calls("generate_username"), 0);
}

#[tokio::test]
async fn username_set_event_adds_the_user_to_listed_resources() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.waldur.add_resource(102, "a2", "a2", "OK");
    h.waldur.add_member(101, 200, "alice", Some("alice"), "OK");
    h.backend.insert_resource("a1", MemoryResource::default());
    h.backend.insert_resource("a2", MemoryResource::default());
    let report = agent_core::process_username_set(&h.ctx, &uuid(5200), &["a1".to_owned()]).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(
        h.backend
            .resource("a1")
            .expect("a1")
            .users
            .contains("alice")
    );
    assert!(
        !h.backend
            .resource("a2")
            .expect("a2")
            .users
            .contains("alice")
    );
}

#[tokio::test]
async fn role_revoked_event_removes_the_user() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.waldur.add_member(101, 200, "alice", Some("alice"), "OK");
    h.backend.insert_resource("a1", site_with_users(&["alice"]));
    let report =
        agent_core::process_user_role_changed(&h.ctx, &uuid(200), &uuid(900), false, None).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(
        !h.backend
            .resource("a1")
            .expect("a1")
            .users
            .contains("alice")
    );
}
