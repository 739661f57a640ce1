//! Tunnels for the WebSocket through a proxy: HTTP `CONNECT` (`http://`) and SOCKS5
//! (`socks5://`, `socks5h://`; the proxy resolves the broker's name in both, as upstream does).
//! An `https://` proxy cannot carry the WebSocket here (the tunnel would need TLS to the proxy
//! itself): [`Proxy::parse`] says so and the caller connects directly, as upstream 1.0.8 does.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Secret, StompError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    HttpConnect,
    Socks5,
}

/// A proxy the WebSocket goes through.
#[derive(Clone, Debug)]
pub struct Proxy {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, Secret)>,
}

/// What [`Proxy::parse`] made of a proxy URL.
#[derive(Debug)]
pub enum ParsedProxy {
    Tunnel(Proxy),
    /// `https://`: usable for REST calls, not for the WebSocket.
    HttpsOnly,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| char::from(b).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Proxy {
    /// `http://[user:pass@]host[:port]`, `socks5://…`, `socks5h://…` (default ports 80 and 1080);
    /// `https://…` is [`ParsedProxy::HttpsOnly`].
    pub fn parse(raw: &str) -> Result<ParsedProxy, StompError> {
        let url = url::Url::parse(raw.trim())
            .map_err(|e| StompError::InvalidEndpoint(format!("proxy URL: {e}")))?;
        let kind = match url.scheme() {
            "http" => ProxyKind::HttpConnect,
            "socks5" | "socks5h" => ProxyKind::Socks5,
            "https" => return Ok(ParsedProxy::HttpsOnly),
            other => {
                return Err(StompError::InvalidEndpoint(format!(
                    "proxy scheme '{other}' is not supported (http, https, socks5, socks5h)"
                )));
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| StompError::InvalidEndpoint("proxy URL has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(match kind {
            ProxyKind::HttpConnect => 80,
            ProxyKind::Socks5 => 1080,
        });
        let credentials = (!url.username().is_empty()).then(|| {
            (
                percent_decode(url.username()),
                Secret::new(percent_decode(url.password().unwrap_or(""))),
            )
        });
        Ok(ParsedProxy::Tunnel(Proxy {
            kind,
            host,
            port,
            credentials,
        }))
    }

    /// `scheme://host:port` without credentials, for logs.
    pub fn describe(&self) -> String {
        let scheme = match self.kind {
            ProxyKind::HttpConnect => "http",
            ProxyKind::Socks5 => "socks5",
        };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// A TCP connection to `host:port` through the proxy.
    pub async fn tunnel(&self, host: &str, port: u16) -> Result<TcpStream, StompError> {
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                StompError::Transport(format!("connect to proxy {}: {e}", self.describe()))
            })?;
        let _ = stream.set_nodelay(true);
        match self.kind {
            ProxyKind::HttpConnect => self.http_connect(&mut stream, host, port).await?,
            ProxyKind::Socks5 => self.socks5(&mut stream, host, port).await?,
        }
        Ok(stream)
    }

    async fn http_connect(
        &self,
        stream: &mut TcpStream,
        host: &str,
        port: u16,
    ) -> Result<(), StompError> {
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some((user, password)) = &self.credentials {
            let token = base64(format!("{user}:{}", password.expose()).as_bytes());
            request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| self.failed(e))?;
        // Read the response head byte by byte: nothing after it may be consumed (it is the
        // tunnel's first bytes).
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 8192 {
                return Err(StompError::Transport(format!(
                    "proxy {}: response head too long",
                    self.describe()
                )));
            }
            let byte = stream.read_u8().await.map_err(|e| self.failed(e))?;
            head.push(byte);
        }
        let head = String::from_utf8_lossy(&head);
        let status_line = head.lines().next().unwrap_or_default();
        let code = status_line.split_whitespace().nth(1).unwrap_or_default();
        if code != "200" {
            return Err(StompError::Transport(format!(
                "proxy {} refused CONNECT {target}: {status_line}",
                self.describe()
            )));
        }
        Ok(())
    }

    async fn socks5(
        &self,
        stream: &mut TcpStream,
        host: &str,
        port: u16,
    ) -> Result<(), StompError> {
        let methods: &[u8] = if self.credentials.is_some() {
            &[0x00, 0x02]
        } else {
            &[0x00]
        };
        let mut greeting = vec![0x05, methods.len() as u8];
        greeting.extend_from_slice(methods);
        stream
            .write_all(&greeting)
            .await
            .map_err(|e| self.failed(e))?;
        let mut choice = [0u8; 2];
        stream
            .read_exact(&mut choice)
            .await
            .map_err(|e| self.failed(e))?;
        match (choice[0], choice[1]) {
            (0x05, 0x00) => {}
            (0x05, 0x02) => {
                let Some((user, password)) = &self.credentials else {
                    return Err(self.refused("asked for credentials that are not configured"));
                };
                let (user, password) = (user.as_bytes(), password.expose().as_bytes());
                if user.len() > 255 || password.len() > 255 {
                    return Err(self.refused("user or password longer than 255 bytes"));
                }
                let mut auth = vec![0x01, user.len() as u8];
                auth.extend_from_slice(user);
                auth.push(password.len() as u8);
                auth.extend_from_slice(password);
                stream.write_all(&auth).await.map_err(|e| self.failed(e))?;
                let mut reply = [0u8; 2];
                stream
                    .read_exact(&mut reply)
                    .await
                    .map_err(|e| self.failed(e))?;
                if reply[1] != 0x00 {
                    return Err(self.refused("credentials rejected"));
                }
            }
            _ => return Err(self.refused("no acceptable authentication method")),
        }
        // CONNECT by name (the proxy resolves it), or by address for an IP literal.
        let mut request = vec![0x05, 0x01, 0x00];
        match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => {
                request.push(0x01);
                request.extend_from_slice(&ip.octets());
            }
            Ok(std::net::IpAddr::V6(ip)) => {
                request.push(0x04);
                request.extend_from_slice(&ip.octets());
            }
            Err(_) => {
                if host.len() > 255 {
                    return Err(self.refused("host name longer than 255 bytes"));
                }
                request.push(0x03);
                request.push(host.len() as u8);
                request.extend_from_slice(host.as_bytes());
            }
        }
        request.extend_from_slice(&port.to_be_bytes());
        stream
            .write_all(&request)
            .await
            .map_err(|e| self.failed(e))?;
        let mut reply = [0u8; 4];
        stream
            .read_exact(&mut reply)
            .await
            .map_err(|e| self.failed(e))?;
        if reply[1] != 0x00 {
            return Err(self.refused(&format!("CONNECT {host}:{port} failed (code {})", reply[1])));
        }
        let rest = match reply[3] {
            0x01 => 4 + 2,
            0x04 => 16 + 2,
            0x03 => {
                let len = stream.read_u8().await.map_err(|e| self.failed(e))?;
                usize::from(len) + 2
            }
            other => return Err(self.refused(&format!("unknown address type {other}"))),
        };
        let mut bound = vec![0u8; rest];
        stream
            .read_exact(&mut bound)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    fn failed(&self, e: std::io::Error) -> StompError {
        StompError::Transport(format!("proxy {}: {e}", self.describe()))
    }

    fn refused(&self, why: &str) -> StompError {
        StompError::Transport(format!("proxy {}: {why}", self.describe()))
    }
}

/// Standard base64 (for `Proxy-Authorization: Basic`).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(char::from(ALPHABET[(n >> 18) as usize & 63]));
        out.push(char::from(ALPHABET[(n >> 12) as usize & 63]));
        out.push(if chunk.len() > 1 {
            char::from(ALPHABET[(n >> 6) as usize & 63])
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            char::from(ALPHABET[n as usize & 63])
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn base64_and_parsing() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        let ParsedProxy::Tunnel(p) = Proxy::parse("socks5h://u%40x:p%3Aw@proxy:9050").expect("ok")
        else {
            panic!("tunnel")
        };
        assert_eq!(
            (p.kind, p.host.as_str(), p.port),
            (ProxyKind::Socks5, "proxy", 9050)
        );
        let (user, password) = p.credentials.expect("credentials");
        assert_eq!((user.as_str(), password.expose()), ("u@x", "p:w"));
        assert!(matches!(
            Proxy::parse("https://proxy:3129"),
            Ok(ParsedProxy::HttpsOnly)
        ));
        assert!(Proxy::parse("ftp://proxy").is_err());
        let ParsedProxy::Tunnel(h) = Proxy::parse("http://proxy").expect("ok") else {
            panic!("tunnel")
        };
        assert_eq!(h.port, 80);
    }

    async fn echo_after<F, Fut>(handshake: F) -> (u16, tokio::task::JoinHandle<Vec<u8>>)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = (TcpStream, Vec<u8>)> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let (mut stream, seen) = handshake(stream).await;
            // The tunnel: echo one chunk.
            let mut buf = [0u8; 5];
            stream.read_exact(&mut buf).await.expect("tunnel bytes");
            stream.write_all(&buf).await.expect("echo");
            seen
        });
        (port, task)
    }

    #[tokio::test]
    async fn http_connect_with_basic_auth() {
        let (port, task) = echo_after(|mut s| async move {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(s.read_u8().await.expect("byte"));
            }
            s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .expect("reply");
            (s, head)
        })
        .await;
        let ParsedProxy::Tunnel(proxy) =
            Proxy::parse(&format!("http://user:pass@127.0.0.1:{port}")).expect("proxy")
        else {
            panic!("tunnel")
        };
        let mut tunnel = proxy.tunnel("broker.example", 15674).await.expect("tunnel");
        tunnel.write_all(b"hello").await.expect("write");
        let mut back = [0u8; 5];
        tunnel.read_exact(&mut back).await.expect("read");
        assert_eq!(&back, b"hello");
        let head = String::from_utf8(task.await.expect("proxy")).expect("utf8");
        assert!(
            head.starts_with("CONNECT broker.example:15674 HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains("Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn http_connect_refusal_is_an_error() {
        let (port, _task) = echo_after(|mut s| async move {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(s.read_u8().await.expect("byte"));
            }
            s.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                .await
                .expect("reply");
            (s, head)
        })
        .await;
        let ParsedProxy::Tunnel(proxy) =
            Proxy::parse(&format!("http://127.0.0.1:{port}")).expect("proxy")
        else {
            panic!("tunnel")
        };
        let e = proxy.tunnel("broker", 1).await.expect_err("refused");
        assert!(e.to_string().contains("407"), "{e}");
    }

    #[tokio::test]
    async fn socks5_by_name_with_credentials() {
        let (port, task) = echo_after(|mut s| async move {
            let mut seen = Vec::new();
            let mut greeting = [0u8; 4];
            s.read_exact(&mut greeting).await.expect("greeting");
            seen.extend_from_slice(&greeting);
            s.write_all(&[5, 2]).await.expect("choose user/pass");
            let mut auth = [0u8; 1 + 1 + 1 + 1 + 2];
            s.read_exact(&mut auth).await.expect("auth");
            seen.extend_from_slice(&auth);
            s.write_all(&[1, 0]).await.expect("auth ok");
            let mut head = [0u8; 5];
            s.read_exact(&mut head).await.expect("request head");
            seen.extend_from_slice(&head);
            let mut name = vec![0u8; usize::from(head[4]) + 2];
            s.read_exact(&mut name).await.expect("name");
            seen.extend_from_slice(&name);
            s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 80])
                .await
                .expect("reply");
            (s, seen)
        })
        .await;
        let ParsedProxy::Tunnel(proxy) =
            Proxy::parse(&format!("socks5://u:pw@127.0.0.1:{port}")).expect("proxy")
        else {
            panic!("tunnel")
        };
        let mut tunnel = proxy.tunnel("mq.example", 443).await.expect("tunnel");
        tunnel.write_all(b"abcde").await.expect("write");
        let mut back = [0u8; 5];
        tunnel.read_exact(&mut back).await.expect("read");
        assert_eq!(&back, b"abcde");
        let seen = task.await.expect("proxy");
        let mut expected = vec![5, 2, 0, 2, 1, 1, b'u', 2, b'p', b'w', 5, 1, 0, 3, 10];
        expected.extend_from_slice(b"mq.example");
        expected.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(seen, expected);
    }
}
