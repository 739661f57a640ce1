//! `/__sim/kubernetes/...`: what a test needs beyond the API (administrator token required).
//!
//! - `POST /__sim/kubernetes/tokens/rotate` (`{"token": "..."}` optional): new service account
//!   token, the old one answers 401 from now on; the token file is rewritten.
//! - `PUT /__sim/kubernetes/namespaces/{ns}/usage`: what runs in the namespace
//!   (`{"pods": [{"requests": {...}, "limits": {...}}], "persistentvolumeclaims":
//!   [{"storage": "10Gi"}], "used": {"services": "2"}}`); quotas' `status.used` follow.
//! - `POST /__sim/kubernetes/finish-terminations`: namespaces being deleted are gone now.
//! - `GET /__sim/kubernetes/recorded` / `DELETE`: every JSON body the API answered.
//! - `GET /__sim/kubernetes/state`: objects per type and the current resourceVersion.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::KubeState;
use super::store::Usage;
use crate::server::Double;

type St = State<Arc<KubeState>>;

fn bad(msg: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"detail": msg.to_string()})),
    )
        .into_response()
}

async fn rotate(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    if !st.admin_authorized(&headers) {
        return st.admin_refused();
    }
    let explicit = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => v.get("token").and_then(Value::as_str).map(str::to_string),
            Err(e) => return bad(e),
        }
    };
    match st.rotate(explicit) {
        Ok(t) => axum::Json(json!({"sa_token": t})).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("writing the token file: {e}\n"),
        )
            .into_response(),
    }
}

async fn set_usage(
    State(st): St,
    headers: HeaderMap,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    if !st.admin_authorized(&headers) {
        return st.admin_refused();
    }
    let usage: Usage = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => return bad(e),
    };
    let mut store = st.lock();
    if store.namespace_phase(&ns).is_none() {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"detail": format!("no namespace {ns}")})),
        )
            .into_response();
    }
    store.set_usage(&ns, usage);
    let quotas: Vec<Value> = store
        .list(&super::resources::RESOURCE_QUOTAS, Some(&ns))
        .into_iter()
        .cloned()
        .collect();
    axum::Json(json!({"usage": store.usage(&ns), "quotas": quotas})).into_response()
}

async fn get_usage(State(st): St, headers: HeaderMap, Path(ns): Path<String>) -> Response {
    if !st.admin_authorized(&headers) {
        return st.admin_refused();
    }
    axum::Json(st.lock().usage(&ns)).into_response()
}

async fn finish(State(st): St, headers: HeaderMap) -> Response {
    if !st.admin_authorized(&headers) {
        return st.admin_refused();
    }
    st.lock()
        .finish_terminations(std::time::Instant::now() + st.terminate_after);
    StatusCode::NO_CONTENT.into_response()
}

async fn recorded(State(st): St, headers: HeaderMap) -> Response {
    if !st.admin_authorized(&headers) {
        return st.admin_refused();
    }
    let items: Vec<Value> = st
        .recorded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    axum::Json(json!({"items": items})).into_response()
}

async fn clear_recorded(State(st): St, headers: HeaderMap) -> Response {
    if !st.admin_authorized(&headers) {
        return st.admin_refused();
    }
    st.recorded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn state(State(st): St, headers: HeaderMap) -> Response {
    if !st.admin_authorized(&headers) {
        return st.admin_refused();
    }
    let store = st.lock();
    axum::Json(json!({"objects": store.summary(), "resourceVersion": store.resource_version().to_string(), "openshift": st.openshift})).into_response()
}

pub fn routes() -> Router<Arc<KubeState>> {
    Router::new()
        .route("/__sim/kubernetes/tokens/rotate", post(rotate))
        .route(
            "/__sim/kubernetes/namespaces/{ns}/usage",
            put(set_usage).post(set_usage).get(get_usage),
        )
        .route("/__sim/kubernetes/finish-terminations", post(finish))
        .route(
            "/__sim/kubernetes/recorded",
            get(recorded).delete(clear_recorded),
        )
        .route("/__sim/kubernetes/state", get(state))
}
