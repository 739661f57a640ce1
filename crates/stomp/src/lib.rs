//! STOMP 1.2 client over WebSocket (`ws://`, `wss://`) and plain TCP.
//!
//! Written for RabbitMQ (web-stomp and the STOMP plugin), usable with any STOMP 1.2 broker.
//!
//! # Public API
//! * [`StompClient::connect`]`(`[`ConnectOptions`]`) -> (StompClient, MessageStream)` — opens the
//!   transport, sends CONNECT (`accept-version:1.2`, `host` = vhost, `login`/`passcode`,
//!   `heart-beat`, 10 s both ways by default) and starts a session task that sends heart-beat EOLs
//!   and declares the peer dead after `incoming interval × heartbeat_tolerance` of silence.
//! * [`StompClient::subscribe`]`(dest, id, `[`AckMode`]`)` (waits for a RECEIPT),
//!   [`StompClient::ack`] / [`StompClient::nack`]`(&Message)` (by the `ack` header),
//!   [`StompClient::send`]`(dest, headers, body)` (waits for a RECEIPT),
//!   [`StompClient::disconnect`] (DISCONNECT with receipt).
//! * [`MessageStream::recv`] yields [`Message`]s; when the session dies it yields one
//!   `Err(`[`StompError`]`)` (ERROR frame → [`StompError::Server`], silence →
//!   [`StompError::HeartbeatTimeout`], EOF → [`StompError::ConnectionClosed`]) and then `None`.
//! * [`frame`]: the codec ([`Frame`], [`Decoder`], [`Item`]) with header escaping and
//!   `content-length`, usable on its own (the simulator's broker side, fuzzing).
//!
//! Messages are buffered without bound so heart-beats keep flowing while the consumer is busy;
//! bound the in-flight count with RabbitMQ's `prefetch-count` subscribe header.

pub mod client;
pub mod frame;
pub mod proxy;
pub mod transport;

pub use client::{
    AckMode, ConnectOptions, HeartBeat, Message, MessageStream, NegotiatedHeartBeat, SessionInfo,
    StompClient, negotiate_heartbeat,
};
pub use frame::{Command, DecodeError, Decoder, EncodeError, Frame, Item};
pub use proxy::{ParsedProxy, Proxy, ProxyKind};
pub use transport::{Endpoint, default_tls_config};

/// A secret string (passcode, token) whose `Debug`/`Display` print `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The actual value, for putting on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// Errors of a STOMP session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StompError {
    #[error("invalid endpoint: {0}")]
    InvalidEndpoint(String),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("malformed frame from server: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode frame: {0}")]
    Encode(#[from] EncodeError),
    #[error("STOMP protocol violation: {0}")]
    Protocol(String),
    /// The broker sent an ERROR frame (`message` header and body).
    #[error("broker error: {message}{}", if body.is_empty() { String::new() } else { format!(" ({body})") })]
    Server { message: String, body: String },
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(std::time::Duration),
    #[error("no receipt for {0}")]
    ReceiptTimeout(String),
    #[error("no data from the broker for {0:?} (heart-beat missed)")]
    HeartbeatTimeout(std::time::Duration),
    #[error("connection closed")]
    ConnectionClosed,
    #[error("message has no ack header (subscription is ack:auto)")]
    NotAckable,
}

impl StompError {
    pub(crate) fn from_error_frame(frame: &Frame) -> Self {
        StompError::Server {
            message: frame.get("message").unwrap_or("unknown error").to_owned(),
            body: String::from_utf8_lossy(&frame.body).trim().to_owned(),
        }
    }
}
