//! MQTT event source against a REAL mosquitto (`scripts/services/mosquitto-up.sh`), over
//! WebSocket and TCP.

mod common;

use agent_events::{
    ConnectionStatus, EventSource, EventSourceConfig, MqttSourceConfig, MqttTransport,
};
use common::*;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

async fn mosquitto() -> Option<(String, u16, u16)> {
    let host = env_or("WALDUR_TEST_MQTT_HOST", "127.0.0.1");
    let port: u16 = env_or("WALDUR_TEST_MQTT_PORT", "1883")
        .parse()
        .expect("port number");
    require_service("mosquitto", &host, port, "mosquitto-up.sh").await?;
    Some((host, port, 9001))
}

/// Publishes one QoS 1 message and waits for the broker's PUBACK.
async fn publish(host: &str, port: u16, topic: &str, body: &str) {
    let mut options = MqttOptions::new(unique("pub-"), host, port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, body.as_bytes().to_vec())
        .await
        .expect("publish queued");
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("publisher failed: {e}"),
            }
        }
    })
    .await
    .expect("PUBACK in time");
    let _ = client.disconnect().await;
}

fn config(host: &str, port: u16, transport: MqttTransport) -> MqttSourceConfig {
    let mut c = MqttSourceConfig::new(
        host,
        port,
        transport,
        unique("sub"),
        unique("off"),
        vec!["order".into(), "user_role".into()],
    );
    c.keep_alive = Duration::from_secs(5);
    c
}

#[tokio::test]
async fn websocket_delivers_acks_and_redelivers_nacked() {
    let Some((host, tcp_port, ws_port)) = mosquitto().await else {
        return;
    };
    let config = config(&host, ws_port, MqttTransport::WebSocket);
    let (tx, mut rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let source = EventSource::spawn(EventSourceConfig::Mqtt(config.clone()), tx, cancel.clone());
    wait_status(&source, Duration::from_secs(10), |s| {
        *s == ConnectionStatus::Connected
    })
    .await;

    publish(&host, tcp_port, &config.topic("user_role"), "{broken").await;
    publish(
        &host,
        tcp_port,
        &config.topic("order"),
        r#"{"order_uuid":"o1","order_state":"pending-provider"}"#,
    )
    .await;
    let event = next_event(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(event.object_type, "order");
    assert_eq!(event.body["order_uuid"], "o1");
    assert_eq!(event.origin, config.topic("order"));
    assert_eq!(source.malformed_count(), 1);

    // NACK: no PUBACK, the source reconnects its persistent session, the broker resends.
    event.ack.nack().expect("nack queued");
    let again = next_event(&mut rx, Duration::from_secs(15)).await;
    assert_eq!(again.body["order_uuid"], "o1");
    assert!(again.redelivered, "broker marks the resend as DUP");
    again.ack.ack().expect("ack queued");

    publish(
        &host,
        tcp_port,
        &config.topic("user_role"),
        r#"{"project_uuid":"p1","granted":true}"#,
    )
    .await;
    let role = next_event(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(role.object_type, "user_role");
    role.ack.ack().expect("ack queued");
    assert_no_event(&mut rx, Duration::from_secs(1)).await;
    cancel.cancel();
    source.join().await;
}

#[tokio::test]
async fn tcp_delivers_and_acked_messages_stay_acked_across_restart_of_the_source() {
    let Some((host, tcp_port, _)) = mosquitto().await else {
        return;
    };
    let config = config(&host, tcp_port, MqttTransport::Tcp);
    let (tx, mut rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let source = EventSource::spawn(EventSourceConfig::Mqtt(config.clone()), tx, cancel.clone());
    wait_status(&source, Duration::from_secs(10), |s| {
        *s == ConnectionStatus::Connected
    })
    .await;
    publish(
        &host,
        tcp_port,
        &config.topic("order"),
        r#"{"order_uuid":"t1"}"#,
    )
    .await;
    let event = next_event(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(event.body["order_uuid"], "t1");
    event.ack.ack().expect("ack");
    cancel.cancel();
    source.join().await;

    // Same client id, persistent session: nothing is pending, so nothing comes back, and
    // messages published while the source was away are delivered on return.
    publish(
        &host,
        tcp_port,
        &config.topic("order"),
        r#"{"order_uuid":"t2"}"#,
    )
    .await;
    let (tx, mut rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let source = EventSource::spawn(EventSourceConfig::Mqtt(config.clone()), tx, cancel.clone());
    let event = next_event(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(event.body["order_uuid"], "t2");
    event.ack.ack().expect("ack");
    assert_no_event(&mut rx, Duration::from_secs(1)).await;
    cancel.cancel();
    source.join().await;
}

#[tokio::test]
async fn slow_consumer_does_not_starve_keepalive() {
    let Some((host, tcp_port, _)) = mosquitto().await else {
        return;
    };
    let mut config = config(&host, tcp_port, MqttTransport::Tcp);
    config.keep_alive = Duration::from_secs(2);
    let (tx, mut rx) = mpsc::channel(1);
    let cancel = CancellationToken::new();
    let source = EventSource::spawn(EventSourceConfig::Mqtt(config.clone()), tx, cancel.clone());
    wait_status(&source, Duration::from_secs(10), |s| {
        *s == ConnectionStatus::Connected
    })
    .await;
    for n in 0..3 {
        publish(
            &host,
            tcp_port,
            &config.topic("order"),
            &format!(r#"{{"n":{n}}}"#),
        )
        .await;
    }
    // Far longer than 1.5 × keep-alive: the broker would drop a connection whose event loop
    // is blocked on a full channel.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for n in 0..3 {
        let event = next_event(&mut rx, Duration::from_secs(5)).await;
        assert_eq!(event.body["n"], n);
        assert!(
            !event.redelivered,
            "connection was dropped and the event resent"
        );
        event.ack.ack().expect("ack");
    }
    assert_eq!(source.status(), ConnectionStatus::Connected);
    assert_eq!(
        source
            .stats()
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    cancel.cancel();
    source.join().await;
}
