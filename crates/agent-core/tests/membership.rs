//! membership scenarios against the wiremock fake, kept for what the simulator cannot express:
//! `username_set` naming only some of a project's resources (the simulator always lists all of
//! them), the exact membership-sync status payloads and a 409 refusal, and the role name reaching
//! a backend. The membership scenarios themselves run against the simulator in
//! `sim_membership.rs` / `sim_events.rs`.

mod common;

use std::sync::Arc;

use backend_api::testkit::MemoryResource;
use common::*;
use serde_json::json;

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
