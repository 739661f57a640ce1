//! STOMP 1.2 frame model and a streaming codec.
//!
//! The decoder works on a growing byte buffer so it can be fed by any transport that delivers
//! arbitrary chunks (TCP reads, WebSocket messages). It never panics: every malformed input is a
//! [`DecodeError`], and the configured size limits bound the memory a peer can make us hold.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Upper bound on the size of one frame (headers + body) unless configured otherwise.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Upper bound on the number of header lines in one frame unless configured otherwise.
pub const DEFAULT_MAX_HEADERS: usize = 1024;

/// STOMP 1.2 frame commands (client and server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Connect,
    Stomp,
    Connected,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    Message,
    Receipt,
    Error,
}

impl Command {
    pub const ALL: [Command; 15] = [
        Command::Connect,
        Command::Stomp,
        Command::Connected,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Connected => "CONNECTED",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    fn from_bytes(raw: &[u8]) -> Option<Command> {
        Command::ALL
            .into_iter()
            .find(|c| c.as_str().as_bytes() == raw)
    }

    /// The spec exempts CONNECT and CONNECTED frames from header escaping (STOMP 1.0 compatibility).
    pub fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Connected | Command::Stomp)
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One STOMP frame. Headers keep their wire order; repeated headers are kept and the first
/// occurrence wins on lookup, as the spec requires.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl std::fmt::Debug for Frame {
    // Passcodes travel in CONNECT headers: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                if k.eq_ignore_ascii_case("passcode") {
                    (k.as_str(), "***")
                } else {
                    (k.as_str(), v.as_str())
                }
            })
            .collect();
        f.debug_struct("Frame")
            .field("command", &self.command)
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Frame {
    pub fn new(command: Command) -> Self {
        Frame {
            command,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Appends a header (builder style).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Value of the first header called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Encodes into `out`. A `content-length` header is always computed from the body (any
    /// caller-supplied one is replaced) so bodies may contain NUL bytes.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let escape = self.command.escapes_headers();
        out.reserve(64 + self.body.len());
        out.put_slice(self.command.as_str().as_bytes());
        out.put_u8(b'\n');
        for (name, value) in &self.headers {
            if name == "content-length" {
                continue;
            }
            if escape {
                put_escaped(out, name);
                out.put_u8(b':');
                put_escaped(out, value);
            } else {
                if name.is_empty() || name.contains([':', '\n', '\r']) {
                    return Err(EncodeError::UnescapableHeader {
                        command: self.command,
                        name: name.clone(),
                    });
                }
                if value.contains(['\n', '\r']) {
                    return Err(EncodeError::UnescapableHeader {
                        command: self.command,
                        name: name.clone(),
                    });
                }
                out.put_slice(name.as_bytes());
                out.put_u8(b':');
                out.put_slice(value.as_bytes());
            }
            out.put_u8(b'\n');
        }
        if !self.body.is_empty() {
            out.put_slice(b"content-length:");
            out.put_slice(self.body.len().to_string().as_bytes());
            out.put_u8(b'\n');
        }
        out.put_u8(b'\n');
        out.put_slice(&self.body);
        out.put_u8(0);
        Ok(())
    }

    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::new();
        self.encode(&mut out)?;
        Ok(out.freeze())
    }
}

fn put_escaped(out: &mut BytesMut, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'\\' => out.put_slice(b"\\\\"),
            b'\n' => out.put_slice(b"\\n"),
            b'\r' => out.put_slice(b"\\r"),
            b':' => out.put_slice(b"\\c"),
            other => out.put_u8(other),
        }
    }
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// CONNECT/CONNECTED headers are sent unescaped, so they cannot carry `:` in names or EOLs.
    #[error("header {name:?} cannot be sent unescaped in a {command} frame")]
    UnescapableHeader { command: Command, name: String },
}

/// Why received bytes are not a valid STOMP frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("header line without ':' separator")]
    MissingColon,
    #[error("invalid escape sequence in header")]
    InvalidEscape,
    #[error("header is not valid UTF-8")]
    InvalidUtf8,
    #[error("invalid content-length {0:?}")]
    InvalidContentLength(String),
    #[error("frame body not terminated by NUL after content-length bytes")]
    MissingNul,
    #[error("frame exceeds {limit} bytes")]
    FrameTooLarge { limit: usize },
    #[error("frame has more than {limit} headers")]
    TooManyHeaders { limit: usize },
    #[error("stray carriage return outside a frame")]
    StrayCarriageReturn,
}

/// What the decoder found at the head of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Frame(Frame),
    /// A bare EOL between frames: a heart-beat.
    HeartBeat,
}

/// Incremental STOMP decoder with size limits.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub max_frame_len: usize,
    pub max_headers: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

impl Decoder {
    pub fn new(max_frame_len: usize) -> Self {
        Decoder {
            max_frame_len,
            ..Decoder::default()
        }
    }

    /// Decodes one item from the front of `buf`, consuming its bytes. `Ok(None)` means more
    /// bytes are needed; the buffer is then left untouched. After an error the stream is not
    /// recoverable (STOMP has no resynchronisation point) and the connection should be closed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Item>, DecodeError> {
        match buf.first() {
            None => return Ok(None),
            Some(b'\n') => {
                buf.advance(1);
                return Ok(Some(Item::HeartBeat));
            }
            Some(b'\r') => {
                return match buf.get(1) {
                    None => Ok(None),
                    Some(b'\n') => {
                        buf.advance(2);
                        Ok(Some(Item::HeartBeat))
                    }
                    Some(_) => Err(DecodeError::StrayCarriageReturn),
                };
            }
            Some(_) => {}
        }

        // Locate the command line and the header lines up to the blank line.
        let mut lines: Vec<&[u8]> = Vec::new();
        let mut pos = 0usize;
        let body_start = loop {
            let Some(rel) = buf[pos..].iter().position(|&b| b == b'\n') else {
                if buf.len() > self.max_frame_len {
                    return Err(DecodeError::FrameTooLarge {
                        limit: self.max_frame_len,
                    });
                }
                return Ok(None);
            };
            let mut line = &buf[pos..pos + rel];
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            pos += rel + 1;
            if pos > self.max_frame_len {
                return Err(DecodeError::FrameTooLarge {
                    limit: self.max_frame_len,
                });
            }
            if line.is_empty() && !lines.is_empty() {
                break pos;
            }
            if lines.len() > self.max_headers {
                return Err(DecodeError::TooManyHeaders {
                    limit: self.max_headers,
                });
            }
            lines.push(line);
        };

        let command_line = lines.first().copied().unwrap_or_default();
        let command = Command::from_bytes(command_line).ok_or_else(|| {
            DecodeError::UnknownCommand(String::from_utf8_lossy(command_line).into_owned())
        })?;
        let escaped = command.escapes_headers();
        let mut headers = Vec::with_capacity(lines.len().saturating_sub(1));
        for line in &lines[1..] {
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or(DecodeError::MissingColon)?;
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            let (name, value) = if escaped {
                (unescape(name)?, unescape(value)?)
            } else {
                (utf8(name)?, utf8(value)?)
            };
            headers.push((name, value));
        }

        let content_length = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| DecodeError::InvalidContentLength(v.clone()))
            })
            .transpose()?;

        let (body_end, frame_end) = match content_length {
            Some(len) => {
                let body_end = body_start
                    .checked_add(len)
                    .filter(|end| *end < self.max_frame_len)
                    .ok_or(DecodeError::FrameTooLarge {
                        limit: self.max_frame_len,
                    })?;
                match buf.get(body_end) {
                    None => return Ok(None),
                    Some(0) => (body_end, body_end + 1),
                    Some(_) => return Err(DecodeError::MissingNul),
                }
            }
            None => match buf[body_start..].iter().position(|&b| b == 0) {
                Some(rel) => (body_start + rel, body_start + rel + 1),
                None => {
                    if buf.len() > self.max_frame_len {
                        return Err(DecodeError::FrameTooLarge {
                            limit: self.max_frame_len,
                        });
                    }
                    return Ok(None);
                }
            },
        };

        let mut frame_bytes = buf.split_to(frame_end);
        frame_bytes.truncate(body_end);
        let body = frame_bytes.split_off(body_start).freeze();
        Ok(Some(Item::Frame(Frame {
            command,
            headers,
            body,
        })))
    }
}

fn utf8(raw: &[u8]) -> Result<String, DecodeError> {
    std::str::from_utf8(raw)
        .map(str::to_owned)
        .map_err(|_| DecodeError::InvalidUtf8)
}

fn unescape(raw: &[u8]) -> Result<String, DecodeError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            Some(b'\\') => out.push(b'\\'),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b'c') => out.push(b':'),
            _ => return Err(DecodeError::InvalidEscape),
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::InvalidUtf8)
}

/// Decodes every complete item in `input` (convenience for tests and fuzzing).
pub fn decode_all(input: &[u8], decoder: &Decoder) -> Result<Vec<Item>, DecodeError> {
    let mut buf = BytesMut::from(input);
    let mut items = Vec::new();
    while let Some(item) = decoder.decode(&mut buf)? {
        items.push(item);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &[u8]) -> Result<Option<Item>, DecodeError> {
        Decoder::default().decode(&mut BytesMut::from(input))
    }

    #[test]
    fn decodes_message_with_escaped_headers_and_crlf() {
        let item =
            one(b"MESSAGE\r\nfoo\\cbar:a\\nb\\\\c\\r\r\ndestination:/queue/x\r\n\r\nhello\0")
                .expect("valid frame")
                .expect("complete frame");
        let Item::Frame(frame) = item else {
            panic!("expected a frame, got {item:?}");
        };
        assert_eq!(frame.command, Command::Message);
        assert_eq!(frame.get("foo:bar"), Some("a\nb\\c\r"));
        assert_eq!(frame.get("destination"), Some("/queue/x"));
        assert_eq!(&frame.body[..], b"hello");
    }

    #[test]
    fn connected_headers_are_not_unescaped() {
        let item = one(b"CONNECTED\nserver:a\\cb\nversion:1.2\n\n\0")
            .expect("valid")
            .expect("complete");
        let Item::Frame(frame) = item else {
            panic!("expected frame");
        };
        assert_eq!(frame.get("server"), Some("a\\cb"));
    }

    #[test]
    fn content_length_allows_nul_in_body() {
        let frame = Frame::new(Command::Send)
            .header("destination", "/queue/a")
            .body(&b"a\0b\0"[..]);
        let bytes = frame.to_bytes().expect("encodable");
        let decoded = decode_all(&bytes, &Decoder::default()).expect("decodes");
        let [Item::Frame(back)] = decoded.as_slice() else {
            panic!("expected one frame, got {decoded:?}");
        };
        assert_eq!(back.body, frame.body);
        assert_eq!(back.get("content-length"), Some("4"));
    }

    #[test]
    fn first_repeated_header_wins() {
        let bytes = b"MESSAGE\nfoo:1\nfoo:2\n\n\0";
        let Some(Item::Frame(frame)) = one(bytes).expect("valid") else {
            panic!("expected frame");
        };
        assert_eq!(frame.get("foo"), Some("1"));
        assert_eq!(frame.headers.len(), 2);
    }

    #[test]
    fn heartbeats_and_partial_input() {
        let mut buf = BytesMut::from(&b"\n\r\nRECEIPT\nreceipt-id:7\n\n"[..]);
        let d = Decoder::default();
        assert_eq!(d.decode(&mut buf), Ok(Some(Item::HeartBeat)));
        assert_eq!(d.decode(&mut buf), Ok(Some(Item::HeartBeat)));
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\0\n");
        let Ok(Some(Item::Frame(frame))) = d.decode(&mut buf) else {
            panic!("expected the receipt frame");
        };
        assert_eq!(frame.get("receipt-id"), Some("7"));
        assert_eq!(d.decode(&mut buf), Ok(Some(Item::HeartBeat)));
        assert!(buf.is_empty());
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(matches!(
            one(b"BOGUS\n\n\0"),
            Err(DecodeError::UnknownCommand(_))
        ));
        assert_eq!(one(b"SEND\nnocolon\n\n\0"), Err(DecodeError::MissingColon));
        assert_eq!(one(b"SEND\na:\\t\n\n\0"), Err(DecodeError::InvalidEscape));
        assert_eq!(one(b"SEND\na:\xff\n\n\0"), Err(DecodeError::InvalidUtf8));
        assert!(matches!(
            one(b"SEND\ncontent-length:x\n\n\0"),
            Err(DecodeError::InvalidContentLength(_))
        ));
        assert_eq!(
            one(b"SEND\ncontent-length:1\n\nab\0"),
            Err(DecodeError::MissingNul)
        );
        assert_eq!(one(b"\rX"), Err(DecodeError::StrayCarriageReturn));
    }

    #[test]
    fn size_limits_are_enforced() {
        let d = Decoder::new(32);
        let mut big = BytesMut::from(&b"SEND\n"[..]);
        big.extend_from_slice(&[b'a'; 64]);
        assert!(matches!(
            d.decode(&mut big),
            Err(DecodeError::FrameTooLarge { .. })
        ));
        let mut huge_len = BytesMut::from(&b"SEND\ncontent-length:99999999999\n\n"[..]);
        assert!(matches!(
            Decoder::default().decode(&mut huge_len),
            Err(DecodeError::FrameTooLarge { .. })
        ));
        let mut body_without_nul = BytesMut::from(&b"SEND\n\n"[..]);
        body_without_nul.extend_from_slice(&[b'x'; 64]);
        assert!(matches!(
            d.decode(&mut body_without_nul),
            Err(DecodeError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn connect_frame_rejects_newline_in_value() {
        let frame = Frame::new(Command::Connect).header("passcode", "a\nb");
        assert!(frame.to_bytes().is_err());
        let ok = Frame::new(Command::Connect).header("passcode", "a:b");
        let bytes = ok.to_bytes().expect("colon in value is fine");
        assert_eq!(&bytes[..], b"CONNECT\npasscode:a:b\n\n\0");
    }

    #[test]
    fn debug_hides_passcode() {
        let frame = Frame::new(Command::Connect).header("passcode", "s3cret");
        let printed = format!("{frame:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("***"));
    }
}
