//! A stateful Kubernetes + OpenShift API server double.
//!
//! Served: discovery (`/api`, `/apis`, `/version`, the resource lists), `namespaces`
//! (deletion goes through `Terminating`), `resourcequotas` (`status.hard` mirrors
//! `spec.hard`, `status.used` follows what a test says runs in the namespace),
//! `rbac.authorization.k8s.io/v1` `rolebindings` and `clusterroles` (`admin`, `edit`,
//! `view`, `cluster-admin` present), `coordination.k8s.io/v1` `leases`, and in OpenShift mode
//! `project.openshift.io/v1` `projects` and `projectrequests`. Every object has `uid`,
//! `resourceVersion` and `creationTimestamp`; writes with a stale `resourceVersion` get 409;
//! lists take `limit`/`continue`, `labelSelector` and `fieldSelector`; `watch=true` streams
//! events; PATCH takes merge, strategic-merge and JSON patches; `kubectl get` gets Tables.
//! Anything else answers the real 404 `Status`.
//!
//! Authentication is by bearer token: an administrator token (`kube:admin`) and a service
//! account token that `/__sim/kubernetes/tokens/rotate` replaces (and rewrites in
//! `sa_token_file`), as a projected token is rotated under a running agent.

pub mod admin;
pub mod api;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod quantity;
pub mod resources;
pub mod schema;
pub mod select;
pub mod status;
pub mod store;
pub mod table;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};

use crate::faults::FaultConfig;
use crate::server::{self, Double, Plumbing, ServerHandle};
use crate::stats::RequestStats;
use status::KubeError;
pub use store::{PodUsage, Usage};

/// The user names the two tokens authenticate as.
pub const ADMIN_USER: &str = "kube:admin";
pub const SA_USER: &str = "system:serviceaccount:waldur-system:waldur-site-agent";

/// How many responses are kept for `/__sim/kubernetes/recorded`.
const RECORD_CAPACITY: usize = 20_000;

#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// Address to bind; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Serve `project.openshift.io` (OKD/OpenShift); `false` is plain Kubernetes.
    pub openshift: bool,
    /// Serve HTTPS with a CA made at start.
    pub tls: bool,
    /// Where the CA certificate is written (default: a file in the temp directory).
    pub ca_file: Option<PathBuf>,
    /// The administrator token (random when absent).
    pub token: Option<String>,
    /// The service account token (random when absent).
    pub sa_token: Option<String>,
    /// A file holding the service account token, rewritten on rotation.
    pub sa_token_file: Option<PathBuf>,
    /// Also create the `waldur-system` namespace the demo service account lives in.
    pub demo: bool,
    /// How long a deleted namespace stays `Terminating`.
    pub terminate_after: Duration,
    pub faults: FaultConfig,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            openshift: true,
            tls: false,
            ca_file: None,
            token: None,
            sa_token: None,
            sa_token_file: None,
            demo: false,
            terminate_after: Duration::from_millis(500),
            faults: FaultConfig::default(),
        }
    }
}

/// What the start line prints and a client needs.
#[derive(Clone, Serialize)]
pub struct KubeInfo {
    pub url: String,
    pub token: String,
    pub username: String,
    pub sa_token: String,
    pub sa_username: String,
    pub openshift: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sa_token_file: Option<String>,
}

impl std::fmt::Debug for KubeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeInfo")
            .field("url", &self.url)
            .field("openshift", &self.openshift)
            .field("tokens", &"***")
            .finish()
    }
}

struct Tokens {
    admin: String,
    sa: String,
}

/// The state behind the server.
pub struct KubeState {
    plumbing: Plumbing,
    pub(crate) openshift: bool,
    store: Mutex<store::Store>,
    tokens: Mutex<Tokens>,
    pub(crate) terminate_after: Duration,
    recorded: Mutex<VecDeque<Value>>,
    address: Mutex<String>,
    sa_token_file: Option<PathBuf>,
}

fn random_token(len: usize) -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A service account token shaped like the real ones (a JWT); the double only compares it.
fn service_account_token() -> String {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let now = jiff::Timestamp::now().as_second();
    format!(
        "{}.{}.{}",
        b64(&json!({"alg": "RS256", "kid": "site-sim"})),
        b64(
            &json!({"iss": "https://kubernetes.default.svc", "sub": SA_USER, "iat": now, "exp": now + 3600, "jti": uuid::Uuid::new_v4().to_string()})
        ),
        random_token(43)
    )
}

impl KubeState {
    pub(crate) fn lock(&self) -> MutexGuard<'_, store::Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tokens(&self) -> MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn server_address(&self) -> String {
        self.address
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn bearer(headers: &HeaderMap) -> Option<&str> {
        let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Option<api::User> {
        let token = Self::bearer(headers)?;
        let t = self.tokens();
        if !token.is_empty() && token == t.admin {
            Some(api::User {
                name: ADMIN_USER.into(),
            })
        } else if !token.is_empty() && token == t.sa {
            Some(api::User {
                name: SA_USER.into(),
            })
        } else {
            None
        }
    }

    pub(crate) fn record(&self, method: &str, path: &str, status: u16, body: &Value) {
        let mut r = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() >= RECORD_CAPACITY {
            r.pop_front();
        }
        r.push_back(json!({"method": method, "path": path, "status": status, "body": body}));
    }

    /// Replaces the service account token (the old one stops working at once) and rewrites
    /// the token file, atomically.
    pub(crate) fn rotate(&self, new: Option<String>) -> std::io::Result<String> {
        let token = new.unwrap_or_else(service_account_token);
        if let Some(path) = &self.sa_token_file {
            write_atomically(path, &token)?;
        }
        self.tokens().sa = token.clone();
        Ok(token)
    }
}

fn write_atomically(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}

impl Double for KubeState {
    fn plumbing(&self) -> &Plumbing {
        &self.plumbing
    }

    fn route_template(&self, _method: &Method, path: &str) -> String {
        api::route_template(self.openshift, path)
    }

    fn fault_response(&self, status: u16) -> Response {
        let e = KubeError::injected(status);
        if status == 502 {
            // A 502 comes from the load balancer before the API server, not from it.
            return axum::response::IntoResponse::into_response((e.status_code(), "Bad Gateway\n"));
        }
        api::json_response(e.status_code(), &e.to_json(), &[])
    }

    fn admin_authorized(&self, headers: &HeaderMap) -> bool {
        Self::bearer(headers).is_some_and(|t| !t.is_empty() && t == self.tokens().admin)
    }

    fn admin_refused(&self) -> Response {
        let e = KubeError::unauthorized();
        api::json_response(e.status_code(), &e.to_json(), &[])
    }
}

/// A running Kubernetes double; dropping it (or [`KubeServer::shutdown`]) stops it.
pub struct KubeServer {
    state: Arc<KubeState>,
    handle: Option<ServerHandle>,
    info: KubeInfo,
    controller: tokio::task::JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl KubeServer {
    pub async fn start(opts: KubeOptions) -> Result<KubeServer, StartError> {
        let admin = opts
            .token
            .clone()
            .unwrap_or_else(|| format!("sha256~{}", random_token(43)));
        let sa = opts.sa_token.clone().unwrap_or_else(service_account_token);
        if let Some(path) = &opts.sa_token_file {
            write_atomically(path, &sa).map_err(|source| StartError::Write {
                path: path.clone(),
                source,
            })?;
        }
        let mut store = store::Store::new(opts.openshift);
        if opts.demo {
            store.create(
                &resources::NAMESPACES,
                json!({"metadata": {"name": "waldur-system"}}),
            );
        }
        let state = Arc::new(KubeState {
            plumbing: Plumbing::default(),
            openshift: opts.openshift,
            store: Mutex::new(store),
            tokens: Mutex::new(Tokens {
                admin: admin.clone(),
                sa: sa.clone(),
            }),
            terminate_after: opts.terminate_after,
            recorded: Mutex::new(VecDeque::new()),
            address: Mutex::new(String::new()),
            sa_token_file: opts.sa_token_file.clone(),
        });
        state.plumbing.faults.set(opts.faults.clone());
        let (tls, ca_file) = if opts.tls {
            let mut hosts = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
            ];
            if !opts.listen.ip().is_unspecified() && !hosts.contains(&opts.listen.ip().to_string())
            {
                hosts.push(opts.listen.ip().to_string());
            }
            let made = crate::tls::self_signed(&hosts)?;
            let path = opts.ca_file.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!(
                    "site-sim-kubernetes-{}-{}.crt",
                    std::process::id(),
                    random_token(8)
                ))
            });
            std::fs::write(&path, &made.ca_pem).map_err(|source| StartError::Write {
                path: path.clone(),
                source,
            })?;
            (Some(made.server_config), Some(path))
        } else {
            (None, None)
        };
        let app = Router::new()
            .merge(server::admin_routes::<KubeState>())
            .merge(admin::routes())
            .fallback(api::dispatch)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                server::track::<KubeState>,
            ))
            .with_state(state.clone());
        let handle = ServerHandle::serve(app, opts.listen, tls)
            .await
            .map_err(|source| StartError::Bind {
                addr: opts.listen,
                source,
            })?;
        *state.address.lock().unwrap_or_else(|e| e.into_inner()) = handle.addr().to_string();
        // The namespace controller: finishes deletions that are due.
        let weak = Arc::downgrade(&state);
        let controller = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let Some(state) = weak.upgrade() else { return };
                state.lock().finish_terminations(Instant::now());
            }
        });
        let info = KubeInfo {
            url: handle.url(),
            token: admin,
            username: ADMIN_USER.into(),
            sa_token: sa,
            sa_username: SA_USER.into(),
            openshift: opts.openshift,
            ca_file: ca_file.map(|p| p.display().to_string()),
            sa_token_file: opts.sa_token_file.as_ref().map(|p| p.display().to_string()),
        };
        tracing::info!(url = %info.url, openshift = opts.openshift, "kubernetes double listening");
        Ok(KubeServer {
            state,
            handle: Some(handle),
            info,
            controller,
        })
    }

    pub fn info(&self) -> &KubeInfo {
        &self.info
    }

    /// The state, for a double in front of this one (Rancher's cluster proxy).
    pub(crate) fn state(&self) -> Arc<KubeState> {
        self.state.clone()
    }

    /// `http://127.0.0.1:PORT` or `https://...`.
    pub fn url(&self) -> &str {
        &self.info.url
    }

    /// The administrator token.
    pub fn token(&self) -> &str {
        &self.info.token
    }

    /// The current service account token.
    pub fn sa_token(&self) -> String {
        self.state.tokens().sa.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle
            .as_ref()
            .map(ServerHandle::addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Replaces the service account token; the old one answers 401 from now on.
    pub fn rotate_sa_token(&self) -> std::io::Result<String> {
        self.state.rotate(None)
    }

    /// Says what runs in a namespace; its quotas' `status.used` follow.
    pub fn set_usage(&self, namespace: &str, usage: Usage) {
        self.state.lock().set_usage(namespace, usage);
    }

    /// A stored object (with `kind`/`apiVersion`), e.g. `object("namespaces", "", "a")`.
    pub fn object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let def = resources::ALL.iter().find(|d| d.plural == plural)?;
        self.state.lock().get(def, namespace, name).cloned()
    }

    /// Every JSON body answered so far (oldest first, bounded).
    pub fn recorded(&self) -> Vec<Value> {
        self.state
            .recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn stats(&self) -> RequestStats {
        self.state.plumbing.stats.snapshot()
    }

    pub fn reset_stats(&self) {
        self.state.plumbing.stats.reset();
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        self.state.plumbing.faults.set(faults);
    }

    pub async fn shutdown(mut self) {
        self.controller.abort();
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }
}

impl Drop for KubeServer {
    fn drop(&mut self) {
        self.controller.abort();
    }
}
