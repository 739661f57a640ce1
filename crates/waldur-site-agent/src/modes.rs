//! The modes, wired: per-offering contexts (Waldur client + backends from the registry) and the
//! [`ModeRunner`]s the scheduler drives, plus the event listeners of `event_process`.

use std::sync::Arc;
use std::time::Duration;

use agent_config::{AgentConfig, OfferingConfig};
use agent_core::events::{self, SubscriptionPlan};
use agent_core::{CoreSettings, CycleReport, OfferingContext, RegistrationOutcome};
use agent_events::{
    ConnectionStatus, EventSource, EventSourceConfig, EventSourceHandle, MqttSourceConfig,
    MqttTransport, StompSourceConfig,
};
use async_trait::async_trait;
use backend_api::Registry;
use futures::future::join_all;
use jiff::Timestamp;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use waldur_client::{Auth, ClientOptions, Secret, WaldurClient};

use crate::cli::Mode;
use crate::leases::{LeaseGate, WorkGuard};
use crate::metrics::Metrics;
use crate::scheduler::{CycleOutcome, ModeRunner};

/// The Waldur client an offering's config describes, for `mode`'s User-Agent.
pub fn client_for(
    agent: &AgentConfig,
    offering: &OfferingConfig,
    mode: &str,
) -> Result<WaldurClient, String> {
    let options = client_options(agent, offering, mode)?;
    WaldurClient::new(options).map_err(|e| format!("offering '{}': {e}", offering.name))
}

/// The client options of an offering: auth, TLS, proxy, User-Agent, and the response-size and
/// page caps (`WALDUR_SITE_AGENT_MAX_RESPONSE_MB`, `WALDUR_SITE_AGENT_MAX_PAGES`).
pub fn client_options(
    agent: &AgentConfig,
    offering: &OfferingConfig,
    mode: &str,
) -> Result<ClientOptions, String> {
    let auth = if offering.waldur_api_token.is_empty() {
        match (
            &offering.oidc_token_url,
            &offering.oidc_client_id,
            &offering.oidc_client_secret,
        ) {
            (Some(url), Some(id), Some(secret)) => Auth::Oidc {
                token_url: url.clone(),
                client_id: id.clone(),
                client_secret: Secret::new(secret.expose()),
            },
            _ => {
                return Err(format!(
                    "offering '{}': neither waldur_api_token nor oidc_token_url/oidc_client_id/oidc_client_secret is set",
                    offering.name
                ));
            }
        }
    } else {
        Auth::Token(Secret::new(offering.waldur_api_token.expose()))
    };
    let mut options = ClientOptions::new(offering.waldur_api_url.clone(), auth);
    options.user_agent = format!("waldur-site-agent-{mode}/{}", env!("CARGO_PKG_VERSION"));
    options.verify_tls = offering.verify_ssl;
    options.proxy = agent.global_proxy.clone().filter(|p| !p.trim().is_empty());
    options.apply_env_limits(|name| std::env::var(name).ok())?;
    Ok(options)
}

/// One offering's context, built on first use and rebuilt after a failure (a backend that could
/// not start this cycle may start next cycle).
struct Slot {
    config: OfferingConfig,
    /// The context, and the lease epoch it was built under (0 without leases).
    ctx: Mutex<Option<(Arc<OfferingContext>, u64)>>,
}

/// The offerings of the file, as one mode sees them.
pub struct Offerings {
    agent: Arc<AgentConfig>,
    registry: Arc<Registry>,
    settings: CoreSettings,
    mode: Mode,
    slots: Vec<Slot>,
    cancel: CancellationToken,
    /// Leader election: work only on offerings whose Lease this replica holds.
    leases: Option<Arc<LeaseGate>>,
}

impl Offerings {
    pub fn new(
        agent: Arc<AgentConfig>,
        registry: Arc<Registry>,
        mode: Mode,
    ) -> Result<Self, String> {
        let settings = CoreSettings::from_config(&agent).map_err(|e| e.to_string())?;
        let slots = agent
            .offerings
            .iter()
            .map(|o| Slot {
                config: o.clone(),
                ctx: Mutex::new(None),
            })
            .collect();
        Ok(Offerings {
            agent,
            registry,
            settings,
            mode,
            slots,
            cancel: CancellationToken::new(),
            leases: None,
        })
    }

    /// Processors of these offerings stop starting new items when `cancel` fires.
    pub fn with_cancellation(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Work only on the offerings whose Lease (for this mode) `gate` says this replica holds.
    pub fn with_leases(mut self, gate: Option<Arc<LeaseGate>>) -> Self {
        self.leases = gate;
        self
    }

    /// Permission to work on offering `index` now: `Ok(None)` without leader election,
    /// `Err(())` when another replica holds it.
    fn begin(&self, index: usize) -> Result<Option<WorkGuard>, ()> {
        match &self.leases {
            None => Ok(None),
            Some(gate) => gate
                .begin(self.mode, &self.slots[index].config.waldur_offering_uuid)
                .map(Some)
                .ok_or(()),
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    /// `global_proxy`, when set: REST calls and the event WebSocket go through it.
    pub fn global_proxy(&self) -> Option<String> {
        self.agent
            .global_proxy
            .clone()
            .filter(|p| !p.trim().is_empty())
    }

    async fn context(&self, index: usize) -> Result<Arc<OfferingContext>, String> {
        self.context_under(index, None).await
    }

    /// The offering's context; under a lease `work`, one whose processors stop when the lease
    /// is lost (built again after each acquisition).
    async fn context_under(
        &self,
        index: usize,
        work: Option<&WorkGuard>,
    ) -> Result<Arc<OfferingContext>, String> {
        let slot = &self.slots[index];
        let mut guard = slot.ctx.lock().await;
        let epoch = work.map_or(0, WorkGuard::epoch);
        if let Some((ctx, built)) = guard.as_ref()
            && *built == epoch
        {
            return Ok(ctx.clone());
        }
        let client = client_for(&self.agent, &slot.config, self.mode.as_str())?;
        let backends = self
            .registry
            .build_offering(&slot.config)
            .map_err(|e| e.to_string())?;
        let cancel = work.map_or_else(|| self.cancel.clone(), WorkGuard::token);
        let ctx = Arc::new(
            OfferingContext::new(slot.config.clone(), client, backends, self.settings.clone())
                .with_cancellation(cancel),
        );
        *guard = Some((ctx.clone(), epoch));
        Ok(ctx)
    }

    /// Contexts of every offering that builds (failures logged).
    pub async fn contexts(&self) -> Vec<Arc<OfferingContext>> {
        let mut out = Vec::new();
        for i in 0..self.len() {
            match self.context(i).await {
                Ok(ctx) => out.push(ctx),
                Err(e) => {
                    tracing::error!(offering = %self.slots[i].config.name, error = %e, "cannot set up offering")
                }
            }
        }
        out
    }
}

/// Whether `mode`'s polling should leave this offering alone (events handle it).
fn skipped_by(mode: Mode, offering: &OfferingConfig) -> Option<&'static str> {
    match mode {
        Mode::OrderProcess if offering.events_enabled() => {
            Some("orders are processed by event_process for this offering")
        }
        Mode::OrderProcess
            if offering
                .role_backend(agent_config::BackendRole::OrderProcessing)
                .is_none() =>
        {
            Some("no order_processing_backend")
        }
        Mode::MembershipSync if offering.membership_via_events() => {
            Some("membership is synced by event_process for this offering")
        }
        Mode::MembershipSync
            if offering
                .role_backend(agent_config::BackendRole::MembershipSync)
                .is_none() =>
        {
            Some("no membership_sync_backend")
        }
        Mode::Report
            if offering
                .role_backend(agent_config::BackendRole::Reporting)
                .is_none() =>
        {
            Some("no reporting_backend")
        }
        _ => None,
    }
}

/// `order_process`, `report` or `membership_sync`: one cycle over every offering, offerings in
/// parallel (each is independent; a failure in one never touches another).
pub struct PollingRunner {
    offerings: Offerings,
    started: Timestamp,
}

impl PollingRunner {
    pub fn new(offerings: Offerings) -> Self {
        PollingRunner {
            offerings,
            started: Timestamp::now(),
        }
    }
}

async fn run_processor(mode: Mode, ctx: &OfferingContext) -> CycleReport {
    match mode {
        Mode::OrderProcess => agent_core::order_process(ctx).await,
        Mode::Report => agent_core::report(ctx).await,
        Mode::MembershipSync => agent_core::membership_sync(ctx).await,
        Mode::EventProcess => reconcile(ctx).await,
    }
}

/// Event mode's safety net: the sweeps, plus full order and membership passes so that whatever
/// was missed while a connection was down is caught up.
async fn reconcile(ctx: &OfferingContext) -> CycleReport {
    let mut report = CycleReport::new(ctx.name());
    if ctx.config.events_enabled() {
        if ctx.backends.orders.is_some() {
            report.merge(agent_core::order_process(ctx).await);
        }
        if ctx.backends.membership.is_some()
            && ctx.config.stomp_membership_sync_enabled != Some(false)
        {
            report.merge(agent_core::membership_sync(ctx).await);
        }
    }
    report.merge(agent_core::sweeps::stuck_offering_users(ctx).await);
    report
}

/// Failures named in the "Offering not processed" line; the rest are counted.
const FAILURES_SHOWN: usize = 5;

fn processor_name(mode: Mode) -> &'static str {
    match mode {
        Mode::OrderProcess => "OfferingOrderProcessor",
        Mode::Report => "OfferingReportProcessor",
        Mode::MembershipSync => "OfferingMembershipProcessor",
        Mode::EventProcess => "EventReconciliation",
    }
}

#[async_trait]
impl ModeRunner for PollingRunner {
    fn mode(&self) -> Mode {
        self.offerings.mode
    }

    async fn run_cycle(&self, cancel: &CancellationToken) -> CycleOutcome {
        let mode = self.offerings.mode;
        let runs = (0..self.offerings.len()).map(|i| async move {
            let config = &self.offerings.slots[i].config;
            if mode != Mode::EventProcess {
                if let Some(why) = skipped_by(mode, config) {
                    tracing::debug!(offering = %config.name, "skipping: {why}");
                    return (config.name.clone(), Ok(CycleReport::new(&config.name)));
                }
            }
            if cancel.is_cancelled() {
                return (config.name.clone(), Err("shutting down".to_owned()));
            }
            let Ok(work) = self.offerings.begin(i) else {
                tracing::debug!(offering = %config.name, "skipping: another replica holds its lease");
                return (config.name.clone(), Ok(CycleReport::new(&config.name)));
            };
            let ctx = match self.offerings.context_under(i, work.as_ref()).await {
                Ok(ctx) => ctx,
                Err(e) => return (config.name.clone(), Err(e)),
            };
            if let RegistrationOutcome::Failed(e) =
                agent_core::register_agent(&ctx, mode.as_str(), processor_name(mode), self.started).await
            {
                tracing::debug!(offering = %config.name, error = %e, "registration failed; processing anyway");
            }
            (config.name.clone(), Ok(run_processor(mode, &ctx).await))
        });
        let mut outcome = CycleOutcome::default();
        for (name, result) in join_all(runs).await {
            match result {
                Ok(report) => {
                    outcome.processed += report.processed as u64;
                    outcome.failed += report.failed as u64;
                    if report.has_failures() {
                        // Most processors log each item's failure where it happens, but not all
                        // (a listing that fails is one line in the report): the summary the
                        // scheduler logs at warn names what failed and why.
                        for e in &report.errors {
                            tracing::debug!(offering = %name, mode = mode.as_str(), "{e}");
                        }
                        outcome
                            .offerings_failed
                            .push((name, report.failure_summary(FAILURES_SHOWN)));
                    } else {
                        outcome.offerings_ok.push(name);
                    }
                }
                Err(e) => {
                    tracing::error!(offering = %name, mode = mode.as_str(), error = %e, "offering not processed");
                    outcome.offerings_failed.push((name, e));
                }
            }
        }
        outcome
    }
}

/// Event mode for offerings that got no event source: the reconciliation pass (orders,
/// membership, sweeps) at the order_process period, so a Mastermind without event subscriptions
/// (2024) is served within minutes instead of at the hourly sweep.
pub struct EventlessPolling {
    offerings: Offerings,
    names: Vec<String>,
}

impl EventlessPolling {
    pub fn new(offerings: Offerings, names: Vec<String>) -> Self {
        EventlessPolling { offerings, names }
    }
}

#[async_trait]
impl ModeRunner for EventlessPolling {
    fn mode(&self) -> Mode {
        Mode::EventProcess
    }

    async fn run_cycle(&self, cancel: &CancellationToken) -> CycleOutcome {
        let mut outcome = CycleOutcome::default();
        for i in 0..self.offerings.len() {
            let name = &self.offerings.slots[i].config.name;
            if cancel.is_cancelled() || !self.names.contains(name) {
                continue;
            }
            let Ok(work) = self.offerings.begin(i) else {
                continue;
            };
            let ctx = match self.offerings.context_under(i, work.as_ref()).await {
                Ok(ctx) => ctx,
                Err(e) => {
                    outcome.offerings_failed.push((name.clone(), e));
                    continue;
                }
            };
            let report = reconcile(&ctx).await;
            outcome.processed += report.processed as u64;
            outcome.failed += report.failed as u64;
            if report.has_failures() {
                outcome
                    .offerings_failed
                    .push((name.clone(), report.failure_summary(FAILURES_SHOWN)));
            } else {
                outcome.offerings_ok.push(name.clone());
            }
        }
        outcome
    }
}

/// Event mode's resource status pass (upstream 1.0.8): for offerings whose membership runs on
/// events, re-apply paused/downscaled/restored on the site.
pub struct StatusReconciliation {
    offerings: Offerings,
}

impl StatusReconciliation {
    pub fn new(offerings: Offerings) -> Self {
        StatusReconciliation { offerings }
    }
}

#[async_trait]
impl ModeRunner for StatusReconciliation {
    fn mode(&self) -> Mode {
        Mode::EventProcess
    }

    async fn run_cycle(&self, cancel: &CancellationToken) -> CycleOutcome {
        let mut outcome = CycleOutcome::default();
        for i in 0..self.offerings.len() {
            let config = &self.offerings.slots[i].config;
            if cancel.is_cancelled()
                || !config.events_enabled()
                || config.stomp_membership_sync_enabled == Some(false)
                || config
                    .role_backend(agent_config::BackendRole::MembershipSync)
                    .is_none()
            {
                continue;
            }
            let Ok(work) = self.offerings.begin(i) else {
                continue;
            };
            let ctx = match self.offerings.context_under(i, work.as_ref()).await {
                Ok(ctx) => ctx,
                Err(e) => {
                    outcome.offerings_failed.push((config.name.clone(), e));
                    continue;
                }
            };
            tracing::info!(offering = %config.name, "re-applying resource statuses");
            let report = agent_core::membership::reconcile_resource_statuses(&ctx).await;
            outcome.processed += report.processed as u64;
            outcome.failed += report.failed as u64;
            if report.has_failures() {
                outcome
                    .offerings_failed
                    .push((config.name.clone(), report.failure_summary(FAILURES_SHOWN)));
            } else {
                outcome.offerings_ok.push(config.name.clone());
            }
        }
        outcome
    }
}

/// Where `offering`'s STOMP web-socket is: explicit settings, else the API host on 443/80 by
/// `websocket_use_tls` (upstream keyed the port on `verify_ssl`, which was a bug).
fn stomp_endpoint(offering: &OfferingConfig) -> (String, u16, String, bool) {
    let tls = offering.websocket_use_tls;
    let host = offering
        .stomp_ws_host
        .clone()
        .unwrap_or_else(|| api_host(offering));
    let port = offering.stomp_ws_port.unwrap_or(if tls { 443 } else { 80 });
    let path = offering
        .stomp_ws_path
        .clone()
        .unwrap_or_else(|| "/rmqws-stomp".to_owned());
    (host, port, path, tls)
}

fn api_host(offering: &OfferingConfig) -> String {
    url::Url::parse(&offering.waldur_api_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Turn Waldur's subscription plans into broker connections for this offering.
pub fn source_configs(
    offering: &OfferingConfig,
    plans: &[SubscriptionPlan],
    proxy: Option<&str>,
) -> Vec<EventSourceConfig> {
    let mut out = Vec::new();
    let passcode = offering.waldur_api_token.expose().to_owned();
    if offering.stomp_enabled {
        let (host, port, path, tls) = stomp_endpoint(offering);
        for plan in plans {
            let mut c = StompSourceConfig::new(
                host.clone(),
                port,
                path.clone(),
                plan.vhost.clone(),
                plan.login.clone(),
                passcode.clone(),
                plan.queue.clone(),
            );
            c.tls = tls;
            c.proxy = proxy.map(str::to_owned);
            c.object_type = plan.object_type.clone();
            c.destination = Some(plan.stomp_destination());
            out.push(EventSourceConfig::Stomp(c));
        }
    }
    if offering.mqtt_enabled {
        let websocket = offering.mqtt_use_websocket.unwrap_or(true);
        let host = offering
            .mqtt_host
            .clone()
            .unwrap_or_else(|| api_host(offering));
        let port = offering.mqtt_port.unwrap_or(if websocket {
            if offering.websocket_use_tls { 443 } else { 80 }
        } else {
            1883
        });
        for plan in plans.iter().filter(|p| !p.unified) {
            let (Some(sub), Some(object_type)) = (&plan.subscription_uuid, &plan.object_type)
            else {
                continue;
            };
            let transport = if websocket {
                MqttTransport::WebSocket
            } else {
                MqttTransport::Tcp
            };
            let mut c = MqttSourceConfig::new(
                host.clone(),
                port,
                transport,
                sub.clone(),
                offering.offering_uuid_hex(),
                vec![object_type.clone()],
            );
            c.tls = websocket && offering.websocket_use_tls;
            if let Some(path) = &offering.mqtt_ws_path {
                c.path = path.clone();
            }
            c.client_id = format!(
                "waldur-site-agent-{}-{object_type}",
                offering.offering_uuid_hex()
            );
            c.username = Some(format!("{}:{}", plan.vhost, plan.login));
            c.password = Some(passcode.clone().into());
            out.push(EventSourceConfig::Mqtt(c));
        }
    }
    out
}

/// Running event listeners: one consumer task per offering, fed by its sources.
pub struct EventListeners {
    pub handles: Vec<(String, EventSourceHandle)>,
    consumers: Vec<tokio::task::JoinHandle<()>>,
    /// When each running event handler started (for the liveness watchdog).
    handlers: Arc<crate::watchdog::HandlerClock>,
    /// Offerings with events on that got no event source (a Mastermind without event
    /// subscriptions, e.g. from 2024, or a registration that failed): polled instead.
    pub without_events: Vec<String>,
}

impl EventListeners {
    /// Register subscriptions in Waldur and connect to the broker for every offering with
    /// `stomp_enabled` or `mqtt_enabled`. Offerings that fail are logged; the others go on.
    pub async fn start(offerings: &Offerings, metrics: Metrics, cancel: CancellationToken) -> Self {
        let mut handles = Vec::new();
        let mut consumers = Vec::new();
        let handlers = Arc::new(crate::watchdog::HandlerClock::default());
        let mut without_events = Vec::new();
        let started = Timestamp::now();
        for ctx in offerings.contexts().await {
            if !ctx.config.events_enabled() {
                continue;
            }
            // Replicas starting together race to create the offering's agent identity (its
            // name is unique): the loser's create fails, and the next try finds it.
            let mut outcome =
                agent_core::register_agent(&ctx, "event_process", "EventProcessor", started).await;
            for attempt in 1..=2u64 {
                if !matches!(outcome, RegistrationOutcome::Failed(_)) || cancel.is_cancelled() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                outcome =
                    agent_core::register_agent(&ctx, "event_process", "EventProcessor", started)
                        .await;
            }
            let registration = match outcome {
                RegistrationOutcome::Registered(r) => r,
                RegistrationOutcome::Unsupported => {
                    tracing::warn!(offering = %ctx.name(), "this Waldur has no agent identities or event subscriptions (an older Mastermind): the offering is polled at the order_process period instead");
                    without_events.push(ctx.name().to_owned());
                    continue;
                }
                other => {
                    tracing::error!(offering = %ctx.name(), outcome = ?other, "cannot register the agent identity; no event subscriptions for this offering: it is polled at the order_process period instead");
                    without_events.push(ctx.name().to_owned());
                    continue;
                }
            };
            // MQTT topics name a subscription per object type, so MQTT needs the per-type path.
            let prefer_unified = !ctx.config.mqtt_enabled;
            let (plans, report) =
                events::register_subscriptions(&ctx, &registration, prefer_unified).await;
            for e in &report.errors {
                tracing::warn!(offering = %ctx.name(), "{e}");
            }
            if plans.is_empty() {
                tracing::warn!(offering = %ctx.name(), "no event subscription could be registered: the offering is polled at the order_process period instead");
                without_events.push(ctx.name().to_owned());
            }
            let (tx, rx) = mpsc::channel(256);
            let unified = plans.iter().find(|p| p.unified).map(|p| p.queue.clone());
            let proxy = offerings.global_proxy();
            for mut config in source_configs(&ctx.config, &plans, proxy.as_deref()) {
                // MQTT brokers allow one connection per client id: replicas need their own.
                if let (Some(gate), EventSourceConfig::Mqtt(c)) = (&offerings.leases, &mut config) {
                    c.client_id = format!(
                        "{}-{}",
                        c.client_id,
                        crate::leases::dns_part(gate.identity())
                    );
                }
                tracing::info!(offering = %ctx.name(), source = %config.describe(), "listening for events");
                let is_unified = matches!(&config, EventSourceConfig::Stomp(c) if Some(&c.queue) == unified.as_ref());
                let handle = EventSource::spawn(config, tx.clone(), cancel.clone());
                if is_unified {
                    register_again_when_missing(
                        ctx.clone(),
                        registration.identity_uuid.clone(),
                        handle.status_receiver(),
                        cancel.clone(),
                    );
                }
                handles.push((ctx.name().to_owned(), handle));
            }
            drop(tx);
            let statuses = handles
                .iter()
                .filter(|(name, _)| name == ctx.name())
                .map(|(_, h)| h.status_receiver())
                .collect();
            catch_up_on_reconnect(ctx.clone(), statuses, cancel.clone());
            consumers.push(tokio::spawn(consume(
                ctx.clone(),
                rx,
                cancel.clone(),
                handlers.clone(),
                offerings.leases.clone(),
            )));
        }
        let listeners = EventListeners {
            handles,
            consumers,
            handlers,
            without_events,
        };
        listeners.watch_health(metrics, cancel);
        listeners
    }

    /// Publish the number of connected sources as a metric and log state changes.
    fn watch_health(&self, metrics: Metrics, cancel: CancellationToken) {
        let receivers: Vec<_> = self
            .handles
            .iter()
            .map(|(n, h)| (n.clone(), h.status_receiver()))
            .collect();
        if receivers.is_empty() {
            return;
        }
        tokio::spawn(async move {
            let mut last: Vec<Option<String>> = vec![None; receivers.len()];
            loop {
                let mut up = 0;
                for (i, (name, rx)) in receivers.iter().enumerate() {
                    let status = rx.borrow().clone();
                    if matches!(status, ConnectionStatus::Connected) {
                        up += 1;
                    }
                    let label = format!("{status:?}");
                    if last[i].as_deref() != Some(label.as_str()) {
                        tracing::info!(offering = %name, status = %label, "event connection");
                        last[i] = Some(label);
                    }
                }
                metrics.set_event_connections("all", up);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        });
    }

    /// Upstream 1.0.8's liveness rule over these listeners (see [`crate::watchdog`]).
    pub fn watchdog(&self) -> crate::watchdog::Watchdog {
        let sources = self
            .handles
            .iter()
            .map(|(name, h)| (name.clone(), h.status_receiver()))
            .collect();
        crate::watchdog::Watchdog::from_env(sources, self.handlers.clone())
    }

    pub async fn join(self) {
        for c in self.consumers {
            let _ = c.await;
        }
        for (_, h) in self.handles {
            h.join().await;
        }
    }
}

/// What an event is about: events with the same key are handled in arrival order, others
/// concurrently.
fn event_key(object_type: &str, body: &serde_json::Value) -> String {
    let field = |name: &str| body.get(name).and_then(serde_json::Value::as_str);
    let kind = body
        .get("object_type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(object_type);
    let id = match kind {
        "order" => field("marketplace_resource_uuid").or(field("order_uuid")),
        "resource" => field("resource_uuid"),
        "offering_user" => field("offering_user_uuid"),
        _ => field("resource_uuid").or(field("project_uuid")),
    };
    format!("{kind}:{}", id.unwrap_or(""))
}

/// Handle one offering's events: concurrently (at most `order_concurrency` at a time), in
/// arrival order per key (see [`event_key`]), each settled only after its handler finished. A
/// transient failure frees its place at once and goes back to the broker after a backoff, so
/// one failing order never holds up the offering's other events. On shutdown, handlers in hand
/// finish; queued events are handed back to the broker.
async fn consume(
    ctx: Arc<OfferingContext>,
    mut rx: mpsc::Receiver<agent_events::Event>,
    cancel: CancellationToken,
    clock: Arc<crate::watchdog::HandlerClock>,
    leases: Option<Arc<LeaseGate>>,
) {
    use std::collections::{HashMap, VecDeque};
    let limit = ctx.settings.order_concurrency.max(1);
    let mut queued: HashMap<String, VecDeque<agent_events::Event>> = HashMap::new();
    let mut failures: HashMap<String, u32> = HashMap::new();
    let mut running: tokio::task::JoinSet<(String, bool)> = tokio::task::JoinSet::new();

    let start = |running: &mut tokio::task::JoinSet<(String, bool)>,
                 failures: &HashMap<String, u32>,
                 key: String,
                 event: agent_events::Event| {
        let ctx = ctx.clone();
        let failed_before = failures.get(&key).copied().unwrap_or(0);
        let clock = clock.clone();
        // Leader election: only the holder of the offering's event_process Lease handles its
        // events; another replica hands the event back to the broker (after a pause, so the
        // holder gets it) and the holder's reconciliation pass covers whatever it missed.
        let work = match &leases {
            None => Ok(None),
            Some(gate) => gate
                .begin(Mode::EventProcess, &ctx.config.waldur_offering_uuid)
                .map(Some)
                .ok_or(()),
        };
        running.spawn(async move {
            let Ok(_work) = work else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = event.ack.nack() {
                    tracing::debug!(offering = %ctx.name(), error = %e, "event source gone; the broker redelivers the event");
                }
                return (key, true);
            };
            let _running = clock.start();
            let outcome = events::handle_event(
                &ctx,
                Some(event.object_type.as_str()).filter(|t| !t.is_empty()),
                &event.body,
            )
            .await;
            let ok = outcome.should_ack();
            if ok {
                if let Err(e) = event.ack.ack() {
                    tracing::warn!(offering = %ctx.name(), error = %e, "could not settle event; the broker will redeliver it");
                }
            } else {
                // Give the cause time to clear before the broker hands it back, without
                // holding a place: a timer settles it.
                let delay = agent_core::policy::retry_delay(failed_before + 1);
                let name = ctx.name().to_owned();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Err(e) = event.ack.nack() {
                        tracing::debug!(offering = %name, error = %e, "event source gone; the broker redelivers the event");
                    }
                });
            }
            (key, ok)
        });
    };

    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(done) = running.join_next(), if !running.is_empty() => {
                let Ok((key, ok)) = done else { continue };
                if ok {
                    failures.remove(&key);
                } else {
                    *failures.entry(key.clone()).or_default() += 1;
                }
                let next = queued.get_mut(&key).and_then(VecDeque::pop_front);
                match next {
                    Some(event) => start(&mut running, &failures, key, event),
                    None => { queued.remove(&key); }
                }
            }
            received = rx.recv(), if running.len() < limit => {
                let Some(event) = received else { break };
                let key = event_key(&event.object_type, &event.body);
                match queued.get_mut(&key) {
                    // Its key is in hand: it waits for the one before it.
                    Some(waiting) => waiting.push_back(event),
                    None => {
                        queued.insert(key.clone(), VecDeque::new());
                        start(&mut running, &failures, key, event);
                    }
                }
            }
        }
    }
    // Shutdown: queued events are dropped unsettled (the broker redelivers them); the handlers
    // in hand finish (the binary bounds how long it waits for them).
    drop(queued);
    while running.join_next().await.is_some() {}
}

/// Whether a failed (re)connect says the unified queue is gone: SUBSCRIBE answered `NOT_FOUND`
/// (upstream's test); RabbitMQ cancelled the subscription (what it sends when the queue is
/// deleted under a consumer); or web-stomp keeps closing the connection right after SUBSCRIBE,
/// which is how RabbitMQ 3.x answers a missing queue over WebSocket (the ERROR frame is often
/// lost with the close). Registering again is idempotent, so a false alarm costs one request.
fn queue_looks_missing(last_error: &str, attempt: u32) -> bool {
    let e = last_error.to_ascii_lowercase();
    e.contains("not_found")
        || e.contains("cancelled subscription")
        || e.contains("canceled a subscription")
        || (attempt >= 2 && e.contains("connection closed"))
}

/// The broker has no unified queue any more (SUBSCRIBE answered `NOT_FOUND`: deleted by an
/// operator, or lost with the broker's data): register it again, which makes Waldur declare it
/// (upstream 1.0.8 does the same on the ERROR frame); the source's next reconnect subscribes.
fn register_again_when_missing(
    ctx: Arc<OfferingContext>,
    identity_uuid: String,
    mut status: tokio::sync::watch::Receiver<ConnectionStatus>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = status.changed() => if changed.is_err() { return },
            }
            let now = status.borrow_and_update().clone();
            let ConnectionStatus::Reconnecting {
                last_error,
                attempt,
            } = now
            else {
                continue;
            };
            if !queue_looks_missing(&last_error, attempt) {
                continue;
            }
            tracing::warn!(offering = %ctx.name(), error = %last_error, "the broker has no event queue for this agent; registering it again");
            match events::register_unified_queue(
                &ctx,
                &identity_uuid,
                &events::subscribed_types(&ctx),
            )
            .await
            {
                Ok(plan) => {
                    tracing::info!(offering = %ctx.name(), queue = %plan.queue, "event queue registered again")
                }
                Err(e) => {
                    tracing::warn!(offering = %ctx.name(), error = %e, "cannot register the event queue again; retried on the next failed reconnect")
                }
            }
        }
    });
}

/// Run the reconciliation pass for an offering whenever one of its event connections comes back
/// after being lost, so what happened while the broker was away is done at once instead of at
/// the next periodic sweep. Reconnects of several sources close together trigger one pass.
fn catch_up_on_reconnect(
    ctx: Arc<OfferingContext>,
    statuses: Vec<tokio::sync::watch::Receiver<ConnectionStatus>>,
    cancel: CancellationToken,
) {
    let wanted = Arc::new(tokio::sync::Notify::new());
    for mut status in statuses {
        let wanted = wanted.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut was_connected = false;
            let mut lost = false;
            loop {
                let now = status.borrow_and_update().clone();
                match now {
                    ConnectionStatus::Connected => {
                        if was_connected && lost {
                            wanted.notify_one();
                        }
                        was_connected = true;
                        lost = false;
                    }
                    ConnectionStatus::Stopped => return,
                    _ => lost = was_connected,
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    changed = status.changed() => if changed.is_err() { return },
                }
            }
        });
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = wanted.notified() => {}
            }
            // Let the other sources of the offering come back too.
            tokio::time::sleep(Duration::from_secs(1)).await;
            tracing::info!(offering = %ctx.name(), "event connection restored: catching up with a reconciliation pass");
            let report = reconcile(&ctx).await;
            tracing::info!(offering = %ctx.name(), processed = report.processed, failed = report.failed, "catch-up pass finished");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_lost_queue_is_recognised_from_what_rabbitmq_answers() {
        assert!(queue_looks_missing("broker error: message: not_found", 1));
        assert!(queue_looks_missing(
            "broker error: Server cancelled subscription (The server has canceled a subscription.)",
            1
        ));
        assert!(queue_looks_missing("connection closed", 2));
        assert!(!queue_looks_missing("connection closed", 1));
        assert!(!queue_looks_missing("connection refused", 5));
    }

    #[test]
    fn events_of_one_resource_share_a_key_and_others_do_not() {
        let a = event_key(
            "order",
            &json!({"order_uuid": "o1", "marketplace_resource_uuid": "r1"}),
        );
        let b = event_key(
            "order",
            &json!({"order_uuid": "o2", "marketplace_resource_uuid": "r1"}),
        );
        let c = event_key("order", &json!({"order_uuid": "o3"}));
        let d = event_key(
            "",
            &json!({"object_type": "user_role", "project_uuid": "p1"}),
        );
        let e = event_key("user_role", &json!({"project_uuid": "p2"}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(d, e);
        assert_eq!(d, "user_role:p1");
    }
}
