//! The core's consumer loop: takes inbound records off the bus in batches, runs them through the
//! funnel, and acknowledges them only after the transaction committed.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, InboundConsumer};
use crate::ingest::{IngestSettings, Outcome, ingest, payload_of};
use crate::store::Store;

/// Batching and retry settings of the consumer loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Most records per transaction.
    pub max_batch: usize,
    /// How long to wait for more records once one arrived. Zero takes what is queued: waiting
    /// only adds latency when producers block on their acknowledgement, as webhooks do.
    pub linger: Duration,
    /// Attempts at storing a batch before its producers are told it was not accepted.
    pub max_attempts: u32,
}

impl WorkerSettings {
    /// For a Kafka consumer: its prefetch queue holds what arrived while the previous batch was
    /// stored, so a batch takes that (up to 1,000, the bulk statements' sweet spot) and lingers
    /// only a millisecond for more; longer only delays live views.
    pub fn kafka() -> Self {
        WorkerSettings {
            max_batch: 1000,
            linger: Duration::from_millis(1),
            ..WorkerSettings::default()
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            max_batch: 500,
            linger: Duration::ZERO,
            max_attempts: 5,
        }
    }
}

#[derive(Debug, Clone)]
pub struct IngestWorker {
    pub store: Store,
    pub bus: Arc<dyn Bus>,
    pub ingest: IngestSettings,
    pub settings: WorkerSettings,
}

impl IngestWorker {
    /// Runs until the consumer closes or `shutdown` fires; a batch under way is finished first.
    pub async fn run<C: InboundConsumer>(self, mut consumer: C, shutdown: CancellationToken) {
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                batch = consumer.next_batch(self.settings.max_batch, self.settings.linger) => batch,
            };
            let Some(batch) = batch else { break };
            let (records, acks): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|d| (d.record, d.ack)).unzip();
            let result = self.store_with_retries(&records).await;
            consumer.settle(acks, result).await;
        }
        consumer.close().await;
    }

    async fn store_with_retries(
        &self,
        records: &[crate::ingest::InboundRecord],
    ) -> Result<(), String> {
        let mut wait = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match ingest(&self.store, records, &self.ingest).await {
                Ok(report) => {
                    record_metrics(&report.outcomes);
                    for (record, outcome) in records.iter().zip(&report.outcomes) {
                        if let Outcome::DeadLettered { error } = outcome
                            && let Err(e) = self
                                .bus
                                .publish_dead_letter(&payload_of(record), error)
                                .await
                        {
                            tracing::warn!(error = %e, "Dead letter not published on the bus; it is in the store.");
                        }
                    }
                    return Ok(());
                }
                Err(error) if attempt < self.settings.max_attempts => {
                    tracing::warn!(%error, attempt, records = records.len(), "Batch not stored; retrying.");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(error) => {
                    tracing::error!(%error, attempt, records = records.len(), "Batch not stored; giving up.");
                    return Err(error.to_string());
                }
            }
        }
    }
}

fn record_metrics(outcomes: &[Outcome]) {
    metrics::histogram!("inbox_ingest_batch_size").record(outcomes.len() as f64);
    for outcome in outcomes {
        let label = match outcome {
            Outcome::Stored { .. } => "stored",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::DeliveryRecorded { .. } => "delivery",
            Outcome::Edited { .. } => "edited",
            Outcome::Joined { .. } => "joined",
            Outcome::DeadLettered { .. } => "dead_lettered",
        };
        metrics::counter!("inbox_ingest_records_total", "outcome" => label).increment(1);
    }
}
