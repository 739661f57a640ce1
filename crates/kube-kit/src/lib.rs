//! kube-rs on the agent's HTTP kit: a [`kube::Client`] whose every request goes through an
//! `http_kit::RestClient`, so Kubernetes calls get the same TLS settings (verification on/off or
//! a CA bundle), `global_proxy`, timeouts, retry policy, request counters and **token sources**
//! (static, file re-read on change such as a service-account token, OAuth2) as every other API
//! of the agent. There is one token-source type in the workspace: `http_kit::TokenSource`.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use http_kit::{AuthScheme, FileToken, HttpSettings};
//! use k8s_openapi::api::coordination::v1::Lease;
//!
//! let settings = HttpSettings::new("deployment", "kubernetes", "https://10.0.0.1:6443".parse()?);
//! let token = Arc::new(FileToken::new("deployment", "/var/run/secrets/kubernetes.io/serviceaccount/token", AuthScheme::Bearer));
//! let kube = kube_kit::Kube::new(&settings, token, "waldur-system")?;
//! let leases: kube::Api<Lease> = kube::Api::default_namespaced(kube.client());
//! let lease = leases.get_opt("waldur-site-agent").await.map_err(|e| kube.error("get lease", e))?;
//! # Ok(()) }
//! ```
//!
//! - [`Kube::new`] / [`Kube::from_rest`] build the client (inside a Tokio runtime: kube-rs
//!   starts a buffer task); [`in_cluster`] reads the pod's service-account mount.
//! - [`KitService`] is the tower service kube-rs sends through: it collects the request body,
//!   hands the request to `RestClient::send_http` and caps the answer at the settings'
//!   `max_response_bytes` (a watch longer than the whole-request timeout is cut: use
//!   `timeoutSeconds` below it).
//! - [`Kube::error`] turns a `kube::Error` into the kit's `HttpError` (Kubernetes `Status`
//!   answers as `HTTP <code>: <Reason>: <message>`, transport failures as the kit classifies
//!   them), so `backend_api`'s one `HttpError → BackendError` mapping applies.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Limited;
use http_kit::{
    AuthScheme, FileToken, HttpError, HttpErrorKind, HttpResult, HttpSettings, RestClient,
    TokenSource,
};

pub use k8s_openapi;
pub use kube;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The tower service under a [`kube::Client`]: one `RestClient` (with its token source).
#[derive(Clone)]
pub struct KitService {
    rest: RestClient,
    max_response_bytes: usize,
}

impl fmt::Debug for KitService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KitService")
            .field("rest", &self.rest)
            .finish_non_exhaustive()
    }
}

impl KitService {
    pub fn new(rest: RestClient, max_response_bytes: u64) -> Self {
        KitService {
            rest,
            max_response_bytes: usize::try_from(max_response_bytes.max(1)).unwrap_or(usize::MAX),
        }
    }
}

impl tower::Service<http::Request<kube::client::Body>> for KitService {
    type Response = http::Response<Limited<reqwest::Body>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<kube::client::Body>) -> Self::Future {
        let rest = self.rest.clone();
        let cap = self.max_response_bytes;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // kube-rs request bodies are JSON objects held in memory: collecting them lets
            // the kit send the request again (retry, token renewed after a 401).
            let body: Bytes = body.collect_bytes().await?;
            let response = rest
                .send_http(http::Request::from_parts(parts, body))
                .await?;
            Ok(response.map(|b| Limited::new(b, cap)))
        })
    }
}

/// A [`kube::Client`] and the kit client under it (for messages and error mapping).
#[derive(Clone)]
pub struct Kube {
    client: kube::Client,
    rest: RestClient,
    max_response_bytes: u64,
}

impl fmt::Debug for Kube {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kube")
            .field("rest", &self.rest)
            .finish_non_exhaustive()
    }
}

impl Kube {
    /// Build from the kit's settings (`base_url` is the API server) and a token source. No
    /// network traffic; must run inside a Tokio runtime. Setup problems (CA bundle, proxy)
    /// are `HttpErrorKind::Setup` errors naming the setting.
    pub fn new(
        settings: &HttpSettings,
        auth: Arc<dyn TokenSource>,
        default_namespace: &str,
    ) -> HttpResult<Self> {
        let rest = RestClient::new(settings)?.with_auth(auth);
        Ok(Kube::from_rest(
            rest,
            settings.max_response_bytes,
            default_namespace,
        ))
    }

    /// Build on an existing kit client (its token source is used as it is).
    pub fn from_rest(rest: RestClient, max_response_bytes: u64, default_namespace: &str) -> Self {
        let service = KitService::new(rest.clone(), max_response_bytes);
        Kube {
            client: kube::Client::new(service, default_namespace),
            rest,
            max_response_bytes,
        }
    }

    /// The kube-rs client (cheap to clone).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub fn rest(&self) -> &RestClient {
        &self.rest
    }

    /// `<service> at <api server>` for messages.
    pub fn target(&self) -> String {
        self.rest.target()
    }

    /// The kit's error for a failed kube-rs call; `what` names the call (`create namespace x`).
    /// Kubernetes `Status` answers keep their code, reason and message; transport failures,
    /// timeouts and refused tokens are classified as the kit does for its own requests.
    pub fn error(&self, what: &str, e: kube::Error) -> HttpError {
        let context = self.rest.context().to_owned();
        let status = |status: u16, message: String| {
            HttpError::new(
                context.clone(),
                HttpErrorKind::Status {
                    what: format!("{} {what}", self.service_name()),
                    status,
                    message,
                },
            )
        };
        match e {
            kube::Error::Api(r) => {
                let message = if r.reason.is_empty() || r.message.starts_with(&r.reason) {
                    r.message
                } else {
                    format!("{}: {}", r.reason, r.message)
                };
                status(r.code, message)
            }
            kube::Error::Service(inner) => self.service_error(what, inner),
            kube::Error::SerdeError(e) => HttpError::new(
                context,
                HttpErrorKind::Decode {
                    what: what.to_owned(),
                    detail: e.to_string(),
                },
            ),
            other => HttpError::new(
                context,
                HttpErrorKind::Decode {
                    what: what.to_owned(),
                    detail: other.to_string(),
                },
            ),
        }
    }

    fn service_name(&self) -> String {
        self.target()
            .split(" at ")
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    fn service_error(&self, what: &str, inner: BoxError) -> HttpError {
        let inner = match inner.downcast::<HttpError>() {
            Ok(e) => return *e,
            Err(inner) => inner,
        };
        if inner.is::<http_body_util::LengthLimitError>() {
            return HttpError::new(
                self.rest.context().to_owned(),
                HttpErrorKind::TooLarge {
                    what: what.to_owned(),
                    limit: self.max_response_bytes,
                },
            );
        }
        match inner.downcast::<reqwest::Error>() {
            Ok(e) => self.rest.transport_error(&e, what),
            // A failure while a body was read that is neither the kit's nor reqwest's (kube-rs
            // nests its own errors): a broken connection, worth another try.
            Err(other) => {
                let mut detail = other.to_string();
                let mut source = other.source();
                while let Some(s) = source {
                    detail.push_str(": ");
                    detail.push_str(&s.to_string());
                    source = s.source();
                }
                HttpError::new(
                    self.rest.context().to_owned(),
                    HttpErrorKind::Unreachable {
                        target: self.target(),
                        detail,
                    },
                )
            }
        }
    }
}

/// The pod's own API access: `KUBERNETES_SERVICE_HOST`/`_PORT`, the service-account token
/// (a [`FileToken`], re-read when the kubelet rotates it), its CA and namespace, under `mount`
/// (default `/var/run/secrets/kubernetes.io/serviceaccount`).
#[derive(Debug)]
pub struct InCluster {
    pub settings: HttpSettings,
    pub token: Arc<dyn TokenSource>,
    pub namespace: String,
}

/// Read the in-cluster configuration; errors say what is missing.
pub fn in_cluster(context: &str, mount: Option<&Path>) -> HttpResult<InCluster> {
    let mount: PathBuf = mount
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount"));
    let setup = |m: String| HttpError::setup(context.to_owned(), m);
    let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
        setup("KUBERNETES_SERVICE_HOST is not set: not running in a Kubernetes pod; configure the API server URL and a token instead".into())
    })?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let url = format!("https://{host}:{port}")
        .parse()
        .map_err(|e| setup(format!("KUBERNETES_SERVICE_HOST/PORT give no URL: {e}")))?;
    let mut settings = HttpSettings::new(context, "kubernetes", url);
    let ca = mount.join("ca.crt");
    if ca.exists() {
        settings.ca_bundle = Some(ca);
    }
    let namespace = std::fs::read_to_string(mount.join("namespace"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "default".to_owned());
    let token_path = mount.join("token");
    if !token_path.exists() {
        return Err(setup(format!(
            "no service-account token at '{}': is automountServiceAccountToken off?",
            token_path.display()
        )));
    }
    Ok(InCluster {
        settings,
        token: Arc::new(FileToken::new(context, token_path, AuthScheme::Bearer)),
        namespace,
    })
}
