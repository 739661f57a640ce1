//! Against a REAL RabbitMQ with the STOMP and Web-STOMP plugins
//! (`bash scripts/services/rabbitmq-up.sh`). Without the broker these tests skip with a note,
//! unless `CI=true`, where they fail.

use std::time::Duration;
use stomp::{AckMode, ConnectOptions, Message, MessageStream, StompClient, StompError};

struct Rabbit {
    ws_url: String,
    host: String,
    port: u16,
    vhost: String,
    user: String,
    password: String,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn rabbit() -> Option<Rabbit> {
    let r = Rabbit {
        ws_url: env_or("WALDUR_TEST_STOMP_WS_URL", "ws://127.0.0.1:15674/ws"),
        host: env_or("WALDUR_TEST_STOMP_HOST", "127.0.0.1"),
        port: env_or("WALDUR_TEST_STOMP_PORT", "61613")
            .parse()
            .expect("WALDUR_TEST_STOMP_PORT is a port number"),
        vhost: env_or("WALDUR_TEST_RABBITMQ_VHOST", "waldur"),
        user: env_or("WALDUR_TEST_RABBITMQ_USER", "waldur"),
        password: env_or("WALDUR_TEST_RABBITMQ_PASSWORD", "waldur"),
    };
    let reachable = tokio::net::TcpStream::connect((r.host.as_str(), r.port))
        .await
        .is_ok();
    if reachable {
        return Some(r);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "RabbitMQ STOMP not reachable at {}:{} (run scripts/services/rabbitmq-up.sh)",
            r.host, r.port
        );
    }
    eprintln!("note: RabbitMQ not running, skipping (run scripts/services/rabbitmq-up.sh)");
    None
}

impl Rabbit {
    fn ws(&self) -> ConnectOptions {
        ConnectOptions::websocket(&self.ws_url)
            .expect("valid ws url")
            .vhost(self.vhost.clone())
            .credentials(self.user.clone(), self.password.clone())
    }
    fn tcp(&self) -> ConnectOptions {
        ConnectOptions::tcp(self.host.clone(), self.port)
            .vhost(self.vhost.clone())
            .credentials(self.user.clone(), self.password.clone())
    }
}

fn unique_queue(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after epoch")
        .as_nanos();
    format!("stomp-test-{tag}-{nanos}")
}

async fn next_message(messages: &mut MessageStream) -> Message {
    tokio::time::timeout(Duration::from_secs(10), messages.recv())
        .await
        .expect("message within 10 s")
        .expect("stream open")
        .expect("no session error")
}

async fn assert_quiet(messages: &mut MessageStream, for_how_long: Duration) {
    if let Ok(item) = tokio::time::timeout(for_how_long, messages.recv()).await {
        panic!("expected no delivery, got {item:?}");
    }
}

const PERSISTENT: &[(&str, &str)] = &[("persistent", "true"), ("content-type", "application/json")];

#[tokio::test]
async fn websocket_subscribe_receive_ack_then_nothing_is_redelivered() {
    let Some(rabbit) = rabbit().await else { return };
    let dest = format!("/queue/{}", unique_queue("ws"));
    let (consumer, mut messages) = StompClient::connect(rabbit.ws()).await.expect("WS connect");
    assert_eq!(consumer.session_info().version, "1.2");
    consumer
        .subscribe(&dest, "sub-1", AckMode::ClientIndividual)
        .await
        .expect("subscribe");

    let (producer, _) = StompClient::connect(rabbit.tcp())
        .await
        .expect("TCP connect");
    let body =
        "{\"order_uuid\":\"4f0c\",\"order_state\":\"pending-provider\",\"note\":\"a:b\\\\c\"}";
    producer
        .send(&dest, PERSISTENT, body.as_bytes().to_vec())
        .await
        .expect("send confirmed by receipt");

    let message = next_message(&mut messages).await;
    assert_eq!(&message.body[..], body.as_bytes());
    assert_eq!(message.subscription, "sub-1");
    assert!(
        message.ack_id.is_some(),
        "client-individual gives an ack id"
    );
    assert!(!message.redelivered());
    consumer.ack(&message).expect("ack");
    consumer.disconnect().await.expect("disconnect receipt");

    let (again, mut messages) = StompClient::connect(rabbit.ws()).await.expect("reconnect");
    again
        .subscribe(&dest, "sub-1", AckMode::ClientIndividual)
        .await
        .expect("subscribe");
    assert_quiet(&mut messages, Duration::from_secs(1)).await;
    again.disconnect().await.expect("disconnect");
    producer.disconnect().await.expect("disconnect");
}

#[tokio::test]
async fn tcp_unacked_and_nacked_messages_are_redelivered() {
    let Some(rabbit) = rabbit().await else { return };
    let dest = format!("/queue/{}", unique_queue("tcp"));
    let (producer, _) = StompClient::connect(rabbit.tcp()).await.expect("connect");
    // Sending first declares the (durable) queue.
    producer
        .send(&dest, PERSISTENT, &b"{\"n\":1}"[..])
        .await
        .expect("send");

    // Received but never acked: the connection dies abruptly.
    {
        let (consumer, mut messages) = StompClient::connect(rabbit.tcp()).await.expect("connect");
        consumer
            .subscribe(&dest, "s", AckMode::ClientIndividual)
            .await
            .expect("subscribe");
        let message = next_message(&mut messages).await;
        assert_eq!(&message.body[..], b"{\"n\":1}");
        drop(consumer);
        drop(messages);
    }

    let (consumer, mut messages) = StompClient::connect(rabbit.tcp()).await.expect("connect");
    consumer
        .subscribe(&dest, "s", AckMode::ClientIndividual)
        .await
        .expect("subscribe");
    let message = next_message(&mut messages).await;
    assert_eq!(&message.body[..], b"{\"n\":1}");
    assert!(message.redelivered(), "headers: {:?}", message.headers);

    // NACK puts it back; RabbitMQ redelivers it.
    consumer.nack(&message).expect("nack");
    let again = next_message(&mut messages).await;
    assert_eq!(&again.body[..], b"{\"n\":1}");
    assert!(again.redelivered());
    consumer.ack(&again).expect("ack");
    assert_quiet(&mut messages, Duration::from_millis(500)).await;
    consumer.disconnect().await.expect("disconnect");
    producer.disconnect().await.expect("disconnect");
}

#[tokio::test]
async fn amq_queue_destination_and_broker_errors() {
    let Some(rabbit) = rabbit().await else { return };
    let (client, mut messages) = StompClient::connect(rabbit.ws()).await.expect("connect");
    // /amq/queue/ never declares: a missing queue is an ERROR that ends the session.
    let err = client
        .subscribe(
            &format!("/amq/queue/{}", unique_queue("missing")),
            "s",
            AckMode::ClientIndividual,
        )
        .await
        .expect_err("no such queue");
    assert!(
        matches!(
            &err,
            StompError::Server { .. } | StompError::ConnectionClosed
        ),
        "{err:?}"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), messages.recv())
        .await
        .expect("session ends");
    assert!(matches!(end, Some(Err(_)) | None), "{end:?}");

    let bad_password = rabbit.tcp().credentials(rabbit.user.clone(), "wrong");
    let err = StompClient::connect(bad_password)
        .await
        .expect_err("login refused");
    assert!(matches!(err, StompError::Server { .. }), "{err:?}");

    let bad_vhost = rabbit.ws().vhost("no-such-vhost");
    let err = StompClient::connect(bad_vhost)
        .await
        .expect_err("vhost refused");
    assert!(matches!(err, StompError::Server { .. }), "{err:?}");
}

#[tokio::test]
async fn heartbeats_keep_a_quiet_websocket_connection_alive_past_30s() {
    let Some(rabbit) = rabbit().await else { return };
    let dest = format!("/queue/{}", unique_queue("quiet"));
    let (consumer, mut messages) = StompClient::connect(rabbit.ws()).await.expect("connect");
    let negotiated = consumer.session_info().heartbeat;
    assert_eq!(negotiated.outgoing, Some(Duration::from_secs(10)));
    assert_eq!(negotiated.incoming, Some(Duration::from_secs(10)));
    consumer
        .subscribe(&dest, "s", AckMode::ClientIndividual)
        .await
        .expect("subscribe");
    assert_quiet(&mut messages, Duration::from_secs(33)).await;
    assert!(!consumer.is_closed());

    let (producer, _) = StompClient::connect(rabbit.tcp()).await.expect("connect");
    producer
        .send(&dest, PERSISTENT, &b"{\"still\":\"alive\"}"[..])
        .await
        .expect("send");
    let message = next_message(&mut messages).await;
    assert_eq!(&message.body[..], b"{\"still\":\"alive\"}");
    consumer.ack(&message).expect("ack");
    consumer.disconnect().await.expect("disconnect");
    producer.disconnect().await.expect("disconnect");
}
