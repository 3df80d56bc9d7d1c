//! Delivers replies taken off the bus through their channel's connector, retrying transient
//! failures with exponential backoff, and reports every outcome back to the core as a
//! [`DeliveryReport`] on the inbound side of the bus.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use inbox_core::bus::{Bus, OutboundConsumer};
use inbox_core::envelope::{DeliveryReport, DeliveryStatus, InboundEvent, OutboundMessage};
use inbox_core::store::HealthReport;
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{ChannelDirectory, DeliveryError, Registry};

/// How often and how patiently a reply is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt, in milliseconds; doubled after each further failure.
    pub initial_backoff_ms: u64,
    /// Longest wait between two attempts, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, failed_attempts: u32) -> Duration {
        let factor = 2u64.saturating_pow(failed_attempts.saturating_sub(1));
        Duration::from_millis(
            self.initial_backoff_ms
                .saturating_mul(factor)
                .min(self.max_backoff_ms),
        )
    }
}

/// Deliveries running at once.
const MAX_IN_FLIGHT: usize = 64;

/// The outbound half of the connectors service.
#[derive(Debug, Clone)]
pub struct OutboundRunner {
    pub registry: Registry,
    pub directory: Arc<dyn ChannelDirectory>,
    pub bus: Arc<dyn Bus>,
    pub retry: RetryPolicy,
}

impl OutboundRunner {
    /// Runs until the consumer ends or `shutdown` fires; deliveries under way are finished first.
    pub async fn run<C: OutboundConsumer>(self, mut consumer: C, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<C::Ack>();
        let runner = Arc::new(self);
        loop {
            tokio::select! {
                biased;
                Some(ack) = done_rx.recv() => consumer.settle(ack).await,
                _ = shutdown.cancelled() => break,
                next = consumer.next() => {
                    let Some((message, ack)) = next else { break };
                    let Ok(permit) = permits.clone().acquire_owned().await else { break };
                    let runner = runner.clone();
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        runner.deliver_and_report(&message).await;
                        drop(permit);
                        let _ = done.send(ack);
                    });
                }
            }
        }
        // Let deliveries under way finish and settle them.
        let _ = permits.acquire_many(MAX_IN_FLIGHT as u32).await;
        drop(done_tx);
        while let Some(ack) = done_rx.recv().await {
            consumer.settle(ack).await;
        }
        consumer.close().await;
    }

    /// Delivers with retries, then publishes the report until the bus takes it.
    pub async fn deliver_and_report(&self, message: &OutboundMessage) {
        let (result, attempts) = self.deliver_with_retries(message).await;
        let (status, external_id, error) = match result {
            Ok(delivered) => (DeliveryStatus::Sent, delivered.external_id, None),
            Err(e) => (DeliveryStatus::Failed, None, Some(e.message)),
        };
        let message_id = message.id;
        match &error {
            None => tracing::info!(%message_id, attempts, "Reply delivered."),
            Some(error) => tracing::warn!(%message_id, attempts, %error, "Reply failed."),
        }
        let health = match &error {
            None => HealthReport::Delivered,
            Some(error) => HealthReport::DeliveryFailed(error.clone()),
        };
        let outcome = if error.is_none() { "sent" } else { "failed" };
        let channel_id = message.channel_id.to_string();
        metrics::counter!("inbox_deliveries_total", "channel_id" => channel_id.clone(), "outcome" => outcome)
            .increment(1);
        if error.is_some() {
            metrics::counter!("inbox_channel_errors_total", "channel_id" => channel_id, "stage" => "delivery")
                .increment(1);
        }
        self.directory
            .report_health(message.channel_id, health)
            .await;
        let report = InboundEvent::Delivery(DeliveryReport {
            message_id,
            conversation_id: message.conversation_id,
            channel_id: message.channel_id,
            status,
            external_id,
            error,
            attempts,
            at: Utc::now(),
        });
        let mut wait = Duration::from_millis(200);
        while let Err(error) = self.bus.publish_inbound(&report).await {
            tracing::warn!(%message_id, %error, "Delivery report not accepted; retrying.");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    async fn deliver_with_retries(
        &self,
        message: &OutboundMessage,
    ) -> (Result<crate::Delivered, DeliveryError>, u32) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.attempt(message).await;
            match result {
                Err(e) if e.retryable && attempt < self.retry.max_attempts => {
                    let wait = self.retry.backoff(attempt);
                    tracing::debug!(message_id = %message.id, attempt, error = %e.message, ?wait, "Retrying reply.");
                    tokio::time::sleep(wait).await;
                }
                Err(e) if e.retryable => {
                    return (
                        Err(DeliveryError::permanent(format!(
                            "{} (gave up after {attempt} attempts)",
                            e.message
                        ))),
                        attempt,
                    );
                }
                other => return (other, attempt),
            }
        }
    }

    async fn attempt(&self, message: &OutboundMessage) -> Result<crate::Delivered, DeliveryError> {
        let channel = self
            .directory
            .channel(message.channel_id)
            .await
            .map_err(DeliveryError::transient)?
            .ok_or_else(|| {
                DeliveryError::permanent(format!("channel {} does not exist", message.channel_id))
            })?;
        if channel.deleted_at.is_some() {
            return Err(DeliveryError::permanent(format!(
                "channel {} was deleted",
                channel.id
            )));
        }
        // Paused: retried, so a reply written during a short pause goes out once it is resumed.
        if !channel.enabled {
            return Err(DeliveryError::transient(format!(
                "channel {} is paused",
                channel.id
            )));
        }
        let connector = self.registry.get(channel.kind).ok_or_else(|| {
            DeliveryError::permanent(format!(
                "no connector for {} channels in this build",
                channel.kind.as_str()
            ))
        })?;
        connector.deliver(&channel, message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
        };
        let waits: Vec<u128> = (1..=6).map(|n| policy.backoff(n).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1_000, 1_000]);
    }
}
