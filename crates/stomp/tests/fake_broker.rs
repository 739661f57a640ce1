//! Session behaviour against a scripted in-process broker (no external service needed):
//! heart-beats are sent, a silent peer is detected, ERROR frames surface, receipts resolve.

use bytes::BytesMut;
use std::time::Duration;
use stomp::frame::{Command, Decoder, Frame, Item};
use stomp::{AckMode, ConnectOptions, StompClient, StompError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn read_item(sock: &mut TcpStream, buf: &mut BytesMut) -> Option<Item> {
    let decoder = Decoder::default();
    loop {
        if let Some(item) = decoder.decode(buf).expect("client sends valid frames") {
            return Some(item);
        }
        if sock.read_buf(buf).await.expect("read") == 0 {
            return None;
        }
    }
}

async fn read_frame(sock: &mut TcpStream, buf: &mut BytesMut) -> Option<Frame> {
    loop {
        match read_item(sock, buf).await? {
            Item::Frame(f) => return Some(f),
            Item::HeartBeat => continue,
        }
    }
}

async fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

#[tokio::test]
async fn connect_frame_carries_vhost_credentials_and_heartbeat() {
    let (listener, port) = listener().await;
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut buf = BytesMut::new();
        let connect = read_frame(&mut sock, &mut buf).await.expect("CONNECT");
        sock.write_all(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0")
            .await
            .expect("write");
        connect
    });
    let options = ConnectOptions::tcp("127.0.0.1", port)
        .vhost("waldur")
        .credentials("user", "pa:ss");
    let (client, _messages) = StompClient::connect(options).await.expect("connects");
    let connect = server.await.expect("server task");
    assert_eq!(connect.command, Command::Connect);
    assert_eq!(connect.get("accept-version"), Some("1.2"));
    assert_eq!(connect.get("host"), Some("waldur"));
    assert_eq!(connect.get("login"), Some("user"));
    assert_eq!(connect.get("passcode"), Some("pa:ss"));
    assert_eq!(connect.get("heart-beat"), Some("10000,10000"));
    assert_eq!(client.session_info().heartbeat.outgoing, None);
}

#[tokio::test]
async fn sends_heartbeats_and_detects_a_silent_peer() {
    let (listener, port) = listener().await;
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut buf = BytesMut::new();
        read_frame(&mut sock, &mut buf).await.expect("CONNECT");
        // We ask for client beats every 200 ms and promise ours every 300 ms, then go silent.
        sock.write_all(b"CONNECTED\nversion:1.2\nheart-beat:300,200\n\n\0")
            .await
            .expect("write");
        let mut beats = 0;
        while let Ok(Some(item)) =
            tokio::time::timeout(Duration::from_secs(3), read_item(&mut sock, &mut buf)).await
        {
            if item == Item::HeartBeat {
                beats += 1;
            }
        }
        beats
    });
    let options = ConnectOptions::tcp("127.0.0.1", port)
        .heartbeat(Duration::from_millis(100), Duration::from_millis(300));
    let started = tokio::time::Instant::now();
    let (client, mut messages) = StompClient::connect(options).await.expect("connects");
    let negotiated = client.session_info().heartbeat;
    assert_eq!(negotiated.outgoing, Some(Duration::from_millis(200)));
    assert_eq!(negotiated.incoming, Some(Duration::from_millis(300)));
    let end = tokio::time::timeout(Duration::from_secs(5), messages.recv())
        .await
        .expect("dead peer detected in time");
    assert!(
        matches!(end, Some(Err(StompError::HeartbeatTimeout(_)))),
        "{end:?}"
    );
    // tolerance 2 × 300 ms
    assert!(started.elapsed() >= Duration::from_millis(550));
    for _ in 0..100 {
        if client.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        client.ack_id("x").is_err(),
        "dead session still accepts frames"
    );
    let beats = server.await.expect("server task");
    assert!(beats >= 2, "client sent only {beats} heart-beats");
}

#[tokio::test]
async fn error_frame_fails_pending_receipt_and_ends_stream() {
    let (listener, port) = listener().await;
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut buf = BytesMut::new();
        read_frame(&mut sock, &mut buf).await.expect("CONNECT");
        sock.write_all(b"CONNECTED\nversion:1.2\n\n\0")
            .await
            .expect("write");
        let subscribe = read_frame(&mut sock, &mut buf).await.expect("SUBSCRIBE");
        let receipt = subscribe
            .get("receipt")
            .expect("receipt requested")
            .to_owned();
        let error = Frame::new(Command::Error)
            .header("message", "not_found")
            .header("receipt-id", receipt)
            .body(&b"NOT_FOUND - no queue 'q'"[..]);
        sock.write_all(&error.to_bytes().expect("encode"))
            .await
            .expect("write");
    });
    let (client, mut messages) = StompClient::connect(ConnectOptions::tcp("127.0.0.1", port))
        .await
        .expect("connects");
    let err = client
        .subscribe("/amq/queue/q", "s1", AckMode::ClientIndividual)
        .await
        .expect_err("subscription refused");
    assert_eq!(
        err,
        StompError::Server {
            message: "not_found".into(),
            body: "NOT_FOUND - no queue 'q'".into()
        }
    );
    assert!(matches!(
        messages.recv().await,
        Some(Err(StompError::Server { .. }))
    ));
    assert!(messages.recv().await.is_none());
}

#[tokio::test]
async fn connect_error_frame_is_reported() {
    let (listener, port) = listener().await;
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut buf = BytesMut::new();
        read_frame(&mut sock, &mut buf).await.expect("CONNECT");
        sock.write_all(b"ERROR\nmessage:Access refused\n\n\0")
            .await
            .expect("write");
    });
    let err = StompClient::connect(ConnectOptions::tcp("127.0.0.1", port))
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, StompError::Server { message, .. } if message == "Access refused"),
        "{err:?}"
    );
}

#[tokio::test]
async fn messages_ack_and_disconnect_receipt() {
    let (listener, port) = listener().await;
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut buf = BytesMut::new();
        read_frame(&mut sock, &mut buf).await.expect("CONNECT");
        sock.write_all(b"CONNECTED\nversion:1.2\n\n\0")
            .await
            .expect("write");
        let message = Frame::new(Command::Message)
            .header("destination", "/queue/a")
            .header("subscription", "s1")
            .header("message-id", "m1")
            .header("ack", "ack-1")
            .body(&b"{\"x\":1}"[..]);
        sock.write_all(&message.to_bytes().expect("encode"))
            .await
            .expect("write");
        let ack = read_frame(&mut sock, &mut buf).await.expect("ACK");
        let disconnect = read_frame(&mut sock, &mut buf).await.expect("DISCONNECT");
        let receipt = Frame::new(Command::Receipt).header(
            "receipt-id",
            disconnect.get("receipt").expect("receipt").to_owned(),
        );
        sock.write_all(&receipt.to_bytes().expect("encode"))
            .await
            .expect("write");
        (ack, disconnect.command)
    });
    let (client, mut messages) = StompClient::connect(ConnectOptions::tcp("127.0.0.1", port))
        .await
        .expect("connects");
    let message = messages.recv().await.expect("item").expect("message");
    assert_eq!(message.ack_id.as_deref(), Some("ack-1"));
    assert_eq!(&message.body[..], b"{\"x\":1}");
    client.ack(&message).expect("ack queued");
    client.disconnect().await.expect("receipt received");
    let (ack, disconnect) = server.await.expect("server");
    assert_eq!(ack.command, Command::Ack);
    assert_eq!(ack.get("id"), Some("ack-1"));
    assert_eq!(disconnect, Command::Disconnect);
    // A deliberate disconnect ends the stream without an error.
    assert!(messages.recv().await.is_none());
    assert!(client.is_closed());
}
