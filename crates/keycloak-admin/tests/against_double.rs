//! The Keycloak admin client against site-sim's Keycloak double.

use std::time::Duration;

use agent_config::Secret;
use http_kit::{HttpErrorKind, RetryPolicy};
use keycloak_admin::{KeycloakAdmin, KeycloakAuth, KeycloakConfig};
use site_sim::{FaultConfig, FaultRule, KeycloakOptions, KeycloakServer};

async fn double() -> KeycloakServer {
    KeycloakServer::start(KeycloakOptions {
        demo: true,
        ..Default::default()
    })
    .await
    .expect("keycloak double")
}

fn config(sim: &KeycloakServer, auth: KeycloakAuth, client_id: &str) -> KeycloakConfig {
    KeycloakConfig {
        url: url::Url::parse(sim.url()).expect("url"),
        realm: "waldur".into(),
        user_realm: "master".into(),
        client_id: client_id.into(),
        auth,
        verify_tls: true,
        ca_bundle: None,
    }
}

fn password(sim: &KeycloakServer) -> KeycloakAuth {
    KeycloakAuth::Password {
        username: sim.info().username.clone(),
        password: Secret::new(sim.info().password.clone()),
        client_secret: None,
    }
}

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        jitter: true,
    }
}

fn admin(sim: &KeycloakServer) -> KeycloakAdmin {
    KeycloakAdmin::new(
        "offering 'kc-test'",
        &config(sim, password(sim), "admin-cli"),
        None,
        Duration::from_secs(5),
        retry(),
    )
    .expect("client")
}

#[tokio::test]
async fn groups_children_members_and_409_reuse() {
    let sim = double().await;
    let kc = admin(&sim);
    kc.ping().await.expect("ping");

    let parent = kc
        .ensure_group(None, "c_cm1234ab", "cluster")
        .await
        .expect("parent");
    assert!(parent.created);
    let child = kc
        .ensure_group(
            Some(&parent.group.id),
            "project_p1_workloads-manage",
            "project p1",
        )
        .await
        .expect("child");
    assert!(child.created);
    // Found again, not made again: through /children, since GET /groups does not inline it.
    let again = kc
        .ensure_group(Some(&parent.group.id), "project_p1_workloads-manage", "")
        .await
        .expect("again");
    assert!(!again.created);
    assert_eq!(again.group.id, child.group.id);
    assert_eq!(sim.groups("waldur").len(), 2);

    // More children than Keycloak's default page of 10: all are listed.
    for i in 0..12 {
        kc.ensure_group(Some(&parent.group.id), &format!("extra-{i:02}"), "")
            .await
            .expect("extra");
    }
    assert_eq!(
        kc.children(&parent.group.id).await.expect("children").len(),
        13
    );
    let late = kc
        .child_group(&parent.group.id, "extra-11")
        .await
        .expect("lookup");
    assert!(late.is_some());

    // Users: exact username search, by id with username fallback.
    let alice = kc
        .find_user("alice", true)
        .await
        .expect("find")
        .expect("alice");
    assert!(kc.find_user("ali", false).await.expect("find").is_none());
    let by_id = kc
        .find_user(&alice.id, true)
        .await
        .expect("by id")
        .expect("alice");
    assert_eq!(by_id.username, "alice");
    assert!(kc.find_user("nobody", true).await.expect("find").is_none());

    kc.add_member(&alice.id, &child.group.id)
        .await
        .expect("join");
    kc.add_member(&alice.id, &child.group.id)
        .await
        .expect("join twice");
    let members = kc.members(&child.group.id).await.expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].username, "alice");
    assert_eq!(kc.user_groups(&alice.id).await.expect("groups").len(), 1);
    assert!(
        kc.remove_member(&alice.id, &child.group.id)
            .await
            .expect("leave")
    );
    assert!(
        kc.members(&child.group.id)
            .await
            .expect("members")
            .is_empty()
    );

    assert!(kc.delete_group(&parent.group.id).await.expect("delete"));
    assert!(!kc.delete_group(&parent.group.id).await.expect("gone"));
    assert!(sim.groups("waldur").is_empty());
    assert!(
        kc.members(&child.group.id)
            .await
            .expect("gone group")
            .is_empty()
    );
}

#[tokio::test]
async fn expired_tokens_are_refreshed_and_client_credentials_work() {
    let sim = double().await;
    let kc = admin(&sim);
    kc.ping().await.expect("ping");
    sim.expire_tokens();
    kc.ping().await.expect("a 401 gets a fresh token");

    let service = KeycloakAdmin::new(
        "offering 'kc-test'",
        &config(
            &sim,
            KeycloakAuth::ClientCredentials {
                client_secret: Secret::new(sim.info().service_client_secret.clone()),
            },
            &sim.info().service_client_id,
        ),
        None,
        Duration::from_secs(5),
        retry(),
    )
    .expect("client");
    service.ping().await.expect("service account");
    assert!(service.top_group("none").await.expect("search").is_none());
}

#[tokio::test]
async fn refused_logins_name_the_user_and_hide_the_password() {
    let sim = double().await;
    let kc = KeycloakAdmin::new(
        "offering 'kc-test'",
        &config(
            &sim,
            KeycloakAuth::Password {
                username: "admin".into(),
                password: Secret::new("wrong-pass-123"),
                client_secret: None,
            },
            "admin-cli",
        ),
        None,
        Duration::from_secs(5),
        retry(),
    )
    .expect("client");
    let err = kc.ping().await.expect_err("refused");
    assert!(
        matches!(err.kind, HttpErrorKind::AuthRejected { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("user 'admin'"), "{text}");
    assert!(!text.contains("wrong-pass-123"), "{text}");
}

#[tokio::test]
async fn transient_faults_are_retried() {
    let sim = double().await;
    let kc = admin(&sim);
    kc.ping().await.expect("ping");
    sim.set_faults(FaultConfig {
        seed: 3,
        rules: vec![FaultRule {
            route: "/admin/realms/{realm}/users".into(),
            method: Some("GET".into()),
            error_rate: 0.3,
            error_status: 503,
            latency_ms: 0,
            drop_rate: 0.0,
            drop_after_rate: 0.0,
        }],
    });
    for _ in 0..5 {
        kc.find_user("bob", false)
            .await
            .expect("retried")
            .expect("bob");
    }
    let stats = sim.stats();
    assert!(
        stats.count("GET", "/admin/realms/{realm}/users") > 5,
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_user_without_admin_roles_is_told_which_roles_it_needs() {
    let sim = double().await;
    sim.add_user("master", "viewer");
    sim.set_password("master", "viewer", "viewer-pass");
    let kc = KeycloakAdmin::new(
        "offering 'kc-test'",
        &config(
            &sim,
            KeycloakAuth::Password {
                username: "viewer".into(),
                password: Secret::new("viewer-pass"),
                client_secret: None,
            },
            "admin-cli",
        ),
        None,
        Duration::from_secs(5),
        retry(),
    )
    .expect("client");
    let err = kc.ping().await.expect_err("forbidden");
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("manage-users"), "{err}");
}
