#![recursion_limit = "512"]
//! waldur-sim: a stateful simulator of the Waldur Mastermind REST API as the site agent sees it.
//!
//! Embed it in tests with [`SimServer::start_demo`] (or [`SimServer::start`] with a [`Seed`]),
//! drive the consumer side with [`consumer`], and check what happened with
//! [`SimServer::stats`], [`SimServer::state`] and [`SimServer::events`].

pub mod accounts;
pub mod admin;
pub mod app;
pub mod broker;
pub mod catalog;
pub mod consumer;
pub mod demo;
pub mod error;
pub mod events;
/// Fault injection, shared with the site doubles.
pub use site_sim::faults;
pub mod identities;
pub mod model;
pub mod offering_users;
pub mod orders;
pub mod pagination;
pub mod profile;
pub mod query;
pub mod render;
pub mod resources;
pub mod seed;
pub mod slurm_remote;
/// Request counters, shared with the site doubles.
pub use site_sim::stats;
pub mod store;
pub mod usage;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use broker::{BrokerOptions, PublishCounters};
pub use demo::{DemoInfo, DemoOfferingKind, DemoUser};
pub use error::{ApiError, SimError};
pub use events::{Delivery, EventRecord, EventSink};
pub use faults::{FaultConfig, FaultRule};
pub use profile::ApiProfile;
pub use seed::Seed;
pub use stats::{RequestLogEntry, RequestStats};
pub use store::{SimEvent, Store};

use app::{AppState, Shared};

/// The Mastermind version reported by `GET /api/version/`.
pub const MASTERMIND_VERSION: &str = "8.1.0";

#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Address to bind; port 0 picks a free one.
    pub listen: SocketAddr,
    pub seed: Option<Seed>,
    /// Load the documented demo dataset (before `seed`, which may add to it).
    pub demo: bool,
    /// `username_generation_policy` of the demo offering.
    pub demo_username_policy: String,
    /// Which demo offering `demo` seeds (SLURM by default).
    pub demo_offering_kind: DemoOfferingKind,
    /// Public base URL for hyperlinks (default `http://<bound address>`).
    pub public_url: Option<String>,
    pub faults: FaultConfig,
    /// Event brokers; fields set here override the seed's `brokers:` section. Empty: events
    /// are only recorded (`/__sim/events`), not sent.
    pub brokers: BrokerOptions,
    /// Which Mastermind to answer as (see [`profile`]): the current one, or one from 2024.
    pub api_profile: ApiProfile,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: None,
            demo: false,
            demo_username_policy: "waldur_username".into(),
            demo_offering_kind: DemoOfferingKind::Slurm,
            public_url: None,
            faults: FaultConfig::default(),
            brokers: BrokerOptions::default(),
            api_profile: ApiProfile::default(),
        }
    }
}

/// A running simulator; dropping it or calling [`SimServer::shutdown`] stops it.
pub struct SimServer {
    shared: AppState,
    addr: SocketAddr,
    demo: DemoInfo,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimServer {
    pub async fn start(opts: SimOptions) -> Result<SimServer, SimError> {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: opts.listen,
                source,
            })?;
        let addr = listener.local_addr()?;
        let base = opts
            .public_url
            .clone()
            .map(|u| u.trim_end_matches('/').trim_end_matches("/api").to_string())
            .unwrap_or_else(|| format!("http://{addr}"));
        let mut store = Store::new(base.clone());
        store.api_profile = opts.api_profile;
        if opts.demo {
            demo::demo_seed_of_kind(&opts.demo_username_policy, opts.demo_offering_kind)
                .apply(&mut store)?;
        }
        if let Some(seed) = &opts.seed {
            seed.apply(&mut store)?;
        }
        if opts.api_profile.is_2024() {
            store.seed_allocations();
        }
        let api_url = format!("{base}/api/");
        let mut demo = if opts.demo {
            demo::demo_info_of_kind(&store, &api_url, opts.demo_offering_kind)
        } else {
            DemoInfo {
                api_url,
                ..Default::default()
            }
        };
        let brokers = opts
            .seed
            .as_ref()
            .and_then(|s| s.brokers.clone())
            .unwrap_or_default()
            .overridden_by(opts.brokers.clone());
        let setup = BrokerSetup::new(&brokers)?;
        setup.describe(&mut demo);
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            stats: Default::default(),
            faults: Default::default(),
            events: Default::default(),
            base_url: base,
            rabbit: setup.rabbit.clone(),
            publish_stats: Default::default(),
            api_profile: opts.api_profile,
        });
        setup.spawn_publishers(&shared);
        shared.faults.set(opts.faults.clone());
        let app = router(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "waldur-sim server stopped with an error");
            }
        });
        tracing::info!(%addr, profile = %opts.api_profile, "waldur-sim listening");
        Ok(SimServer {
            shared,
            addr,
            demo,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The demo dataset on 127.0.0.1 with a free port.
    pub async fn start_demo() -> Result<SimServer, SimError> {
        Self::start(SimOptions {
            demo: true,
            ..Default::default()
        })
        .await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/api/`
    pub fn api_url(&self) -> String {
        self.demo.api_url.clone()
    }

    /// Which Mastermind this simulator answers as.
    pub fn api_profile(&self) -> ApiProfile {
        self.shared.api_profile
    }

    pub fn demo(&self) -> &DemoInfo {
        &self.demo
    }

    /// Adds broker fields to the demo info (set by the binary when brokers are configured).
    pub fn demo_mut(&mut self) -> &mut DemoInfo {
        &mut self.demo
    }

    pub fn stats(&self) -> RequestStats {
        self.shared.stats.snapshot()
    }

    pub fn request_log(&self, limit: usize) -> Vec<RequestLogEntry> {
        self.shared.stats.log(limit)
    }

    pub fn reset_stats(&self) {
        self.shared.stats.reset();
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        self.shared.faults.set(faults);
    }

    /// Read (and write) access to the whole state, for assertions and scenario set-up.
    /// Hold the guard briefly: requests wait for it.
    pub fn state(&self) -> MutexGuard<'_, Store> {
        self.shared.lock()
    }

    /// Applies a mutation and publishes the events it causes, as an API call would.
    pub fn mutate<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.shared.mutate(f)
    }

    pub fn events(&self) -> Vec<EventRecord> {
        self.shared.events.log()
    }

    /// How broker publishing went so far (all zero without brokers).
    pub fn publish_counters(&self) -> PublishCounters {
        self.shared.publish_stats.snapshot()
    }

    pub fn add_event_sink(&self, sink: Arc<dyn EventSink>) {
        self.shared.events.add_sink(sink);
    }

    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Parsed broker settings of one simulator.
struct BrokerSetup {
    rabbit: Option<broker::RabbitAdmin>,
    stomp: Option<broker::HostPort>,
    stomp_ws: Option<(String, u16, String)>,
    mqtt: Option<broker::HostPort>,
    mqtt_ws: Option<(String, u16, String)>,
}

impl BrokerSetup {
    fn new(o: &BrokerOptions) -> Result<BrokerSetup, broker::BrokerError> {
        let rabbit = o
            .rabbitmq_admin
            .as_deref()
            .map(broker::RabbitAdmin::new)
            .transpose()?;
        let stomp = o
            .stomp
            .as_deref()
            .map(|s| broker::HostPort::parse("stomp", s))
            .transpose()?;
        // Agents reach RabbitMQ through web-stomp: by default the local plugin's port and path.
        let stomp_ws = match (&o.stomp_ws, &stomp) {
            (Some(url), _) => Some(broker::ws_parts("stomp_ws", url)?),
            (None, Some(s)) => Some((s.host.clone(), 15674, "/ws".to_string())),
            (None, None) => None,
        };
        let mqtt = o
            .mqtt
            .as_deref()
            .map(|s| broker::HostPort::parse("mqtt", s))
            .transpose()?;
        let mqtt_ws = o
            .mqtt_ws
            .as_deref()
            .map(|u| broker::ws_parts("mqtt_ws", u))
            .transpose()?;
        Ok(BrokerSetup {
            rabbit,
            stomp,
            stomp_ws,
            mqtt,
            mqtt_ws,
        })
    }

    /// What an agent's config needs goes into the demo line.
    fn describe(&self, demo: &mut DemoInfo) {
        if let Some((host, port, path)) = &self.stomp_ws {
            demo.stomp_ws_host = Some(host.clone());
            demo.stomp_ws_port = Some(*port);
            demo.stomp_ws_path = Some(path.clone());
        }
        if let Some(m) = &self.mqtt {
            demo.mqtt_host = Some(m.host.clone());
            demo.mqtt_port = Some(m.port);
        }
        if let Some((_, port, path)) = &self.mqtt_ws {
            demo.mqtt_ws_port = Some(*port);
            demo.mqtt_ws_path = Some(path.clone());
        }
    }

    fn spawn_publishers(&self, shared: &AppState) {
        if let Some(s) = &self.stomp {
            // Mastermind publishes as its admin RMQ user; explicit USER:PASS@ in --stomp wins.
            let (login, passcode) = match (&s.credentials, &self.rabbit) {
                (Some((u, p)), _) => (u.clone(), p.clone()),
                (None, Some(r)) => (r.user().to_string(), r.password().clone()),
                (None, None) => ("guest".to_string(), broker::Password::new("guest")),
            };
            let target = broker::StompTarget {
                host: s.host.clone(),
                port: s.port,
                login,
                passcode,
            };
            tracing::info!(host = %s.host, port = s.port, "publishing events over STOMP");
            shared
                .events
                .add_sink(Arc::new(broker::StompPublisher::spawn(
                    target,
                    shared.publish_stats.clone(),
                )));
        }
        if let Some(m) = &self.mqtt {
            tracing::info!(host = %m.host, port = m.port, "publishing events over MQTT");
            shared
                .events
                .add_sink(Arc::new(broker::MqttPublisher::spawn(
                    m.clone(),
                    shared.publish_stats.clone(),
                )));
        }
        if self.rabbit.is_some() && self.stomp.is_none() {
            tracing::warn!(
                "RabbitMQ management API configured without --stomp: queues are provisioned but no event is published"
            );
        }
    }
}

/// Counts every request per route template and applies injected faults (not to `/__sim/`).
async fn track(State(shared): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "<unmatched>".into());
    let user_agent = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let decision = if route.starts_with("/__sim") {
        Default::default()
    } else {
        shared.faults.decide(&method, &route)
    };
    if decision.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(decision.latency_ms)).await;
    }
    let (resp, fault) = if decision.drop {
        (
            site_sim::server::dropped_connection(),
            Some("drop".to_string()),
        )
    } else if decision.drop_after {
        let _ran = next.run(req).await;
        (
            site_sim::server::dropped_connection(),
            Some("drop after".to_string()),
        )
    } else if let Some(status) = decision.error_status {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut r = (
            code,
            axum::Json(serde_json::json!({"detail": "Simulated fault."})),
        )
            .into_response();
        if status == 429 {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        (r, Some(format!("error {status}")))
    } else {
        (next.run(req).await, None)
    };
    shared.stats.record(RequestLogEntry {
        timestamp: store::now().to_string(),
        method,
        path,
        route,
        status: resp.status().as_u16(),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        user_agent,
        fault,
    });
    resp
}

/// Endpoints the server of this API profile does not have answer as a missing route does.
async fn gate(State(shared): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    if route.starts_with("/__sim")
        || shared
            .api_profile
            .serves(req.method(), &route, req.uri().path())
    {
        return next.run(req).await;
    }
    profile::django_not_found()
}

async fn not_found(State(shared): State<AppState>, req: Request) -> Response {
    shared.stats.record(RequestLogEntry {
        timestamp: store::now().to_string(),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        route: "<unmatched>".into(),
        status: 404,
        duration_ms: 0.0,
        user_agent: String::new(),
        fault: None,
    });
    if shared.api_profile.is_2024() {
        return profile::django_not_found();
    }
    ApiError::not_found().into_response()
}

pub fn router(shared: AppState) -> Router {
    Router::new()
        .merge(orders::routes())
        .merge(resources::routes())
        .merge(offering_users::routes())
        .merge(usage::routes())
        .merge(identities::routes())
        .merge(catalog::routes())
        .merge(admin::routes())
        .merge(accounts::routes())
        .merge(slurm_remote::routes())
        .route_layer(axum::middleware::from_fn_with_state(shared.clone(), gate))
        .route_layer(axum::middleware::from_fn_with_state(shared.clone(), track))
        .fallback(not_found)
        .with_state(shared)
}
