//! The consumers: the core's (inbound records in batches, offsets stored once the store
//! committed) and the connectors' (replies, offsets stored once each delivery was reported).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::Offset;

use super::{BusError, InboundConsumer, OutboundConsumer, Received, not_accepted};
use super::{KafkaBus, KafkaConfig};
use crate::envelope::{InboundEvent, OutboundMessage};
use crate::ingest::InboundRecord;

impl KafkaConfig {
    fn consumer(
        &self,
        group: &str,
        topic: &str,
        name: String,
    ) -> Result<Arc<StreamConsumer<Rebalancing>>, BusError> {
        let consumer: StreamConsumer<Rebalancing> = self
            .client()
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored by hand, only once their records are safe.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(Rebalancing {
                name,
                revokes: AtomicU64::new(0),
            })
            .map_err(not_accepted)?;
        consumer.subscribe(&[topic]).map_err(not_accepted)?;
        Ok(Arc::new(consumer))
    }

    /// The core's consumer of `inbox.inbound`.
    pub fn inbound_consumer(&self) -> Result<KafkaInbound, BusError> {
        self.inbound_consumer_for(0)
    }

    /// The consumer of the core's ingest worker `worker`: a core runs one per ingest partition,
    /// each a member of the group, so the broker spreads the partitions over them and their
    /// batches are stored side by side.
    pub fn inbound_consumer_for(&self, worker: usize) -> Result<KafkaInbound, BusError> {
        Ok(KafkaInbound {
            consumer: self.consumer(
                &self.core_group,
                &self.topics.inbound,
                format!("inbound-{worker}"),
            )?,
            topic: self.topics.inbound.clone(),
        })
    }

    /// The connectors' consumer of `inbox.outbound`.
    pub fn outbound_consumer(&self, bus: Arc<KafkaBus>) -> Result<KafkaOutbound, BusError> {
        Ok(KafkaOutbound {
            consumer: self.consumer(
                &self.connectors_group,
                &self.topics.outbound,
                "outbound".to_owned(),
            )?,
            topic: self.topics.outbound.clone(),
            tracker: HashMap::new(),
            bus,
        })
    }
}

/// Commits what was stored before partitions move to another group member.
#[derive(Debug)]
pub struct Rebalancing {
    /// Which of the process's consumers this is (in its log lines).
    name: String,
    /// Revocations so far: records read before the latest one belong to whoever owns their
    /// partition now (see [`KafkaInbound::next_batch`]).
    revokes: AtomicU64,
}

impl ClientContext for Rebalancing {}

impl ConsumerContext for Rebalancing {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            self.revokes.fetch_add(1, AtomicOrdering::AcqRel);
            tracing::info!(
                consumer = %self.name,
                partitions = partitions.count(),
                "Partitions revoked; committing."
            );
            if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                // Nothing stored since the last commit is the common case.
                tracing::debug!(%error, "Commit at revoke.");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(
                consumer = %self.name,
                partitions = partitions.count(),
                "Partitions assigned."
            );
        }
    }
}

/// Position of a record in its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaAck {
    partition: i32,
    offset: i64,
}

/// The core's end of `inbox.inbound`.
pub struct KafkaInbound {
    consumer: Arc<StreamConsumer<Rebalancing>>,
    topic: String,
}

impl std::fmt::Debug for KafkaInbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaInbound")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaInbound {
    /// Reads one record, waiting at most `wait` (forever when `None`).
    async fn read(&self, wait: Option<Duration>) -> Option<Received<KafkaAck>> {
        loop {
            let received = match wait {
                None => self.consumer.recv().await,
                Some(wait) => match tokio::time::timeout(wait, self.consumer.recv()).await {
                    Ok(received) => received,
                    Err(_) => return None,
                },
            };
            match received {
                Ok(message) => {
                    let payload = message.payload().unwrap_or_default();
                    let record = match InboundEvent::from_json(payload) {
                        Ok(event) => InboundRecord::Event(event),
                        Err(error) => InboundRecord::Undecodable {
                            payload: String::from_utf8_lossy(payload).into_owned(),
                            error: error.to_string(),
                        },
                    };
                    return Some(Received {
                        record,
                        ack: KafkaAck {
                            partition: message.partition(),
                            offset: message.offset(),
                        },
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "Inbound consumer error; retrying.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if wait.is_some() {
                        return None;
                    }
                }
            }
        }
    }

    /// Consumer lag per assigned partition (high watermark − position), for `/metrics`.
    pub fn lag(&self) -> Vec<(i32, i64)> {
        lag(&self.consumer, &self.topic)
    }

    /// A handle to read the lag from another task.
    pub fn lag_probe(&self) -> LagProbe {
        LagProbe {
            consumer: self.consumer.clone(),
            topic: self.topic.clone(),
        }
    }
}

fn lag(consumer: &StreamConsumer<Rebalancing>, topic: &str) -> Vec<(i32, i64)> {
    let Ok(position) = consumer.position() else {
        return Vec::new();
    };
    position
        .elements_for_topic(topic)
        .iter()
        .filter_map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p.partition(), Duration::from_secs(2))
                .ok()?;
            let at = match p.offset() {
                Offset::Offset(at) => at,
                _ => 0,
            };
            Some((p.partition(), (high - at).max(0)))
        })
        .collect()
}

/// Reads a consumer's lag (blocking calls: run it on a blocking thread).
#[derive(Clone)]
pub struct LagProbe {
    consumer: Arc<StreamConsumer<Rebalancing>>,
    topic: String,
}

impl std::fmt::Debug for LagProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LagProbe")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl LagProbe {
    pub fn lag(&self) -> Vec<(i32, i64)> {
        lag(&self.consumer, &self.topic)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
}

#[async_trait]
impl InboundConsumer for KafkaInbound {
    type Ack = KafkaAck;

    async fn next_batch(
        &mut self,
        max: usize,
        linger: Duration,
    ) -> Option<Vec<Received<KafkaAck>>> {
        let revokes = || {
            self.consumer
                .context()
                .revokes
                .load(AtomicOrdering::Acquire)
        };
        loop {
            let first = self.read(None).await?;
            let mut batch = vec![(first, revokes())];
            let deadline = tokio::time::Instant::now() + linger;
            while batch.len() < max {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match self.read(Some(left.max(Duration::from_micros(1)))).await {
                    Some(delivery) => batch.push((delivery, revokes())),
                    None => break,
                }
            }
            // A rebalance while the batch filled (another worker joining at start, say): what was
            // read before it is not ours to store any more. Its offsets were not stored, so the
            // partition's owner now reads it again from the committed offset; storing it here as
            // well would only make duplicates.
            let now = revokes();
            let read = batch.len();
            batch.retain(|(_, at)| *at == now);
            if batch.len() < read {
                tracing::debug!(
                    dropped = read - batch.len(),
                    "Records read before a rebalance left to their partition's owner."
                );
            }
            if !batch.is_empty() {
                return Some(batch.into_iter().map(|(delivery, _)| delivery).collect());
            }
        }
    }

    async fn settle(&mut self, acks: Vec<KafkaAck>, result: Result<(), String>) {
        let mut first: HashMap<i32, i64> = HashMap::new();
        let mut last: HashMap<i32, i64> = HashMap::new();
        for ack in acks {
            first
                .entry(ack.partition)
                .and_modify(|o| *o = (*o).min(ack.offset))
                .or_insert(ack.offset);
            last.entry(ack.partition)
                .and_modify(|o| *o = (*o).max(ack.offset))
                .or_insert(ack.offset);
        }
        match result {
            Ok(()) => {
                for (partition, offset) in last {
                    // Fails only for a partition revoked meanwhile: its new owner replays it.
                    if let Err(error) = self.consumer.store_offset(&self.topic, partition, offset) {
                        tracing::debug!(partition, offset, %error, "Offset not stored.");
                    }
                }
            }
            Err(error) => {
                // Never skip: read the batch again.
                tracing::warn!(%error, "Batch not stored; rewinding to read it again.");
                for (partition, offset) in first {
                    if let Err(error) = self.consumer.seek(
                        &self.topic,
                        partition,
                        Offset::Offset(offset),
                        Duration::from_secs(5),
                    ) {
                        tracing::warn!(partition, offset, %error, "Seek failed.");
                    }
                }
            }
        }
    }

    async fn close(&mut self) {
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%error, "Commit at close.");
        }
        self.consumer.unsubscribe();
    }
}

/// The connectors' end of `inbox.outbound`. Deliveries finish out of order, so the stored offset
/// of a partition only moves past records whose delivery reports are published.
pub struct KafkaOutbound {
    consumer: Arc<StreamConsumer<Rebalancing>>,
    topic: String,
    tracker: HashMap<i32, PartitionProgress>,
    bus: Arc<KafkaBus>,
}

impl std::fmt::Debug for KafkaOutbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOutbound")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Offsets handed out and not yet settled, and the lowest and highest settled ones.
#[derive(Debug, Default)]
struct PartitionProgress {
    in_flight: BTreeSet<i64>,
    lowest_settled: Option<i64>,
    settled: Option<i64>,
}

impl PartitionProgress {
    fn settle(&mut self, offset: i64) {
        self.in_flight.remove(&offset);
        self.lowest_settled = Some(self.lowest_settled.map_or(offset, |s| s.min(offset)));
        self.settled = Some(self.settled.map_or(offset, |s| s.max(offset)));
    }

    /// The highest offset up to which everything is settled. Records are handed out in offset
    /// order, so once any record before the first one still in flight was settled, all were.
    fn committable(&self) -> Option<i64> {
        match self.in_flight.first() {
            Some(&first) => self
                .lowest_settled
                .filter(|&low| low < first)
                .map(|_| first - 1),
            None => self.settled,
        }
    }
}

impl KafkaOutbound {
    fn settle_offset(&mut self, ack: KafkaAck) {
        let progress = self.tracker.entry(ack.partition).or_default();
        progress.settle(ack.offset);
        if let Some(offset) = progress.committable()
            && let Err(error) = self
                .consumer
                .store_offset(&self.topic, ack.partition, offset)
        {
            tracing::debug!(partition = ack.partition, offset, %error, "Offset not stored.");
        }
    }
}

#[async_trait]
impl OutboundConsumer for KafkaOutbound {
    type Ack = KafkaAck;

    async fn next(&mut self) -> Option<(OutboundMessage, KafkaAck)> {
        loop {
            let (decoded, ack) = match self.consumer.recv().await {
                Ok(message) => {
                    let payload = message.payload().unwrap_or_default();
                    (
                        OutboundMessage::from_json(payload)
                            .map_err(|e| (String::from_utf8_lossy(payload).into_owned(), e)),
                        KafkaAck {
                            partition: message.partition(),
                            offset: message.offset(),
                        },
                    )
                }
                Err(error) => {
                    tracing::warn!(%error, "Outbound consumer error; retrying.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            self.tracker
                .entry(ack.partition)
                .or_default()
                .in_flight
                .insert(ack.offset);
            match decoded {
                Ok(message) => return Some((message, ack)),
                Err((payload, error)) => {
                    let error = format!("undecodable outbound message: {error}");
                    tracing::warn!(%error, "Dead-lettering an outbound record.");
                    while let Err(e) = self.bus.publish_dead_letter(&payload, &error).await {
                        tracing::warn!(error = %e, "Dead letter not published; retrying.");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    self.settle_offset(ack);
                }
            }
        }
    }

    async fn settle(&mut self, ack: KafkaAck) {
        self.settle_offset(ack);
    }

    async fn close(&mut self) {
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%error, "Commit at close.");
        }
        self.consumer.unsubscribe();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_offsets_advance_only_past_settled_records() {
        let mut p = PartitionProgress::default();
        p.in_flight.extend([5, 6, 7]);
        // 6 finishes first: 5 is still running, nothing may be committed.
        p.settle(6);
        assert_eq!(p.committable(), None);
        p.settle(5);
        assert_eq!(p.committable(), Some(6));
        p.settle(7);
        assert_eq!(p.committable(), Some(7));
    }

    #[test]
    fn outbound_offsets_advance_up_to_the_first_record_in_flight() {
        let mut p = PartitionProgress::default();
        p.in_flight.extend([1, 2, 3]);
        p.settle(3);
        assert_eq!(p.committable(), None);
        // 1 is done and 2 is not: the position moves to 2, not past it.
        p.settle(1);
        assert_eq!(p.committable(), Some(1));
        p.in_flight.insert(4);
        p.settle(2);
        assert_eq!(p.committable(), Some(3));
        p.settle(4);
        assert_eq!(p.committable(), Some(4));
    }
}
