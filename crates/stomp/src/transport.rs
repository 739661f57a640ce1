//! Byte transports under a STOMP session: plain TCP and WebSocket (`ws://`, `wss://`).

use bytes::{Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message as WsMessage;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

use crate::StompError;

type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// STOMP over WebSocket; `ws://host:port/path` or `wss://…`.
    WebSocket(Url),
    /// STOMP over a plain TCP connection.
    Tcp { host: String, port: u16 },
}

impl Endpoint {
    /// Host name used as the default STOMP `host` header.
    pub fn host(&self) -> String {
        match self {
            Endpoint::WebSocket(url) => url.host_str().unwrap_or_default().to_owned(),
            Endpoint::Tcp { host, .. } => host.clone(),
        }
    }
}

pub(crate) enum Reader {
    Tcp(OwnedReadHalf),
    Ws(SplitStream<WsStream>),
}

pub(crate) enum Writer {
    Tcp(OwnedWriteHalf),
    Ws(SplitSink<WsStream, WsMessage>),
}

/// Builds a rustls client config with the ring provider and the system's trust roots.
pub fn default_tls_config() -> Result<Arc<rustls::ClientConfig>, StompError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for cert in loaded.certs {
        // Individual unparsable system certificates are skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(StompError::Tls(
            "no trusted root certificates found on this system".into(),
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StompError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

pub(crate) async fn open(
    endpoint: &Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    max_frame_len: usize,
    proxy: Option<&crate::proxy::Proxy>,
) -> Result<(Reader, Writer), StompError> {
    match endpoint {
        Endpoint::Tcp { host, port } => {
            let stream = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| StompError::Transport(format!("connect {host}:{port}: {e}")))?;
            let _ = stream.set_nodelay(true);
            let (r, w) = stream.into_split();
            Ok((Reader::Tcp(r), Writer::Tcp(w)))
        }
        Endpoint::WebSocket(url) => {
            let connector = match url.scheme() {
                "ws" => Connector::Plain,
                "wss" => Connector::Rustls(match tls {
                    Some(config) => config,
                    None => default_tls_config()?,
                }),
                other => {
                    return Err(StompError::InvalidEndpoint(format!(
                        "unsupported WebSocket scheme {other:?}"
                    )));
                }
            };
            let mut request = url
                .as_str()
                .into_client_request()
                .map_err(|e| StompError::InvalidEndpoint(e.to_string()))?;
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                http::HeaderValue::from_static("v12.stomp"),
            );
            let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
            config.max_message_size = Some(max_frame_len.saturating_add(1024));
            config.max_frame_size = Some(max_frame_len.saturating_add(1024));
            let (ws, _response) = match proxy {
                Some(proxy) => {
                    let host = url.host_str().unwrap_or_default();
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let port = url.port_or_known_default().unwrap_or(80);
                    let stream = proxy.tunnel(host, port).await?;
                    tokio_tungstenite::client_async_tls_with_config(
                        request,
                        stream,
                        Some(config),
                        Some(connector),
                    )
                    .await
                }
                None => {
                    tokio_tungstenite::connect_async_tls_with_config(
                        request,
                        Some(config),
                        true,
                        Some(connector),
                    )
                    .await
                }
            }
            .map_err(|e| StompError::Transport(format!("WebSocket connect {url}: {e}")))?;
            let (sink, stream) = ws.split();
            Ok((Reader::Ws(stream), Writer::Ws(sink)))
        }
    }
}

impl Reader {
    /// Next chunk of bytes, `Ok(None)` at a clean end of stream.
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Bytes>, StompError> {
        match self {
            Reader::Tcp(read) => {
                let mut buf = BytesMut::with_capacity(16 * 1024);
                let n = read
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| StompError::Transport(e.to_string()))?;
                Ok((n > 0).then(|| buf.freeze()))
            }
            Reader::Ws(stream) => loop {
                match stream.next().await {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(StompError::Transport(e.to_string())),
                    Some(Ok(WsMessage::Text(text))) => return Ok(Some(Bytes::from(text))),
                    Some(Ok(WsMessage::Binary(bytes))) => return Ok(Some(bytes)),
                    Some(Ok(WsMessage::Close(_))) => return Ok(None),
                    Some(Ok(_)) => continue,
                }
            },
        }
    }
}

impl Writer {
    pub(crate) async fn write(&mut self, bytes: Bytes) -> Result<(), StompError> {
        match self {
            Writer::Tcp(write) => {
                write
                    .write_all(&bytes)
                    .await
                    .map_err(|e| StompError::Transport(e.to_string()))?;
                write
                    .flush()
                    .await
                    .map_err(|e| StompError::Transport(e.to_string()))
            }
            Writer::Ws(sink) => {
                // Web-STOMP servers expect text frames; binary bodies need a binary frame.
                let message = match std::str::from_utf8(&bytes) {
                    Ok(text) => WsMessage::text(text),
                    Err(_) => WsMessage::Binary(bytes),
                };
                sink.send(message)
                    .await
                    .map_err(|e| StompError::Transport(e.to_string()))
            }
        }
    }

    pub(crate) async fn close(&mut self) {
        match self {
            Writer::Tcp(write) => {
                let _ = write.shutdown().await;
            }
            Writer::Ws(sink) => {
                let _ = sink.close().await;
            }
        }
    }
}
