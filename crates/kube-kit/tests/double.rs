//! kube-kit against the site-sim Kubernetes double (in process): typed kube-rs calls through the
//! kit's TLS, token sources, retries and counters.

use std::sync::Arc;
use std::time::Duration;

use http_kit::{
    AuthScheme, FileToken, HttpErrorKind, HttpSettings, RetryPolicy, Secret, StaticToken,
    TokenSource, request_count,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube_kit::Kube;
use site_sim::faults::{FaultConfig, FaultRule};
use site_sim::{KubeOptions, KubeServer};

async fn double(opts: KubeOptions) -> KubeServer {
    KubeServer::start(opts).await.expect("double starts")
}

fn settings(server: &KubeServer, counter: &str) -> HttpSettings {
    let mut s = HttpSettings::new(
        "kube-kit test",
        "kubernetes",
        server.url().parse().expect("url"),
    );
    s.timeout = Duration::from_secs(5);
    s.retry = RetryPolicy {
        max_retries: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(10),
        jitter: false,
    };
    s.counter = Some(counter.to_owned());
    s
}

fn admin(server: &KubeServer) -> Arc<dyn TokenSource> {
    Arc::new(StaticToken::bearer(Secret::new(server.token())))
}

fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }),
    }
}

#[tokio::test]
async fn lease_create_get_replace_and_resource_version_conflict() {
    let server = double(KubeOptions::default()).await;
    let kube = Kube::new(
        &settings(&server, "kube-kit-lease"),
        admin(&server),
        "default",
    )
    .expect("client");
    let leases: Api<Lease> = Api::default_namespaced(kube.client());

    let created = leases
        .create(&PostParams::default(), &lease("agent", "pod-a"))
        .await
        .expect("created");
    let rv = created.metadata.resource_version.clone().expect("rv");
    let again = leases
        .create(&PostParams::default(), &lease("agent", "pod-b"))
        .await
        .map_err(|e| kube.error("create lease agent", e))
        .expect_err("exists");
    assert_eq!(again.status(), Some(409), "{again}");
    assert!(again.to_string().contains("AlreadyExists"), "{again}");

    let got = leases.get("agent").await.expect("get");
    assert_eq!(got.metadata.resource_version.as_deref(), Some(rv.as_str()));
    assert_eq!(
        got.spec.as_ref().and_then(|s| s.holder_identity.as_deref()),
        Some("pod-a")
    );

    // Take it over with the current resourceVersion.
    let mut mine = got.clone();
    if let Some(spec) = mine.spec.as_mut() {
        spec.holder_identity = Some("pod-b".into());
    }
    let replaced = leases
        .replace("agent", &PostParams::default(), &mine)
        .await
        .expect("replace");
    assert_ne!(
        replaced.metadata.resource_version,
        got.metadata.resource_version
    );

    // A second writer still holding the old resourceVersion loses.
    let mut stale = got;
    if let Some(spec) = stale.spec.as_mut() {
        spec.holder_identity = Some("pod-c".into());
    }
    let conflict = leases
        .replace("agent", &PostParams::default(), &stale)
        .await
        .map_err(|e| kube.error("replace lease agent", e))
        .expect_err("stale resourceVersion");
    assert_eq!(conflict.status(), Some(409), "{conflict}");
    assert!(!conflict.is_transient());
    assert!(conflict.to_string().contains("Conflict"), "{conflict}");
    let holder = leases
        .get("agent")
        .await
        .expect("get")
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("pod-b"));

    let missing = leases.get_opt("nobody").await.expect("404 is None");
    assert!(missing.is_none());
    // create, create, get, replace, replace, get, get: every request counted once.
    assert_eq!(request_count("kube-kit-lease"), 7);
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_static_token_is_one_401_without_a_retry_or_the_token_in_the_error() {
    let server = double(KubeOptions::default()).await;
    let kube = Kube::new(
        &settings(&server, "kube-kit-401"),
        Arc::new(StaticToken::bearer(Secret::new("wrong-s3cret"))),
        "default",
    )
    .expect("client");
    let namespaces: Api<Namespace> = Api::all(kube.client());
    let err = namespaces
        .get("default")
        .await
        .map_err(|e| kube.error("get namespace default", e))
        .expect_err("401");
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(!err.is_transient());
    assert!(!err.to_string().contains("wrong-s3cret"));
    assert!(!format!("{kube:?}").contains("wrong-s3cret"));
    assert_eq!(
        request_count("kube-kit-401"),
        1,
        "a static token is not renewed"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_rotated_service_account_token_file_is_picked_up_without_a_new_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    let server = double(KubeOptions {
        sa_token_file: Some(token_file.clone()),
        ..KubeOptions::default()
    })
    .await;
    let kube = Kube::new(
        &settings(&server, "kube-kit-rotate"),
        Arc::new(FileToken::new("test", &token_file, AuthScheme::Bearer)),
        "default",
    )
    .expect("client");
    let namespaces: Api<Namespace> = Api::all(kube.client());
    namespaces.get("default").await.expect("first token");
    server.rotate_sa_token().expect("rotated");
    namespaces.get("default").await.expect("the new token");
    let requests = request_count("kube-kit-rotate");
    assert!(
        (2..=3).contains(&requests),
        "at most one 401 before the new token: {requests}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn tls_with_the_ca_bundle_verifies_and_without_it_fails_as_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let server = double(KubeOptions {
        tls: true,
        ca_file: Some(ca.clone()),
        ..KubeOptions::default()
    })
    .await;
    assert!(server.url().starts_with("https://"));

    let mut with_ca = settings(&server, "kube-kit-tls");
    with_ca.ca_bundle = Some(ca);
    let kube = Kube::new(&with_ca, admin(&server), "default").expect("client");
    let namespaces: Api<Namespace> = Api::all(kube.client());
    namespaces
        .get("default")
        .await
        .expect("verified with the CA");

    let mut unverifiable = settings(&server, "kube-kit-tls-bad");
    unverifiable.retry = RetryPolicy::none();
    let kube = Kube::new(&unverifiable, admin(&server), "default").expect("client");
    let namespaces: Api<Namespace> = Api::all(kube.client());
    let err = namespaces
        .get("default")
        .await
        .map_err(|e| kube.error("get namespace default", e))
        .expect_err("unknown CA");
    assert!(
        matches!(err.kind, HttpErrorKind::Unreachable { .. }),
        "{err}"
    );

    let mut off = settings(&server, "kube-kit-tls-off");
    off.verify_tls = false;
    let kube = Kube::new(&off, admin(&server), "default").expect("client");
    let namespaces: Api<Namespace> = Api::all(kube.client());
    namespaces.get("default").await.expect("verification off");
    server.shutdown().await;
}

#[tokio::test]
async fn reads_are_retried_after_5xx_creates_are_not_and_both_stay_transient() {
    let server = double(KubeOptions::default()).await;
    server.set_faults(FaultConfig {
        seed: 1,
        rules: vec![FaultRule {
            route: "*".into(),
            method: None,
            error_rate: 1.0,
            error_status: 503,
            latency_ms: 0,
            drop_rate: 0.0,
        }],
    });
    let kube = Kube::new(
        &settings(&server, "kube-kit-5xx"),
        admin(&server),
        "default",
    )
    .expect("client");
    let leases: Api<Lease> = Api::default_namespaced(kube.client());
    let err = leases
        .get("agent")
        .await
        .map_err(|e| kube.error("get lease agent", e))
        .expect_err("503");
    assert!(err.is_transient() && err.status() == Some(503), "{err}");
    assert_eq!(request_count("kube-kit-5xx"), 3, "1 try + 2 retries");
    let err = leases
        .create(&PostParams::default(), &lease("agent", "pod-a"))
        .await
        .map_err(|e| kube.error("create lease agent", e))
        .expect_err("503");
    assert!(err.is_transient(), "{err}");
    assert_eq!(request_count("kube-kit-5xx"), 4, "a create is sent once");
    server.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_server_is_transient() {
    let mut s = HttpSettings::new(
        "kube-kit test",
        "kubernetes",
        "http://127.0.0.1:9".parse().expect("url"),
    );
    s.retry = RetryPolicy::none();
    let kube = Kube::new(
        &s,
        Arc::new(StaticToken::bearer(Secret::new("t"))),
        "default",
    )
    .expect("client");
    let namespaces: Api<Namespace> = Api::all(kube.client());
    let err = namespaces
        .get("default")
        .await
        .map_err(|e| kube.error("get namespace default", e))
        .expect_err("closed port");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
}

#[test]
fn in_cluster_without_a_pod_says_so() {
    // The test process is not in a pod (no KUBERNETES_SERVICE_HOST here).
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return;
    }
    let err = kube_kit::in_cluster("deployment", None).expect_err("not in a pod");
    assert!(err.is_config() && err.to_string().contains("KUBERNETES_SERVICE_HOST"));
}
