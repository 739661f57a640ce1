//! The Rancher double's behaviour, over HTTP as a client sees it.

use reqwest::StatusCode;
use serde_json::{Value, json};
use site_sim::{KeycloakOptions, RancherOptions, RancherStack};

#[tokio::test]
async fn rancher_v3_projects_namespaces_quota_bindings_and_proxy() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let stack = RancherStack::start(
        RancherOptions::default(),
        KeycloakOptions::default(),
        Default::default(),
    )
    .await
    .expect("stack");
    let info = stack.info();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", info.rancher.url);
    let auth = |rb: reqwest::RequestBuilder| {
        rb.basic_auth(&info.rancher.access_key, Some(&info.rancher.secret_key))
    };
    let cid = info.rancher.cluster_id.clone();

    // No or wrong credentials: Rancher's error shape.
    let r = http.get(url("/v3/projects")).send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["type"], "error");
    assert_eq!(body["code"], "Unauthorized");
    let r = http
        .get(url("/v3/projects"))
        .basic_auth(&info.rancher.access_key, Some("wrong"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The upstream plugin's login: POST /v3 with basic auth.
    let r = auth(http.post(url("/v3"))).send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::OK);
    // Local login gives a bearer token.
    let r = http
        .post(url("/v3-public/localProviders/local?action=login"))
        .json(&json!({"username": "admin", "password": info.rancher.password}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::CREATED);
    let token: Value = r.json().await.expect("json");
    let bearer = token["token"].as_str().expect("token").to_owned();
    let r = http
        .get(url(&format!("/v3/clusters/{cid}")))
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.json::<Value>().await.expect("json")["id"], cid);

    // Project, namespace, quota.
    let p: Value = auth(http.post(url("/v3/projects")))
        .json(&json!({"type": "project", "clusterId": cid, "name": "waldur-x", "annotations": {"waldur/managed": "true"}}))
        .send().await.expect("sent").json().await.expect("json");
    let pid = p["id"].as_str().expect("id").to_owned();
    assert!(pid.starts_with(&format!("{cid}:p-")), "{pid}");
    let r = auth(http.post(url("/v3/projects")))
        .json(&json!({"type": "project", "clusterId": "c-other", "name": "y"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    for ns in ["waldur-x", "waldur-x-2"] {
        let r = auth(http.post(url(&format!("/v3/clusters/{cid}/namespaces"))))
            .json(&json!({"type": "namespace", "name": ns, "projectId": pid, "labels": {"gpu-pool": "a100"}}))
            .send().await.expect("sent");
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let list: Value = auth(http.get(url(&format!(
        "/v3/clusters/{cid}/namespaces?projectId={pid}"
    ))))
    .send()
    .await
    .expect("sent")
    .json()
    .await
    .expect("json");
    assert_eq!(list["type"], "collection");
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));
    let yaml = "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: custom-resource-quota\n  namespace: waldur-x\nspec:\n  hard:\n    limits.cpu: 2000m\n";
    for _ in 0..2 {
        let r = auth(http.post(url(&format!("/v3/clusters/{cid}?action=importYaml"))))
            .json(&json!({"yaml": yaml, "namespace": "waldur-x"}))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    }
    // Through the cluster proxy, as kubectl would see it.
    let quotas: Value = auth(http.get(url(&format!(
        "/k8s/clusters/{cid}/api/v1/namespaces/waldur-x/resourcequotas"
    ))))
    .send()
    .await
    .expect("sent")
    .json()
    .await
    .expect("json");
    assert_eq!(quotas["items"][0]["spec"]["hard"]["limits.cpu"], "2");
    let r = auth(http.get(url("/k8s/clusters/c-nope/api/v1/namespaces")))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Bindings with a Keycloak group principal, filtered by field.
    let principal = "keycloakoidc_group://project_p_workloads-manage";
    let r = auth(http.post(url("/v3/projectroletemplatebindings")))
        .json(&json!({"type": "projectRoleTemplateBinding", "roleTemplateId": "workloads-manage", "projectId": pid, "groupPrincipalId": principal}))
        .send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = auth(http.post(url("/v3/projectroletemplatebindings")))
        .json(&json!({"roleTemplateId": "no-such-role", "projectId": pid, "groupPrincipalId": principal}))
        .send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let found: Value = auth(http.get(url("/v3/projectroletemplatebindings")))
        .query(&[
            ("roleTemplateId", "workloads-manage"),
            ("projectId", pid.as_str()),
            ("groupPrincipalId", principal),
        ])
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(found["data"].as_array().map(Vec::len), Some(1));

    // Deleting the project takes its namespaces and bindings.
    let r = auth(http.delete(url(&format!("/v3/projects/{pid}"))))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(stack.rancher.bindings().is_empty());
    let ns = stack
        .kubernetes
        .object("namespaces", "", "waldur-x")
        .expect("terminating or gone");
    assert_eq!(ns["status"]["phase"], "Terminating");
    let r = auth(http.get(url(&format!("/v3/projects/{pid}"))))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.expect("json")["code"], "NotFound");
    assert!(stack.rancher.stats().count("POST", "/v3/projects") >= 2);
}
