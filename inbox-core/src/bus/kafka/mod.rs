//! The Kafka bus of the production mode (rdkafka, bundled librdkafka).
//!
//! - Producer: idempotent, `acks=all`; a publish resolves only after the broker's acknowledgement,
//!   so a connector advances its cursor only then.
//! - Consumers: offsets are *stored* only after the work they stand for is done (for the core: the
//!   store transaction committed; for the connectors: the delivery report published) and committed
//!   by librdkafka's auto-commit, and synchronously when partitions are revoked or the consumer
//!   closes — the pattern of Vector's kafka source. A crash replays at most the records since the
//!   last commit, which the funnel recognises as duplicates.

mod config;
mod consumers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{Bus, BusError, InboundConsumer, OutboundConsumer, Received};
use crate::envelope::{DomainEvent, InboundEvent, OutboundMessage};

pub use config::{KafkaConfig, TopicMismatch, TopicSettings, Topics};
pub use consumers::{KafkaAck, KafkaInbound, KafkaOutbound, LagProbe, Rebalancing};

fn not_accepted(e: KafkaError) -> BusError {
    BusError::NotAccepted(e.to_string())
}

/// How long a publish may wait for the broker before it is reported as not accepted.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// The producing side, shared by every service.
#[derive(Clone)]
pub struct KafkaBus {
    producer: FutureProducer,
    topics: Topics,
    domain: broadcast::Sender<DomainEvent>,
    intake: Arc<IntakeBreaker>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    pub fn new(config: &KafkaConfig) -> Result<KafkaBus, BusError> {
        let producer: FutureProducer = config
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(not_accepted)?;
        let (domain, _) = broadcast::channel(4096);
        Ok(KafkaBus {
            producer,
            topics: config.topics.clone(),
            domain,
            intake: Arc::new(IntakeBreaker::default()),
        })
    }

    async fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), BusError> {
        self.send_raw(topic, key, payload)
            .await
            .map_err(not_accepted)
    }

    async fn send_raw(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), KafkaError> {
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(payload),
                Timeout::After(PUBLISH_TIMEOUT),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    /// Publishes a record that could not be stored, with its error, on the dead-letter topic.
    pub async fn publish_dead_letter(&self, payload: &str, error: &str) -> Result<(), BusError> {
        let body = serde_json::json!({"error": error, "payload": payload}).to_string();
        self.send(&self.topics.dead_letter, "", body.as_bytes())
            .await
    }

    /// Feeds [`Bus::subscribe_domain`] from `inbox.events`: every instance sees every event, so
    /// each listens in a group of its own, from the newest event on.
    pub fn listen_domain(
        &self,
        config: &KafkaConfig,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, BusError> {
        let group = format!("inbox-web-{}", uuid::Uuid::now_v7().simple());
        let consumer: StreamConsumer = config
            .client()
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .create()
            .map_err(not_accepted)?;
        consumer
            .subscribe(&[&self.topics.events])
            .map_err(not_accepted)?;
        let domain = self.domain.clone();
        Ok(tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    message = consumer.recv() => message,
                };
                match message {
                    Ok(message) => {
                        match DomainEvent::from_json(message.payload().unwrap_or_default()) {
                            Ok(event) => {
                                let _ = domain.send(event);
                            }
                            Err(error) => tracing::warn!(%error, "Undecodable domain event."),
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Domain event consumer error.");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }))
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish_inbound(&self, event: &InboundEvent) -> Result<(), BusError> {
        let Some(admitted) = self.intake.admit() else {
            return Err(BusError::NotAccepted(
                "the Kafka brokers are unavailable (a publish timed out); retry later".into(),
            ));
        };
        let sent = self
            .send_raw(
                &self.topics.inbound,
                &event.partition_key(),
                &event.to_json(),
            )
            .await;
        let timed_out = matches!(
            &sent,
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut)
        );
        admitted.done(sent.is_ok(), timed_out);
        sent.map_err(not_accepted)
    }

    async fn publish_outbound(&self, message: &OutboundMessage) -> Result<(), BusError> {
        let key = message.conversation_id.to_string();
        self.send(&self.topics.outbound, &key, &message.to_json())
            .await
    }

    async fn publish_domain(&self, events: &[DomainEvent]) -> Result<(), BusError> {
        let sends = events.iter().map(|event| {
            let key = event.conversation_id.to_string();
            let payload = event.to_json();
            async move { self.send(&self.topics.events, &key, &payload).await }
        });
        for result in futures::future::join_all(sends).await {
            result?;
        }
        Ok(())
    }

    fn subscribe_domain(&self) -> broadcast::Receiver<DomainEvent> {
        self.domain.subscribe()
    }

    async fn publish_dead_letter(&self, payload: &str, error: &str) -> Result<(), BusError> {
        KafkaBus::publish_dead_letter(self, payload, error).await
    }

    async fn ready(&self) -> bool {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

/// Fails intake publishes at once while the brokers are known to be away, instead of making each
/// sender wait out the 30 s delivery timeout: opened by a publish that timed out, it lets one
/// publish at a time through to probe the brokers, and the first that succeeds closes it.
#[derive(Debug, Default)]
struct IntakeBreaker {
    open: AtomicBool,
    probing: AtomicBool,
}

/// A publish the breaker let through.
struct Admitted<'a> {
    breaker: &'a IntakeBreaker,
    probe: bool,
}

impl IntakeBreaker {
    /// `None` while open and another publish is probing.
    fn admit(&self) -> Option<Admitted<'_>> {
        let probe = self.open.load(AtomicOrdering::Acquire);
        if probe && self.probing.swap(true, AtomicOrdering::AcqRel) {
            return None;
        }
        Some(Admitted {
            breaker: self,
            probe,
        })
    }
}

impl Admitted<'_> {
    fn done(self, delivered: bool, timed_out: bool) {
        if delivered {
            self.breaker.open.store(false, AtomicOrdering::Release);
        } else if timed_out {
            self.breaker.open.store(true, AtomicOrdering::Release);
        }
    }
}

impl Drop for Admitted<'_> {
    // Also when the publish was abandoned (a sender hung up): the next one probes.
    fn drop(&mut self) {
        if self.probe {
            self.breaker.probing.store(false, AtomicOrdering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intake_breaker_fails_fast_while_one_publish_probes() {
        let breaker = IntakeBreaker::default();
        // Closed: everyone goes through, and failures other than a timeout keep it closed.
        let (a, b) = (breaker.admit().unwrap(), breaker.admit().unwrap());
        a.done(false, false);
        b.done(true, false);
        assert!(breaker.admit().is_some());
        // A timeout opens it: one probe at a time, the others refused at once.
        breaker.admit().unwrap().done(false, true);
        let probe = breaker.admit().expect("one publish probes");
        assert!(
            breaker.admit().is_none(),
            "others fail fast while it probes"
        );
        probe.done(false, true);
        // An abandoned probe (the sender hung up) lets the next publish probe.
        let abandoned = breaker.admit().expect("the next probe");
        drop(abandoned);
        let probe = breaker.admit().expect("a probe after the abandoned one");
        assert!(breaker.admit().is_none());
        // The brokers are back: the probe's success closes it.
        probe.done(true, false);
        let (a, b) = (breaker.admit(), breaker.admit());
        assert!(a.is_some() && b.is_some());
    }
}
