//! Kafka end to end: producer (acks=all) → topic → the core's consumer → funnel → store, and the
//! raw consume of the same records as its baseline.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use inbox_core::bus::kafka::{KafkaBus, KafkaConfig, KafkaInbound};
use inbox_core::bus::{Bus, InboundConsumer};
use inbox_core::envelope::{InboundEvent, InboundMessage};
use inbox_core::ids::MessageId;
use inbox_core::ingest::{InboundRecord, IngestSettings, Outcome, ingest};
use inbox_core::store::Store;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio_util::sync::CancellationToken;

use crate::ingest::FunnelResult;

/// `workers` consumers in the core's group, each with its own ingest loop, as `inbox core`
/// runs them (one per ingest partition).
pub async fn run(
    kafka: &KafkaConfig,
    store: &Store,
    workload: &[InboundMessage],
    workers: usize,
) -> anyhow::Result<FunnelResult> {
    kafka.ensure_topics().await?;
    let bus = KafkaBus::new(kafka)?;
    let total = workload.len();
    let stored = Arc::new(AtomicUsize::new(0));
    let done = CancellationToken::new();
    let mut cores = Vec::new();
    for index in 0..workers.max(1) {
        let consumer = kafka.inbound_consumer_for(index)?;
        cores.push(tokio::spawn(core_loop(
            consumer,
            store.clone(),
            total,
            stored.clone(),
            done.clone(),
        )));
    }
    let core = async move {
        let mut stored_at = HashMap::with_capacity(total);
        for core in cores {
            stored_at.extend(core.await??);
        }
        Ok::<_, anyhow::Error>(stored_at)
    };
    let started = Instant::now();
    let mut published_at = HashMap::with_capacity(total);
    for chunk in workload.chunks(2000) {
        let sends = chunk.iter().map(|m| {
            let event = InboundEvent::Message(m.clone());
            let bus = &bus;
            async move {
                let at = Instant::now();
                bus.publish_inbound(&event).await.map(|()| (m.id, at))
            }
        });
        for result in futures::future::join_all(sends).await {
            let (id, at) = result?;
            published_at.insert(id, at);
        }
    }
    let stored_at = tokio::time::timeout(Duration::from_secs(600), core).await??;
    let elapsed = started.elapsed();
    let mut latencies: Vec<Duration> = published_at
        .iter()
        .filter_map(|(id, sent)| stored_at.get(id).map(|done| done.duration_since(*sent)))
        .collect();
    latencies.sort_unstable();
    Ok(FunnelResult::from_sorted(elapsed, &latencies))
}

/// One ingest worker's loop, timing each message when its batch is committed; all stop once
/// `total` messages are stored between them.
async fn core_loop(
    mut consumer: KafkaInbound,
    store: Store,
    total: usize,
    stored: Arc<AtomicUsize>,
    done: CancellationToken,
) -> anyhow::Result<HashMap<MessageId, Instant>> {
    let settings = inbox_core::worker::WorkerSettings::kafka();
    let mut stored_at = HashMap::new();
    loop {
        let batch = tokio::select! {
            _ = done.cancelled() => break,
            batch = consumer.next_batch(settings.max_batch, settings.linger) => batch,
        };
        let Some(batch) = batch else { break };
        let (records, acks): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|d| (d.record, d.ack)).unzip();
        let report = ingest(&store, &records, &IngestSettings::default()).await?;
        let now = Instant::now();
        consumer.settle(acks, Ok(())).await;
        for record in &records {
            if let InboundRecord::Event(InboundEvent::Message(m)) = record {
                stored_at.entry(m.id).or_insert(now);
            }
        }
        // Records the group's first rebalance hands over twice are duplicates, not progress.
        let new = report
            .outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Stored { .. }))
            .count();
        if stored.fetch_add(new, Ordering::SeqCst) + new >= total {
            done.cancel();
        }
    }
    consumer.close().await;
    Ok(stored_at)
}

/// Reads the run's inbound records again with a bare consumer: the ceiling of the consume side.
pub async fn raw_consume(kafka: &KafkaConfig, total: usize) -> anyhow::Result<f64> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", format!("{}-raw", kafka.core_group))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[&kafka.topics.inbound])?;
    let started = Instant::now();
    let mut read = 0;
    while read < total {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
        std::hint::black_box(rdkafka::Message::payload(&message));
        read += 1;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
