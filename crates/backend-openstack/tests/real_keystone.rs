//! Integration tests against a real Keystone (`bash scripts/services/keystone-up.sh`).
//!
//! Keystone is found through `OS_AUTH_URL` (+ `OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME`) or
//! `/tmp/waldur-services/keystone/env.sh`. Without it the tests print a note and pass, unless
//! `CI=true`, where they fail. Every run uses unique names and cleans up after itself.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agent_config::{AccountingType, BackendComponent, OfferingConfig, Secret};
use backend_api::testkit::conformance::{self, Fixture};
use backend_api::{
    BackendError, BackendHealth, BuildContext, CreateRequest, MembershipBackend, OrderBackend,
    ResourceView, UserContext, UserGrant,
};
use backend_openstack::{KeystoneClient, OpenStackBackend, OpenStackSettings};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};

const ENV_FILE: &str = "/tmp/waldur-services/keystone/env.sh";

#[derive(Clone)]
struct KeystoneEnv {
    auth_url: String,
    username: String,
    password: String,
    project: String,
}

fn read_env_file() -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(ENV_FILE) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

/// The Keystone to test against, or `None` (after a note) when there is none and we are not in CI.
async fn keystone() -> Option<KeystoneEnv> {
    let file = read_env_file();
    let get = |key: &str| std::env::var(key).ok().or_else(|| file.get(key).cloned());
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let missing = |why: String| {
        if ci {
            panic!("{why}: run `bash scripts/services/keystone-up.sh` (CI=true, not skipping)");
        }
        eprintln!(
            "NOTE: skipping real Keystone test: {why}; run `bash scripts/services/keystone-up.sh`"
        );
        None
    };
    let Some(auth_url) = get("OS_AUTH_URL") else {
        return missing(format!("no OS_AUTH_URL and no {ENV_FILE}"));
    };
    http_kit::install_crypto_provider();
    let up = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
        .get(&auth_url)
        .send()
        .await
        .is_ok();
    if !up {
        return missing(format!("Keystone at {auth_url} does not answer"));
    }
    Some(KeystoneEnv {
        auth_url,
        username: get("OS_USERNAME").unwrap_or_else(|| "admin".into()),
        password: get("OS_PASSWORD").unwrap_or_else(|| "admin".into()),
        project: get("OS_PROJECT_NAME").unwrap_or_else(|| "admin".into()),
    })
}

fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

fn component(unit_factor: f64) -> BackendComponent {
    BackendComponent {
        measured_unit: "units".into(),
        unit_factor,
        unit_factor_reporting: None,
        accounting_type: AccountingType::Limit,
        label: "component".into(),
        limit: None,
        extra: BTreeMap::new(),
    }
}

fn components() -> IndexMap<String, BackendComponent> {
    let mut c = IndexMap::new();
    c.insert("cores".to_owned(), component(1.0));
    // Waldur orders RAM in GB; Keystone's compute `ram` limit is in MB.
    c.insert("ram".to_owned(), component(1024.0));
    c.insert("storage".to_owned(), component(1.0));
    c
}

fn settings_json(env: &KeystoneEnv, extra: Value) -> Map<String, Value> {
    let mut base = json!({
        "auth_url": env.auth_url,
        "username": env.username,
        "password": env.password,
        "project_name": env.project,
        "domain_name": "Default",
        "default_role": "member",
        "create_users_if_not_exist": true,
        "sync_user_emails": true,
        "project_prefix": "wt-",
        "timeout_seconds": 20,
        "limits_mapping": {
            "cores": {"service": "compute", "resource_name": "cores"},
            "ram": {"service": "compute", "resource_name": "ram"}
        }
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        b.extend(e);
    }
    match base {
        Value::Object(m) => m,
        _ => unreachable!("built from an object literal"),
    }
}

fn backend_with(env: &KeystoneEnv, extra: Value) -> OpenStackBackend {
    let settings = OpenStackSettings::from_backend_settings("os-it", &settings_json(env, extra))
        .expect("test settings parse");
    OpenStackBackend::new("os-it", settings, components()).expect("backend builds")
}

static SETUP: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

/// A fresh Keystone has no `compute` service; unified limits need one.
async fn ensure_compute_service(client: &KeystoneClient) {
    let mut done = SETUP.lock().await;
    if *done {
        return;
    }
    let services = client.list_services().await.expect("list services");
    if !services.iter().any(|s| s.service_type == "compute") {
        client
            .create_service("compute", "nova")
            .await
            .expect("create compute service");
    }
    *done = true;
}

async fn setup() -> Option<(KeystoneEnv, OpenStackBackend)> {
    let env = keystone().await?;
    let backend = backend_with(&env, json!({}));
    ensure_compute_service(backend.client()).await;
    Some((env, backend))
}

fn resource(id: &str) -> ResourceView {
    ResourceView {
        uuid: format!("res{id}"),
        name: format!("Test allocation {id}"),
        slug: format!("alloc-{id}"),
        project_name: "Physics".into(),
        customer_name: "University".into(),
        project_slug: "physics".into(),
        ..Default::default()
    }
}

fn limits(pairs: &[(&str, i64)]) -> BTreeMap<String, f64> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v as f64))
        .collect()
}

async fn cleanup_users(client: &KeystoneClient, names: &[String]) {
    for name in names {
        if let Ok(Some(user)) = client.find_user(name, "default").await {
            let _ = client.delete_user(&user.id).await;
        }
    }
}

#[tokio::test]
async fn conformance_lifecycle_on_real_keystone() {
    let Some((_env, backend)) = setup().await else {
        return;
    };
    let id = run_id();
    let users: Vec<UserGrant> = ["a", "b"]
        .iter()
        .map(|p| UserGrant {
            username: format!("wt-{p}-{id}"),
            email: Some(format!("{p}-{id}@example.org")),
            ..Default::default()
        })
        .collect();
    let fixture = Fixture {
        resource: resource(&id),
        initial_limits: limits(&[("cores", 4), ("ram", 8)]),
        updated_limits: limits(&[("cores", 6), ("ram", 16)]),
        users: users.clone(),
    };
    conformance::order_and_membership_lifecycle(&backend, fixture).await;

    // add_users created the missing users, with their email.
    let created = backend
        .client()
        .find_user(&users[1].username, "default")
        .await
        .expect("find user")
        .expect("user created by add_users");
    assert_eq!(created.email.as_deref(), users[1].email.as_deref());
    cleanup_users(
        backend.client(),
        &users.iter().map(|u| u.username.clone()).collect::<Vec<_>>(),
    )
    .await;
}

#[tokio::test]
async fn members_get_a_project_token_until_removed_or_paused() {
    let Some((_env, backend)) = setup().await else {
        return;
    };
    let client = backend.client();
    let id = run_id();
    let username = format!("wt-login-{id}");
    let password = Secret::new(format!("pw-{id}"));
    client
        .create_user(&username, "default", None, Some(&password), None)
        .await
        .expect("pre-create a user with a password");

    let mut res = resource(&id);
    res.backend_id = backend.backend_id_for(&res.slug).expect("backend id");
    assert_eq!(res.backend_id, format!("wt-alloc-{id}"));
    let info = backend
        .create_resource(CreateRequest {
            resource: res.clone(),
            backend_id: res.backend_id.clone(),
            context: UserContext::default(),
        })
        .await
        .expect("create");
    let project_id = info.backend_metadata["project_id"]
        .as_str()
        .expect("project id in metadata")
        .to_owned();
    assert_eq!(info.backend_metadata["domain_id"], "default");
    let project = client
        .find_project(&res.backend_id, "default")
        .await
        .expect("find")
        .expect("exists");
    assert!(
        project
            .description
            .as_deref()
            .is_some_and(|d| d.contains("Physics") && d.contains("University")),
        "description names project and customer: {:?}",
        project.description
    );

    // Before the grant the user cannot scope to the project.
    assert!(
        client
            .try_login(&username, "Default", &password, &project_id)
            .await
            .is_err(),
        "no access before add_users"
    );
    let grant = UserGrant {
        username: username.clone(),
        email: Some(format!("login-{id}@example.org")),
        ..Default::default()
    };
    let added = backend
        .add_users(&res, std::slice::from_ref(&grant))
        .await
        .expect("add");
    assert_eq!(added, vec![username.clone()]);
    let token = client
        .try_login(&username, "Default", &password, &project_id)
        .await
        .expect("member gets a project-scoped token");
    assert!(
        token.roles.iter().any(|r| r.name == "member"),
        "token roles: {:?}",
        token.roles
    );
    let user = client
        .find_user(&username, "default")
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(
        user.email.as_deref(),
        grant.email.as_deref(),
        "email synced"
    );
    let pulled = backend
        .pull_resources(std::slice::from_ref(&res))
        .await
        .expect("pull_resources");
    assert_eq!(pulled[&res.backend_id].users, vec![username.clone()]);

    // Pause disables the project: no new tokens. Restore brings access back.
    assert!(backend.pause(&res).await.expect("pause"));
    assert!(
        !client
            .find_project(&res.backend_id, "default")
            .await
            .expect("find")
            .expect("exists")
            .enabled
    );
    assert!(
        client
            .try_login(&username, "Default", &password, &project_id)
            .await
            .is_err(),
        "paused project gives no token"
    );
    assert!(
        !backend.downscale(&res).await.expect("downscale"),
        "downscale is a no-op"
    );
    assert!(backend.restore(&res).await.expect("restore"));
    client
        .try_login(&username, "Default", &password, &project_id)
        .await
        .expect("token again after restore");

    // Removal revokes the role.
    let removed = backend
        .remove_users(&res, std::slice::from_ref(&username))
        .await
        .expect("remove");
    assert_eq!(removed, vec![username.clone()]);
    assert!(
        client
            .try_login(&username, "Default", &password, &project_id)
            .await
            .is_err(),
        "no token after removal"
    );
    let assignments = client
        .role_assignments(&[("scope.project.id", &project_id)])
        .await
        .expect("assignments");
    assert!(
        assignments
            .iter()
            .all(|a| a.user.as_ref().is_none_or(|u| u.name != username)),
        "no assignment left for the user"
    );

    backend.delete_resource(&res).await.expect("delete");
    assert!(
        client
            .find_project(&res.backend_id, "default")
            .await
            .expect("find")
            .is_none()
    );
    // Users are kept on terminate.
    assert!(
        client
            .find_user(&username, "default")
            .await
            .expect("find")
            .is_some()
    );
    cleanup_users(client, &[username]).await;
}

#[tokio::test]
async fn limits_round_trip_through_unified_limits() {
    let Some((env, _)) = setup().await else {
        return;
    };
    let id = run_id();
    // A resource name nobody registered yet: the backend registers it (default 0).
    let gpu_resource = format!("gpus_{id}");
    let backend = backend_with(
        &env,
        json!({"limits_mapping": {
            "cores": {"service": "compute", "resource_name": "cores"},
            "ram": {"service": "compute", "resource_name": "ram"},
            "gpu": {"service": "nova", "resource_name": gpu_resource}
        }}),
    );
    let client = backend.client();
    let mut res = resource(&id);
    res.backend_id = backend.backend_id_for(&res.slug).expect("id");
    res.limits = limits(&[("cores", 4), ("ram", 8), ("gpu", 1), ("storage", 100)]);
    let info = backend
        .create_resource(CreateRequest {
            resource: res.clone(),
            backend_id: res.backend_id.clone(),
            context: UserContext::default(),
        })
        .await
        .expect("create with limits");
    let project_id = info.backend_metadata["project_id"]
        .as_str()
        .expect("project id")
        .to_owned();

    let raw: BTreeMap<String, i64> = client
        .project_limits(&project_id)
        .await
        .expect("limits")
        .into_iter()
        .map(|l| (l.resource_name, l.resource_limit))
        .collect();
    assert_eq!(raw["cores"], 4);
    assert_eq!(raw["ram"], 8 * 1024, "unit_factor applied on the way in");
    assert_eq!(raw[&gpu_resource], 1);
    assert!(
        !raw.contains_key("storage"),
        "unmapped components are not sent"
    );

    let pulled = backend
        .pull_resource(&res)
        .await
        .expect("pull")
        .expect("exists");
    assert_eq!(
        pulled.limits, res.limits,
        "read back in Waldur units; unmapped kept"
    );

    backend
        .set_limits(&res, &limits(&[("cores", 10), ("ram", 2), ("gpu", 0)]))
        .await
        .expect("update limits");
    let mut stale = res.clone();
    stale.limits = limits(&[("cores", 1), ("storage", 100)]);
    let pulled = backend
        .pull_resource(&stale)
        .await
        .expect("pull")
        .expect("exists");
    assert_eq!(
        pulled.limits,
        limits(&[("cores", 10), ("ram", 2), ("gpu", 0), ("storage", 100)]),
        "Keystone values win for mapped components"
    );
    let count = client
        .project_limits(&project_id)
        .await
        .expect("limits")
        .len();
    assert_eq!(count, 3, "updates PATCH the existing limits, no duplicates");

    let diagnostics = backend.diagnostics().await;
    assert!(diagnostics.ok(), "{diagnostics:?}");
    let gpu_check = diagnostics
        .checks
        .iter()
        .find(|c| c.name == "limit gpu")
        .expect("gpu limit check");
    assert!(gpu_check.detail.contains("found"), "{gpu_check:?}");

    backend.delete_resource(&res).await.expect("delete");
    let services = client.list_services().await.expect("services");
    for s in services.iter().filter(|s| s.service_type == "compute") {
        for r in client
            .registered_limits(&s.id, &gpu_resource, None)
            .await
            .expect("registered")
        {
            client
                .delete_registered_limit(&r.id)
                .await
                .expect("cleanup registered limit");
        }
    }
}

#[tokio::test]
async fn missing_registered_limit_is_a_clear_config_error_and_leaves_nothing() {
    let Some((env, _)) = setup().await else {
        return;
    };
    let id = run_id();
    let backend = backend_with(
        &env,
        json!({"create_registered_limits": false, "limits_mapping": {
            "cores": {"service": "compute", "resource_name": format!("never_{id}")}
        }}),
    );
    let mut res = resource(&id);
    res.backend_id = backend.backend_id_for(&res.slug).expect("id");
    res.limits = limits(&[("cores", 2)]);
    let err = backend
        .create_resource(CreateRequest {
            resource: res.clone(),
            backend_id: res.backend_id.clone(),
            context: UserContext::default(),
        })
        .await
        .expect_err("no registered limit");
    let msg = err.to_string();
    assert!(matches!(err, BackendError::Config(_)), "{err:?}");
    assert!(
        msg.contains(&format!("never_{id}")) && msg.contains("registered limit create"),
        "{msg}"
    );
    assert!(
        backend.pull_resource(&res).await.expect("pull").is_none(),
        "the half-made project was removed"
    );
    let diagnostics = backend.diagnostics().await;
    assert!(
        !diagnostics.ok(),
        "diagnostics reports the missing registration"
    );
}

#[tokio::test]
async fn wrong_password_is_a_permanent_secret_free_error() {
    let Some(env) = keystone().await else {
        return;
    };
    let secret = format!("wrong-{}", run_id());
    let backend = backend_with(&env, json!({"password": secret}));
    let err = backend.ping().await.expect_err("wrong password");
    let msg = err.to_string();
    assert!(!err.is_transient(), "{err:?}");
    assert!(matches!(err, BackendError::Config(_)), "{err:?}");
    assert!(
        msg.contains(&env.auth_url) && msg.contains("os-it"),
        "names auth_url and offering: {msg}"
    );
    assert!(!msg.contains(&secret), "no password in: {msg}");
    assert!(!format!("{err:?}").contains(&secret));
    let diagnostics = backend.diagnostics().await;
    assert!(!diagnostics.ok());
    assert!(!format!("{diagnostics:?}").contains(&secret));
}

#[tokio::test]
async fn unreachable_auth_url_is_a_quick_transient_error() {
    // Port 9 (discard) on localhost: nothing listens, so connections are refused at once.
    let env = KeystoneEnv {
        auth_url: "http://127.0.0.1:9/v3".into(),
        username: "admin".into(),
        password: "pw-unreachable".into(),
        project: "admin".into(),
    };
    let backend = backend_with(&env, json!({"retry_base_delay_ms": 50}));
    let started = Instant::now();
    let err = backend.ping().await.expect_err("unreachable");
    assert!(err.is_transient(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("127.0.0.1:9") && msg.contains("unreachable"),
        "{msg}"
    );
    assert!(!msg.contains("pw-unreachable"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn build_registers_every_capability_and_usage_is_empty() {
    let Some((env, _)) = setup().await else {
        return;
    };
    let offering: OfferingConfig = serde_json::from_value(json!({
        "name": "os-build",
        "waldur_api_url": "http://waldur.invalid/api/",
        "waldur_offering_uuid": "0123456789abcdef0123456789abcdef",
        "backend_type": "openstack",
        "backend_settings": settings_json(&env, json!({})),
    }))
    .expect("offering config");
    let handles = backend_openstack::build(&BuildContext::new(&offering)).expect("build");
    assert_eq!(handles.kind, "openstack");
    assert!(handles.orders.is_some() && handles.membership.is_some());
    assert!(
        handles.usage.is_none(),
        "Keystone records no usage: no reporting role"
    );
    handles.health.ping().await.expect("ping real Keystone");
    let diagnostics = handles.health.diagnostics().await;
    let usage_check = diagnostics
        .checks
        .iter()
        .find(|c| c.name == "usage")
        .expect("usage check");
    assert!(usage_check.detail.contains("not recorded by Keystone"));
    for name in [
        "authentication",
        "domain",
        "default role",
        "catalog endpoints",
    ] {
        let check = diagnostics
            .checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("missing check {name}"));
        assert!(check.ok, "{check:?}");
    }

    let mut bad = offering.clone();
    bad.backend_settings.remove("auth_url");
    let err = backend_openstack::build(&BuildContext::new(&bad))
        .err()
        .expect("missing auth_url refused");
    assert!(err.to_string().contains("os-build") && err.to_string().contains("auth_url"));
}

#[tokio::test]
async fn seed_role_name_falls_back_to_member() {
    let Some((env, _)) = setup().await else {
        return;
    };
    let backend = backend_with(&env, json!({"default_role": "_member_"}));
    let diagnostics = backend.diagnostics().await;
    let role = diagnostics
        .checks
        .iter()
        .find(|c| c.name == "default role")
        .expect("role check");
    assert!(role.ok, "{role:?}");
    let backend = backend_with(&env, json!({"default_role": format!("nope-{}", run_id())}));
    let diagnostics = backend.diagnostics().await;
    let role = diagnostics
        .checks
        .iter()
        .find(|c| c.name == "default role")
        .expect("role check");
    assert!(
        !role.ok && role.detail.contains("does not exist"),
        "{role:?}"
    );
}

#[tokio::test]
async fn application_credentials_authenticate_and_manage_projects() {
    let Some((env, admin)) = setup().await else {
        return;
    };
    let token = admin.client().authenticate().await.expect("admin token");
    let user_id = token.user.expect("token names the user").id;
    let id = run_id();
    let (cred_id, cred_secret) = admin
        .client()
        .create_application_credential(&user_id, &format!("wt-cred-{id}"))
        .await
        .expect("create application credential");
    let backend = backend_with(
        &env,
        json!({"username": null, "password": null, "project_name": null,
            "application_credential_id": cred_id,
            "application_credential_secret": cred_secret.expose()}),
    );
    assert!(
        format!("{:?}", backend.settings()).contains(&cred_id)
            && !format!("{:?}", backend.settings()).contains(cred_secret.expose()),
        "id shown, secret hidden"
    );
    backend
        .ping()
        .await
        .expect("application credential authenticates");
    let mut res = resource(&id);
    res.backend_id = backend.backend_id_for(&res.slug).expect("id");
    backend
        .create_resource(CreateRequest {
            resource: res.clone(),
            backend_id: res.backend_id.clone(),
            context: UserContext::default(),
        })
        .await
        .expect("create with an application credential");
    assert!(backend.pull_resource(&res).await.expect("pull").is_some());
    backend.delete_resource(&res).await.expect("delete");
    admin
        .client()
        .delete_application_credential(&user_id, &cred_id)
        .await
        .expect("cleanup credential");
}

#[tokio::test]
async fn extended_conformance_on_real_keystone() {
    let Some((env, backend)) = setup().await else {
        return;
    };
    let id = run_id();
    let view = |suffix: &str| {
        let mut r = resource(&format!("{id}{suffix}"));
        r.uuid = format!("res{id}{suffix}");
        r
    };
    conformance::batch_partial_failure_and_order(
        &backend,
        conformance::BatchFixture {
            first: view("b1"),
            second: view("b2"),
            third: view("b3"),
            limits: limits(&[("cores", 2), ("ram", 4)]),
        },
    )
    .await;
    let user = format!("wt-x-{id}");
    conformance::idempotent_writes_and_unit_round_trip(
        &backend,
        Fixture {
            resource: view("idem"),
            initial_limits: limits(&[("cores", 4), ("ram", 8)]),
            updated_limits: limits(&[("cores", 6), ("ram", 16)]),
            users: vec![UserGrant {
                username: user.clone(),
                ..Default::default()
            }],
        },
        &[],
    )
    .await;
    cleanup_users(backend.client(), &[user]).await;
    // The same Keystone behind a closed port: every call transient, no password shown.
    let down = backend_with(
        &env,
        json!({"auth_url": "http://127.0.0.1:9/v3", "max_retries": 0}),
    );
    conformance::site_down_is_transient(
        &down,
        &Fixture {
            resource: view("down"),
            initial_limits: limits(&[("cores", 1)]),
            updated_limits: limits(&[("cores", 2)]),
            users: vec![UserGrant {
                username: format!("wt-down-{id}"),
                ..Default::default()
            }],
        },
        &[env.password.as_str()],
    )
    .await;
}
