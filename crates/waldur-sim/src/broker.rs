//! Broker side of the event bus (§7): RabbitMQ provisioning through the management HTTP API
//! (vhosts, users, permissions, queues — what Mastermind does on `register_event_subscription`,
//! `create_queue` and `register_queue`) and the background publishers that push every
//! [`Delivery`] to RabbitMQ over STOMP and to an MQTT broker.
//!
//! Publishing never blocks a request handler: each publisher owns a bounded channel and a task;
//! a full channel or a failed send is logged and counted ([`PublishCounters`]), never fatal.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::events::{Delivery, EventSink};

/// Capacity of each publisher's queue; beyond it deliveries are dropped (and counted).
const PUBLISH_QUEUE_CAPACITY: usize = 10_000;

/// Queue arguments Mastermind declares on both subscription paths (§7.1).
pub fn queue_arguments() -> Value {
    json!({
        "x-message-ttl": 3_600_000,
        "x-max-length": 10_000,
        "x-overflow": "reject-publish-dlx",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "waldur.dlq.messages",
    })
}

/// Headers of every STOMP SEND (§7.1).
const STOMP_HEADERS: &[(&str, &str)] = &[
    ("persistent", "true"),
    ("durable", "true"),
    ("auto-delete", "false"),
    ("content-type", "application/json"),
    ("expiration", "3600000"),
];

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid broker setting {what}: {reason}")]
    Config { what: &'static str, reason: String },
    #[error("RabbitMQ management API {method} {path}: {reason}")]
    Management {
        method: &'static str,
        path: String,
        reason: String,
    },
}

/// Where events go. Every field is optional; without any, events are only logged.
/// Settable from flags (`--rabbitmq-admin`, `--stomp`, `--stomp-ws`, `--mqtt`, `--mqtt-ws`) or
/// from the seed file's `brokers:` section (same names, snake_case).
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BrokerOptions {
    /// RabbitMQ management API, credentials in the URL: `http://waldur:waldur@127.0.0.1:15672`.
    /// Its user is also the one the STOMP publisher logs in as (Mastermind's `RABBITMQ.USER`).
    #[serde(default)]
    pub rabbitmq_admin: Option<String>,
    /// RabbitMQ STOMP `HOST:PORT` the simulator publishes to.
    #[serde(default)]
    pub stomp: Option<String>,
    /// Web-STOMP URL advertised to agents (default `ws://<stomp host>:15674/ws`).
    #[serde(default)]
    pub stomp_ws: Option<String>,
    /// MQTT broker `[USER:PASSWORD@]HOST:PORT` the simulator publishes to.
    #[serde(default)]
    pub mqtt: Option<String>,
    /// MQTT-over-WebSocket URL advertised to agents.
    #[serde(default)]
    pub mqtt_ws: Option<String>,
}

impl std::fmt::Debug for BrokerOptions {
    // The admin URL and the MQTT address may carry passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerOptions")
            .field(
                "rabbitmq_admin",
                &self.rabbitmq_admin.as_ref().map(|_| "***"),
            )
            .field("stomp", &self.stomp)
            .field("stomp_ws", &self.stomp_ws)
            .field("mqtt", &self.mqtt.as_ref().map(|m| redact_userinfo(m)))
            .field("mqtt_ws", &self.mqtt_ws)
            .finish()
    }
}

impl BrokerOptions {
    /// Fields set in `other` win (flags over seed file).
    pub fn overridden_by(self, other: BrokerOptions) -> BrokerOptions {
        BrokerOptions {
            rabbitmq_admin: other.rabbitmq_admin.or(self.rabbitmq_admin),
            stomp: other.stomp.or(self.stomp),
            stomp_ws: other.stomp_ws.or(self.stomp_ws),
            mqtt: other.mqtt.or(self.mqtt),
            mqtt_ws: other.mqtt_ws.or(self.mqtt_ws),
        }
    }

    pub fn is_empty(&self) -> bool {
        self == &BrokerOptions::default()
    }
}

fn redact_userinfo(s: &str) -> String {
    match s.rsplit_once('@') {
        Some((_, rest)) => format!("***@{rest}"),
        None => s.to_string(),
    }
}

/// A password that never shows in Debug output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `HOST:PORT` with optional `USER:PASSWORD@` in front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, Password)>,
}

impl HostPort {
    pub fn parse(what: &'static str, raw: &str) -> Result<HostPort, BrokerError> {
        let err = |reason: &str| BrokerError::Config {
            what,
            reason: format!("{reason} (expected [USER:PASSWORD@]HOST:PORT)"),
        };
        let (credentials, addr) = match raw.rsplit_once('@') {
            Some((userinfo, addr)) => {
                let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((u.to_string(), Password::new(p))), addr)
            }
            None => (None, raw),
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| err("no port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(err("empty host"));
        }
        let port = port.parse::<u16>().map_err(|_| err("bad port"))?;
        Ok(HostPort {
            host: host.to_string(),
            port,
            credentials,
        })
    }
}

/// Host, port and path of a `ws://`/`wss://` URL, as an agent's config wants them.
pub fn ws_parts(what: &'static str, raw: &str) -> Result<(String, u16, String), BrokerError> {
    let url = url::Url::parse(raw).map_err(|e| BrokerError::Config {
        what,
        reason: e.to_string(),
    })?;
    let host = url.host_str().ok_or_else(|| BrokerError::Config {
        what,
        reason: "URL without host".into(),
    })?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| BrokerError::Config {
            what,
            reason: "URL without port".into(),
        })?;
    Ok((host.to_string(), port, url.path().to_string()))
}

// ---- management API ------------------------------------------------------------------------

/// Client of RabbitMQ's management HTTP API (`rabbitmq_management`).
#[derive(Clone)]
pub struct RabbitAdmin {
    http: reqwest::Client,
    base: url::Url,
    user: String,
    password: Password,
}

impl std::fmt::Debug for RabbitAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitAdmin")
            .field("base", &self.base.as_str())
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

impl RabbitAdmin {
    /// `http://USER:PASSWORD@HOST:15672` (no credentials: guest/guest, RabbitMQ's default).
    pub fn new(raw: &str) -> Result<RabbitAdmin, BrokerError> {
        let cfg = |reason: String| BrokerError::Config {
            what: "rabbitmq_admin",
            reason,
        };
        let mut base = url::Url::parse(raw).map_err(|e| cfg(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(cfg("expected an http(s):// URL with a host".into()));
        }
        let decode =
            |s: &str| percent_decode(s).map_err(|_| cfg("credentials are not valid UTF-8".into()));
        let (user, password) = if base.username().is_empty() {
            ("guest".to_string(), "guest".to_string())
        } else {
            (
                decode(base.username())?,
                decode(base.password().unwrap_or(""))?,
            )
        };
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| cfg(format!("HTTP client: {e}")))?;
        Ok(RabbitAdmin {
            http,
            base,
            user,
            password: Password::new(password),
        })
    }

    /// The admin user: the STOMP publisher logs in as it, and it gets rights on every vhost.
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> &Password {
        &self.password
    }

    fn url(&self, segments: &[&str]) -> url::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("api").extend(segments);
        }
        url
    }

    async fn call(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<Value>,
    ) -> Result<reqwest::StatusCode, BrokerError> {
        let url = self.url(segments);
        let method_name: &'static str = match method.as_str() {
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            _ => "GET",
        };
        let err = |reason: String| BrokerError::Management {
            method: method_name,
            path: url.path().to_string(),
            reason,
        };
        let mut req = self
            .http
            .request(method, url.clone())
            .basic_auth(&self.user, Some(self.password.expose()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(status);
        }
        let text = resp.text().await.unwrap_or_default();
        Err(err(format!("HTTP {status}: {}", text.trim())))
    }

    async fn put(&self, segments: &[&str], body: Value) -> Result<(), BrokerError> {
        let status = self
            .call(reqwest::Method::PUT, segments, Some(body))
            .await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(BrokerError::Management {
                method: "PUT",
                path: segments.join("/"),
                reason: "HTTP 404 (does the vhost exist?)".into(),
            });
        }
        Ok(())
    }

    /// DELETE; a missing object is fine (the goal is that it is gone).
    async fn delete(&self, segments: &[&str]) -> Result<(), BrokerError> {
        self.call(reqwest::Method::DELETE, segments, None)
            .await
            .map(|_| ())
    }

    pub async fn ensure_vhost(&self, vhost: &str) -> Result<(), BrokerError> {
        self.put(&["vhosts", vhost], json!({})).await
    }

    pub async fn delete_vhost(&self, vhost: &str) -> Result<(), BrokerError> {
        self.delete(&["vhosts", vhost]).await
    }

    /// Creates the user or resets its password.
    pub async fn put_user(&self, name: &str, password: &str) -> Result<(), BrokerError> {
        self.put(&["users", name], json!({"password": password, "tags": ""}))
            .await
    }

    pub async fn user_exists(&self, name: &str) -> Result<bool, BrokerError> {
        let status = self
            .call(reqwest::Method::GET, &["users", name], None)
            .await?;
        Ok(status != reqwest::StatusCode::NOT_FOUND)
    }

    pub async fn delete_user(&self, name: &str) -> Result<(), BrokerError> {
        self.delete(&["users", name]).await
    }

    /// Full rights for `user` on `vhost`.
    pub async fn grant(&self, vhost: &str, user: &str) -> Result<(), BrokerError> {
        self.put(
            &["permissions", vhost, user],
            json!({"configure": ".*", "write": ".*", "read": ".*"}),
        )
        .await
    }

    /// Declares the durable queue with Mastermind's arguments (idempotent).
    pub async fn declare_queue(&self, vhost: &str, name: &str) -> Result<(), BrokerError> {
        self.put(
            &["queues", vhost, name],
            json!({"durable": true, "auto_delete": false, "arguments": queue_arguments()}),
        )
        .await
    }

    pub async fn delete_queue(&self, vhost: &str, name: &str) -> Result<(), BrokerError> {
        self.delete(&["queues", vhost, name]).await
    }

    /// What a new subscription or unified queue needs: the vhost, the RMQ user with the caller's
    /// token as password, and rights on the vhost for it and for the admin (the publisher).
    pub async fn provision_user(
        &self,
        vhost: &str,
        rmq_user: &str,
        password: &str,
    ) -> Result<(), BrokerError> {
        self.ensure_vhost(vhost).await?;
        self.put_user(rmq_user, password).await?;
        self.grant(vhost, rmq_user).await?;
        self.grant(vhost, &self.user).await
    }
}

fn percent_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
}

// ---- publishers ----------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Counters {
    stomp_sent: AtomicU64,
    stomp_failed: AtomicU64,
    mqtt_sent: AtomicU64,
    mqtt_failed: AtomicU64,
    dropped: AtomicU64,
}

/// How publishing went so far (`GET /__sim/stats` → `publishing`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PublishCounters {
    /// STOMP SENDs the broker confirmed with a RECEIPT.
    pub stomp_sent: u64,
    pub stomp_failed: u64,
    /// MQTT PUBLISHes (QoS 1) the broker acknowledged.
    pub mqtt_sent: u64,
    pub mqtt_failed: u64,
    /// Deliveries dropped because a publisher's queue was full.
    pub dropped: u64,
}

/// Shared counters of all publishers of one simulator.
#[derive(Debug, Clone, Default)]
pub struct PublishStats(Arc<Counters>);

impl PublishStats {
    pub fn snapshot(&self) -> PublishCounters {
        let c = &self.0;
        PublishCounters {
            stomp_sent: c.stomp_sent.load(Ordering::Relaxed),
            stomp_failed: c.stomp_failed.load(Ordering::Relaxed),
            mqtt_sent: c.mqtt_sent.load(Ordering::Relaxed),
            mqtt_failed: c.mqtt_failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Where and as whom the STOMP publisher connects.
#[derive(Debug, Clone)]
pub struct StompTarget {
    pub host: String,
    pub port: u16,
    pub login: String,
    pub passcode: Password,
}

/// Publishes every delivery to `destination` in its vhost over STOMP (TCP), one connection per
/// vhost, reconnecting when a connection broke.
pub struct StompPublisher {
    tx: mpsc::Sender<Delivery>,
    stats: PublishStats,
}

impl StompPublisher {
    /// Spawns the publishing task on the current Tokio runtime.
    pub fn spawn(target: StompTarget, stats: PublishStats) -> StompPublisher {
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE_CAPACITY);
        tokio::spawn(stomp_loop(rx, target, stats.clone()));
        StompPublisher { tx, stats }
    }
}

impl EventSink for StompPublisher {
    fn publish(&self, delivery: &Delivery) {
        if self.tx.try_send(delivery.clone()).is_err() {
            bump(&self.stats.0.dropped);
            tracing::warn!(queue = %delivery.queue_name, "STOMP publish queue full: event dropped");
        }
    }
}

struct StompConnection {
    client: stomp::StompClient,
    // Held so the session keeps a live receiver; a publisher never reads MESSAGEs.
    _messages: stomp::MessageStream,
}

async fn stomp_loop(mut rx: mpsc::Receiver<Delivery>, target: StompTarget, stats: PublishStats) {
    let mut connections: HashMap<String, StompConnection> = HashMap::new();
    while let Some(delivery) = rx.recv().await {
        let body = match serde_json::to_vec(&delivery.payload) {
            Ok(b) => b,
            Err(e) => {
                bump(&stats.0.stomp_failed);
                tracing::warn!(error = %e, "event payload does not serialize");
                continue;
            }
        };
        // A broken connection gets one fresh attempt.
        let mut last_error = None;
        for _attempt in 0..2 {
            let stale = connections
                .get(&delivery.vhost)
                .is_none_or(|c| c.client.is_closed());
            if stale {
                connections.remove(&delivery.vhost);
                let options = stomp::ConnectOptions::tcp(target.host.clone(), target.port)
                    .vhost(delivery.vhost.clone())
                    .credentials(target.login.clone(), target.passcode.expose().to_string());
                match stomp::StompClient::connect(options).await {
                    Ok((client, messages)) => {
                        connections.insert(
                            delivery.vhost.clone(),
                            StompConnection {
                                client,
                                _messages: messages,
                            },
                        );
                    }
                    Err(e) => {
                        last_error = Some(format!("connect: {e}"));
                        continue;
                    }
                }
            }
            let Some(conn) = connections.get(&delivery.vhost) else {
                continue;
            };
            match conn
                .client
                .send(&delivery.destination, STOMP_HEADERS, body.clone())
                .await
            {
                Ok(()) => {
                    last_error = None;
                    break;
                }
                Err(e) => {
                    last_error = Some(format!("send: {e}"));
                    connections.remove(&delivery.vhost);
                }
            }
        }
        match last_error {
            None => {
                bump(&stats.0.stomp_sent);
                tracing::debug!(destination = %delivery.destination, vhost = %delivery.vhost, "event published over STOMP");
            }
            Some(error) => {
                bump(&stats.0.stomp_failed);
                tracing::warn!(
                    destination = %delivery.destination,
                    vhost = %delivery.vhost,
                    %error,
                    failures = stats.0.stomp_failed.load(Ordering::Relaxed),
                    "STOMP publish failed; event not delivered"
                );
            }
        }
    }
    for (_, c) in connections {
        let _ = c.client.disconnect().await;
    }
}

/// Publishes legacy-path deliveries to their MQTT topic at QoS 1 over one connection
/// (rumqttc reconnects on its own when polled).
pub struct MqttPublisher {
    tx: mpsc::Sender<(String, Vec<u8>)>,
    stats: PublishStats,
}

impl MqttPublisher {
    pub fn spawn(target: HostPort, stats: PublishStats) -> MqttPublisher {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let (tx, mut rx) = mpsc::channel::<(String, Vec<u8>)>(PUBLISH_QUEUE_CAPACITY);
        let client_id = format!("waldur-sim-{}", uuid::Uuid::new_v4().simple());
        let mut options = MqttOptions::new(client_id, target.host.clone(), target.port);
        options.set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = &target.credentials {
            options.set_credentials(user.clone(), password.expose().to_string());
        }
        let (client, mut event_loop) = AsyncClient::new(options, 1_000);
        let loop_stats = stats.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                match event_loop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => bump(&loop_stats.0.mqtt_sent),
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        failing = false;
                        tracing::info!(host = %target.host, port = target.port, "MQTT publisher connected");
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, host = %target.host, port = target.port, "MQTT publisher connection failed; retrying");
                        }
                        failing = true;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        let send_stats = stats.clone();
        tokio::spawn(async move {
            while let Some((topic, body)) = rx.recv().await {
                if let Err(e) = client
                    .publish(topic.clone(), QoS::AtLeastOnce, false, body)
                    .await
                {
                    bump(&send_stats.0.mqtt_failed);
                    tracing::warn!(%topic, error = %e, "MQTT publish failed");
                }
            }
            let _ = client.disconnect().await;
        });
        MqttPublisher { tx, stats }
    }
}

impl EventSink for MqttPublisher {
    fn publish(&self, delivery: &Delivery) {
        let Some(topic) = &delivery.mqtt_topic else {
            return;
        };
        let body = match serde_json::to_vec(&delivery.payload) {
            Ok(b) => b,
            Err(e) => {
                bump(&self.stats.0.mqtt_failed);
                tracing::warn!(error = %e, "event payload does not serialize");
                return;
            }
        };
        if self.tx.try_send((topic.clone(), body)).is_err() {
            bump(&self.stats.0.dropped);
            tracing::warn!(%topic, "MQTT publish queue full: event dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses_with_and_without_credentials() {
        let hp = HostPort::parse("mqtt", "127.0.0.1:1883").expect("valid");
        assert_eq!((hp.host.as_str(), hp.port), ("127.0.0.1", 1883));
        assert!(hp.credentials.is_none());
        let hp = HostPort::parse("mqtt", "u:p@broker:8883").expect("valid");
        assert_eq!(hp.host, "broker");
        let (u, p) = hp.credentials.expect("credentials");
        assert_eq!((u.as_str(), p.expose()), ("u", "p"));
        assert!(HostPort::parse("mqtt", "broker").is_err());
        assert!(HostPort::parse("mqtt", ":1883").is_err());
        assert!(HostPort::parse("mqtt", "h:99999").is_err());
    }

    #[test]
    fn admin_url_splits_credentials_and_hides_them() {
        let a = RabbitAdmin::new("http://waldur:s%40cret@127.0.0.1:15672").expect("valid");
        assert_eq!(a.user(), "waldur");
        assert_eq!(a.password().expose(), "s@cret");
        assert_eq!(
            a.url(&["queues", "v/h", "q"]).as_str(),
            "http://127.0.0.1:15672/api/queues/v%2Fh/q"
        );
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("s@cret") && !dbg.contains("cret"), "{dbg}");
        assert!(RabbitAdmin::new("ftp://x").is_err());
        let guest = RabbitAdmin::new("http://localhost:15672/").expect("valid");
        assert_eq!(guest.user(), "guest");
    }

    #[test]
    fn options_debug_hides_passwords_and_flags_override_seed() {
        let seed = BrokerOptions {
            rabbitmq_admin: Some("http://a:topsecret@h:15672".into()),
            mqtt: Some("u:mqttpw@h:1883".into()),
            stomp: Some("seed:61613".into()),
            ..Default::default()
        };
        let dbg = format!("{seed:?}");
        assert!(
            !dbg.contains("topsecret") && !dbg.contains("mqttpw"),
            "{dbg}"
        );
        let merged = seed.overridden_by(BrokerOptions {
            stomp: Some("flag:61613".into()),
            ..Default::default()
        });
        assert_eq!(merged.stomp.as_deref(), Some("flag:61613"));
        assert_eq!(merged.mqtt.as_deref(), Some("u:mqttpw@h:1883"));
        assert!(BrokerOptions::default().is_empty());
        assert!(!merged.is_empty());
    }

    #[test]
    fn ws_parts_split_url() {
        assert_eq!(
            ws_parts("stomp_ws", "ws://127.0.0.1:15674/ws").expect("valid"),
            ("127.0.0.1".into(), 15674, "/ws".into())
        );
        assert_eq!(
            ws_parts("stomp_ws", "wss://waldur.example.com/rmqws-stomp").expect("valid"),
            ("waldur.example.com".into(), 443, "/rmqws-stomp".into())
        );
        assert!(ws_parts("stomp_ws", "not a url").is_err());
    }
}
