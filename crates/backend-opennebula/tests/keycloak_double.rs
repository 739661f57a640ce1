//! VDC mode with `keycloak_enabled` against the site-sim OpenNebula and Keycloak doubles: the
//! conformance checks with membership, the role groups and the SAML mapping file, a group
//! another VDC holds is kept, a user Keycloak does not know yet, concurrent creates.

use std::path::Path;

use backend_api::testkit::conformance::{self, Fixture};
use backend_api::{
    BackendHealth, CreateRequest, Limits, MembershipBackend, OrderBackend, ResourceView,
    UserContext, UserGrant,
};
use backend_opennebula::saml::read_mapping;
use backend_opennebula::{OneBackend, OneSettings};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};
use site_sim::{KeycloakOptions, KeycloakServer, OneOptions, OneServer};

struct Sites {
    one: OneServer,
    kc: KeycloakServer,
    dir: tempfile::TempDir,
}

async fn sites() -> Sites {
    Sites {
        one: OneServer::start(OneOptions::default())
            .await
            .expect("one double"),
        kc: KeycloakServer::start(KeycloakOptions {
            demo: true,
            ..Default::default()
        })
        .await
        .expect("keycloak double"),
        dir: tempfile::tempdir().expect("dir"),
    }
}

fn mapping(s: &Sites) -> std::path::PathBuf {
    s.dir.path().join("keycloak_groups.yaml")
}

fn settings(s: &Sites) -> Value {
    let k = s.kc.info();
    json!({
        "api_url": s.one.info().url, "credentials": s.one.info().credentials,
        "max_retries": 1, "timeout_seconds": 5,
        "keycloak_enabled": true, "keycloak_use_user_id": false,
        "saml_mapping_file": mapping(s).display().to_string(),
        "keycloak": {"keycloak_url": k.url, "keycloak_realm": "waldur", "keycloak_user_realm": "master",
                     "keycloak_username": k.username, "keycloak_password": k.password},
    })
}

fn backend(s: &Sites) -> OneBackend {
    let v = settings(s);
    let settings = OneSettings::parse(v.as_object().expect("object")).expect("settings");
    OneBackend::new("one-kc", settings, IndexMap::new(), None).expect("backend")
}

fn view(slug: &str) -> ResourceView {
    ResourceView {
        uuid: format!("{slug}-uuid"),
        name: slug.to_owned(),
        slug: slug.to_owned(),
        project_slug: "physics".into(),
        offering_plugin_options: Map::new(),
        ..Default::default()
    }
}

fn limits(pairs: &[(&str, f64)]) -> Limits {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn grant(u: &str) -> UserGrant {
    UserGrant {
        username: u.into(),
        ..Default::default()
    }
}

fn fixture(slug: &str) -> Fixture {
    Fixture {
        resource: view(slug),
        initial_limits: limits(&[("cpu", 4.0), ("ram", 4096.0)]),
        updated_limits: limits(&[("cpu", 8.0), ("ram", 8192.0), ("storage", 10240.0)]),
        users: vec![grant("alice"), grant("bob")],
    }
}

async fn create(b: &OneBackend, slug: &str) -> ResourceView {
    let mut r = view(slug);
    r.backend_id = b.backend_id_for(slug).expect("id");
    r.limits = limits(&[("cpu", 2.0)]);
    b.create_resource(CreateRequest {
        backend_id: r.backend_id.clone(),
        resource: r.clone(),
        context: UserContext::default(),
    })
    .await
    .expect("create");
    r
}

fn one_groups(s: &Sites) -> Vec<String> {
    s.one
        .state()
        .store()
        .groups
        .values()
        .map(|g| g.name.clone())
        .collect()
}

fn keys(path: &Path) -> Vec<String> {
    read_mapping(path)
        .expect("mapping")
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn conformance_with_keycloak_role_groups() {
    let s = sites().await;
    let b = backend(&s);
    b.ping().await.expect("ping");
    conformance::order_and_membership_lifecycle(&b, fixture("life")).await;
    conformance::idempotent_writes_and_unit_round_trip(
        &b,
        fixture("idem"),
        &[limits(&[("cpu", 1.0), ("ram", 512.0)])],
    )
    .await;
    assert!(s.kc.groups("waldur").is_empty(), "every group removed");
    assert!(keys(&mapping(&s)).is_empty(), "every mapping entry removed");
    assert_eq!(one_groups(&s), vec!["oneadmin", "users"]);
    let one_secret = s.one.info().password.clone();
    let kc_secret = s.kc.info().password.clone();
    s.one.shutdown().await;
    s.kc.shutdown().await;
    conformance::site_down_is_transient(&b, &fixture("down"), &[&one_secret, &kc_secret]).await;
}

#[tokio::test]
async fn role_groups_views_mapping_members_and_cleanup() {
    let s = sites().await;
    let b = backend(&s);
    let r = create(&b, "astro").await;
    assert_eq!(
        s.kc.groups("waldur")
            .into_iter()
            .map(|g| g.0)
            .collect::<Vec<_>>(),
        vec![
            "/vdc_astro",
            "/vdc_astro/admin",
            "/vdc_astro/cloud",
            "/vdc_astro/user"
        ]
    );
    {
        let st = s.one.state().store();
        let admins = st
            .groups
            .values()
            .find(|g| g.name == "astro-admins")
            .expect("admins group");
        assert_eq!(admins.template.get("SAML_GROUP"), Some("/vdc_astro/admin"));
        assert!(admins.admins.contains(&0), "oneadmin administers it");
        let vdc = st.vdcs.values().find(|v| v.name == "astro").expect("vdc");
        assert_eq!(vdc.groups.len(), 4, "the VDC's group and three role groups");
    }
    let map = read_mapping(&mapping(&s)).expect("mapping");
    assert_eq!(
        map.keys().cloned().collect::<Vec<_>>(),
        vec!["/vdc_astro/admin", "/vdc_astro/user", "/vdc_astro/cloud"]
    );
    let text = std::fs::read_to_string(mapping(&s)).expect("text");
    assert!(text.contains("\"/vdc_astro/user\": "), "{text}");

    // A member joins the user group; a user Keycloak does not know yet is not reported.
    let added = b
        .add_users(&r, &[grant("alice"), grant("newcomer")])
        .await
        .expect("add");
    assert_eq!(added, vec!["alice".to_owned()]);
    let user_group =
        s.kc.groups("waldur")
            .into_iter()
            .find(|g| g.0 == "/vdc_astro/user")
            .expect("user group");
    assert_eq!(user_group.1, vec!["alice".to_owned()]);
    s.kc.add_user("waldur", "newcomer");
    assert_eq!(
        b.add_users(&r, &[grant("newcomer")]).await.expect("add"),
        vec!["newcomer".to_owned()]
    );
    let info = b.pull_resource(&r).await.expect("pull").expect("exists");
    assert_eq!(info.users, vec!["alice".to_owned(), "newcomer".to_owned()]);
    b.remove_users(&r, &["alice".to_owned()])
        .await
        .expect("remove");
    let info = b.pull_resource(&r).await.expect("pull").expect("exists");
    assert_eq!(info.users, vec!["newcomer".to_owned()]);

    // A role group another VDC holds is kept; a Keycloak group that is not a role is kept
    // with its parent; a hand-written mapping entry survives.
    let other = create(&b, "other").await;
    let shared = {
        let st = s.one.state().store();
        *st.groups
            .iter()
            .find(|(_, g)| g.name == "astro-users")
            .expect("group")
            .0
    };
    let other_vdc = {
        let st = s.one.state().store();
        *st.vdcs
            .iter()
            .find(|(_, v)| v.name == "other")
            .expect("vdc")
            .0
    };
    s.one
        .state()
        .store()
        .vdcs
        .get_mut(&other_vdc)
        .expect("vdc")
        .groups
        .insert(shared);
    std::fs::write(
        mapping(&s),
        format!(
            "{}\"/hand/made\": 7\n",
            std::fs::read_to_string(mapping(&s)).expect("read")
        ),
    )
    .expect("write");
    // A user SAML logged in to the cloud group: the group is kept (not the agent's to empty).
    {
        let mut st = s.one.state().store();
        let cloud = *st
            .groups
            .iter()
            .find(|(_, g)| g.name == "astro-cloud")
            .expect("cloud group")
            .0;
        let mut user = st.users.get(&0).expect("oneadmin").clone();
        user.name = "saml-user".into();
        user.gid = cloud;
        user.groups = [cloud].into_iter().collect();
        st.users.insert(4242, user);
    }
    b.delete_resource(&r).await.expect("delete");
    let groups = one_groups(&s);
    assert!(groups.contains(&"astro-users".to_owned()), "{groups:?}");
    assert!(groups.contains(&"astro-cloud".to_owned()), "{groups:?}");
    assert!(!groups.contains(&"astro-admins".to_owned()), "{groups:?}");
    assert!(!groups.contains(&"astro".to_owned()), "{groups:?}");
    assert!(
        !s.kc
            .groups("waldur")
            .iter()
            .any(|g| g.0.starts_with("/vdc_astro")),
        "Keycloak groups of astro gone"
    );
    let k = keys(&mapping(&s));
    assert!(k.iter().all(|k| !k.starts_with("/vdc_astro/")), "{k:?}");
    assert!(k.contains(&"/hand/made".to_owned()), "{k:?}");
    // A second delete changes nothing.
    let before = std::fs::read_to_string(mapping(&s)).expect("read");
    b.delete_resource(&r).await.expect("delete again");
    assert_eq!(std::fs::read_to_string(mapping(&s)).expect("read"), before);
    b.delete_resource(&other).await.expect("delete other");
}

#[tokio::test]
async fn concurrent_creates_keep_every_mapping_entry() {
    let s = sites().await;
    let b = std::sync::Arc::new(backend(&s));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            create(&b, &format!("par{i}")).await;
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(keys(&mapping(&s)).len(), 18);
}

#[test]
fn keycloak_needs_a_vdc_offering_and_a_known_role() {
    let base = json!({"api_url": "http://h:2633/RPC2", "credentials": "oneadmin:x", "keycloak_enabled": true,
        "keycloak": {"keycloak_url": "https://kc/auth/", "keycloak_username": "admin", "keycloak_password": "p"}});
    let parse = |extra: Value| {
        let mut v = base.clone();
        if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
            m.extend(e);
        }
        OneSettings::parse(v.as_object().expect("object"))
    };
    assert!(parse(json!({})).is_ok());
    let vm = parse(json!({"resource_type": "vm"})).expect_err("vm");
    assert!(
        vm.iter().any(|i| i.path.ends_with("keycloak_enabled")),
        "{vm:?}"
    );
    let role = parse(json!({"default_user_role": "nobody"})).expect_err("role");
    assert!(role.iter().any(|i| i.path.ends_with("default_user_role")));
    let custom = parse(json!({"vdc_roles": {"member": {"group_suffix": "members", "default_view": "user"}}, "default_user_role": "member"}))
        .expect("custom roles");
    let roles = &custom.saml.expect("saml").roles;
    assert_eq!(
        (roles[0].role.as_str(), roles[0].views.as_str()),
        ("member", "user")
    );
}

#[test]
fn membership_sync_without_keycloak_is_named_by_validate_config() {
    let offering = |settings: Value| -> agent_config::OfferingConfig {
        serde_json::from_value(json!({
            "name": "one", "waldur_api_url": "https://waldur.example.org/api/",
            "waldur_api_token": "t", "waldur_offering_uuid": "0123456789abcdef0123456789abcdef",
            "backend_type": "opennebula", "membership_sync_backend": "opennebula",
            "backend_settings": settings, "backend_components": {},
        }))
        .expect("offering")
    };
    let plain = json!({"api_url": "http://h:2633/RPC2", "credentials": "oneadmin:x"});
    let issues = (backend_opennebula::SPEC.check)(&offering(plain.clone()));
    assert!(
        issues.iter().any(|i| i.path.ends_with("keycloak_enabled")),
        "{issues:?}"
    );
    let mut with = plain;
    with["keycloak_enabled"] = json!(true);
    with["keycloak"] = json!({"keycloak_url": "https://kc/", "keycloak_username": "admin", "keycloak_password": "p"});
    let issues = (backend_opennebula::SPEC.check)(&offering(with));
    assert!(issues.is_empty(), "{issues:?}");
}
