//! The Keycloak double's behaviour, over HTTP as a client sees it.

use reqwest::StatusCode;
use serde_json::{Value, json};
use site_sim::{KeycloakOptions, KeycloakServer};

async fn login(http: &reqwest::Client, sim: &KeycloakServer) -> String {
    let info = sim.info();
    let answer: Value = http
        .post(format!(
            "{}/realms/master/protocol/openid-connect/token",
            info.url
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", info.username.as_str()),
            ("password", info.password.as_str()),
        ])
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["token_type"], "Bearer");
    assert!(answer["refresh_token"].is_string());
    answer["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn keycloak_admin_api_as_documented() {
    let sim = KeycloakServer::start(KeycloakOptions {
        demo: true,
        ..Default::default()
    })
    .await
    .expect("double");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let base = format!("{}/admin/realms/waldur", sim.url());

    // Bad credentials: the OAuth2 error body.
    let refused = http
        .post(format!(
            "{}/realms/master/protocol/openid-connect/token",
            sim.url()
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", "admin"),
            ("password", "x"),
        ])
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"], "invalid_grant");

    // No token: 401.
    let anon = http.get(&base).send().await.expect("sent");
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);

    let token = login(&http, &sim).await;
    let post = |path: String, body: Value| http.post(path).bearer_auth(&token).json(&body).send();
    let get = |path: String| http.get(path).bearer_auth(&token).send();

    let made = post(format!("{base}/groups"), json!({"name": "parent"}))
        .await
        .expect("sent");
    assert_eq!(made.status(), StatusCode::CREATED);
    let location = made.headers()["location"]
        .to_str()
        .expect("text")
        .to_owned();
    let parent_id = location.rsplit('/').next().expect("id").to_owned();
    let dup = post(format!("{base}/groups"), json!({"name": "parent"}))
        .await
        .expect("sent");
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    let body: Value = dup.json().await.expect("json");
    assert_eq!(
        body["errorMessage"],
        "Top level group named 'parent' already exists."
    );

    for i in 0..12 {
        let r = post(
            format!("{base}/groups/{parent_id}/children"),
            json!({"name": format!("kid-{i:02}")}),
        )
        .await
        .expect("sent");
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let dup = post(
        format!("{base}/groups/{parent_id}/children"),
        json!({"name": "kid-00"}),
    )
    .await
    .expect("sent");
    assert_eq!(dup.status(), StatusCode::CONFLICT);

    // GET /groups does not inline sub-groups (Keycloak >= 23); subGroupCount tells.
    let top: Value = get(format!("{base}/groups"))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(top[0]["subGroups"], json!([]));
    assert_eq!(top[0]["subGroupCount"], 12);
    // A search answers the matching hierarchy.
    let found: Value = get(format!("{base}/groups?search=kid-11&exact=true"))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(found[0]["name"], "parent");
    assert_eq!(found[0]["subGroups"][0]["path"], "/parent/kid-11");
    // Children come 10 at a time unless max says otherwise.
    let kids: Value = get(format!("{base}/groups/{parent_id}/children"))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(kids.as_array().map(Vec::len), Some(10));
    let rest: Value = get(format!(
        "{base}/groups/{parent_id}/children?first=10&max=10"
    ))
    .await
    .expect("sent")
    .json()
    .await
    .expect("json");
    assert_eq!(rest.as_array().map(Vec::len), Some(2));

    // Users: exact search and memberships.
    let users: Value = get(format!("{base}/users?username=al&exact=true"))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(users, json!([]));
    let users: Value = get(format!("{base}/users?username=alice&exact=true"))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let alice = users[0]["id"].as_str().expect("id").to_owned();
    let joined = http
        .put(format!("{base}/users/{alice}/groups/{parent_id}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(joined.status(), StatusCode::NO_CONTENT);
    let members: Value = get(format!("{base}/groups/{parent_id}/members"))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(members[0]["username"], "alice");
    assert_eq!(
        sim.groups("waldur")[0],
        ("/parent".to_owned(), vec!["alice".to_owned()])
    );

    let missing = get(format!("{base}/groups/nope")).await.expect("sent");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let stats = sim.stats();
    assert!(stats.count("POST", "/admin/realms/{realm}/groups/{id}/children") >= 13);
}

/// The fields and JSON types of Keycloak's `GroupRepresentation` and `UserRepresentation`
/// (admin REST API reference, Keycloak 26): every answer of the double uses only these.
fn conforms(v: &Value, fields: &[(&str, &str)], what: &str) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {v}"));
    for (k, val) in obj {
        let Some((_, ty)) = fields.iter().find(|(f, _)| f == k) else {
            panic!("{what}: field {k} is not in the representation: {v}");
        };
        let ok = match *ty {
            "string" => val.is_string(),
            "integer" => val.is_i64() || val.is_u64(),
            "boolean" => val.is_boolean(),
            "array" => val.is_array(),
            "object" => val.is_object(),
            _ => false,
        };
        assert!(ok, "{what}: {k} should be {ty}: {v}");
    }
}

const GROUP: &[(&str, &str)] = &[
    ("id", "string"),
    ("name", "string"),
    ("description", "string"),
    ("path", "string"),
    ("parentId", "string"),
    ("subGroupCount", "integer"),
    ("subGroups", "array"),
    ("attributes", "object"),
    ("realmRoles", "array"),
    ("clientRoles", "object"),
    ("access", "object"),
];

const USER: &[(&str, &str)] = &[
    ("id", "string"),
    ("username", "string"),
    ("firstName", "string"),
    ("lastName", "string"),
    ("email", "string"),
    ("emailVerified", "boolean"),
    ("attributes", "object"),
    ("userProfileMetadata", "object"),
    ("enabled", "boolean"),
    ("self", "string"),
    ("origin", "string"),
    ("createdTimestamp", "integer"),
    ("totp", "boolean"),
    ("federationLink", "string"),
    ("serviceAccountClientId", "string"),
    ("credentials", "array"),
    ("disableableCredentialTypes", "array"),
    ("requiredActions", "array"),
    ("federatedIdentities", "array"),
    ("realmRoles", "array"),
    ("clientRoles", "object"),
    ("clientConsents", "array"),
    ("notBefore", "integer"),
    ("groups", "array"),
    ("access", "object"),
];

fn check_groups(list: &Value) {
    for g in list.as_array().expect("a list") {
        conforms(g, GROUP, "GroupRepresentation");
        check_groups(&g["subGroups"]);
    }
}

#[tokio::test]
async fn answers_use_keycloaks_representations() {
    let sim = KeycloakServer::start(KeycloakOptions {
        demo: true,
        ..Default::default()
    })
    .await
    .expect("double");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let token = login(&http, &sim).await;
    let base = format!("{}/admin/realms/waldur", sim.url());
    let send = |rb: reqwest::RequestBuilder| rb.bearer_auth(&token).send();
    let r = send(
        http.post(format!("{base}/groups"))
            .json(&json!({"name": "p", "attributes": {"a": ["b"]}})),
    )
    .await
    .expect("sent");
    let pid = r.headers()["location"]
        .to_str()
        .expect("loc")
        .rsplit('/')
        .next()
        .expect("id")
        .to_owned();
    send(
        http.post(format!("{base}/groups/{pid}/children"))
            .json(&json!({"name": "c"})),
    )
    .await
    .expect("sent");
    let users: Value = send(http.get(format!("{base}/users")))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    for u in users.as_array().expect("users") {
        conforms(u, USER, "UserRepresentation");
    }
    let uid = users[0]["id"].as_str().expect("id").to_owned();
    let one: Value = send(http.get(format!("{base}/users/{uid}")))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    conforms(&one, USER, "UserRepresentation");
    for path in [
        format!("{base}/groups"),
        format!("{base}/groups?briefRepresentation=true"),
        format!("{base}/groups?search=c"),
        format!("{base}/groups/{pid}/children"),
        format!("{base}/users/{uid}/groups"),
    ] {
        let v: Value = send(http.get(&path))
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        check_groups(&v);
    }
    let g: Value = send(http.get(format!("{base}/groups/{pid}")))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    conforms(&g, GROUP, "GroupRepresentation");
    let members: Value = send(http.get(format!("{base}/groups/{pid}/members")))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    for u in members.as_array().expect("members") {
        conforms(u, USER, "UserRepresentation");
    }
}
