//! STOMP 1.2 client session: connect handshake, heart-beats, subscriptions, acks, receipts.

use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use url::Url;

use crate::frame::{Command, DEFAULT_MAX_FRAME_LEN, Decoder, Frame, Item};
use crate::transport::{self, Endpoint, Reader, Writer};
use crate::{Secret, StompError};

/// Acknowledgement mode of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Auto,
    Client,
    ClientIndividual,
}

impl AckMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }
}

/// Heart-beat intervals we offer: `send` = how often we can send (cx), `expect` = how often we
/// want to hear from the server (cy). Zero disables that direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartBeat {
    pub send: Duration,
    pub expect: Duration,
}

impl Default for HeartBeat {
    fn default() -> Self {
        HeartBeat {
            send: Duration::from_secs(10),
            expect: Duration::from_secs(10),
        }
    }
}

/// Heart-beat intervals in force after the CONNECTED exchange; `None` = disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NegotiatedHeartBeat {
    pub outgoing: Option<Duration>,
    pub incoming: Option<Duration>,
}

/// STOMP 1.2 §Heart-beating: each direction is the max of what one side can do and the other
/// wants, and disabled if either side says 0.
pub fn negotiate_heartbeat(ours: HeartBeat, server_header: Option<&str>) -> NegotiatedHeartBeat {
    let (sx, sy) = server_header
        .and_then(|value| {
            let (a, b) = value.split_once(',')?;
            Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?))
        })
        .unwrap_or((0, 0));
    let cx = ours.send.as_millis() as u64;
    let cy = ours.expect.as_millis() as u64;
    let pick = |a: u64, b: u64| (a != 0 && b != 0).then(|| Duration::from_millis(a.max(b)));
    NegotiatedHeartBeat {
        outgoing: pick(cx, sy),
        incoming: pick(cy, sx),
    }
}

/// Everything needed to open a session.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub endpoint: Endpoint,
    /// CONNECT `host` header; RabbitMQ reads the virtual host from it. Defaults to the endpoint host.
    pub vhost: Option<String>,
    pub login: Option<String>,
    pub passcode: Option<Secret>,
    pub heartbeat: HeartBeat,
    /// No data for `incoming interval × tolerance` means the peer is dead.
    pub heartbeat_tolerance: u32,
    /// Bound on TCP/WS/TLS connect plus the CONNECT/CONNECTED exchange.
    pub connect_timeout: Duration,
    /// Bound on waiting for a RECEIPT (subscribe, send, disconnect).
    pub receipt_timeout: Duration,
    /// Bound on writing one frame; a peer that stops reading is treated as dead.
    pub write_timeout: Duration,
    pub max_frame_len: usize,
    /// TLS settings for `wss://`; `None` = ring provider + system roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Reach a WebSocket endpoint through this proxy (HTTP CONNECT or SOCKS5).
    pub proxy: Option<crate::proxy::Proxy>,
}

impl ConnectOptions {
    pub fn new(endpoint: Endpoint) -> Self {
        ConnectOptions {
            endpoint,
            vhost: None,
            login: None,
            passcode: None,
            heartbeat: HeartBeat::default(),
            heartbeat_tolerance: 2,
            connect_timeout: Duration::from_secs(15),
            receipt_timeout: Duration::from_secs(15),
            write_timeout: Duration::from_secs(30),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            tls: None,
            proxy: None,
        }
    }

    /// Go through `proxy` (WebSocket endpoints only).
    pub fn proxy(mut self, proxy: crate::proxy::Proxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// STOMP over WebSocket, e.g. `ws://127.0.0.1:15674/ws` or `wss://host/rmqws-stomp`.
    pub fn websocket(url: &str) -> Result<Self, StompError> {
        let url = Url::parse(url).map_err(|e| StompError::InvalidEndpoint(e.to_string()))?;
        if !matches!(url.scheme(), "ws" | "wss") || url.host_str().is_none() {
            return Err(StompError::InvalidEndpoint(format!(
                "expected ws:// or wss:// URL with a host, got {url}"
            )));
        }
        Ok(Self::new(Endpoint::WebSocket(url)))
    }

    /// STOMP over plain TCP.
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        Self::new(Endpoint::Tcp {
            host: host.into(),
            port,
        })
    }

    pub fn vhost(mut self, vhost: impl Into<String>) -> Self {
        self.vhost = Some(vhost.into());
        self
    }

    pub fn credentials(mut self, login: impl Into<String>, passcode: impl Into<Secret>) -> Self {
        self.login = Some(login.into());
        self.passcode = Some(passcode.into());
        self
    }

    pub fn heartbeat(mut self, send: Duration, expect: Duration) -> Self {
        self.heartbeat = HeartBeat { send, expect };
        self
    }
}

/// A MESSAGE frame delivered to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub destination: String,
    pub subscription: String,
    pub message_id: String,
    /// The `ack` header; present for client/client-individual subscriptions.
    pub ack_id: Option<String>,
    /// All headers as received (including the ones above).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// RabbitMQ sets `redelivered:true` on messages it delivered before.
    pub fn redelivered(&self) -> bool {
        self.header("redelivered") == Some("true")
    }

    fn from_frame(frame: Frame) -> Result<Self, StompError> {
        let required = |name: &str| {
            frame
                .get(name)
                .map(str::to_owned)
                .ok_or_else(|| StompError::Protocol(format!("MESSAGE without {name} header")))
        };
        Ok(Message {
            destination: required("destination")?,
            subscription: required("subscription")?,
            message_id: required("message-id")?,
            ack_id: frame.get("ack").map(str::to_owned),
            headers: frame.headers,
            body: frame.body,
        })
    }
}

/// What the server told us in CONNECTED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub version: String,
    pub server: Option<String>,
    pub session: Option<String>,
    pub heartbeat: NegotiatedHeartBeat,
}

type ReceiptWaiter = oneshot::Sender<Result<(), StompError>>;

enum Request {
    Frame {
        frame: Frame,
        receipt: Option<(String, ReceiptWaiter)>,
    },
}

/// Handle to a live session. Cheap to clone; all clones share the connection.
#[derive(Debug, Clone)]
pub struct StompClient {
    requests: mpsc::UnboundedSender<Request>,
    next_receipt: Arc<AtomicU64>,
    receipt_timeout: Duration,
    info: Arc<SessionInfo>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Frame { frame, .. } => write!(f, "Request({frame:?})"),
        }
    }
}

/// Messages of all subscriptions of one session, in arrival order. After the session ends it
/// yields one `Err` with the reason (unless the client disconnected on purpose), then `None`.
#[derive(Debug)]
pub struct MessageStream {
    rx: mpsc::UnboundedReceiver<Result<Message, StompError>>,
}

impl MessageStream {
    pub async fn recv(&mut self) -> Option<Result<Message, StompError>> {
        self.rx.recv().await
    }
}

impl futures::Stream for MessageStream {
    type Item = Result<Message, StompError>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl StompClient {
    /// Opens the transport, performs CONNECT/CONNECTED and starts the session task (heart-beats,
    /// frame dispatch). Fails with [`StompError::Server`] when the broker answers ERROR
    /// (bad credentials, unknown vhost).
    pub async fn connect(
        options: ConnectOptions,
    ) -> Result<(StompClient, MessageStream), StompError> {
        tokio::time::timeout(
            options.connect_timeout,
            Self::connect_inner(options.clone()),
        )
        .await
        .map_err(|_| StompError::ConnectTimeout(options.connect_timeout))?
    }

    async fn connect_inner(
        options: ConnectOptions,
    ) -> Result<(StompClient, MessageStream), StompError> {
        let (mut reader, mut writer) = transport::open(
            &options.endpoint,
            options.tls.clone(),
            options.max_frame_len,
            options.proxy.as_ref(),
        )
        .await?;
        let host = options
            .vhost
            .clone()
            .unwrap_or_else(|| options.endpoint.host());
        let mut connect = Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("host", host)
            .header(
                "heart-beat",
                format!(
                    "{},{}",
                    options.heartbeat.send.as_millis(),
                    options.heartbeat.expect.as_millis()
                ),
            );
        if let Some(login) = &options.login {
            connect = connect.header("login", login.clone());
        }
        if let Some(passcode) = &options.passcode {
            connect = connect.header("passcode", passcode.expose().to_owned());
        }
        writer.write(connect.to_bytes()?).await?;

        let decoder = Decoder::new(options.max_frame_len);
        let mut buf = BytesMut::new();
        let connected = loop {
            match decoder.decode(&mut buf)? {
                Some(Item::HeartBeat) => continue,
                Some(Item::Frame(frame)) => break frame,
                None => match reader.next_chunk().await? {
                    Some(chunk) => buf.extend_from_slice(&chunk),
                    None => return Err(StompError::ConnectionClosed),
                },
            }
        };
        match connected.command {
            Command::Connected => {}
            Command::Error => return Err(StompError::from_error_frame(&connected)),
            other => {
                return Err(StompError::Protocol(format!(
                    "expected CONNECTED, got {other}"
                )));
            }
        }
        let version = connected.get("version").unwrap_or("1.0").to_owned();
        if version != "1.2" {
            return Err(StompError::Protocol(format!(
                "server speaks STOMP {version}, need 1.2"
            )));
        }
        let heartbeat = negotiate_heartbeat(options.heartbeat, connected.get("heart-beat"));
        let info = Arc::new(SessionInfo {
            version,
            server: connected.get("server").map(str::to_owned),
            session: connected.get("session").map(str::to_owned),
            heartbeat,
        });
        tracing::debug!(endpoint = ?options.endpoint, ?heartbeat, "STOMP session established");

        let (requests_tx, requests_rx) = mpsc::unbounded_channel();
        let (messages_tx, messages_rx) = mpsc::unbounded_channel();
        let (items_tx, items_rx) = mpsc::channel(64);
        let reader_task = tokio::spawn(read_loop(reader, decoder, buf, items_tx));
        tokio::spawn(
            Session {
                writer,
                items: items_rx,
                requests: requests_rx,
                messages: messages_tx,
                receipts: HashMap::new(),
                heartbeat,
                tolerance: options.heartbeat_tolerance.max(1),
                write_timeout: options.write_timeout,
                reader_task,
                closing: false,
                disconnect_receipt: None,
            }
            .run(),
        );
        Ok((
            StompClient {
                requests: requests_tx,
                next_receipt: Arc::new(AtomicU64::new(1)),
                receipt_timeout: options.receipt_timeout,
                info,
            },
            MessageStream { rx: messages_rx },
        ))
    }

    pub fn session_info(&self) -> &SessionInfo {
        &self.info
    }

    /// True once the session task has ended (error or disconnect).
    pub fn is_closed(&self) -> bool {
        self.requests.is_closed()
    }

    fn submit(&self, frame: Frame) -> Result<(), StompError> {
        self.requests
            .send(Request::Frame {
                frame,
                receipt: None,
            })
            .map_err(|_| StompError::ConnectionClosed)
    }

    async fn submit_with_receipt(&self, frame: Frame) -> Result<(), StompError> {
        let id = format!("r-{}", self.next_receipt.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        let frame = frame.header("receipt", id.clone());
        self.requests
            .send(Request::Frame {
                frame,
                receipt: Some((id.clone(), tx)),
            })
            .map_err(|_| StompError::ConnectionClosed)?;
        match tokio::time::timeout(self.receipt_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(StompError::ConnectionClosed),
            Err(_) => Err(StompError::ReceiptTimeout(id)),
        }
    }

    /// SUBSCRIBE and wait for the broker's RECEIPT, so the subscription is live on return.
    pub async fn subscribe(
        &self,
        destination: &str,
        id: &str,
        ack: AckMode,
    ) -> Result<(), StompError> {
        self.subscribe_with_headers(destination, id, ack, &[]).await
    }

    /// SUBSCRIBE with extra headers (e.g. RabbitMQ `prefetch-count`, `durable`).
    pub async fn subscribe_with_headers(
        &self,
        destination: &str,
        id: &str,
        ack: AckMode,
        extra: &[(&str, &str)],
    ) -> Result<(), StompError> {
        let mut frame = Frame::new(Command::Subscribe)
            .header("destination", destination)
            .header("id", id)
            .header("ack", ack.as_str());
        for (name, value) in extra {
            frame = frame.header(*name, *value);
        }
        self.submit_with_receipt(frame).await
    }

    pub async fn unsubscribe(&self, id: &str) -> Result<(), StompError> {
        self.submit_with_receipt(Frame::new(Command::Unsubscribe).header("id", id))
            .await
    }

    /// ACK a message of a client/client-individual subscription (by its `ack` header).
    pub fn ack(&self, message: &Message) -> Result<(), StompError> {
        self.ack_id(message.ack_id.as_deref().ok_or(StompError::NotAckable)?)
    }

    /// NACK a message: RabbitMQ requeues it for redelivery.
    pub fn nack(&self, message: &Message) -> Result<(), StompError> {
        self.nack_id(message.ack_id.as_deref().ok_or(StompError::NotAckable)?)
    }

    /// ACK by raw `ack` header value (for callers that kept only the id).
    pub fn ack_id(&self, ack_id: &str) -> Result<(), StompError> {
        self.submit(Frame::new(Command::Ack).header("id", ack_id))
    }

    pub fn nack_id(&self, ack_id: &str) -> Result<(), StompError> {
        self.submit(Frame::new(Command::Nack).header("id", ack_id))
    }

    /// SEND and wait for the RECEIPT: on `Ok` the broker has taken responsibility for the message.
    pub async fn send(
        &self,
        destination: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<(), StompError> {
        let mut frame = Frame::new(Command::Send).header("destination", destination);
        for (name, value) in headers {
            frame = frame.header(*name, *value);
        }
        self.submit_with_receipt(frame.body(body)).await
    }

    /// DISCONNECT with a receipt (so everything sent before is processed), then close.
    pub async fn disconnect(&self) -> Result<(), StompError> {
        self.submit_with_receipt(Frame::new(Command::Disconnect))
            .await
    }
}

async fn read_loop(
    mut reader: Reader,
    decoder: Decoder,
    mut buf: BytesMut,
    items: mpsc::Sender<Result<Item, StompError>>,
) {
    loop {
        // Drain whatever is already buffered before reading more.
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => {
                    if items.send(Ok(item)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = items.send(Err(e.into())).await;
                    return;
                }
            }
        }
        match reader.next_chunk().await {
            Ok(Some(chunk)) => {
                // Any bytes count as proof of life, even a partial frame.
                if items.send(Ok(Item::HeartBeat)).await.is_err() {
                    return;
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => {
                let _ = items.send(Err(StompError::ConnectionClosed)).await;
                return;
            }
            Err(e) => {
                let _ = items.send(Err(e)).await;
                return;
            }
        }
    }
}

struct Session {
    writer: Writer,
    items: mpsc::Receiver<Result<Item, StompError>>,
    requests: mpsc::UnboundedReceiver<Request>,
    messages: mpsc::UnboundedSender<Result<Message, StompError>>,
    receipts: HashMap<String, ReceiptWaiter>,
    heartbeat: NegotiatedHeartBeat,
    tolerance: u32,
    write_timeout: Duration,
    reader_task: tokio::task::JoinHandle<()>,
    /// DISCONNECT sent: the end of the stream is expected, not an error.
    closing: bool,
    disconnect_receipt: Option<String>,
}

enum Flow {
    Continue,
    Stop(Option<StompError>),
}

impl Session {
    async fn run(mut self) {
        let far_future = Duration::from_secs(24 * 3600);
        let send_every = self.heartbeat.outgoing.unwrap_or(far_future);
        let dead_after = self
            .heartbeat
            .incoming
            .map(|d| d * self.tolerance)
            .unwrap_or(far_future);
        let mut last_sent = Instant::now();
        let mut last_received = Instant::now();
        let outcome = loop {
            let next_beat = last_sent + send_every;
            let deadline = last_received + dead_after;
            let flow = tokio::select! {
                item = self.items.recv() => match item {
                    Some(Ok(item)) => {
                        last_received = Instant::now();
                        self.on_item(item)
                    }
                    Some(Err(e)) => Flow::Stop(Some(e)),
                    None => Flow::Stop(Some(StompError::ConnectionClosed)),
                },
                request = self.requests.recv() => match request {
                    Some(request) => {
                        let flow = self.on_request(request).await;
                        last_sent = Instant::now();
                        flow
                    }
                    // Every client handle is gone: leave politely.
                    None => {
                        let bytes = Frame::new(Command::Disconnect).to_bytes();
                        if let Ok(bytes) = bytes {
                            let _ = self.write(bytes).await;
                        }
                        Flow::Stop(None)
                    }
                },
                _ = tokio::time::sleep_until(next_beat), if self.heartbeat.outgoing.is_some() => {
                    last_sent = Instant::now();
                    match self.write(Bytes::from_static(b"\n")).await {
                        Ok(()) => Flow::Continue,
                        Err(e) => Flow::Stop(Some(e)),
                    }
                }
                _ = tokio::time::sleep_until(deadline), if self.heartbeat.incoming.is_some() => {
                    Flow::Stop(Some(StompError::HeartbeatTimeout(dead_after)))
                }
            };
            if let Flow::Stop(reason) = flow {
                break reason;
            }
        };
        self.shutdown(outcome).await;
    }

    fn on_item(&mut self, item: Item) -> Flow {
        let frame = match item {
            Item::HeartBeat => return Flow::Continue,
            Item::Frame(frame) => frame,
        };
        match frame.command {
            Command::Message => match Message::from_frame(frame) {
                Ok(message) => {
                    // The consumer may have dropped the stream; acks can still flow.
                    let _ = self.messages.send(Ok(message));
                    Flow::Continue
                }
                Err(e) => Flow::Stop(Some(e)),
            },
            Command::Receipt => {
                let id = frame.get("receipt-id").unwrap_or_default();
                if let Some(waiter) = self.receipts.remove(id) {
                    let _ = waiter.send(Ok(()));
                }
                // RabbitMQ web-stomp has been seen answering DISCONNECT with a stale receipt-id
                // and closing; any receipt after DISCONNECT means the broker processed it.
                if self.closing {
                    Flow::Stop(None)
                } else {
                    Flow::Continue
                }
            }
            Command::Error => {
                let error = StompError::from_error_frame(&frame);
                if let Some(id) = frame.get("receipt-id")
                    && let Some(waiter) = self.receipts.remove(id)
                {
                    let _ = waiter.send(Err(error.clone()));
                }
                // The broker closes the connection after ERROR.
                Flow::Stop(Some(error))
            }
            other => Flow::Stop(Some(StompError::Protocol(format!(
                "unexpected {other} frame from server"
            )))),
        }
    }

    async fn on_request(&mut self, request: Request) -> Flow {
        let Request::Frame { frame, receipt } = request;
        if frame.command == Command::Disconnect {
            self.closing = true;
            self.disconnect_receipt = receipt.as_ref().map(|(id, _)| id.clone());
        }
        let bytes = match frame.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                if let Some((_, waiter)) = receipt {
                    let _ = waiter.send(Err(e.into()));
                }
                return Flow::Continue;
            }
        };
        if let Some((id, waiter)) = receipt {
            self.receipts.insert(id, waiter);
        }
        match self.write(bytes).await {
            Ok(()) => Flow::Continue,
            Err(e) => Flow::Stop(Some(e)),
        }
    }

    async fn write(&mut self, bytes: Bytes) -> Result<(), StompError> {
        tokio::time::timeout(self.write_timeout, self.writer.write(bytes))
            .await
            .map_err(|_| StompError::Transport("write timed out".into()))?
    }

    async fn shutdown(mut self, reason: Option<StompError>) {
        let reason = if self.closing { None } else { reason };
        // The broker acknowledged DISCONNECT (receipt or orderly close): that is success.
        if let Some(waiter) = self
            .disconnect_receipt
            .take()
            .and_then(|id| self.receipts.remove(&id))
        {
            let _ = waiter.send(Ok(()));
        }
        if let Some(e) = &reason {
            tracing::debug!(error = %e, "STOMP session ended");
            let _ = self.messages.send(Err(e.clone()));
        }
        for (_, waiter) in self.receipts.drain() {
            let _ = waiter.send(Err(reason.clone().unwrap_or(StompError::ConnectionClosed)));
        }
        // Refuse further requests before closing so handles observe `is_closed`.
        self.requests.close();
        self.writer.close().await;
        self.reader_task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_negotiation_follows_spec() {
        let ours = HeartBeat {
            send: Duration::from_millis(10_000),
            expect: Duration::from_millis(10_000),
        };
        let n = negotiate_heartbeat(ours, Some("5000,20000"));
        assert_eq!(n.outgoing, Some(Duration::from_millis(20_000)));
        assert_eq!(n.incoming, Some(Duration::from_millis(10_000)));
        let off = negotiate_heartbeat(ours, Some("0,0"));
        assert_eq!(off, NegotiatedHeartBeat::default());
        assert_eq!(
            negotiate_heartbeat(ours, None),
            NegotiatedHeartBeat::default()
        );
        assert_eq!(
            negotiate_heartbeat(ours, Some("garbage")),
            NegotiatedHeartBeat::default()
        );
        let we_dont_send = HeartBeat {
            send: Duration::ZERO,
            expect: Duration::from_millis(1000),
        };
        let n = negotiate_heartbeat(we_dont_send, Some("3000,3000"));
        assert_eq!(n.outgoing, None);
        assert_eq!(n.incoming, Some(Duration::from_millis(3000)));
    }

    #[test]
    fn websocket_options_validate_url() {
        assert!(ConnectOptions::websocket("ws://127.0.0.1:15674/ws").is_ok());
        assert!(ConnectOptions::websocket("http://example.org/").is_err());
        assert!(ConnectOptions::websocket("not a url").is_err());
    }
}
