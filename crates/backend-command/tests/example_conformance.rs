//! The Python example backend (`examples/command-backend/site_backend.py`) through the `command`
//! backend passes the conformance suite: the protocol is enough to implement a whole backend.

use std::time::Duration;

use backend_api::command::ProcessRunner;
use backend_api::testkit::conformance::{self, Fixture};
use backend_api::{BackendHealth, ResourceView, UserGrant};
use backend_command::{CommandBackend, CommandSettings};
use serde_json::{Map, Value, json};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/command-backend/site_backend.py"
);

/// A backend running the example with its own state file; `None` (after a note) without python3.
fn example_backend(extra: Value) -> Option<(CommandBackend, tempfile_dir::Dir)> {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").is_err_and(|_| true)
                || std::env::var("CI").as_deref() != Ok("true"),
            "python3 is needed for the command backend example (CI=true, not skipping)"
        );
        eprintln!("NOTE: skipping the command backend example: no python3");
        return None;
    }
    let dir = tempfile_dir::Dir::new();
    let mut settings = json!({"state_file": dir.path("state.json")});
    if let (Value::Object(s), Value::Object(e)) = (&mut settings, extra) {
        s.extend(e);
    }
    let Value::Object(map) = json!({
        "command": "python3",
        "args": [EXAMPLE],
        "timeout_seconds": 20,
        "allocation_prefix": "ex_",
        "settings": settings,
    }) else {
        unreachable!("object literal")
    };
    let parsed = CommandSettings::parse(&map as &Map<String, Value>).expect("settings");
    let runner = ProcessRunner::new(Duration::from_secs(20)).shared();
    Some((CommandBackend::new("example", parsed, runner), dir))
}

/// A temporary directory removed on drop (no extra dependency).
mod tempfile_dir {
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!(
                "command-backend-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            ));
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir(path)
        }
        pub fn path(&self, name: &str) -> String {
            self.0.join(name).display().to_string()
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn fixture() -> Fixture {
    Fixture {
        resource: ResourceView {
            uuid: "r1".into(),
            slug: "alloc-1".into(),
            name: "Allocation 1".into(),
            project_slug: "proj".into(),
            ..Default::default()
        },
        initial_limits: [("cpu".to_owned(), 10.0)].into(),
        updated_limits: [("cpu".to_owned(), 20.5)].into(),
        users: vec![
            UserGrant {
                username: "alice".into(),
                ..Default::default()
            },
            UserGrant {
                username: "bob".into(),
                ..Default::default()
            },
        ],
    }
}

#[tokio::test]
async fn the_python_example_passes_the_conformance_lifecycle() {
    let Some((backend, _dir)) = example_backend(json!({})) else {
        return;
    };
    backend.ping().await.expect("ping");
    conformance::order_and_membership_lifecycle(&backend, fixture()).await;
}

#[tokio::test]
async fn the_python_example_passes_the_extended_checks() {
    let Some((backend, dir)) = example_backend(json!({})) else {
        return;
    };
    let view = |slug: &str| ResourceView {
        uuid: format!("uuid-{slug}"),
        slug: slug.into(),
        project_slug: "proj".into(),
        ..Default::default()
    };
    conformance::batch_partial_failure_and_order(
        &backend,
        conformance::BatchFixture {
            first: view("b1"),
            second: view("b2"),
            third: view("b3"),
            limits: [("cpu".to_owned(), 4.0)].into(),
        },
    )
    .await;
    let mut idem = fixture();
    idem.resource = view("idem");
    conformance::idempotent_writes_and_unit_round_trip(
        &backend,
        idem,
        &[[("cpu".to_owned(), 0.25)].into()],
    )
    .await;

    // Usage the site recorded (in the example's state file) comes back as it is.
    let state_path = dir.path("state.json");
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).expect("state")).expect("json");
    state["usage"] = json!({"ex_used": {"2025-03": {"total": {"cpu": 1.5},
        "per_user": {"alice": {"cpu": 1.5}}}}});
    std::fs::write(&state_path, state.to_string()).expect("write state");
    let report = backend_api::UsageReport {
        total: [("cpu".to_owned(), 1.5)].into(),
        per_user: [("alice".to_owned(), [("cpu".to_owned(), 1.5)].into())].into(),
    };
    conformance::usage_round_trip(
        &backend,
        &["ex_used".to_owned()],
        &backend_api::BillingPeriod::new(2025, 3, jiff::tz::TimeZone::UTC),
        &[("ex_used".to_owned(), report)].into(),
    )
    .await;
}

#[tokio::test]
async fn the_python_example_is_transient_when_its_site_is_down() {
    let Some((backend, _dir)) =
        example_backend(json!({"site_down": true, "api_password": "pw-never-shown"}))
    else {
        return;
    };
    conformance::site_down_is_transient(&backend, &fixture(), &["pw-never-shown"]).await;
}
