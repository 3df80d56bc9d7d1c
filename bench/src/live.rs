//! The live-visibility scenario of `inbox bench ingest --bus kafka`: the whole product in one
//! process (the core, web and connectors roles of `inbox run` on Kafka and a fresh database), fed
//! at a fixed open-loop rate. Each message is timed from its scheduled publish to the moment an
//! agent's live stream (`GET /events/stream`, SSE) announces it: the ingest funnel, the event
//! outbox and its relay, `inbox.events` and the web's fan-out, as the agent sees them.
//!
//! Open loop: messages are published on schedule whatever happens to earlier ones, and latency
//! counts from the scheduled time, so a stall shows up in the figures instead of slowing the load.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use inbox_core::bus::Bus;
use inbox_core::bus::kafka::{KafkaBus, KafkaConfig};
use inbox_core::envelope::{ChannelKind, InboundEvent, InboundMessage};
use inbox_core::ids::MessageId;
use inbox_core::model::Role;
use inbox_core::store::Store;
use tokio::sync::mpsc;

use crate::StoreKind;
use crate::web::{Server, Target, quantile};
use inbox_app::config::Config;

/// What the agent saw.
#[derive(Debug)]
pub struct LiveResult {
    pub rate: u32,
    pub duration: Duration,
    pub published: usize,
    /// Messages announced on the stream (each counted once).
    pub seen: usize,
    /// `resync` events: the stream fell behind and asked the page to reload.
    pub resyncs: usize,
    /// Publish schedule → announced, sorted.
    pub latencies: Vec<Duration>,
    /// How far publishing fell behind its schedule at worst (the load generator's own lag).
    pub worst_publish_lag: Duration,
}

impl LiveResult {
    pub fn quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }
}

/// Runs the scenario on a database of its own and the run's topics.
pub async fn run(
    config: &Config,
    kafka: KafkaConfig,
    store: StoreKind,
    workload: Vec<InboundMessage>,
    rate: u32,
    workers: usize,
) -> anyhow::Result<LiveResult> {
    let mut target = Target::create(config, store).await?;
    target.config.kafka = Some(kafka.clone());
    target.config.ingest_partitions = Some(workers);
    let (token, workload) = prepare(&target.config, workload).await?;
    let server = Server::start(target.config.clone()).await?;
    let result = measure(&server.base, &token, &kafka, workload, rate).await;
    server.stop().await;
    target.finish(false).await?;
    result
}

/// The channel the messages come in on and an agent's token, in the run's database; the workload
/// rewritten to that channel.
async fn prepare(
    config: &Config,
    mut workload: Vec<InboundMessage>,
) -> anyhow::Result<(String, Vec<InboundMessage>)> {
    let store = Store::open(&config.store()).await?;
    let channel = store
        .create_channel(
            ChannelKind::WEBHOOK,
            "bench live",
            serde_json::json!({}),
            "secret",
        )
        .await?;
    let agent = store
        .create_agent("live@bench.invalid", "Live Bench", Role::Agent, None)
        .await?;
    let token = store.create_api_token(agent.id, "bench live").await?;
    store.close().await;
    for m in &mut workload {
        m.channel_id = channel.id;
    }
    Ok((token, workload))
}

async fn measure(
    base: &str,
    token: &str,
    kafka: &KafkaConfig,
    workload: Vec<InboundMessage>,
    rate: u32,
) -> anyhow::Result<LiveResult> {
    let total = workload.len();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let stream = open_stream(base, token).await?;
    let reader = tokio::spawn(read_stream(stream, seen_tx));

    let bus = Arc::new(KafkaBus::new(kafka)?);
    // One throwaway message first: the producer and the consumers are connected before the clock
    // starts (the first publish also waits for the idempotent producer's id).
    warm_up(&bus, &workload[0]).await?;

    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let started = tokio::time::Instant::now();
    let mut scheduled: HashMap<MessageId, Instant> = HashMap::with_capacity(total);
    let mut publishes = Vec::with_capacity(total);
    let mut worst_publish_lag = Duration::ZERO;
    for (i, message) in workload.into_iter().enumerate() {
        let at = started + interval * i as u32;
        tokio::time::sleep_until(at).await;
        worst_publish_lag = worst_publish_lag.max(at.elapsed());
        scheduled.insert(message.id, at.into_std());
        // Received now, as a connector would stamp it.
        let message = InboundMessage {
            received_at: chrono::Utc::now(),
            ..message
        };
        let bus = bus.clone();
        publishes.push(tokio::spawn(async move {
            bus.publish_inbound(&InboundEvent::Message(message)).await
        }));
    }
    let duration = started.elapsed();
    for publish in publishes {
        publish.await?.context("a publish failed")?;
    }

    let mut latencies = Vec::with_capacity(total);
    let mut resyncs = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while latencies.len() < total {
        match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some(Seen::Message(id, at))) => {
                if let Some(sent) = scheduled.remove(&id) {
                    latencies.push(at.saturating_duration_since(sent));
                }
            }
            Ok(Some(Seen::Resync)) => resyncs += 1,
            Ok(None) | Err(_) => break,
        }
    }
    reader.abort();
    latencies.sort_unstable();
    Ok(LiveResult {
        rate,
        duration,
        published: total,
        seen: latencies.len(),
        resyncs,
        latencies,
        worst_publish_lag,
    })
}

async fn warm_up(bus: &KafkaBus, template: &InboundMessage) -> anyhow::Result<()> {
    let probe = InboundMessage {
        id: MessageId::new(),
        external_id: format!("warm-up-{}", uuid::Uuid::now_v7()),
        ..template.clone()
    };
    bus.publish_inbound(&InboundEvent::Message(probe)).await?;
    // Long enough for the core to store it and the web's consumer to be assigned its partitions.
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

async fn open_stream(base: &str, token: &str) -> anyhow::Result<reqwest::Response> {
    let response = reqwest::Client::new()
        .get(format!("{base}/events/stream"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "GET /events/stream answered {}",
        response.status()
    );
    Ok(response)
}

enum Seen {
    Message(MessageId, Instant),
    Resync,
}

/// Reads the SSE stream, reporting each `message_received` change as it arrives.
async fn read_stream(mut response: reqwest::Response, seen: mpsc::UnboundedSender<Seen>) {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let at = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some(found) = parse_event(&event, at) {
                let _ = seen.send(found);
            }
        }
    }
}

fn parse_event(event: &str, at: Instant) -> Option<Seen> {
    let mut name = "message";
    let mut data = String::new();
    for line in event.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            name = value.trim();
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim());
        }
    }
    match name {
        "resync" => Some(Seen::Resync),
        "change" => {
            let change: serde_json::Value = serde_json::from_str(&data).ok()?;
            if change["kind"] != "message_received" {
                return None;
            }
            let id = change["message_id"].as_str()?.parse().ok()?;
            Some(Seen::Message(id, at))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_read() {
        let id = MessageId::new();
        let event = format!(
            "event: change\ndata: {{\"kind\":\"message_received\",\"message_id\":\"{id}\"}}\n\n"
        );
        assert!(
            matches!(parse_event(&event, Instant::now()), Some(Seen::Message(found, _)) if found == id)
        );
        let other =
            "event: change\ndata: {\"kind\":\"conversation_opened\",\"message_id\":null}\n\n";
        assert!(parse_event(other, Instant::now()).is_none());
        assert!(matches!(
            parse_event("event: resync\ndata: \n\n", Instant::now()),
            Some(Seen::Resync)
        ));
        assert!(parse_event(": keep-alive\n\n", Instant::now()).is_none());
    }
}
