//! Keystone client behaviour that a real Keystone cannot be made to show on demand: re-auth after
//! a 401, retries of idempotent calls on 5xx, no blind replay of creates, token renewal.

use std::time::Duration;

use backend_openstack::{KeystoneClient, OpenStackSettings};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn settings(uri: &str) -> OpenStackSettings {
    let Value::Object(map) = json!({
        "auth_url": format!("{uri}/v3"), "username": "admin", "password": "pw-mock",
        "project_name": "admin", "retry_base_delay_ms": 10, "max_retries": 2,
        "timeout_seconds": 5,
    }) else {
        unreachable!("object literal")
    };
    OpenStackSettings::from_backend_settings("mock", &map).expect("settings")
}

fn token_response(token: &str, lifetime: jiff::SignedDuration) -> ResponseTemplate {
    let now = jiff::Timestamp::now();
    ResponseTemplate::new(201)
        .insert_header("X-Subject-Token", token)
        .set_body_json(json!({"token": {
            "issued_at": now.to_string(),
            "expires_at": (now + lifetime).to_string(),
            "user": {"id": "u1", "name": "admin"},
            "project": {"id": "p1", "name": "admin"},
            "roles": [{"id": "r1", "name": "admin"}],
            "catalog": []
        }}))
}

async fn count(server: &MockServer, http_method: &str, p: &str) -> usize {
    server
        .received_requests()
        .await
        .expect("recording on")
        .iter()
        .filter(|r| r.method.as_str() == http_method && r.url.path() == p)
        .count()
}

#[tokio::test]
async fn a_401_triggers_one_reauth_and_a_retry() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(token_response("tok", jiff::SignedDuration::from_hours(1)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/roles"))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/roles"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"roles": [{"id": "r9", "name": "member"}]})),
        )
        .mount(&server)
        .await;
    let client = KeystoneClient::new("mock", &settings(&server.uri())).expect("client");
    let role = client
        .find_role_id("member")
        .await
        .expect("role after re-auth");
    assert_eq!(role.as_deref(), Some("r9"));
    assert_eq!(
        count(&server, "POST", "/v3/auth/tokens").await,
        2,
        "initial + re-auth"
    );
    assert_eq!(count(&server, "GET", "/v3/roles").await, 2);
    // The token is cached afterwards.
    client.find_role_id("member").await.expect("cached");
    assert_eq!(count(&server, "POST", "/v3/auth/tokens").await, 2);
}

#[tokio::test]
async fn idempotent_calls_retry_on_5xx_but_creates_do_not() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(token_response("tok", jiff::SignedDuration::from_hours(1)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/domains"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/domains"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"domains": [{"id": "default", "name": "Default"}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/projects"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let client = KeystoneClient::new("mock", &settings(&server.uri())).expect("client");
    let domain = client
        .find_domain_id("Default")
        .await
        .expect("third try works");
    assert_eq!(domain.as_deref(), Some("default"));
    assert_eq!(count(&server, "GET", "/v3/domains").await, 3);

    let err = client
        .create_project("p", "default", "d", &[])
        .await
        .expect_err("503 on create");
    assert!(err.is_transient());
    assert_eq!(
        count(&server, "POST", "/v3/projects").await,
        1,
        "a create is sent once"
    );
}

#[tokio::test]
async fn retries_stop_after_max_retries() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(token_response("tok", jiff::SignedDuration::from_hours(1)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/services"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let client = KeystoneClient::new("mock", &settings(&server.uri())).expect("client");
    let err = client.list_services().await.expect_err("always 502");
    assert!(err.is_transient());
    assert!(err.to_string().contains("502"), "{err}");
    assert_eq!(
        count(&server, "GET", "/v3/services").await,
        3,
        "1 + max_retries"
    );
}

#[tokio::test]
async fn tokens_close_to_expiry_are_renewed() {
    let server = MockServer::start().await;
    // A token that is already inside the renewal margin: every call issues a new one.
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(token_response("short", jiff::SignedDuration::from_secs(2)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/roles"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"roles": []})))
        .mount(&server)
        .await;
    let client = KeystoneClient::new("mock", &settings(&server.uri())).expect("client");
    client.find_role_id("x").await.expect("first");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    client.find_role_id("x").await.expect("second");
    assert_eq!(count(&server, "POST", "/v3/auth/tokens").await, 2);
}

#[tokio::test]
async fn auth_rejection_is_not_retried_and_hides_the_password() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"code": 401, "message": "The request you have made requires authentication."}}),
        ))
        .mount(&server)
        .await;
    let client = KeystoneClient::new("mock", &settings(&server.uri())).expect("client");
    let err = client.authenticate().await.expect_err("rejected");
    assert_eq!(count(&server, "POST", "/v3/auth/tokens").await, 1);
    let backend_err = backend_api::BackendError::from(err);
    assert!(!backend_err.is_transient());
    let msg = backend_err.to_string();
    assert!(
        msg.contains("mock") && msg.contains("/v3") && msg.contains("admin"),
        "{msg}"
    );
    assert!(!msg.contains("pw-mock"));
    assert!(!format!("{client:?}").contains("pw-mock"));
}

/// `global_proxy` reaches Keystone: with a proxy that does not answer, Keystone is unreachable
/// through it (the direct address would have answered).
#[tokio::test]
async fn global_proxy_reaches_keystone() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(token_response("tok", jiff::SignedDuration::from_hours(1)))
        .mount(&server)
        .await;
    let direct = KeystoneClient::new("mock", &settings(&server.uri())).expect("client");
    direct.authenticate().await.expect("direct works");
    let proxied =
        KeystoneClient::with_proxy("mock", &settings(&server.uri()), Some("http://127.0.0.1:9"))
            .expect("client");
    let err = proxied.authenticate().await.expect_err("proxy is closed");
    assert!(err.is_transient(), "{err}");
    assert_eq!(count(&server, "POST", "/v3/auth/tokens").await, 1);
}
