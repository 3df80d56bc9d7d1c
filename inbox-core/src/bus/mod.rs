//! The Bus port: how envelopes travel between connectors, the core and the web.
//!
//! Producers call [`Bus`]; the core takes inbound records in batches from an [`InboundConsumer`] and
//! acknowledges them only after the store transaction that handled them committed, so a source
//! never advances its cursor past what is not safe.

pub mod kafka;
pub mod local;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::envelope::{DomainEvent, InboundEvent, OutboundMessage};
use crate::ingest::InboundRecord;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The event was not accepted; the producer must not advance its cursor and should retry.
    #[error("not accepted: {0}")]
    NotAccepted(String),
    #[error("the bus is shut down")]
    Closed,
}

/// The producing side of the bus.
#[async_trait]
pub trait Bus: Send + Sync + std::fmt::Debug + 'static {
    /// Publishes an inbound event. Resolves once it is durably accepted: with the in-process bus,
    /// once the core stored or dead-lettered it; with Kafka, once the broker acknowledged it.
    async fn publish_inbound(&self, event: &InboundEvent) -> Result<(), BusError>;

    /// Hands a reply to the connectors. Resolves once the bus took responsibility for it.
    async fn publish_outbound(&self, message: &OutboundMessage) -> Result<(), BusError>;

    /// Publishes domain events, in the order given. Called by the event relay, which deletes them
    /// from the event outbox only once this resolved `Ok`: with Kafka, once the broker acknowledged
    /// every one of them.
    async fn publish_domain(&self, events: &[DomainEvent]) -> Result<(), BusError>;

    /// Every domain event from now on (each subscriber sees every event).
    fn subscribe_domain(&self) -> broadcast::Receiver<DomainEvent>;

    /// True when the bus can take events (for `/readyz`).
    async fn ready(&self) -> bool {
        true
    }

    /// Publishes a record that could not be stored, with its error, for operators' tooling. The
    /// record is in the dead-letter table already; the in-process bus has nothing more to do.
    async fn publish_dead_letter(&self, _payload: &str, _error: &str) -> Result<(), BusError> {
        Ok(())
    }
}

/// One inbound record as received off the bus, with the handle to acknowledge it (not to be
/// confused with a reply's delivery report).
#[derive(Debug)]
pub struct Received<A> {
    pub record: InboundRecord,
    pub ack: A,
}

/// The consuming side for the core.
#[async_trait]
pub trait InboundConsumer: Send {
    type Ack: Send + 'static;

    /// Waits for at least one record, then takes up to `max` more that arrive within `linger`.
    /// `None` when the bus is closed.
    async fn next_batch(
        &mut self,
        max: usize,
        linger: Duration,
    ) -> Option<Vec<Received<Self::Ack>>>;

    /// Acknowledges records after their transaction committed (`Ok`) or reports that they could not
    /// be stored (`Err`), in which case the bus redelivers or fails their producers.
    async fn settle(&mut self, acks: Vec<Self::Ack>, result: Result<(), String>);

    /// Commits what was acknowledged and leaves the consumer group.
    async fn close(&mut self) {}
}

/// The consuming side for the connectors.
#[async_trait]
pub trait OutboundConsumer: Send {
    type Ack: Send + 'static;

    async fn next(&mut self) -> Option<(OutboundMessage, Self::Ack)>;

    /// Acknowledges a reply once its delivery report was published.
    async fn settle(&mut self, ack: Self::Ack);

    /// Commits what was acknowledged and leaves the consumer group.
    async fn close(&mut self) {}
}
