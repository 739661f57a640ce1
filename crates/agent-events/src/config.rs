//! Connection settings of one event source.

use std::time::Duration;
pub use stomp::Secret;

/// Which transport delivers the events, with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSourceConfig {
    Stomp(StompSourceConfig),
    Mqtt(MqttSourceConfig),
}

impl EventSourceConfig {
    /// Short human-readable name for logs and status (no secrets).
    pub fn describe(&self) -> String {
        match self {
            EventSourceConfig::Stomp(c) => format!("stomp {}{}", c.url(), c.destination()),
            EventSourceConfig::Mqtt(c) => format!("mqtt {}:{} {:?}", c.host, c.port, c.topics()),
        }
    }
}

/// STOMP over WebSocket to RabbitMQ web-stomp (Waldur's event bus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StompSourceConfig {
    pub host: String,
    pub port: u16,
    /// WebSocket path, e.g. `/rmqws-stomp` (Waldur ingress) or `/ws` (plain RabbitMQ).
    pub path: String,
    /// `wss://` instead of `ws://`.
    pub tls: bool,
    /// RabbitMQ vhost (Waldur: the subscription's `user_uuid` hex); sent as CONNECT `host`.
    pub vhost: String,
    /// Waldur: the event subscription uuid hex (or `rmq_username` of the unified queue).
    pub login: String,
    /// Waldur: the API token.
    pub passcode: Secret,
    /// Queue name; the destination is `/amq/queue/<queue>` (never re-declares the queue).
    pub queue: String,
    /// Object type of every message of this queue; `None` = read `object_type` from the payload
    /// (unified queue), falling back to the `_<object type>` suffix of a legacy queue name.
    pub object_type: Option<String>,
    /// Overrides the `/amq/queue/<queue>` destination (e.g. `/queue/<name>` for the unified queue).
    pub destination: Option<String>,
    /// RabbitMQ `prefetch-count`: unacknowledged messages in flight at once.
    pub prefetch: Option<u32>,
    /// Heart-beat both ways (Waldur needs them: RabbitMQ drops silent links after ~30 s).
    pub heartbeat: Duration,
    /// `global_proxy`: the WebSocket goes through it (`http://` CONNECT, `socks5://`,
    /// `socks5h://`); an `https://` proxy cannot carry it and the connection goes direct.
    pub proxy: Option<String>,
}

impl StompSourceConfig {
    /// Settings with the agent's defaults: 10 s heart-beats, prefetch 32, `/amq/queue/<queue>`.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        path: impl Into<String>,
        vhost: impl Into<String>,
        login: impl Into<String>,
        passcode: impl Into<Secret>,
        queue: impl Into<String>,
    ) -> Self {
        StompSourceConfig {
            host: host.into(),
            port,
            path: path.into(),
            tls: false,
            vhost: vhost.into(),
            login: login.into(),
            passcode: passcode.into(),
            queue: queue.into(),
            object_type: None,
            destination: None,
            prefetch: Some(32),
            heartbeat: Duration::from_secs(10),
            proxy: None,
        }
    }

    pub fn destination(&self) -> String {
        self.destination
            .clone()
            .unwrap_or_else(|| format!("/amq/queue/{}", self.queue))
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        let path = if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        };
        format!("{scheme}://{}:{}{path}", self.host, self.port)
    }
}

/// MQTT transport flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttTransport {
    Tcp,
    WebSocket,
}

/// MQTT 3.1.1 (mosquitto or RabbitMQ MQTT), QoS 1, persistent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSourceConfig {
    pub host: String,
    pub port: u16,
    pub transport: MqttTransport,
    /// WebSocket path (ignored for TCP), e.g. `/` or `/mqtt`.
    pub path: String,
    pub tls: bool,
    pub subscription_uuid: String,
    pub offering_uuid: String,
    /// One topic per type: `subscription/<sub>/offering/<offering>/<object type>`.
    pub object_types: Vec<String>,
    /// Stable client id: with a persistent session the broker keeps unacknowledged messages
    /// for this id across reconnects.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub keep_alive: Duration,
}

impl MqttSourceConfig {
    pub fn new(
        host: impl Into<String>,
        port: u16,
        transport: MqttTransport,
        subscription_uuid: impl Into<String>,
        offering_uuid: impl Into<String>,
        object_types: Vec<String>,
    ) -> Self {
        let subscription_uuid = subscription_uuid.into();
        let offering_uuid = offering_uuid.into();
        MqttSourceConfig {
            host: host.into(),
            port,
            transport,
            path: "/".into(),
            tls: false,
            client_id: format!("waldur-site-agent-{offering_uuid}"),
            subscription_uuid,
            offering_uuid,
            object_types,
            username: None,
            password: None,
            keep_alive: Duration::from_secs(30),
        }
    }

    pub fn topic(&self, object_type: &str) -> String {
        format!(
            "subscription/{}/offering/{}/{object_type}",
            self.subscription_uuid, self.offering_uuid
        )
    }

    pub fn topics(&self) -> Vec<String> {
        self.object_types.iter().map(|t| self.topic(t)).collect()
    }

    pub fn websocket_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        let path = if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        };
        format!("{scheme}://{}:{}{path}", self.host, self.port)
    }
}

/// Object type encoded in a legacy Waldur queue name
/// `subscription_<hex>_offering_<hex>_<object_type>`.
pub fn object_type_from_queue(queue: &str) -> Option<&str> {
    let (_, after) = queue.split_once("_offering_")?;
    let (_, object_type) = after.split_once('_')?;
    (!object_type.is_empty()).then_some(object_type)
}

/// Object type of an MQTT topic (its last segment).
pub fn object_type_from_topic(topic: &str) -> Option<&str> {
    topic.rsplit('/').next().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stomp_destination_and_url() {
        let mut c = StompSourceConfig::new(
            "waldur.example.org",
            443,
            "rmqws-stomp",
            "vh",
            "login",
            "token",
            "subscription_aa_offering_bb_order",
        );
        assert_eq!(
            c.destination(),
            "/amq/queue/subscription_aa_offering_bb_order"
        );
        assert_eq!(c.url(), "ws://waldur.example.org:443/rmqws-stomp");
        c.tls = true;
        c.destination = Some("/queue/consumer_x".into());
        assert_eq!(c.url(), "wss://waldur.example.org:443/rmqws-stomp");
        assert_eq!(c.destination(), "/queue/consumer_x");
        assert!(!format!("{c:?}").contains("token"));
    }

    #[test]
    fn mqtt_topics() {
        let c = MqttSourceConfig::new(
            "h",
            1883,
            MqttTransport::Tcp,
            "sub1",
            "off1",
            vec!["order".into(), "user_role".into()],
        );
        assert_eq!(
            c.topics(),
            vec![
                "subscription/sub1/offering/off1/order",
                "subscription/sub1/offering/off1/user_role"
            ]
        );
        assert_eq!(c.client_id, "waldur-site-agent-off1");
    }

    #[test]
    fn object_type_parsing() {
        assert_eq!(
            object_type_from_queue("subscription_0a1b_offering_9f8e_offering_user"),
            Some("offering_user")
        );
        assert_eq!(object_type_from_queue("consumer_abc"), None);
        assert_eq!(
            object_type_from_topic("subscription/s/offering/o/resource"),
            Some("resource")
        );
        assert_eq!(object_type_from_topic("trailing/"), None);
    }
}
