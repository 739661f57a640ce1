//! The Kubernetes/OpenShift double's behaviour, over HTTP as a client sees it.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use site_sim::kubernetes::{PodUsage, Usage};
use site_sim::{FaultConfig, FaultRule, KubeOptions, KubeServer};

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Api {
    fn new(sim: &KubeServer) -> Api {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Api {
            http: reqwest::Client::new(),
            base: sim.url().to_string(),
            token: sim.token().to_string(),
        }
    }

    fn with_token(&self, token: &str) -> Api {
        Api {
            http: self.http.clone(),
            base: self.base.clone(),
            token: token.to_string(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<(&str, Value)>) -> Answer {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if !self.token.is_empty() {
            rb = rb.bearer_auth(&self.token);
        }
        if let Some((ct, b)) = body {
            rb = rb.header("content-type", ct).body(b.to_string());
        }
        let resp = rb.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(("application/json", body)))
            .await
    }
    async fn put(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(("application/json", body)))
            .await
    }
    async fn patch(&self, path: &str, ct: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, Some((ct, body))).await
    }
    async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None).await
    }
}

async fn start(openshift: bool) -> KubeServer {
    KubeServer::start(KubeOptions {
        openshift,
        terminate_after: Duration::from_millis(300),
        ..Default::default()
    })
    .await
    .expect("double starts")
}

/// A failure answer is a `Status` with this code and reason.
fn assert_status(a: &Answer, code: u16, reason: &str) {
    assert_eq!(a.status.as_u16(), code, "{}", a.body);
    assert_eq!(a.body["kind"], "Status", "{}", a.body);
    assert_eq!(a.body["apiVersion"], "v1");
    assert_eq!(a.body["status"], "Failure");
    assert_eq!(a.body["reason"], reason, "{}", a.body);
    assert_eq!(a.body["code"], code);
    assert!(a.body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

const NS: &str = "/api/v1/namespaces";

async fn make_namespace(api: &Api, name: &str) -> Value {
    let a = api
        .post(
            NS,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    a.body
}

#[tokio::test]
async fn discovery_documents_list_what_is_served() {
    let sim = start(true).await;
    let api = Api::new(&sim);
    let a = api.get("/api").await;
    assert_eq!(a.body["kind"], "APIVersions");
    assert_eq!(a.body["versions"], json!(["v1"]));
    let groups = api.get("/apis").await.body;
    assert_eq!(groups["kind"], "APIGroupList");
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    for g in [
        "rbac.authorization.k8s.io",
        "coordination.k8s.io",
        "project.openshift.io",
    ] {
        assert!(names.contains(&g), "{names:?}");
    }
    let core = api.get("/api/v1").await.body;
    assert_eq!(core["kind"], "APIResourceList");
    assert_eq!(core["groupVersion"], "v1");
    let ns = core["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "namespaces")
        .expect("namespaces listed")
        .clone();
    assert_eq!(ns["namespaced"], false);
    assert_eq!(ns["kind"], "Namespace");
    assert_eq!(ns["shortNames"], json!(["ns"]));
    let rbac = api.get("/apis/rbac.authorization.k8s.io/v1").await.body;
    assert_eq!(rbac["groupVersion"], "rbac.authorization.k8s.io/v1");
    assert!(
        rbac["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .any(|r| r["name"] == "rolebindings" && r["namespaced"] == true)
    );
    let project = api.get("/apis/project.openshift.io/v1").await.body;
    assert!(
        project["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .any(|r| r["name"] == "projectrequests")
    );
    assert_eq!(
        api.get("/apis/project.openshift.io").await.body["kind"],
        "APIGroup"
    );
    assert_eq!(api.get("/version").await.body["major"], "1");
    for role in ["admin", "edit", "view", "cluster-admin"] {
        let r = api
            .get(&format!(
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}"
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{role}");
    }
    // Anything not implemented: the real 404 Status.
    for path in [
        "/api/v1/pods",
        "/apis/networking.k8s.io/v1",
        "/apis/apps/v1/statefulsets",
        "/nope",
        "/api/v1/namespaces/default/status",
    ] {
        let a = api.get(path).await;
        assert_status(&a, 404, "NotFound");
        assert_eq!(
            a.body["message"],
            "the server could not find the requested resource"
        );
    }
}

#[tokio::test]
async fn projectrequest_creates_namespace_project_and_admin_binding() {
    let sim = start(true).await;
    let api = Api::new(&sim).with_token(&sim.sa_token());
    let req = json!({
        "kind": "ProjectRequest", "apiVersion": "project.openshift.io/v1",
        "metadata": {"name": "waldur-alloc-1", "annotations": {"waldur/organization": "waldur-org-x"}},
        "displayName": "Allocation one", "description": "The first allocation",
    });
    let a = api
        .post("/apis/project.openshift.io/v1/projectrequests", req.clone())
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["kind"], "Project");
    let ann = &a.body["metadata"]["annotations"];
    assert_eq!(ann["openshift.io/description"], "The first allocation");
    assert_eq!(ann["openshift.io/display-name"], "Allocation one");
    assert_eq!(
        ann["openshift.io/requester"],
        sim.info().sa_username.as_str()
    );
    // The template does not copy the request's own annotations.
    assert!(ann.get("waldur/organization").is_none(), "{ann}");
    let ns = api.get("/api/v1/namespaces/waldur-alloc-1").await;
    assert_eq!(ns.status, StatusCode::OK);
    assert_eq!(
        ns.body["metadata"]["annotations"]["openshift.io/display-name"],
        "Allocation one"
    );
    assert_eq!(
        ns.body["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "waldur-alloc-1"
    );
    assert_eq!(ns.body["status"]["phase"], "Active");
    let p = api
        .get("/apis/project.openshift.io/v1/projects/waldur-alloc-1")
        .await;
    assert_eq!(p.body["metadata"]["uid"], ns.body["metadata"]["uid"]);
    assert_eq!(p.body["status"]["phase"], "Active");
    let rb = api
        .get("/apis/rbac.authorization.k8s.io/v1/namespaces/waldur-alloc-1/rolebindings/admin")
        .await;
    assert_eq!(rb.body["roleRef"]["name"], "admin");
    assert_eq!(
        rb.body["subjects"][0],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": sim.info().sa_username})
    );
    let projects = api.get("/apis/project.openshift.io/v1/projects").await.body;
    assert_eq!(projects["kind"], "ProjectList");
    assert!(
        projects["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|p| p["metadata"]["name"] == "waldur-alloc-1")
    );
    // Again: 409 AlreadyExists, as OpenShift words it.
    let again = api
        .post("/apis/project.openshift.io/v1/projectrequests", req)
        .await;
    assert_status(&again, 409, "AlreadyExists");
    assert_eq!(
        again.body["message"],
        "project.project.openshift.io \"waldur-alloc-1\" already exists"
    );
    assert_eq!(
        again.body["details"],
        json!({"name": "waldur-alloc-1", "group": "project.openshift.io", "kind": "project"})
    );
    let bad = api
        .post(
            "/apis/project.openshift.io/v1/projectrequests",
            json!({"metadata": {"name": "Bad_Name"}}),
        )
        .await;
    assert_status(&bad, 422, "Invalid");
    assert_eq!(bad.body["details"]["causes"][0]["field"], "metadata.name");
    // Deleting the project: Status Success, namespace Terminating, then gone.
    let del = api
        .delete("/apis/project.openshift.io/v1/projects/waldur-alloc-1")
        .await;
    assert_eq!(del.status, StatusCode::OK);
    assert_eq!(del.body["status"], "Success");
    let p = api
        .get("/apis/project.openshift.io/v1/projects/waldur-alloc-1")
        .await;
    assert_eq!(p.body["status"]["phase"], "Terminating");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let gone = api
        .get("/apis/project.openshift.io/v1/projects/waldur-alloc-1")
        .await;
    assert_status(&gone, 404, "NotFound");
    assert_eq!(
        gone.body["details"],
        json!({"name": "waldur-alloc-1", "group": "project.openshift.io", "kind": "projects"})
    );
    let rb = api
        .get("/apis/rbac.authorization.k8s.io/v1/namespaces/waldur-alloc-1/rolebindings/admin")
        .await;
    assert_status(&rb, 404, "NotFound");
}

#[tokio::test]
async fn quota_status_mirrors_hard_and_follows_usage() {
    let sim = start(true).await;
    let api = Api::new(&sim);
    make_namespace(&api, "q1").await;
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "waldur-quota", "namespace": "q1"},
        "spec": {"hard": {"requests.cpu": "4000m", "limits.cpu": "8", "requests.memory": "16Gi", "limits.memory": "32Gi", "requests.storage": "100Gi", "pods": 10}}});
    let a = api
        .post("/api/v1/namespaces/q1/resourcequotas", quota)
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(
        a.body["spec"]["hard"]["requests.cpu"], "4",
        "quantities are stored canonical"
    );
    assert_eq!(a.body["spec"]["hard"]["pods"], "10");
    assert_eq!(a.body["status"]["hard"], a.body["spec"]["hard"]);
    assert_eq!(a.body["status"]["used"]["requests.cpu"], "0");
    assert_eq!(a.body["status"]["used"]["pods"], "0");
    sim.set_usage(
        "q1",
        Usage {
            pods: vec![
                PodUsage {
                    requests: [
                        ("cpu".into(), "500m".into()),
                        ("memory".into(), "1Gi".into()),
                    ]
                    .into(),
                    limits: [("cpu".into(), "1".into())].into(),
                },
                PodUsage {
                    requests: [
                        ("cpu".into(), "1".into()),
                        ("memory".into(), "512Mi".into()),
                    ]
                    .into(),
                    limits: Default::default(),
                },
            ],
            persistentvolumeclaims: vec![[("storage".into(), "20Gi".into())].into()],
            used: Default::default(),
        },
    );
    let q = api
        .get("/api/v1/namespaces/q1/resourcequotas/waldur-quota")
        .await
        .body;
    assert_eq!(
        q["status"]["used"],
        json!({"requests.cpu": "1500m", "limits.cpu": "1", "requests.memory": "1536Mi", "limits.memory": "0", "requests.storage": "20Gi", "pods": "2"})
    );
    assert_ne!(
        q["metadata"]["resourceVersion"],
        a.body["metadata"]["resourceVersion"]
    );
    // The admin endpoint does the same over HTTP.
    let r = api
        .call(
            Method::PUT,
            "/__sim/kubernetes/namespaces/q1/usage",
            Some(("application/json", json!({"used": {"pods": "7"}}))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let q = api
        .get("/api/v1/namespaces/q1/resourcequotas/waldur-quota")
        .await
        .body;
    assert_eq!(q["status"]["used"]["pods"], "7");
    // A PUT without resourceVersion is allowed for quotas (unconditional update); status stays the server's.
    let put = api.put("/api/v1/namespaces/q1/resourcequotas/waldur-quota", json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "waldur-quota", "namespace": "q1"}, "spec": {"hard": {"pods": "3"}}, "status": {"used": {"pods": "99"}}})).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(
        put.body["status"],
        json!({"hard": {"pods": "3"}, "used": {"pods": "7"}})
    );
    // Malformed quantity: 400 like the decoder; negative: 422.
    let bad = api
        .post(
            "/api/v1/namespaces/q1/resourcequotas",
            json!({"metadata": {"name": "b"}, "spec": {"hard": {"pods": "ten"}}}),
        )
        .await;
    assert_status(&bad, 400, "BadRequest");
    let neg = api
        .post(
            "/api/v1/namespaces/q1/resourcequotas",
            json!({"metadata": {"name": "b"}, "spec": {"hard": {"pods": "-1"}}}),
        )
        .await;
    assert_status(&neg, 422, "Invalid");
    // In a missing namespace: 404 for the namespace.
    let none = api
        .post(
            "/api/v1/namespaces/nope/resourcequotas",
            json!({"metadata": {"name": "b"}, "spec": {"hard": {"pods": "1"}}}),
        )
        .await;
    assert_status(&none, 404, "NotFound");
    assert_eq!(none.body["message"], "namespaces \"nope\" not found");
}

#[tokio::test]
async fn rolebinding_crud_and_status_shapes() {
    let sim = start(true).await;
    let api = Api::new(&sim);
    make_namespace(&api, "rb").await;
    let path = "/apis/rbac.authorization.k8s.io/v1/namespaces/rb/rolebindings";
    let body = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "waldur-alice", "namespace": "rb", "labels": {"managed-by": "waldur"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "User", "name": "alice"}]});
    let a = api.post(path, body.clone()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(
        a.body["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io",
        "defaulted"
    );
    assert!(
        a.body["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    assert!(
        a.body["metadata"]["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let dup = api.post(path, body.clone()).await;
    assert_status(&dup, 409, "AlreadyExists");
    assert_eq!(
        dup.body["message"],
        "rolebindings.rbac.authorization.k8s.io \"waldur-alice\" already exists"
    );
    assert_eq!(
        dup.body["details"],
        json!({"name": "waldur-alice", "group": "rbac.authorization.k8s.io", "kind": "rolebindings"})
    );
    let list = api
        .get(&format!("{path}?labelSelector=managed-by%3Dwaldur"))
        .await
        .body;
    assert_eq!(list["kind"], "RoleBindingList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert!(
        list["items"][0].get("kind").is_none(),
        "list items carry no kind"
    );
    let none = api
        .get(&format!("{path}?labelSelector=managed-by%3Dother"))
        .await
        .body;
    assert_eq!(none["items"], json!([]));
    let all = api
        .get("/apis/rbac.authorization.k8s.io/v1/rolebindings")
        .await
        .body;
    assert!(
        all["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["metadata"]["namespace"] == "rb")
    );
    // roleRef is immutable.
    let mut changed = a.body.clone();
    changed["roleRef"]["name"] = json!("view");
    let imm = api.put(&format!("{path}/waldur-alice"), changed).await;
    assert_status(&imm, 422, "Invalid");
    assert_eq!(imm.body["details"]["kind"], "RoleBinding");
    assert_eq!(imm.body["details"]["causes"][0]["field"], "roleRef");
    // Unsupported subject kind.
    let mut bad = body.clone();
    bad["metadata"]["name"] = json!("x");
    bad["subjects"][0]["kind"] = json!("Robot");
    assert_status(&api.post(path, bad).await, 422, "Invalid");
    // Strategic merge patch of the subjects list (no merge key on RoleBinding: replaced).
    let p = api.patch(&format!("{path}/waldur-alice"), "application/strategic-merge-patch+json",
        json!({"subjects": [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]})).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(p.body["subjects"].as_array().map(Vec::len), Some(1));
    assert_eq!(p.body["subjects"][0]["name"], "bob");
    let d = api.delete(&format!("{path}/waldur-alice")).await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.body["status"], "Success");
    assert_eq!(d.body["details"]["name"], "waldur-alice");
    assert_eq!(d.body["details"]["uid"], a.body["metadata"]["uid"]);
    let gone = api.get(&format!("{path}/waldur-alice")).await;
    assert_status(&gone, 404, "NotFound");
    assert_eq!(
        gone.body["message"],
        "rolebindings.rbac.authorization.k8s.io \"waldur-alice\" not found"
    );
    assert_status(
        &api.delete(&format!("{path}/waldur-alice")).await,
        404,
        "NotFound",
    );
}

#[tokio::test]
async fn stale_resource_version_is_409_conflict() {
    let sim = start(true).await;
    let api = Api::new(&sim);
    let ns = make_namespace(&api, "rv").await;
    let mut first = ns.clone();
    first["metadata"]["labels"]["a"] = json!("1");
    let ok = api.put("/api/v1/namespaces/rv", first).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let mut stale = ns.clone();
    stale["metadata"]["labels"]["b"] = json!("2");
    let c = api.put("/api/v1/namespaces/rv", stale).await;
    assert_status(&c, 409, "Conflict");
    assert_eq!(
        c.body["message"],
        "Operation cannot be fulfilled on namespaces \"rv\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(
        c.body["details"],
        json!({"name": "rv", "kind": "namespaces"})
    );
    // A patch carrying a stale resourceVersion fails the same way; without one it applies.
    let p = api.patch("/api/v1/namespaces/rv", "application/merge-patch+json", json!({"metadata": {"resourceVersion": ns["metadata"]["resourceVersion"], "labels": {"c": "3"}}})).await;
    assert_status(&p, 409, "Conflict");
    let p = api
        .patch(
            "/api/v1/namespaces/rv",
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"c": "3"}}}),
        )
        .await;
    assert_eq!(p.body["metadata"]["labels"]["c"], "3");
    // Delete preconditions.
    let d = api
        .call(
            Method::DELETE,
            "/api/v1/namespaces/rv",
            Some((
                "application/json",
                json!({"preconditions": {"resourceVersion": "1"}}),
            )),
        )
        .await;
    assert_status(&d, 409, "Conflict");
    // Name mismatch between URL and body.
    let m = api
        .put(
            "/api/v1/namespaces/rv",
            json!({"metadata": {"name": "other"}}),
        )
        .await;
    assert_status(&m, 400, "BadRequest");
}

#[tokio::test]
async fn unauthenticated_requests_get_401_status() {
    let sim = start(true).await;
    let api = Api::new(&sim);
    for token in ["", "wrong"] {
        let a = api.with_token(token).get("/api/v1/namespaces").await;
        assert_status(&a, 401, "Unauthorized");
        assert_eq!(a.body["message"], "Unauthorized");
        let admin = api.with_token(token).get("/__sim/kubernetes/state").await;
        assert_eq!(admin.status, StatusCode::UNAUTHORIZED);
    }
    let basic = api
        .http
        .get(format!("{}/api", sim.url()))
        .basic_auth("kube:admin", Some(sim.token()))
        .send()
        .await
        .expect("sent");
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.with_token(&sim.sa_token())
            .get("/api/v1/namespaces")
            .await
            .status,
        StatusCode::OK
    );
    // The service account token cannot administer the double.
    assert_eq!(
        api.with_token(&sim.sa_token())
            .get("/__sim/kubernetes/state")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn service_account_token_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    let sim = KubeServer::start(KubeOptions {
        sa_token_file: Some(file.clone()),
        ..Default::default()
    })
    .await
    .expect("starts");
    let api = Api::new(&sim);
    let old = sim.sa_token();
    assert_eq!(std::fs::read_to_string(&file).expect("token file"), old);
    assert_eq!(
        api.with_token(&old).get("/api/v1").await.status,
        StatusCode::OK
    );
    let r = api.post("/__sim/kubernetes/tokens/rotate", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let new = r.body["sa_token"].as_str().expect("new token").to_string();
    assert_ne!(new, old);
    assert_eq!(std::fs::read_to_string(&file).expect("token file"), new);
    assert_status(
        &api.with_token(&old).get("/api/v1").await,
        401,
        "Unauthorized",
    );
    assert_eq!(
        api.with_token(&new).get("/api/v1").await.status,
        StatusCode::OK
    );
    let explicit = api
        .post(
            "/__sim/kubernetes/tokens/rotate",
            json!({"token": "chosen-token"}),
        )
        .await;
    assert_eq!(explicit.body["sa_token"], "chosen-token");
    assert_eq!(
        api.with_token("chosen-token").get("/api/v1").await.status,
        StatusCode::OK
    );
    assert_eq!(sim.rotate_sa_token().expect("rotates"), sim.sa_token());
    assert_eq!(
        api.with_token("chosen-token").get("/api/v1").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn plain_kubernetes_mode_has_no_openshift_api() {
    let sim = start(false).await;
    let api = Api::new(&sim);
    let groups = api.get("/apis").await.body;
    assert!(!groups.to_string().contains("openshift"), "{groups}");
    for path in [
        "/apis/project.openshift.io",
        "/apis/project.openshift.io/v1",
        "/apis/project.openshift.io/v1/projects",
        "/apis/project.openshift.io/v1/projects/default",
    ] {
        assert_status(&api.get(path).await, 404, "NotFound");
    }
    let pr = api
        .post(
            "/apis/project.openshift.io/v1/projectrequests",
            json!({"metadata": {"name": "p1"}}),
        )
        .await;
    assert_status(&pr, 404, "NotFound");
    // Namespaces carry no OpenShift annotations, and get no OpenShift role bindings.
    let ns = make_namespace(&api, "plain").await;
    assert!(ns["metadata"].get("annotations").is_none(), "{ns}");
    let rbs = api
        .get("/apis/rbac.authorization.k8s.io/v1/namespaces/plain/rolebindings")
        .await
        .body;
    assert_eq!(rbs["items"], json!([]));
}

#[tokio::test]
async fn lease_updates_need_the_current_resource_version() {
    let sim = start(true).await;
    let api = Api::new(&sim);
    let path = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "waldur-agent", "namespace": "default"},
        "spec": {"holderIdentity": "agent-a", "leaseDurationSeconds": 15, "acquireTime": "2025-01-01T00:00:00.000000Z", "renewTime": "2025-01-01T00:00:00.000000Z", "leaseTransitions": 0}});
    let created = api.post(path, lease.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let rv0 = created.body["metadata"]["resourceVersion"].clone();
    let mut renew = created.body.clone();
    renew["spec"]["renewTime"] = json!("2025-01-01T00:00:10.000000Z");
    let renewed = api
        .put(&format!("{path}/waldur-agent"), renew.clone())
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.body);
    assert_ne!(renewed.body["metadata"]["resourceVersion"], rv0);
    // Another candidate with the old version loses.
    let mut takeover = created.body.clone();
    takeover["spec"]["holderIdentity"] = json!("agent-b");
    let lost = api
        .put(&format!("{path}/waldur-agent"), takeover.clone())
        .await;
    assert_status(&lost, 409, "Conflict");
    assert_eq!(
        lost.body["details"],
        json!({"name": "waldur-agent", "group": "coordination.k8s.io", "kind": "leases"})
    );
    // Leases allow no unconditional update.
    if let Some(m) = takeover["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    let unconditional = api.put(&format!("{path}/waldur-agent"), takeover).await;
    assert_status(&unconditional, 422, "Invalid");
    assert_eq!(
        unconditional.body["details"]["causes"][0]["field"],
        "metadata.resourceVersion"
    );
    // A PUT of a missing lease creates it (AllowCreateOnUpdate).
    let mut other = lease.clone();
    other["metadata"]["name"] = json!("other");
    let c = api.put(&format!("{path}/other"), other).await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.body);
    // A write changing nothing keeps the resourceVersion.
    let same = api.put(&format!("{path}/other"), c.body.clone()).await;
    assert_eq!(
        same.body["metadata"]["resourceVersion"],
        c.body["metadata"]["resourceVersion"]
    );
    let bad = api
        .post(
            path,
            json!({"metadata": {"name": "z"}, "spec": {"leaseDurationSeconds": 0}}),
        )
        .await;
    assert_status(&bad, 422, "Invalid");
}

#[tokio::test]
async fn namespace_deletion_goes_through_terminating() {
    let sim = start(true).await;
    let api = Api::new(&sim);
    make_namespace(&api, "bye").await;
    let d = api.delete("/api/v1/namespaces/bye").await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.body["kind"], "Namespace");
    assert_eq!(d.body["status"]["phase"], "Terminating");
    assert!(d.body["metadata"]["deletionTimestamp"].is_string());
    let blocked = api
        .post(
            "/api/v1/namespaces/bye/resourcequotas",
            json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}}}),
        )
        .await;
    assert_status(&blocked, 403, "Forbidden");
    assert_eq!(
        blocked.body["details"]["causes"][0]["reason"],
        "NamespaceTerminating"
    );
    let again = api.post(NS, json!({"metadata": {"name": "bye"}})).await;
    assert_status(&again, 409, "AlreadyExists");
    assert!(
        again.body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("object is being deleted"))
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_status(&api.get("/api/v1/namespaces/bye").await, 404, "NotFound");
    let immortal = api.delete("/api/v1/namespaces/kube-system").await;
    assert_status(&immortal, 403, "Forbidden");
}

#[tokio::test]
async fn lists_paginate_with_limit_and_continue() {
    let sim = start(false).await;
    let api = Api::new(&sim);
    for i in 0..5 {
        make_namespace(&api, &format!("page-{i}")).await;
    }
    let mut names = Vec::new();
    let mut cont = String::new();
    let mut pages = 0;
    loop {
        let q = if cont.is_empty() {
            "?limit=3&labelSelector=".to_string()
        } else {
            format!("?limit=3&continue={cont}")
        };
        let page = api.get(&format!("{NS}{q}")).await.body;
        pages += 1;
        names.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string()),
        );
        match page["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => {
                assert!(
                    page["metadata"]["remainingItemCount"]
                        .as_u64()
                        .is_some_and(|n| n > 0)
                );
                cont = c.to_string();
            }
            _ => break,
        }
    }
    let all: Vec<String> = api.get(NS).await.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, all);
    assert_eq!(all.len(), 9);
    assert_eq!(pages, 3);
    let bad = api.get(&format!("{NS}?limit=1&continue=garbage")).await;
    assert_status(&bad, 400, "BadRequest");
    let sel = api
        .get(&format!("{NS}?fieldSelector=metadata.name%3Dpage-2"))
        .await
        .body;
    assert_eq!(sel["items"].as_array().map(Vec::len), Some(1));
    assert_status(
        &api.get(&format!("{NS}?fieldSelector=spec.x%3D1")).await,
        400,
        "BadRequest",
    );
}

#[tokio::test]
async fn patches_unknown_fields_and_tables() {
    let sim = start(true).await;
    let api = Api::new(&sim);
    make_namespace(&api, "p").await;
    let path = "/api/v1/namespaces/p/resourcequotas";
    let a = api
        .post(
            &format!("{path}?fieldValidation=Strict"),
            json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}, "bogus": 1}}),
        )
        .await;
    assert_status(&a, 400, "BadRequest");
    assert!(
        a.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown field \"spec.bogus\""))
    );
    let a = api
        .post(
            path,
            json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}, "bogus": 1}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert!(a.body["spec"].get("bogus").is_none());
    assert!(
        a.headers
            .get("warning")
            .and_then(|w| w.to_str().ok())
            .is_some_and(|w| w.contains("unknown field"))
    );
    let m = api
        .patch(
            &format!("{path}/q"),
            "application/merge-patch+json",
            json!({"spec": {"hard": {"requests.cpu": "2", "pods": null}}}),
        )
        .await;
    assert_eq!(m.body["spec"]["hard"], json!({"requests.cpu": "2"}));
    let s = api
        .patch(
            &format!("{path}/q"),
            "application/strategic-merge-patch+json",
            json!({"spec": {"hard": {"pods": "5"}}}),
        )
        .await;
    assert_eq!(
        s.body["spec"]["hard"],
        json!({"requests.cpu": "2", "pods": "5"})
    );
    let j = api
        .patch(
            &format!("{path}/q"),
            "application/json-patch+json",
            json!([{"op": "replace", "path": "/spec/hard/pods", "value": "6"}]),
        )
        .await;
    assert_eq!(j.body["spec"]["hard"]["pods"], "6");
    assert_eq!(j.body["status"]["hard"]["pods"], "6");
    let u = api
        .patch(
            &format!("{path}/q"),
            "application/apply-patch+yaml",
            json!({}),
        )
        .await;
    assert_status(&u, 415, "UnsupportedMediaType");
    let missing = api
        .patch(
            &format!("{path}/nope"),
            "application/merge-patch+json",
            json!({}),
        )
        .await;
    assert_status(&missing, 404, "NotFound");
    let t = api
        .http
        .get(format!("{}{}", sim.url(), path))
        .bearer_auth(sim.token())
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .send()
        .await
        .expect("sent")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["columnDefinitions"][0]["name"], "Name");
    assert_eq!(t["rows"][0]["cells"][0], "q");
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}

#[tokio::test]
async fn watch_streams_events_from_a_resource_version() {
    let sim = start(true).await;
    let api = Api::new(&sim);
    let ns = make_namespace(&api, "w").await;
    let rv = ns["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let url = format!(
        "{}/api/v1/namespaces?watch=true&resourceVersion={rv}&timeoutSeconds=5",
        sim.url()
    );
    let mut resp = api
        .http
        .get(url)
        .bearer_auth(sim.token())
        .send()
        .await
        .expect("watch");
    assert_eq!(resp.status(), StatusCode::OK);
    make_namespace(&api, "w2").await;
    api.delete("/api/v1/namespaces/w2").await;
    let mut seen = Vec::new();
    let mut buf = String::new();
    while seen.len() < 3 {
        let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
            .await
            .expect("events in time")
            .expect("chunk")
        else {
            break;
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            let ev: Value = serde_json::from_str(&line).expect("event json");
            seen.push((
                ev["type"].as_str().unwrap_or("").to_string(),
                ev["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                ev["object"]["kind"].clone(),
            ));
        }
    }
    assert_eq!(seen[0], ("ADDED".into(), "w2".into(), json!("Namespace")));
    assert_eq!(seen[1].0, "MODIFIED");
    assert_eq!(seen[2], ("DELETED".into(), "w2".into(), json!("Namespace")));
}

#[tokio::test]
async fn faults_answer_status_and_requests_are_counted() {
    let sim = start(true).await;
    let api = Api::new(&sim);
    sim.set_faults(FaultConfig {
        seed: 1,
        rules: vec![FaultRule {
            route: "/api/v1/namespaces/{namespace}/resourcequotas/{name}".into(),
            method: Some("GET".into()),
            error_rate: 1.0,
            error_status: 503,
            latency_ms: 0,
            drop_rate: 0.0,
            drop_after_rate: 0.0,
        }],
    });
    let a = api.get("/api/v1/namespaces/default/resourcequotas/x").await;
    assert_status(&a, 503, "ServiceUnavailable");
    assert_eq!(
        a.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(api.get("/api/v1/namespaces").await.status, StatusCode::OK);
    let stats = sim.stats();
    assert_eq!(
        stats.count(
            "GET",
            "/api/v1/namespaces/{namespace}/resourcequotas/{name}"
        ),
        1
    );
    assert_eq!(stats.count("GET", "/api/v1/namespaces"), 1);
    let over_http = api.get("/__sim/stats").await.body;
    assert_eq!(over_http["routes"]["GET /api/v1/namespaces"]["count"], 1);
    let bad = api
        .post(
            "/__sim/faults",
            json!({"rules": [{"route": "*", "error_rate": 1.0, "error_status": 404}]}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // Every JSON answer is recorded for schema validation.
    let rec = api.get("/__sim/kubernetes/recorded").await.body;
    assert!(rec["items"].as_array().is_some_and(|i| {
        i.iter()
            .any(|e| e["path"] == "/api/v1/namespaces" && e["status"] == 200)
    }));
}

#[tokio::test]
async fn tls_with_the_ca_it_writes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = KubeServer::start(KubeOptions {
        tls: true,
        ..Default::default()
    })
    .await
    .expect("starts");
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    let ca_path = sim.info().ca_file.clone().expect("ca file");
    let pem = std::fs::read(&ca_path).expect("ca readable");
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .build()
        .expect("client");
    let r = trusting
        .get(format!("{}/api", sim.url()))
        .bearer_auth(sim.token())
        .send()
        .await
        .expect("TLS works with the CA");
    assert_eq!(r.status(), StatusCode::OK);
    let localhost = sim.url().replace("127.0.0.1", "localhost");
    let r = trusting
        .get(format!("{localhost}/version"))
        .bearer_auth(sim.token())
        .send()
        .await
        .expect("name in the certificate");
    assert_eq!(r.status(), StatusCode::OK);
    let strict = reqwest::Client::new();
    assert!(
        strict
            .get(format!("{}/api", sim.url()))
            .send()
            .await
            .is_err(),
        "an unknown CA is refused"
    );
}

/// The workload kinds an agent's own manifests use (deploy/kubernetes): ConfigMap, Secret,
/// Deployment, Job, CronJob, with the API server's defaulting and the validation an agent's
/// manifests can trip over.
#[tokio::test]
async fn workload_kinds_are_defaulted_and_validated() {
    let sim = start(false).await;
    let api = Api::new(&sim);
    make_namespace(&api, "waldur-agent").await;
    for (path, kind) in [
        ("/apis/apps/v1", "Deployment"),
        ("/apis/batch/v1", "CronJob"),
        ("/api/v1", "Secret"),
    ] {
        let list = api.get(path).await.body;
        assert!(
            list["resources"]
                .as_array()
                .expect("resources")
                .iter()
                .any(|r| r["kind"] == kind && r["namespaced"] == true),
            "{list}"
        );
    }
    let base = "/api/v1/namespaces/waldur-agent";
    // Secret: stringData merged into data (base64), type defaulted; bad base64 refused.
    let a = api
        .post(
            &format!("{base}/secrets"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                   "stringData": {"TOKEN": "abc"}, "data": {"OTHER": "eHl6"}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["data"], json!({"OTHER": "eHl6", "TOKEN": "YWJj"}));
    assert_eq!(a.body["type"], "Opaque");
    assert!(a.body.get("stringData").is_none());
    let a = api
        .post(
            &format!("{base}/secrets"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"},
                   "data": {"X": "not base64!"}}),
        )
        .await;
    assert_status(&a, 400, "BadRequest");
    // ConfigMap: immutable must be a bool.
    let a = api
        .post(
            &format!("{base}/configmaps"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                   "data": {"config.yaml": "x: 1"}, "immutable": "yes"}),
        )
        .await;
    assert_status(&a, 400, "BadRequest");
    let pod = |labels: Value, restart: &str| {
        json!({"metadata": {"labels": labels},
               "spec": {"restartPolicy": restart, "containers": [{"name": "a", "image": "i"}]}})
    };
    let deps = "/apis/apps/v1/namespaces/waldur-agent/deployments";
    let a = api
        .post(
            deps,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                   "spec": {"selector": {"matchLabels": {"app": "x"}},
                            "template": pod(json!({"app": "y"}), "Always")}}),
        )
        .await;
    assert_status(&a, 422, "Invalid");
    assert!(
        a.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("selector"),
        "{}",
        a.body
    );
    let a = api
        .post(
            deps,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                   "spec": {"selector": {"matchLabels": {"app": "x"}},
                            "template": pod(json!({"app": "x"}), "Always")}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["spec"]["replicas"], 1);
    assert_eq!(a.body["spec"]["strategy"]["type"], "RollingUpdate");
    let jobs = "/apis/batch/v1/namespaces/waldur-agent/jobs";
    let a = api
        .post(
            jobs,
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                   "spec": {"template": pod(json!({}), "Always")}}),
        )
        .await;
    assert_status(&a, 422, "Invalid");
    let a = api
        .post(
            jobs,
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                   "spec": {"template": pod(json!({}), "Never")}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["spec"]["backoffLimit"], 6);
    let cron = "/apis/batch/v1/namespaces/waldur-agent/cronjobs";
    let job_template = json!({"spec": {"template": pod(json!({}), "OnFailure")}});
    let a = api
        .post(
            cron,
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                   "spec": {"schedule": "hourly", "jobTemplate": job_template}}),
        )
        .await;
    assert_status(&a, 422, "Invalid");
    let a = api
        .post(
            cron,
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                   "spec": {"schedule": "0 * * * *", "jobTemplate": job_template}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["spec"]["concurrencyPolicy"], "Allow");
}
