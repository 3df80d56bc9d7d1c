//! The in-process bus of the embedded mode: bounded channels between tasks of one process.
//!
//! `publish_inbound` waits for the core's verdict on the event, which mirrors Kafka's "acknowledged
//! by the broker" with the strongest meaning available in one process: stored or dead-lettered.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{Bus, BusError, InboundConsumer, OutboundConsumer, Received};
use crate::envelope::{DomainEvent, InboundEvent, OutboundMessage};
use crate::ingest::InboundRecord;

/// Records waiting for the core; bounded so producers feel back-pressure.
const INBOUND_CAPACITY: usize = 4096;
const OUTBOUND_CAPACITY: usize = 1024;
const DOMAIN_CAPACITY: usize = 4096;

type Verdict = oneshot::Sender<Result<(), String>>;

/// Inbound records are spread over partitions by their key, like Kafka's: one customer's events
/// stay in order on one partition, and each partition has its own core worker.
#[derive(Debug, Clone)]
pub struct LocalBus {
    inbound: Vec<mpsc::Sender<(InboundRecord, Verdict)>>,
    outbound: mpsc::Sender<(OutboundMessage, oneshot::Sender<()>)>,
    domain: broadcast::Sender<DomainEvent>,
}

/// The core's end of the inbound channel.
#[derive(Debug)]
pub struct LocalInbound {
    rx: mpsc::Receiver<(InboundRecord, Verdict)>,
}

/// The connectors' end of the outbound channel.
#[derive(Debug)]
pub struct LocalOutbound {
    rx: mpsc::Receiver<(OutboundMessage, oneshot::Sender<()>)>,
}

impl LocalBus {
    /// A bus with `partitions` inbound partitions (at least one), one consumer end for each.
    pub fn new(partitions: usize) -> (LocalBus, Vec<LocalInbound>, LocalOutbound) {
        let (inbound, consumers): (Vec<_>, Vec<_>) = (0..partitions.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(INBOUND_CAPACITY);
                (tx, LocalInbound { rx })
            })
            .unzip();
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let (domain, _) = broadcast::channel(DOMAIN_CAPACITY);
        (
            LocalBus {
                inbound,
                outbound,
                domain,
            },
            consumers,
            LocalOutbound { rx: outbound_rx },
        )
    }

    fn partition(&self, record: &InboundRecord) -> &mpsc::Sender<(InboundRecord, Verdict)> {
        use std::hash::{Hash, Hasher};
        let index = match record {
            InboundRecord::Event(event) => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                event.partition_key().hash(&mut hasher);
                (hasher.finish() % self.inbound.len() as u64) as usize
            }
            InboundRecord::Undecodable { .. } => 0,
        };
        &self.inbound[index]
    }

    /// Publishes a record that may not even be a valid event (used by tests and replays).
    pub async fn publish_record(&self, record: InboundRecord) -> Result<(), BusError> {
        let (verdict, outcome) = oneshot::channel();
        self.partition(&record)
            .send((record, verdict))
            .await
            .map_err(|_| BusError::Closed)?;
        match outcome.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(BusError::NotAccepted(error)),
            Err(_) => Err(BusError::Closed),
        }
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish_inbound(&self, event: &InboundEvent) -> Result<(), BusError> {
        self.publish_record(InboundRecord::Event(event.clone()))
            .await
    }

    async fn publish_outbound(&self, message: &OutboundMessage) -> Result<(), BusError> {
        // Accepted once the connectors took it; the delivery report comes back as an inbound event.
        let (taken, taken_rx) = oneshot::channel();
        self.outbound
            .send((message.clone(), taken))
            .await
            .map_err(|_| BusError::Closed)?;
        taken_rx.await.map_err(|_| BusError::Closed)
    }

    async fn publish_domain(&self, events: &[DomainEvent]) -> Result<(), BusError> {
        for event in events {
            // No subscriber is not an error: nobody is watching.
            let _ = self.domain.send(event.clone());
        }
        Ok(())
    }

    fn subscribe_domain(&self) -> broadcast::Receiver<DomainEvent> {
        self.domain.subscribe()
    }
}

#[async_trait]
impl InboundConsumer for LocalInbound {
    type Ack = Verdict;

    async fn next_batch(&mut self, max: usize, linger: Duration) -> Option<Vec<Received<Verdict>>> {
        let (record, ack) = self.rx.recv().await?;
        let mut batch = vec![Received { record, ack }];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            // Take what is already queued without waiting, then wait up to the deadline.
            match self.rx.try_recv() {
                Ok((record, ack)) => batch.push(Received { record, ack }),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                        Ok(Some((record, ack))) => batch.push(Received { record, ack }),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        Some(batch)
    }

    async fn settle(&mut self, acks: Vec<Verdict>, result: Result<(), String>) {
        for ack in acks {
            // The producer may have given up waiting; the record is stored either way.
            let _ = ack.send(result.clone());
        }
    }
}

#[async_trait]
impl OutboundConsumer for LocalOutbound {
    type Ack = ();

    async fn next(&mut self) -> Option<(OutboundMessage, ())> {
        let (message, taken) = self.rx.recv().await?;
        let _ = taken.send(());
        Some((message, ()))
    }

    async fn settle(&mut self, _ack: ()) {}
}
