//! A stateful OpenNebula XML-RPC double (`POST /RPC2`), as OpenNebula 7.3's `oned` answers.
//!
//! Every call carries the session string `user:password` first; the reply is the array
//! `[success, body-or-message, error code, ...]` with OpenNebula's codes (0x100 authentication,
//! 0x200 authorization, 0x400 no such object, 0x800 action, 0x1000 API, 0x2000 internal) and
//! texts (`[one.group.allocate] NAME is already taken by GROUP 105.`, `Group 5 is already
//! assigned to the VDC 3`, `Error getting virtual network [12].`). Served: groups (quotas with
//! usage counters), users (templates, password), VDCs (groups, clusters, VNets), clusters, VNets
//! with IPv4 address ranges and leases, virtual routers (instantiated VMs), security groups, VM
//! templates, images and VMs whose STATE/LCM_STATE move over time (PENDING → PROLOG → BOOT →
//! RUNNING, poweroff, resume, terminate), resize and disk resize. An unknown method gets
//! xmlrpc-c's fault -506. Documents follow OpenNebula's XSDs (vendored in
//! `tests/opennebula-xsd/`), each kept for `/__sim/opennebula/recorded`.
//!
//! Administration (`/__sim/...`, HTTP basic auth as oneadmin): the shared `stats`, `faults`
//! (route = `/RPC2/<method>`, `drop_after_rate` for replies lost after the change), plus
//! `POST /__sim/opennebula/quota-usage` (raise a group's usage counters),
//! `POST /__sim/opennebula/vm-failures` (booting VMs end in a failure state),
//! `GET /__sim/opennebula/recorded` and `GET /__sim/opennebula/summary` (names per pool).

pub mod store;
pub mod template;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use http_kit::xmlrpc::{self, Value};
use serde::Serialize;
use serde_json::json;

use crate::faults::FaultConfig;
use crate::server::{self, Double, Plumbing, ServerHandle};
use crate::stats::RequestStats;
use store::{Store, UsageUpdate, VmFailure};

const RECORD_CAPACITY: usize = 20_000;

#[derive(Debug, Clone)]
pub struct OneOptions {
    pub listen: SocketAddr,
    /// oneadmin's password (random when absent).
    pub password: Option<String>,
    /// Demo data: clusters 0 and 100, provider network 10, VM template 0, VNF template 8.
    pub demo: bool,
    /// Duration of each VM transition step (boot takes three).
    pub vm_step: Duration,
    pub faults: FaultConfig,
}

impl Default for OneOptions {
    fn default() -> Self {
        OneOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            password: None,
            demo: true,
            vm_step: Duration::from_millis(200),
            faults: FaultConfig::default(),
        }
    }
}

/// What `site-sim opennebula` prints: the endpoint and the oneadmin session.
#[derive(Clone, Serialize)]
pub struct OneInfo {
    pub kind: &'static str,
    pub url: String,
    pub username: String,
    pub password: String,
    /// `username:password`, the session string XML-RPC clients send.
    pub credentials: String,
}

impl std::fmt::Debug for OneInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneInfo")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

pub struct OneState {
    plumbing: Plumbing,
    store: Mutex<Store>,
    recorded: Mutex<VecDeque<String>>,
    admin_session: String,
}

impl OneState {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, doc: &str) {
        let mut r = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() >= RECORD_CAPACITY {
            r.pop_front();
        }
        r.push_back(doc.to_owned());
    }
}

impl Double for OneState {
    fn plumbing(&self) -> &Plumbing {
        &self.plumbing
    }

    fn route_template(&self, _method: &Method, path: &str) -> String {
        path.to_owned()
    }

    fn routes_by_body(&self) -> bool {
        true
    }

    fn route_from_body(&self, _method: &Method, path: &str, body: &[u8]) -> Option<String> {
        let body = std::str::from_utf8(body).ok()?;
        // The method name is all a route needs; a cheap scan, the handler parses properly.
        let start = body.find("<methodName>")? + "<methodName>".len();
        let end = start + body[start..].find("</methodName>")?;
        let name = body[start..end].trim();
        (name.len() < 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_'))
        .then(|| format!("{path}/{name}"))
    }

    fn fault_response(&self, status: u16) -> Response {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        (
            code,
            format!("{}\n", code.canonical_reason().unwrap_or("error")),
        )
            .into_response()
    }

    fn admin_authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|d| d == self.admin_session.as_bytes())
    }
}

type St = State<Arc<OneState>>;

fn xml_reply(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

/// `POST /RPC2`: one XML-RPC call.
async fn rpc(State(st): St, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return xml_reply(xmlrpc::fault_body(-32702, "request is not UTF-8"));
    };
    let (method, params) = match xmlrpc::parse_call(text) {
        Ok(c) => c,
        Err(e) => return xml_reply(xmlrpc::fault_body(-32700, &format!("parse error: {e}"))),
    };
    let result = {
        let mut store = st.store();
        store.advance(Instant::now());
        match params
            .first()
            .and_then(Value::as_str)
            .and_then(|s| store.authenticate(s))
        {
            None => Err((
                store::AUTHENTICATION,
                format!("[{method}] User couldn't be authenticated, aborting call."),
            )),
            Some(uid) => store.call(uid, &method, &params),
        }
    };
    let reply = match result {
        Ok(v) => {
            if let Value::String(doc) = &v
                && doc.starts_with('<')
            {
                st.record(doc);
            }
            Value::Array(vec![Value::Bool(true), v, Value::Int(0)])
        }
        Err((-506, msg)) => return xml_reply(xmlrpc::fault_body(-506, &msg)),
        Err((code, msg)) => {
            tracing::debug!(%method, code, %msg, "OpenNebula call failed");
            Value::Array(vec![
                Value::Bool(false),
                Value::String(msg),
                Value::Int(code),
                Value::Int(-1),
            ])
        }
    };
    xml_reply(xmlrpc::response_body(&reply))
}

async fn recorded(State(st): St, headers: HeaderMap) -> Response {
    if !st.admin_authorized(&headers) {
        return st.admin_refused();
    }
    let docs: Vec<String> = st
        .recorded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    axum::Json(docs).into_response()
}

async fn quota_usage(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    if !st.admin_authorized(&headers) {
        return st.admin_refused();
    }
    let u: UsageUpdate = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    match st.store().set_usage(&u.group, &u) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
    }
}

async fn vm_failures(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    if !st.admin_authorized(&headers) {
        return st.admin_refused();
    }
    let f: VmFailure = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let known = matches!(f.state.as_str(), "FAILED" | "CLONING_FAILURE")
        || store::LCM_FAILURES.iter().any(|(n, _)| *n == f.state);
    if !known {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "unknown failure state {:?}: use FAILED, CLONING_FAILURE or one of {:?}\n",
                f.state,
                store::LCM_FAILURES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
            ),
        )
            .into_response();
    }
    st.store().failures.push(f);
    StatusCode::NO_CONTENT.into_response()
}

async fn summary(State(st): St, headers: HeaderMap) -> Response {
    if !st.admin_authorized(&headers) {
        return st.admin_refused();
    }
    let mut s = st.store();
    s.advance(Instant::now());
    let names = |it: Vec<String>| serde_json::Value::from(it);
    axum::Json(json!({
        "groups": names(s.groups.values().map(|g| g.name.clone()).collect()),
        "users": names(s.users.values().map(|u| u.name.clone()).collect()),
        "vdcs": names(s.vdcs.values().map(|v| v.name.clone()).collect()),
        "vnets": names(s.vnets.values().map(|v| v.name.clone()).collect()),
        "vrouters": names(s.vrouters.values().map(|v| v.named.name.clone()).collect()),
        "secgroups": names(s.secgroups.values().map(|v| v.name.clone()).collect()),
        "vms": names(s.vms.values().filter(|v| v.state != store::vm_state::DONE).map(|v| v.name.clone()).collect()),
    }))
    .into_response()
}

/// A running OpenNebula double; dropping it (or [`OneServer::shutdown`]) stops it.
pub struct OneServer {
    state: Arc<OneState>,
    handle: ServerHandle,
    info: OneInfo,
}

impl OneServer {
    pub async fn start(opts: OneOptions) -> std::io::Result<OneServer> {
        let password = opts
            .password
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let state = Arc::new(OneState {
            plumbing: Plumbing::default(),
            store: Mutex::new(Store::new(&password, opts.demo, opts.vm_step)),
            recorded: Mutex::new(VecDeque::new()),
            admin_session: format!("oneadmin:{password}"),
        });
        state.plumbing.faults.set(opts.faults.clone());
        let app = Router::new()
            .route("/RPC2", post(rpc))
            .route("/__sim/opennebula/recorded", get(recorded))
            .route("/__sim/opennebula/quota-usage", post(quota_usage))
            .route("/__sim/opennebula/vm-failures", post(vm_failures))
            .route("/__sim/opennebula/summary", get(summary))
            .merge(server::admin_routes::<OneState>())
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                server::track::<OneState>,
            ))
            .with_state(state.clone());
        let handle = ServerHandle::serve(app, opts.listen, None).await?;
        let info = OneInfo {
            kind: "opennebula",
            url: format!("{}/RPC2", handle.url()),
            username: "oneadmin".into(),
            credentials: format!("oneadmin:{password}"),
            password,
        };
        Ok(OneServer {
            state,
            handle,
            info,
        })
    }

    pub fn info(&self) -> &OneInfo {
        &self.info
    }

    pub fn state(&self) -> &Arc<OneState> {
        &self.state
    }

    pub fn stats(&self) -> RequestStats {
        self.state.plumbing.stats.snapshot()
    }

    pub fn set_faults(&self, config: FaultConfig) {
        self.state.plumbing.faults.set(config);
    }

    /// Every XML document answered so far.
    pub fn recorded(&self) -> Vec<String> {
        self.state
            .recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }
}
