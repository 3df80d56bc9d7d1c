//! `inbox bench ingest`: webhook-shaped messages through the real funnel (in-process bus + core
//! worker + store), compared in the same run with a raw batched insert of the same rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Args;
use inbox_core::bus::Bus;
use inbox_core::bus::local::LocalBus;
use inbox_core::envelope::{Body, ChannelKind, InboundEvent, InboundMessage, Party, ThreadHints};
use inbox_core::ids::{ChannelId, ContactId, ConversationId, MessageId};
use inbox_core::ingest::IngestSettings;
use inbox_core::model::{Actor, Direction, EventKind, ThreadReason, to_millis};
use inbox_core::store::{ConversationState, NewContact, NewEvent, NewIdentity, NewMessage, Store};
use inbox_core::worker::{IngestWorker, WorkerSettings};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use inbox_app::config::Config;

use crate::store::BenchStore;
use crate::{BusKind, StoreKind, kafka_bench_config, ms};

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Messages to push through the funnel.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Backend; postgres uses the server of INBOX_DATABASE_URL and a throwaway database on it.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// Bus between publishers and the core.
    #[arg(long, value_enum, default_value_t = BusKind::Local)]
    bus: BusKind,
    /// Concurrent publishers (like concurrent webhook requests).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Distinct customers the messages come from.
    #[arg(long)]
    customers: Option<usize>,
    /// Ingest workers of the core (partitions of the in-process bus, consumers with Kafka), in
    /// the funnel and the live scenario; default: 1 on SQLite, the number of CPUs on PostgreSQL.
    #[arg(long)]
    partitions: Option<usize>,
    /// With --bus kafka, the open-loop rate (msg/s) of the live-visibility scenario: the whole
    /// product fed at this rate, each message timed until an agent's SSE stream announces it.
    /// 0 leaves the scenario out.
    #[arg(long, default_value_t = 1000)]
    live_rate: u32,
    /// How long the live-visibility scenario publishes, in seconds.
    #[arg(long, default_value_t = 20)]
    live_seconds: u32,
}

/// `inbox bench ingest`.
pub async fn run(config: &Config, args: IngestArgs) -> anyhow::Result<()> {
    let customers = args.customers.unwrap_or((args.messages / 5).max(1));
    let partitions = args.partitions.unwrap_or(match args.store {
        StoreKind::Sqlite => 1,
        StoreKind::Postgres => inbox_app::config::cpus(),
    });
    println!(
        "bench ingest: {} messages from {} customers, bus {:?}, {} publishers, {} partitions, store {:?}",
        args.messages, customers, args.bus, args.concurrency, partitions, args.store
    );

    let funnel_target = BenchStore::create(config, args.store, "funnel").await?;
    let channel = funnel_target
        .store
        .create_channel(
            ChannelKind::WEBHOOK,
            "bench",
            serde_json::json!({}),
            "secret",
        )
        .await?;
    let workload = workload(channel.id, args.messages, customers);
    let bytes: usize = workload.iter().map(|m| m.body.text.len()).sum();
    println!(
        "  workload: {:.1} MB of text, {} replies referencing earlier messages",
        bytes as f64 / 1e6,
        workload
            .iter()
            .filter(|m| m.thread.in_reply_to.is_some())
            .count()
    );

    let mut consume_rate = None;
    let funnel = match args.bus {
        BusKind::Local => {
            run_funnel(
                &funnel_target.store,
                &workload,
                args.concurrency,
                partitions,
            )
            .await?
        }
        BusKind::Kafka => {
            let kafka = kafka_bench_config(config, "funnel")?;
            let result =
                crate::kafka::run(&kafka, &funnel_target.store, &workload, partitions).await?;
            consume_rate = Some(crate::kafka::raw_consume(&kafka, workload.len()).await?);
            result
        }
    };
    let stored = funnel_target.store.message_total().await?;
    anyhow::ensure!(
        stored as usize == workload.len(),
        "funnel stored {stored} of {} messages",
        workload.len()
    );
    funnel_target.drop_database().await?;

    let raw_target = BenchStore::create(config, args.store, "raw").await?;
    let raw_channel = raw_target
        .store
        .create_channel(
            ChannelKind::WEBHOOK,
            "bench",
            serde_json::json!({}),
            "secret",
        )
        .await?;
    let raw = run_raw_insert(&raw_target.store, raw_channel.id, &workload).await?;
    raw_target.drop_database().await?;

    let funnel_rate = workload.len() as f64 / funnel.elapsed.as_secs_f64();
    let raw_rate = workload.len() as f64 / raw.as_secs_f64();
    println!(
        "  funnel:     {funnel_rate:>10.0} msg/s   p50 {:>7.2} ms   p99 {:>7.2} ms   (publish → stored)",
        ms(funnel.p50),
        ms(funnel.p99)
    );
    println!("  raw insert: {raw_rate:>10.0} msg/s   (same rows, batches of 500, no lookups)");
    println!(
        "  ratio:      {:>10.1} %  of the raw batched insert",
        100.0 * funnel_rate / raw_rate
    );
    if let Some(consume_rate) = consume_rate {
        println!("  raw consume:{consume_rate:>10.0} msg/s   (the same records, rdkafka only)");
        println!(
            "  ratio:      {:>10.1} %  of the raw consume",
            100.0 * funnel_rate / consume_rate
        );
    }
    if args.bus == BusKind::Kafka && args.live_rate > 0 {
        live(config, &args, partitions).await?;
    }
    Ok(())
}

/// The live-visibility scenario (`bench_live`), printed.
async fn live(config: &Config, args: &IngestArgs, partitions: usize) -> anyhow::Result<()> {
    let messages = (args.live_rate * args.live_seconds) as usize;
    let live_workload = workload(ChannelId::new(), messages, (messages / 5).max(1));
    let kafka = kafka_bench_config(config, "live")?;
    let live = crate::live::run(
        config,
        kafka,
        args.store,
        live_workload,
        args.live_rate,
        partitions,
    )
    .await?;
    println!(
        "  live:       {:>10} msg/s   open loop for {:.1} s, publish → on an agent's SSE stream \
         (the whole product: funnel, event relay, inbox.events, web)",
        live.rate,
        live.duration.as_secs_f64()
    );
    println!(
        "              p50 {:>7.2} ms   p90 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   \
         ({} of {} seen, {} resyncs, publisher at most {:.1} ms behind schedule)",
        ms(live.quantile(0.50)),
        ms(live.quantile(0.90)),
        ms(live.quantile(0.99)),
        ms(live.quantile(1.0)),
        live.seen,
        live.published,
        live.resyncs,
        ms(live.worst_publish_lag)
    );
    anyhow::ensure!(
        live.seen == live.published,
        "the agent's stream announced {} of {} messages",
        live.seen,
        live.published
    );
    Ok(())
}

fn workload(channel_id: ChannelId, messages: usize, customers: usize) -> Vec<InboundMessage> {
    let mut rng = StdRng::seed_from_u64(42);
    let words = [
        "order", "invoice", "delivery", "refund", "account", "password", "thanks", "please",
        "urgent", "tracking", "payment", "the", "my", "is", "not", "working", "since", "today",
    ];
    let mut last_of_customer: Vec<Option<String>> = vec![None; customers];
    let now = Utc::now();
    (0..messages)
        .map(|i| {
            // Squaring a uniform draw skews traffic towards a minority of busy customers.
            let draw: f64 = rng.random();
            let customer = ((draw * draw) * customers as f64) as usize % customers;
            let len = match rng.random_range(0..10) {
                0..=5 => rng.random_range(40..300),
                6..=8 => rng.random_range(300..1500),
                _ => rng.random_range(1500..6000),
            };
            let mut text = String::with_capacity(len + 16);
            while text.len() < len {
                text.push_str(words[rng.random_range(0..words.len())]);
                text.push(' ');
            }
            let external_id = format!("bench-{i}");
            let in_reply_to = if rng.random_range(0..4) == 0 {
                last_of_customer[customer].clone()
            } else {
                None
            };
            last_of_customer[customer] = Some(external_id.clone());
            InboundMessage {
                id: MessageId::new(),
                channel_id,
                channel_kind: ChannelKind::WEBHOOK,
                external_id,
                thread: ThreadHints {
                    references: in_reply_to.iter().cloned().collect(),
                    in_reply_to,
                    subject: None,
                    chat_id: None,
                },
                from: Party {
                    handle: format!("customer-{customer}"),
                    name: Some(format!("Customer {customer}")),
                    email: None,
                    phone: None,
                },
                to: Vec::new(),
                sent_at: Some(now - chrono::Duration::milliseconds((messages - i) as i64)),
                received_at: now,
                body: Body { text, html: None },
                attachments: Vec::new(),
                raw: None,
                automated: None,
                edited_at: None,
                author: None,
                part_of: None,
            }
        })
        .collect()
}

pub(crate) struct FunnelResult {
    pub(crate) elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

async fn run_funnel(
    store: &Store,
    workload: &[InboundMessage],
    concurrency: usize,
    partitions: usize,
) -> anyhow::Result<FunnelResult> {
    let (bus, inbound, _outbound) = LocalBus::new(partitions);
    let bus: Arc<dyn Bus> = Arc::new(bus);
    let stop = CancellationToken::new();
    let workers: Vec<_> = inbound
        .into_iter()
        .map(|partition| {
            tokio::spawn(
                IngestWorker {
                    store: store.clone(),
                    bus: bus.clone(),
                    ingest: IngestSettings::default(),
                    settings: WorkerSettings::default(),
                }
                .run(partition, stop.clone()),
            )
        })
        .collect();
    let events: Arc<Vec<InboundEvent>> = Arc::new(
        workload
            .iter()
            .cloned()
            .map(InboundEvent::Message)
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut publishers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (bus, events, next) = (bus.clone(), events.clone(), next.clone());
        publishers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(event) = events.get(i) else { break };
                let sent = Instant::now();
                bus.publish_inbound(event).await?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, inbox_core::bus::BusError>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(workload.len());
    for publisher in publishers {
        latencies.extend(publisher.await??);
    }
    let elapsed = started.elapsed();
    stop.cancel();
    for worker in workers {
        let _ = worker.await;
    }
    latencies.sort_unstable();
    Ok(FunnelResult::from_sorted(elapsed, &latencies))
}

impl FunnelResult {
    pub(crate) fn from_sorted(elapsed: Duration, latencies: &[Duration]) -> Self {
        let pick = |q: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or_default()
        };
        FunnelResult {
            elapsed,
            p50: pick(0.50),
            p99: pick(0.99),
        }
    }
}

/// The rows the funnel writes (contacts, identities, conversations, messages, log events), inserted with the same
/// multi-row statements in transactions of 500 messages, without any lookup or decision.
async fn run_raw_insert(
    store: &Store,
    channel_id: ChannelId,
    workload: &[InboundMessage],
) -> anyhow::Result<Duration> {
    let now = to_millis(Utc::now());
    let mut conversation_of = std::collections::HashMap::new();
    let started = Instant::now();
    for chunk in workload.chunks(500) {
        let mut contacts = Vec::new();
        let mut identities = Vec::new();
        let mut conversations = Vec::new();
        let mut events = Vec::new();
        let mut rows = Vec::with_capacity(chunk.len());
        for m in chunk {
            let (contact, conversation) = *conversation_of
                .entry(m.from.handle.clone())
                .or_insert_with(|| {
                    let contact = ContactId::new();
                    let conversation = ConversationId::new();
                    contacts.push(NewContact {
                        id: contact,
                        name: m.from.name.clone(),
                        email: None,
                        phone: None,
                        created_at: now,
                    });
                    identities.push(NewIdentity {
                        namespace: format!("webhook:{channel_id}"),
                        handle: m.from.handle.clone(),
                        contact_id: contact,
                        created_at: now,
                    });
                    events.push(NewEvent {
                        conversation_id: conversation,
                        kind: EventKind::Opened,
                        actor: Actor::Contact(contact),
                        contact_id: Some(contact),
                        message_id: Some(m.id),
                        data: serde_json::json!({}),
                        at: now,
                    });
                    conversations.push(ConversationState {
                        id: conversation,
                        channel_id,
                        contact_id: contact,
                        contact_handle: m.from.handle.clone(),
                        status: "open".into(),
                        assignee_id: None,
                        subject: None,
                        labels: "[]".into(),
                        preview: String::new(),
                        message_count: 0,
                        unread_count: 0,
                        created_at: now,
                        last_message_at: now,
                        waiting_since: None,
                        snoozed_until: None,
                        resolved_at: None,
                        subject_key: None,
                    });
                    (contact, conversation)
                });
            events.push(NewEvent {
                conversation_id: conversation,
                kind: EventKind::MessageReceived,
                actor: Actor::Contact(contact),
                contact_id: Some(contact),
                message_id: Some(m.id),
                data: serde_json::json!({"thread_reason": "latest_conversation"}),
                at: now,
            });
            rows.push(NewMessage {
                id: m.id,
                conversation_id: conversation,
                channel_id,
                external_id: Some(m.external_id.clone()),
                direction: Direction::Inbound,
                contact_id: Some(contact),
                agent_id: None,
                sender_handle: Some(m.from.handle.clone()),
                sender_name: m.from.name.clone(),
                text: m.body.text.clone(),
                html: None,
                subject: None,
                in_reply_to: m.thread.in_reply_to.clone(),
                attachments: "[]".into(),
                raw_ref: None,
                thread_reason: ThreadReason::NewConversation,
                sent_at: now,
                claimed_sent_at: None,
                received_at: now,
                delivery_status: None,
                part_of: None,
            });
        }
        let mut tx = store.begin().await?;
        tx.raw().insert_contacts(&contacts).await?;
        tx.raw().insert_identities(&identities).await?;
        tx.raw().upsert_conversations(&conversations).await?;
        tx.raw().insert_messages(&rows).await?;
        tx.raw().insert_events(&events).await?;
        tx.commit().await?;
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_has_replies_and_many_customers() {
        let w = workload(ChannelId::new(), 1000, 200);
        assert_eq!(w.len(), 1000);
        let customers: std::collections::HashSet<_> = w.iter().map(|m| &m.from.handle).collect();
        assert!(customers.len() > 50);
        assert!(w.iter().any(|m| m.thread.in_reply_to.is_some()));
    }
}
