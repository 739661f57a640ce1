//! Server plumbing shared by every double: plain or TLS listener, request accounting, fault
//! injection and the common `/__sim/` administration endpoints (stats, faults).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::faults::{FaultConfig, FaultState};
use crate::stats::{RequestLogEntry, StatsState};

/// Counters and fault rules of one double.
#[derive(Default)]
pub struct Plumbing {
    pub stats: StatsState,
    pub faults: FaultState,
}

/// What a double tells the shared plumbing about itself.
pub trait Double: Send + Sync + 'static {
    fn plumbing(&self) -> &Plumbing;
    /// The route template of a request (`/api/v1/namespaces/{namespace}`), for the counters
    /// and fault rules.
    fn route_template(&self, method: &Method, path: &str) -> String;
    /// For protocols whose route is in the body (XML-RPC: the method name): the route of this
    /// request body, or None to use [`Double::route_template`]. Only called when
    /// [`Double::routes_by_body`] is true; the body is then read first (up to 16 MiB).
    fn route_from_body(&self, _method: &Method, _path: &str, _body: &[u8]) -> Option<String> {
        None
    }
    fn routes_by_body(&self) -> bool {
        false
    }
    /// What the real system answers with an error status (used for injected faults).
    fn fault_response(&self, status: u16) -> Response;
    /// Whether these request headers may use the `/__sim/` administration endpoints.
    fn admin_authorized(&self, headers: &HeaderMap) -> bool;
    /// The answer to an unauthorized `/__sim/` request.
    fn admin_refused(&self) -> Response {
        (StatusCode::UNAUTHORIZED, "admin token required\n").into_response()
    }
}

/// Counts every request per route template and applies injected faults (never to `/__sim/`).
pub async fn track<D: Double>(State(d): State<Arc<D>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let admin = path.starts_with("/__sim/");
    let (req, body_route) = if !admin && d.routes_by_body() {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, 16 << 20).await {
            Ok(b) => b,
            Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "body too large\n").into_response(),
        };
        let route = d.route_from_body(&method, &path, &bytes);
        (Request::from_parts(parts, Body::from(bytes)), route)
    } else {
        (req, None)
    };
    let route = if admin {
        path.clone()
    } else {
        body_route.unwrap_or_else(|| d.route_template(&method, &path))
    };
    let user_agent = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let decision = if admin {
        Default::default()
    } else {
        d.plumbing().faults.decide(method.as_str(), &route)
    };
    if decision.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(decision.latency_ms)).await;
    }
    let (resp, fault) = if decision.drop {
        (dropped_connection(), Some("drop".to_string()))
    } else if decision.drop_after {
        let _ran = next.run(req).await;
        (dropped_connection(), Some("drop after".to_string()))
    } else if let Some(status) = decision.error_status {
        (d.fault_response(status), Some(format!("error {status}")))
    } else {
        (next.run(req).await, None)
    };
    d.plumbing().stats.record(RequestLogEntry {
        timestamp: jiff::Timestamp::now().to_string(),
        method: method.to_string(),
        path,
        route,
        status: resp.status().as_u16(),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        user_agent,
        fault,
    });
    resp
}

/// A response whose body fails mid-stream: hyper aborts the connection (`waldur-sim` uses it
/// too).
pub fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("simulated connection drop"))
    });
    Response::new(Body::from_stream(stream))
}

fn json_response(v: serde_json::Value) -> Response {
    axum::Json(v).into_response()
}

async fn stats<D: Double>(
    State(d): State<Arc<D>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if !d.admin_authorized(&headers) {
        return d.admin_refused();
    }
    let limit = q.get("log").and_then(|v| v.parse().ok()).unwrap_or(0);
    let snap = d.plumbing().stats.snapshot();
    json_response(json!({
        "total": snap.total,
        "routes": snap.routes,
        "log": d.plumbing().stats.log(limit),
    }))
}

async fn reset_stats<D: Double>(State(d): State<Arc<D>>, headers: HeaderMap) -> Response {
    if !d.admin_authorized(&headers) {
        return d.admin_refused();
    }
    d.plumbing().stats.reset();
    StatusCode::NO_CONTENT.into_response()
}

async fn get_faults<D: Double>(State(d): State<Arc<D>>, headers: HeaderMap) -> Response {
    if !d.admin_authorized(&headers) {
        return d.admin_refused();
    }
    json_response(serde_json::to_value(d.plumbing().faults.get()).unwrap_or_default())
}

async fn set_faults<D: Double>(
    State(d): State<Arc<D>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !d.admin_authorized(&headers) {
        return d.admin_refused();
    }
    let config: FaultConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    if let Err(e) = config.check() {
        return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
    }
    d.plumbing().faults.set(config.clone());
    json_response(serde_json::to_value(config).unwrap_or_default())
}

/// `/__sim/stats` (`?log=N` adds the last N requests), `/__sim/reset-stats`, `/__sim/faults`.
pub fn admin_routes<D: Double>() -> Router<Arc<D>> {
    Router::new()
        .route("/__sim/stats", get(stats::<D>))
        .route("/__sim/reset-stats", post(reset_stats::<D>))
        .route("/__sim/faults", get(get_faults::<D>).post(set_faults::<D>))
}

/// A listening double; dropping it (or [`ServerHandle::shutdown`]) stops the server.
pub struct ServerHandle {
    addr: SocketAddr,
    tls: bool,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    /// Binds `listen` and serves `app` on it, over TLS when `tls` is given.
    pub async fn serve(
        app: Router,
        listen: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<ServerHandle> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let is_tls = tls.is_some();
        let shutdown = async {
            let _ = rx.await;
        };
        let task = match tls {
            None => tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::error!(error = %e, "server stopped with an error");
                }
            }),
            Some(config) => {
                let listener = TlsListener::spawn(listener, config);
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                    {
                        tracing::error!(error = %e, "server stopped with an error");
                    }
                })
            }
        };
        Ok(ServerHandle {
            addr,
            tls: is_tls,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// Stops accepting, lets open requests finish for up to 2 s, then aborts the rest
    /// (watches never finish by themselves).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Accepts TCP connections and completes TLS handshakes in their own tasks, so that a client
/// stalling its handshake never holds up the others.
struct TlsListener {
    rx: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn spawn(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (tx, rx) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let acceptor_task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener {
            rx,
            local,
            acceptor_task,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
