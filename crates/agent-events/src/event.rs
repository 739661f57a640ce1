//! What a running source hands to the agent: [`Event`] with its [`AckHandle`].

use bytes::Bytes;
use tokio::sync::mpsc;

/// A received event. Call `ack.ack()` only after its handler succeeded; `ack.nack()` or
/// dropping the handle has the broker redeliver it.
#[derive(Debug)]
pub struct Event {
    /// Waldur observable object type (`order`, `user_role`, `resource`, …).
    pub object_type: String,
    /// Parsed JSON payload (always valid JSON; malformed bodies never reach the consumer).
    pub body: serde_json::Value,
    /// The body as received.
    pub raw: Bytes,
    /// Queue destination or MQTT topic it came from.
    pub origin: String,
    /// The broker says it delivered this message before (handler may have run already).
    pub redelivered: bool,
    pub ack: AckHandle,
}

#[derive(Debug)]
pub(crate) enum AckToken {
    Stomp(String),
    Mqtt(Box<rumqttc::Publish>),
    /// QoS 0 MQTT messages: nothing to settle.
    Unackable,
}

#[derive(Debug)]
pub(crate) struct AckRequest {
    pub generation: u64,
    pub token: AckToken,
    pub positive: bool,
}

/// Settles one event. Consuming methods, so an event is settled at most once; dropping an
/// unsettled handle NACKs it.
///
/// Settlement is asynchronous: `Ok` means it was queued to the connection that delivered the
/// event. If that connection is gone by then the broker redelivers the event anyway
/// (at-least-once), so handlers must be idempotent — as Waldur's are.
#[derive(Debug)]
pub struct AckHandle {
    inner: Option<(mpsc::UnboundedSender<AckRequest>, u64, AckToken)>,
}

/// The event source that delivered the event has stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event source stopped; the broker will redeliver the event")]
pub struct AckError;

impl AckHandle {
    pub(crate) fn new(
        tx: mpsc::UnboundedSender<AckRequest>,
        generation: u64,
        token: AckToken,
    ) -> Self {
        AckHandle {
            inner: Some((tx, generation, token)),
        }
    }

    /// Handler succeeded: remove the message from the queue.
    pub fn ack(mut self) -> Result<(), AckError> {
        self.settle(true)
    }

    /// Handler failed: return the message for redelivery (STOMP NACK → requeue; MQTT: withheld
    /// PUBACK, redelivered after the source reconnects its persistent session).
    pub fn nack(mut self) -> Result<(), AckError> {
        self.settle(false)
    }

    fn settle(&mut self, positive: bool) -> Result<(), AckError> {
        let (tx, generation, token) = self.inner.take().ok_or(AckError)?;
        tx.send(AckRequest {
            generation,
            token,
            positive,
        })
        .map_err(|_| AckError)
    }
}

impl Drop for AckHandle {
    fn drop(&mut self) {
        if self.inner.is_some() {
            let _ = self.settle(false);
        }
    }
}
