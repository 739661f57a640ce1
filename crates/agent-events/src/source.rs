//! The reconnecting event source task (STOMP and MQTT).

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff::jittered_backoff;
use crate::config::{
    EventSourceConfig, MqttSourceConfig, MqttTransport, StompSourceConfig, object_type_from_queue,
    object_type_from_topic,
};
use crate::event::{AckHandle, AckRequest, AckToken, Event};

/// Health of one source's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionStatus {
    /// First connection attempt in progress.
    Connecting,
    /// Connected and subscribed: events flow.
    Connected,
    /// Lost or never established; `attempt` counts failures since the last good connection.
    Reconnecting { attempt: u32, last_error: String },
    /// Cancelled, or the consumer dropped its receiver.
    Stopped,
}

/// Counters of one source.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub delivered: AtomicU64,
    /// Bodies that were not JSON: logged and acked away.
    pub malformed: AtomicU64,
    pub connections: AtomicU64,
}

/// Handle to a running source.
#[derive(Debug)]
pub struct EventSourceHandle {
    status: watch::Receiver<ConnectionStatus>,
    stats: Arc<SourceStats>,
    task: tokio::task::JoinHandle<()>,
}

impl EventSourceHandle {
    pub fn status(&self) -> ConnectionStatus {
        self.status.borrow().clone()
    }

    /// Subscribe to status changes (e.g. for the health endpoint).
    pub fn status_receiver(&self) -> watch::Receiver<ConnectionStatus> {
        self.status.clone()
    }

    pub fn stats(&self) -> &SourceStats {
        &self.stats
    }

    pub fn malformed_count(&self) -> u64 {
        self.stats.malformed.load(Ordering::Relaxed)
    }

    pub fn delivered_count(&self) -> u64 {
        self.stats.delivered.load(Ordering::Relaxed)
    }

    /// Waits until the source has stopped (after cancellation).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Starts an event source.
pub struct EventSource;

impl EventSource {
    /// Spawns the source on the current tokio runtime. Events go to `events`; it runs until
    /// `cancel` fires or `events` is closed, reconnecting with jittered exponential backoff.
    pub fn spawn(
        config: EventSourceConfig,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) -> EventSourceHandle {
        let (status_tx, status_rx) = watch::channel(ConnectionStatus::Connecting);
        let stats = Arc::new(SourceStats::default());
        let runner = Runner {
            events,
            cancel,
            status: status_tx,
            stats: stats.clone(),
            generation: 0,
        };
        let task = tokio::spawn(runner.run(config));
        EventSourceHandle {
            status: status_rx,
            stats,
            task,
        }
    }
}

enum SessionEnd {
    /// Cancelled or consumer gone: stop for good.
    Stop,
    /// Connection lost after having worked.
    Lost(String),
    /// Could not connect or subscribe.
    Failed(String),
    /// Reconnect now without backoff (MQTT NACK: get unacked messages redelivered).
    Redeliver,
}

struct Runner {
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
    status: watch::Sender<ConnectionStatus>,
    stats: Arc<SourceStats>,
    generation: u64,
}

impl Runner {
    async fn run(mut self, config: EventSourceConfig) {
        let describe = config.describe();
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<AckRequest>();
        let mut failures: u32 = 0;
        loop {
            self.generation += 1;
            let end = match &config {
                EventSourceConfig::Stomp(c) => self.stomp_session(c, &ack_tx, &mut ack_rx).await,
                EventSourceConfig::Mqtt(c) => self.mqtt_session(c, &ack_tx, &mut ack_rx).await,
            };
            let last_error = match end {
                SessionEnd::Stop => break,
                SessionEnd::Redeliver => continue,
                SessionEnd::Lost(e) => {
                    failures = 0;
                    tracing::warn!(source = %describe, error = %e, "event connection lost, reconnecting");
                    e
                }
                SessionEnd::Failed(e) => {
                    tracing::warn!(source = %describe, error = %e, attempt = failures + 1, "event connection failed");
                    e
                }
            };
            let delay = jittered_backoff(failures);
            failures = failures.saturating_add(1);
            self.status.send_replace(ConnectionStatus::Reconnecting {
                attempt: failures,
                last_error,
            });
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.status.send_replace(ConnectionStatus::Stopped);
        tracing::info!(source = %describe, "event source stopped");
    }

    /// Parses one message into an event. Malformed JSON is logged, counted and acked away so
    /// it never blocks the queue.
    fn prepare(
        &self,
        object_type: Option<String>,
        raw: Bytes,
        origin: &str,
        redelivered: bool,
        ack: AckHandle,
    ) -> Option<Event> {
        let body: serde_json::Value = match serde_json::from_slice(&raw) {
            Ok(body) => body,
            Err(e) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(origin, error = %e, bytes = raw.len(), "dropping event with malformed JSON body");
                let _ = ack.ack();
                return None;
            }
        };
        let object_type = object_type
            .or_else(|| {
                body.get("object_type")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        Some(Event {
            object_type,
            body,
            raw,
            origin: origin.to_owned(),
            redelivered,
            ack,
        })
    }

    async fn stomp_session(
        &mut self,
        config: &StompSourceConfig,
        ack_tx: &mpsc::UnboundedSender<AckRequest>,
        ack_rx: &mut mpsc::UnboundedReceiver<AckRequest>,
    ) -> SessionEnd {
        let mut options = match stomp::ConnectOptions::websocket(&config.url()) {
            Ok(o) => o
                .vhost(config.vhost.clone())
                .credentials(config.login.clone(), config.passcode.clone())
                .heartbeat(config.heartbeat, config.heartbeat),
            Err(e) => return SessionEnd::Failed(e.to_string()),
        };
        if let Some(raw) = config.proxy.as_deref().filter(|p| !p.trim().is_empty()) {
            match stomp::Proxy::parse(raw) {
                Ok(stomp::ParsedProxy::Tunnel(proxy)) => options = options.proxy(proxy),
                // Warned about when the configuration is loaded.
                Ok(stomp::ParsedProxy::HttpsOnly) => {}
                Err(e) => return SessionEnd::Failed(e.to_string()),
            }
        }
        let destination = config.destination();
        let connect = async {
            let (client, messages) = stomp::StompClient::connect(options).await?;
            let prefetch = config.prefetch.map(|p| p.to_string());
            let mut extra = Vec::new();
            if let Some(p) = &prefetch {
                extra.push(("prefetch-count", p.as_str()));
            }
            client
                .subscribe_with_headers(
                    &destination,
                    &config.queue,
                    stomp::AckMode::ClientIndividual,
                    &extra,
                )
                .await?;
            Ok::<_, stomp::StompError>((client, messages))
        };
        let (client, mut messages) = tokio::select! {
            _ = self.cancel.cancelled() => return SessionEnd::Stop,
            result = connect => match result {
                Ok(pair) => pair,
                Err(e) => return SessionEnd::Failed(e.to_string()),
            },
        };
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        self.status.send_replace(ConnectionStatus::Connected);
        tracing::info!(destination, "subscribed to STOMP queue");
        let fixed_type = config
            .object_type
            .clone()
            .or_else(|| object_type_from_queue(&config.queue).map(str::to_owned));
        let use_payload_type = config.object_type.is_none() && config.destination.is_some();

        // Events wait here while the consumer is busy, so the connection keeps being serviced
        // (acks, heart-beats); the broker's prefetch bounds how many pile up.
        let mut pending: VecDeque<Event> = VecDeque::new();
        let end = loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break SessionEnd::Stop,
                permit = self.events.reserve(), if !pending.is_empty() => match (permit, pending.pop_front()) {
                    (Ok(permit), Some(event)) => {
                        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                        permit.send(event);
                    }
                    (Err(_), _) => break SessionEnd::Stop,
                    (Ok(_), None) => {}
                },
                request = ack_rx.recv() => {
                    let Some(request) = request else { break SessionEnd::Stop };
                    self.settle_stomp(&client, request);
                }
                message = messages.recv() => match message {
                    Some(Ok(message)) => {
                        let Some(ack_id) = message.ack_id.clone() else {
                            break SessionEnd::Lost("MESSAGE without ack header".into());
                        };
                        let ack = AckHandle::new(ack_tx.clone(), self.generation, AckToken::Stomp(ack_id));
                        let object_type = if use_payload_type { None } else { fixed_type.clone() };
                        let redelivered = message.redelivered();
                        pending.extend(self.prepare(object_type, message.body, &message.destination, redelivered, ack));
                    }
                    Some(Err(e)) => break SessionEnd::Lost(e.to_string()),
                    None => break SessionEnd::Lost("connection closed".into()),
                },
            }
        };
        if matches!(end, SessionEnd::Stop) {
            // Settle what the consumer already decided before leaving.
            while let Ok(request) = ack_rx.try_recv() {
                self.settle_stomp(&client, request);
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), client.disconnect()).await;
        }
        end
    }

    fn settle_stomp(&self, client: &stomp::StompClient, request: AckRequest) {
        // Acks for an earlier connection are void: the broker already requeued those messages.
        if request.generation != self.generation {
            return;
        }
        if let AckToken::Stomp(id) = request.token {
            let result = if request.positive {
                client.ack_id(&id)
            } else {
                client.nack_id(&id)
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "could not settle STOMP message; it will be redelivered");
            }
        }
    }

    async fn mqtt_session(
        &mut self,
        config: &MqttSourceConfig,
        ack_tx: &mpsc::UnboundedSender<AckRequest>,
        ack_rx: &mut mpsc::UnboundedReceiver<AckRequest>,
    ) -> SessionEnd {
        use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS, Transport};

        let broker = match config.transport {
            MqttTransport::Tcp => config.host.clone(),
            MqttTransport::WebSocket => config.websocket_url(),
        };
        let mut options = MqttOptions::new(config.client_id.clone(), broker, config.port);
        options
            .set_keep_alive(config.keep_alive)
            .set_clean_session(false)
            .set_manual_acks(true);
        if let Some(user) = &config.username {
            let password = config
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default();
            options.set_credentials(user.clone(), password);
        }
        let tls = if config.tls {
            match stomp::default_tls_config() {
                Ok(c) => Some(rumqttc::TlsConfiguration::Rustls(c)),
                Err(e) => return SessionEnd::Failed(e.to_string()),
            }
        } else {
            None
        };
        options.set_transport(match (config.transport, tls) {
            (MqttTransport::Tcp, None) => Transport::Tcp,
            (MqttTransport::Tcp, Some(tls)) => Transport::Tls(tls),
            (MqttTransport::WebSocket, None) => Transport::Ws,
            (MqttTransport::WebSocket, Some(tls)) => Transport::Wss(tls),
        });
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let topics = config.topics();
        let mut connected = false;
        let mut pending_subacks = 0usize;
        let mut nacked = false;

        // See stomp_session: keep polling (keep-alive, PUBACKs) while the consumer is busy;
        // the broker's in-flight window bounds the queue.
        let mut pending: VecDeque<Event> = VecDeque::new();
        let end = loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break SessionEnd::Stop,
                permit = self.events.reserve(), if !pending.is_empty() => match (permit, pending.pop_front()) {
                    (Ok(permit), Some(event)) => {
                        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                        permit.send(event);
                    }
                    (Err(_), _) => break SessionEnd::Stop,
                    (Ok(_), None) => {}
                },
                request = ack_rx.recv() => {
                    let Some(request) = request else { break SessionEnd::Stop };
                    if request.generation != self.generation { continue; }
                    if let AckToken::Mqtt(publish) = request.token {
                        if request.positive {
                            if let Err(e) = client.try_ack(&publish) {
                                tracing::debug!(error = %e, "could not queue MQTT PUBACK");
                            }
                        } else {
                            nacked = true;
                        }
                    }
                    if nacked {
                        // MQTT has no NACK: withhold the PUBACK and reconnect the persistent
                        // session so the broker redelivers it.
                        break SessionEnd::Redeliver;
                    }
                }
                polled = eventloop.poll() => match polled {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        let filters = topics.iter().map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
                        pending_subacks = 1;
                        if let Err(e) = client.try_subscribe_many(filters) {
                            break SessionEnd::Failed(e.to_string());
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::SubAck(ack))) => {
                        if ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                            break SessionEnd::Failed(format!("broker refused subscription to {topics:?}"));
                        }
                        pending_subacks = pending_subacks.saturating_sub(1);
                        if pending_subacks == 0 && !connected {
                            connected = true;
                            self.stats.connections.fetch_add(1, Ordering::Relaxed);
                            self.status.send_replace(ConnectionStatus::Connected);
                            tracing::info!(?topics, "subscribed to MQTT topics");
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(publish))) => {
                        let object_type = object_type_from_topic(&publish.topic).map(str::to_owned);
                        let raw = publish.payload.clone();
                        let origin = publish.topic.clone();
                        let redelivered = publish.dup;
                        let token = if publish.qos == QoS::AtMostOnce {
                            AckToken::Unackable
                        } else {
                            AckToken::Mqtt(Box::new(publish))
                        };
                        let ack = AckHandle::new(ack_tx.clone(), self.generation, token);
                        pending.extend(self.prepare(object_type, raw, &origin, redelivered, ack));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let message = e.to_string();
                        break if connected { SessionEnd::Lost(message) } else { SessionEnd::Failed(message) };
                    }
                },
            }
        };
        if matches!(end, SessionEnd::Stop) {
            while let Ok(request) = ack_rx.try_recv() {
                if let (true, true, AckToken::Mqtt(publish)) = (
                    request.generation == self.generation,
                    request.positive,
                    &request.token,
                ) {
                    let _ = client.try_ack(publish);
                }
            }
            let _ = client.try_disconnect();
            // Drive the event loop so queued PUBACKs and DISCONNECT reach the broker.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while eventloop.poll().await.is_ok() {}
            })
            .await;
        }
        if matches!(end, SessionEnd::Redeliver) {
            // Flush PUBACKs queued before the NACK, then drop the connection.
            let _ = tokio::time::timeout(Duration::from_millis(300), async {
                while eventloop.poll().await.is_ok() {}
            })
            .await;
        }
        end
    }
}
