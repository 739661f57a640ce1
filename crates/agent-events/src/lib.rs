//! Event sources for the agent's `event_process` mode: Waldur's STOMP-over-WebSocket queues
//! (RabbitMQ web-stomp) and MQTT topics (mosquitto / RabbitMQ MQTT, TCP or WebSocket).
//!
//! # Public API
//! * [`EventSourceConfig`] = [`StompSourceConfig`] (host/port/path/TLS, vhost, login, passcode,
//!   queue → destination `/amq/queue/<queue>`) or [`MqttSourceConfig`] (host/port, [`MqttTransport`],
//!   path, TLS, credentials, topics `subscription/<sub>/offering/<offering>/<object type>`).
//! * [`EventSource::spawn`]`(config, mpsc::Sender<Event>, CancellationToken) -> `[`EventSourceHandle`]:
//!   runs until cancelled or the receiver is dropped; reconnects with
//!   [`backoff_delay`] (`min(1 s·2ⁿ, 120 s)` + up to 25 % jitter) and re-subscribes.
//! * [`Event`] `{ object_type, body: serde_json::Value, raw, origin, redelivered, ack: `[`AckHandle`]` }`.
//!   Call `event.ack.ack()` after the handler succeeded; `event.ack.nack()` or dropping the
//!   handle gets the message redelivered (STOMP: NACK with `ack:client-individual`; MQTT: QoS 1
//!   with manual PUBACK — a NACK withholds the PUBACK and reconnects the persistent session).
//!   Delivery is at-least-once: handlers must tolerate repeats (`redelivered` hints at them).
//! * Malformed JSON bodies are logged, acked away and counted ([`EventSourceHandle::malformed_count`]).
//! * Health: [`EventSourceHandle::status`] / [`EventSourceHandle::status_receiver`] give a
//!   [`ConnectionStatus`] (`Connecting`, `Connected`, `Reconnecting { attempt, last_error }`, `Stopped`).
//!
//! ```no_run
//! # async fn demo() {
//! use agent_events::*;
//! let (tx, mut rx) = tokio::sync::mpsc::channel(64);
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let config = StompSourceConfig::new("waldur.example.org", 443, "/rmqws-stomp", "<user uuid>",
//!     "<subscription uuid>", "<api token>", "subscription_<s>_offering_<o>_order");
//! let source = EventSource::spawn(EventSourceConfig::Stomp(config), tx, cancel.clone());
//! while let Some(event) = rx.recv().await {
//!     let handled: Result<(), ()> = Ok(()); // run the handler for event.object_type / event.body
//!     match handled {
//!         Ok(()) => { let _ = event.ack.ack(); }
//!         Err(()) => { let _ = event.ack.nack(); }
//!     }
//! }
//! cancel.cancel();
//! source.join().await;
//! # }
//! ```

pub mod backoff;
pub mod config;
pub mod event;
pub mod source;

pub use backoff::{backoff_delay, jittered_backoff};
pub use config::{
    EventSourceConfig, MqttSourceConfig, MqttTransport, Secret, StompSourceConfig,
    object_type_from_queue, object_type_from_topic,
};
pub use event::{AckError, AckHandle, Event};
pub use source::{ConnectionStatus, EventSource, EventSourceHandle, SourceStats};
