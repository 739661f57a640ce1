//! Client behaviour against a mock Mastermind: pagination, auth, error classes, URL handling.

use std::time::Duration;

use serde_json::json;
use waldur_client::*;
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "s3cr3t-token-value";

fn client_for(server_uri: &str) -> WaldurClient {
    let mut options = ClientOptions::new(
        format!("{server_uri}/api/"),
        Auth::Token(Secret::new(TOKEN)),
    );
    options.user_agent = "waldur-site-agent-order_process/0.1.0".into();
    options.timeout = Duration::from_secs(5);
    WaldurClient::new(options).expect("client")
}

fn order_json(n: usize) -> serde_json::Value {
    json!({"uuid": format!("{n:032x}"), "type": "Create", "state": "executing", "resource_name": null})
}

#[tokio::test]
async fn list_all_follows_link_next_over_three_pages() {
    let server = MockServer::start().await;
    let uri = server.uri();
    // Page 1 (no `page` param), page 2 and page 3, 100 + 100 + 5 items.
    let link =
        |p: u32| format!("<{uri}/api/marketplace-orders/?page={p}&page_size=100>; rel=\"next\"");
    Mock::given(method("GET"))
        .and(path("/api/marketplace-orders/"))
        .and(query_param("page", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Link", link(3).as_str())
                .set_body_json((100..200).map(order_json).collect::<Vec<_>>()),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/marketplace-orders/"))
        .and(query_param("page", "3"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "Link",
                    format!("<{uri}/api/marketplace-orders/?page=2>; rel=\"prev\"").as_str(),
                )
                .set_body_json((200..205).map(order_json).collect::<Vec<_>>()),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/marketplace-orders/"))
        .and(query_param("page_size", "300"))
        .and(query_param("state", "pending-provider"))
        .and(query_param(
            "offering_uuid",
            "0d7d5d1b0f7c4b0f8a0b3c8c3b8c7b7c",
        ))
        .and(header("Authorization", format!("Token {TOKEN}").as_str()))
        .and(header(
            "User-Agent",
            "waldur-site-agent-order_process/0.1.0",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Link", link(2).as_str())
                .set_body_json((0..100).map(order_json).collect::<Vec<_>>()),
        )
        .expect(1)
        .mount(&server)
        .await;

    let client = client_for(&uri);
    let orders = client
        .list_orders(
            "0d7d5d1b-0f7c-4b0f-8a0b-3c8c3b8c7b7c",
            &[OrderState::PendingProvider, OrderState::Executing],
            None,
        )
        .await
        .expect("orders");
    assert_eq!(orders.len(), 205);
    assert_eq!(orders[204].uuid, format!("{:032x}", 204));
    assert_eq!(orders[0].order_type, OrderType::Create);
    // Both states were sent as repeated parameters.
    let requests = server.received_requests().await.expect("recorded");
    let first = requests[0].url.query().unwrap_or_default().to_owned();
    assert!(
        first.contains("state=pending-provider&state=executing"),
        "{first}"
    );
}

#[tokio::test]
async fn oidc_token_is_fetched_once_and_sent_as_bearer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("client_id=agent"))
        .and(body_string_contains("client_secret=cs"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "jwt-abc", "expires_in": 3600})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/version/"))
        .and(header("Authorization", "Bearer jwt-abc"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"version": "7.1.0"})))
        .expect(2)
        .mount(&server)
        .await;

    let options = ClientOptions::new(
        format!("{}/api", server.uri()),
        Auth::Oidc {
            token_url: format!("{}/token", server.uri()),
            client_id: "agent".into(),
            client_secret: Secret::new("cs"),
        },
    );
    let client = WaldurClient::new(options).expect("client");
    assert_eq!(client.version().await.expect("v1").version, "7.1.0");
    assert_eq!(client.version().await.expect("v2").version, "7.1.0");
    // `expect` counts are verified when the server drops.
}

#[tokio::test]
async fn oidc_token_without_expiry_uses_fallback_and_short_ttl_refreshes() {
    let server = MockServer::start().await;
    // expires_in 10 s is inside the 30 s refresh margin: every call fetches a new token.
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "short", "expires_in": 10})),
        )
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/version/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"version": "x"})))
        .mount(&server)
        .await;
    let client = WaldurClient::new(ClientOptions::new(
        server.uri(),
        Auth::Oidc {
            token_url: format!("{}/token", server.uri()),
            client_id: "a".into(),
            client_secret: Secret::new("b"),
        },
    ))
    .expect("client");
    client.version().await.expect("v1");
    client.version().await.expect("v2");
}

async fn error_for(status: u16) -> WaldurError {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/version/"))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({"detail": "nope"})))
        .mount(&server)
        .await;
    client_for(&server.uri())
        .version()
        .await
        .expect_err("must fail")
}

#[tokio::test]
async fn errors_are_classified() {
    let e503 = error_for(503).await;
    assert!(e503.is_transient());
    assert_eq!(e503.status, Some(503));
    assert!(error_for(429).await.is_transient());
    assert!(error_for(500).await.is_transient());
    let e400 = error_for(400).await;
    assert!(!e400.is_transient());
    assert_eq!(e400.kind, ErrorKind::Permanent);
    assert!(e400.body_contains("nope"));
    let e404 = error_for(404).await;
    assert!(e404.is_not_found());
    assert!(!e404.is_transient());
    assert!(error_for(409).await.is_conflict());
    assert_eq!(error_for(403).await.kind, ErrorKind::Unauthorized);
}

#[tokio::test]
async fn connection_refused_is_transient() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let client = client_for(&format!("http://127.0.0.1:{port}"));
    let err = client.version().await.expect_err("refused");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.status, None);
    assert!(!err.to_string().contains(TOKEN));
}

#[tokio::test]
async fn error_display_and_debug_never_contain_the_token() {
    let server = MockServer::start().await;
    // A hostile server echoing the Authorization header back in the body.
    Mock::given(method("GET"))
        .and(path("/api/users/me/"))
        .respond_with(|req: &Request| {
            let auth = req
                .headers
                .get("Authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert!(auth.contains(TOKEN));
            ResponseTemplate::new(401).set_body_json(json!({"detail": "Invalid token."}))
        })
        .mount(&server)
        .await;
    let client = client_for(&server.uri());
    let err = client.current_user().await.expect_err("401");
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert!(!err.to_string().contains(TOKEN));
    assert!(!format!("{err:?}").contains(TOKEN));
    assert!(!format!("{client:?}").contains(TOKEN));
}

#[tokio::test]
async fn uuids_are_normalised_in_paths_and_api_suffix_is_stripped() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/api/marketplace-orders/0d7d5d1b0f7c4b0f8a0b3c8c3b8c7b7c/",
        ))
        .and(query_param("field", "state"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "uuid": "0d7d5d1b-0f7c-4b0f-8a0b-3c8c3b8c7b7c", "state": "done"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let client = client_for(&server.uri());
    assert_eq!(client.base_url(), server.uri());
    let order = client
        .get_order("0D7D5D1B-0F7C-4B0F-8A0B-3C8C3B8C7B7C", &["uuid", "state"])
        .await
        .expect("order");
    assert_eq!(order.uuid, "0d7d5d1b0f7c4b0f8a0b3c8c3b8c7b7c");
    assert_eq!(order.state, OrderState::Done);
}

#[tokio::test]
async fn nulls_and_trimmed_fields_parse() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/marketplace-provider-resources/00000000000000000000000000000001/team/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"url": "u", "uuid": "00000000000000000000000000000002", "username": "alice", "full_name": "A",
             "role": "PROJECT.MEMBER", "expiration_time": null, "offering_user_username": null,
             "offering_user_state": null, "email": null}
        ])))
        .mount(&server)
        .await;
    let team = client_for(&server.uri())
        .resource_team("00000000-0000-0000-0000-000000000001", false)
        .await
        .expect("team");
    assert_eq!(team.len(), 1);
    assert_eq!(team[0].offering_user_username, None);
    assert_eq!(team[0].offering_user_state, None);
}

#[tokio::test]
async fn set_usage_sends_decimal_strings() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/marketplace-component-usages/set_usage/"))
        .and(body_string_contains("\"amount\":\"12.35\""))
        .and(body_string_contains(
            "\"resource\":\"00000000000000000000000000000001\"",
        ))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&server)
        .await;
    client_for(&server.uri())
        .set_usage(
            "00000000-0000-0000-0000-000000000001",
            "2026-07-01T00:00:00+00:00",
            &[UsageItem {
                component_type: "cpu".into(),
                amount: format_amount(12.345_1),
            }],
        )
        .await
        .expect("set_usage");
}

#[tokio::test]
async fn register_identity_updates_existing_by_name() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/marketplace-site-agent-identities/"))
        .and(query_param("name", "agent-x"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"uuid": "00000000000000000000000000000009", "name": "agent-x"}
        ])))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(
            "/api/marketplace-site-agent-identities/00000000000000000000000000000009/",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!(
            {"uuid": "00000000000000000000000000000009", "name": "agent-x"}
        )))
        .expect(1)
        .mount(&server)
        .await;
    let identity = client_for(&server.uri())
        .register_agent_identity(&AgentIdentityRequest {
            offering: "00000000000000000000000000000001".into(),
            name: "agent-x".into(),
            ..Default::default()
        })
        .await
        .expect("identity");
    assert_eq!(identity.uuid, "00000000000000000000000000000009");
}

#[tokio::test]
async fn old_server_404_on_identities_is_recognisable() {
    let server = MockServer::start().await;
    let err = client_for(&server.uri())
        .list_agent_identities("00000000000000000000000000000001", "agent-x")
        .await
        .expect_err("404");
    assert!(err.is_not_found());
}

#[tokio::test]
async fn sparse_users_me_and_order_listing_send_field_selections() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/users/me/"))
        .and(query_param("field", "uuid"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"uuid": "ab"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/marketplace-orders/"))
        .and(query_param("field", "project_name"))
        .and(query_param("state", "executing"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"project_name": "P", "type": "Update", "state": "executing"}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let client = client_for(&server.uri());
    let me = client.current_user_fields(&["uuid"]).await.expect("me");
    assert_eq!(me.uuid, "ab");
    assert!(me.username.is_empty(), "trimmed fields default");
    let orders = client
        .list_orders_fields(
            "0000000000000000000000000000000f",
            &[OrderState::Executing],
            &["project_name", "type", "state"],
        )
        .await
        .expect("orders");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].order_type, OrderType::Update);
    assert_eq!(orders[0].project_name, "P");
}
