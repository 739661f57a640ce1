//! STOMP-over-WebSocket event source against a REAL RabbitMQ (`scripts/services/rabbitmq-up.sh`).

mod common;

use agent_events::{ConnectionStatus, EventSource, EventSourceConfig, StompSourceConfig};
use common::*;
use std::time::Duration;
use stomp::{ConnectOptions, StompClient};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub struct Rabbit {
    pub host: String,
    pub stomp_port: u16,
    pub ws_port: u16,
    pub vhost: String,
    pub user: String,
    pub password: String,
}

pub async fn rabbit() -> Option<Rabbit> {
    let r = Rabbit {
        host: env_or("WALDUR_TEST_STOMP_HOST", "127.0.0.1"),
        stomp_port: env_or("WALDUR_TEST_STOMP_PORT", "61613")
            .parse()
            .expect("port number"),
        ws_port: 15674,
        vhost: env_or("WALDUR_TEST_RABBITMQ_VHOST", "waldur"),
        user: env_or("WALDUR_TEST_RABBITMQ_USER", "waldur"),
        password: env_or("WALDUR_TEST_RABBITMQ_PASSWORD", "waldur"),
    };
    require_service("RabbitMQ STOMP", &r.host, r.stomp_port, "rabbitmq-up.sh").await?;
    Some(r)
}

impl Rabbit {
    pub fn source_config(&self, queue: &str) -> StompSourceConfig {
        StompSourceConfig::new(
            self.host.clone(),
            self.ws_port,
            "/ws",
            self.vhost.clone(),
            self.user.clone(),
            self.password.clone(),
            queue,
        )
    }

    pub async fn producer(&self) -> StompClient {
        let options = ConnectOptions::tcp(self.host.clone(), self.stomp_port)
            .vhost(self.vhost.clone())
            .credentials(self.user.clone(), self.password.clone());
        StompClient::connect(options)
            .await
            .expect("producer connects")
            .0
    }

    /// Publishes like Mastermind does (persistent JSON); sending to `/queue/` declares the
    /// queue durable, so it exists before the source subscribes via `/amq/queue/`.
    pub async fn publish(&self, queue: &str, body: &str) {
        let producer = self.producer().await;
        producer
            .send(
                &format!("/queue/{queue}"),
                &[("persistent", "true"), ("content-type", "application/json")],
                body.as_bytes().to_vec(),
            )
            .await
            .expect("publish confirmed");
        producer.disconnect().await.expect("disconnect");
    }
}

#[tokio::test]
async fn delivers_acks_redelivers_nacked_and_skips_malformed() {
    let Some(rabbit) = rabbit().await else { return };
    let queue = format!(
        "subscription_{}_offering_0123456789abcdef_order",
        unique("s")
    );
    rabbit.publish(&queue, "this is not json").await;
    rabbit
        .publish(
            &queue,
            r#"{"order_uuid":"abc123","order_state":"pending-provider"}"#,
        )
        .await;

    let (tx, mut rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let source = EventSource::spawn(
        EventSourceConfig::Stomp(rabbit.source_config(&queue)),
        tx,
        cancel.clone(),
    );
    let event = next_event(&mut rx, Duration::from_secs(15)).await;
    assert_eq!(source.status(), ConnectionStatus::Connected);
    assert_eq!(event.object_type, "order");
    assert_eq!(event.body["order_uuid"], "abc123");
    // RabbitMQ reports the destination the publisher used.
    assert!(event.origin.ends_with(&queue), "{}", event.origin);
    assert!(!event.redelivered);
    assert_eq!(source.malformed_count(), 1, "the non-JSON body was skipped");

    // Handler failed: NACK → the broker hands it out again.
    event.ack.nack().expect("nack queued");
    let again = next_event(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(again.body["order_uuid"], "abc123");
    assert!(again.redelivered);
    // Dropping the handle is a NACK too.
    drop(again);
    let third = next_event(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(third.body["order_uuid"], "abc123");
    third.ack.ack().expect("ack queued");
    assert_no_event(&mut rx, Duration::from_secs(1)).await;

    cancel.cancel();
    source.join().await;

    // Acked for good: a fresh source sees nothing; the malformed one is gone too.
    let (tx, mut rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let source = EventSource::spawn(
        EventSourceConfig::Stomp(rabbit.source_config(&queue)),
        tx,
        cancel.clone(),
    );
    wait_status(&source, Duration::from_secs(15), |s| {
        *s == ConnectionStatus::Connected
    })
    .await;
    assert_no_event(&mut rx, Duration::from_secs(1)).await;
    cancel.cancel();
    let status = source.status_receiver();
    source.join().await;
    assert_eq!(*status.borrow(), ConnectionStatus::Stopped);
}

#[tokio::test]
async fn unified_queue_takes_object_type_from_payload() {
    let Some(rabbit) = rabbit().await else { return };
    let queue = unique("consumer_");
    rabbit
        .publish(&queue, r#"{"object_type":"resource","resource_uuid":"r1"}"#)
        .await;
    let mut config = rabbit.source_config(&queue);
    config.destination = Some(format!("/queue/{queue}"));
    let (tx, mut rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let source = EventSource::spawn(EventSourceConfig::Stomp(config), tx, cancel.clone());
    let event = next_event(&mut rx, Duration::from_secs(15)).await;
    assert_eq!(event.object_type, "resource");
    event.ack.ack().expect("ack");
    cancel.cancel();
    source.join().await;
}

#[tokio::test]
async fn bad_credentials_report_reconnecting_with_the_error() {
    let Some(rabbit) = rabbit().await else { return };
    let mut config = rabbit.source_config(&unique("q"));
    config.passcode = "wrong".into();
    let (tx, _rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let source = EventSource::spawn(EventSourceConfig::Stomp(config), tx, cancel.clone());
    let status = wait_status(&source, Duration::from_secs(15), |s| {
        matches!(s, ConnectionStatus::Reconnecting { .. })
    })
    .await;
    let ConnectionStatus::Reconnecting {
        attempt,
        last_error,
    } = status
    else {
        unreachable!()
    };
    assert_eq!(attempt, 1);
    assert!(last_error.contains("broker error"), "{last_error}");
    assert!(
        !last_error.contains("wrong"),
        "passcode leaked: {last_error}"
    );
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), source.join())
        .await
        .expect("cancellation interrupts the backoff sleep");
}
