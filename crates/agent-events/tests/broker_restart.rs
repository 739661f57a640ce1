//! The source reconnects by itself when the REAL broker restarts and receives messages sent
//! afterwards. Restarts RabbitMQ and mosquitto through the repo's service scripts.

mod common;

use agent_events::{
    ConnectionStatus, EventSource, EventSourceConfig, MqttSourceConfig, MqttTransport,
    StompSourceConfig,
};
use common::*;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::time::Duration;
use stomp::{ConnectOptions, StompClient};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

async fn stomp_publish(queue: &str, body: &str) {
    let options = ConnectOptions::tcp("127.0.0.1", 61613)
        .vhost("waldur")
        .credentials("waldur", "waldur");
    let (producer, _) = StompClient::connect(options).await.expect("producer");
    producer
        .send(
            &format!("/queue/{queue}"),
            &[("persistent", "true")],
            body.as_bytes().to_vec(),
        )
        .await
        .expect("published");
    producer.disconnect().await.expect("disconnect");
}

#[tokio::test]
async fn stomp_source_survives_rabbitmq_restart() {
    if require_service("RabbitMQ STOMP", "127.0.0.1", 61613, "rabbitmq-up.sh")
        .await
        .is_none()
    {
        return;
    }
    let queue = format!("subscription_{}_offering_ff_resource", unique("r"));
    stomp_publish(&queue, r#"{"resource_uuid":"before"}"#).await;
    let config = StompSourceConfig::new(
        "127.0.0.1",
        15674,
        "/ws",
        "waldur",
        "waldur",
        "waldur",
        &queue,
    );
    let (tx, mut rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let source = EventSource::spawn(EventSourceConfig::Stomp(config), tx, cancel.clone());
    let event = next_event(&mut rx, Duration::from_secs(15)).await;
    assert_eq!(event.body["resource_uuid"], "before");
    assert_eq!(event.object_type, "resource");
    event.ack.ack().expect("ack");

    service_script("rabbitmq-down.sh").await;
    let status = wait_status(&source, Duration::from_secs(30), |s| {
        matches!(s, ConnectionStatus::Reconnecting { .. })
    })
    .await;
    eprintln!("while RabbitMQ is down: {status:?}");
    service_script("rabbitmq-up.sh").await;

    // The durable queue survived; the source re-subscribes on its own.
    wait_status(&source, Duration::from_secs(90), |s| {
        *s == ConnectionStatus::Connected
    })
    .await;
    stomp_publish(&queue, r#"{"resource_uuid":"after"}"#).await;
    let event = next_event(&mut rx, Duration::from_secs(20)).await;
    assert_eq!(event.body["resource_uuid"], "after");
    event.ack.ack().expect("ack");
    cancel.cancel();
    source.join().await;
}

async fn mqtt_publish(topic: &str, body: &str) {
    let mut options = MqttOptions::new(unique("pub-"), "127.0.0.1", 1883);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, body.as_bytes().to_vec())
        .await
        .expect("queued");
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("publisher: {e}"),
            }
        }
    })
    .await
    .expect("PUBACK");
}

#[tokio::test]
async fn mqtt_websocket_source_survives_mosquitto_restart() {
    if require_service("mosquitto", "127.0.0.1", 1883, "mosquitto-up.sh")
        .await
        .is_none()
    {
        return;
    }
    let mut config = MqttSourceConfig::new(
        "127.0.0.1",
        9001,
        MqttTransport::WebSocket,
        unique("sub"),
        unique("off"),
        vec!["order".into()],
    );
    config.keep_alive = Duration::from_secs(5);
    let topic = config.topic("order");
    let (tx, mut rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let source = EventSource::spawn(EventSourceConfig::Mqtt(config), tx, cancel.clone());
    wait_status(&source, Duration::from_secs(10), |s| {
        *s == ConnectionStatus::Connected
    })
    .await;

    service_script("mosquitto-down.sh").await;
    wait_status(&source, Duration::from_secs(30), |s| {
        matches!(s, ConnectionStatus::Reconnecting { .. })
    })
    .await;
    service_script("mosquitto-up.sh").await;
    wait_status(&source, Duration::from_secs(60), |s| {
        *s == ConnectionStatus::Connected
    })
    .await;
    mqtt_publish(&topic, r#"{"order_uuid":"after-restart"}"#).await;
    let event = next_event(&mut rx, Duration::from_secs(15)).await;
    assert_eq!(event.body["order_uuid"], "after-restart");
    event.ack.ack().expect("ack");
    cancel.cancel();
    source.join().await;
}
