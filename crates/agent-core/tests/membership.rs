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

#[tokio::test]
async fn service_and_course_accounts_are_kept_added_and_removed() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.waldur.add_member(101, 200, "alice", Some("alice"), "OK");
    h.waldur.add_account(false, "svc-bot", "OK");
    h.waldur.add_account(false, "svc-new", "OK");
    h.waldur.add_account(true, "course-old", "Closed");
    h.backend.insert_resource(
        "a1",
        site_with_users(&["alice", "svc-bot", "course-old", "bob"]),
    );
    let report = agent_core::membership_sync(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let users = h.backend.resource("a1").expect("a1").users;
    let expected: std::collections::BTreeSet<String> = ["alice", "svc-bot", "svc-new"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(users, expected);
    // The active account was never removed and re-added.
    assert!(
        !h.backend
            .calls()
            .iter()
            .any(|c| c.starts_with("remove_users:") && c.contains("svc-bot")),
        "{:?}",
        h.backend.calls()
    );
    // Accounts are listed once per cycle, not per resource.
    assert_eq!(h.waldur.count("list_project_service_accounts"), 1);
    // The account token Waldur returns never reaches a log or report.
    assert!(!format!("{report:?}").contains("svc-token-value"));
}

#[tokio::test]
async fn account_listing_failures_never_err_the_resource() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.waldur.add_account(false, "svc-bot", "OK");
    h.waldur.fail("GET list_project_service_accounts", &[500]);
    h.backend.insert_resource("a1", MemoryResource::default());
    h.backend.fail_next("add_users", Fault::Permanent, 1);
    let report = agent_core::membership_sync(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.resource(101)["state"], "OK");
    assert_eq!(h.waldur.count("add_users"), 0);
    // Listing works now, but the site refuses the account: still not the resource's failure.
    let report = agent_core::membership_sync(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(
        h.backend.count_calls("add_users"),
        1,
        "{:?}",
        h.backend.calls()
    );
    assert_eq!(h.waldur.resource(101)["state"], "OK");
    assert_eq!(h.waldur.count("set_as_erred"), 0);
}

#[tokio::test]
async fn membership_statuses_are_reported_only_when_the_offering_asks() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.waldur.add_member(101, 200, "alice", Some("alice"), "OK");
    h.waldur.add_member(101, 201, "carol", None, "Requested");
    h.backend.insert_resource("a1", MemoryResource::default());
    agent_core::membership_sync(&h.ctx).await;
    assert_eq!(h.waldur.count("set_membership_sync_statuses"), 0);

    h.waldur.lock().resources.get_mut(&uuid(101)).expect("r")["offering_plugin_options"] =
        json!({"enable_membership_sync_status": true});
    let report = agent_core::membership_sync(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let statuses = h.waldur.lock().sync_statuses[&uuid(101)].clone();
    let list = statuses.as_array().expect("list");
    assert_eq!(list.len(), 2, "{statuses}");
    let alice = list
        .iter()
        .find(|s| s["username"] == "alice")
        .expect("alice");
    assert_eq!(alice["state"], "synced");
    assert_eq!(alice["scope_type"], "resource");
    assert_eq!(alice["role_name"], "PROJECT.MEMBER");
    assert_eq!(alice["user_uuid"], json!(uuid(200)));
    let carol = list
        .iter()
        .find(|s| s["username"] == "carol")
        .expect("carol");
    assert_eq!(carol["state"], "pending");
}

#[tokio::test]
async fn refused_membership_statuses_do_not_fail_the_sync() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.waldur.lock().resources.get_mut(&uuid(101)).expect("r")["offering_plugin_options"] =
        json!({"enable_membership_sync_status": "true"});
    h.waldur.fail("POST set_membership_sync_statuses", &[409]);
    h.backend.insert_resource("a1", MemoryResource::default());
    let report = agent_core::membership_sync(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(h.waldur.resource(101)["state"], "OK");
    assert_eq!(h.waldur.count("refresh_last_sync"), 1);
}

/// Delegates to the memory backend and remembers every grant it was given.
struct RecordingBackend {
    inner: backend_api::testkit::MemoryBackend,
    grants: std::sync::Mutex<Vec<backend_api::UserGrant>>,
}

#[async_trait::async_trait]
impl backend_api::BackendHealth for RecordingBackend {
    fn kind(&self) -> &'static str {
        "recording"
    }
    async fn ping(&self) -> backend_api::BackendResult<()> {
        Ok(())
    }
    async fn diagnostics(&self) -> backend_api::Diagnostics {
        backend_api::Diagnostics::new("recording")
    }
}

#[async_trait::async_trait]
impl backend_api::MembershipBackend for RecordingBackend {
    async fn pull_resources(
        &self,
        resources: &[backend_api::ResourceView],
    ) -> backend_api::BackendResult<
        std::collections::BTreeMap<String, backend_api::BackendResourceInfo>,
    > {
        self.inner.pull_resources(resources).await
    }
    async fn add_users(
        &self,
        resource: &backend_api::ResourceView,
        users: &[backend_api::UserGrant],
    ) -> backend_api::BackendResult<Vec<String>> {
        self.grants
            .lock()
            .expect("grants")
            .extend(users.iter().cloned());
        self.inner.add_users(resource, users).await
    }
    async fn remove_users(
        &self,
        resource: &backend_api::ResourceView,
        usernames: &[String],
    ) -> backend_api::BackendResult<Vec<String>> {
        self.inner.remove_users(resource, usernames).await
    }
    async fn pause(&self, r: &backend_api::ResourceView) -> backend_api::BackendResult<bool> {
        self.inner.pause(r).await
    }
    async fn downscale(&self, r: &backend_api::ResourceView) -> backend_api::BackendResult<bool> {
        self.inner.downscale(r).await
    }
    async fn restore(&self, r: &backend_api::ResourceView) -> backend_api::BackendResult<bool> {
        self.inner.restore(r).await
    }
}

#[tokio::test]
async fn role_granted_event_passes_the_role_to_the_backend() {
    let mut h = harness().await;
    let recorder = Arc::new(RecordingBackend {
        inner: h.backend.clone(),
        grants: std::sync::Mutex::new(Vec::new()),
    });
    h.ctx.backends.membership = Some(recorder.clone());
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.waldur.add_member(101, 200, "alice", Some("alice"), "OK");
    h.backend.insert_resource("a1", MemoryResource::default());
    let report = agent_core::process_user_role_changed(
        &h.ctx,
        &uuid(200),
        &uuid(900),
        true,
        Some("PROJECT.MANAGER"),
    )
    .await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(
        h.backend
            .resource("a1")
            .expect("a1")
            .users
            .contains("alice")
    );
    let grants = recorder.grants.lock().expect("grants").clone();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].username, "alice");
    assert_eq!(grants[0].role.as_deref(), Some("PROJECT.MANAGER"));
    assert_eq!(grants[0].waldur_username.as_deref(), Some("alice"));
}
